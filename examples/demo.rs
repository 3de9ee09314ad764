//! `make demo`: the whole loop on one machine. A private `redis-server` and `prometheus`, a
//! simulated database whose p99 latency climbs as it nears its capacity, 32 workers taking
//! tokens before each query, and the regulator daemon steering their `rps` so the latency
//! stays near its 250 ms target, while the database's capacity drops and recovers.
//!
//! ```text
//! cargo run --release --example demo [-- --phase-seconds 20 --workers 32]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use regulator::daemon::config::parse;
use regulator::daemon::status::last_change;
use regulator::daemon::{Daemon, RunOptions};
use regulator::testing::{Exporter, PrometheusServer, RedisServer};
use regulator::{Client, Knobs, StoredKnobs};

const THROTTLE: &str = "orders-db";
/// What workers use while the daemon has written nothing.
const DEFAULTS: Knobs = Knobs {
    rps: 200.0,
    burst: 1.0,
    window: 1.0,
};

/// The simulated database: p99 latency of a queue served at `capacity` queries/s, fed at
/// `rate`: 50 ms when idle, 250 ms at 80% load, capped at 2 s when overrun.
fn latency(rate: f64, capacity: f64) -> f64 {
    let utilization = rate / capacity;
    (0.05 / (1.0 - utilization).max(0.025)).min(2.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let phase = arg("--phase-seconds", 20);
    let workers = arg("--workers", 32);
    let redis = RedisServer::start()?;
    let exporter = Exporter::start()?;
    exporter.set("db_p99_latency_seconds", latency(0.0, 150.0));
    let prometheus = PrometheusServer::start(&[exporter.target()])?;
    let config = format!(
        r#"
redis: {{ url: "{}" }}
prometheus: {{ url: "{}", timeout: 1s }}
listen: "127.0.0.1:0"
interval: 1s
throttles:
  - name: {THROTTLE}
    defaults: {{ rps: {}, burst: {}, window: {} }}
    bounds: {{ min_rps: 10, max_rps: 400 }}
    signal: {{ query: db_p99_latency_seconds, target: 0.25 }}
    control: {{ law: aimd, increase: 8, decrease: 0.75 }}
    max_step: 0.3
    deadband: 0.1
"#,
        redis.url(),
        prometheus.url(),
        DEFAULTS.rps,
        DEFAULTS.burst,
        DEFAULTS.window,
    );
    let daemon = Daemon::start(parse(&config, "demo")?, RunOptions::default()).await?;
    println!(
        "redis {} · prometheus {} · daemon /metrics on {}",
        redis.url(),
        prometheus.url(),
        daemon.handle().local_addr()
    );
    println!(
        "{workers} workers on throttle {THROTTLE:?}; the daemon keeps the database's p99 \
         latency near 250 ms (aimd: +8 rps below target, x0.75 above)\n"
    );

    let client = Client::connect(&redis.url()).await?;
    let allowed = Arc::new(AtomicU64::new(0));
    for _ in 0..workers {
        tokio::spawn(worker(client.clone(), allowed.clone()));
    }
    let plan = [
        (150.0, "the database serves 150 queries/s"),
        (60.0, "a slow disk: capacity falls to 60 queries/s"),
        (150.0, "the disk is replaced: back to 150 queries/s"),
    ];
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut second = 0;
    for (capacity, what) in plan {
        println!(
            "--- {what} (about {} rps keeps p99 at 250 ms)",
            capacity * 0.8
        );
        for _ in 0..phase {
            tick.tick().await;
            second += 1;
            let rate = allowed.swap(0, Ordering::Relaxed) as f64;
            let p99 = latency(rate, capacity);
            exporter.set("db_p99_latency_seconds", p99);
            let knobs = match client.get(THROTTLE).await?.knobs() {
                StoredKnobs::Valid(k) => format!("{:>6.1}", k.rps),
                StoredKnobs::Absent => "  none".to_owned(),
                StoredKnobs::Invalid(why) => format!("invalid ({why})"),
            };
            let why = last_change(&client, THROTTLE)
                .await?
                .map_or_else(String::new, |c| c.reason);
            println!(
                "t={second:>3}s  queries/s={rate:>5}  p99={:>5.0} ms  knob rps={knobs}  {why}",
                p99 * 1000.0
            );
        }
    }
    println!("\ndone: stopping the daemon, prometheus and redis-server");
    daemon.handle().shutdown();
    daemon.wait().await?;
    Ok(())
}

/// A worker: take a token before each query; when denied, sleep on the hint.
async fn worker(client: Client, allowed: Arc<AtomicU64>) {
    let bucket = client.token_bucket(THROTTLE, DEFAULTS);
    loop {
        match bucket.consume(1.0).await {
            Ok(d) if d.allowed => {
                allowed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok(d) => {
                let pause = d
                    .sleep
                    .clamp(Duration::from_millis(1), Duration::from_millis(25));
                tokio::time::sleep(pause).await;
            }
            Err(e) => {
                eprintln!("worker: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn arg(flag: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
