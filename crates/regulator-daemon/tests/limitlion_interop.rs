//! Interop with the real limitlion package: Python and Rust workers share one bucket and one
//! set of knobs. Python runs in the venv made by `make deps`, driven over stdin/stdout.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{T0, frozen_client, knobs, redis};
use regulator::{Source, StoredKnobs};
use regulator_testing::{LimitlionDriver, RedisServer};
use serde_json::{Value, json};

fn limitlion(server: &RedisServer) -> LimitlionDriver {
    LimitlionDriver::start(&server.url(), true).expect("start limitlion (run `make deps`)")
}

fn py_throttle(py: &mut LimitlionDriver, name: &str, rps: f64, burst: f64, window: f64) -> Value {
    py.call(&json!({"op": "throttle", "name": name, "rps": rps, "burst": burst, "window": window}))
}

#[test]
fn alternating_calls_see_one_continuous_token_count() {
    let server = redis();
    let client = frozen_client(&server);
    let mut py = limitlion(&server);
    let rust = client.token_bucket("shared", knobs(2.0, 1.0, 5.0));

    let mut expected = 10.0;
    for i in 0..10 {
        expected -= 1.0;
        let left = if i % 2 == 0 {
            py_throttle(&mut py, "shared", 2.0, 1.0, 5.0)["tokens"]
                .as_f64()
                .unwrap()
        } else {
            rust.consume(1.0).unwrap().tokens
        };
        assert_eq!(left, expected, "call {i}");
    }
    let d = py_throttle(&mut py, "shared", 2.0, 1.0, 5.0);
    assert_eq!(
        d["allowed"],
        json!(false),
        "Python sees the bucket Rust emptied"
    );
    assert!(!rust.consume(1.0).unwrap().allowed);

    // Across a window boundary both refill the same way, from the same anchor.
    server.freeze_time(T0 + 5, 100_000);
    assert_eq!(rust.consume(1.0).unwrap().tokens, 9.0);
    let d = py_throttle(&mut py, "shared", 2.0, 1.0, 5.0);
    assert_eq!(d["tokens"], json!(8));
    let sleep = d["sleep"].as_f64().unwrap();
    assert!((sleep - 4.9).abs() < 1e-6, "limitlion's hint {sleep}");
    assert!((rust.consume(1.0).unwrap().sleep.as_secs_f64() - 4.9).abs() < 1e-6);
}

#[test]
fn knobs_set_by_either_side_are_honoured_by_both() {
    let server = redis();
    let client = frozen_client(&server);
    let mut py = limitlion(&server);

    py.call(&json!({"op": "set", "name": "py-set", "rps": 10.0, "burst": 1.0, "window": 5.0}));
    let d = client
        .token_bucket("py-set", knobs(1.0, 1.0, 1.0))
        .consume(1.0)
        .unwrap();
    assert_eq!(d.source, Source::Knobs);
    assert_eq!((d.capacity, d.tokens), (50.0, 49.0));

    client
        .set_knobs("rust-set", knobs(3.0, 2.0, 5.0), None)
        .unwrap();
    let d = py_throttle(&mut py, "rust-set", 1.0, 1.0, 1.0);
    assert_eq!(
        d["tokens"],
        json!(29),
        "Python uses the knobs Rust wrote (C = 30)"
    );

    // A partial update from Python keeps the fields Rust wrote.
    py.call(&json!({"op": "set", "name": "rust-set", "rps": 6.0}));
    let s = client.get("rust-set").unwrap();
    assert_eq!(s.knobs(), StoredKnobs::Valid(knobs(6.0, 2.0, 5.0)));

    // Python's reset sends Rust back to its defaults.
    py.call(&json!({"op": "reset", "name": "rust-set"}));
    let d = client
        .token_bucket("rust-set", knobs(1.0, 1.0, 1.0))
        .consume(1.0)
        .unwrap();
    assert_eq!(d.source, Source::Defaults);
}

#[test]
fn throttle_get_reads_what_the_other_side_wrote() {
    let server = redis();
    let client = frozen_client(&server);
    let mut py = limitlion(&server);

    client
        .token_bucket("from-rust", knobs(2.0, 1.0, 5.0))
        .consume(3.0)
        .unwrap();
    client
        .set_knobs("from-rust", knobs(4.0, 1.5, 2.0), None)
        .unwrap();
    let got = py.call(&json!({"op": "get", "name": "from-rust"}))["values"].clone();
    assert_eq!(got, json!(["7", T0.to_string(), "4.0", "1.5", "2.0"]));

    py_throttle(&mut py, "from-py", 2.0, 1.0, 5.0);
    py.call(&json!({"op": "set", "name": "from-py", "rps": 0.5, "burst": 2.0, "window": 10.0}));
    let s = client.get("from-py").unwrap();
    assert_eq!(s.tokens.as_deref(), Some("9"));
    assert_eq!(s.refreshed, Some(T0.to_string()));
    assert_eq!(s.knobs(), StoredKnobs::Valid(knobs(0.5, 2.0, 10.0)));

    py.call(&json!({"op": "delete", "name": "from-py"}));
    assert_eq!(
        client.get("from-py").unwrap(),
        regulator::ThrottleState::default()
    );
}

/// A Python worker and 16 Rust tasks drain one bucket concurrently for several windows while
/// the test moves the frozen clock a window at a time. Together they must be allowed exactly
/// the budget: the full bucket plus one refill per window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_python_and_rust_workers_share_the_budget_exactly() {
    let server = Arc::new(redis());
    server.freeze_time(T0, 0);
    let (rps, burst, window) = (20.0, 2.0, 1.0);
    let client = regulator::Client::builder(&server.url())
        .frozen_time(true)
        .call_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    client
        .set_knobs("mixed", knobs(rps, burst, window), None)
        .await
        .unwrap();

    let py_server = server.clone();
    let python = std::thread::spawn(move || {
        let mut py = limitlion(&py_server);
        py.call(&json!({"op": "run", "name": "mixed", "rps": 1, "stop_key": "py-stop", "started_key": "py-started"}))["allowed"]
            .as_u64()
            .unwrap()
    });

    let start = Instant::now();
    while server.cmd::<i64>(&["EXISTS", "py-started"]) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "limitlion worker never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    let rust_allowed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let bucket = client.token_bucket("mixed", knobs(1.0, 1.0, 5.0));
        let (allowed, stop) = (rust_allowed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if bucket.consume(1.0).await.unwrap().allowed {
                    allowed.fetch_add(1, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }));
    }

    let windows = 5;
    for step in 0..=windows {
        let anchor = T0 + step * window as i64;
        server.freeze_time(anchor, 0);
        wait_for_empty(&client, "mixed", anchor).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _: () = redis::cmd("SET")
        .arg("py-stop")
        .arg(1)
        .query(&mut server.connection())
        .unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let py_allowed = tokio::task::spawn_blocking(move || python.join().unwrap())
        .await
        .unwrap();
    let rust_allowed = rust_allowed.load(Ordering::Relaxed);

    let capacity = (rps * burst * window).ceil() as u64;
    let refill = (rps * window).ceil() as u64;
    let budget = capacity + windows as u64 * refill;
    assert_eq!(
        py_allowed + rust_allowed,
        budget,
        "python {py_allowed} + rust {rust_allowed}"
    );
    assert!(
        py_allowed > 0 && rust_allowed > 0,
        "both sides worked: python {py_allowed}, rust {rust_allowed}"
    );
}

/// Waits until the workers have taken the refill of the window anchored at `anchor`.
async fn wait_for_empty(client: &regulator::Client, name: &str, anchor: i64) {
    let start = Instant::now();
    loop {
        let s = client.get(name).await.unwrap();
        if s.tokens.as_deref() == Some("0") && s.refreshed == Some(anchor.to_string()) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "bucket never drained: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The knobs the default law writes when a policy lets burst and window shrink as far as
/// `check` allows (min burst × min window = 0.5), after a long overload.
fn smallest_knobs_the_daemon_writes() -> regulator::Knobs {
    use regulator_daemon::config;
    use regulator_daemon::control::Controller;
    let c = config::parse(
        "throttles:\n  - name: t\n    defaults: { rps: 20, burst: 1, window: 1 }\n    \
         bounds: { min_rps: 2, max_rps: 100, min_burst: 1, min_window: 0.5 }\n    \
         signal: { query: up, target: 0.25 }\n",
        "t.yaml",
    )
    .expect("bounds that keep burst × window at 0.5 are valid");
    let mut controller = Controller::new(&c.throttles[0], std::time::Duration::from_secs(10));
    let mut k = controller.initial();
    for i in 1..=50u32 {
        let s = std::time::Duration::from_secs(u64::from(i) * 10);
        // A worse overload every tick: each is news, and each cuts.
        k = controller.tick(k, 0.5 * f64::from(i), s).knobs;
    }
    assert_eq!(
        (k.rps, k.burst, k.window),
        (2.0, 1.0, 0.5),
        "at every minimum"
    );
    k
}

#[test]
fn a_python_worker_stays_limited_at_the_smallest_knobs_the_daemon_writes() {
    let server = redis();
    server.freeze_time(T0, 0);
    let mut py = limitlion(&server);
    let smallest = smallest_knobs_the_daemon_writes();
    let calls = |py: &mut LimitlionDriver, name: &str| {
        (0..20)
            .filter(|_| py_throttle(py, name, 100.0, 1.0, 1.0)["allowed"] == json!(true))
            .count()
    };
    let set = |name: &str, k: regulator::Knobs| common::set_knobs(&server, name, k);
    // 2 rps × 1 × 0.5 s: one token a half-second window. Twenty calls in one frozen instant
    // get one, and limitlion keeps its bucket.
    set("smallest", smallest);
    assert_eq!(calls(&mut py, "smallest"), 1);
    assert!(server.cmd::<bool>(&["EXISTS", "throttle:smallest"]));
    // The hazard the rule guards against is real: at burst × window 0.4 limitlion's
    // EXPIRE 0 deletes the bucket on every call, and its worker runs unlimited.
    set(
        "hazard",
        regulator::Knobs {
            window: 0.4,
            ..smallest
        },
    );
    assert_eq!(
        calls(&mut py, "hazard"),
        20,
        "limitlion unlimited below 0.5"
    );
    assert!(!server.cmd::<bool>(&["EXISTS", "throttle:hazard"]));
}
