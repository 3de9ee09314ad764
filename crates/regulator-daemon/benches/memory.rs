//! Nanoseconds per check of the in-memory limiters against `governor` (its defaults: quanta
//! clock, `DashMap` for keys), in one group: one bucket and 1,000 keys taken round-robin, from
//! one thread and from two, with most checks allowed and with most denied.
//!
//! Two threads are measured as throughput: each makes `iters` checks at once and the wall time
//! is divided by both threads' checks, so contention on one bucket or one shard shows.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use regulator::{MemoryBucket, MemoryLimiter};

const KEYS: usize = 1_000;

/// Rate and burst: 10^9 a second with a burst of 10^6 allows nearly every check; 1 a second
/// with a burst of 1 denies all but the first.
#[derive(Clone, Copy)]
enum Load {
    Allowed,
    Denied,
}

impl Load {
    fn rate_burst(self) -> (u32, u32) {
        match self {
            Self::Allowed => (1_000_000_000, 1_000_000),
            Self::Denied => (1, 1),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
        }
    }

    fn ours(self) -> (MemoryBucket, MemoryLimiter) {
        let (rate, burst) = self.rate_burst();
        (
            MemoryBucket::new(f64::from(rate), f64::from(burst)).unwrap(),
            MemoryLimiter::new(f64::from(rate), f64::from(burst)).unwrap(),
        )
    }

    fn governor(self) -> (DefaultDirectRateLimiter, DefaultKeyedRateLimiter<String>) {
        let (rate, burst) = self.rate_burst();
        let quota = Quota::per_second(NonZeroU32::new(rate).unwrap())
            .allow_burst(NonZeroU32::new(burst).unwrap());
        (RateLimiter::direct(quota), RateLimiter::keyed(quota))
    }
}

/// Wall time for `threads` threads making `iters` calls of `check(thread, i)` each, divided
/// by the number of threads: criterion then reports time per check.
fn threaded(threads: usize, iters: u64, check: impl Fn(usize, u64) + Sync) -> Duration {
    let start = Barrier::new(threads + 1);
    thread::scope(|s| {
        for t in 0..threads {
            let (start, check) = (&start, &check);
            s.spawn(move || {
                start.wait();
                for i in 0..iters {
                    check(t, i);
                }
            });
        }
        start.wait();
        let begin = Instant::now();
        // The scope joins the threads before returning.
        begin
    })
    .elapsed()
        / threads as u32
}

/// The key for call `i` of thread `t`: round-robin, each thread from its own offset.
fn key(keys: &[String], t: usize, i: u64) -> &String {
    &keys[(t * KEYS / 2 + (i % KEYS as u64) as usize) % KEYS]
}

fn compare(c: &mut Criterion) {
    let keys: Vec<String> = (0..KEYS).map(|i| format!("user-{i}")).collect();
    let mut group = c.benchmark_group("memory");
    for load in [Load::Allowed, Load::Denied] {
        let (bucket, limiter) = load.ours();
        let (direct, keyed) = load.governor();
        for threads in [1, 2] {
            let case = |shape: &str| format!("{shape}/{threads}t/{}", load.name());
            group.bench_function(BenchmarkId::new("regulator", case("direct")), |b| {
                b.iter_custom(|iters| {
                    threaded(threads, iters, |_, _| {
                        black_box(bucket.try_consume(black_box(1.0)).unwrap());
                    })
                });
            });
            group.bench_function(BenchmarkId::new("governor", case("direct")), |b| {
                b.iter_custom(|iters| {
                    threaded(threads, iters, |_, _| {
                        black_box(direct.check().is_ok());
                    })
                });
            });
            group.bench_function(BenchmarkId::new("regulator", case("keyed")), |b| {
                b.iter_custom(|iters| {
                    threaded(threads, iters, |t, i| {
                        black_box(
                            limiter
                                .try_consume(key(&keys, t, i), black_box(1.0))
                                .unwrap(),
                        );
                    })
                });
            });
            group.bench_function(BenchmarkId::new("governor", case("keyed")), |b| {
                b.iter_custom(|iters| {
                    threaded(threads, iters, |t, i| {
                        black_box(keyed.check_key(key(&keys, t, i)).is_ok());
                    })
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, compare);
criterion_main!(benches);
