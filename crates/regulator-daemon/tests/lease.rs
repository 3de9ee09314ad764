//! Local token leases against a real Redis: a leased process takes exactly what it spends from
//! the shared bucket, gives back what it does not (only within the window it came from), and a
//! fleet of leased, unleased and Python limitlion processes never gets more than the budget.
//!
//! The worker processes are this test binary run again with `LEASE_WORKER` set (see
//! [`worker_process`]), so each has its own connection, runtime and address space.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{T0, knobs, patient_client, redis};
use regulator::{LeaseOptions, LeasedBucket, Source};
use regulator_testing::{LimitlionDriver, RedisServer};

fn options(horizon: Duration) -> LeaseOptions {
    LeaseOptions {
        horizon,
        ..LeaseOptions::default()
    }
}

fn bucket_tokens(server: &RedisServer, name: &str) -> f64 {
    let tokens: String = server.cmd(&["HGET", &format!("throttle:{name}"), "tokens"]);
    tokens.parse().unwrap()
}

/// Tokens the lease in hand still holds: what was reserved, less what was spent and given
/// back or dropped.
fn held(bucket: &LeasedBucket, spent: f64) -> f64 {
    let s = bucket.stats();
    s.reserved - spent - s.returned - s.dropped
}

#[tokio::test]
async fn leased_decisions_take_from_the_bucket_exactly_what_they_spend() {
    let server = redis();
    server.freeze_time(T0, 0);
    let client = patient_client(&server.url(), true).await;
    // 1,000 tokens a 10 s window; the frozen clock never reaches its end. Batches of up to
    // 100 tokens.
    let bucket = client
        .token_bucket("exact", knobs(100.0, 1.0, 10.0))
        .leased(LeaseOptions {
            horizon: Duration::from_secs(10),
            max_share: 0.1,
        })
        .unwrap();
    for i in 0..700 {
        assert!(bucket.consume(1.0).await.unwrap().allowed, "request {i}");
    }
    let stats = bucket.stats();
    assert_eq!(stats.decisions, 700);
    assert!(stats.calls < 20, "{stats:?}");
    // The bucket lacks exactly what was spent plus what the lease in hand still holds.
    let in_hand = held(&bucket, 700.0);
    assert!(in_hand > 0.0 && in_hand <= 100.0, "{stats:?}");
    assert_eq!(bucket_tokens(&server, "exact"), 300.0 - in_hand);

    bucket.release().await.unwrap();
    assert_eq!(bucket_tokens(&server, "exact"), 300.0);
    assert_eq!(bucket.stats().returned, in_hand);

    // 400 more asked, 300 left: the first 300 are allowed, then denials, mostly local ones.
    let mut allowed = 0;
    for _ in 0..400 {
        let d = bucket.consume(1.0).await.unwrap();
        if d.allowed {
            allowed += 1;
        } else {
            assert_eq!(d.source, Source::Defaults);
            assert!(d.sleep > Duration::from_secs(9), "{d:?}");
        }
    }
    assert_eq!(allowed, 300);
    assert_eq!(bucket_tokens(&server, "exact"), 0.0);
    let calls_before = bucket.stats().calls;
    for _ in 0..100 {
        assert!(!bucket.consume(1.0).await.unwrap().allowed);
    }
    assert_eq!(bucket.stats().calls, calls_before, "denials are remembered");
}

#[tokio::test]
async fn tokens_unspent_when_the_window_ends_are_dropped_not_returned() {
    let server = redis();
    server.freeze_time(T0, 0);
    let client = patient_client(&server.url(), true).await;
    let bucket = client
        .token_bucket("rollover", knobs(100.0, 1.0, 10.0))
        .leased(options(Duration::from_secs(10)))
        .unwrap();
    for _ in 0..200 {
        assert!(bucket.consume(1.0).await.unwrap().allowed);
    }
    let in_hand = held(&bucket, 200.0);
    assert!(in_hand > 0.0);
    // The next window: the refill fills the bucket to capacity without the lease's rest, so
    // that rest must not come back on top.
    server.freeze_time(T0 + 10, 0);
    bucket.release().await.unwrap();
    let stats = bucket.stats();
    assert_eq!(stats.dropped, in_hand, "{stats:?}");
    assert_eq!(stats.returned, 0.0);
    assert_eq!(bucket_tokens(&server, "rollover"), 1000.0);
}

#[tokio::test]
async fn a_lease_ends_at_its_horizon_and_gives_its_rest_back() {
    let server = redis();
    let client = patient_client(&server.url(), false).await;
    // A 60 s window, so no refill lands while the test runs.
    let bucket = client
        .token_bucket("horizon", knobs(100.0, 1.0, 60.0))
        .leased(options(Duration::from_millis(20)))
        .unwrap();
    let mut spent = 0.0;
    while held(&bucket, spent) < 2.0 {
        assert!(bucket.consume(1.0).await.unwrap().allowed);
        spent += 1.0;
    }
    let calls = bucket.stats().calls;
    // The timer returns the rest once the horizon has passed.
    let started = std::time::Instant::now();
    while bucket.stats().calls == calls {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the lease never ended"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stats = bucket.stats();
    assert!(stats.returned > 0.0, "{stats:?}");
    assert_eq!(stats.dropped, 0.0);
    assert_eq!(bucket_tokens(&server, "horizon"), 6000.0 - spent);
}

#[tokio::test]
async fn unlimited_and_stopped_throttles_are_decided_locally_within_a_lease() {
    let server = redis();
    let client = patient_client(&server.url(), false).await;
    let bucket = client
        .token_bucket("open", knobs(-1.0, 1.0, 1.0))
        .leased(options(Duration::from_secs(5)))
        .unwrap();
    for _ in 0..1000 {
        assert!(bucket.consume(3.0).await.unwrap().allowed);
    }
    assert_eq!(bucket.stats().calls, 1);
    assert!(
        !server.cmd::<bool>(&["EXISTS", "throttle:open"]),
        "an unlimited throttle has no bucket"
    );

    let stopped = client
        .token_bucket("stopped", knobs(0.0, 1.0, 30.0))
        .leased(options(Duration::from_secs(5)))
        .unwrap();
    for _ in 0..100 {
        let d = stopped.consume(1.0).await.unwrap();
        assert!(!d.allowed);
        assert!(d.sleep > Duration::from_secs(29), "{d:?}");
    }
    assert_eq!(stopped.stats().calls, 1);
}

#[tokio::test]
async fn a_knob_raised_from_zero_reaches_a_denied_process_within_the_horizon() {
    let server = redis();
    let client = patient_client(&server.url(), false).await;
    let horizon = Duration::from_millis(50);
    // A stopped throttle denies with a whole window's sleep: 5 s here.
    let _: () = server.cmd(&[
        "HSET",
        "throttle:raised:knobs",
        "rps",
        "0",
        "burst",
        "1",
        "window",
        "5",
    ]);
    let bucket = client
        .token_bucket("raised", knobs(1.0, 1.0, 1.0))
        .leased(options(horizon))
        .unwrap();
    let d = bucket.consume(1.0).await.unwrap();
    assert!(!d.allowed && d.sleep > Duration::from_secs(4), "{d:?}");
    let raised = std::time::Instant::now();
    let _: () = server.cmd(&["HSET", "throttle:raised:knobs", "rps", "100"]);
    // A stopped throttle keeps no bucket, so the first call after the raise is allowed.
    loop {
        let d = bucket.consume(1.0).await.unwrap();
        if d.allowed {
            break;
        }
        assert!(
            raised.elapsed() < Duration::from_secs(2),
            "still denied {:?} after the raise",
            raised.elapsed()
        );
        assert!(
            d.sleep > Duration::from_secs(3),
            "the hint is the window's end: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        raised.elapsed() < horizon + Duration::from_millis(500),
        "seen {:?} after the raise",
        raised.elapsed()
    );
    assert_eq!(bucket.stats().calls, 2, "one denial, one grant");
}
#[test]
fn the_blocking_client_decides_from_leases_too() {
    let server = redis();
    let client = common::frozen_client(&server);
    let bucket = client
        .token_bucket("threads", knobs(100.0, 1.0, 10.0))
        .leased(LeaseOptions {
            horizon: Duration::from_secs(10),
            max_share: 0.1,
        })
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let bucket = bucket.clone();
            std::thread::spawn(move || {
                (0..125)
                    .filter(|_| bucket.consume(1.0).unwrap().allowed)
                    .count()
            })
        })
        .collect();
    let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(allowed, 500);
    let stats = bucket.stats();
    assert!(stats.calls < 30, "{stats:?}");
    bucket.release().unwrap();
    assert_eq!(bucket_tokens(&server, "threads"), 500.0);
}

#[test]
fn leases_refuse_options_out_of_range() {
    let server = redis();
    let client = regulator::blocking::Client::connect(&server.url()).unwrap();
    let bucket = client.as_async().token_bucket("x", knobs(1.0, 1.0, 1.0));
    let err = bucket
        .leased(LeaseOptions {
            max_share: 2.0,
            ..LeaseOptions::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("max_share"), "{err}");
}

// ---- Worker processes -------------------------------------------------------------------

/// What a worker process reports when it stops.
#[derive(Debug, Default, Clone, Copy)]
struct Report {
    allowed: u64,
    /// Wall clock (µs) at the start of the last request that was allowed.
    last_us: u64,
    calls: u64,
    decisions: u64,
}

fn now_us() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

const TASKS: usize = 8;

/// The body of a worker process, configured by its environment: `LEASE_WORKER` (Redis URL),
/// `LEASE_MODE` (`leased`, `plain` or `hold`), `LEASE_NAME`, `LEASE_ID`, and for `hold`
/// `LEASE_FROZEN`. `leased` and `plain` run `TASKS` tasks taking one token at a time until the
/// key `stop` exists, then print a report; `hold` ramps a lease up, prints what it holds and
/// then waits to be killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a worker process the tests below run"]
async fn worker_process() {
    let Ok(url) = std::env::var("LEASE_WORKER") else {
        return;
    };
    let var = |k: &str| std::env::var(k).unwrap();
    let (mode, name, id) = (var("LEASE_MODE"), var("LEASE_NAME"), var("LEASE_ID"));
    let client = patient_client(&url, std::env::var("LEASE_FROZEN").is_ok()).await;
    let plain = client.token_bucket(name, knobs(1.0, 1.0, 1.0));
    if mode == "hold" {
        let bucket = plain.leased(options(Duration::from_secs(10))).unwrap();
        for _ in 0..2000 {
            assert!(bucket.consume(1.0).await.unwrap().allowed);
        }
        let s = bucket.stats();
        println!(
            "HOLDING reserved={} spent=2000 calls={}",
            s.reserved, s.calls
        );
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }
    let leased = (mode == "leased").then(|| plain.leased(LeaseOptions::default()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let (allowed, last) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut redis = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (plain, leased) = (plain.clone(), leased.clone());
            let (stop, allowed, last) = (stop.clone(), allowed.clone(), last.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let asked = now_us();
                    let d = match &leased {
                        Some(b) => b.consume(1.0).await.unwrap(),
                        None => plain.consume(1.0).await.unwrap(),
                    };
                    if d.allowed {
                        allowed.fetch_add(1, Ordering::Relaxed);
                        last.fetch_max(asked, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    } else {
                        // Demand stays above supply: ask again when the hint says, but
                        // often enough to see the stop.
                        tokio::time::sleep(d.sleep.min(Duration::from_millis(50))).await;
                    }
                }
            })
        })
        .collect();
    let _: () = redis::cmd("SET")
        .arg(format!("started:{id}"))
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();
    loop {
        let done: bool = redis::cmd("EXISTS")
            .arg("stop")
            .query_async(&mut redis)
            .await
            .unwrap();
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let stats = leased.as_ref().map(LeasedBucket::stats).unwrap_or_default();
    println!(
        "REPORT allowed={} last_us={} calls={} decisions={}",
        allowed.load(Ordering::Relaxed),
        last.load(Ordering::Relaxed),
        stats.calls,
        stats.decisions
    );
}

/// Held by each test that runs worker processes, so that under `cargo test` they do not
/// compete for the cores with each other (nextest gives them the machine, see
/// `.config/nextest.toml`).
async fn machine() -> tokio::sync::MutexGuard<'static, ()> {
    static MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    MACHINE.lock().await
}

fn spawn_worker(server: &RedisServer, mode: &str, name: &str, id: &str, frozen: bool) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "worker_process",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("LEASE_WORKER", server.url())
    .env("LEASE_MODE", mode)
    .env("LEASE_NAME", name)
    .env("LEASE_ID", id)
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    if frozen {
        cmd.env("LEASE_FROZEN", "1");
    }
    cmd.spawn().unwrap()
}

fn report(child: Child) -> Report {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "worker failed: {:?}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split("REPORT ").nth(1))
        .unwrap_or_else(|| panic!("worker printed no report: {stdout}"));
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line}"))
    };
    Report {
        allowed: field("allowed"),
        last_us: field("last_us"),
        calls: field("calls"),
        decisions: field("decisions"),
    }
}

/// Waits until every `started:<id>` key exists.
async fn wait_started(server: &RedisServer, ids: &[&str]) {
    let begun = std::time::Instant::now();
    for id in ids {
        while !server.cmd::<bool>(&["EXISTS", &format!("started:{id}")]) {
            assert!(
                begun.elapsed() < Duration::from_secs(30),
                "worker {id} never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Redis time, in seconds.
fn redis_now(server: &RedisServer) -> f64 {
    let t: Vec<String> = server.cmd(&["TIME"]);
    t[0].parse::<f64>().unwrap() + t[1].parse::<f64>().unwrap() / 1e6
}

async fn wait_redis_time(server: &RedisServer, at: f64) {
    while redis_now(server) < at {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sets the knobs to `rps` (burst 1, window 1) and empties the bucket with its window
/// starting now, in one script; returns that anchor (whole Redis seconds).
fn anchor_empty(server: &RedisServer, name: &str, rps: f64) -> f64 {
    let anchor: i64 = server.cmd(&[
        "EVAL",
        "local t = redis.call('TIME')
         redis.call('HSET', KEYS[2], 'rps', ARGV[1], 'burst', 1, 'window', 1)
         redis.call('HSET', KEYS[1], 'tokens', 0, 'refreshed', t[1], 'ttl', 0)
         return tonumber(t[1])",
        "2",
        &format!("throttle:{name}"),
        &format!("throttle:{name}:knobs"),
        &rps.to_string(),
    ]);
    anchor as f64
}

fn set_rps(server: &RedisServer, name: &str, rps: f64) {
    let _: () = server.cmd(&[
        "HSET",
        &format!("throttle:{name}:knobs"),
        "rps",
        &rps.to_string(),
    ]);
}

/// Lowers the throttle's rps as the daemon does: a fenced-store write of the change, with its
/// history entry.
async fn daemon_lowers(server: &RedisServer, name: &str, from: f64, to: f64) {
    use regulator_daemon::store::{KnobChange, KnobStore, RedisStore};
    let client = patient_client(&server.url(), false).await;
    let store = RedisStore::new(client, Duration::from_secs(600), 10);
    let written = store
        .write(&[KnobChange {
            name: name.into(),
            knob: regulator_daemon::config::Knob::Rate,
            old: Some(knobs(from, 1.0, 1.0)),
            new: knobs(to, 1.0, 1.0),
            signal: Some(2.0),
            law: "aimd",
            reason: "overloaded".into(),
            aim: 0.9,
        }])
        .await
        .unwrap();
    assert_eq!(written, regulator_daemon::store::Written::All);
}

fn refreshed(server: &RedisServer, name: &str) -> f64 {
    let r: String = server.cmd(&["HGET", &format!("throttle:{name}"), "refreshed"]);
    r.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_with_knobs_lowered_mid_run_never_exceeds_the_budget_and_uses_it() {
    use serde_json::json;
    const NAME: &str = "fleet";
    let _machine = machine().await;
    let server = redis();
    // Everyone starts, denied, while the throttle is stopped.
    set_rps(&server, NAME, 0.0);
    let _: () = server.cmd(&["HSET", "throttle:fleet:knobs", "burst", "1", "window", "1"]);
    let children = [
        spawn_worker(&server, "leased", NAME, "a", false),
        spawn_worker(&server, "leased", NAME, "b", false),
        spawn_worker(&server, "plain", NAME, "c", false),
    ];
    let mut py = LimitlionDriver::start(&server.url(), false).expect("start limitlion (make deps)");
    let python = std::thread::spawn(move || {
        py.call(
            &json!({"op": "run", "name": NAME, "rps": 1, "burst": 1, "window": 1,
                        "stop_key": "stop", "started_key": "started:py", "idle": 0.001}),
        )
    });
    wait_started(&server, &["a", "b", "c", "py"]).await;

    // 400 a window for two windows, then 200 from the middle of the third.
    let anchor = anchor_empty(&server, NAME, 400.0);
    wait_redis_time(&server, anchor + 2.5).await;
    daemon_lowers(&server, NAME, 400.0, 200.0).await;
    wait_redis_time(&server, anchor + 5.3).await;
    let _: () = server.cmd(&["SET", "stop", "1"]);

    let reports: Vec<Report> = children.into_iter().map(report).collect();
    let python_allowed = python.join().unwrap()["allowed"].as_u64().unwrap();
    let windows = (refreshed(&server, NAME) - anchor).round() as u64;
    assert!(windows >= 5, "only {windows} windows");
    let budget = 2 * 400 + (windows - 2) * 200;
    let total: u64 = reports.iter().map(|r| r.allowed).sum::<u64>() + python_allowed;
    eprintln!(
        "leased {} + {}, plain {}, limitlion {python_allowed}: {total} of {budget} over {windows} windows; \
         leased calls {} and {}",
        reports[0].allowed,
        reports[1].allowed,
        reports[2].allowed,
        reports[0].calls,
        reports[1].calls
    );
    assert!(total <= budget, "allowed {total}, budget {budget}");
    assert!(
        total as f64 >= 0.97 * budget as f64,
        "allowed {total}, budget {budget}"
    );
    for (who, n) in [
        ("leased a", reports[0].allowed),
        ("leased b", reports[1].allowed),
        ("plain", reports[2].allowed),
        ("limitlion", python_allowed),
    ] {
        assert!(n > 0, "{who} got nothing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_leased_processes_with_equal_demand_get_equal_shares() {
    const NAME: &str = "fair";
    let _machine = machine().await;
    let server = redis();
    set_rps(&server, NAME, 0.0);
    let _: () = server.cmd(&["HSET", "throttle:fair:knobs", "burst", "1", "window", "1"]);
    let children = [
        spawn_worker(&server, "leased", NAME, "a", false),
        spawn_worker(&server, "leased", NAME, "b", false),
    ];
    wait_started(&server, &["a", "b"]).await;
    let anchor = anchor_empty(&server, NAME, 2000.0);
    // Eight windows: over four, a fresh-clone CI run measured 4261 and 3739 (a 12% gap) where
    // local runs give 0-6%; the shares are of the whole run, so a window one process spent
    // descheduled weighs half as much over eight.
    wait_redis_time(&server, anchor + 8.3).await;
    let _: () = server.cmd(&["SET", "stop", "1"]);
    let [a, b] = children.map(report);
    let windows = (refreshed(&server, NAME) - anchor).round() as u64;
    eprintln!(
        "shares {} and {} of {} over {windows} windows",
        a.allowed,
        b.allowed,
        windows * 2000
    );
    assert!(a.allowed + b.allowed <= windows * 2000);
    let (hi, lo) = (a.allowed.max(b.allowed), a.allowed.min(b.allowed));
    assert!(
        (hi - lo) as f64 <= 0.1 * hi as f64,
        "shares {} and {}",
        a.allowed,
        b.allowed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_knob_lowered_to_zero_is_obeyed_fleet_wide_within_the_lease_horizon() {
    const NAME: &str = "lowered";
    let _machine = machine().await;
    let server = redis();
    // A budget far above what the workers can use, so only the knob stops them.
    let _: () = server.cmd(&[
        "HSET",
        "throttle:lowered:knobs",
        "rps",
        "100000000",
        "burst",
        "1",
        "window",
        "1",
    ]);
    let children = [
        spawn_worker(&server, "leased", NAME, "a", false),
        spawn_worker(&server, "leased", NAME, "b", false),
    ];
    wait_started(&server, &["a", "b"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = now_us();
    daemon_lowers(&server, NAME, 100_000_000.0, 0.0).await;
    let after = now_us();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _: () = server.cmd(&["SET", "stop", "1"]);
    let horizon = u64::try_from(LeaseOptions::default().horizon.as_micros()).unwrap();
    for r in children.map(report) {
        eprintln!(
            "{r:?}: last allowed request {} µs after the change",
            i128::from(r.last_us) - i128::from(after)
        );
        assert!(r.decisions > 1000 && r.calls < r.decisions / 100, "{r:?}");
        // Running right up to the change (the leases were in use)...
        assert!(r.last_us + 200_000 > before, "{r:?}");
        // ...and never allowed a request made after the change plus one lease horizon. The
        // lease ends by the monotonic clock and these stamps are the wall clock: 1 ms covers
        // the most they can drift apart in a second.
        assert!(
            r.last_us <= after + horizon + 1_000,
            "allowed {} µs after the change",
            r.last_us - after
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_holding_a_lease_loses_at_most_its_batch_never_the_bucket() {
    const NAME: &str = "killed";
    let _machine = machine().await;
    let server = redis();
    server.freeze_time(T0, 0);
    // 10,000 tokens a 100 s window; a batch holds at most 1 % of them.
    let _: () = server.cmd(&[
        "HSET",
        "throttle:killed:knobs",
        "rps",
        "100",
        "burst",
        "1",
        "window",
        "100",
    ]);
    let mut child = spawn_worker(&server, "hold", NAME, "h", true);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let holding = lines
        .find_map(|l| {
            l.ok()
                .and_then(|l| l.split("HOLDING ").nth(1).map(String::from))
        })
        .expect("the worker reports its lease");
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    let reserved: f64 = holding
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("reserved="))
        .unwrap()
        .parse()
        .unwrap();
    let lost = reserved - 2000.0;
    eprintln!("{holding}: {lost} tokens lost with the process");
    // The bucket lacks the spent tokens and the batch in hand, nothing more...
    assert_eq!(bucket_tokens(&server, NAME), 10_000.0 - reserved);
    let max_batch = LeaseOptions::default().max_share * 10_000.0;
    assert!(lost > 0.0 && lost <= max_batch, "lost {lost}");
    // ...still serves what it holds, and refills in full at the next window.
    let client = patient_client(&server.url(), true).await;
    let bucket = client.token_bucket(NAME, knobs(1.0, 1.0, 1.0));
    assert!(bucket.consume(10_000.0 - reserved).await.unwrap().allowed);
    server.freeze_time(T0 + 100, 0);
    let d = bucket.consume(10_000.0).await.unwrap();
    assert!(d.allowed, "{d:?}");
}
