//! One blocking worker's round trip: `blocking::TokenBucket::consume(1)` called one after
//! another on one bucket, each timed, after a warm-up. Prints one JSON line with the p50, p99
//! and mean in microseconds, to set beside `redis-benchmark -c 1` running the same `EVALSHA`
//! (`scripts/bench-blocking.sh` alternates the two).
//!
//! ```text
//! cargo run --release --example blocking_rtt -- --redis redis://127.0.0.1:6379/0 --calls 20000
//! ```

use std::time::Instant;

use clap::Parser;
use regulator::{Knobs, blocking};

#[derive(Parser)]
struct Args {
    /// Redis URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379/0")]
    redis: String,
    /// Throttle name.
    #[arg(long, default_value = "rtt")]
    throttle: String,
    /// Timed calls.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let client = blocking::Client::connect(&args.redis)?;
    // Allowed every time, so every call runs the script's full path.
    let bucket = client.token_bucket(
        &args.throttle,
        Knobs {
            rps: 1e9,
            burst: 1.0,
            window: 1.0,
        },
    );
    for _ in 0..1_000 {
        bucket.consume(1.0)?;
    }
    let mut took = Vec::with_capacity(args.calls);
    for _ in 0..args.calls {
        let t = Instant::now();
        bucket.consume(1.0)?;
        took.push(t.elapsed().as_nanos());
    }
    took.sort_unstable();
    let us = |ns: u128| (ns as f64 / 100.0).round() / 10.0;
    let pct = |p: f64| us(took[((took.len() - 1) as f64 * p) as usize]);
    let mean = us(took.iter().sum::<u128>() / took.len().max(1) as u128);
    println!(
        "{}",
        serde_json::json!({"calls": took.len(), "p50_us": pct(0.5), "p99_us": pct(0.99), "mean_us": mean})
    );
    Ok(())
}
