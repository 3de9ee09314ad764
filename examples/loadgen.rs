//! A load generator for the token bucket: N tasks share one client (one multiplexed
//! connection) and call `consume(1)` as fast as they can for S seconds. Prints one JSON line.
//!
//! ```text
//! cargo run --release --example loadgen -- --redis redis://127.0.0.1:6379/0 \
//!     --throttle bench --concurrency 64 --seconds 10
//! ```

use std::time::{Duration, Instant};

use clap::Parser;
use regulator::{Client, Knobs};

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
    let client = Client::builder(&args.redis)
        .call_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let knobs = Knobs {
        rps: args.rps,
        burst: 1.0,
        window: 1.0,
    };
    let bucket = client.token_bucket(args.throttle, knobs);
    bucket.consume(1.0).await?; // load the script before the clock starts
    let run_for = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let bucket = bucket.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(1 << 16);
                let mut allowed = 0u64;
                while start.elapsed() < run_for {
                    let t = Instant::now();
                    let d = bucket.consume(1.0).await.expect("consume");
                    latencies.push(t.elapsed().as_micros() as u32);
                    allowed += u64::from(d.allowed);
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
            "calls_per_sec": (latencies.len() as f64 / elapsed).round(),
            "p50_us": pct(0.50),
            "p99_us": pct(0.99),
        })
    );
    Ok(())
}
