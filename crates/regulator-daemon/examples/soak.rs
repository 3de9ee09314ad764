//! A soak of the daemon: one templated policy governing N throttles (1,000 by default) whose
//! load moves up and down, worker threads hammering H of them (50), Redis killed and restarted
//! once (at a third of the run) and Prometheus once (at two thirds), against real
//! `redis-server` and `prometheus` processes.
//!
//! It checks, and exits non-zero when one fails:
//! - the daemon's RSS is flat: the mean of the last minute is at most 1.1 x the first minute's;
//! - no knob ever left its bounds: every history entry written during the run (harvested
//!   every 20 s, since a Redis restart loses them) and every stored knob at the end;
//! - no error count grows after recovery: the daemon's error, failed-tick and no-data counters
//!   and the workers' errors are the same at the end as 60 s after the last restart.
//!
//! ```text
//! cargo build --release && cargo run --release --example soak -- [MINUTES] [N] [HOT]
//! ```

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use regulator_testing::{Exporter, PrometheusServer, RedisServer};
use support::{rss_mib, wait_scraped};

#[path = "support/mod.rs"]
mod support;

const MIN_RPS: f64 = 1.0;
const MAX_RPS: f64 = 2000.0;

fn main() {
    let mut args = std::env::args().skip(1);
    let minutes: u64 = args.next().map_or(10, |a| a.parse().expect("MINUTES"));
    let n: usize = args.next().map_or(1_000, |a| a.parse().expect("N"));
    let hot: usize = args.next().map_or(50, |a| a.parse().expect("HOT"));
    let total = Duration::from_secs(minutes * 60);
    assert!(
        minutes >= 3,
        "at least 3 minutes: a first and a last minute around two restarts"
    );

    let mut redis = RedisServer::start().expect("start redis-server");
    let exporter = Arc::new(Exporter::start().expect("start exporter"));
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(Arc::clone(&exporter), n, Arc::clone(&stop));
    let mut prometheus = PrometheusServer::start(&[exporter.target()]).expect("start prometheus");
    wait_scraped(&prometheus, n);

    let dir = tempfile::tempdir().expect("tempdir");
    let (mut daemon, metrics_port) = start_daemon(dir.path(), &redis.url(), &prometheus.url(), n);
    let pid = daemon.id();
    let worker_errors = Arc::new(AtomicU64::new(0));
    let worker_calls = Arc::new(AtomicU64::new(0));
    let workers = spawn_workers(&redis.url(), hot, &stop, &worker_calls, &worker_errors);

    println!(
        "soak: {minutes} min, {n} throttles from one template, {hot} hammered by workers; \
         Redis restarted at {:.0} s, Prometheus at {:.0} s",
        total.as_secs_f64() / 3.0,
        total.as_secs_f64() * 2.0 / 3.0
    );
    let start = Instant::now();
    let mut rss: Vec<(f64, f64)> = Vec::new();
    let mut history = History::default();
    let mut redis_restarted = false;
    let mut prometheus_restarted = false;
    let mut recovered: Option<Counters> = None;
    let mut last_harvest = Instant::now();
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_secs(1));
        let t = start.elapsed().as_secs_f64();
        rss.push((t, rss_mib(pid, "VmRSS")));
        if last_harvest.elapsed() >= Duration::from_secs(20) {
            history.harvest(&redis, n);
            last_harvest = Instant::now();
        }
        if !redis_restarted && t >= total.as_secs_f64() / 3.0 {
            history.harvest(&redis, n);
            println!("{t:>6.0} s  Redis killed; back in 3 s with an empty dataset");
            redis.stop();
            std::thread::sleep(Duration::from_secs(3));
            redis.restart().expect("restart redis-server");
            redis_restarted = true;
        }
        if !prometheus_restarted && t >= total.as_secs_f64() * 2.0 / 3.0 {
            println!("{t:>6.0} s  Prometheus killed; back in 3 s");
            prometheus.stop();
            std::thread::sleep(Duration::from_secs(3));
            prometheus.restart().expect("restart prometheus");
            prometheus_restarted = true;
        }
        if prometheus_restarted
            && recovered.is_none()
            && t >= total.as_secs_f64() * 2.0 / 3.0 + 60.0
        {
            let c = Counters::read(metrics_port, &worker_errors);
            println!("{t:>6.0} s  recovered: {c:?}");
            recovered = Some(c);
        }
        if rss.len().is_multiple_of(60) {
            println!(
                "{t:>6.0} s  rss {:.1} MiB, worker calls {}, worker errors {}, history entries {}",
                rss_mib(pid, "VmRSS"),
                worker_calls.load(Ordering::Relaxed),
                worker_errors.load(Ordering::Relaxed),
                history.entries.len()
            );
        }
    }
    history.harvest(&redis, n);
    let end = Counters::read(metrics_port, &worker_errors);
    let stored = stored_knobs(&redis, n);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let _ = load.join();
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let status = daemon.wait().expect("wait for the daemon");
    println!(
        "daemon exit: {status}; worker calls: {}",
        worker_calls.load(Ordering::Relaxed)
    );

    judge(
        &rss,
        total,
        &history,
        &stored,
        &recovered.expect("the run reached recovery"),
        &end,
        n,
    );
}

/// Prints the figures and exits non-zero when a check fails.
fn judge(
    rss: &[(f64, f64)],
    total: Duration,
    history: &History,
    stored: &[(String, f64)],
    recovered: &Counters,
    end: &Counters,
    n: usize,
) {
    let mean = |from: f64, to: f64| {
        let v: Vec<f64> = rss
            .iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|(_, r)| *r)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let secs = total.as_secs_f64();
    let first = mean(0.0, 60.0);
    let last = mean(secs - 60.0, secs + 1.0);
    let peak = rss.iter().map(|(_, r)| *r).fold(0.0, f64::max);
    let out_of_bounds: Vec<&Entry> = history
        .entries
        .values()
        .filter(|e| !(MIN_RPS..=MAX_RPS).contains(&e.rps))
        .collect();
    let stored_out: Vec<&(String, f64)> = stored
        .iter()
        .filter(|(_, r)| !(MIN_RPS..=MAX_RPS).contains(r))
        .collect();

    println!();
    println!(
        "daemon RSS: first minute {first:.1} MiB, last minute {last:.1} MiB (ratio {:.3}, limit 1.1), peak {peak:.1} MiB",
        last / first
    );
    println!(
        "history: {} entries from {} throttles, {} out of [{MIN_RPS}, {MAX_RPS}]; stored knobs at the end: {}, {} out of bounds",
        history.entries.len(),
        history
            .entries
            .values()
            .map(|e| &e.name)
            .collect::<HashSet<_>>()
            .len(),
        out_of_bounds.len(),
        stored.len(),
        stored_out.len()
    );
    println!(
        "worker errors: {} at recovery, {} at the end (all during the restarts when equal)",
        recovered.worker_errors, end.worker_errors
    );
    println!("daemon counters at recovery: {recovered:?}");
    println!("daemon counters at the end:  {end:?}");

    let mut failed = Vec::new();
    if last > first * 1.1 {
        failed.push("RSS grew by more than 10 %");
    }
    if !out_of_bounds.is_empty() || !stored_out.is_empty() {
        failed.push("a knob left its bounds");
    }
    if history.entries.is_empty() || stored.len() < n {
        failed.push("the daemon did not write every throttle");
    }
    if end != recovered {
        failed.push("an error count grew after recovery");
    }
    if failed.is_empty() {
        println!("soak: PASS");
    } else {
        println!("soak: FAIL: {}", failed.join("; "));
        std::process::exit(1);
    }
}

/// The tenants' load: each moves around the target of 1 on its own slow wave, so the daemon
/// raises some throttles while it lowers others, all run long.
fn spawn_load(
    exporter: Arc<Exporter>,
    n: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let set = move |t: f64| {
        for i in 0..n {
            let phase = i as f64 * 0.7;
            let load = 1.0 + 0.8 * (t / 90.0 + phase).sin();
            exporter.set(&format!("tenant_load{{tenant=\"t{i:05}\"}}"), load);
        }
    };
    set(0.0);
    let start = Instant::now();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            set(start.elapsed().as_secs_f64());
            std::thread::sleep(Duration::from_secs(2));
        }
    })
}

fn start_daemon(dir: &std::path::Path, redis: &str, prometheus: &str, n: usize) -> (Child, u16) {
    let binary = std::env::current_exe()
        .expect("own path")
        .parent()
        .and_then(|examples| examples.parent())
        .expect("target dir")
        .join("regulator");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --release` first",
        binary.display()
    );
    let port = regulator_testing::free_port();
    let config = dir.join("soak.yaml");
    std::fs::write(
        &config,
        format!(
            "redis: {{ url: \"{redis}\", timeout: 500ms }}\n\
             prometheus: {{ url: \"{prometheus}\", timeout: 5s }}\n\
             listen: \"127.0.0.1:{port}\"\n\
             interval: 2s\n\
             leader: {{ lease: 6s }}\n\
             history: {{ max_len: 1000 }}\n\
             throttles:\n\
             \x20 - name: 'tenant-'\n\
             \x20   defaults: {{ rps: 100 }}\n\
             \x20   bounds: {{ min_rps: {MIN_RPS}, max_rps: {MAX_RPS} }}\n\
             \x20   signal: {{ query: 'tenant_load', target: 1, name_label: tenant }}\n\
             \x20   control: {{ law: aimd, increase: 20, decrease: 0.7 }}\n\
             \x20   max_throttles: {n}\n"
        ),
    )
    .expect("write config");
    let log = dir.join("daemon.log");
    let mut child = Command::new(&binary)
        .args(["run", "--log-format", "json", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start regulator");
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        let mut file = std::io::BufWriter::new(std::fs::File::create(log).expect("log"));
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
        }
    });
    (child, port)
}

fn spawn_workers(
    url: &str,
    hot: usize,
    stop: &Arc<AtomicBool>,
    calls: &Arc<AtomicU64>,
    errors: &Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..4)
        .map(|w| {
            let (url, stop, calls, errors) = (
                url.to_owned(),
                Arc::clone(stop),
                Arc::clone(calls),
                Arc::clone(errors),
            );
            std::thread::spawn(move || {
                let client = loop {
                    match regulator::blocking::Client::connect(&url) {
                        Ok(c) => break c,
                        Err(_) => std::thread::sleep(Duration::from_millis(100)),
                    }
                };
                let defaults = regulator::Knobs {
                    rps: 100.0,
                    burst: 1.0,
                    window: 1.0,
                };
                let buckets: Vec<_> = (0..hot)
                    .filter(|i| i % 4 == w)
                    .map(|i| client.token_bucket(format!("tenant-t{i:05}"), defaults))
                    .collect();
                while !stop.load(Ordering::Relaxed) {
                    for b in &buckets {
                        calls.fetch_add(1, Ordering::Relaxed);
                        if b.consume(1.0).is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    rps: f64,
}

/// Every history entry seen, by (throttle, stream id).
#[derive(Default)]
struct History {
    entries: BTreeMap<(String, String), Entry>,
}

impl History {
    fn harvest(&mut self, redis: &RedisServer, n: usize) {
        let mut conn = redis.connection();
        for i in 0..n {
            let name = format!("tenant-t{i:05}");
            let key = format!("throttle:{name}:history");
            let Ok(entries) = redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query::<Vec<(String, BTreeMap<String, String>)>>(&mut conn)
            else {
                return;
            };
            for (id, fields) in entries {
                let rps = fields
                    .get("rps")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN);
                self.entries.insert(
                    (name.clone(), id),
                    Entry {
                        name: name.clone(),
                        rps,
                    },
                );
            }
        }
    }
}

fn stored_knobs(redis: &RedisServer, n: usize) -> Vec<(String, f64)> {
    let mut conn = redis.connection();
    (0..n)
        .filter_map(|i| {
            let name = format!("tenant-t{i:05}");
            let rps: Option<String> = redis::cmd("HGET")
                .arg(format!("throttle:{name}:knobs"))
                .arg("rps")
                .query(&mut conn)
                .ok()?;
            Some((name, rps?.parse().unwrap_or(f64::NAN)))
        })
        .collect()
}

/// The counters that must stop growing once Redis and Prometheus are back.
#[derive(Debug, Clone, PartialEq)]
struct Counters {
    errors: BTreeMap<String, f64>,
    failed_ticks: f64,
    no_data: f64,
    worker_errors: u64,
}

impl Counters {
    fn read(port: u16, worker_errors: &AtomicU64) -> Self {
        let text = http_get(port, "/metrics");
        let mut errors = BTreeMap::new();
        let (mut failed_ticks, mut no_data) = (0.0, 0.0);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: f64 = value.parse().unwrap_or(f64::NAN);
            if series.starts_with("regulator_errors_total") {
                errors.insert(series.to_owned(), value);
            } else if series.starts_with("regulator_ticks_total") && series.contains("error") {
                failed_ticks += value;
            } else if series.starts_with("regulator_no_data_total") {
                no_data += value;
            }
        }
        Self {
            errors,
            failed_ticks,
            no_data,
            worker_errors: worker_errors.load(Ordering::Relaxed),
        }
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::Read as _;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, b)| b.to_owned())
}
