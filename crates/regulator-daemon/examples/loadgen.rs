//! A load generator for every limiter: N tasks share one client (one multiplexed
//! connection) and make decisions as fast as they can for S seconds. Prints one JSON line.
//!
//! ```text
//! cargo run --release --example loadgen -- --redis redis://127.0.0.1:6379/0 \
//!     --throttle bench --concurrency 64 --seconds 10 [--limiter semaphore --hold-ms 5] [--cluster]
//! cargo run --release --example loadgen -- --rate 20000 --seconds 10   # open loop
//! cargo run --release --example loadgen -- --lease --rps 1e8 --seconds 10  # local leases
//! ```
//!
//! Closed loop (the default): `--concurrency` tasks each make one decision after another, so
//! the rate is whatever the server allows. Open loop (`--rate N`): decisions start on a fixed
//! schedule of N per second whatever the answers do, and each latency is counted from the
//! moment its decision was due, so a slow answer shows as latency instead of hiding as lower
//! load.
//!
//! A call is one decision: `consume(1)` (token bucket, leaky), `allow(1)` (continuous),
//! `reserve(1)` without sleeping (scheduled), `acquire` then, after `--hold-ms`, release
//! (semaphore; the latency counted is the acquire's), or `try_consume(1)` on one key of a
//! `MemoryLimiter` (memory: no Redis, `--redis` is not used). With `--lease` the token bucket
//! decides from local leases (`TokenBucket::leased`), and `redis_calls` counts the script
//! calls those decisions took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use regulator::{
    Client, ContinuousParams, Knobs, LeakyParams, MemoryLimiter, ScheduledParams, SemaphoreParams,
};

/// The limiter under load.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    TokenBucket,
    Leaky,
    Continuous,
    Semaphore,
    Scheduled,
    /// In process memory, no Redis: `MemoryLimiter::consume(--throttle, 1)`.
    Memory,
}

#[derive(Parser)]
struct Args {
    /// Redis URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    redis: String,
    /// Throttle name.
    #[arg(long, default_value = "loadgen")]
    throttle: String,
    /// Concurrent tasks.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Run time in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Default rps of the throttle (knobs in Redis override it). High by default so the
    /// script's full path (refill, take, write) runs on every call.
    #[arg(long, default_value_t = 1e9)]
    rps: f64,
    /// Tokio worker threads; 0 runs everything on the main thread (current-thread runtime).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Which limiter.
    #[arg(long, value_enum, default_value = "token-bucket")]
    limiter: Kind,
    /// `--redis` is a seed node of a Redis Cluster.
    #[arg(long)]
    cluster: bool,
    /// How long each semaphore slot is held, in milliseconds.
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// The semaphore's capacity (the `concurrency` knob overrides it).
    #[arg(long, default_value_t = 1_000_000)]
    capacity: u32,
    /// Offer this many decisions per second on a fixed schedule (open loop) instead of
    /// `--concurrency` tasks calling as fast as they can.
    #[arg(long)]
    rate: Option<f64>,
    /// One script call per decision: no coalescing of concurrent token bucket calls.
    #[arg(long)]
    no_coalesce: bool,
    /// Token bucket with local leases (`TokenBucket::leased`, default options).
    #[arg(long)]
    lease: bool,
}

/// One limiter of any kind, cloned into every task.
#[derive(Clone)]
enum Limiter {
    TokenBucket(regulator::TokenBucket),
    Leased(regulator::LeasedBucket),
    Leaky(regulator::LeakyBucket),
    Continuous(regulator::ContinuousBucket),
    Semaphore(regulator::Semaphore, Duration),
    Scheduled(regulator::ScheduledBucket),
    Memory(Arc<MemoryLimiter>, String),
}

impl Limiter {
    async fn new(args: &Args) -> Result<Self, regulator::Error> {
        let name = args.throttle.clone();
        let rps = args.rps;
        if let Kind::Memory = args.limiter {
            return Ok(Self::Memory(
                Arc::new(MemoryLimiter::new(
                    rps.min(regulator::client::MAX_RATE),
                    rps,
                )?),
                name,
            ));
        }
        let client = Client::builder(&args.redis)
            .cluster(args.cluster)
            .coalesce(!args.no_coalesce)
            .call_timeout(Duration::from_secs(5))
            .connect()
            .await?;
        Ok(match args.limiter {
            Kind::Memory => unreachable!("handled above"),
            Kind::TokenBucket => {
                let bucket = client.token_bucket(
                    name,
                    Knobs {
                        rps,
                        burst: 1.0,
                        window: 1.0,
                    },
                );
                if args.lease {
                    Self::Leased(bucket.leased(regulator::LeaseOptions::default())?)
                } else {
                    Self::TokenBucket(bucket)
                }
            }
            Kind::Leaky => Self::Leaky(client.leaky_bucket(
                name,
                LeakyParams {
                    rate: rps,
                    capacity: rps,
                    block: None,
                },
            )),
            Kind::Continuous => Self::Continuous(client.continuous_bucket(
                name,
                ContinuousParams {
                    tokens_per_period: rps,
                    period: Duration::from_secs(1),
                },
            )),
            Kind::Semaphore => Self::Semaphore(
                client.semaphore(
                    name,
                    SemaphoreParams {
                        capacity: args.capacity,
                        hold: Duration::from_secs(30),
                    },
                ),
                Duration::from_millis(args.hold_ms),
            ),
            Kind::Scheduled => Self::Scheduled(client.scheduled_bucket(
                name,
                ScheduledParams {
                    capacity: u32::try_from(rps as u64).unwrap_or(u32::MAX),
                    refill_every: Duration::from_secs(1),
                    refill_amount: u32::try_from(rps as u64).unwrap_or(u32::MAX),
                },
            )),
        })
    }

    /// One decision: whether it was allowed, and how long the decision took.
    async fn decide(&self) -> Result<(bool, Duration), regulator::Error> {
        let t = Instant::now();
        let allowed = match self {
            Self::TokenBucket(b) => b.consume(1.0).await?.allowed,
            Self::Leased(b) => {
                let allowed = b.consume(1.0).await?.allowed;
                let took = t.elapsed();
                // Most decisions await nothing: let the other tasks run.
                tokio::task::yield_now().await;
                return Ok((allowed, took));
            }
            Self::Leaky(b) => b.consume(1.0).await?.allowed,
            Self::Continuous(b) => b.allow(1.0).await?.allowed,
            Self::Scheduled(b) => b.reserve(1, Duration::ZERO).await.is_ok(),
            Self::Memory(m, key) => {
                let allowed = m.try_consume(key, 1.0)?;
                let took = t.elapsed();
                // Nothing here awaits: let the other tasks of a current-thread runtime run.
                tokio::task::yield_now().await;
                return Ok((allowed, took));
            }
            Self::Semaphore(s, hold) => {
                let permit = s.try_acquire().await?;
                let took = t.elapsed();
                let Some(permit) = permit else {
                    return Ok((false, took));
                };
                if !hold.is_zero() {
                    tokio::time::sleep(*hold).await;
                }
                permit.release().await?;
                return Ok((true, took));
            }
        };
        Ok((allowed, t.elapsed()))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut runtime = if args.threads == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    runtime.enable_all().build()?.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let bucket = Limiter::new(&args).await?;
    bucket.decide().await?; // load the script before the clock starts
    let run_for = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let (mut latencies, allowed) = match args.rate {
        Some(rate) => open_loop(&bucket, rate, run_for).await?,
        None => closed_loop(&bucket, args.concurrency, run_for).await?,
    };
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "{}",
        serde_json::json!({
            "calls": latencies.len(),
            "allowed": allowed,
            "offered_per_sec": args.rate,
            "calls_per_sec": (latencies.len() as f64 / elapsed).round(),
            "p50_us": micros(pct(0.50)),
            "p99_us": micros(pct(0.99)),
            "p999_us": micros(pct(0.999)),
            "coalesce": !args.no_coalesce,
            "lease": args.lease,
            "redis_calls": match &bucket {
                Limiter::Leased(b) => Some(b.stats().calls),
                _ => None,
            },
        })
    );
    Ok(())
}

/// A latency in nanoseconds (at most ~4.3 s, which no decision here comes near).
fn nanos(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// Nanoseconds as microseconds, to the nearest tenth.
fn micros(ns: u32) -> f64 {
    (f64::from(ns) / 100.0).round() / 10.0
}

type Outcome = Result<(Vec<u32>, u64), Box<dyn std::error::Error>>;

/// `concurrency` tasks deciding one after another for `run_for`.
async fn closed_loop(bucket: &Limiter, concurrency: usize, run_for: Duration) -> Outcome {
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let bucket = bucket.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 16);
                let mut allowed = 0u64;
                while start.elapsed() < run_for {
                    let (ok, took) = bucket.decide().await.expect("decide");
                    latencies.push(nanos(took));
                    allowed += u64::from(ok);
                }
                (latencies, allowed)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut allowed = 0;
    for t in tasks {
        let (l, a) = t.await?;
        latencies.extend(l);
        allowed += a;
    }
    Ok((latencies, allowed))
}

/// Decisions started on a fixed schedule of `rate` per second for `run_for`, each timed from
/// when it was due. The schedule is kept by a thread of its own that sleeps until each due
/// time and starts the decision (a runtime timer wakes only every millisecond, which would
/// add up to a millisecond of its own lateness to every latency; spinning would take a core
/// from the client and the server).
async fn open_loop(bucket: &Limiter, rate: f64, run_for: Duration) -> Outcome {
    assert!(rate > 0.0 && rate.is_finite(), "--rate must be above 0");
    let every = Duration::from_secs_f64(1.0 / rate);
    let total = (run_for.as_secs_f64() * rate) as u64;
    let runtime = tokio::runtime::Handle::current();
    let bucket = bucket.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let scheduler = std::thread::spawn(move || {
        let start = Instant::now();
        for i in 0..total {
            let due = start + every.mul_f64(i as f64);
            let now = Instant::now();
            if due > now {
                // Wakes a little late (tens of µs): the decisions due by then start together.
                std::thread::sleep(due - now);
            }
            let bucket = bucket.clone();
            let tx = tx.clone();
            runtime.spawn(async move {
                let (ok, _) = bucket.decide().await.expect("decide");
                let _ = tx.send((ok, due.elapsed()));
            });
        }
    });
    let mut latencies = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut allowed = 0;
    while let Some((ok, took)) = rx.recv().await {
        latencies.push(nanos(took));
        allowed += u64::from(ok);
        if latencies.len() as u64 == total {
            break;
        }
    }
    scheduler.join().expect("scheduler thread");
    Ok((latencies, allowed))
}
