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

mod clock;
mod direct;
mod gcra;
mod keyed;

use std::time::Duration;

use crate::client::error::Error;
pub use direct::MemoryBucket;
pub use keyed::MemoryLimiter;

/// The highest rate an in-memory bucket takes: 2³¹ (about 2.1 billion) tokens a second.
/// Count larger units (KiB rather than bytes) above it.
pub const MAX_RATE: f64 = 2_147_483_648.0;

/// The longest time an empty in-memory bucket may take to refill (`capacity / rate`):
/// 2³¹ seconds, about 68 years.
pub const MAX_REFILL: Duration = Duration::from_secs(1 << 31);

/// Aligned to 128 bytes: two cache lines, which adjacent-line prefetching pairs.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct Padded<T>(pub(super) T);

fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::clock::Clock;
    use super::gcra::{FRAC, Gcra, scale};
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
