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
        let (server, tls) = Self::tls_server(false, &[])?;
        Ok((server, tls.ca))
    }

    /// Starts a TLS-only server that requires a client certificate signed by its CA (mutual
    /// TLS, `tls-auth-clients yes`), with `extra` arguments; returns the server and the CA and
    /// client certificate to connect with, as PEM and as files.
    ///
    /// # Errors
    /// As [`RedisServer::start_tls`].
    pub fn start_mtls(extra: &[&str]) -> Result<(Self, TlsMaterial), FixtureError> {
        Self::tls_server(true, extra)
    }

    fn tls_server(
        require_client: bool,
        extra: &[&str],
    ) -> Result<(Self, TlsMaterial), FixtureError> {
        let dir = tempfile::Builder::new()
            .prefix("regulator-redis-")
            .tempdir()?;
        let pems = certificates().map_err(std::io::Error::other)?;
        let path = |f: &str| dir.path().join(f);
        let files = [
            ("ca.crt", &pems.ca),
            ("server.crt", &pems.server_cert),
            ("server.key", &pems.server_key),
            ("client.crt", &pems.client_cert),
            ("client.key", &pems.client_key),
        ];
        for (file, pem) in files {
            std::fs::write(path(file), pem)?;
        }
        let arg = |f: &str| path(f).to_string_lossy().into_owned();
        let mut args = vec![
            "--tls-port".to_owned(),
            "--tls-cert-file".to_owned(),
            arg("server.crt"),
            "--tls-key-file".to_owned(),
            arg("server.key"),
            "--tls-ca-cert-file".to_owned(),
            arg("ca.crt"),
            "--tls-auth-clients".to_owned(),
            if require_client { "yes" } else { "no" }.to_owned(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let material = TlsMaterial {
            ca_file: path("ca.crt"),
            cert_file: path("client.crt"),
            key_file: path("client.key"),
            ca: pems.ca.into_bytes(),
            cert: pems.client_cert.into_bytes(),
            key: pems.client_key.into_bytes(),
        };
        Ok((Self::start_in(dir, &args, free_port)?, material))
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
    match redis::cmd("PING").query::<String>(&mut conn) {
        Ok(_) => Ok(()),
        // A server with `requirepass` answers, and that is all readiness asks.
        Err(e) if e.code() == Some("NOAUTH") => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// What a client of a TLS server connects with: the CA to trust and a client certificate
/// the server accepts, as PEM and as files (kept while the server runs).
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// The CA's certificate file.
    pub ca_file: PathBuf,
    /// The client certificate file.
    pub cert_file: PathBuf,
    /// The client key file.
    pub key_file: PathBuf,
    /// The CA's certificate.
    pub ca: Vec<u8>,
    /// The client certificate.
    pub cert: Vec<u8>,
    /// The client certificate's key.
    pub key: Vec<u8>,
}

struct Pems {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

/// A private CA, and a server and a client certificate it signed.
fn certificates() -> Result<Pems, rcgen::Error> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    // Distinct subjects: OpenSSL (the server, checking a client certificate) takes a
    // certificate whose subject equals its issuer's for self-signed and refuses it.
    let named = |names: Vec<String>, cn: &str| -> Result<CertificateParams, rcgen::Error> {
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        Ok(params)
    };
    let mut ca_params = named(Vec::new(), "regulator test CA")?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate()?;
    let server = named(
        vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        "redis-server",
    )?
    .signed_by(&server_key, &issuer)?;
    let client_key = KeyPair::generate()?;
    let client =
        named(vec!["regulator".to_owned()], "regulator")?.signed_by(&client_key, &issuer)?;
    Ok(Pems {
        ca: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    })
}
