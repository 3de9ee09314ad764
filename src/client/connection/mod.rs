//! [`Client`]: one multiplexed, auto-reconnecting Redis connection shared by every limiter.
//!
//! - `builder`: [`ClientBuilder`]: timeouts, TLS, credentials, cluster seeds, connecting.
//! - `calls`: one call under the call timeout, its error classified, repeated once on a
//!   fresh connection; scripts loaded on `NOSCRIPT`; pipelines.
//! - `cluster`: groups of commands by hash slot, scripts loaded on every primary, `SCAN` on
//!   every primary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

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

mod builder;
mod calls;
mod cluster;

pub use builder::ClientBuilder;

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
    #[must_use]
    pub fn call_timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// A clone of the connection for one call.
    fn conn(&self) -> Conn {
        self.inner.conn.clone()
    }

    pub(crate) fn count_fallback(&self) {
        self.inner.fallbacks.fetch_add(1, Ordering::Relaxed);
    }
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
