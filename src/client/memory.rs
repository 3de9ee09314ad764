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
//! chosen per limiter so that the tick clock lasts over a century. Nanoseconds would not do: at
//! 6·10^8 tokens/s a token takes 1.67 ns. Token counts that are whole (or multiples of `2^-k`)
//! are exact, and nanoseconds become ticks with one 128-bit multiplication by a factor rounded
//! up, so a bucket that waited `n/r` seconds has earned at least `n` tokens, never a tick less.
//!
//! The clock is the CPU's time-stamp counter read through `quanta`, as governor reads it: on a
//! VM it costs a third of `Instant::now`, and it is most of the cost of a call. Its count
//! becomes ticks directly, with one multiplication too. Tests freeze time by passing `now`
//! (feature `test-util`), in nanoseconds since the limiter was made.
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
use std::time::Duration;

use hashbrown::HashTable;

use super::decision::{Decision, Source};
use super::error::{Error, Result};
use super::limiter::Limiter;

/// The highest rate an in-memory bucket takes: 2³¹ (about 2.1 billion) tokens a second.
/// Count larger units (KiB rather than bytes) above it.
pub const MAX_RATE: f64 = 2_147_483_648.0;

/// The longest time an empty in-memory bucket may take to refill (`capacity / rate`):
/// 2³¹ seconds, about 68 years.
pub const MAX_REFILL: Duration = Duration::from_secs(1 << 31);

/// Bits after the point in the ticks-per-nanosecond factor.
const FRAC: i32 = 62;
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
    /// Ticks per token, `2^k`, as a float and as an integer.
    per_token: f64,
    one: u64,
    /// The capacity in ticks, and as a float for the request's test.
    tau: u64,
    tau_f: f64,
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
        let tau_f = (capacity * per_token).floor();
        Ok(Self {
            rate,
            capacity,
            per_token,
            one: per_token as u64,
            tau: tau_f as u64,
            tau_f,
            per_nano: ticks_per_nano(rate, shift),
        })
    }

    /// The tick clock at `nanos` nanoseconds after the epoch.
    #[cfg(any(test, feature = "test-util"))]
    fn ticks(&self, nanos: u64) -> u64 {
        scale(nanos, self.per_nano)
    }

    /// The shortest time in which the clock advances by `ticks`.
    fn duration(&self, ticks: u64) -> Duration {
        let nanos = (u128::from(ticks) << FRAC).div_ceil(u128::from(self.per_nano));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// `tokens` in ticks, rounded up; `None` when more than the capacity (never allowed).
    #[inline]
    fn cost(&self, tokens: f64) -> Result<Option<u64>> {
        // The usual request; the capacity is at least one token.
        if tokens == 1.0 {
            return Ok(Some(self.one));
        }
        let ticks = tokens * self.per_token;
        // One test admits every valid request within the capacity: NaN and ≤ 0 fail it, and
        // the capacity is a whole number of ticks, so `ticks` fits iff its ceiling does.
        if tokens > 0.0 && ticks <= self.tau_f {
            // Within 2^62: the signed conversions are single instructions.
            let whole = ticks as i64;
            return Ok(Some((whole + i64::from((whole as f64) < ticks)) as u64));
        }
        Self::cost_beyond(tokens)
    }

    #[cold]
    fn cost_beyond(tokens: f64) -> Result<Option<u64>> {
        if tokens > 0.0 && tokens.is_finite() {
            Ok(None)
        } else {
            Err(invalid(format!(
                "tokens must be a finite number above 0; got {tokens}"
            )))
        }
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
    let up = exponent + shift + FRAC;
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

/// A limiter's monotonic clock, in its ticks since it was made. It reads the CPU's time-stamp
/// counter through `quanta` as governor does (calibrated once per process against the OS
/// monotonic clock; that clock itself where the counter is not invariant), and turns the count
/// into ticks with one multiplication: a third of what `Instant::now` costs on a VM.
#[derive(Debug, Clone)]
struct Clock {
    source: quanta::Clock,
    start: u64,
    /// Ticks per counter unit in fixed point (`FRAC` bits), or 0 when that does not fit in 64
    /// bits (a counter slower than 1 GHz under a fast bucket): the count then goes through
    /// nanoseconds.
    per_raw: u64,
    per_nano: u64,
}

impl Clock {
    fn new(gcra: &Gcra) -> Self {
        // quanta scales its counter by a fixed ratio; read it off a long span.
        const SPAN: u64 = 1 << 50;
        let source = quanta::Clock::new();
        let nanos = source.delta_as_nanos(0, SPAN);
        let per_raw = (u128::from(gcra.per_nano) * u128::from(nanos)).div_ceil(u128::from(SPAN));
        Self {
            start: source.raw(),
            source,
            per_raw: u64::try_from(per_raw).unwrap_or(0),
            per_nano: gcra.per_nano,
        }
    }

    /// Ticks since the clock was made (0 while a core's counter lags the first reading).
    #[inline]
    fn ticks(&self) -> u64 {
        let raw = self.source.raw().saturating_sub(self.start);
        if self.per_raw == 0 {
            scale(self.source.delta_as_nanos(0, raw), self.per_nano)
        } else {
            scale(raw, self.per_raw)
        }
    }
}

/// `x · factor / 2^FRAC`, rounded down.
#[inline]
fn scale(x: u64, factor: u64) -> u64 {
    ((u128::from(x) * u128::from(factor)) >> FRAC) as u64
}

#[cfg(any(test, feature = "test-util"))]
fn duration_nanos(now: Duration) -> u64 {
    u64::try_from(now.as_nanos()).unwrap_or(u64::MAX)
}

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
    gcra: Gcra,
    clock: Clock,
    /// On a cache line of its own: a thread's update does not evict the constants from the
    /// other cores' caches.
    tat: Padded<AtomicU64>,
}

/// Aligned to 128 bytes: two cache lines, which adjacent-line prefetching pairs.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl MemoryBucket {
    /// A full bucket that earns `rate` tokens a second and holds at most `capacity`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a rate that is not above 0 and at most [`MAX_RATE`], a
    /// capacity that is not a finite number of at least 1, or a bucket that would take longer
    /// than [`MAX_REFILL`] to refill.
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
    /// [`Error::InvalidArgument`] for `tokens` that is not a finite number above 0.
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
    /// and, when denied, how long until `tokens` will be there ([`Duration::MAX`]: never,
    /// `tokens` is above the capacity).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `tokens` that is not a finite number above 0.
    pub fn consume_now(&self, tokens: f64) -> Result<Decision> {
        self.consume_at_ticks(tokens, self.clock.ticks())
    }

    /// Tokens the bucket holds now.
    #[must_use]
    pub fn tokens(&self) -> f64 {
        self.tokens_at_ticks(self.clock.ticks())
    }

    fn consume_at_ticks(&self, tokens: f64, now: u64) -> Result<Decision> {
        let cost = self.gcra.cost(tokens)?;
        let outcome = match cost {
            Some(cost) => self.gcra.take(&self.tat.0, now, cost),
            None => Err(self.tat.0.load(Relaxed)),
        };
        Ok(self.gcra.decision(now, cost, outcome))
    }

    fn tokens_at_ticks(&self, now: u64) -> f64 {
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
    pub fn consume_at(&self, tokens: f64, now: Duration) -> Result<Decision> {
        self.consume_at_ticks(tokens, self.gcra.ticks(duration_nanos(now)))
    }

    /// [`tokens`](Self::tokens) at `now` after the bucket was made.
    #[must_use]
    pub fn tokens_at(&self, now: Duration) -> f64 {
        self.tokens_at_ticks(self.gcra.ticks(duration_nanos(now)))
    }
}

impl Limiter for MemoryBucket {
    fn consume(&self, tokens: f64) -> impl Future<Output = Result<Decision>> + Send {
        ready(self.consume_now(tokens))
    }
}

/// Token buckets in memory, one per key, all with the same rate and capacity, each as a
/// [`MemoryBucket`]. Share it between threads with an `Arc`; a call on a known key takes a
/// shard's read lock and one atomic update.
///
/// Memory stays bounded without a timer thread: a full bucket behaves exactly as one never
/// used, so it is forgotten. When a shard of the map has doubled since it was last swept, the
/// next new key sweeps it of full buckets first. The map holds about twice the keys whose
/// buckets are not full (and a few dozen per shard), and never loses the state of one of
/// those.
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
    clock: Clock,
    hasher: foldhash::fast::RandomState,
    shards: Box<[Shard]>,
}

/// A cache line of its own per shard, so that threads on different shards do not contend.
type Shard = Padded<RwLock<Table>>;

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
        let gcra = Gcra::new(rate, capacity)?;
        let shards = (0..SHARDS)
            .map(|_| {
                Padded(RwLock::new(Table {
                    entries: HashTable::new(),
                    sweep_at: MIN_SWEEP,
                }))
            })
            .collect();
        Ok(Self {
            clock: Clock::new(&gcra),
            gcra,
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
        Ok(self.take(key, cost, || self.clock.ticks()).1.is_ok())
    }

    /// As [`try_consume`](Self::try_consume), with the whole [`Decision`], as
    /// [`MemoryBucket::consume_now`] gives it.
    ///
    /// # Errors
    /// As [`try_consume`](Self::try_consume).
    pub fn consume(&self, key: &str, tokens: f64) -> Result<Decision> {
        self.consume_with(key, tokens, || self.clock.ticks())
    }

    /// Tokens `key`'s bucket holds now, without taking any (the capacity for an unknown key).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty key.
    pub fn tokens(&self, key: &str) -> Result<f64> {
        check_key(key)?;
        Ok(self.peek(key, self.clock.ticks()))
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
            let now = clock();
            let tat = self.find(key, |e| e.tat.load(Relaxed)).unwrap_or(0);
            return Ok(self.gcra.decision(now, None, Err(tat)));
        };
        let (now, outcome) = self.take(key, cost, clock);
        Ok(self.gcra.decision(now, Some(cost), outcome))
    }

    /// Applies a request of `cost` ticks to `key`'s bucket, creating it (full) if need be.
    /// The clock is read under the shard's lock, after any sweep that forgot the bucket, so a
    /// recreated bucket never starts earlier than the one forgotten was full (to within the
    /// cores' agreement on the time-stamp counter, nanoseconds).
    #[inline]
    fn take(&self, key: &str, cost: u64, clock: impl Fn() -> u64) -> (u64, Result<u64, u64>) {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[shard_of(hash)];
        {
            let table = read(shard);
            if let Some(e) = table.entries.find(hash, |e| *e.key == *key) {
                let now = clock();
                return (now, self.gcra.take(&e.tat, now, cost));
            }
        }
        let mut table = shard.0.write().unwrap_or_else(PoisonError::into_inner);
        let now = clock();
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
        self.consume_with(key, tokens, || self.gcra.ticks(duration_nanos(now)))
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
        let exact = 0.3 * 2f64.powi(32 + FRAC) / 1e9;
        assert!((g.per_nano as f64 - exact).abs() / exact < 1e-15);
        assert_eq!(Gcra::new(MAX_RATE, 1.0).unwrap().per_token, 1.0);
        assert_eq!(Gcra::new(1e9, 1.0).unwrap().per_token, 2.0);
    }

    #[test]
    fn the_counter_and_its_nanoseconds_give_the_same_ticks() {
        for rate in [0.3, 100.0, 1e6, 1e9] {
            let g = Gcra::new(rate, 1.0).unwrap();
            let mut clock = Clock::new(&g);
            let raw = 1u64 << 44;
            let via_nanos = g.ticks(clock.source.delta_as_nanos(0, raw));
            // Zero only for a counter slower than 1 GHz under a fast bucket.
            if clock.per_raw != 0 {
                let direct = scale(raw, clock.per_raw);
                assert!(
                    direct.abs_diff(via_nanos) <= 1 + (via_nanos >> 40),
                    "{rate}"
                );
            }
            // The way through nanoseconds, for slow counters, runs too.
            clock.per_raw = 0;
            let before = clock.ticks();
            std::thread::sleep(Duration::from_millis(2));
            assert!(clock.ticks() > before);
        }
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
