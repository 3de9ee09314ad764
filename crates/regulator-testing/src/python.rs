//! The project's Python venv (made by `make deps`) and a driver for the real limitlion.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::Value;

use super::process::{FixtureError, kill};

const DRIVER: &str = include_str!("limitlion_driver.py");

/// The venv's `python`: `$REGULATOR_PYTHON`, else `<repo>/.venv/bin/python`, checked to
/// import limitlion and redis.
///
/// # Errors
/// [`FixtureError::Missing`] naming `make deps` when the venv or its packages are absent.
pub fn python() -> Result<PathBuf, FixtureError> {
    let path = std::env::var_os("REGULATOR_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        PathBuf::from,
    );
    let ok = Command::new(&path)
        .args(["-c", "import limitlion, redis"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(path)
    } else {
        Err(FixtureError::Missing {
            program: "python venv with limitlion (.venv)",
            install: "make deps",
        })
    }
}

/// A Python process running the real limitlion, driven by JSON requests; killed on drop.
#[derive(Debug)]
pub struct LimitlionDriver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl LimitlionDriver {
    /// Starts the driver and configures limitlion against `redis_url`; `testing` selects
    /// limitlion's frozen-time script (keys `frozen_second`/`frozen_microsecond`).
    ///
    /// # Errors
    /// When the venv is missing or the driver cannot start.
    ///
    /// # Panics
    /// Never in practice: stdin and stdout are piped just before they are taken.
    pub fn start(redis_url: &str, testing: bool) -> Result<Self, FixtureError> {
        let mut child = Command::new(python()?)
            .args(["-c", DRIVER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut driver = Self {
            child,
            stdin,
            stdout,
        };
        let reply = driver.send(&serde_json::json!({
            "op": "configure", "url": redis_url, "testing": testing
        }))?;
        match reply.get("error") {
            None => Ok(driver),
            Some(e) => Err(std::io::Error::other(format!("configure limitlion: {e}")).into()),
        }
    }

    /// Sends one request and returns the reply (which may be `{"error": ...}`).
    ///
    /// # Errors
    /// When the driver has died.
    pub fn send(&mut self, request: &Value) -> Result<Value, FixtureError> {
        writeln!(self.stdin, "{request}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("limitlion driver exited").into());
        }
        serde_json::from_str(&line).map_err(|e| std::io::Error::other(e).into())
    }

    /// Sends a request and panics on any error: for tests.
    ///
    /// # Panics
    /// When the driver fails or replies with an error.
    pub fn call(&mut self, request: &Value) -> Value {
        let reply = self.send(request).expect("limitlion driver");
        assert!(reply.get("error").is_none(), "limitlion {request}: {reply}");
        reply
    }
}

impl Drop for LimitlionDriver {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
