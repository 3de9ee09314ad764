//! [`Client`]: one multiplexed, auto-reconnecting Redis connection shared by every limiter.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::{TcpSettings, socket2};
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use super::error::{Error, Result};
use super::keys::KeyLayout;
use super::scripts::Scripts;

/// Default bound on one Redis call, reconnect included. A rate-limit decision that takes
/// longer than this is worth less than a quick, typed error the caller can fail open or
/// closed on.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// Default bound on establishing a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A handle to Redis for workers and tools. Cheap to clone; clones share one connection.
///
/// The connection is multiplexed (concurrent calls are pipelined on it) and reconnects on its
/// own after a failure. Every call is bounded by the call timeout.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    conn: Conn,
    pub(crate) scripts: Scripts,
    pub(crate) keys: KeyLayout,
    pub(crate) timeout: Duration,
    target: String,
    degraded: AtomicBool,
    fallbacks: AtomicU64,
    coalesce: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("redis", &self.inner.target)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// The connection under a [`Client`]: one server, or a Redis Cluster. Both multiplex
/// concurrent calls and reconnect on their own; cloning is cheap.
#[derive(Clone)]
pub(crate) enum Conn {
    /// A standalone server (or a replica set's primary behind one address).
    Single(ConnectionManager),
    /// A Redis Cluster: commands are routed by key slot, `MOVED`/`ASK` followed.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

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

impl Client {
    /// Connects with the default options.
    ///
    /// `url` is `redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS.
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// Connects to a Redis Cluster through one or more seed nodes, with the default options.
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`]; [`Error::InvalidArgument`] for no seed.
    pub async fn connect_cluster(seeds: &[&str]) -> Result<Self> {
        let Some((first, rest)) = seeds.split_first() else {
            return Err(Error::InvalidArgument(
                "a cluster needs at least one seed URL".to_owned(),
            ));
        };
        let builder = rest
            .iter()
            .fold(Self::cluster_builder(first), |b, url| b.seed(url));
        builder.connect().await
    }

    /// Options for a connection to the Redis Cluster that `seed` belongs to; see
    /// [`ClientBuilder::cluster`].
    #[must_use]
    pub fn cluster_builder(seed: &str) -> ClientBuilder {
        Self::builder(seed).cluster(true)
    }

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

    /// Whether token buckets coalesce concurrent calls ([`ClientBuilder::coalesce`]).
    #[must_use]
    pub fn coalesces(&self) -> bool {
        self.inner.coalesce
    }

    /// How key names are laid out for this connection.
    #[must_use]
    pub fn keys(&self) -> KeyLayout {
        self.inner.keys
    }

    /// How many decisions were made by a fail-open/fail-closed fallback because Redis was
    /// unavailable, since the client connected.
    #[must_use]
    pub fn fallbacks(&self) -> u64 {
        self.inner.fallbacks.load(Ordering::Relaxed)
    }

    /// The bound on one call ([`ClientBuilder::call_timeout`]).
    pub(crate) fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// A clone of the connection for one call.
    fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    /// Runs one Redis call under the call timeout and classifies its error.
    ///
    /// A call that fails because the connection had dropped (a restarted server, a reset
    /// link) is made once more on the fresh connection, within the same timeout, so the
    /// first call after Redis comes back succeeds (a cluster connection repeats such calls
    /// itself too). So every call made through here must be safe to repeat when its first
    /// attempt did reach Redis and only the reply was lost:
    /// - a call that only takes (a token, a drop, a slot) leaves the limit lower, never
    ///   higher: the fleet gets less, never more;
    /// - a call that gives back is applied once per id, checked in its script: a lease's
    ///   give-back by the lease id the script recorded, a leaky-bucket drain by its request
    ///   id, a semaphore release by its holder id (unique to each acquisition);
    /// - reads read again, and knob writes set the same values again (a repeated tick write
    ///   may record its history entry twice).
    pub(crate) async fn call<T, F>(&self, script: bool, attempt: impl FnMut(Conn) -> F) -> Result<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(self.inner.timeout, script, attempt).await
    }

    /// [`Client::call`] with its own bound, for a large pipeline whose Redis time grows with
    /// its length.
    pub(crate) async fn call_within<T, F>(
        &self,
        timeout: Duration,
        script: bool,
        mut attempt: impl FnMut(Conn) -> F,
    ) -> Result<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let both = async {
            match attempt(self.conn()).await {
                Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                    attempt(self.conn()).await
                }
                other => other,
            }
        };
        let result = match tokio::time::timeout(timeout, both).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::from_redis(e, script, timeout)),
            Err(_) => Err(Error::Timeout(timeout)),
        };
        self.note_availability(&result);
        result
    }

    /// Logs the moment Redis becomes unavailable and the moment it is back, once each, rather
    /// than once per failed call.
    fn note_availability<T>(&self, result: &Result<T>) {
        match result {
            Err(e) if e.is_unavailable() => {
                if !self.inner.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(redis = %self.inner.target, error = %e, "redis unavailable");
                }
            }
            _ => {
                if self.inner.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(redis = %self.inner.target, "redis available again");
                }
            }
        }
    }

    /// Runs a prepared `EVALSHA` of `script` under the call timeout. A server that does not
    /// know the script (restarted, flushed, a new cluster node) gets it loaded and the call
    /// made again.
    ///
    /// # Errors
    /// The connection's errors; a script failure is [`Error::Script`].
    pub(crate) async fn run_script<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        evalsha: &redis::Cmd,
    ) -> Result<T> {
        self.run_script_within(self.inner.timeout, script, evalsha)
            .await
    }

    /// [`Client::run_script`] with its own bound, for a script whose Redis time grows with
    /// its arguments.
    ///
    /// # Errors
    /// As [`Client::run_script`].
    pub(crate) async fn run_script_within<T: redis::FromRedisValue>(
        &self,
        timeout: Duration,
        script: &redis::Script,
        evalsha: &redis::Cmd,
    ) -> Result<T> {
        self.call_within(timeout, true, |mut conn| async move {
            match evalsha.query_async(&mut conn).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    script.load_async(&mut conn).await?;
                    evalsha.query_async(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    /// Runs groups of commands, where each group's keys share one hash slot (a throttle's keys
    /// do), and returns each group's replies.
    ///
    /// On one server every group goes into a single pipeline: one round trip. A cluster
    /// pipeline must stay within one slot, so there each group is its own pipeline, 64 in
    /// flight at once over the multiplexed connections.
    ///
    /// # Errors
    /// The connection's errors; the first error ends the whole call.
    pub(crate) async fn run_groups(
        &self,
        timeout: Duration,
        groups: &[Vec<Cmd>],
    ) -> Result<Vec<Vec<Value>>> {
        use futures_util::{StreamExt, TryStreamExt};

        if groups.iter().all(Vec::is_empty) {
            // Redis refuses an empty pipeline.
            return Ok(vec![Vec::new(); groups.len()]);
        }
        if !self.inner.keys.cluster {
            let mut pipe = redis::pipe();
            for cmd in groups.iter().flatten() {
                pipe.add_command(cmd.clone());
            }
            let flat = self.run_pipeline(timeout, &pipe).await?;
            let mut flat = flat.into_iter();
            return Ok(groups
                .iter()
                .map(|g| flat.by_ref().take(g.len()).collect())
                .collect());
        }
        let pipes: Vec<Pipeline> = groups
            .iter()
            .map(|g| {
                let mut pipe = redis::pipe();
                for cmd in g {
                    pipe.add_command(cmd.clone());
                }
                pipe
            })
            .collect();
        let pipes = &pipes;
        self.call_within(timeout, false, |conn| {
            let each = pipes.clone().into_iter().map(move |pipe| {
                let mut conn = conn.clone();
                async move {
                    if pipe.is_empty() {
                        Ok(Vec::new())
                    } else {
                        pipe.query_async::<Vec<Value>>(&mut conn).await
                    }
                }
            });
            futures_util::stream::iter(each).buffered(64).try_collect()
        })
        .await
    }

    /// Runs `pipe` on the one server (not a cluster: its commands may span slots), in one
    /// round trip.
    ///
    /// # Errors
    /// The connection's errors; the first error ends the whole call.
    pub(crate) async fn run_pipeline(
        &self,
        timeout: Duration,
        pipe: &Pipeline,
    ) -> Result<Vec<Value>> {
        self.call_within(timeout, false, |mut conn| async move {
            pipe.query_async(&mut conn).await
        })
        .await
    }

    /// [`Client::run_groups`] for groups that `EVALSHA` the script whose text is `source`: a
    /// server (or a cluster node) that does not know it (restarted, flushed, a new node) gets
    /// it loaded on every primary, and the groups run again once.
    ///
    /// # Errors
    /// As [`Client::run_groups`].
    pub(crate) async fn run_script_groups(
        &self,
        timeout: Duration,
        source: &str,
        groups: &[Vec<Cmd>],
    ) -> Result<Vec<Vec<Value>>> {
        match self.run_groups(timeout, groups).await {
            Err(Error::Redis { source: e })
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                self.load_everywhere(source).await?;
                self.run_groups(timeout, groups).await
            }
            other => other,
        }
    }

    /// Loads the script `source` on the one server, or on every primary of a cluster.
    async fn load_everywhere(&self, source: &str) -> Result<()> {
        let nodes = match &self.inner.conn {
            Conn::Single(_) => vec![None],
            Conn::Cluster(_) => self.primaries().await?.into_iter().map(Some).collect(),
        };
        for node in &nodes {
            let load = redis::cmd("SCRIPT").arg("LOAD").arg(source).to_owned();
            let _: String = self.on_node(node.as_ref(), load).await?;
        }
        Ok(())
    }

    /// Every key matching `pattern`, found with `SCAN` (which, unlike `KEYS`, does not block
    /// a busy server) on the one server or on each primary of a cluster. May repeat a key.
    /// Keys that are not UTF-8 are skipped with a warning.
    ///
    /// # Errors
    /// The connection's errors.
    pub(crate) async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>> {
        let nodes = match &self.inner.conn {
            Conn::Single(_) => vec![None],
            Conn::Cluster(_) => self.primaries().await?.into_iter().map(Some).collect(),
        };
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for node in &nodes {
            let mut cursor = 0u64;
            loop {
                let cmd = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .to_owned();
                let (next, batch): (u64, Vec<Vec<u8>>) = self.on_node(node.as_ref(), cmd).await?;
                for key in batch {
                    match String::from_utf8(key) {
                        Ok(key) => keys.push(key),
                        // No throttle is named so (names are text); one such key must not
                        // hide the others.
                        Err(e) => skipped.push(String::from_utf8_lossy(e.as_bytes()).into_owned()),
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        if !skipped.is_empty() {
            tracing::warn!(pattern, skipped = skipped.len(), examples = ?&skipped[..skipped.len().min(3)], "keys that are not UTF-8 were skipped");
        }
        Ok(keys)
    }

    /// Runs `cmd` on the given cluster node, or as usual when `node` is `None`.
    async fn on_node<T: redis::FromRedisValue>(
        &self,
        node: Option<&(String, u16)>,
        cmd: Cmd,
    ) -> Result<T> {
        let cmd = &cmd;
        let Some((host, port)) = node else {
            return self
                .call(
                    false,
                    |mut conn| async move { cmd.query_async(&mut conn).await },
                )
                .await;
        };
        let value: Value = self
            .call(false, |conn| async move {
                let Conn::Cluster(mut c) = conn else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::Client,
                        "a node address needs a cluster connection",
                    )));
                };
                let route = redis::cluster_routing::RoutingInfo::SingleNode(
                    redis::cluster_routing::SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    },
                );
                c.route_command(cmd.clone(), route).await
            })
            .await?;
        redis::from_redis_value(value).map_err(|e| Error::Script(format!("unexpected reply: {e}")))
    }

    /// The cluster's primaries (host, port), from `CLUSTER SLOTS`.
    async fn primaries(&self) -> Result<Vec<(String, u16)>> {
        let cmd = redis::cmd("CLUSTER").arg("SLOTS").to_owned();
        let cmd = &cmd;
        let ranges: Vec<Vec<Value>> = self
            .call(
                false,
                |mut conn| async move { cmd.query_async(&mut conn).await },
            )
            .await?;
        let mut primaries = Vec::new();
        for range in ranges {
            // [start, end, [host, port, id, ...], replicas...]
            let primary: Option<(String, u16)> = range.get(2).and_then(|node| {
                let redis::Value::Array(node) = node else {
                    return None;
                };
                let host = redis::from_redis_value_ref(node.first()?).ok()?;
                let port = redis::from_redis_value_ref(node.get(1)?).ok()?;
                Some((host, port))
            });
            let Some(primary) = primary else {
                return Err(Error::Script(format!(
                    "unexpected CLUSTER SLOTS entry: {range:?}"
                )));
            };
            if !primaries.contains(&primary) {
                primaries.push(primary);
            }
        }
        Ok(primaries)
    }

    pub(crate) fn count_fallback(&self) {
        self.inner.fallbacks.fetch_add(1, Ordering::Relaxed);
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

/// `url` with its password replaced by `***`, for logs and error messages.
#[must_use]
pub fn redact_url(url: &str) -> String {
    redact(url)
}

#[must_use]
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("redis://alice:s3cret@db:6379/0"),
            "redis://alice:***@db:6379/0"
        );
        assert_eq!(redact("rediss://:pw@db/1"), "rediss://:***@db/1");
        assert_eq!(redact("redis://db:6379"), "redis://db:6379");
    }
}
