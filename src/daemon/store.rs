//! Where the daemon reads and writes knobs: the `KnobStore` trait, and Redis behind it.
//!
//! Every write of a tick goes in one pipeline: `HSET` of the fields that changed (never the
//! others), `EXPIRE` with the knobs TTL, and an `XADD ... MAXLEN ~` history entry saying what
//! changed and why.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::config::Knob;
use crate::client::keys::KeyLayout;
use crate::{Client, Knobs, Result, StoredKnobs};

/// One knob change the daemon decided.
#[derive(Debug, Clone, PartialEq)]
pub struct KnobChange {
    /// The throttle.
    pub name: String,
    /// Which knob: the rate fields, or `concurrency` (then `rps` holds the concurrency,
    /// a whole number, and burst and window are 1).
    pub knob: Knob,
    /// The knobs in force before (`None`: none stored, or unusable).
    pub old: Option<Knobs>,
    /// The knobs to write.
    pub new: Knobs,
    /// The signal value that led here, if there was one.
    pub signal: Option<f64>,
    /// The control law.
    pub law: &'static str,
    /// Why: "overloaded", "headroom", "no data: min"...
    pub reason: String,
}

/// Reads and writes knobs. Redis in production; in-memory in unit tests.
pub trait KnobStore: Send + Sync {
    /// The stored knobs of each throttle, in order. For [`Knob::Concurrency`], the stored
    /// `concurrency` as the `rps` of knobs whose burst and window are 1.
    fn read(
        &self,
        names: &[String],
        knob: Knob,
    ) -> impl Future<Output = Result<Vec<StoredKnobs>>> + Send;
    /// Writes the changes of one tick, with their history.
    fn write(&self, changes: &[KnobChange]) -> impl Future<Output = Result<()>> + Send;
}

/// The Redis knob store.
#[derive(Debug, Clone)]
pub struct RedisStore {
    client: Client,
    keys: KeyLayout,
    knobs_ttl: Duration,
    history_len: u64,
}

impl RedisStore {
    /// A store writing knobs with `knobs_ttl` and keeping about `history_len` entries of
    /// history per throttle.
    #[must_use]
    pub fn new(client: Client, knobs_ttl: Duration, history_len: u64) -> Self {
        Self {
            keys: client.keys(),
            client,
            knobs_ttl,
            history_len,
        }
    }
}

impl RedisStore {
    /// The bound on a pipeline of `commands`: the call timeout, plus 50 µs a command (10,000
    /// throttles add half a second), since Redis executes them one after the other.
    fn bound(&self, commands: usize) -> Duration {
        self.client.inner.timeout
            + Duration::from_micros(50) * u32::try_from(commands).unwrap_or(u32::MAX)
    }
}

/// The stored `concurrency` field as the knobs a concurrency policy works on: a whole number
/// of at least 1 (as the semaphore reads it), else unusable.
#[must_use]
pub fn concurrency_knobs(field: Option<&str>) -> StoredKnobs {
    let Some(text) = field else {
        return StoredKnobs::Absent;
    };
    match crate::client::lua_tonumber(text) {
        Some(c) if c >= 1.0 && c.fract() == 0.0 && c <= f64::from(u32::MAX) => {
            StoredKnobs::Valid(Knobs {
                rps: c,
                burst: 1.0,
                window: 1.0,
            })
        }
        _ => StoredKnobs::Invalid(format!("concurrency {text:?} is not a whole number >= 1")),
    }
}

/// The fields whose values differ (all three when nothing valid was stored).
fn changed_fields(knob: Knob, old: Option<Knobs>, new: Knobs) -> Vec<(&'static str, f64)> {
    if knob == Knob::Concurrency {
        return if old.is_some_and(|o| o.rps == new.rps) {
            Vec::new()
        } else {
            vec![("concurrency", new.rps)]
        };
    }
    let fields = [
        ("rps", new.rps),
        ("burst", new.burst),
        ("window", new.window),
    ];
    match old {
        None => fields.to_vec(),
        Some(o) => fields
            .into_iter()
            .zip([o.rps, o.burst, o.window])
            .filter(|((_, n), o)| n != o)
            .map(|(f, _)| f)
            .collect(),
    }
}

impl KnobStore for RedisStore {
    async fn read(&self, names: &[String], knob: Knob) -> Result<Vec<StoredKnobs>> {
        if names.is_empty() {
            // Redis refuses an empty pipeline.
            return Ok(Vec::new());
        }
        let groups: Vec<Vec<redis::Cmd>> = names
            .iter()
            .map(|name| {
                let mut hmget = redis::cmd("HMGET");
                hmget.arg(self.keys.knobs(name));
                match knob {
                    Knob::Rate => hmget.arg("rps").arg("burst").arg("window"),
                    Knob::Concurrency => hmget.arg("concurrency"),
                };
                vec![hmget]
            })
            .collect();
        let replies = self
            .client
            .run_groups(self.bound(names.len()), &groups)
            .await?;
        replies
            .into_iter()
            .map(|mut reply| {
                let bad = |e: redis::ParsingError| {
                    crate::Error::Script(format!("unexpected HMGET reply: {e}"))
                };
                let fields: Vec<Option<String>> =
                    redis::from_redis_value(reply.pop().unwrap_or(redis::Value::Nil))
                        .map_err(bad)?;
                let field = |i: usize| fields.get(i).cloned().flatten();
                Ok(match knob {
                    Knob::Rate => StoredKnobs::from_fields(
                        field(0).as_deref(),
                        field(1).as_deref(),
                        field(2).as_deref(),
                    ),
                    Knob::Concurrency => concurrency_knobs(field(0).as_deref()),
                })
            })
            .collect()
    }

    async fn write(&self, changes: &[KnobChange]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut groups: Vec<Vec<redis::Cmd>> = Vec::with_capacity(changes.len());
        for c in changes {
            let fields = changed_fields(c.knob, c.old, c.new);
            if fields.is_empty() {
                continue;
            }
            let mut group = Vec::with_capacity(4);
            let knobs_key = self.keys.knobs(&c.name);
            let mut hset = redis::cmd("HSET");
            hset.arg(&knobs_key);
            for (field, value) in &fields {
                hset.arg(*field).arg(value.to_string());
            }
            group.push(hset);
            group.push(
                redis::cmd("EXPIRE")
                    .arg(&knobs_key)
                    .arg(self.knobs_ttl.as_secs().max(1))
                    .to_owned(),
            );
            let old =
                |f: fn(&Knobs) -> f64| c.old.as_ref().map_or(String::new(), |k| f(k).to_string());
            let mut xadd = redis::cmd("XADD");
            xadd.arg(self.keys.history(&c.name))
                .arg("MAXLEN")
                .arg("~")
                .arg(self.history_len)
                .arg("*")
                .arg("ts_ms")
                .arg(now_ms.to_string());
            match c.knob {
                Knob::Rate => xadd
                    .arg("old_rps")
                    .arg(old(|k| k.rps))
                    .arg("old_burst")
                    .arg(old(|k| k.burst))
                    .arg("old_window")
                    .arg(old(|k| k.window))
                    .arg("rps")
                    .arg(c.new.rps.to_string())
                    .arg("burst")
                    .arg(c.new.burst.to_string())
                    .arg("window")
                    .arg(c.new.window.to_string()),
                Knob::Concurrency => xadd
                    .arg("old_concurrency")
                    .arg(old(|k| k.rps))
                    .arg("concurrency")
                    .arg(c.new.rps.to_string()),
            };
            xadd.arg("signal")
                .arg(c.signal.map_or(String::new(), |s| s.to_string()))
                .arg("law")
                .arg(c.law)
                .arg("reason")
                .arg(&c.reason);
            group.push(xadd);
            // The history lives as long as the knobs could: a throttle that is gone (a
            // tenant that left, a policy removed) leaves nothing behind for ever.
            group.push(
                redis::cmd("EXPIRE")
                    .arg(self.keys.history(&c.name))
                    .arg(self.knobs_ttl.as_secs().max(1))
                    .to_owned(),
            );
            groups.push(group);
        }
        if groups.is_empty() {
            return Ok(());
        }
        self.client
            .run_groups(self.bound(groups.len() * 4), &groups)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_fields_are_written() {
        let k = |rps, burst, window| Knobs { rps, burst, window };
        let rate = Knob::Rate;
        assert_eq!(changed_fields(rate, None, k(1.0, 2.0, 3.0)).len(), 3);
        assert_eq!(
            changed_fields(rate, Some(k(1.0, 2.0, 3.0)), k(5.0, 2.0, 3.0)),
            vec![("rps", 5.0)]
        );
        assert!(changed_fields(rate, Some(k(1.0, 2.0, 3.0)), k(1.0, 2.0, 3.0)).is_empty());
        let c = Knob::Concurrency;
        assert_eq!(
            changed_fields(c, Some(k(4.0, 1.0, 1.0)), k(5.0, 1.0, 1.0)),
            vec![("concurrency", 5.0)]
        );
        assert!(changed_fields(c, Some(k(4.0, 1.0, 1.0)), k(4.0, 1.0, 1.0)).is_empty());
        assert_eq!(changed_fields(c, None, k(4.0, 1.0, 1.0)).len(), 1);
    }

    #[test]
    fn stored_concurrency_must_be_a_whole_number() {
        assert_eq!(concurrency_knobs(None), StoredKnobs::Absent);
        assert!(matches!(concurrency_knobs(Some("12")), StoredKnobs::Valid(k) if k.rps == 12.0));
        for bad in ["0", "2.5", "-1", "nan", "x", "inf"] {
            assert!(
                matches!(concurrency_knobs(Some(bad)), StoredKnobs::Invalid(_)),
                "{bad}"
            );
        }
    }
}
