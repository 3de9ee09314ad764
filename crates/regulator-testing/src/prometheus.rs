//! A private `prometheus` on a free loopback port, scraping given targets every second.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{FixtureError, Running, await_ready, find, free_port, retry_ports};

const INSTALL: &str = "apt-get install -y --no-install-recommends prometheus";

/// A `prometheus` server started for one test, killed on drop.
#[derive(Debug)]
pub struct PrometheusServer {
    process: Running,
    port: u16,
    targets: Vec<String>,
    dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`) at a 1 s interval;
    /// returns once it reports ready. The first scrape lands about a second later.
    ///
    /// # Errors
    /// [`FixtureError::Missing`] when `prometheus` is not installed, or when it is not ready
    /// in time.
    pub fn start(targets: &[String]) -> Result<Self, FixtureError> {
        let dir = tempfile::Builder::new()
            .prefix("regulator-prom-")
            .tempdir()?;
        let mut server = Self {
            process: Running::default(),
            port: 0,
            targets: targets.to_vec(),
            dir,
        };
        retry_ports(free_port, |port| {
            server.port = port;
            server.spawn()
        })?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), FixtureError> {
        let bin = find("prometheus", INSTALL)?;
        let targets = self
            .targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = self.dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: test\n    scrape_interval: 1s\n    \
                 static_configs:\n      - targets: [{targets}]\n"
            ),
        )?;
        let log = self.dir.path().join("prometheus.log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--web.enable-lifecycle")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let port = self.port;
        self.process = await_ready("prometheus", child, Duration::from_secs(30), &log, || {
            http_get(port, "/-/ready").and_then(|(status, _)| {
                (status == 200)
                    .then_some(())
                    .ok_or(format!("status {status}"))
            })
        })?;
        Ok(())
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (SIGKILL).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts it again on the same port, with the same data directory.
    ///
    /// # Errors
    /// As [`PrometheusServer::start`].
    pub fn restart(&mut self) -> Result<(), FixtureError> {
        self.stop();
        self.spawn()
    }

    /// `GET path` on the server: status code and body.
    ///
    /// # Errors
    /// A description of what failed.
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.port, path)
    }
}

/// A minimal HTTP/1.0 GET on loopback, so the fixture needs no HTTP client crate.
fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}
