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
use super::source::{Prometheus, SourceError};
use super::store::{Fence, KnobChange, KnobStore, RedisStore, Written};
use crate::{Client, Error, Result, StoredKnobs};

/// A Redis connection made on first use.
#[derive(Debug)]
pub struct Redis {
    config: RedisConfig,
    client: Mutex<Slot>,
    reachable: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct Slot {
    client: Option<Client>,
    /// The last failed attempt: callers within a second get its error at once instead of
    /// queueing for a connect timeout each.
    failed: Option<(Instant, String)>,
}

/// How long a failed connect is remembered.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

impl Redis {
    /// A connection to `config.url`, made on first use; every call's outcome is recorded in
    /// `reachable`.
    #[must_use]
    pub fn new(config: RedisConfig, reachable: Arc<AtomicBool>) -> Self {
        Self {
            config,
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
        if let Some((at, why)) = &slot.failed
            && at.elapsed() < RECONNECT_AFTER
        {
            let e = std::io::Error::new(std::io::ErrorKind::NotConnected, why.clone());
            return Err(Error::Unreachable { source: e.into() });
        }
        let client = Client::builder(&self.config.url)
            .cluster(self.config.cluster)
            .call_timeout(self.config.timeout)
            .connect_timeout(self.config.timeout.max(Duration::from_secs(1)))
            .connect()
            .await;
        match self.note(client) {
            Ok(client) => {
                *slot = Slot {
                    client: Some(client.clone()),
                    failed: None,
                };
                Ok(client)
            }
            Err(e) => {
                slot.failed = Some((Instant::now(), e.to_string()));
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
    redis_config: RedisConfig,
}

impl Backends {
    /// Whether a replica holding the lease under `self` may still hold it under `other`:
    /// the same Redis connection and the same lease key.
    #[must_use]
    pub fn same_lease(&self, other: &Backends) -> bool {
        Arc::ptr_eq(&self.redis, &other.redis) && self.leader.key == other.leader.key
    }

    /// The backends of `config`, writing knobs only while the lease holds `token`. The Redis
    /// connection of `previous` is kept when the Redis settings did not change (a reload must
    /// not drop a good connection); Prometheus is rebuilt every time, so a rotated secret or
    /// CA file is read again.
    ///
    /// # Errors
    /// A Prometheus secret or CA file that cannot be read.
    pub fn new(
        config: &Config,
        previous: Option<&Backends>,
        reachable: &Arc<AtomicBool>,
        token: &Arc<str>,
    ) -> std::result::Result<Self, SourceError> {
        let source = Prometheus::new(&config.prometheus)?;
        let redis = match previous {
            Some(p) if p.redis_config == config.redis => Arc::clone(&p.redis),
            _ => Arc::new(Redis::new(config.redis.clone(), Arc::clone(reachable))),
        };
        Ok(Self {
            source,
            store: Store {
                redis: Arc::clone(&redis),
                knobs_ttl: config.redis.knobs_ttl,
                history_len: config.history.max_len,
                fence: Fence {
                    key: config.leader.key.clone(),
                    token: Arc::clone(token),
                },
            },
            redis,
            leader: config.leader.clone(),
            redis_config: config.redis.clone(),
        })
    }
}
