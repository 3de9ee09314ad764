//! [`MemoryLimiter`] and [`MemoryBucket`]: token buckets in this process's memory, for limits
//! that no other process shares (the Rust counterpart of falconry's Python `token-bucket`).
//!
//! # The arithmetic
//!
//! A bucket of rate `r` and capacity `c` refills continuously, `min(c, tokens + r·dt)`, and lets
//! a request of `n` tokens through, all or nothing, when it holds `n`. It is kept as one
//! number, the time at which it will be full again (GCRA's *theoretical arrival time*, `tat`):
//! it holds `c − r·max(0, tat − now)` tokens, and taking `n` sets `tat = max(tat, now) + n/r`,
//! allowed iff `tat − now ≤ c/r`. One number fits one [`AtomicU64`], so a call is one load and
//! one compare-and-swap: lock-free, exact under any number of threads (no negative count, no
//! lost token), and no timer thread.
//!
//! Time is counted in *ticks*, the time the bucket takes to earn `2^-k` token, with `k ≤ 32`
//! chosen per limiter so that the tick clock lasts over a century. Token counts that are whole
//! (or multiples of `2^-k`) are exact, and a monotonic clock reading becomes ticks with one
//! 128-bit multiplication by a factor rounded up, so a bucket that waited `n/r` seconds has
//! earned at least `n` tokens, never a tick less.
//!
//! # Memory
//!
//! A full bucket behaves exactly as one never used, so [`MemoryLimiter`] forgets it: when a
//! shard of its map has doubled since its last sweep, the next new key first sweeps the shard of
//! every full bucket. The cost is amortised over the insertions, the map stays within about
//! twice the number of buckets that are not full, and no state that matters is ever lost.

use std::future::{Future, ready};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

use super::error::{Error, Result};
use super::limiter::Limiter;
use super::token_bucket::{Decision, Source};

/// The highest rate an in-memory bucket takes: 2³¹ (about 2.1 billion) tokens a second.
/// Count larger units (KiB rather than bytes) above it.
pub const MAX_RATE: f64 = 2_147_483_648.0;

/// The longest time an empty in-memory bucket may take to refill (`capacity / rate`):
/// 2³¹ seconds, about 68 years.
pub const MAX_REFILL: Duration = Duration::from_secs(1 << 31);

/// Bits after the point in the ticks-per-nanosecond factor.
const FRAC: u32 = 62;
/// Finest tick: 2^-32 token.
const MAX_SHIFT: i32 = 32;
/// Shards of the keyed map; a power of two.
const SHARDS: usize = 64;
/// A shard is not swept before it holds this many keys.
const MIN_SWEEP: usize = 32;

/// One bucket's constants: capacity and clock in ticks.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    rate: f64,
    capacity: f64,
    /// Ticks per token, `2^k`.
    per_token: f64,
    /// The capacity in ticks.
    tau: u64,
    /// Ticks per nanosecond in fixed point (`FRAC` bits), rounded up.
    per_nano: u64,
}

impl Gcra {
    fn new(rate: f64, capacity: f64) -> Result<Self> {
        if !(rate > 0.0 && rate <= MAX_RATE) {
            return Err(invalid(format!(
                "rate must be a number of tokens per second above 0 and at most {MAX_RATE}; got {rate}"
            )));
        }
        if !(capacity >= 1.0 && capacity.is_finite()) {
            return Err(invalid(format!(
                "capacity must be a finite number of tokens of at least 1; got {capacity}"
            )));
        }
        let refill = capacity / rate;
        if refill > MAX_REFILL.as_secs_f64() {
            return Err(invalid(format!(
                "capacity / rate (the time an empty bucket takes to refill) must be at most \
                 {}s; got {refill}s",
                MAX_REFILL.as_secs()
            )));
        }
        // The most ticks per token such that ticks per second stay within 2^31: the clock
        // reaches 2^63 ticks after 136 years and the capacity stays within 2^62 ticks.
        let mut shift = MAX_SHIFT;
        while shift > 0 && rate * 2f64.powi(shift) > MAX_RATE {
            shift -= 1;
        }
        let per_token = 2f64.powi(shift);
        Ok(Self {
            rate,
            capacity,
            per_token,
            tau: (capacity * per_token).floor() as u64,
            per_nano: ticks_per_nano(rate, shift),
        })
    }

    /// The tick clock at `nanos` nanoseconds after the epoch.
    #[inline]
    fn ticks(&self, nanos: u64) -> u64 {
        ((u128::from(nanos) * u128::from(self.per_nano)) >> FRAC) as u64
    }

    /// The shortest time in which the clock advances by `ticks`.
    fn duration(&self, ticks: u64) -> Duration {
        let nanos = (u128::from(ticks) << FRAC).div_ceil(u128::from(self.per_nano));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// `tokens` in ticks, rounded up; `None` when more than the capacity (never allowed).
    #[inline]
    fn cost(&self, tokens: f64) -> Result<Option<u64>> {
        if !(tokens > 0.0 && tokens.is_finite()) {
            return Err(invalid(format!(
                "tokens must be a finite number above 0; got {tokens}"
            )));
        }
        let ticks = (tokens * self.per_token).ceil();
        Ok((ticks <= self.tau as f64).then_some(ticks as u64))
    }

    /// One request of `cost` ticks at `now` on a bucket full at `tat`: `Ok(new tat)` when
    /// allowed, `Err(ticks to wait)` when not.
    #[inline]
    fn step(&self, tat: u64, now: u64, cost: u64) -> Result<u64, u64> {
        let next = tat.max(now) + cost;
        let used = next - now;
        if used <= self.tau {
            Ok(next)
        } else {
            Err(used - self.tau)
        }
    }

    /// Tokens a bucket full at `tat` holds at `now`.
    fn left(&self, tat: u64, now: u64) -> f64 {
        self.tau.saturating_sub(tat.saturating_sub(now)) as f64 / self.per_token
    }

    /// Applies one request to the bucket in `cell`: `Ok(new tat)` or `Err(tat as seen)`.
    #[inline]
    fn take(&self, cell: &AtomicU64, now: u64, cost: u64) -> Result<u64, u64> {
        // Relaxed suffices: the cell publishes nothing but itself, and every read-modify-write
        // of one atomic sees its latest value in the modification order.
        let mut tat = cell.load(Relaxed);
        loop {
            let next = self.step(tat, now, cost).map_err(|_| tat)?;
            match cell.compare_exchange_weak(tat, next, Relaxed, Relaxed) {
                Ok(_) => return Ok(next),
                Err(seen) => tat = seen,
            }
        }
    }

    /// The decision for a request of `cost` ticks (`None`: above capacity) at `now`, given
    /// what [`take`](Self::take) returned (or the bucket as it is, when above capacity).
    fn decision(&self, now: u64, cost: Option<u64>, outcome: Result<u64, u64>) -> Decision {
        let (allowed, tokens, sleep) = match (cost, outcome) {
            (_, Ok(tat)) => (true, self.left(tat, now), Duration::ZERO),
            (Some(cost), Err(tat)) => {
                let wait = self.step(tat, now, cost).err().unwrap_or(0);
                (false, self.left(tat, now), self.duration(wait))
            }
            (None, Err(tat)) => (false, self.left(tat, now), Duration::MAX),
        };
        Decision {
            allowed,
            tokens,
            sleep,
            source: Source::Local,
            capacity: self.capacity,
        }
    }
}

/// `ceil(rate · 2^shift · 2^FRAC / 10^9)` computed exactly from `rate`'s mantissa and exponent,
/// so that the tick clock never runs slow.
fn ticks_per_nano(rate: f64, shift: i32) -> u64 {
    const MANTISSA: u64 = (1 << 52) - 1;
    let bits = rate.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let (mantissa, exponent) = if biased == 0 {
        (bits & MANTISSA, -1074)
    } else {
        ((bits & MANTISSA) | (1 << 52), biased - 1075)
    };
    let up = exponent + shift + FRAC as i32;
    let billion = 1_000_000_000_u128;
    let factor = if up >= 0 {
        (u128::from(mantissa) << up).div_ceil(billion)
    } else {
        // Unreachable for a valid rate and capacity (the factor is above 2^63 then); kept
        // total so a change of bounds cannot make it panic.
        billion
            .checked_shl(up.unsigned_abs())
            .map_or(1, |d| u128::from(mantissa).div_ceil(d))
    };
    u64::try_from(factor).unwrap_or(u64::MAX).max(1)
}

fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}

/// Nanoseconds from `epoch` to `now`, saturating (585 years).
#[inline]
fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(any(test, feature = "test-util"))]
fn duration_nanos(now: Duration) -> u64 {
    u64::try_from(now.as_nanos()).unwrap_or(u64::MAX)
}

/// One token bucket in memory, shared by every thread that holds it (put it in an `Arc`).
/// Implements [`Limiter`], so code written for the Redis [`TokenBucket`](crate::TokenBucket)
/// can limit one process instead.
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
    tat: AtomicU64,
    gcra: Gcra,
    epoch: Instant,
}

impl MemoryBucket {
    /// A full bucket that earns `rate` tokens a second and holds at most `capacity`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a rate that is not above 0 and at most [`MAX_RATE`], a
    /// capacity that is not a finite number of at least 1, or a bucket that would take longer
    /// than [`MAX_REFILL`] to refill.
    pub fn new(rate: f64, capacity: f64) -> Result<Self> {
        Ok(Self {
            tat: AtomicU64::new(0),
            gcra: Gcra::new(rate, capacity)?,
            epoch: Instant::now(),
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
    /// [`Error::InvalidArgument`] for `tokens` that is not a finite number above 0.
    #[inline]
    pub fn try_consume(&self, tokens: f64) -> Result<bool> {
        let Some(cost) = self.gcra.cost(tokens)? else {
            return Ok(false);
        };
        let now = self.gcra.ticks(nanos_since(self.epoch));
        Ok(self.gcra.take(&self.tat, now, cost).is_ok())
    }

    /// As [`try_consume`](Self::try_consume), with the whole [`Decision`]: the tokens left
    /// and, when denied, how long until `tokens` will be there ([`Duration::MAX`]: never,
    /// `tokens` is above the capacity).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `tokens` that is not a finite number above 0.
    pub fn consume_now(&self, tokens: f64) -> Result<Decision> {
        self.consume_at_nanos(tokens, nanos_since(self.epoch))
    }

    /// Tokens the bucket holds now.
    #[must_use]
    pub fn tokens(&self) -> f64 {
        self.tokens_at_nanos(nanos_since(self.epoch))
    }

    fn consume_at_nanos(&self, tokens: f64, nanos: u64) -> Result<Decision> {
        let cost = self.gcra.cost(tokens)?;
        let now = self.gcra.ticks(nanos);
        let outcome = match cost {
            Some(cost) => self.gcra.take(&self.tat, now, cost),
            None => Err(self.tat.load(Relaxed)),
        };
        Ok(self.gcra.decision(now, cost, outcome))
    }

    fn tokens_at_nanos(&self, nanos: u64) -> f64 {
        self.gcra
            .left(self.tat.load(Relaxed), self.gcra.ticks(nanos))
    }
}

/// A frozen clock for tests: `now` is the time since the bucket was made.
#[cfg(any(test, feature = "test-util"))]
impl MemoryBucket {
    /// [`consume_now`](Self::consume_now) at `now` after the bucket was made.
    ///
    /// # Errors
    /// As [`consume_now`](Self::consume_now).
    pub fn consume_at(&self, tokens: f64, now: Duration) -> Result<Decision> {
        self.consume_at_nanos(tokens, duration_nanos(now))
    }

    /// [`tokens`](Self::tokens) at `now` after the bucket was made.
    #[must_use]
    pub fn tokens_at(&self, now: Duration) -> f64 {
        self.tokens_at_nanos(duration_nanos(now))
    }
}

impl Limiter for MemoryBucket {
    fn consume(&self, tokens: f64) -> impl Future<Output = Result<Decision>> + Send {
        ready(self.consume_now(tokens))
    }
}

/// Token buckets in memory, one per key, all with the same rate and capacity, created full
/// on first use and forgotten once full again (see the [module docs](self)). Share it between
/// threads with an `Arc`; calls on a known key take a shard's read lock and one atomic update.
///
/// ```
/// # fn main() -> Result<(), regulator::Error> {
/// let per_user = regulator::MemoryLimiter::new(5.0, 5.0)?; // 5 requests/s, bursts of 5
/// for _ in 0..5 {
///     assert!(per_user.try_consume("alice", 1.0)?);
/// }
/// assert!(!per_user.try_consume("alice", 1.0)?);
/// assert!(per_user.consume("bob", 1.0)?.allowed); // every key has its own bucket
/// # Ok(()) }
/// ```
pub struct MemoryLimiter {
    gcra: Gcra,
    epoch: Instant,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Shard]>,
}

/// A cache line of its own per shard, so that threads on different shards do not contend.
#[repr(align(128))]
struct Shard(RwLock<Table>);

struct Table {
    entries: HashTable<Entry>,
    /// The next new key sweeps the shard when it holds this many.
    sweep_at: usize,
}

struct Entry {
    hash: u64,
    key: Box<str>,
    tat: AtomicU64,
}

impl Table {
    /// Forgets every full bucket, then lets the shard double before the next sweep.
    fn sweep(&mut self, now: u64) {
        self.entries.retain(|e| e.tat.load(Relaxed) > now);
        let len = self.entries.len();
        self.sweep_at = (2 * len).max(MIN_SWEEP);
        if self.entries.capacity() > 2 * self.sweep_at {
            self.entries.shrink_to(self.sweep_at, |e| e.hash);
        }
    }
}

impl MemoryLimiter {
    /// A limiter whose buckets earn `rate` tokens a second and hold at most `capacity`.
    ///
    /// # Errors
    /// As [`MemoryBucket::new`].
    pub fn new(rate: f64, capacity: f64) -> Result<Self> {
        let shards = (0..SHARDS)
            .map(|_| {
                Shard(RwLock::new(Table {
                    entries: HashTable::new(),
                    sweep_at: MIN_SWEEP,
                }))
            })
            .collect();
        Ok(Self {
            gcra: Gcra::new(rate, capacity)?,
            epoch: Instant::now(),
            hasher: foldhash::fast::RandomState::default(),
            shards,
        })
    }

    /// Tokens each bucket earns per second.
    #[must_use]
    pub fn rate(&self) -> f64 {
        self.gcra.rate
    }

    /// The most tokens each bucket holds.
    #[must_use]
    pub fn capacity(&self) -> f64 {
        self.gcra.capacity
    }

    /// Takes `tokens` from `key`'s bucket if it holds that many, all or nothing; the fast path.
    /// Accepts what [`MemoryBucket::try_consume`] accepts.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty key or `tokens` that is not a finite number
    /// above 0.
    #[inline]
    pub fn try_consume(&self, key: &str, tokens: f64) -> Result<bool> {
        let Some(cost) = self.check(key, tokens)? else {
            return Ok(false);
        };
        let epoch = self.epoch;
        Ok(self.take(key, cost, || nanos_since(epoch)).1.is_ok())
    }

    /// As [`try_consume`](Self::try_consume), with the whole [`Decision`], as
    /// [`MemoryBucket::consume_now`] gives it.
    ///
    /// # Errors
    /// As [`try_consume`](Self::try_consume).
    pub fn consume(&self, key: &str, tokens: f64) -> Result<Decision> {
        let epoch = self.epoch;
        self.consume_with(key, tokens, || nanos_since(epoch))
    }

    /// Tokens `key`'s bucket holds now, without taking any (the capacity for an unknown key).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty key.
    pub fn tokens(&self, key: &str) -> Result<f64> {
        check_key(key)?;
        Ok(self.peek(key, self.gcra.ticks(nanos_since(self.epoch))))
    }

    /// Keys held in memory: the buckets that are not full, and full ones not yet swept.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).entries.len()).sum()
    }

    /// True when no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, key: &str, tokens: f64) -> Result<Option<u64>> {
        check_key(key)?;
        self.gcra.cost(tokens)
    }

    fn consume_with(&self, key: &str, tokens: f64, clock: impl Fn() -> u64) -> Result<Decision> {
        let Some(cost) = self.check(key, tokens)? else {
            let now = self.gcra.ticks(clock());
            let tat = self.find(key, |e| e.tat.load(Relaxed)).unwrap_or(0);
            return Ok(self.gcra.decision(now, None, Err(tat)));
        };
        let (now, outcome) = self.take(key, cost, clock);
        Ok(self.gcra.decision(now, Some(cost), outcome))
    }

    /// Applies a request of `cost` ticks to `key`'s bucket, creating it (full) if need be.
    /// The clock is read under the shard's lock, after any sweep that forgot the bucket, so a
    /// recreated bucket never starts earlier than the one forgotten was full.
    #[inline]
    fn take(&self, key: &str, cost: u64, clock: impl Fn() -> u64) -> (u64, Result<u64, u64>) {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[shard_of(hash)];
        {
            let table = read(shard);
            if let Some(e) = table.entries.find(hash, |e| *e.key == *key) {
                let now = self.gcra.ticks(clock());
                return (now, self.gcra.take(&e.tat, now, cost));
            }
        }
        let mut table = shard.0.write().unwrap_or_else(PoisonError::into_inner);
        let now = self.gcra.ticks(clock());
        if let Some(e) = table.entries.find(hash, |e| *e.key == *key) {
            return (now, self.gcra.take(&e.tat, now, cost));
        }
        if table.entries.len() >= table.sweep_at {
            table.sweep(now);
        }
        // A new bucket is full and `cost` is within the capacity: allowed.
        let tat = now + cost;
        let entry = Entry {
            hash,
            key: key.into(),
            tat: AtomicU64::new(tat),
        };
        table.entries.insert_unique(hash, entry, |e| e.hash);
        (now, Ok(tat))
    }

    fn find<T>(&self, key: &str, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        let hash = self.hasher.hash_one(key);
        read(&self.shards[shard_of(hash)])
            .entries
            .find(hash, |e| *e.key == *key)
            .map(f)
    }

    fn peek(&self, key: &str, now: u64) -> f64 {
        let tat = self.find(key, |e| e.tat.load(Relaxed)).unwrap_or(0);
        self.gcra.left(tat, now)
    }
}

/// A frozen clock for tests: `now` is the time since the limiter was made.
#[cfg(any(test, feature = "test-util"))]
impl MemoryLimiter {
    /// [`consume`](Self::consume) at `now` after the limiter was made.
    ///
    /// # Errors
    /// As [`consume`](Self::consume).
    pub fn consume_at(&self, key: &str, tokens: f64, now: Duration) -> Result<Decision> {
        self.consume_with(key, tokens, || duration_nanos(now))
    }

    /// [`tokens`](Self::tokens) at `now` after the limiter was made.
    ///
    /// # Errors
    /// As [`tokens`](Self::tokens).
    pub fn tokens_at(&self, key: &str, now: Duration) -> Result<f64> {
        check_key(key)?;
        Ok(self.peek(key, self.gcra.ticks(duration_nanos(now))))
    }
}

impl std::fmt::Debug for MemoryLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("rate", &self.gcra.rate)
            .field("capacity", &self.gcra.capacity)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid("key must not be empty".to_owned()));
    }
    Ok(())
}

/// The shard for a hash: bits the table itself does not use for small tables (it takes the
/// low bits for the slot and the top seven for the tag).
#[inline]
fn shard_of(hash: u64) -> usize {
    (hash >> 40) as usize & (SHARDS - 1)
}

#[inline]
fn read(shard: &Shard) -> std::sync::RwLockReadGuard<'_, Table> {
    shard.0.read().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// Nanoseconds for `tokens` at `rate`, rounded up.
    fn nanos_for(tokens: f64, rate: f64) -> u64 {
        (tokens * 1e9 / rate).ceil() as u64
    }

    #[test]
    fn the_factor_is_exact_and_rounded_up() {
        // 100 tokens/s at 2^24 ticks a token: 100 · 2^24 / 10^9 ticks a nanosecond, rounded up.
        let g = Gcra::new(100.0, 1.0).unwrap();
        assert_eq!(g.per_token, f64::from(1 << 24));
        let exact = 100_u128 << (24 + FRAC);
        assert!(u128::from(g.per_nano) * 1_000_000_000 >= exact);
        assert!(u128::from(g.per_nano - 1) * 1_000_000_000 < exact);
        // 1024 tokens/s at 2^21 ticks a token: 2^31 / 10^9 = 2^22 / 5^9 ticks a nanosecond.
        let g = Gcra::new(1024.0, 1.0).unwrap();
        assert_eq!(u128::from(g.per_nano), (1_u128 << 84).div_ceil(1_953_125));
        // 0.3 tokens/s is not a binary fraction: rounded up, by less than one unit.
        let g = Gcra::new(0.3, 1.0).unwrap();
        let exact = 0.3 * 2f64.powi(32 + FRAC as i32) / 1e9;
        assert!((g.per_nano as f64 - exact).abs() / exact < 1e-15);
        assert_eq!(Gcra::new(MAX_RATE, 1.0).unwrap().per_token, 1.0);
        assert_eq!(Gcra::new(1e9, 1.0).unwrap().per_token, 2.0);
    }

    #[test]
    fn bounds() {
        for (rate, capacity) in [
            (0.0, 1.0),
            (-1.0, 1.0),
            (f64::NAN, 1.0),
            (f64::INFINITY, 1.0),
            (MAX_RATE * 2.0, 1.0),
            (1.0, 0.5),
            (1.0, f64::NAN),
            (1.0, f64::INFINITY),
            (1e-10, 1.0),
        ] {
            assert!(Gcra::new(rate, capacity).is_err(), "{rate} {capacity}");
        }
        assert!(Gcra::new(1.0, MAX_REFILL.as_secs_f64()).is_ok());
        assert!(Gcra::new(MAX_RATE, MAX_RATE * MAX_REFILL.as_secs_f64()).is_ok());
    }

    #[test]
    fn over_capacity_is_never_allowed() {
        let g = Gcra::new(10.0, 3.0).unwrap();
        assert_eq!(g.cost(3.0).unwrap(), Some(3 << 27));
        assert_eq!(g.cost(3.000_001).unwrap(), None);
        let d = g.decision(0, None, Err(0));
        assert!(!d.allowed && d.sleep == Duration::MAX && d.tokens == 3.0);
    }

    fn rate_capacity() -> impl Strategy<Value = (f64, u32)> {
        (prop_oneof![0.01..10.0, 10.0..1e6, 1e6..1e9f64], 1..200u32)
    }

    proptest! {
        /// From full, exactly `capacity` single tokens go through; `1/rate` later exactly one
        /// (up to 10^8 tokens/s, where `1/rate` rounded up to the nanosecond earns less than
        /// two).
        #[test]
        fn whole_tokens_are_exact(
            rate in prop_oneof![0.01..10.0, 10.0..1e8f64],
            capacity in 1..200u32,
            start in 0..(1u64 << 50),
        ) {
            let g = Gcra::new(rate, f64::from(capacity)).unwrap();
            let one = g.cost(1.0).unwrap().unwrap();
            let now = g.ticks(start);
            let mut tat = 0;
            for _ in 0..capacity {
                tat = g.step(tat, now, one).unwrap();
            }
            prop_assert!(g.step(tat, now, one).is_err());
            prop_assert_eq!(g.left(tat, now), 0.0);
            let later = g.ticks(start + nanos_for(1.0, rate));
            let tat = g.step(tat, later, one).unwrap();
            prop_assert!(g.step(tat, later, one).is_err());
        }

        /// Waiting the hint is enough.
        #[test]
        fn the_hint_is_never_early(
            (rate, capacity) in rate_capacity(),
            start in 0..(1u64 << 50),
            used in 0.0..1.0f64,
            tokens in 0.001..1.0f64,
        ) {
            let g = Gcra::new(rate, f64::from(capacity)).unwrap();
            let cost = g.cost(tokens * f64::from(capacity)).unwrap().unwrap();
            let now = g.ticks(start);
            let tat = now + (used * g.tau as f64) as u64;
            if let Err(wait) = g.step(tat, now, cost) {
                let sleep = u64::try_from(g.duration(wait).as_nanos()).unwrap();
                prop_assert!(g.step(tat, g.ticks(start + sleep), cost).is_ok());
            }
        }

        /// Over any run of requests, the bucket grants at most its capacity plus what it
        /// earned, and never holds a negative count or more than its capacity.
        #[test]
        fn never_above_the_budget(
            (rate, capacity) in rate_capacity(),
            steps in prop::collection::vec((0..(SEC / 10), 0.01..3.0f64), 1..200),
        ) {
            let g = Gcra::new(rate, f64::from(capacity)).unwrap();
            let (mut nanos, mut tat, mut granted) = (0u64, 0u64, 0.0);
            for (dt, tokens) in steps {
                nanos += dt;
                let now = g.ticks(nanos);
                if let Some(Ok(next)) = g.cost(tokens).unwrap().map(|c| g.step(tat, now, c)) {
                    tat = next;
                    granted += tokens;
                }
                let left = g.left(tat, now);
                prop_assert!((0.0..=f64::from(capacity)).contains(&left));
            }
            let budget = f64::from(capacity) + rate * nanos as f64 / 1e9;
            prop_assert!(granted <= budget * (1.0 + 1e-12) + 1e-9, "{granted} > {budget}");
        }
    }
}
