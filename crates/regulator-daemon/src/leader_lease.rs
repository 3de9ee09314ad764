//! The leader lease: several replicas may run, one writes. A lease key taken with
//! `SET NX PX` and renewed by a script that checks the owner's token; a leader that dies is
//! replaced within one lease length.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;

use regulator::{Client, Result};

const LEASE: &str = include_str!("../lua/lease.lua");
const RELEASE: &str = include_str!("../lua/release.lua");

/// What a lease attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// This replica holds the lease.
    pub held: bool,
    /// When the lease (this replica's or the holder's) runs out, if it has an expiry.
    pub expires_in: Option<Duration>,
    /// The lease server's clock when this replica took or renewed the lease, in
    /// microseconds (0 when it does not hold it); see `lua/lease.lua`.
    pub epoch: u64,
}

/// One replica's claim on the lease.
#[derive(Debug, Clone)]
pub struct LeaderLease {
    client: Client,
    key: Arc<str>,
    token: Arc<str>,
    length: Duration,
    scripts: Arc<(Script, Script)>,
}

impl LeaderLease {
    /// A claim on `key` lasting `length` unless renewed. The token names this replica
    /// (host, process, start time) so the holder can be seen with `GET`.
    #[must_use]
    pub fn new(client: Client, key: &str, length: Duration) -> Self {
        Self::with_token(client, key, length, &Self::new_token())
    }

    /// A claim on `key` under a given token: the same replica keeps its token across
    /// reconnects and reloads, so it renews rather than competes with itself.
    #[must_use]
    pub fn with_token(client: Client, key: &str, length: Duration, token: &str) -> Self {
        Self {
            client,
            key: key.into(),
            token: token.into(),
            length,
            scripts: Arc::new((Script::new(LEASE), Script::new(RELEASE))),
        }
    }

    /// A token naming this replica: host, process and start time.
    #[must_use]
    pub fn new_token() -> String {
        let host = std::fs::read_to_string("/etc/hostname")
            .map_or_else(|_| "unknown".to_owned(), |h| h.trim().to_owned());
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("{host}:{}:{nanos}", std::process::id())
    }

    /// The lease key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// This replica's token.
    #[must_use]
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Takes the lease if it is free, renews it if this replica holds it.
    ///
    /// # Errors
    /// The connection's errors: a replica that cannot reach Redis must assume it is not the
    /// leader.
    pub async fn acquire_or_renew(&self) -> Result<bool> {
        Ok(self.try_lead().await?.held)
    }

    /// As [`LeaderLease::acquire_or_renew`], saying also how long the lease runs: this replica's
    /// full length when it holds it, the holder's remaining time when another does.
    ///
    /// # Errors
    /// The connection's errors.
    pub async fn try_lead(&self) -> Result<Standing> {
        let ms = u64::try_from(self.length.as_millis()).unwrap_or(u64::MAX);
        let script = &self.scripts.0;
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha
            .arg(script.get_hash())
            .arg(1)
            .arg(&*self.key)
            .arg(&*self.token)
            .arg(ms);
        let (held, ttl, epoch): (i64, i64, String) =
            self.client.run_script(script, &evalsha).await?;
        Ok(Standing {
            held: held == 1,
            // PTTL is -1 for a key someone set without expiry: no known end.
            expires_in: u64::try_from(ttl).ok().map(Duration::from_millis),
            epoch: epoch.parse().unwrap_or(0),
        })
    }

    /// Gives the lease up if this replica holds it.
    ///
    /// # Errors
    /// The connection's errors.
    pub async fn release(&self) -> Result<()> {
        let script = &self.scripts.1;
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha
            .arg(script.get_hash())
            .arg(1)
            .arg(&*self.key)
            .arg(&*self.token);
        let _: i64 = self.client.run_script(script, &evalsha).await?;
        Ok(())
    }
}
