//! `regulator run` as the built binary, on a free port, with its HTTP endpoints and logs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use regulator_testing::free_port;

/// A running `regulator run`, killed on drop.
pub struct Regulator {
    pub child: Child,
    pub port: u16,
    /// Its log lines, when captured.
    logs: Option<std::sync::mpsc::Receiver<String>>,
}

impl Regulator {
    /// `regulator run --config FILE`, after rewriting `listen` to a free port.
    pub fn start(config: &Path, extra: &[&str]) -> Self {
        Self::spawn(config, extra, false)
    }

    /// As [`Regulator::start`], its log lines read by [`Regulator::wait_log`].
    pub fn start_logged(config: &Path, extra: &[&str]) -> Self {
        Self::spawn(config, extra, true)
    }

    /// As [`Regulator::start_logged`], with more environment variables.
    pub fn start_logged_with(config: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_with(config, extra, true, env)
    }

    pub fn spawn(config: &Path, extra: &[&str], logged: bool) -> Self {
        Self::spawn_with(config, extra, logged, &[])
    }

    fn spawn_with(config: &Path, extra: &[&str], logged: bool, env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let text = std::fs::read_to_string(config).unwrap();
        std::fs::write(
            config,
            text.replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_regulator"))
            .args(["run", "--config"])
            .arg(config)
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(if logged {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .expect("start regulator");
        let mut child = child;
        let logs = child.stderr.take().map(|stderr| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("{line}");
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        let r = Self { child, port, logs };
        let start = Instant::now();
        while r.get("/healthz").is_none() {
            assert!(start.elapsed() < Duration::from_secs(10), "no /healthz");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let status = out.get(9..12)?.parse().ok()?;
        let body = out.split_once("\r\n\r\n")?.1.to_owned();
        Some((status, body))
    }

    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = self.get("/metrics")?;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{signal}");
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < within, "still running after {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for a log line containing `text`.
    pub fn wait_log(&self, text: &str, within: Duration) {
        self.logs_until(text, within);
    }

    /// Every log line up to and including the first that contains `text`.
    pub fn logs_until(&self, text: &str, within: Duration) -> Vec<String> {
        let logs = self.logs.as_ref().expect("started with start_logged");
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match logs.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(e) => panic!("no log line with {text:?} within {within:?}: {e}; saw {seen:#?}"),
            }
        }
    }

    pub fn wait_metric(&self, series: &str, within: Duration, ok: impl Fn(f64) -> bool) {
        let start = Instant::now();
        while !self.metric(series).is_some_and(&ok) {
            assert!(
                start.elapsed() < within,
                "{series} = {:?} after {within:?}",
                self.metric(series)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Regulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
