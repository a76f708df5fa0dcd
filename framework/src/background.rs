//! Work that must not slow the requests being served: exports and scheduled saves.
//!
//! An export or a save hashes and compresses at full speed on one core; on a small machine
//! (two cores here) that left request handlers competing with it for CPU, and request p99
//! during an export grew ~10× (the same as beside any CPU-burning thread). Such work runs
//! here, on its own thread at a lower scheduling priority (nice 10 on Linux, inherited by
//! the threads it starts, such as the bundle writer's hash thread): it still uses every idle
//! cycle, but a request handler that wants the CPU gets it first. Work that a request waits
//! for (an `ON_REQUEST` commit) does not go here.
//!
//! The price: when every core is busy serving requests, an export gets roughly a tenth of a
//! core and takes that much longer (SQS bench under full external load: 2.7 s → 6.8 s).
//! `CRYOPOD_BACKGROUND_NICE=0` restores equal priority.

use crate::error::{Error, Result};

/// Nice value of background threads (`CRYOPOD_BACKGROUND_NICE`, 0–19): high enough that
/// request threads win the CPU, low enough that an export still progresses on a machine
/// whose cores are all busy serving requests.
fn niceness() -> i32 {
    std::env::var("CRYOPOD_BACKGROUND_NICE")
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .map_or(DEFAULT_NICE, |n| n.clamp(0, 19))
}

const DEFAULT_NICE: i32 = 10;

/// Runs `f` on a new low-priority thread; dropping the handle detaches it.
pub fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(format!("cryopod-{name}"))
        .spawn(move || {
            lower_priority();
            f()
        })
}

/// Runs `f` on a new low-priority thread and waits for it without blocking the runtime.
pub async fn run<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    spawn(name, move || {
        let _ = tx.send(f());
    })
    .map_err(|e| Error::Task(format!("cannot start a background thread: {e}")))?;
    rx.await
        .map_err(|_| Error::Task("background work panicked".into()))
}

fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // Per thread on Linux: a thread id is a process id for the scheduler.
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), niceness()) {
            tracing::debug!(error = %e, "cannot lower the priority of a background thread");
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn work_runs_and_returns_its_value() {
        assert_eq!(super::run("test", || 6 * 7).await.unwrap(), 42);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn background_threads_run_at_a_lower_priority() {
        let nice = super::run("test", || {
            rustix::process::getpriority_process(Some(rustix::thread::gettid()))
        })
        .await
        .unwrap()
        .unwrap();
        let ours = rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
        assert!(nice > ours, "background nice {nice}, caller {ours}");
    }
}
