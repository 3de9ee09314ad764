//! Shared plumbing for the fixtures: finding programs, free ports, waiting, killing.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// Why a fixture could not start.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The program is not installed.
    #[error("`{program}` not found on PATH; install it with `{install}` (or run `make deps`)")]
    Missing {
        /// The program looked for.
        program: &'static str,
        /// The command that installs it.
        install: &'static str,
    },
    /// The program started but never became ready.
    #[error("{what} did not become ready within {timeout:?}: {detail}")]
    NotReady {
        /// What was started.
        what: String,
        /// How long it was given.
        timeout: Duration,
        /// What was seen last (its log tail, or the last error).
        detail: String,
    },
    /// Anything else: spawning, temp dirs, files.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Finds `program` on `PATH`.
pub(crate) fn find(program: &'static str, install: &'static str) -> Result<PathBuf, FixtureError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or(FixtureError::Missing { program, install })
}

/// A loopback port that was free a moment ago. Servers started on it may still lose a race
/// with another test; fixtures retry on a new port when that happens.
///
/// # Panics
/// When no ephemeral port can be bound at all.
#[must_use]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral loopback port")
        .port()
}

/// Polls `ready` every 20 ms until it succeeds, the child exits, or `timeout` passes.
fn wait_until(
    what: &str,
    child: &mut Child,
    timeout: Duration,
    mut ready: impl FnMut() -> Result<(), String>,
) -> Result<(), FixtureError> {
    let start = Instant::now();
    let mut last = String::from("never answered");
    while start.elapsed() < timeout {
        match ready() {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(FixtureError::NotReady {
                what: what.to_owned(),
                timeout,
                detail: format!("exited with {status}; last error: {last}"),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(FixtureError::NotReady {
        what: what.to_owned(),
        timeout,
        detail: last,
    })
}

/// Waits for a child to exit, at most `timeout`; `None` when it is still running.
pub(crate) fn wait_exit(
    child: &mut Child,
    timeout: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if start.elapsed() > timeout {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A started server process, killed and reaped when stopped or dropped.
#[derive(Debug, Default)]
pub(crate) struct Running(Option<Child>);

impl Running {
    pub(crate) fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// Kills the process (SIGKILL, as a crash would) and reaps it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.0.take() {
            kill(&mut child);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `spawn` on ports from `pick` until one starts: a port can be taken by another test
/// between choosing and binding it. A missing program ends the attempts at once.
pub(crate) fn retry_ports(
    pick: fn() -> u16,
    mut spawn: impl FnMut(u16) -> Result<(), FixtureError>,
) -> Result<(), FixtureError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match spawn(pick()) {
            Err(e @ FixtureError::NotReady { .. }) if attempt < 5 => drop(e),
            other => return other,
        }
    }
}

/// Waits for a freshly spawned child as [`wait_until`] does; on failure kills it and adds
/// the tail of its log to the error.
pub(crate) fn await_ready(
    what: &str,
    mut child: Child,
    timeout: Duration,
    log: &std::path::Path,
    ready: impl FnMut() -> Result<(), String>,
) -> Result<Running, FixtureError> {
    match wait_until(what, &mut child, timeout, ready) {
        Ok(()) => Ok(Running::new(child)),
        Err(e) => {
            kill(&mut child);
            Err(match e {
                FixtureError::NotReady {
                    what,
                    timeout,
                    detail,
                } => FixtureError::NotReady {
                    what,
                    timeout,
                    detail: format!("{detail}\n{}", tail(log)),
                },
                other => other,
            })
        }
    }
}

/// Kills and reaps a child, ignoring one that has already gone.
pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The last lines of a log file, for error messages.
fn tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}
