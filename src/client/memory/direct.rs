//! [`MemoryBucket`]: one bucket, one atomic number.

use std::future::{Future, ready};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::Padded;
use super::clock::Clock;
#[cfg(any(test, feature = "test-util"))]
use super::clock::duration_nanos;
use super::gcra::Gcra;
use crate::client::decision::Decision;
use crate::client::error::Result;
use crate::client::limiter::Limiter;

/// One token bucket in memory, shared by every thread that holds it (put it in an `Arc`).
/// Implements [`Limiter`], so code written for the Redis [`TokenBucket`](crate::TokenBucket)
/// can limit one process instead.
///
/// The bucket refills continuously, `min(capacity, tokens + rate·dt)`, starts full, and takes a
/// request all or nothing. It is one atomic number (GCRA's theoretical arrival time), updated
/// by compare-and-swap: lock-free and exact under any number of threads (no negative count, no
/// lost token), with no timer thread. Whole token counts are exact: a full bucket allows
/// exactly `capacity` tokens at once, and one that waited `n / rate` seconds has earned `n`
/// tokens, not a fraction less.
///
/// The clock is the CPU's time-stamp counter read through `quanta`, as governor reads it,
/// calibrated against the OS monotonic clock (the first limiter a process makes spends about
/// a millisecond, at most 200, on that); where the counter is not invariant, that clock
/// itself.
///
/// ```
/// # fn main() -> Result<(), regulator::Error> {
/// let bucket = regulator::MemoryBucket::new(100.0, 10.0)?; // 100 tokens/s, bursts of 10
/// assert!(bucket.try_consume(10.0)?); // a new bucket is full
/// let d = bucket.consume_now(1.0)?;
/// assert!(!d.allowed);
/// assert!(d.sleep <= std::time::Duration::from_millis(10)); // one token comes every 10 ms
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemoryBucket {
    pub(super) gcra: Gcra,
    pub(super) clock: Clock,
    /// On a cache line of its own: a thread's update does not evict the constants from the
    /// other cores' caches.
    pub(super) tat: Padded<AtomicU64>,
}

impl MemoryBucket {
    /// A full bucket that earns `rate` tokens a second and holds at most `capacity`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a rate that is not above 0 and at most [`MAX_RATE`](super::MAX_RATE), a
    /// capacity that is not a finite number of at least 1, or a bucket that would take longer
    /// than [`MAX_REFILL`](super::MAX_REFILL) to refill.
    pub fn new(rate: f64, capacity: f64) -> Result<Self> {
        let gcra = Gcra::new(rate, capacity)?;
        Ok(Self {
            tat: Padded::default(),
            clock: Clock::new(&gcra),
            gcra,
        })
    }

    /// Tokens earned per second.
    #[must_use]
    pub fn rate(&self) -> f64 {
        self.gcra.rate
    }

    /// The most tokens the bucket holds.
    #[must_use]
    pub fn capacity(&self) -> f64 {
        self.gcra.capacity
    }

    /// Takes `tokens` if the bucket holds that many, all or nothing; the fast path.
    ///
    /// Any finite number above 0 is accepted, fractions too (falconry's `token-bucket` wants
    /// whole tokens of at least 1). A request above the capacity is always denied.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for `tokens` that is not a finite number above 0.
    #[inline]
    pub fn try_consume(&self, tokens: f64) -> Result<bool> {
        let Some(cost) = self.gcra.cost(tokens)? else {
            return Ok(false);
        };
        Ok(self
            .gcra
            .take(&self.tat.0, self.clock.ticks(), cost)
            .is_ok())
    }

    /// As [`try_consume`](Self::try_consume), with the whole [`Decision`]: the tokens left
    /// and, when denied, how long until `tokens` will be there ([`Duration::MAX`](std::time::Duration::MAX): never,
    /// `tokens` is above the capacity).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for `tokens` that is not a finite number above 0.
    pub fn consume_now(&self, tokens: f64) -> Result<Decision> {
        self.consume_at_ticks(tokens, self.clock.ticks())
    }

    /// Tokens the bucket holds now.
    #[must_use]
    pub fn tokens(&self) -> f64 {
        self.tokens_at_ticks(self.clock.ticks())
    }

    pub(super) fn consume_at_ticks(&self, tokens: f64, now: u64) -> Result<Decision> {
        let cost = self.gcra.cost(tokens)?;
        let outcome = match cost {
            Some(cost) => self.gcra.take(&self.tat.0, now, cost),
            None => Err(self.tat.0.load(Relaxed)),
        };
        Ok(self.gcra.decision(now, cost, outcome))
    }

    pub(super) fn tokens_at_ticks(&self, now: u64) -> f64 {
        self.gcra.left(self.tat.0.load(Relaxed), now)
    }
}

/// A frozen clock for tests: `now` is the time since the bucket was made.
#[cfg(any(test, feature = "test-util"))]
impl MemoryBucket {
    /// [`consume_now`](Self::consume_now) at `now` after the bucket was made.
    ///
    /// # Errors
    /// As [`consume_now`](Self::consume_now).
    pub fn consume_at(&self, tokens: f64, now: std::time::Duration) -> Result<Decision> {
        self.consume_at_ticks(tokens, self.gcra.ticks(duration_nanos(now)))
    }

    /// [`tokens`](Self::tokens) at `now` after the bucket was made.
    #[must_use]
    pub fn tokens_at(&self, now: std::time::Duration) -> f64 {
        self.tokens_at_ticks(self.gcra.ticks(duration_nanos(now)))
    }
}

impl Limiter for MemoryBucket {
    fn consume(&self, tokens: f64) -> impl Future<Output = Result<Decision>> + Send {
        ready(self.consume_now(tokens))
    }
}
