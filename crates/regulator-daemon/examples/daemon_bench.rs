//! The daemon at scale: one templated policy governing N throttles (10,000 by default) from
//! one query, against a real `prometheus` and `redis-server`. Every throttle is overloaded,
//! so every tick changes (and writes, and logs) every throttle: the worst case.
//!
//! Reports each tick's wall time and its phases (query and parse, with the known throttles'
//! knobs read meanwhile; reading new throttles' knobs; compute; write; log), the knob changes it wrote, and the daemon's resident memory (peak and current), read
//! from `/proc`; then the policy's query timed apart from the daemon, and Redis's own command
//! times over the run.
//!
//! ```text
//! cargo build --release && cargo run --release --example daemon_bench -- [N] [TICKS]
//! DAEMON_BENCH_LOG=warn cargo run --release --example daemon_bench -- 100000 4   # no change lines
//! DAEMON_BENCH_CLUSTER=1 cargo run --release --example daemon_bench -- 10000 4   # 3-master cluster
//! ```

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use regulator_testing::{Exporter, PrometheusServer, RedisCluster, RedisServer};
use support::{rss_mib, wait_scraped};

#[path = "support/mod.rs"]
mod support;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(10_000, |a| a.parse().expect("N"));
    let ticks: usize = args.next().map_or(6, |a| a.parse().expect("TICKS"));
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

    let (mut redis, _exporter, prometheus) = stack(n);
    probe_query(&prometheus);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &redis.config(), &prometheus.url(), n);
    let log = dir.path().join("daemon.log");
    let mut child = Command::new(&binary)
        .args(["run", "--log-format", "json", "--config"])
        .arg(&config)
        // The tick events the bench reads are DEBUG; `DAEMON_BENCH_LOG=warn` silences the
        // per-change INFO lines to see what they cost.
        .env(
            "RUST_LOG",
            format!(
                "{},regulator_daemon::schedule=debug",
                std::env::var("DAEMON_BENCH_LOG").unwrap_or_else(|_| "info".to_owned())
            ),
        )
        .stderr(Stdio::piped())
        .spawn()
        .expect("start regulator");
    let pid = child.id();
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let log_path = log.clone();
    std::thread::spawn(move || {
        let mut file = std::io::BufWriter::new(std::fs::File::create(log_path).expect("log"));
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            if line.contains(r#""message":"tick""#) {
                let v: serde_json::Value = serde_json::from_str(&line).expect("json log");
                let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
                let _ = tx.send((
                    v["throttles"].as_u64().unwrap_or(0),
                    v["changes"].as_u64().unwrap_or(0),
                    f("seconds"),
                    ["query_s", "read_s", "compute_s", "write_s", "log_s"].map(f),
                ));
            }
        }
    });

    println!("{n} throttles from one templated query; every tick changes every throttle");
    println!(
        "tick  throttles  changes  seconds  rss_mib  | query+parse  read new  compute  write  log (s)"
    );
    let mut worst: f64 = 0.0;
    let mut peak_rss: f64 = 0.0;
    for tick in 1..=ticks {
        let (throttles, changes, seconds, [query, read, compute, write, log]) = loop {
            peak_rss = peak_rss.max(rss_mib(pid, "VmRSS"));
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(t) => break t,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(e) => panic!("daemon log ended: {e}"),
            }
        };
        worst = worst.max(seconds);
        println!(
            "{tick:>4}  {throttles:>9}  {changes:>7}  {seconds:>7.3}  {:>7.1}  | {query:>11.3}  {read:>8.3}  {compute:>7.3}  {write:.3}  {log:.3}",
            rss_mib(pid, "VmRSS")
        );
    }
    let hwm = rss_mib(pid, "VmHWM");
    // Where Redis's time went over the whole run (every tick's reads and writes).
    // Where Redis's time went over the whole run (every tick's reads and writes), node by node.
    for (i, node) in redis.nodes().iter().enumerate() {
        let info: String = node.cmd(&["INFO", "commandstats"]);
        for line in info.lines().filter(|l| {
            ["evalsha", "hmget", "hset", "xadd", "pexpire"]
                .iter()
                .any(|c| l.starts_with(&format!("cmdstat_{c}:")))
        }) {
            println!("redis node {i} {line}");
        }
        let cpu: String = node.cmd(&["INFO", "cpu"]);
        println!(
            "redis node {i} cpu: {}",
            cpu.lines()
                .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let status = child.wait().expect("wait");
    println!("slowest tick: {worst:.3} s (target <= 1 s)");
    println!("peak RSS: {hwm:.1} MiB (VmHWM); sampled max {peak_rss:.1} MiB");
    println!(
        "daemon exit: {status}; log: {} lines",
        std::fs::read_to_string(&log).map_or(0, |l| l.lines().count())
    );
}

/// Times the policy's query apart from the daemon: Prometheus's answer (evaluation,
/// serialisation and transfer), then the daemon's parser on that body, three times each.
fn probe_query(prometheus: &PrometheusServer) {
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let (status, body) = prometheus
            .get("/api/v1/query?query=tenant_load")
            .expect("query");
        let answer = t.elapsed().as_secs_f64();
        assert_eq!(status, 200, "{body:.200}");
        let t = std::time::Instant::now();
        let series =
            regulator_daemon::source::parse_answer(body.as_bytes(), Some("tenant")).expect("parse");
        let parse = t.elapsed().as_secs_f64();
        println!(
            "query probe: prometheus answers in {answer:.3} s ({:.1} MB), parse_answer takes {parse:.3} s ({} series)",
            body.len() as f64 / 1e6,
            series.len()
        );
    }
}

/// One redis-server, or with `DAEMON_BENCH_CLUSTER=1` a 3-master Redis Cluster.
enum Redis {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Redis {
    /// The config's `redis:` mapping.
    fn config(&self) -> String {
        match self {
            Self::Single(s) => format!("{{ url: \"{}\", timeout: 1s }}", s.url()),
            Self::Cluster(c) => {
                format!("{{ url: \"{}\", cluster: true, timeout: 1s }}", c.urls()[0])
            }
        }
    }

    fn nodes(&mut self) -> &mut [RedisServer] {
        match self {
            Self::Single(s) => std::slice::from_mut(s),
            Self::Cluster(c) => c.nodes(),
        }
    }
}

/// Redis, an exporter with `n` tenant gauges, and a Prometheus that has scraped them all.
fn stack(n: usize) -> (Redis, Exporter, PrometheusServer) {
    let redis = if std::env::var_os("DAEMON_BENCH_CLUSTER").is_some() {
        Redis::Cluster(RedisCluster::start().expect("start a redis cluster"))
    } else {
        Redis::Single(RedisServer::start().expect("start redis-server"))
    };
    let exporter = Exporter::start().expect("start exporter");
    for i in 0..n {
        exporter.set(&format!("tenant_load{{tenant=\"t{i:05}\"}}"), 3.0);
    }
    let prometheus = PrometheusServer::start(&[exporter.target()]).expect("start prometheus");
    wait_scraped(&prometheus, n);

    (redis, exporter, prometheus)
}

/// One templated policy over every tenant (`n` of them), ticking every 5 s.
fn write_config(
    dir: &std::path::Path,
    redis: &str,
    prometheus: &str,
    n: usize,
) -> std::path::PathBuf {
    let config = dir.join("bench.yaml");
    std::fs::write(
        &config,
        format!(
            "redis: {redis}\n\
             prometheus: {{ url: \"{prometheus}\", timeout: 10s }}\n\
             listen: \"127.0.0.1:0\"\n\
             interval: 5s\n\
             throttles:\n\
             \x20 - name: 'tenant-'\n\
             \x20   defaults: {{ rps: 1000 }}\n\
             \x20   bounds: {{ min_rps: 0.000001, max_rps: 2000 }}\n\
             \x20   signal: {{ query: 'tenant_load', target: 1, name_label: tenant }}\n\
             \x20   control: {{ law: aimd, decrease: 0.5 }}\n\
             \x20   max_throttles: {n}\n"
        ),
    )
    .expect("write config");
    config
}
