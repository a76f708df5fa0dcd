//! Layer encryption with `age`.
//!
//! The passphrase (`--secret`, `POD_SECRET`) wraps a per-pod age X25519 key with age's scrypt
//! recipient; layers are encrypted to that key. The scrypt work factor is age's default
//! (about one second of work on the saving machine, 2^18 on common hardware) unless
//! `CRYOPOD_AGE_WORK_FACTOR` (log2 N, 1..=[`MAX_WORK_FACTOR`]) sets it, which tests do.
//!
//! A wrapped key names its own work factor in its header (`-> scrypt <salt> <log2 N>`), and
//! scrypt needs `128 · r · N` bytes (r = 8): a hostile pod saying 30 made a load try to
//! allocate 1 TiB and abort the emulator. Keys whose factor exceeds [`MAX_WORK_FACTOR`] are
//! refused before any scrypt work ([`UnwrapError::WorkFactorTooHigh`]), and the same limit
//! bounds what cryopod writes, so every pod it saves it can load.

use std::io::{self, Read, Write};
use std::iter;

use age::secrecy::{ExposeSecret, SecretString};
use base64::Engine;

/// The env var that sets the scrypt work factor (log2 N) used when wrapping a pod key.
pub const WORK_FACTOR_ENV: &str = "CRYOPOD_AGE_WORK_FACTOR";

/// The highest scrypt work factor (log2 N) accepted when unwrapping and allowed when wrapping:
/// 2^20 needs 1 GiB (`128 · 8 · 2^20` bytes) and a few seconds, two steps above age's
/// one-second default on common hardware (2^18, 256 MiB); 2^21 would already be 2 GiB.
pub const MAX_WORK_FACTOR: u8 = 20;

static WORK_FACTOR_OVERRIDE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Sets the scrypt work factor (log2 N, 1..=[`MAX_WORK_FACTOR`], higher values are lowered
/// to it) for keys wrapped from now on in this process, taking precedence over
/// `CRYOPOD_AGE_WORK_FACTOR`; 0 restores the default. For tests and embedders that cannot set
/// the environment.
pub fn set_work_factor(log_n: u8) {
    WORK_FACTOR_OVERRIDE.store(
        allowed_work_factor(log_n).unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
}

fn work_factor() -> Option<u8> {
    let o = WORK_FACTOR_OVERRIDE.load(std::sync::atomic::Ordering::Relaxed);
    if o > 0 {
        return Some(o);
    }
    std::env::var(WORK_FACTOR_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u8>().ok())
        .and_then(allowed_work_factor)
}

/// A configured work factor as used: 0 is none, above [`MAX_WORK_FACTOR`] is lowered to it
/// (a pod cryopod cannot load again would be worse than a cheaper key).
fn allowed_work_factor(log_n: u8) -> Option<u8> {
    (log_n >= 1).then(|| log_n.min(MAX_WORK_FACTOR))
}

/// A pod key: encrypts and decrypts layers.
#[derive(Clone)]
pub struct PodKey {
    identity: age::x25519::Identity,
}

/// Why a pod key could not be unwrapped.
#[derive(Debug, thiserror::Error)]
pub enum UnwrapError {
    /// The passphrase does not open the key.
    #[error("the secret does not decrypt this pod")]
    WrongSecret,
    /// The stored key is damaged.
    #[error("the pod's wrapped key is damaged: {0}")]
    Damaged(String),
    /// The key names a scrypt work factor above [`MAX_WORK_FACTOR`]: opening it would take
    /// `128 · 8 · 2^required` bytes of memory. cryopod never writes such a key.
    #[error(
        "work factor too high: the pod's key asks for scrypt work factor {required} (2^{required}, {memory} of memory); cryopod accepts at most {max} and never writes more, so this pod was made elsewhere or tampered with"
    )]
    WorkFactorTooHigh {
        /// The factor (log2 N) the key's header names.
        required: u8,
        /// [`MAX_WORK_FACTOR`].
        max: u8,
        /// The memory scrypt would need, for the message.
        memory: String,
    },
}

/// Where the scrypt stanza line (`-> scrypt <salt> <log2 N>`) of an age file's text header is,
/// and the work factor it names.
fn scrypt_stanza(age_file: &[u8]) -> Option<(std::ops::Range<usize>, u8)> {
    const TAG: &[u8] = b"-> scrypt ";
    let start = age_file.windows(TAG.len()).position(|w| w == TAG)?;
    let len = age_file[start..].iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&age_file[start..start + len]).ok()?;
    let log_n = line.rsplit(' ').next()?.parse().ok()?;
    Some((start..start + len, log_n))
}

/// `128 · r · 2^log_n` bytes (r = 8) in words.
fn scrypt_memory(log_n: u8) -> String {
    let bytes = 1024u128 << log_n.min(100);
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024 && unit + 1 < units.len() {
        value /= 1024;
        unit += 1;
    }
    format!("{value} {}", units[unit])
}

impl PodKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self {
            identity: age::x25519::Identity::generate(),
        }
    }

    /// The public recipient string (`age1…`).
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }

    /// The key encrypted with `secret` (scrypt), base64.
    pub fn wrap(&self, secret: &str) -> io::Result<String> {
        self.wrap_with(secret, work_factor())
    }

    fn wrap_with(&self, secret: &str, work_factor: Option<u8>) -> io::Result<String> {
        let mut r = age::scrypt::Recipient::new(SecretString::from(secret.to_owned()));
        if let Some(n) = work_factor {
            r.set_work_factor(n);
        }
        let enc = age::Encryptor::with_recipients(iter::once(&r as &dyn age::Recipient))
            .map_err(io::Error::other)?;
        let mut out = Vec::new();
        let mut w = enc.wrap_output(&mut out)?;
        w.write_all(self.identity.to_string().expose_secret().as_bytes())?;
        w.finish()?;
        // age's default is timed on this machine; one fast enough to pick more than loading
        // accepts gets the limit instead.
        if work_factor.is_none()
            && scrypt_stanza(&out).is_some_and(|(_, log_n)| log_n > MAX_WORK_FACTOR)
        {
            return self.wrap_with(secret, Some(MAX_WORK_FACTOR));
        }
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Opens a wrapped key with `secret`.
    pub fn unwrap(wrapped: &str, secret: &str) -> Result<Self, UnwrapError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(wrapped.trim())
            .map_err(|e| UnwrapError::Damaged(e.to_string()))?;
        let dec =
            age::Decryptor::new(&bytes[..]).map_err(|e| UnwrapError::Damaged(e.to_string()))?;
        let mut id = age::scrypt::Identity::new(SecretString::from(secret.to_owned()));
        // age checks the header's factor against this before any scrypt work.
        id.set_max_work_factor(MAX_WORK_FACTOR);
        let mut r = match dec.decrypt(iter::once(&id as &dyn age::Identity)) {
            Ok(r) => r,
            Err(age::DecryptError::NoMatchingKeys) | Err(age::DecryptError::DecryptionFailed) => {
                return Err(UnwrapError::WrongSecret);
            }
            Err(age::DecryptError::ExcessiveWork { required, .. }) => {
                return Err(UnwrapError::WorkFactorTooHigh {
                    required,
                    max: MAX_WORK_FACTOR,
                    memory: scrypt_memory(required),
                });
            }
            Err(e) => return Err(UnwrapError::Damaged(e.to_string())),
        };
        let mut s = String::new();
        r.read_to_string(&mut s)
            .map_err(|_| UnwrapError::WrongSecret)?;
        let identity = s
            .trim()
            .parse::<age::x25519::Identity>()
            .map_err(|e| UnwrapError::Damaged(e.to_string()))?;
        Ok(Self { identity })
    }

    /// Encrypts `input` into `output`.
    pub fn encrypt(&self, input: &mut dyn Read, output: &mut dyn Write) -> io::Result<()> {
        let recipient = self.identity.to_public();
        let enc = age::Encryptor::with_recipients(iter::once(&recipient as &dyn age::Recipient))
            .map_err(io::Error::other)?;
        let mut w = enc.wrap_output(output)?;
        io::copy(input, &mut w)?;
        w.finish()?;
        Ok(())
    }

    /// A reader of the plain content of an encrypted stream.
    pub fn decrypt<'a, R: Read + 'a>(&self, input: R) -> io::Result<Box<dyn Read + 'a>> {
        let dec = age::Decryptor::new(input).map_err(io::Error::other)?;
        let r = dec
            .decrypt(iter::once(&self.identity as &dyn age::Identity))
            .map_err(io::Error::other)?;
        Ok(Box::new(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_key_opens_only_with_its_secret() {
        let key = PodKey::generate();
        let wrapped = key.wrap_with("right", Some(4)).unwrap();
        assert!(matches!(
            PodKey::unwrap(&wrapped, "wrong"),
            Err(UnwrapError::WrongSecret)
        ));
        let back = PodKey::unwrap(&wrapped, "right").unwrap();
        assert_eq!(back.recipient(), key.recipient());
        let mut ct = Vec::new();
        key.encrypt(&mut &b"hello"[..], &mut ct).unwrap();
        let mut pt = String::new();
        back.decrypt(&ct[..])
            .unwrap()
            .read_to_string(&mut pt)
            .unwrap();
        assert_eq!(pt, "hello");
    }

    /// A wrapped key whose header names `log_n` instead of the factor it was made with: the
    /// header is text, so a real key is wrapped cheaply and its number edited.
    fn with_work_factor(wrapped: &str, log_n: u8) -> String {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(wrapped)
            .unwrap();
        let (line, _) = scrypt_stanza(&bytes).expect("an scrypt stanza");
        let text = std::str::from_utf8(&bytes[line.clone()]).unwrap();
        let (head, _) = text.rsplit_once(' ').unwrap();
        let mut out = bytes[..line.start].to_vec();
        out.extend_from_slice(format!("{head} {log_n}").as_bytes());
        out.extend_from_slice(&bytes[line.end..]);
        let edited = base64::engine::general_purpose::STANDARD.encode(&out);
        assert_eq!(scrypt_stanza(&out).map(|(_, n)| n), Some(log_n));
        edited
    }

    #[test]
    fn a_key_asking_for_a_huge_work_factor_is_refused_before_any_scrypt_work() {
        let wrapped = PodKey::generate().wrap_with("x", Some(4)).unwrap();
        let hostile = with_work_factor(&wrapped, 30);
        let started = std::time::Instant::now();
        let err = match PodKey::unwrap(&hostile, "x") {
            Err(e) => e,
            Ok(_) => panic!("a key naming work factor 30 was opened"),
        };
        assert!(
            matches!(
                err,
                UnwrapError::WorkFactorTooHigh {
                    required: 30,
                    max: MAX_WORK_FACTOR,
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("work factor too high") && text.contains("1 TiB"),
            "{text}"
        );
        // 2^30 scrypt would take minutes and 1 TiB; refusing takes no scrypt at all.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Within the limit the edited header is only a wrong key (its MAC no longer matches).
        let in_limit = with_work_factor(&wrapped, 5);
        assert!(matches!(
            PodKey::unwrap(&in_limit, "x"),
            Err(UnwrapError::WrongSecret | UnwrapError::Damaged(_))
        ));
    }

    #[test]
    fn the_configured_work_factor_never_exceeds_what_loading_accepts() {
        assert_eq!(allowed_work_factor(30), Some(MAX_WORK_FACTOR));
        assert_eq!(allowed_work_factor(4), Some(4));
        assert_eq!(allowed_work_factor(0), None);
    }
}
