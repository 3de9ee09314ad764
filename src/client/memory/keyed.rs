//! [`MemoryLimiter`]: a bucket per key in a sharded map that forgets full buckets.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{PoisonError, RwLock};

use hashbrown::HashTable;

use super::clock::Clock;
#[cfg(any(test, feature = "test-util"))]
use super::clock::duration_nanos;
use super::gcra::Gcra;
use super::{Padded, invalid};
use crate::client::decision::Decision;
use crate::client::error::Result;

/// Shards of the keyed map; a power of two.
pub(super) const SHARDS: usize = 64;
/// A shard is not swept before it holds this many keys.
pub(super) const MIN_SWEEP: usize = 32;

/// Token buckets in memory, one per key, all with the same rate and capacity, each as a
/// [`MemoryBucket`](crate::MemoryBucket). Share it between threads with an `Arc`; a call on a known key takes a
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
    pub(super) gcra: Gcra,
    pub(super) clock: Clock,
    pub(super) hasher: foldhash::fast::RandomState,
    pub(super) shards: Box<[Shard]>,
}

/// A cache line of its own per shard, so that threads on different shards do not contend.
pub(super) type Shard = Padded<RwLock<Table>>;

pub(super) struct Table {
    pub(super) entries: HashTable<Entry>,
    /// The next new key sweeps the shard when it holds this many.
    pub(super) sweep_at: usize,
}

pub(super) struct Entry {
    pub(super) hash: u64,
    pub(super) key: Box<str>,
    pub(super) tat: AtomicU64,
}

impl Table {
    /// Forgets every full bucket, then lets the shard double before the next sweep.
    pub(super) fn sweep(&mut self, now: u64) {
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
    /// As [`MemoryBucket::new`](crate::MemoryBucket::new).
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
    /// Accepts what [`MemoryBucket::try_consume`](crate::MemoryBucket::try_consume) accepts.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an empty key or `tokens` that is not a finite number
    /// above 0.
    #[inline]
    pub fn try_consume(&self, key: &str, tokens: f64) -> Result<bool> {
        let Some(cost) = self.check(key, tokens)? else {
            return Ok(false);
        };
        Ok(self.take(key, cost, || self.clock.ticks()).1.is_ok())
    }

    /// As [`try_consume`](Self::try_consume), with the whole [`Decision`], as
    /// [`MemoryBucket::consume_now`](crate::MemoryBucket::consume_now) gives it.
    ///
    /// # Errors
    /// As [`try_consume`](Self::try_consume).
    pub fn consume(&self, key: &str, tokens: f64) -> Result<Decision> {
        self.consume_with(key, tokens, || self.clock.ticks())
    }

    /// Tokens `key`'s bucket holds now, without taking any (the capacity for an unknown key).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an empty key.
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

    pub(super) fn check(&self, key: &str, tokens: f64) -> Result<Option<u64>> {
        check_key(key)?;
        self.gcra.cost(tokens)
    }

    pub(super) fn consume_with(
        &self,
        key: &str,
        tokens: f64,
        clock: impl Fn() -> u64,
    ) -> Result<Decision> {
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
    pub(super) fn take(
        &self,
        key: &str,
        cost: u64,
        clock: impl Fn() -> u64,
    ) -> (u64, Result<u64, u64>) {
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

    pub(super) fn find<T>(&self, key: &str, f: impl FnOnce(&Entry) -> T) -> Option<T> {
        let hash = self.hasher.hash_one(key);
        read(&self.shards[shard_of(hash)])
            .entries
            .find(hash, |e| *e.key == *key)
            .map(f)
    }

    pub(super) fn peek(&self, key: &str, now: u64) -> f64 {
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
    pub fn consume_at(&self, key: &str, tokens: f64, now: std::time::Duration) -> Result<Decision> {
        self.consume_with(key, tokens, || self.gcra.ticks(duration_nanos(now)))
    }

    /// [`tokens`](Self::tokens) at `now` after the limiter was made.
    ///
    /// # Errors
    /// As [`tokens`](Self::tokens).
    pub fn tokens_at(&self, key: &str, now: std::time::Duration) -> Result<f64> {
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

pub(super) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(invalid("key must not be empty".to_owned()));
    }
    Ok(())
}

/// The shard for a hash: bits the table itself does not use for small tables (it takes the
/// low bits for the slot and the top seven for the tag).
#[inline]
pub(super) fn shard_of(hash: u64) -> usize {
    (hash >> 40) as usize & (SHARDS - 1)
}

#[inline]
pub(super) fn read(shard: &Shard) -> std::sync::RwLockReadGuard<'_, Table> {
    shard.0.read().unwrap_or_else(PoisonError::into_inner)
}
