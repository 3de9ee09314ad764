//! The in-memory limiter against falconry's `token-bucket` tests (`tests/test_limiter.py`,
//! `tests/test_multithreading.py`), replayed on a frozen clock so that every count is exact
//! where theirs allow a token or two of slack; then eviction and bad input.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use regulator::{Error, Limiter, MemoryBucket, MemoryLimiter, Source};

/// falconry's `test_general_functionality` grid: (rate, capacity).
const GRID: [(f64, u32); 9] = [
    (0.3, 1),
    (1.0, 1),
    (2.5, 1),
    (10.0, 100),
    (10.0, 10),
    (10.0, 1),
    (100.0, 100),
    (100.0, 10),
    (100.0, 1),
];

/// The time `tokens` take to come back at `rate`, rounded up to the nanosecond.
fn earn(tokens: f64, rate: f64) -> Duration {
    Duration::from_nanos((tokens * 1e9 / rate).ceil() as u64)
}

fn allowed(limiter: &MemoryLimiter, key: &str, tokens: f64, now: Duration) -> bool {
    limiter.consume_at(key, tokens, now).unwrap().allowed
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn general_functionality_on_the_rate_capacity_grid() {
    for (rate, capacity) in GRID {
        let limiter = MemoryLimiter::new(rate, f64::from(capacity)).unwrap();
        let key = "key";
        // Unlike falconry's storage (0 until first use), an unknown key reads full: it is.
        assert_eq!(
            limiter.tokens_at(key, Duration::ZERO).unwrap(),
            f64::from(capacity)
        );
        let mut now = Duration::ZERO;
        assert!(allowed(&limiter, key, 1.0, now));
        now += earn(f64::from(capacity), rate);

        let consume_all = |now| {
            for i in 0..capacity + 3 {
                let ok = allowed(&limiter, key, 1.0, now);
                assert_eq!(ok, i < capacity, "rate {rate} capacity {capacity} call {i}");
            }
        };
        consume_all(now);

        // One token's time later, exactly one more.
        now += earn(1.0, rate);
        assert!(
            allowed(&limiter, key, 1.0, now),
            "rate {rate} capacity {capacity}"
        );
        assert!(
            !allowed(&limiter, key, 1.0, now),
            "rate {rate} capacity {capacity}"
        );
        assert!(limiter.tokens_at(key, now).unwrap() < 1.0);

        // Refilling stops at the capacity, however long the wait.
        for _ in 0..2 {
            now += earn(f64::from(capacity), rate);
            assert_eq!(limiter.tokens_at(key, now).unwrap(), f64::from(capacity));
        }
        consume_all(now);
    }
}

#[test]
fn consume_multiple_tokens_at_a_time() {
    let rate = 100.0;
    for capacity in [1u32, 2, 4, 10] {
        let limiter = MemoryLimiter::new(rate, f64::from(capacity)).unwrap();
        let n = f64::from(capacity);
        let mut now = Duration::ZERO;
        let over = limiter.consume_at("key", n + 1.0, now).unwrap();
        assert!(!over.allowed && over.sleep == Duration::MAX);
        assert!(
            limiter.is_empty(),
            "a request above capacity creates nothing"
        );
        // Matching the refill rate conforms indefinitely; five seconds' worth, as theirs.
        for _ in 0..(rate * 5.0 / n) as u32 {
            let d = limiter.consume_at("key", n, now).unwrap();
            assert!(d.allowed, "capacity {capacity} at {now:?}");
            assert_eq!(d.tokens, 0.0);
            assert!(limiter.tokens_at("key", now).unwrap() < 1.0);
            now += earn(n, rate);
        }
    }
}

#[test]
fn different_keys_have_different_buckets() {
    let capacity = 10;
    let limiter = MemoryLimiter::new(10.0, f64::from(capacity)).unwrap();
    let keys = [
        "6f1c0b2e-9a7d-4c3e",
        "3084\"5tj jafsb: f",
        "77752098",
        "whiz:bang",
        "x",
        "ключ",
    ];
    for i in 0..capacity + 2 {
        for k in keys {
            assert_eq!(
                allowed(&limiter, k, 1.0, Duration::ZERO),
                i < capacity,
                "{k} {i}"
            );
        }
    }
    assert_eq!(limiter.len(), keys.len());
}

#[test]
fn decisions_say_what_is_left_and_when_to_retry() {
    let bucket = MemoryBucket::new(10.0, 2.0).unwrap();
    let d = bucket.consume_at(2.0, Duration::ZERO).unwrap();
    assert!(d.allowed && d.tokens == 0.0 && d.sleep == Duration::ZERO);
    assert_eq!((d.source, d.capacity), (Source::Local, 2.0));
    let d = bucket.consume_at(1.5, Duration::from_millis(50)).unwrap();
    assert!(!d.allowed && d.tokens == 0.5);
    assert_eq!(d.sleep, Duration::from_millis(100));
    let d = bucket.consume_at(1.5, Duration::from_millis(150)).unwrap();
    assert!(d.allowed && d.tokens == 0.0);
    let d = bucket.consume_at(3.0, Duration::from_millis(150)).unwrap();
    assert!(!d.allowed && d.sleep == Duration::MAX);
    // Fractions below one token are fine here (falconry wants whole tokens).
    assert!(
        bucket
            .consume_at(0.25, Duration::from_millis(175))
            .unwrap()
            .allowed
    );
    assert_eq!(bucket.tokens_at(Duration::from_millis(175)), 0.0);
}

#[tokio::test]
async fn a_memory_bucket_is_a_limiter() {
    async fn take(limiter: &impl Limiter) -> regulator::Decision {
        limiter.consume(1.0).await.unwrap()
    }
    let bucket = MemoryBucket::new(1.0, 1.0).unwrap();
    assert!(take(&bucket).await.allowed);
    let d = take(&bucket).await;
    assert!(!d.allowed && d.sleep > Duration::from_millis(900));
}

/// falconry's `test_negative_count`: (rate, capacity, largest request).
const THREADED: [(f64, u32, u32); 12] = [
    (10.0, 1, 1),
    (100.0, 1, 1),
    (100.0, 2, 2),
    (10.0, 10, 1),
    (10.0, 10, 2),
    (100.0, 10, 1),
    (100.0, 10, 10),
    (100.0, 100, 5),
    (100.0, 100, 10),
    (1000.0, 10, 1),
    (1000.0, 10, 5),
    (1000.0, 10, 10),
];

/// 100 threads × 1000 calls on five keys with a frozen clock: on each key the tokens granted
/// plus the tokens left add up to the capacity exactly, and none is ever negative.
#[test]
fn threads_neither_overdraw_nor_lose_tokens() {
    for (rate, capacity, largest) in THREADED {
        let limiter = Arc::new(MemoryLimiter::new(rate, f64::from(capacity)).unwrap());
        let keys = ["a", "b", "c", "d", "e"];
        let granted: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
        let threads: Vec<_> = (0..100u64)
            .map(|t| {
                let (limiter, granted) = (Arc::clone(&limiter), Arc::clone(&granted));
                thread::spawn(move || {
                    let mut seed = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                    for _ in 0..1000 {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        let k = (seed % 5) as usize;
                        let n = 1 + (seed >> 8) % u64::from(largest);
                        let d = limiter
                            .consume_at(keys[k], n as f64, Duration::ZERO)
                            .unwrap();
                        assert!(d.tokens >= 0.0);
                        if d.allowed {
                            granted[k].fetch_add(n, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for (k, key) in keys.iter().enumerate() {
            let left = limiter.tokens_at(key, Duration::ZERO).unwrap();
            let granted = granted[k].load(Ordering::Relaxed) as f64;
            assert_eq!(
                granted + left,
                f64::from(capacity),
                "{rate} {capacity} {largest} {key}"
            );
            assert!(
                left < f64::from(largest),
                "a request that fitted was denied"
            );
        }
    }
}

#[test]
fn threads_on_one_bucket_get_exactly_its_capacity_on_a_frozen_clock() {
    let bucket = Arc::new(MemoryBucket::new(100.0, 1000.0).unwrap());
    let allowed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (bucket, allowed) = (Arc::clone(&bucket), Arc::clone(&allowed));
            thread::spawn(move || {
                for _ in 0..1000 {
                    if bucket.consume_at(1.0, Duration::ZERO).unwrap().allowed {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(allowed.load(Ordering::Relaxed), 1000);
    assert_eq!(bucket.tokens_at(Duration::ZERO), 0.0);
}

/// The real clock: never more than the capacity plus what the elapsed time earned, never less
/// than the capacity, and the bucket never holds a negative count.
#[test]
fn threads_on_one_bucket_stay_within_the_budget_on_the_real_clock() {
    let (rate, capacity) = (10_000.0, 100.0);
    let bucket = Arc::new(MemoryBucket::new(rate, capacity).unwrap());
    let allowed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..100)
        .map(|_| {
            let (bucket, allowed) = (Arc::clone(&bucket), Arc::clone(&allowed));
            thread::spawn(move || {
                for _ in 0..1000 {
                    if bucket.try_consume(1.0).unwrap() {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                    assert!(bucket.tokens() >= 0.0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = allowed.load(Ordering::Relaxed) as f64;
    assert!(allowed >= capacity, "{allowed}");
    assert!(
        allowed <= capacity + rate * elapsed,
        "{allowed} in {elapsed}s"
    );
}

/// Keys used once come back full and are forgotten as new keys arrive; a key that is not
/// full keeps its state through every sweep.
#[test]
fn full_buckets_are_forgotten_and_others_kept() {
    let (rate, capacity) = (1.0, 100.0);
    let limiter = MemoryLimiter::new(rate, capacity).unwrap();
    assert!(allowed(&limiter, "keeper", capacity, Duration::ZERO));
    let rounds = 40u32;
    let per_round = 1000;
    for round in 1..=rounds {
        let now = Duration::from_secs(u64::from(2 * round));
        for i in 0..per_round {
            assert!(allowed(&limiter, &format!("{round}:{i}"), 1.0, now));
        }
    }
    let now = Duration::from_secs(u64::from(2 * rounds));
    let used = rounds as usize * per_round;
    assert!(limiter.len() < used / 4, "{} keys of {used}", limiter.len());
    // The keeper earned 80 tokens of its 100: not full, so it is still there.
    assert_eq!(limiter.tokens_at("keeper", now).unwrap(), 80.0);
    // A forgotten key reads as it would have: full.
    assert_eq!(limiter.tokens_at("1:0", now).unwrap(), capacity);
    // The keys of the last round are not full yet and all held.
    for i in 0..per_round {
        assert_eq!(
            limiter.tokens_at(&format!("{rounds}:{i}"), now).unwrap(),
            99.0
        );
    }
}

#[test]
fn bad_rates_and_capacities_are_rejected() {
    let cases = [
        (0.0, 0.0),
        (0.0, 1.0),
        (1.0, 0.0),
        (-1.0, -1.0),
        (-1.0, 0.0),
        (0.0, -1.0),
        (-2.0, -2.0),
        (-2.0, 0.0),
        (0.0, -2.0),
        (1.0, 0.5),
        (f64::NAN, 1.0),
        (1.0, f64::NAN),
        (f64::INFINITY, 1.0),
        (1.0, f64::INFINITY),
        (regulator::client::MAX_RATE * 2.0, 1.0),
        (1e-9, 1e9),
    ];
    for (rate, capacity) in cases {
        assert_invalid(
            MemoryLimiter::new(rate, capacity),
            &format!("{rate} {capacity}"),
        );
        assert_invalid(
            MemoryBucket::new(rate, capacity),
            &format!("{rate} {capacity}"),
        );
    }
}

#[tokio::test]
async fn bad_requests_are_rejected_and_change_nothing() {
    let limiter = MemoryLimiter::new(1.0, 2.0).unwrap();
    assert!(allowed(&limiter, "x", 1.0, Duration::ZERO));
    let bucket = MemoryBucket::new(1.0, 2.0).unwrap();
    assert!(bucket.consume_at(1.0, Duration::ZERO).unwrap().allowed);
    let bad = [
        0.0,
        -0.0,
        -1.0,
        -2.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    for key in ["", "x"] {
        for tokens in bad.iter().copied().chain((key.is_empty()).then_some(1.0)) {
            let what = format!("{key:?} {tokens}");
            assert_invalid(limiter.try_consume(key, tokens), &what);
            assert_invalid(limiter.consume(key, tokens), &what);
            assert_invalid(limiter.consume_at(key, tokens, Duration::ZERO), &what);
        }
    }
    assert_invalid(limiter.tokens(""), "tokens");
    assert_invalid(limiter.tokens_at("", Duration::ZERO), "tokens_at");
    for tokens in bad {
        assert_invalid(bucket.try_consume(tokens), "try_consume");
        assert_invalid(bucket.consume_now(tokens), "consume_now");
        assert_invalid(bucket.consume_at(tokens, Duration::ZERO), "consume_at");
        assert_invalid(Limiter::consume(&bucket, tokens).await, "Limiter::consume");
    }
    assert_eq!(limiter.len(), 1);
    assert_eq!(limiter.tokens_at("x", Duration::ZERO).unwrap(), 1.0);
    assert_eq!(bucket.tokens_at(Duration::ZERO), 1.0);
}
