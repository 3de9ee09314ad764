//! A private `redis-server` on a free loopback port.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::process::{FixtureError, Running, await_ready, find, free_port, retry_ports};

const INSTALL: &str = "apt-get install -y --no-install-recommends redis-server";
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A `redis-server` started for one test, with persistence off, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    process: Running,
    port: u16,
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port.
    ///
    /// # Errors
    /// [`FixtureError::Missing`] when `redis-server` is not installed, or when it does not
    /// answer `PING` in time.
    pub fn start() -> Result<Self, FixtureError> {
        Self::with_args(&[])
    }

    /// Starts a server with extra command-line arguments (`["--maxmemory", "1mb"]`, TLS...).
    ///
    /// # Errors
    /// As [`RedisServer::start`].
    pub fn with_args(args: &[&str]) -> Result<Self, FixtureError> {
        let dir = tempfile::Builder::new()
            .prefix("regulator-redis-")
            .tempdir()?;
        Self::start_in(dir, args, free_port)
    }

    /// As [`RedisServer::with_args`], on a port chosen by `pick` (retried on a collision).
    pub(crate) fn with_port(args: &[&str], pick: fn() -> u16) -> Result<Self, FixtureError> {
        let dir = tempfile::Builder::new()
            .prefix("regulator-redis-")
            .tempdir()?;
        Self::start_in(dir, args, pick)
    }

    /// Starts a TLS-only server (`rediss://`) with a certificate for `127.0.0.1` and
    /// `localhost` from a fresh private CA; returns the server and the CA's PEM to trust.
    ///
    /// # Errors
    /// As [`RedisServer::start`], or when the certificates cannot be made.
    pub fn start_tls() -> Result<(Self, Vec<u8>), FixtureError> {
        let dir = tempfile::Builder::new()
            .prefix("regulator-redis-")
            .tempdir()?;
        let (ca, cert, key) = certificates().map_err(std::io::Error::other)?;
        let path = |f: &str| dir.path().join(f).to_string_lossy().into_owned();
        for (file, pem) in [("ca.crt", &ca), ("server.crt", &cert), ("server.key", &key)] {
            std::fs::write(path(file), pem)?;
        }
        let args = [
            "--tls-port".to_owned(),
            "--tls-cert-file".to_owned(),
            path("server.crt"),
            "--tls-key-file".to_owned(),
            path("server.key"),
            "--tls-ca-cert-file".to_owned(),
            path("ca.crt"),
            "--tls-auth-clients".to_owned(),
            "no".to_owned(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok((Self::start_in(dir, &args, free_port)?, ca.into_bytes()))
    }

    fn start_in(
        dir: tempfile::TempDir,
        args: &[&str],
        pick: fn() -> u16,
    ) -> Result<Self, FixtureError> {
        let mut server = Self {
            process: Running::default(),
            port: 0,
            extra: args.iter().map(|s| (*s).to_owned()).collect(),
            dir,
        };
        retry_ports(pick, |port| {
            server.port = port;
            server.spawn()
        })?;
        Ok(server)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn spawn(&mut self) -> Result<(), FixtureError> {
        let bin = find("redis-server", INSTALL)?;
        let port = self.port.to_string();
        let tls = self.is_tls();
        let extra: Vec<&str> = self
            .extra
            .iter()
            .map(String::as_str)
            .filter(|a| *a != "--tls-port")
            .collect();
        let mut cmd = Command::new(bin);
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--port", if tls { "0" } else { &port }])
            .args(["--dir".as_ref(), self.dir.path().as_os_str()])
            .args(["--logfile".as_ref(), self.log_path().as_os_str()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if tls {
            // The TLS port is given in `extra`; the plain port is off.
            cmd.args(["--tls-port", &port]);
        }
        let url = self.admin_url();
        self.process = await_ready(
            "redis-server",
            cmd.spawn()?,
            READY_TIMEOUT,
            &self.log_path(),
            || ping(&url),
        )?;
        Ok(())
    }

    /// The server's port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/0`, or `rediss://` for a TLS server.
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}/0", self.port)
    }

    fn is_tls(&self) -> bool {
        self.extra.iter().any(|a| a == "--tls-port")
    }

    fn admin_url(&self) -> String {
        if self.is_tls() {
            // Readiness over TLS is checked by the TCP accept alone.
            format!("tcp://127.0.0.1:{}", self.port)
        } else {
            self.url()
        }
    }

    /// A plain synchronous connection, for tests to arrange and inspect state directly.
    ///
    /// # Panics
    /// When the server does not accept a connection.
    #[must_use]
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("connect to the test redis-server")
    }

    /// Runs a command on a fresh connection and returns its reply.
    ///
    /// # Panics
    /// When the command fails.
    #[must_use]
    pub fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut self.connection())
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Freezes the scripts' clock (frozen-time variant only) at `second`.`usec`.
    ///
    /// # Panics
    /// When Redis does not accept the write.
    pub fn freeze_time(&self, second: i64, usec: u32) {
        let _: () = redis::cmd("MSET")
            .arg("frozen_second")
            .arg(second)
            .arg("frozen_microsecond")
            .arg(usec)
            .query(&mut self.connection())
            .expect("freeze time");
    }

    /// Stops the server (as a crash would: SIGKILL). [`restart`](Self::restart) brings it
    /// back on the same port with an empty dataset and script cache.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Starts the server again on the same port.
    ///
    /// # Errors
    /// As [`RedisServer::start`].
    pub fn restart(&mut self) -> Result<(), FixtureError> {
        self.stop();
        self.spawn()
    }
}

/// `PING` over a plain connection; for a `tcp://` URL, a TCP connect.
pub(crate) fn ping(url: &str) -> Result<(), String> {
    if let Some(addr) = url.strip_prefix("tcp://") {
        return std::net::TcpStream::connect(addr)
            .map(drop)
            .map_err(|e| e.to_string());
    }
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .map_err(|e| e.to_string())?;
    redis::cmd("PING")
        .query::<String>(&mut conn)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// A private CA and a server certificate it signed: (CA PEM, certificate PEM, key PEM).
fn certificates() -> Result<(String, String, String), rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?
        .signed_by(&key, &issuer)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}
