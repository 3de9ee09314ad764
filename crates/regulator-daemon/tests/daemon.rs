//! The daemon in-process against real `redis-server`, `prometheus` and an exporter the test
//! sets: control, no data, Redis restarts, reloads, leadership, dry run, templates, and a
//! limitlion worker obeying what the daemon writes.

mod common;

use std::time::{Duration, Instant};

use common::stack::{Stack, policy};
use regulator_daemon::config::parse;
use regulator_daemon::{Daemon, RunOptions};
use regulator_testing::LimitlionDriver;
use serde_json::json;

const INTERVAL: Duration = Duration::from_secs(1);

async fn start(stack: &Stack, throttles: &str, options: RunOptions) -> Daemon {
    start_text(&stack.config(throttles), options).await
}

async fn start_text(text: &str, options: RunOptions) -> Daemon {
    let config = parse(text, "test").expect("valid config");
    Daemon::start(config, options).await.expect("daemon starts")
}

fn quiet() -> RunOptions {
    RunOptions {
        watch: None,
        ..RunOptions::default()
    }
}

/// Runs blocking waits off the runtime's worker threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking part")
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_lowers_rps_within_two_intervals_and_headroom_raises_it_to_max() {
    let stack = std::sync::Arc::new(Stack::start());
    stack.exporter.set("db_latency", 3.0);
    let s = stack.clone();
    blocking(move || s.wait_scraped("db_latency", 1)).await;

    let daemon = start(&stack, &policy("orders-db", "db_latency", "hold"), quiet()).await;
    let started = Instant::now();
    let s = stack.clone();
    let rps = blocking(move || {
        s.wait_rps(
            "orders-db",
            INTERVAL * 2 + Duration::from_millis(500),
            |r| r < 100.0,
        )
    })
    .await;
    assert_eq!(rps, 50.0, "one multiplicative decrease from the defaults");
    eprintln!("first decrease after {:?}", started.elapsed());
    assert!(daemon.handle().is_leader());

    // Headroom: up by 50 a tick, never past max_rps.
    stack.exporter.set("db_latency", 0.2);
    let s = stack.clone();
    let seen = blocking(move || {
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < Duration::from_secs(15) {
            let rps = s.rps("orders-db").unwrap();
            seen.push(rps);
            if rps == 200.0 && seen.iter().filter(|r| **r == 200.0).count() > 40 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        seen
    })
    .await;
    assert!(
        seen.iter().all(|r| *r <= 200.0),
        "never past max_rps: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&200.0), "{seen:?}");

    // Every change is in the history with its reason and signal.
    let history: Vec<(String, Vec<(String, String)>)> =
        stack
            .redis
            .cmd(&["XRANGE", "throttle:orders-db:history", "-", "+"]);
    let reasons: Vec<&str> = history
        .iter()
        .filter_map(|(_, fields)| {
            fields
                .iter()
                .find(|(k, _)| k == "reason")
                .map(|(_, v)| v.as_str())
        })
        .collect();
    assert!(
        reasons.contains(&"overloaded") && reasons.contains(&"headroom"),
        "{reasons:?}"
    );
    let text = daemon.handle().metrics();
    assert!(
        metric(
            &text,
            r#"regulator_decisions_total{policy="orders-db",direction="down"}"#
        ) >= Some(1.0)
    );
    assert_eq!(metric(&text, "regulator_leader"), Some(1.0));
    assert!(
        daemon.handle().not_ready().is_empty(),
        "{:?}",
        daemon.handle().not_ready()
    );
    daemon.handle().shutdown();
    daemon.wait().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_down_applies_on_no_data_and_control_resumes_when_it_returns() {
    let stack = Stack::start();
    stack.exporter.set("db_latency", 0.2);
    stack.wait_scraped("db_latency", 1);
    let stack = std::sync::Arc::new(std::sync::Mutex::new(stack));
    let text = stack
        .lock()
        .unwrap()
        .config(&policy("orders-db", "db_latency", "min"));
    let daemon = start_text(&text, quiet()).await;
    let s = stack.clone();
    blocking(move || {
        s.lock()
            .unwrap()
            .wait_rps("orders-db", Duration::from_secs(5), |r| r > 100.0)
    })
    .await;

    stack.lock().unwrap().prometheus.stop();
    let s = stack.clone();
    blocking(move || {
        s.lock()
            .unwrap()
            .wait_rps("orders-db", Duration::from_secs(5), |r| r == 0.01)
    })
    .await;
    let text = daemon.handle().metrics();
    assert!(
        metric(
            &text,
            r#"regulator_no_data_total{policy="orders-db",reason="unreachable"}"#
        ) >= Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"regulator_signal{throttle="orders-db"}"#).map(f64::is_nan),
        Some(true)
    );

    let s = stack.clone();
    blocking(move || {
        let mut s = s.lock().unwrap();
        s.prometheus.restart().expect("restart prometheus");
        s.wait_scraped("db_latency", 1);
        s.wait_rps("orders-db", Duration::from_secs(10), |r| r > 0.01);
    })
    .await;
    daemon.handle().shutdown();
    daemon.wait().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_survived() {
    let stack = Stack::start();
    stack.exporter.set("db_latency", 3.0);
    stack.wait_scraped("db_latency", 1);
    let stack = std::sync::Arc::new(std::sync::Mutex::new(stack));
    let text = stack
        .lock()
        .unwrap()
        .config(&policy("orders-db", "db_latency", "hold"));
    let daemon = start_text(&text, quiet()).await;
    let s = stack.clone();
    blocking(move || {
        s.lock()
            .unwrap()
            .wait_rps("orders-db", Duration::from_secs(5), |r| r < 100.0)
    })
    .await;

    stack.lock().unwrap().redis.stop();
    let handle = daemon.handle();
    let errors = r#"regulator_ticks_total{policy="orders-db",outcome="error"}"#;
    let start = Instant::now();
    while metric(&handle.metrics(), errors).is_none_or(|n| n < 1.0) {
        assert!(start.elapsed() < INTERVAL * 5, "no failed tick");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still ready: readiness does not follow Redis (both replicas would go unready together
    // and block node drains); the outage shows in the metrics instead.
    assert!(handle.not_ready().is_empty(), "{:?}", handle.not_ready());
    assert_eq!(metric(&handle.metrics(), "regulator_redis_up"), Some(0.0));

    // A restarted Redis is empty: the knobs come back (from the defaults, still overloaded)
    // and the daemon is ready again.
    let s = stack.clone();
    blocking(move || {
        let mut s = s.lock().unwrap();
        s.redis.restart().expect("restart redis");
        s.wait_rps("orders-db", Duration::from_secs(10), |r| r < 100.0);
    })
    .await;
    let start = Instant::now();
    while metric(&handle.metrics(), "regulator_redis_up") != Some(1.0) || !handle.is_leader() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "redis_up {:?}, leader {}",
            metric(&handle.metrics(), "regulator_redis_up"),
            handle.is_leader()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handle.shutdown();
    daemon.wait().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_reload_keeps_the_running_config_and_a_good_one_adds_a_throttle() {
    let stack = std::sync::Arc::new(Stack::start());
    stack.exporter.set("db_latency", 3.0);
    stack.exporter.set("api_latency", 3.0);
    let s = stack.clone();
    blocking(move || s.wait_scraped("api_latency", 1)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("regulator.yaml");
    let first = stack.config(&policy("orders-db", "db_latency", "hold"));
    std::fs::write(&path, &first).unwrap();
    let options = RunOptions {
        config_path: Some(path.clone()),
        watch: Some(Duration::from_millis(200)),
        ..RunOptions::default()
    };
    let daemon = start(&stack, &policy("orders-db", "db_latency", "hold"), options).await;
    let handle = daemon.handle();
    let s = stack.clone();
    blocking(move || s.wait_rps("orders-db", Duration::from_secs(5), |r| r < 100.0)).await;

    // Broken: a typo'd key. Rejected, counted, and orders-db keeps being controlled.
    std::fs::write(&path, first.replace("on_no_data", "on_nodata")).unwrap();
    handle.reload();
    let start = Instant::now();
    while metric(
        &handle.metrics(),
        r#"regulator_reloads_total{result="error"}"#,
    )
    .is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "reload error not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = stack.rps("orders-db").unwrap();
    let s = stack.clone();
    blocking(move || s.wait_rps("orders-db", Duration::from_secs(5), |r| r < before)).await;

    // Good: a second throttle, picked up by the file watch alone (no signal).
    let second = format!("{first}{}", policy("api", "api_latency", "hold"));
    std::fs::write(&path, second).unwrap();
    let s = stack.clone();
    blocking(move || s.wait_rps("api", Duration::from_secs(5), |r| r < 100.0)).await;
    let text = handle.metrics();
    assert_eq!(
        metric(&text, r#"regulator_reloads_total{result="ok"}"#),
        Some(1.0),
        "{text}"
    );

    // Removing it stops its control and its metrics.
    std::fs::write(&path, &first).unwrap();
    let start = Instant::now();
    while handle.metrics().contains(r#"throttle="api""#) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "api still exported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown();
    daemon.wait().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_have_one_writer_and_hand_over() {
    let stack = std::sync::Arc::new(Stack::start());
    stack.exporter.set("db_latency", 3.0);
    let s = stack.clone();
    blocking(move || s.wait_scraped("db_latency", 1)).await;
    let throttles = policy("orders-db", "db_latency", "hold");
    let a = start(&stack, &throttles, quiet()).await;
    let b = start(&stack, &throttles, quiet()).await;
    tokio::time::sleep(INTERVAL * 3).await;
    let (leader, shadow) = if a.handle().is_leader() {
        (a, b)
    } else {
        (b, a)
    };
    assert!(leader.handle().is_leader() && !shadow.handle().is_leader());
    let text = shadow.handle().metrics();
    assert!(
        !text.contains("regulator_knob_writes_total{"),
        "the shadow wrote:\n{text}"
    );
    assert!(
        metric(&text, r#"regulator_knob{throttle="orders-db",knob="rps"}"#).is_some(),
        "the shadow computes"
    );
    assert_eq!(metric(&text, "regulator_leader"), Some(0.0));

    // The leader stops (and releases the lease): the shadow takes over and writes.
    leader.handle().shutdown();
    leader.wait().await.expect("clean stop");
    let start = Instant::now();
    while !shadow.handle().is_leader() {
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "no takeover within the lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = stack.clone();
    let before = stack.rps("orders-db").unwrap();
    blocking(move || s.wait_rps("orders-db", Duration::from_secs(5), |r| r < before)).await;
    assert!(
        metric(
            &shadow.handle().metrics(),
            r#"regulator_knob_writes_total{policy="orders-db"}"#
        ) >= Some(1.0)
    );
    shadow.handle().shutdown();
    shadow.wait().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_computes_and_writes_nothing() {
    let stack = std::sync::Arc::new(Stack::start());
    stack.exporter.set("db_latency", 3.0);
    let s = stack.clone();
    blocking(move || s.wait_scraped("db_latency", 1)).await;
    let options = RunOptions {
        dry_run: true,
        ..quiet()
    };
    let daemon = start(&stack, &policy("orders-db", "db_latency", "hold"), options).await;
    // The dry run computes a cut (its gauge shows it) and writes nothing.
    let start = Instant::now();
    loop {
        let text = daemon.handle().metrics();
        let rps = metric(&text, r#"regulator_knob{throttle="orders-db",knob="rps"}"#);
        if rps.is_some_and(|v| v < 100.0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no cut computed: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stack.rps("orders-db"), None);
    let lease: Option<String> = stack.redis.cmd(&["GET", "regulator:leader"]);
    assert_eq!(lease, None, "a dry run never takes the lease");
    let text = daemon.handle().metrics();
    assert_eq!(metric(&text, "regulator_dry_run"), Some(1.0));
    daemon.handle().shutdown();
    daemon.wait().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_governs_one_throttle_per_tenant() {
    let stack = std::sync::Arc::new(Stack::start());
    stack.exporter.set(r#"tenant_load{tenant="acme"}"#, 3.0);
    stack.exporter.set(r#"tenant_load{tenant="globex"}"#, 0.2);
    let s = stack.clone();
    blocking(move || s.wait_scraped("tenant_load", 2)).await;
    let throttles = "  - name: 'tenant-'\n    defaults: { rps: 100 }\n    bounds: { min_rps: 2, max_rps: 200 }\n    \
                     signal: { query: 'max by (tenant) (tenant_load)', target: 1, name_label: tenant }\n    \
                     control: { law: aimd, increase: 50, decrease: 0.5 }\n";
    let daemon = start(&stack, throttles, quiet()).await;
    let s = stack.clone();
    blocking(move || {
        s.wait_rps("tenant-acme", Duration::from_secs(5), |r| r < 100.0);
        s.wait_rps("tenant-globex", Duration::from_secs(5), |r| r > 100.0);
    })
    .await;
    let text = daemon.handle().metrics();
    assert_eq!(
        metric(&text, r#"regulator_throttles{policy="tenant-"}"#),
        Some(2.0),
        "{text}"
    );
    daemon.handle().shutdown();
    daemon.wait().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limitlion_worker_obeys_the_knobs_the_daemon_writes() {
    let stack = std::sync::Arc::new(Stack::start());
    stack.exporter.set("db_latency", 100.0);
    let s = stack.clone();
    blocking(move || s.wait_scraped("db_latency", 1)).await;
    let throttles =
        policy("orders-db", "db_latency", "hold").replace("min_rps: 0.01", "min_rps: 2");
    let daemon = start(&stack, &throttles, quiet()).await;
    // Halving from 100 each tick reaches the floor, 2 rps.
    let s = stack.clone();
    blocking(move || s.wait_rps("orders-db", Duration::from_secs(15), |r| r == 2.0)).await;
    daemon.handle().shutdown();
    daemon.wait().await.expect("clean stop");

    // A Python worker whose own default is 100 rps gets 2 rps × 5 s = 10 tokens.
    let url = stack.redis.url();
    let allowed = blocking(move || {
        let mut py = LimitlionDriver::start(&url, false).expect("start limitlion (run `make deps`)");
        (0..30)
            .filter(|_| {
                py.call(&json!({"op": "throttle", "name": "orders-db", "rps": 100, "burst": 1, "window": 5}))
                    ["allowed"]
                    .as_bool()
                    .expect("allowed")
            })
            .count()
    })
    .await;
    assert_eq!(allowed, 10);
}

/// A leader whose lease passed to another replica while its own deadline still says
/// "leader" (what a paused or partitioned leader sees when it wakes up) has its writes
/// refused by Redis: the knobs and their history stay as the new holder left them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_the_lease_moved_are_refused_by_redis() {
    let stack = std::sync::Arc::new(Stack::start());
    stack.exporter.set("db_latency", 3.0);
    let s = stack.clone();
    blocking(move || s.wait_scraped("db_latency", 1)).await;
    // A 30 s lease is renewed every 10 s: room for several ticks between two renewals.
    let text = stack
        .config(&policy("orders-db", "db_latency", "hold"))
        .replace("lease: 3s", "lease: 30s");
    let daemon = start_text(&text, quiet()).await;
    assert!(daemon.handle().is_leader());
    // Overloaded: the leader halves rps every tick, so every tick writes.
    let s = stack.clone();
    blocking(move || s.wait_rps("orders-db", Duration::from_secs(5), |r| r < 100.0)).await;

    // Right after a renewal, another replica takes the lease; this one's deadline (27 s
    // after that renewal) says it still leads.
    let start = Instant::now();
    loop {
        let left: i64 = stack.redis.cmd(&["PTTL", "regulator:leader"]);
        if left > 29_700 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(12), "no renewal seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _: () = stack
        .redis
        .cmd(&["SET", "regulator:leader", "intruder", "PX", "60000"]);
    let frozen_rps = stack.rps("orders-db").unwrap();
    let history: u64 = stack.redis.cmd(&["XLEN", "throttle:orders-db:history"]);
    assert!(daemon.handle().is_leader(), "the deadline has not passed");

    let fenced = r#"regulator_errors_total{kind="fenced"}"#;
    let start = Instant::now();
    while metric(&daemon.handle().metrics(), fenced).is_none_or(|n| n < 1.0) {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "no write was refused:\n{}",
            daemon.handle().metrics()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        stack.rps("orders-db"),
        Some(frozen_rps),
        "a fenced write landed"
    );
    let after: u64 = stack.redis.cmd(&["XLEN", "throttle:orders-db:history"]);
    assert_eq!(after, history, "a fenced write added history");
    daemon.handle().shutdown();
    daemon.wait().await.expect("clean stop");
    let holder: Option<String> = stack.redis.cmd(&["GET", "regulator:leader"]);
    assert_eq!(
        holder.as_deref(),
        Some("intruder"),
        "the lease was released or taken back"
    );
}
