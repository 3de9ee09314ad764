//! Where the daemon connects: Redis, Prometheus, the leader lease and the history stream.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::duration;

/// `redis:`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`, or `rediss://` for TLS.
    pub url: String,
    /// Redis Cluster: names are wrapped in a hash tag so a throttle's keys share a slot.
    pub cluster: bool,
    /// Bound on each Redis call.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// TTL of the knobs the daemon writes; workers' calls refresh it too.
    #[serde(with = "duration")]
    pub knobs_ttl: Duration,
    /// A file holding the password (read at start and on reload; never logged). Replaces a
    /// password in the URL, which must then have none.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
    /// Certificates for `rediss://`.
    pub tls: Option<RedisTls>,
}

/// `redis.tls:`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTls {
    /// A PEM CA bundle to trust instead of the web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// The daemon's client certificate (PEM), for servers that require one (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM).
    pub key_file: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379/0".to_owned(),
            cluster: false,
            timeout: Duration::from_millis(250),
            knobs_ttl: regulator::client::DEFAULT_KNOBS_TTL,
            password_file: None,
            password_env: None,
            tls: None,
        }
    }
}

/// `prometheus:`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus HTTP API.
    pub url: String,
    /// Bound on each query, connection included.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// HTTP basic auth.
    pub basic_auth: Option<BasicAuth>,
    /// A file holding a bearer token (read at start and on reload; never logged).
    pub bearer_token_file: Option<PathBuf>,
    /// An environment variable holding a bearer token.
    pub bearer_token_env: Option<String>,
    /// A PEM CA bundle to trust for `https://`.
    pub ca_file: Option<PathBuf>,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:9090".to_owned(),
            timeout: Duration::from_secs(5),
            basic_auth: None,
            bearer_token_file: None,
            bearer_token_env: None,
            ca_file: None,
        }
    }
}

/// `prometheus.basic_auth:`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// A file holding the password.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    pub password_env: Option<String>,
}

/// `leader:`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeaderConfig {
    /// The lease key.
    pub key: String,
    /// How long a lease lasts without renewal: a dead leader is replaced within this.
    #[serde(with = "duration")]
    pub lease: Duration,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        Self {
            key: "regulator:leader".to_owned(),
            lease: Duration::from_secs(15),
        }
    }
}

/// `history:`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryConfig {
    /// Approximate cap of each throttle's history stream (`XADD MAXLEN ~`).
    pub max_len: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self { max_len: 1000 }
    }
}
