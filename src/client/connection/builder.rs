//! [`ClientBuilder`]: the options of a [`Client`] (timeouts, TLS, credentials, cluster seeds)
//! and how it connects.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::{TcpSettings, socket2};

use super::{Client, Conn, DEFAULT_CALL_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, Inner, redact};
use crate::client::error::{Error, Result};
use crate::client::keys::KeyLayout;
use crate::client::scripts::Scripts;

/// Options for [`Client`]; start from [`Client::builder`] (one server) or
/// [`Client::cluster_builder`] (Redis Cluster). Its `Debug` shows no credential.
#[derive(Clone)]
pub struct ClientBuilder {
    url: String,
    /// More seed nodes of a cluster, beside `url`.
    seeds: Vec<String>,
    cluster: bool,
    call_timeout: Duration,
    connect_timeout: Duration,
    tls_root_ca: Option<Vec<u8>>,
    coalesce: bool,
    /// Client certificate and key (PEM) for mutual TLS.
    tls_identity: Option<(Vec<u8>, Vec<u8>)>,
    username: Option<String>,
    password: Option<String>,
    frozen_time: bool,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("url", &redact(&self.url))
            .field(
                "seeds",
                &self.seeds.iter().map(|u| redact(u)).collect::<Vec<_>>(),
            )
            .field("cluster", &self.cluster)
            .field("call_timeout", &self.call_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_root_ca", &self.tls_root_ca.is_some())
            .field("coalesce", &self.coalesce)
            .field("tls_identity", &self.tls_identity.is_some())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Bound on each call, including any reconnect it waits for (default 250 ms).
    #[must_use]
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Bound on establishing a connection (default 1 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Trust this PEM-encoded CA for `rediss://` instead of the built-in web PKI roots,
    /// for servers with certificates from a private CA.
    #[must_use]
    pub fn tls_root_ca(mut self, pem: Vec<u8>) -> Self {
        self.tls_root_ca = Some(pem);
        self
    }

    /// Whether concurrent [`TokenBucket::consume`](crate::TokenBucket::consume) calls of this
    /// process on one bucket share script calls (default: on). Decisions are exactly those
    /// of one call at a time (see `lua/token_bucket_batch.lua`); only the round trips differ.
    #[must_use]
    pub fn coalesce(mut self, coalesce: bool) -> Self {
        self.coalesce = coalesce;
        self
    }

    /// Presents this PEM-encoded certificate and private key to the server, for servers that
    /// require client certificates (mutual TLS, `tls-auth-clients yes`). Only for `rediss://`.
    #[must_use]
    pub fn tls_identity(mut self, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        self.tls_identity = Some((cert_pem, key_pem));
        self
    }

    /// Authenticates as this ACL user, instead of the URL's (`redis://user@host`).
    #[must_use]
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Authenticates with this password, instead of the URL's, so a secret read from a file
    /// or the environment need not be written into a URL. Never shown by `Debug` or in errors.
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Treats the URL as a seed node of a Redis Cluster: the client discovers the other
    /// nodes, routes each call to the node that holds its keys and follows `MOVED`/`ASK`
    /// redirections and topology changes. Throttle names get the hash tag
    /// `throttle:{<name>}` so a throttle's keys share a slot; every client and the daemon of
    /// one cluster must use this mode. TLS (`rediss://`, [`tls_root_ca`](Self::tls_root_ca))
    /// and credentials (`user:password@`) work as for one server and apply to every node.
    #[must_use]
    pub fn cluster(mut self, cluster: bool) -> Self {
        self.cluster = cluster;
        self
    }

    /// Adds another seed node of the cluster (used only with [`cluster`](Self::cluster)), so
    /// the client can start while the first seed is down. Every seed must use the same
    /// scheme and credentials.
    #[must_use]
    pub fn seed(mut self, url: &str) -> Self {
        self.seeds.push(url.to_owned());
        self
    }

    /// Test support: run the frozen-clock variant of the scripts, which read time from the
    /// keys `frozen_second`/`frozen_microsecond` while they exist (as limitlion's
    /// `throttle_configure(testing=True)` does).
    #[cfg(feature = "test-util")]
    #[must_use]
    pub fn frozen_time(mut self, frozen: bool) -> Self {
        self.frozen_time = frozen;
        self
    }

    /// Connects.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad URL, [`Error::Unreachable`] or [`Error::Timeout`]
    /// when Redis cannot be reached within the connect timeout, [`Error::Auth`] when it
    /// refuses the credentials.
    pub async fn connect(self) -> Result<Client> {
        let connect = async {
            if self.cluster {
                self.connect_cluster().await.map(Conn::Cluster)
            } else {
                self.connect_single().await.map(Conn::Single)
            }
        };
        let conn = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::Timeout(self.connect_timeout)),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                conn,
                scripts: Scripts::new(self.frozen_time),
                keys: KeyLayout {
                    cluster: self.cluster,
                },
                timeout: self.call_timeout,
                target: redact(&self.url),
                degraded: AtomicBool::new(false),
                fallbacks: AtomicU64::new(0),
                coalesce: self.coalesce,
            }),
        })
    }

    fn bad_url(url: &str, e: &redis::RedisError) -> Error {
        Error::InvalidArgument(format!("redis URL {}: {e}", redact(url)))
    }

    fn tls_certificates(&self) -> Option<redis::TlsCertificates> {
        if self.tls_root_ca.is_none() && self.tls_identity.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self.tls_identity.clone().map(|(client_cert, client_key)| {
                redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }
            }),
            root_cert: self.tls_root_ca.clone(),
        })
    }

    /// `info` with the credentials given to the builder in place of the URL's.
    fn with_credentials(&self, info: redis::ConnectionInfo) -> redis::ConnectionInfo {
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &self.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        info.set_redis_settings(settings)
    }

    /// A TLS option given for a plain `redis://` URL would be ignored: refuse it instead.
    fn check_tls(&self, url: &str) -> Result<()> {
        let tls_options = self.tls_root_ca.is_some() || self.tls_identity.is_some();
        if tls_options && !url.starts_with("rediss://") {
            return Err(Error::InvalidArgument(format!(
                "redis URL {}: a TLS CA or client certificate needs a rediss:// URL",
                redact(url)
            )));
        }
        Ok(())
    }

    async fn connect_single(&self) -> Result<ConnectionManager> {
        if !self.seeds.is_empty() {
            return Err(Error::InvalidArgument(
                "more than one seed URL is only for a cluster; set ClientBuilder::cluster(true)"
                    .to_owned(),
            ));
        }
        self.check_tls(&self.url)?;
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| Self::bad_url(&self.url, &e))?
            .set_tcp_settings(tcp_settings());
        let info = self.with_credentials(info);
        let client = match self.tls_certificates() {
            None => redis::Client::open(info),
            Some(certs) => redis::Client::build_with_tls(info, certs),
        }
        .map_err(|e| Self::bad_url(&self.url, &e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.call_timeout))
            // Fail fast and let the next call try again: a limiter that waits seconds for
            // Redis to come back blocks the work it is meant to pace.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| Error::from_redis(e, false, self.connect_timeout))
    }

    async fn connect_cluster(&self) -> Result<ClusterConnection> {
        let mut seeds = Vec::with_capacity(1 + self.seeds.len());
        for url in std::iter::once(&self.url).chain(&self.seeds) {
            self.check_tls(url)?;
            let info = url
                .as_str()
                .into_connection_info()
                .map_err(|e| Self::bad_url(url, &e))?;
            if info.redis_settings().db() != 0 {
                return Err(Error::InvalidArgument(format!(
                    "redis URL {}: Redis Cluster has only database 0",
                    redact(url)
                )));
            }
            seeds.push(self.with_credentials(info));
        }
        let mut builder = redis::cluster::ClusterClientBuilder::new(seeds)
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.call_timeout)
            .tcp_settings(tcp_settings())
            // Redirections and a node coming back are retried within the call timeout,
            // which bounds the whole call anyway.
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(100);
        if let Some(certs) = self.tls_certificates() {
            builder = builder.certs(certs);
        }
        let client = builder.build().map_err(|e| Self::bad_url(&self.url, &e))?;
        client
            .get_async_connection()
            .await
            .map_err(|e| Error::from_redis(e, false, self.connect_timeout))
    }
}

/// Socket options for the connection. `TCP_NODELAY`: calls are small and pipelined, and
/// Nagle's algorithm would hold each write back until the previous one is acknowledged
/// (measured: it halves throughput on loopback). Keepalive: a connection whose peer vanished
/// without a FIN (a partition, a crashed host) is noticed and replaced.
fn tcp_settings() -> TcpSettings {
    TcpSettings::default().set_nodelay(true).set_keepalive(
        socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(30))
            .with_interval(Duration::from_secs(10)),
    )
}

impl Client {
    /// Options for a connection to `url`.
    #[must_use]
    pub fn builder(url: &str) -> ClientBuilder {
        ClientBuilder {
            url: url.to_owned(),
            seeds: Vec::new(),
            cluster: false,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls_root_ca: None,
            coalesce: true,
            tls_identity: None,
            username: None,
            password: None,
            frozen_time: false,
        }
    }
}
