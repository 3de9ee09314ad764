//! The daemon's connections, made once per configuration and swapped whole on a reload.
//!
//! Redis is connected lazily and again after a failed attempt, so a daemon started while
//! Redis is down runs, reports not-ready and catches up when Redis arrives, instead of
//! exiting and being restarted in a loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::config::{Config, LeaderConfig, RedisConfig};
use super::secret::{self, SecretError};
use super::source::{Prometheus, SourceError};
use super::store::{Fence, KnobChange, KnobStore, RedisStore, Written};
use regulator::{Client, ClientBuilder, Error, Result, StoredKnobs};

/// Why a configuration's connections cannot be set up: a secret or certificate file.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The Prometheus client cannot be built.
    #[error(transparent)]
    Prometheus(#[from] SourceError),
    /// A Redis secret or certificate cannot be read.
    #[error("redis: {0}")]
    Redis(#[from] SecretError),
}

/// What the daemon's Redis connections are made with: `redis:` and the secrets and
/// certificates it points at, read when the configuration is applied. `Debug` shows no secret.
#[derive(Clone, PartialEq)]
pub struct RedisSettings {
    config: RedisConfig,
    password: Option<String>,
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &regulator::client::redact_url(&self.config.url))
            .field("cluster", &self.config.cluster)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisSettings {
    /// Reads the password and certificate files `config` names.
    ///
    /// # Errors
    /// A file or variable that cannot be read; the error names it, never its content.
    pub fn read(config: &RedisConfig) -> std::result::Result<Self, SecretError> {
        let password = secret::read(
            config.password_file.as_deref(),
            config.password_env.as_deref(),
            "password",
        )?;
        let (mut ca, mut identity) = (None, None);
        if let Some(tls) = &config.tls {
            if let Some(path) = &tls.ca_file {
                ca = Some(secret::read_pem(path, "tls.ca_file")?);
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                identity = Some((
                    secret::read_pem(cert, "tls.cert_file")?,
                    secret::read_pem(key, "tls.key_file")?,
                ));
            }
        }
        Ok(Self {
            config: config.clone(),
            password,
            ca,
            identity,
        })
    }

    /// A client builder with these settings and `redis.timeout` on every call.
    #[must_use]
    pub fn builder(&self) -> ClientBuilder {
        let c = &self.config;
        let mut builder = Client::builder(&c.url)
            .cluster(c.cluster)
            .call_timeout(c.timeout)
            .connect_timeout(c.timeout.max(Duration::from_secs(1)));
        if let Some(password) = &self.password {
            builder = builder.password(password.clone());
        }
        if let Some(ca) = &self.ca {
            builder = builder.tls_root_ca(ca.clone());
        }
        if let Some((cert, key)) = &self.identity {
            builder = builder.tls_identity(cert.clone(), key.clone());
        }
        builder
    }
}

/// A Redis connection made on first use.
#[derive(Debug)]
pub struct Redis {
    settings: RedisSettings,
    client: Mutex<Slot>,
    reachable: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Slot {
    client: Option<Client>,
    /// The last failed attempt: callers within a second get its error at once instead of
    /// queueing for a connect timeout each.
    failed: Option<(Instant, Failure)>,
}

/// A failed connect, kept to be told again: refused credentials stay an auth error (a
/// different fix from an unreachable server), anything else reads as unreachable.
#[derive(Debug, Clone)]
enum Failure {
    Auth(String),
    Other(String),
}

impl Failure {
    fn of(e: &Error) -> Self {
        match e {
            Error::Auth { source } => Self::Auth(source.to_string()),
            other => Self::Other(other.to_string()),
        }
    }

    fn error(&self) -> Error {
        match self {
            Self::Auth(why) => Error::Auth {
                source: redis::RedisError::from((
                    redis::ErrorKind::AuthenticationFailed,
                    "refused at the last attempt",
                    why.clone(),
                )),
            },
            Self::Other(why) => Error::Unreachable {
                source: std::io::Error::new(std::io::ErrorKind::NotConnected, why.clone()).into(),
            },
        }
    }
}

/// How long a failed connect is remembered.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

impl Redis {
    /// A connection with `settings`, made on first use; every call's outcome is recorded in
    /// `reachable`.
    #[must_use]
    pub fn new(settings: RedisSettings, reachable: Arc<AtomicBool>) -> Self {
        Self {
            settings,
            client: Mutex::new(Slot::default()),
            reachable,
        }
    }

    /// The connected client, connecting now if needed.
    ///
    /// # Errors
    /// The connection's error; the next call tries again.
    pub async fn client(&self) -> Result<Client> {
        let mut slot = self.client.lock().await;
        if let Some(client) = &slot.client {
            return Ok(client.clone());
        }
        if let Some((at, failure)) = &slot.failed
            && at.elapsed() < RECONNECT_AFTER
        {
            return Err(failure.error());
        }
        let client = self.settings.builder().connect().await;
        match self.note(client) {
            Ok(client) => {
                *slot = Slot {
                    client: Some(client.clone()),
                    failed: None,
                };
                Ok(client)
            }
            Err(e) => {
                slot.failed = Some((Instant::now(), Failure::of(&e)));
                Err(e)
            }
        }
    }

    /// Records whether Redis answered, for `/readyz`.
    ///
    /// # Errors
    /// `result`'s own.
    pub fn note<T>(&self, result: Result<T>) -> Result<T> {
        match &result {
            Ok(_) => self.reachable.store(true, Ordering::Relaxed),
            Err(e) if e.is_unavailable() || matches!(e, Error::Auth { .. }) => {
                self.reachable.store(false, Ordering::Relaxed);
            }
            Err(_) => {}
        }
        result
    }
}

/// The knob store over the lazily connected Redis.
#[derive(Debug, Clone)]
pub struct Store {
    redis: Arc<Redis>,
    knobs_ttl: Duration,
    history_len: u64,
    fence: Fence,
}

impl Store {
    async fn inner(&self) -> Result<RedisStore> {
        let client = self.redis.client().await?;
        Ok(RedisStore::new(client, self.knobs_ttl, self.history_len).fenced(self.fence.clone()))
    }
}

impl KnobStore for Store {
    async fn read(&self, names: &[String], knob: super::config::Knob) -> Result<Vec<StoredKnobs>> {
        let result = match self.inner().await {
            Ok(store) => store.read(names, knob).await,
            Err(e) => Err(e),
        };
        self.redis.note(result)
    }

    async fn write(&self, changes: &[KnobChange]) -> Result<Written> {
        let result = match self.inner().await {
            Ok(store) => store.write(changes).await,
            Err(e) => Err(e),
        };
        self.redis.note(result)
    }
}

/// Everything a tick and the lease talk to, for one configuration.
#[derive(Debug)]
pub struct Backends {
    /// Signals.
    pub source: Prometheus,
    /// Knobs.
    pub store: Store,
    /// The connection behind the store, shared with the lease.
    pub redis: Arc<Redis>,
    /// The lease.
    pub leader: LeaderConfig,
}

impl Backends {
    /// Whether a replica holding the lease under `self` may still hold it under `other`:
    /// the same Redis connection and the same lease key.
    #[must_use]
    pub fn same_lease(&self, other: &Backends) -> bool {
        Arc::ptr_eq(&self.redis, &other.redis) && self.leader.key == other.leader.key
    }

    /// The backends of `config`, writing knobs only under `leadership`'s lease. Secrets
    /// and certificates are read again every time, so a rotated file is picked up; the Redis
    /// connection of `previous` is kept when the Redis settings, secrets included, did not
    /// change (a reload must not drop a good connection).
    ///
    /// # Errors
    /// A secret or certificate file that cannot be read.
    pub fn new(
        config: &Config,
        previous: Option<&Backends>,
        reachable: &Arc<AtomicBool>,
        leadership: &Arc<super::leader::Leadership>,
    ) -> std::result::Result<Self, BackendError> {
        let source = Prometheus::new(&config.prometheus)?;
        let settings = RedisSettings::read(&config.redis)?;
        let redis = match previous {
            Some(p) if p.redis.settings == settings => Arc::clone(&p.redis),
            _ => Arc::new(Redis::new(settings, Arc::clone(reachable))),
        };
        Ok(Self {
            source,
            store: Store {
                redis: Arc::clone(&redis),
                knobs_ttl: config.redis.knobs_ttl,
                history_len: config.history.max_len,
                fence: Fence::led_by(&config.leader.key, leadership),
            },
            redis,
            leader: config.leader.clone(),
        })
    }
}
