//! LocalStack's settings, as `cryopod serve` reads them: the ones that mean something to
//! cryopod are honoured (with cryopod's own names winning when both are set), the ones that
//! do not are named in one warning at start, so a LocalStack configuration never changes
//! behaviour silently. The table is in README "Coming from LocalStack".

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// LocalStack's port, used when `GATEWAY_LISTEN` names only a host.
pub const DEFAULT_PORT: u16 = 4566;

/// A LocalStack setting cryopod cannot use as given.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `GATEWAY_LISTEN`'s first address does not parse.
    #[error(
        "GATEWAY_LISTEN=`{value}`: `{first}` is not an address (expected HOST:PORT, :PORT or HOST, such as 127.0.0.1:4566)"
    )]
    GatewayListen {
        /// The whole value.
        value: String,
        /// Its first address.
        first: String,
    },
    /// `LOCALSTACK_PERSISTENCE` is not a boolean.
    #[error("LOCALSTACK_PERSISTENCE=`{0}` is not a boolean (use 1/0, true/false)")]
    Persistence(String),
}

/// LocalStack settings cryopod accepts and ignores, with what to do instead.
pub const IGNORED: &[(&str, &str)] = &[
    ("DEBUG", "use RUST_LOG=debug"),
    ("LS_LOG", "use RUST_LOG"),
    ("EAGER_SERVICE_LOADING", "services always start at once"),
    ("DNS_ADDRESS", "cryopod runs no DNS server"),
    ("DNS_RESOLVE_IP", "cryopod runs no DNS server"),
    ("LAMBDA_EXECUTOR", "functions are not executed"),
    ("LAMBDA_RUNTIME_EXECUTOR", "functions are not executed"),
    ("LAMBDA_DOCKER_NETWORK", "functions are not executed"),
    ("EDGE_PORT", "use GATEWAY_LISTEN or --listen"),
    ("USE_SSL", "cryopod serves plain HTTP"),
    (
        "SQS_ENDPOINT_STRATEGY",
        "queue URLs use the address the client called",
    ),
    ("LOCALSTACK_AUTH_TOKEN", "cryopod needs no licence"),
    ("LOCALSTACK_API_KEY", "cryopod needs no licence"),
    ("ACTIVATE_PRO", "every feature is on"),
    (
        "POD_ENCRYPTION",
        "pods are encrypted whenever a secret is given",
    ),
    (
        "STATE_SERIALIZATION_BACKEND",
        "bundles are cryopod's own format",
    ),
    (
        "ENABLE_POD_RESOURCES",
        "pod versions always record their resources",
    ),
    (
        "DISABLE_CORS_CHECKS",
        "S3 answers browsers from bucket CORS rules",
    ),
    (
        "EXTRA_CORS_ALLOWED_ORIGINS",
        "S3 answers browsers from bucket CORS rules",
    ),
];

/// The address to listen on: `given` (`--listen` or `CRYOPOD_LISTEN`) when set, else the
/// first address of `GATEWAY_LISTEN` (a missing host is 127.0.0.1, never every interface;
/// a missing port is 4566), else `127.0.0.1:4566`. The loopback rule of `--listen` applies
/// to the result either way.
pub fn listen(
    given: Option<SocketAddr>,
    gateway_listen: Option<&str>,
) -> Result<SocketAddr, SettingsError> {
    let default = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT);
    if let Some(addr) = given {
        return Ok(addr);
    }
    let Some(value) = gateway_listen.filter(|v| !v.trim().is_empty()) else {
        return Ok(default);
    };
    let first = value.split(',').next().unwrap_or_default().trim();
    let bad = || SettingsError::GatewayListen {
        value: value.to_string(),
        first: first.to_string(),
    };
    if let Ok(addr) = first.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = first.trim_start_matches('[').trim_end_matches(']');
    let (host, port) = if bare.parse::<IpAddr>().is_ok() {
        (bare, None) // an address without a port, IPv6 included
    } else {
        match first.rsplit_once(':') {
            Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']'), Some(p)),
            None => (first, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        None => DEFAULT_PORT,
    };
    let ip = match host {
        "" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => h.parse::<IpAddr>().map_err(|_| bad())?,
    };
    Ok(SocketAddr::new(ip, port))
}

/// Whether persistence is on: `PERSISTENCE` (or `--persistence`) when set, else
/// `LOCALSTACK_PERSISTENCE` (what `lstk start --persist` sets).
pub fn persistence(
    given: bool,
    persistence_set: bool,
    localstack: Option<&str>,
) -> Result<bool, SettingsError> {
    if given || persistence_set {
        return Ok(given);
    }
    match localstack.map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) => match v.as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" | "" => Ok(false),
            _ => Err(SettingsError::Persistence(v)),
        },
    }
}

/// The host of `LOCALSTACK_HOST` (`name[:port]`), which the emulator then answers to as it
/// does to its own names, so clients configured with LocalStack's variable reach it and the
/// URLs it returns (queue URLs, presigned URLs) carry that name.
pub fn localstack_host(value: Option<&str>) -> Option<String> {
    let v = value?.trim();
    let v = v.split_once("://").map_or(v, |(_, rest)| rest);
    let host = match v.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => v,
    };
    let host = host.trim_end_matches('/');
    (!host.is_empty()).then(|| host.to_string())
}

/// One warning line naming the LocalStack settings in `env` that cryopod ignores, or
/// `None` when there are none.
pub fn ignored_warning(env: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set: Vec<String> = IGNORED
        .iter()
        .filter(|(name, _)| env(name).is_some_and(|v| !v.trim().is_empty()))
        .map(|(name, instead)| format!("{name} ({instead})"))
        .collect();
    (!set.is_empty()).then(|| {
        format!(
            "warning: LocalStack settings that cryopod ignores: {}",
            set.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn gateway_listen_gives_the_first_address_unless_listen_is_set() {
        assert_eq!(listen(None, None).unwrap(), addr("127.0.0.1:4566"));
        assert_eq!(
            listen(None, Some("0.0.0.0:4510,0.0.0.0:443")).unwrap(),
            addr("0.0.0.0:4510")
        );
        assert_eq!(listen(None, Some(":4567")).unwrap(), addr("127.0.0.1:4567"));
        assert_eq!(
            listen(None, Some("127.0.0.2")).unwrap(),
            addr("127.0.0.2:4566")
        );
        assert_eq!(
            listen(None, Some("localhost:5000")).unwrap(),
            addr("127.0.0.1:5000")
        );
        assert_eq!(
            listen(None, Some("[::1]:4600")).unwrap(),
            addr("[::1]:4600")
        );
        assert_eq!(listen(None, Some("::1")).unwrap(), addr("[::1]:4566"));
        assert_eq!(
            listen(Some(addr("127.0.0.1:9")), Some("0.0.0.0:1")).unwrap(),
            addr("127.0.0.1:9")
        );
        let e = listen(None, Some("nowhere:port")).unwrap_err().to_string();
        assert!(
            e.contains("GATEWAY_LISTEN") && e.contains("nowhere:port"),
            "{e}"
        );
    }

    #[test]
    fn persistence_takes_localstack_persistence_only_when_persistence_is_unset() {
        assert!(persistence(false, false, Some("1")).unwrap());
        assert!(!persistence(false, true, Some("1")).unwrap());
        assert!(persistence(true, true, Some("0")).unwrap());
        assert!(!persistence(false, false, None).unwrap());
        assert!(persistence(false, false, Some("maybe")).is_err());
    }

    #[test]
    fn localstack_host_is_a_host_name() {
        assert_eq!(
            localstack_host(Some("localhost.localstack.cloud:4566")).as_deref(),
            Some("localhost.localstack.cloud")
        );
        assert_eq!(
            localstack_host(Some("http://emu:4566")).as_deref(),
            Some("emu")
        );
        assert_eq!(localstack_host(Some("")), None);
    }

    #[test]
    fn ignored_settings_give_one_line() {
        let env = |k: &str| (k == "DEBUG" || k == "LS_LOG").then(|| "1".to_string());
        let line = ignored_warning(env).unwrap();
        assert!(line.contains("DEBUG (use RUST_LOG=debug)") && line.contains("LS_LOG"));
        assert!(!line.contains('\n'));
        assert_eq!(ignored_warning(|_| None), None);
    }
}
