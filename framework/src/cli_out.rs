//! What the CLI writes on stdout, and its error report.
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader has gone (`cryopod pod list |
//! head -1`) fails with EPIPE, and `println!` turns that into a panic with a backtrace. Every
//! stdout write of the CLI goes through this module instead: a closed pipe ends the process
//! quietly with exit status 0, as ripgrep does (the reader chose to stop reading, which is
//! not the command's failure; `ls | head` is quiet too, and a shell reports the last
//! command's status). Progress bars draw on stderr and are not affected.
//!
//! Errors: with `--json` the CLI prints the internal API's error document,
//! `{"error": {"code": "...", "message": "..."}}` on stdout, passing the API's code through
//! when the emulator answered with an error, and a code of its own otherwise
//! (`EmulatorUnreachable`, `FileNotFound`, `InvalidArgument`, ...).

use std::fmt::{self, Display};
use std::io::{self, StdoutLock, Write};
use std::process::ExitCode;

use serde_json::{Value, json};

/// Returns `r` unless it failed because stdout's reader has gone, in which case the process
/// exits quietly with status 0 after running `before_exit` (which clears a progress bar).
fn exit_on_closed_pipe<T>(r: io::Result<T>, before_exit: impl FnOnce()) -> io::Result<T> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            before_exit();
            std::process::exit(0)
        }
        r => r,
    }
}

/// Standard output for the CLI: a locked stdout whose writes end the process quietly when
/// the reader has gone (see the module documentation); other write errors (a full disk)
/// are returned.
pub(crate) struct Out {
    lock: StdoutLock<'static>,
    before_exit: Option<Box<dyn FnOnce()>>,
}

impl Out {
    /// Locks stdout.
    pub(crate) fn lock() -> Self {
        Self {
            lock: io::stdout().lock(),
            before_exit: None,
        }
    }

    /// Runs `f` before a closed pipe ends the process (to clear a progress bar).
    pub(crate) fn before_exit(mut self, f: impl FnOnce() + 'static) -> Self {
        self.before_exit = Some(Box::new(f));
        self
    }

    fn guard<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        let f = self.before_exit.take();
        exit_on_closed_pipe(r, || {
            if let Some(f) = f {
                f();
            }
        })
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.lock.write(buf);
        self.guard(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.lock.flush();
        self.guard(r)
    }
}

/// Prints `text` and a newline on stdout (see [`Out`]).
pub(crate) fn line(text: impl Display) -> io::Result<()> {
    let mut out = Out::lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Prints `text` and a newline on stderr: a notice beside the output, never in it. A closed
/// stderr is ignored.
pub(crate) fn notice(text: impl Display) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Prints `v` as one line of JSON with `--json`, else what `human` makes of it.
pub(crate) fn emit(json: bool, v: &Value, human: impl FnOnce(&Value) -> String) -> io::Result<()> {
    if json {
        line(v)
    } else {
        line(human(v).trim_end())
    }
}

/// A table in the CLI's style.
pub(crate) fn table(header: &[&str]) -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

/// `1.5 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// An error with a machine-readable code, for the `--json` error document.
#[derive(Debug)]
pub(crate) struct CodedError {
    code: String,
    message: String,
    /// The code came from the emulator's answer (shown after the message for people too).
    from_api: bool,
}

impl Display for CodedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CodedError {}

/// An error of the CLI's own with `code` (`EmulatorUnreachable`, `InvalidArgument`, ...).
pub(crate) fn coded(code: &str, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(CodedError {
        code: code.to_string(),
        message: message.into(),
        from_api: false,
    })
}

/// An error the emulator answered, with its code passed through.
pub(crate) fn from_api(code: &str, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(CodedError {
        code: code.to_string(),
        message: message.into(),
        from_api: true,
    })
}

/// The code of `e`: that of the first coded error in its chain, else one named after its
/// cause (a missing file, a corrupt bundle), else `Failed`.
fn code_of(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<CodedError>() {
            return c.code.clone();
        }
        if cause.is::<crate::state::UnknownMergeStrategy>() {
            return "UnknownMergeStrategy".into();
        }
        if cause.is::<cryopod_bundle::BundleError>() {
            return "CorruptBundle".into();
        }
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::NotFound => return "FileNotFound".into(),
                io::ErrorKind::PermissionDenied => return "PermissionDenied".into(),
                _ => {}
            }
        }
    }
    "Failed".into()
}

/// The `--json` error document of `e`: the internal API's shape.
pub(crate) fn error_document(e: &anyhow::Error) -> Value {
    json!({ "error": { "code": code_of(e), "message": format!("{e:#}") } })
}

/// Reports `e` (the JSON document on stdout with `--json`, else `error: …` on stderr) and
/// returns the failure exit code. A closed stdout or stderr does not hide the failure.
pub(crate) fn report_error(json: bool, e: &anyhow::Error) -> ExitCode {
    if json {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{}", error_document(e)).and_then(|()| out.flush());
    } else {
        let api_code = e
            .chain()
            .find_map(|c| c.downcast_ref::<CodedError>())
            .filter(|c| c.from_api)
            .map(|c| format!(" ({})", c.code))
            .unwrap_or_default();
        let _ = writeln!(io::stderr().lock(), "error: {e:#}{api_code}");
    }
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn error_codes_come_from_the_api_the_cli_or_the_cause() {
        let api = from_api("PodNotFound", "pod `x` not found");
        assert_eq!(
            error_document(&api),
            json!({ "error": { "code": "PodNotFound", "message": "pod `x` not found" } })
        );
        let wrapped = Err::<(), _>(coded("EmulatorUnreachable", "cannot reach"))
            .context("health")
            .unwrap_err();
        assert_eq!(
            error_document(&wrapped)["error"]["code"],
            "EmulatorUnreachable"
        );
        let missing = std::fs::File::open("/nonexistent/cryopod-test")
            .context("cannot open /nonexistent/cryopod-test")
            .unwrap_err();
        let doc = error_document(&missing);
        assert_eq!(doc["error"]["code"], "FileNotFound");
        assert!(
            doc["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("cannot open /nonexistent/cryopod-test: ")),
            "{doc}"
        );
        assert_eq!(
            error_document(&anyhow::anyhow!("something"))["error"]["code"],
            "Failed"
        );
    }
}
