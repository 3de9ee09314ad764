//! [`Client`]: one multiplexed, auto-reconnecting Redis connection shared by every limiter.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::{TcpSettings, socket2};

use super::error::{Error, Result};
use super::keys::KeyLayout;
use super::knobs::Knobs;
use super::scripts::Scripts;
use super::token_bucket::TokenBucket;

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
    conn: ConnectionManager,
    pub(crate) scripts: Scripts,
    pub(crate) keys: KeyLayout,
    pub(crate) timeout: Duration,
    target: String,
    degraded: AtomicBool,
    fallbacks: AtomicU64,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("redis", &self.inner.target)
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Options for [`Client`]; start from [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    url: String,
    call_timeout: Duration,
    connect_timeout: Duration,
    tls_root_ca: Option<Vec<u8>>,
    frozen_time: bool,
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
        let bad_url = |e: redis::RedisError| {
            Error::InvalidArgument(format!("redis URL {}: {e}", redact(&self.url)))
        };
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(bad_url)?
            .set_tcp_settings(tcp_settings());
        let client = match self.tls_root_ca {
            None => redis::Client::open(info),
            Some(pem) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            ),
        }
        .map_err(bad_url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.call_timeout))
            // Fail fast and let the next call try again: a limiter that waits seconds for
            // Redis to come back blocks the work it is meant to pace.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let connect = ConnectionManager::new_with_config(client, config);
        let conn = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(Error::from_redis(e, false, self.connect_timeout)),
            Err(_) => return Err(Error::Timeout(self.connect_timeout)),
        };
        Ok(Client {
            inner: Arc::new(Inner {
                conn,
                scripts: Scripts::new(self.frozen_time),
                keys: KeyLayout::default(),
                timeout: self.call_timeout,
                target: redact(&self.url),
                degraded: AtomicBool::new(false),
                fallbacks: AtomicU64::new(0),
            }),
        })
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

    /// Options for a connection to `url`.
    #[must_use]
    pub fn builder(url: &str) -> ClientBuilder {
        ClientBuilder {
            url: url.to_owned(),
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            tls_root_ca: None,
            frozen_time: false,
        }
    }

    /// A limitlion-compatible token bucket named `name`. `defaults` apply while the throttle
    /// has no knobs in Redis (or its knobs are unusable).
    #[must_use]
    pub fn token_bucket(&self, name: impl Into<String>, defaults: Knobs) -> TokenBucket {
        TokenBucket::new(self.clone(), name.into(), defaults)
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

    /// A clone of the connection for one call.
    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// Runs one Redis call under the call timeout and classifies its error.
    ///
    /// A call that fails because the connection had dropped (a restarted server, a reset
    /// link) is made once more on the fresh connection, within the same timeout, so the
    /// first call after Redis comes back succeeds. Repeating a token-bucket call is safe for
    /// the limit: if the first attempt did reach Redis, the bucket lost a token to it and
    /// allows less, never more.
    pub(crate) async fn call<T, F>(
        &self,
        script: bool,
        attempt: impl FnMut(ConnectionManager) -> F,
    ) -> Result<T>
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
        mut attempt: impl FnMut(ConnectionManager) -> F,
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
        self.call(true, |mut conn| async move {
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

/// The URL with any password replaced, for logs and errors.
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
