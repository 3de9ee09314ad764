//! [`ScheduledBucket`]: a token bucket that never denies but schedules: each call reserves the
//! time its tokens are available and the caller sleeps until then (`lua/scheduled_bucket.lua`;
//! the `limiters` library's `TokenBucket`). It paces work rather than shedding it.

pub(crate) mod blocking;

use std::time::{Duration, SystemTime};

use super::connection::Client;
use super::decision::Source;
use super::error::{Error, Result};
use super::keys::check_name;
use super::reply;
use super::script_call::ScriptCall;
use super::scripts::ScriptId;

/// The longest refill period, as the script bounds it: 2^42 µs, about 50 days.
const MAX_PERIOD: Duration = Duration::from_micros(1 << 42);

/// How often a caller willing to wait forever looks again at a bucket paused by `rps = 0`.
const PAUSE_POLL: Duration = Duration::from_secs(1);

/// A scheduled bucket's parameters: it holds up to `capacity` tokens and gains
/// `refill_amount` of them every `refill_every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledParams {
    /// Tokens a full bucket holds (at least 1): how many calls pass at once after a lull.
    /// The knob `capacity`, when stored, applies instead.
    pub capacity: u32,
    /// The refill period (1 µs to about 50 days). The knob `rps`, when stored, applies
    /// instead as `refill_amount / rps` seconds.
    pub refill_every: Duration,
    /// Tokens added each period (at least 1).
    pub refill_amount: u32,
}

impl ScheduledParams {
    /// Checks the parameters: `capacity >= 1`, `refill_amount >= 1`,
    /// `1 µs <= refill_every <= 2^42 µs`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        if self.capacity == 0 || self.refill_amount == 0 {
            return Err(Error::InvalidArgument(format!(
                "scheduled bucket capacity and refill_amount must be at least 1; got {} and {}",
                self.capacity, self.refill_amount
            )));
        }
        if self.refill_every < Duration::from_micros(1) || self.refill_every > MAX_PERIOD {
            return Err(Error::InvalidArgument(format!(
                "scheduled bucket refill_every must be from 1 µs to {MAX_PERIOD:?}; got {:?}",
                self.refill_every
            )));
        }
        Ok(())
    }
}

/// A reservation: the slot at which the tokens are the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// How long from the reservation until the slot: the caller's sleep (zero when the
    /// tokens are there now).
    pub wait: Duration,
    /// The slot, in Redis time.
    pub slot: SystemTime,
    /// Which values applied: the caller's, the stored knobs, or the caller's in place of an
    /// unusable knob.
    pub source: Source,
    /// The capacity that applied.
    pub capacity: u32,
    /// The refill period that applied; zero when the `rps` knob is `-1` (no limit).
    pub refill_every: Duration,
}

/// A named scheduled bucket shared through Redis by every worker that uses the same name.
/// Cheap to clone.
///
/// ```no_run
/// # async fn f() -> Result<(), regulator::Error> {
/// use std::time::Duration;
/// use regulator::ScheduledParams;
/// let client = regulator::Client::connect("redis://127.0.0.1:6379/0").await?;
/// // 10 calls a second, in bursts of at most 5.
/// let api = client.scheduled_bucket(
///     "partner-api",
///     ScheduledParams { capacity: 5, refill_every: Duration::from_millis(100), refill_amount: 1 },
/// );
/// let r = api.acquire(1, Duration::from_secs(5)).await?; // slept r.wait; Err(MaxWaitExceeded) past 5 s
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ScheduledBucket {
    params: ScheduledParams,
    /// `EVALSHA <sha> 2 <state> <knobs> <capacity> <refill amount> <refill every us>`.
    call: ScriptCall,
}

crate::client::script_call::limiter_accessors!(ScheduledBucket, call, params: ScheduledParams);

impl Client {
    /// A scheduled bucket named `name` (see [`ScheduledBucket`]). The throttle's `rps` and
    /// `capacity` knobs, when stored, replace the corresponding `params` field by field.
    #[must_use]
    pub fn scheduled_bucket(
        &self,
        name: impl Into<String>,
        params: ScheduledParams,
    ) -> ScheduledBucket {
        let name = name.into();
        let keys = self.keys();
        let keys = [keys.scheduled(&name), keys.knobs(&name)];
        let call = ScriptCall::new(
            self.clone(),
            name,
            ScriptId::ScheduledBucket,
            &keys,
            |cmd| {
                cmd.arg(params.capacity)
                    .arg(params.refill_amount)
                    .arg(micros(params.refill_every));
            },
        );
        ScheduledBucket { params, call }
    }
}

impl ScheduledBucket {
    /// Reserves the next slot at which `tokens` are available, without sleeping; the caller
    /// sleeps [`Reservation::wait`]. Tokens beyond those left come from as many future
    /// refills as needed.
    ///
    /// `max_wait` bounds the wait (`Duration::ZERO`: no bound). The bound is checked in the
    /// script, so a reservation that would wait longer takes nothing: the next caller gets the
    /// slot this one would have had. While the `rps` knob is 0 (paused) a bounded call fails
    /// at once and an unbounded one looks again every second.
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`] (its `retry_after` is the wait the slot would have needed);
    /// [`Error::InvalidArgument`] before any call for zero tokens, invalid parameters or an
    /// empty name; otherwise the connection's errors.
    pub async fn reserve(&self, tokens: u32, max_wait: Duration) -> Result<Reservation> {
        self.check(tokens)?;
        let start = tokio::time::Instant::now();
        loop {
            let (status, r) = self.call(tokens, max_wait).await?;
            match status {
                1 | 3 => return Ok(r),
                0 => {
                    return Err(Error::MaxWaitExceeded {
                        waited: start.elapsed(),
                        retry_after: r.wait,
                    });
                }
                _paused if !max_wait.is_zero() => {
                    return Err(Error::MaxWaitExceeded {
                        waited: start.elapsed(),
                        retry_after: PAUSE_POLL,
                    });
                }
                _paused => tokio::time::sleep(PAUSE_POLL).await,
            }
        }
    }

    /// [`reserve`](Self::reserve)s, then sleeps until the slot.
    ///
    /// # Errors
    /// As [`reserve`](Self::reserve); on an error it does not sleep.
    pub async fn acquire(&self, tokens: u32, max_wait: Duration) -> Result<Reservation> {
        let r = self.reserve(tokens, max_wait).await?;
        tokio::time::sleep(r.wait).await;
        Ok(r)
    }

    async fn call(&self, tokens: u32, max_wait: Duration) -> Result<(i64, Reservation)> {
        let max_wait = if max_wait.is_zero() {
            0
        } else {
            micros(max_wait).max(1)
        };
        let (status, wait, slot, source, capacity, period): (i64, i64, i64, i64, i64, i64) = self
            .call
            .run(|cmd| {
                cmd.arg(tokens).arg(max_wait);
            })
            .await?;
        let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or_default());
        let capacity = u32::try_from(capacity)
            .map_err(|_| Error::Script(format!("unexpected capacity {capacity} in reply")))?;
        let reservation = Reservation {
            wait: us(wait),
            slot: SystemTime::UNIX_EPOCH + us(slot),
            source: reply::source(source)?,
            capacity,
            refill_every: us(period),
        };
        Ok((status, reservation))
    }

    fn check(&self, tokens: u32) -> Result<()> {
        if tokens == 0 {
            return Err(Error::InvalidArgument(
                "tokens must be at least 1; got 0".to_owned(),
            ));
        }
        check_name(self.name()).map_err(Error::InvalidArgument)?;
        self.params.validate()
    }
}

/// Whole microseconds, bounded by 2^53 so the script's doubles hold them exactly.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).map_or(1 << 53, |us| us.min(1 << 53))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked() {
        let ok = ScheduledParams {
            capacity: 1,
            refill_every: Duration::from_micros(1),
            refill_amount: 1,
        };
        assert!(ok.validate().is_ok());
        for bad in [
            ScheduledParams { capacity: 0, ..ok },
            ScheduledParams {
                refill_amount: 0,
                ..ok
            },
            ScheduledParams {
                refill_every: Duration::from_nanos(999),
                ..ok
            },
            ScheduledParams {
                refill_every: MAX_PERIOD + Duration::from_micros(1),
                ..ok
            },
        ] {
            assert!(matches!(bad.validate(), Err(Error::InvalidArgument(_))));
        }
    }

    #[test]
    fn micros_are_exact_for_doubles() {
        assert_eq!(micros(Duration::from_millis(1)), 1000);
        assert_eq!(micros(Duration::MAX), 1 << 53);
    }
}
