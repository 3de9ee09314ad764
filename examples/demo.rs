//! `make demo`: a private redis-server, a few dozen workers on one throttle, and its knobs
//! changed mid-run the way an operator (or the daemon) would. Prints one line per second.
//!
//! ```text
//! cargo run --release --example demo [-- --phase-seconds 5 --workers 32]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use regulator::testing::RedisServer;
use regulator::{Client, Knobs, StoredKnobs};

const THROTTLE: &str = "orders-db";
const DEFAULTS: Knobs = Knobs {
    rps: 50.0,
    burst: 1.0,
    window: 1.0,
};

/// What the demo does to the knobs, and when.
enum Step {
    Set(Knobs, &'static str),
    Reset(&'static str),
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let phase = arg("--phase-seconds", 5);
    let workers = arg("--workers", 32);
    let server = RedisServer::start()?;
    println!(
        "redis-server on {}; {workers} workers on throttle {THROTTLE:?} (defaults: {} rps, \
         burst {}, window {} s)",
        server.url(),
        DEFAULTS.rps,
        DEFAULTS.burst,
        DEFAULTS.window
    );
    let client = Client::connect(&server.url()).await?;
    let allowed = Arc::new(AtomicU64::new(0));
    let denied = Arc::new(AtomicU64::new(0));
    for _ in 0..workers {
        tokio::spawn(worker(client.clone(), allowed.clone(), denied.clone()));
    }

    let plan = [
        Step::Reset("no knobs in Redis: workers use their defaults"),
        Step::Set(k(200.0, 1.0, 1.0), "headroom: raise to 200 rps"),
        Step::Set(
            k(20.0, 2.0, 1.0),
            "the database hurts: cut to 20 rps, burst 2",
        ),
        Step::Reset("knobs deleted: back to the defaults"),
    ];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut second = 0;
    for step in plan {
        match step {
            Step::Set(knobs, why) => {
                client.set_knobs(THROTTLE, knobs, None).await?;
                println!(
                    "--- set rps={} burst={} window={}: {why}",
                    knobs.rps, knobs.burst, knobs.window
                );
            }
            Step::Reset(why) => {
                client.reset_knobs(THROTTLE).await?;
                println!("--- reset: {why}");
            }
        }
        for _ in 0..phase {
            tick.tick().await;
            second += 1;
            let (a, d) = (
                allowed.swap(0, Ordering::Relaxed),
                denied.swap(0, Ordering::Relaxed),
            );
            let state = client.get(THROTTLE).await?;
            let knobs = match state.knobs() {
                StoredKnobs::Valid(k) => {
                    format!("rps={} burst={} window={}", k.rps, k.burst, k.window)
                }
                StoredKnobs::Absent => "defaults".to_owned(),
                StoredKnobs::Invalid(why) => format!("invalid ({why})"),
            };
            println!(
                "t={second:>3}s  allowed/s={a:>5}  denied/s={d:>6}  tokens={:>5}  knobs: {knobs}",
                state.tokens.as_deref().unwrap_or("-")
            );
        }
    }
    println!("done; stopping redis-server");
    drop(server);
    Ok(())
}

/// A worker: take a token, do a little work; when denied, back off briefly and try again.
async fn worker(client: Client, allowed: Arc<AtomicU64>, denied: Arc<AtomicU64>) {
    let bucket = client.token_bucket(THROTTLE, DEFAULTS);
    loop {
        match bucket.consume(1.0).await {
            Ok(d) if d.allowed => {
                allowed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok(d) => {
                denied.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(d.sleep.min(Duration::from_millis(25))).await;
            }
            Err(e) => {
                eprintln!("worker: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn k(rps: f64, burst: f64, window: f64) -> Knobs {
    Knobs { rps, burst, window }
}

fn arg(flag: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
