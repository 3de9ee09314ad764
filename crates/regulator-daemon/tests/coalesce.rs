//! Coalesced decisions against one call at a time, on a real redis-server: the coalesced
//! script must decide every request and leave every bucket exactly as the single-call script
//! run request by request would, for random knobs, clocks and batches; and concurrent callers
//! of one process must share script calls without a token more or less being given out.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{T0, knobs, redis, set_knobs};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use regulator::{Client, Knobs};
use regulator_testing::RedisServer;

#[derive(Debug, Clone)]
enum Op {
    Advance { secs: i64, usec: u32 },
    SetKnobs(Knobs),
    Requests(Vec<f64>),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let knobs = (
        prop::sample::select(vec![0.0, -1.0, 0.2, 0.5, 1.0, 2.2, 5.0, 33.3]),
        prop::sample::select(vec![0.0, 0.5, 1.0, 2.0, 3.3]),
        prop::sample::select(vec![0.5, 1.0, 2.5, 5.0]),
    )
        .prop_map(|(rps, burst, window)| knobs(rps, burst, window));
    let request = prop::sample::select(vec![1.0, 1.0, 1.0, 2.0, 0.5, 7.25, 50.0]);
    prop_oneof![
        3 => (0i64..8, 0u32..1_000_000).prop_map(|(secs, usec)| Op::Advance { secs, usec }),
        1 => knobs.prop_map(Op::SetKnobs),
        6 => prop::collection::vec(request, 1..30).prop_map(Op::Requests),
    ]
}

/// The bucket hash as stored, and the TTLs of bucket and knobs.
fn stored(server: &RedisServer, name: &str) -> (Vec<Option<String>>, i64, i64) {
    let bucket = format!("throttle:{name}");
    let fields: Vec<Option<String>> = server.cmd(&["HMGET", &bucket, "tokens", "refreshed", "ttl"]);
    let ttl: i64 = server.cmd(&["TTL", &bucket]);
    let knobs_ttl: i64 = server.cmd(&["TTL", &format!("{bucket}:knobs")]);
    (fields, ttl, knobs_ttl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_decisions_equal_one_call_at_a_time() {
    let server = redis();
    let url = server.url();
    let single = Client::builder(&url)
        .frozen_time(true)
        .coalesce(false)
        .connect()
        .await
        .unwrap();
    let batched = Client::builder(&url)
        .frozen_time(true)
        .connect()
        .await
        .unwrap();
    let counter = AtomicU64::new(0);
    let config = Config {
        cases: 128,
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    };
    let defaults = knobs(4.0, 1.5, 2.0);
    let strategy = prop::collection::vec(op_strategy(), 1..25);
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        TestRunner::new(config).run(&strategy, |ops| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let (a, b) = (format!("one-{n}"), format!("many-{n}"));
            let (one, many) = (
                single.token_bucket(&a, defaults),
                batched.token_bucket(&b, defaults),
            );
            let mut now = T0;
            server.freeze_time(now, 0);
            for op in ops {
                match op {
                    Op::Advance { secs, usec } => {
                        now += secs;
                        server.freeze_time(now, usec);
                    }
                    Op::SetKnobs(k) => {
                        set_knobs(&server, &a, k);
                        set_knobs(&server, &b, k);
                    }
                    Op::Requests(requests) => {
                        let want: Vec<_> = requests
                            .iter()
                            .map(|&r| handle.block_on(one.consume(r)).unwrap())
                            .collect();
                        let got = handle.block_on(many.consume_many(&requests)).unwrap();
                        prop_assert_eq!(&got, &want, "requests {:?}", requests);
                        prop_assert_eq!(stored(&server, &b), stored(&server, &a));
                    }
                }
            }
            Ok::<(), TestCaseError>(())
        })
    })
    .await
    .unwrap();
    result.unwrap();
}

/// `EVALSHA` calls the server has run so far.
fn evalsha_calls(server: &RedisServer) -> u64 {
    let info: String = server.cmd(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_calls_and_give_out_exactly_the_capacity() {
    let server = redis();
    let client = Client::connect(&server.url()).await.unwrap();
    // 500 tokens that do not refill within the test: exactly 500 of 2,000 requests pass.
    let bucket = client.token_bucket("shared", knobs(1.0, 1.0, 500.0));
    let before = evalsha_calls(&server);
    let allowed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (bucket, allowed) = (bucket.clone(), Arc::clone(&allowed));
            tokio::spawn(async move {
                for _ in 0..32 {
                    if bucket.consume(1.0).await.unwrap().allowed {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("no caller hangs")
            .unwrap();
    }
    let calls = evalsha_calls(&server) - before;
    assert_eq!(allowed.load(Ordering::Relaxed), 500);
    let tokens: String = server.cmd(&["HGET", "throttle:shared", "tokens"]);
    assert_eq!(tokens, "0");
    assert!(
        calls * 4 <= 2_048,
        "{calls} script calls for 2,048 decisions: coalescing should need far fewer"
    );
    eprintln!("2,048 decisions in {calls} script calls");
}

#[tokio::test]
async fn a_cancelled_caller_does_not_strand_the_queue() {
    let server = redis();
    let client = Client::connect(&server.url()).await.unwrap();
    let bucket = client.token_bucket("cancel", knobs(1000.0, 1.0, 1.0));
    for _ in 0..20 {
        // The first caller is dropped mid-call; the ones queued behind it still get answers.
        let first = bucket.clone();
        let leader = tokio::spawn(async move { first.consume(1.0).await });
        let followers: Vec<_> = (0..8)
            .map(|_| {
                let b = bucket.clone();
                tokio::spawn(async move { b.consume(1.0).await })
            })
            .collect();
        leader.abort();
        for f in followers {
            let d = tokio::time::timeout(Duration::from_secs(5), f)
                .await
                .expect("a queued caller was stranded")
                .unwrap();
            assert!(d.unwrap().allowed);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_with_python_limitlion_never_gets_more_than_the_bucket_holds() {
    use regulator_testing::LimitlionDriver;
    use serde_json::json;

    let server = redis();
    // 600 tokens, refilled only after 600 s: the fleet can get exactly 600, never more.
    let _: () = server.cmd(&[
        "HSET",
        "throttle:fleet:knobs",
        "rps",
        "1",
        "burst",
        "1",
        "window",
        "600",
    ]);
    let mut py = LimitlionDriver::start(&server.url(), false).expect("start limitlion (make deps)");
    let python = std::thread::spawn(move || {
        py.call(
            &json!({"op": "run", "name": "fleet", "rps": 1, "burst": 1, "window": 600,
                        "stop_key": "fleet-stop", "started_key": "fleet-started", "idle": 0.001}),
        )
    });
    let started = std::time::Instant::now();
    while !server.cmd::<bool>(&["EXISTS", "fleet-started"]) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "limitlion never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let client = Client::connect(&server.url()).await.unwrap();
    let bucket = client.token_bucket("fleet", knobs(1.0, 1.0, 600.0));
    let rust_allowed = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (bucket, allowed) = (bucket.clone(), Arc::clone(&rust_allowed));
            tokio::spawn(async move {
                for _ in 0..40 {
                    if bucket.consume(1.0).await.unwrap().allowed {
                        allowed.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // The bucket is empty once the Rust tasks are done (they ask for 1,280 of 600 tokens).
    let tokens: String = server.cmd(&["HGET", "throttle:fleet", "tokens"]);
    assert_eq!(tokens, "0");
    let _: () = server.cmd(&["SET", "fleet-stop", "1"]);
    let reply = python.join().unwrap();
    let python_allowed = reply["allowed"].as_u64().expect("limitlion's count");
    let rust_allowed = rust_allowed.load(Ordering::Relaxed);
    eprintln!("rust {rust_allowed} + limitlion {python_allowed} of 600");
    assert!(rust_allowed > 0);
    assert_eq!(rust_allowed + python_allowed, 600);
}
