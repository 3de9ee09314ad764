//! `make demo`: the whole loop on one machine. A private `redis-server` and `prometheus`, a
//! simulated database whose p99 latency climbs as it nears its capacity, workers taking tokens
//! before each query, and the regulator daemon, with its default control law, steering their
//! `rps` so the latency stays under its 250 ms target while the database's capacity drops
//! (150 → 60 queries/s) and recovers (→ 150). The database meets the target up to 80% of its
//! capacity: that rate is its SLO-capacity.
//!
//! ```text
//! cargo run --release --example demo [-- --phase-seconds 30 --workers 32 --out DIR]
//! ```
//!
//! Each second it measures what the workers were allowed (served/s) and denied (denied/s),
//! exports the p99 that load causes, and reads the `rps` knob and the daemon's last reason
//! from Redis. On a terminal this is a live view redrawn in place: a progress bar, the current
//! values, p99 marked when it is more than 10% above the target, and a line per phase change.
//! Otherwise it prints one `key=value` line per second:
//!
//! ```text
//! t=12 phase=1 capacity=150 slo_capacity=120 served_per_s=118 denied_per_s=840 p99_ms=231 target_ms=250 rps_knob=119.4 reason="headroom"
//! ```
//!
//! At the end it writes `demo.csv` (one row per second) and a figure (`demo.svg`, `demo.png`:
//! the knob, served/s and the SLO-capacity against p99 and the target) into `--out DIR`
//! (default: a new `target/demo-<unix seconds>`), and prints a summary for each phase and
//! the whole run, leaving out the very first second: the share of seconds whose p99 was
//! within 110% of the target, and the goodput, the queries served in those seconds as a share
//! of the SLO-capacity. Ctrl-C stops the run at once, stops everything it started, still
//! writes the files with the seconds it has, and exits 130.
//!
//! Flags: `--phase-seconds N` (length of each of the three phases, default 30), `--workers N`
//! (default 32), `--out DIR`.

#[path = "demo/report.rs"]
mod report;
#[path = "demo/view.rs"]
mod view;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use regulator::{Client, Knobs, StoredKnobs};
use regulator_daemon::config::parse;
use regulator_daemon::status::last_change;
use regulator_daemon::{Daemon, RunOptions};
use regulator_testing::{Exporter, PrometheusServer, RedisServer};
use tokio::task::JoinHandle;

use report::Row;
use view::View;

const THROTTLE: &str = "orders-db";
const SIGNAL: &str = "db_p99_latency_seconds";
/// What workers use while the daemon has written nothing.
const DEFAULTS: Knobs = Knobs {
    rps: 100.0,
    burst: 1.0,
    window: 1.0,
};
/// The p99 the daemon keeps the database under, seconds.
const TARGET: f64 = 0.25;
/// The database's p99 when idle, seconds.
const IDLE: f64 = 0.05;
/// The share of its capacity the database can serve within the target (0.8).
const SLO_UTILIZATION: f64 = 1.0 - IDLE / TARGET;
/// The capacity plan: queries/s, and what happened.
const PLAN: [(f64, &str); 3] = [
    (150.0, "the database serves 150 queries/s"),
    (60.0, "a slow disk: capacity falls to 60 queries/s"),
    (150.0, "the disk is replaced: back to 150 queries/s"),
];

#[derive(Parser)]
#[command(about = "The whole loop: Redis, Prometheus, a simulated database, workers, the daemon")]
struct Args {
    /// Length of each phase of the capacity plan, in seconds.
    #[arg(long, default_value_t = 30)]
    phase_seconds: u64,
    /// Workers taking tokens.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Where to write demo.csv, demo.svg and demo.png (default: a new target/demo-<unix seconds>).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The simulated database: p99 latency of a queue served at `capacity` queries/s, fed at
/// `rate`: 50 ms when idle, 250 ms at 80% load, capped at 2 s when overrun.
fn latency(rate: f64, capacity: f64) -> f64 {
    let utilization = rate / capacity;
    (IDLE / (1.0 - utilization).max(0.025)).min(2.0)
}

/// What the workers did since the last look.
#[derive(Default)]
struct Counters {
    allowed: AtomicU64,
    denied: AtomicU64,
    errors: AtomicU64,
}

/// The servers, the daemon and a client, all stopped when dropped (the daemon after
/// [`Rig::stop`]).
struct Rig {
    redis: RedisServer,
    exporter: Exporter,
    prometheus: PrometheusServer,
    daemon: Daemon,
    client: Client,
    /// The control law the daemon picked.
    law: &'static str,
}

impl Rig {
    async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let redis = RedisServer::start()?;
        let exporter = Exporter::start()?;
        // The database as the fleet at its defaults keeps it, which the workers start doing
        // as soon as the daemon is up.
        exporter.set(SIGNAL, latency(DEFAULTS.rps, PLAN[0].0));
        let prometheus = PrometheusServer::start(&[exporter.target()])?;
        // No control law, step limit or deadband: the policy gets the defaults.
        let config = parse(
            &format!(
                r#"
redis: {{ url: "{}" }}
prometheus: {{ url: "{}", timeout: 1s }}
listen: "127.0.0.1:0"
interval: 1s
throttles:
  - name: {THROTTLE}
    defaults: {{ rps: {}, burst: {}, window: {} }}
    bounds: {{ min_rps: 10, max_rps: 400 }}
    signal: {{ query: {SIGNAL}, target: {TARGET} }}
"#,
                redis.url(),
                prometheus.url(),
                DEFAULTS.rps,
                DEFAULTS.burst,
                DEFAULTS.window,
            ),
            "demo",
        )?;
        let law = config.throttles[0].control.law();
        let options = RunOptions {
            drain: Duration::from_secs(1),
            watch: None,
            ..RunOptions::default()
        };
        // The fleet starts once Prometheus has the signal, as a fleet joining a running
        // system would, so the first seconds are not a blind overload.
        first_scrape(&prometheus).await?;
        let daemon = Daemon::start(config, options).await?;
        let client = Client::connect(&redis.url()).await?;
        Ok(Self {
            redis,
            exporter,
            prometheus,
            daemon,
            client,
            law,
        })
    }

    /// Stops the daemon, then kills prometheus and redis-server (their fixtures kill on drop).
    async fn stop(self) {
        self.daemon.handle().shutdown();
        match tokio::time::timeout(Duration::from_secs(5), self.daemon.wait()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("the daemon stopped abnormally: {e}"),
            Err(_) => eprintln!("the daemon did not stop within 5 s"),
        }
        drop(self.client);
        drop(self.prometheus);
        drop(self.exporter);
        drop(self.redis);
    }
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args = Args::parse();
    let out = if let Some(dir) = args.out {
        dir
    } else {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        // The workspace's target directory: two levels above this crate.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2);
        root.unwrap_or(Path::new("."))
            .join(format!("target/demo-{now}"))
    };
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let out = std::fs::canonicalize(&out).unwrap_or(out);

    let rig = Rig::start().await?;
    println!(
        "redis {} · prometheus {} · daemon /metrics on {}",
        rig.redis.url(),
        rig.prometheus.url(),
        rig.daemon.handle().local_addr()
    );
    println!(
        "{} workers on throttle {THROTTLE:?}; the daemon ({} law, the default) keeps the \
         database's p99 under {:.0} ms; files go to {}\n",
        args.workers,
        rig.law,
        TARGET * 1000.0,
        out.display()
    );
    let counters = Arc::new(Counters::default());
    let workers: Vec<JoinHandle<()>> = (0..args.workers)
        .map(|_| tokio::spawn(worker(rig.client.clone(), Arc::clone(&counters))))
        .collect();
    let mut view = View::new(args.phase_seconds * PLAN.len() as u64, PLAN.len(), TARGET);
    let (rows, interrupted) = run(&rig, &counters, &mut view, args.phase_seconds).await;
    view.finish();

    let t = rows.last().map_or(0, |r| r.t);
    if interrupted {
        println!(
            "interrupted after {t} s: stopping the workers, the daemon, prometheus and redis-server"
        );
    } else {
        println!("done: stopping the workers, the daemon, prometheus and redis-server");
    }
    for w in &workers {
        w.abort();
    }
    let law = rig.law;
    rig.stop().await;

    let (phases, whole) = report::summarize(&rows, TARGET);
    println!(
        "\np99 within {:.0}% of the {:.0} ms target, and goodput (served in those seconds / SLO-capacity):\n{}",
        report::TOLERANCE * 100.0,
        TARGET * 1000.0,
        report::table(&phases, &whole)
    );
    if !view.is_live() {
        print!("{}", report::summary_lines(&phases, &whole));
    }
    let title = format!(
        "{THROTTLE}, {law} law: p99 in SLO {:.0}% of the time, goodput {:.0}%",
        whole.in_slo * 100.0,
        whole.goodput * 100.0
    );
    match report::write(&out, &title, &rows, TARGET) {
        Ok(paths) => {
            for p in paths {
                println!("wrote {}", p.display());
            }
        }
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(if interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs the capacity plan, a row per second, until its end or Ctrl-C; returns the rows and
/// whether Ctrl-C cut it short.
async fn run(
    rig: &Rig,
    counters: &Counters,
    view: &mut View,
    phase_seconds: u64,
) -> (Vec<Row>, bool) {
    let mut rows: Vec<Row> = Vec::new();
    let ctrl_c = async {
        // Without a handler, Ctrl-C ends the process as it always does.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(ctrl_c);
    // Seconds are counted from the middle of the clock's seconds: the buckets refill on
    // whole seconds of Redis' clock (this machine's), so each counted second holds exactly
    // one refill, as the database's own per-second view would.
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let to_mid = (1_500_000_000 - u64::from(into)) % 1_000_000_000;
    let start = tokio::time::Instant::now() + Duration::from_nanos(to_mid);
    let mut tick = tokio::time::interval_at(start, Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    // What the workers took before the first counted second is a fresh bucket's one-time
    // fill, not a rate: it is not counted.
    counters.allowed.swap(0, Ordering::Relaxed);
    counters.denied.swap(0, Ordering::Relaxed);
    let mut last = Instant::now();
    let mut t = 0;
    for (i, (capacity, what)) in PLAN.into_iter().enumerate() {
        let phase = i + 1;
        let slo_capacity = capacity * SLO_UTILIZATION;
        view.phase(t, phase, capacity, slo_capacity, what);
        for _ in 0..phase_seconds {
            let second = async {
                tick.tick().await;
                let now = Instant::now();
                let elapsed = (now - last).as_secs_f64();
                last = now;
                let per_s = |n: &AtomicU64| n.swap(0, Ordering::Relaxed) as f64 / elapsed;
                let served = per_s(&counters.allowed);
                let denied = per_s(&counters.denied);
                let errors = per_s(&counters.errors);
                let p99 = latency(served, capacity);
                rig.exporter.set(SIGNAL, p99);
                let (knob, reason) = daemon_view(&rig.client).await;
                Row {
                    t: t + 1,
                    phase,
                    capacity,
                    slo_capacity,
                    served,
                    denied,
                    errors,
                    p99,
                    knob,
                    reason,
                }
            };
            tokio::select! {
                row = second => {
                    t = row.t;
                    view.second(&row);
                    rows.push(row);
                }
                () = &mut ctrl_c => return (rows, true),
            }
        }
    }
    (rows, false)
}

/// The `rps` knob stored in Redis and the reason of the daemon's last change.
async fn daemon_view(client: &Client) -> (Option<f64>, String) {
    let knob = match client.get(THROTTLE).await.map(|s| s.knobs()) {
        Ok(StoredKnobs::Valid(k)) => Ok(Some(k.rps)),
        Ok(StoredKnobs::Absent) => Ok(None),
        Ok(StoredKnobs::Invalid(why)) => Err(format!("invalid knobs: {why}")),
        Err(e) => Err(format!("redis: {e}")),
    };
    let reason = last_change(client, THROTTLE)
        .await
        .map(|c| c.map_or_else(String::new, |c| c.reason));
    match (knob, reason) {
        (Ok(knob), Ok(reason)) => (knob, reason),
        (Err(e), _) => (None, e),
        (Ok(knob), Err(e)) => (knob, format!("redis: {e}")),
    }
}

/// Waits until Prometheus answers the signal's query with a sample (its first scrape lands a
/// few seconds after it starts).
async fn first_scrape(prometheus: &PrometheusServer) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let path = format!("/api/v1/query?query={SIGNAL}");
    loop {
        if let Ok((200, body)) = prometheus.get(&path)
            && body.contains("\"value\"")
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err("prometheus scraped nothing within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A worker: take a token before each query; when denied, sleep on the hint.
async fn worker(client: Client, counters: Arc<Counters>) {
    let bucket = client.token_bucket(THROTTLE, DEFAULTS);
    loop {
        match bucket.consume(1.0).await {
            Ok(d) if d.allowed => {
                counters.allowed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok(d) => {
                counters.denied.fetch_add(1, Ordering::Relaxed);
                let pause = d
                    .sleep
                    .clamp(Duration::from_millis(1), Duration::from_millis(25));
                tokio::time::sleep(pause).await;
            }
            Err(_) => {
                // Counted and shown; printing here would tear the live view.
                counters.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
