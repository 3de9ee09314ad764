//! limitlion's admin operations: read a throttle, set or reset its knobs, delete it.

use std::time::Duration;

use super::connection::Client;
use super::error::{Error, Result};
use super::keys::{SUFFIXES, check_name};
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
    /// Knobs `concurrency` field (semaphores).
    pub concurrency: Option<String>,
    /// The other kinds of limiter found under this name.
    pub kinds: OtherKinds,
}

/// What the limiters other than limitlion's bucket hold for a throttle, raw, as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OtherKinds {
    /// Semaphore holders whose lease has not run out (`None`: no holders set).
    pub holders: Option<u64>,
    /// Semaphore holders in the set, expired leases not yet swept included.
    pub holders_total: Option<u64>,
    /// Leaky bucket `level` at its last call (`throttle:<name>:leaky`).
    pub leaky_level: Option<String>,
    /// How long the leaky bucket stays blocked (`None`: not blocked).
    pub leaky_blocked_for: Option<Duration>,
    /// Continuous bucket `tokens` at its last call (`throttle:<name>:continuous`).
    pub continuous_tokens: Option<String>,
    /// Time until the scheduled bucket's next free slot, zero when one is free now (`None`:
    /// no scheduled bucket, `throttle:<name>:scheduled`).
    pub scheduled_next: Option<Duration>,
}

/// Time from `now_us` to a stored instant in microseconds of Redis time, if it is later.
fn until(stored_us: Option<&str>, now_us: u64) -> Option<Duration> {
    let at = lua_tonumber(stored_us?)?;
    let left = at - now_us as f64;
    (left.is_finite() && left > 0.0).then(|| Duration::from_micros(left as u64))
}

/// The longest knobs TTL `set_knobs` accepts: 100 years, far inside what Redis can add to
/// its clock.
const MAX_KNOBS_TTL: Duration = Duration::from_secs(100 * 365 * 86_400);

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
    (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ),
    i64,
    i64,
);

/// `TIME`, `ZCARD holders`, `HMGET leaky`, `HGET continuous`, `HGET scheduled`.
type KindsReply = (
    (u64, u64),
    u64,
    (Option<String>, Option<String>),
    Option<String>,
    Option<String>,
);

/// The throttle a key belongs to: `throttle:<name>[:knobs|:history|:holders|...]`, with the
/// hash tag that cluster mode adds unwrapped.
fn throttle_name(key: &str, cluster: bool) -> Option<String> {
    let rest = key.strip_prefix("throttle:")?;
    let name = SUFFIXES
        .iter()
        .find_map(|s| rest.strip_suffix(s))
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
            .arg("concurrency")
            .cmd("PTTL")
            .arg(&bucket)
            .cmd("PTTL")
            .arg(&knobs);
        let ((tokens, refreshed), (rps, burst, window, concurrency), bucket_ttl, knobs_ttl): GetReply =
            self.call(false, |mut conn| {
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
            concurrency,
            kinds: self.other_kinds(name).await?,
        })
    }

    /// What the semaphore, leaky, continuous and scheduled limiters of `name` hold: one round
    /// trip (the keys share a slot), read at one Redis time.
    async fn other_kinds(&self, name: &str) -> Result<OtherKinds> {
        let keys = self.keys();
        let holders = keys.holders(name);
        let mut pipe = redis::pipe();
        pipe.cmd("TIME")
            .cmd("ZCARD")
            .arg(&holders)
            .cmd("HMGET")
            .arg(keys.leaky(name))
            .arg("level")
            .arg("blocked_until")
            .cmd("HGET")
            .arg(keys.continuous(name))
            .arg("tokens")
            .cmd("HGET")
            .arg(keys.scheduled(name))
            .arg("slot");
        let pipe = &pipe;
        let ((secs, micros), total, (level, blocked), continuous, slot): KindsReply = self
            .call(false, |mut conn| async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        let now_us = secs.saturating_mul(1_000_000).saturating_add(micros);
        let live = if total == 0 {
            None
        } else {
            let cmd = redis::cmd("ZCOUNT")
                .arg(&holders)
                .arg(now_us / 1000)
                .arg("+inf")
                .to_owned();
            let cmd = &cmd;
            Some(
                self.call(
                    false,
                    |mut conn| async move { cmd.query_async(&mut conn).await },
                )
                .await?,
            )
        };
        Ok(OtherKinds {
            holders: live,
            holders_total: (total > 0).then_some(total),
            leaky_level: level,
            leaky_blocked_for: until(blocked.as_deref(), now_us),
            continuous_tokens: continuous,
            scheduled_next: slot
                .as_deref()
                .map(|s| until(Some(s), now_us).unwrap_or_default()),
        })
    }

    /// Writes knobs by hand, atomically, with limitlion's `throttle_set` validation: every
    /// value given must be a float `>= 0` (and finite, and `window > 0`); a knob not given
    /// must already be stored. `ttl` sets the knobs' expiry, to the millisecond; `None` or
    /// zero leaves it as it is (limitlion's `knobs_ttl=0`).
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
        // Milliseconds, at least 1 for a TTL above zero; 0 leaves the TTL alone.
        let ttl_ms = match ttl {
            None => 0,
            Some(t) if t > MAX_KNOBS_TTL => {
                return Err(Error::InvalidArgument(format!(
                    "ttl must be at most {} s; got {} s",
                    MAX_KNOBS_TTL.as_secs(),
                    t.as_secs()
                )));
            }
            Some(t) => u64::try_from(t.as_millis())
                .unwrap_or(u64::MAX)
                .max(u64::from(!t.is_zero())),
        };
        let mut invocation = self.inner.scripts.set_knobs.key(self.keys().knobs(name));
        invocation.arg(ttl_ms);
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

    /// Deletes a throttle's bucket and knobs (limitlion's `throttle_delete`), and the state
    /// of its leaky, continuous and scheduled buckets, its semaphore holders, and the records
    /// of its token leases and drains.
    ///
    /// # Errors
    /// The connection's errors.
    pub async fn delete(&self, name: &str) -> Result<()> {
        check_name(name).map_err(Error::InvalidArgument)?;
        let keys = self.keys();
        self.del(&[
            keys.bucket(name),
            keys.knobs(name),
            keys.leaky(name),
            keys.continuous(name),
            keys.holders(name),
            keys.scheduled(name),
            keys.leases(name),
            keys.drains(name),
        ])
        .await
    }

    /// Names of the throttles that have a bucket, knobs or history in Redis, found with
    /// `SCAN` (which, unlike `KEYS`, does not block a busy server). Unsorted, may repeat.
    ///
    /// # Errors
    /// The connection's errors.
    pub async fn scan_throttles(&self) -> Result<Vec<String>> {
        let cluster = self.keys().cluster;
        let keys = self.scan_keys("throttle:*").await?;
        Ok(keys
            .iter()
            .filter_map(|k| throttle_name(k, cluster))
            .collect())
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

#[cfg(test)]
mod tests {
    use super::throttle_name;

    #[test]
    fn every_key_of_a_throttle_names_it() {
        use crate::client::keys::KeyLayout;
        for cluster in [false, true] {
            let k = KeyLayout { cluster };
            let n = "orders";
            for key in [
                k.bucket(n),
                k.knobs(n),
                k.history(n),
                k.fence(n),
                k.leaky(n),
                k.continuous(n),
                k.holders(n),
                k.scheduled(n),
                k.leases(n),
                k.drains(n),
            ] {
                assert_eq!(
                    throttle_name(&key, cluster).as_deref(),
                    Some("orders"),
                    "{key}"
                );
            }
        }
        assert_eq!(throttle_name("frozen_second", false), None);
    }
}
