//! Auto-load at start: seed a fresh emulator from pods and bundle files.
//!
//! In order:
//! 1. `AUTO_LOAD_POD=a,b:2`: pods of the local store (`NAME` is the latest version);
//! 2. the files of `DATA_DIR/init-pods.d`, by file name: a bundle file (recognised by its
//!    magic bytes) is imported; any other file lists pods, one `NAME[:VERSION] [REMOTE]` per
//!    line (`#` starts a comment).
//!
//! Each is loaded with `MERGE_STRATEGY` (default `account-region-merge`); encrypted pods use
//! `POD_SECRET`. Nothing is loaded when persistence restored a saved state: the saved state
//! already contains whatever was auto-loaded the first time. A source that fails to load
//! stops the start with an error naming it.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::{LoadOptions, PodError, PodRef, Pods};
use crate::runtime::Runtime;
use crate::state::MergeStrategy;

/// One thing to load at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A pod version.
    Pod {
        /// The pod.
        pod: PodRef,
        /// Remote name or URL (`None`: the local store).
        remote: Option<String>,
    },
    /// A bundle file.
    Bundle(PathBuf),
}

/// The init directory of a data dir.
pub fn init_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("init-pods.d")
}

fn is_bundle(path: &Path) -> std::io::Result<bool> {
    let mut magic = [0u8; 8];
    let n = std::fs::File::open(path)?.read(&mut magic)?;
    Ok(n == 8 && &magic == b"\x89CRYOPOD")
}

/// Parses `AUTO_LOAD_POD` and reads the init directory, in load order.
pub fn plan(auto_load_pod: Option<&str>, data_dir: &Path) -> Result<Vec<Source>, PodError> {
    let mut out = Vec::new();
    for item in auto_load_pod.unwrap_or_default().split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        out.push(Source::Pod {
            pod: item.parse()?,
            remote: None,
        });
    }
    let dir = init_dir(data_dir);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                !p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    files.sort();
    for f in files {
        if is_bundle(&f)? {
            out.push(Source::Bundle(f));
            continue;
        }
        let text = std::fs::read_to_string(&f).map_err(|e| {
            PodError::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", f.display()),
            ))
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split_whitespace();
            let pod = parts.next().unwrap_or_default();
            let pod: PodRef = pod
                .parse()
                .map_err(|e| PodError::Launch(format!("{}:{}: {e}", f.display(), n + 1)))?;
            let remote = parts.next().map(str::to_string);
            if parts.next().is_some() {
                return Err(PodError::Launch(format!(
                    "{}:{}: expected `NAME[:VERSION] [REMOTE]`",
                    f.display(),
                    n + 1
                )));
            }
            out.push(Source::Pod { pod, remote });
        }
    }
    Ok(out)
}

/// Loads `sources` in order.
pub async fn run(
    pods: &Pods,
    runtime: &Runtime,
    sources: &[Source],
    merge: MergeStrategy,
    secret: Option<String>,
) -> Result<Vec<Value>, PodError> {
    let mut out = Vec::new();
    for s in sources {
        match s {
            Source::Pod { pod, remote } => {
                let opts = LoadOptions {
                    remote: remote.clone(),
                    merge,
                    secret: secret.clone(),
                    ..Default::default()
                };
                let r = pods
                    .load(runtime, pod, opts)
                    .await
                    .map_err(|e| PodError::Launch(format!("auto-load of pod {pod} failed: {e}")))?;
                out.push(
                    json!({ "pod": pod.to_string(), "version": r.version, "location": r.location }),
                );
            }
            Source::Bundle(path) => {
                let f = std::fs::File::open(path)?;
                runtime
                    .import(std::io::BufReader::new(f), None, merge)
                    .await
                    .map_err(|e| {
                        PodError::Launch(format!("auto-load of {} failed: {e}", path.display()))
                    })?;
                out.push(json!({ "bundle": path }));
            }
        }
    }
    Ok(out)
}

/// What `serve` calls after persistence started: reads `AUTO_LOAD_POD`, `MERGE_STRATEGY`
/// and `POD_SECRET`, and loads the sources unless `restored` (persistence loaded a state).
/// Returns one line per loaded source, for the start banner.
pub async fn at_start(
    pods: &Pods,
    runtime: &Runtime,
    data_dir: &Path,
    restored: bool,
) -> Result<Vec<String>, PodError> {
    let env = std::env::var("AUTO_LOAD_POD").ok();
    let sources = plan(env.as_deref(), data_dir)?;
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    if restored {
        return Ok(vec![format!(
            "auto-load: skipped {} source(s): persistence restored a saved state",
            sources.len()
        )]);
    }
    let merge: MergeStrategy = match std::env::var("MERGE_STRATEGY") {
        Ok(m) if !m.trim().is_empty() => {
            m.parse().map_err(|e: crate::state::UnknownMergeStrategy| {
                PodError::Launch(format!("MERGE_STRATEGY: {e}"))
            })?
        }
        _ => MergeStrategy::AccountRegionMerge,
    };
    let secret = std::env::var("POD_SECRET").ok().filter(|s| !s.is_empty());
    let loaded = run(pods, runtime, &sources, merge, secret).await?;
    Ok(loaded
        .iter()
        .map(|v| match (v["pod"].as_str(), v["bundle"].as_str()) {
            (Some(pod), _) => format!(
                "auto-loaded pod {}:{} from {} with {merge}",
                pod.split(':').next().unwrap_or(pod),
                v["version"],
                v["location"].as_str().unwrap_or("?")
            ),
            (None, Some(bundle)) => format!("auto-loaded bundle {bundle} with {merge}"),
            (None, None) => format!("auto-loaded {v} with {merge}"),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_come_from_the_variable_then_the_init_directory_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let init = init_dir(dir.path());
        std::fs::create_dir_all(&init).unwrap();
        std::fs::write(
            init.join("20-more.txt"),
            "c:3 team # a remote\n\n# only a comment\n",
        )
        .unwrap();
        std::fs::write(init.join("10-seed.txt"), "b\n").unwrap();
        let mut bundle = b"\x89CRYOPOD".to_vec();
        bundle.extend_from_slice(&[0; 8]);
        std::fs::write(init.join("15-data.cryopod"), bundle).unwrap();
        let plan = plan(Some("a, x:2"), dir.path()).unwrap();
        let pod = |n: &str, v: Option<u32>, r: Option<&str>| Source::Pod {
            pod: PodRef {
                name: n.into(),
                version: v,
            },
            remote: r.map(str::to_string),
        };
        assert_eq!(
            plan,
            vec![
                pod("a", None, None),
                pod("x", Some(2), None),
                pod("b", None, None),
                Source::Bundle(init.join("15-data.cryopod")),
                pod("c", Some(3), Some("team")),
            ]
        );
    }
}
