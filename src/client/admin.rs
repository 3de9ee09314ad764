//! limitlion's admin operations: read a throttle, set or reset its knobs, delete it.

use std::time::Duration;

use super::connection::Client;
use super::error::{Error, Result};
use super::keys::check_name;
use super::knobs::{KnobsUpdate, StoredKnobs, lua_tonumber};
use super::model::Bucket;

/// A throttle's state as stored in Redis, raw, as limitlion's `throttle_get` returns it
/// (`[tokens, refreshed, rps, burst, window]`), plus the keys' TTLs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThrottleState {
    /// Bucket `tokens` field.
    pub tokens: Option<String>,
    /// Bucket `refreshed` field (start of the current window, Unix seconds).
    pub refreshed: Option<String>,
    /// Knobs `rps` field.
    pub rps: Option<String>,
    /// Knobs `burst` field.
    pub burst: Option<String>,
    /// Knobs `window` field.
    pub window: Option<String>,
    /// Time until the bucket expires (`None`: no bucket, or no expiry).
    pub bucket_ttl: Option<Duration>,
    /// Time until the knobs expire (`None`: no knobs, or no expiry).
    pub knobs_ttl: Option<Duration>,
}

impl ThrottleState {
    /// The stored knobs as the script would read them.
    #[must_use]
    pub fn knobs(&self) -> StoredKnobs {
        StoredKnobs::from_fields(
            self.rps.as_deref(),
            self.burst.as_deref(),
            self.window.as_deref(),
        )
    }

    /// The bucket's fields as numbers (as the script reads them).
    #[must_use]
    pub fn bucket(&self) -> Bucket {
        Bucket {
            tokens: self.tokens.as_deref().and_then(lua_tonumber),
            refreshed: self.refreshed.as_deref().and_then(lua_tonumber),
        }
    }
}

/// `HMGET bucket`, `HMGET knobs`, `PTTL bucket`, `PTTL knobs`.
type GetReply = (
    (Option<String>, Option<String>),
    (Option<String>, Option<String>, Option<String>),
    i64,
    i64,
);

/// The throttle a key belongs to: `throttle:<name>[:knobs|:history|:holders|:scheduled]`,
/// with the hash tag that cluster mode adds unwrapped.
fn throttle_name(key: &str, cluster: bool) -> Option<String> {
    let rest = key.strip_prefix("throttle:")?;
    let name = [":knobs", ":history", ":holders", ":scheduled"]
        .iter()
        .find_map(|suffix| rest.strip_suffix(suffix))
        .unwrap_or(rest);
    let name = if cluster {
        name.strip_prefix('{')
            .and_then(|n| n.strip_suffix('}'))
            .unwrap_or(name)
    } else {
        name
    };
    (!name.is_empty()).then(|| name.to_owned())
}

fn ttl(ms: i64) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}

impl Client {
    /// Reads a throttle's bucket and knobs in one round trip, without changing anything.
    ///
    /// # Errors
    /// The connection's errors; [`Error::InvalidArgument`] for an empty name.
    pub async fn get(&self, name: &str) -> Result<ThrottleState> {
        check_name(name).map_err(Error::InvalidArgument)?;
        let keys = self.keys();
        let (bucket, knobs) = (keys.bucket(name), keys.knobs(name));
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(&bucket)
            .arg("tokens")
            .arg("refreshed")
            .cmd("HMGET")
            .arg(&knobs)
            .arg("rps")
            .arg("burst")
            .arg("window")
            .cmd("PTTL")
            .arg(&bucket)
            .cmd("PTTL")
            .arg(&knobs);
        let ((tokens, refreshed), (rps, burst, window), bucket_ttl, knobs_ttl): GetReply = self
            .call(false, |mut conn| {
                let pipe = &pipe;
                async move { pipe.query_async(&mut conn).await }
            })
            .await?;
        Ok(ThrottleState {
            tokens,
            refreshed,
            rps,
            burst,
            window,
            bucket_ttl: ttl(bucket_ttl),
            knobs_ttl: ttl(knobs_ttl),
        })
    }

    /// Writes knobs by hand, atomically, with limitlion's `throttle_set` validation: every
    /// value given must be a float `>= 0` (and finite, and `window > 0`); a knob not given
    /// must already be stored. `ttl` (whole seconds) sets the knobs' expiry; `None` leaves
    /// it as it is.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad value, or naming the knobs that are neither
    /// given nor stored (nothing is written then); the connection's errors.
    pub async fn set_knobs(
        &self,
        name: &str,
        knobs: impl Into<KnobsUpdate>,
        ttl: Option<Duration>,
    ) -> Result<()> {
        check_name(name).map_err(Error::InvalidArgument)?;
        let fields = knobs.into().fields()?;
        let ttl_secs = ttl.map_or(0, |t| t.as_secs().max(1));
        let mut invocation = self.inner.scripts.set_knobs.key(self.keys().knobs(name));
        invocation.arg(ttl_secs);
        for (field, value) in fields {
            invocation.arg(field).arg(value);
        }
        let invocation = &invocation;
        let missing: Vec<String> = self
            .call(true, |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "throttle {name:?} has no stored {} and none was given",
                missing.join(", ")
            )))
        }
    }

    /// Deletes a throttle's knobs, so workers go back to their defaults (limitlion's
    /// `throttle_reset`). The bucket keeps its tokens.
    ///
    /// # Errors
    /// The connection's errors.
    pub async fn reset_knobs(&self, name: &str) -> Result<()> {
        check_name(name).map_err(Error::InvalidArgument)?;
        self.del(&[self.keys().knobs(name)]).await
    }

    /// Deletes a throttle's bucket and knobs (limitlion's `throttle_delete`).
    ///
    /// # Errors
    /// The connection's errors.
    pub async fn delete(&self, name: &str) -> Result<()> {
        check_name(name).map_err(Error::InvalidArgument)?;
        let keys = self.keys();
        self.del(&[keys.bucket(name), keys.knobs(name)]).await
    }

    /// Names of the throttles that have a bucket, knobs or history in Redis, found with
    /// `SCAN` (which, unlike `KEYS`, does not block a busy server). Unsorted, may repeat.
    ///
    /// # Errors
    /// The connection's errors.
    pub async fn scan_throttles(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut cursor = 0u64;
        loop {
            let cmd = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("throttle:*")
                .arg("COUNT")
                .arg(1000)
                .to_owned();
            let cmd = &cmd;
            let (next, keys): (u64, Vec<String>) = self
                .call(
                    false,
                    |mut conn| async move { cmd.query_async(&mut conn).await },
                )
                .await?;
            let cluster = self.keys().cluster;
            names.extend(keys.iter().filter_map(|k| throttle_name(k, cluster)));
            if next == 0 {
                return Ok(names);
            }
            cursor = next;
        }
    }

    async fn del(&self, keys: &[String]) -> Result<()> {
        let cmd = redis::cmd("DEL").arg(keys).to_owned();
        let cmd = &cmd;
        let _: i64 = self
            .call(
                false,
                |mut conn| async move { cmd.query_async(&mut conn).await },
            )
            .await?;
        Ok(())
    }
}
