//! Nothing over budget, against a real Redis behind a proxy that loses replies and holds
//! requests on cue:
//! - a lease gives back at most what it reserved, once, whatever the client says or repeats;
//! - a request that is not a number of tokens never touches the lease in hand;
//! - a leaky-bucket drain repeated after a lost reply drains once;
//! - a semaphore release repeated after a lost reply frees only its own slot;
//! - a tick's knob write repeated after a lost reply records its history entry once;
//! - a coalesced caller that gave up is not sent, a cancelled in-flight caller strands nobody,
//!   and a queued caller is bounded by its own call timeout.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::{T0, knobs, redis};
use regulator::{Client, Error, LeakyParams, LeaseOptions, SemaphoreParams, TokenBucket, blocking};
use regulator_testing::{Proxy, RedisServer};

const LIMIT: Duration = Duration::from_secs(5);

fn bucket_tokens(server: &RedisServer, name: &str) -> f64 {
    let tokens: String = server.cmd(&["HGET", &format!("throttle:{name}"), "tokens"]);
    tokens.parse().unwrap()
}

/// A client through `proxy`, on the frozen clock, with a call timeout long enough for a
/// reconnect.
async fn client_through(proxy: &Proxy) -> Client {
    Client::builder(&proxy.url())
        .frozen_time(true)
        .call_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("connect through the proxy")
}

/// A leased bucket of 60,000 tokens a 600 s window (no refill within a test), holding a lease
/// with unspent tokens after `spent` decisions of one token.
async fn leased_with_tokens_in_hand(
    client: &Client,
    name: &str,
    spent: usize,
) -> regulator::LeasedBucket {
    let bucket = client
        .token_bucket(name, knobs(100.0, 1.0, 600.0))
        .leased(LeaseOptions {
            horizon: Duration::from_secs(10),
            max_share: 0.01,
        })
        .unwrap();
    for _ in 0..spent {
        assert!(bucket.consume(1.0).await.unwrap().allowed);
    }
    let s = bucket.stats();
    assert!(
        s.reserved - s.returned - s.dropped > spent as f64,
        "the lease holds unspent tokens: {s:?}"
    );
    bucket
}

#[tokio::test]
async fn a_give_back_repeated_after_a_lost_reply_restores_once() {
    let server = redis();
    server.freeze_time(T0, 0);
    let proxy = Proxy::start(server.port()).unwrap();
    let client = client_through(&proxy).await;
    let bucket = leased_with_tokens_in_hand(&client, "once", 3).await;
    proxy.lose_next_reply();
    // The give-back reaches Redis, its reply is lost, and the call is made again.
    let _ = bucket.release().await;
    assert_eq!(proxy.lost(), 1, "the reply was lost");
    assert_eq!(
        bucket_tokens(&server, "once"),
        60_000.0 - 3.0,
        "the bucket lacks exactly what was spent"
    );
}

#[tokio::test]
async fn a_negative_request_is_refused_before_the_lease_in_hand() {
    let server = redis();
    server.freeze_time(T0, 0);
    let client = common::patient_client(&server.url(), true).await;
    let bucket = leased_with_tokens_in_hand(&client, "minus", 3).await;
    let before = bucket.stats();
    for bad in [-500.0, 0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = bucket.consume(bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
    }
    assert_eq!(bucket.stats(), before, "nothing was decided or reserved");
    bucket.release().await.unwrap();
    assert_eq!(bucket_tokens(&server, "minus"), 60_000.0 - 3.0);
}

#[test]
fn the_blocking_lease_refuses_a_negative_request_too() {
    let server = redis();
    let client = common::frozen_client(&server);
    let bucket = client
        .token_bucket("minus-blocking", knobs(100.0, 1.0, 600.0))
        .leased(LeaseOptions {
            horizon: Duration::from_secs(10),
            max_share: 0.01,
        })
        .unwrap();
    for _ in 0..3 {
        assert!(bucket.consume(1.0).unwrap().allowed);
    }
    let before = bucket.stats();
    assert!(before.reserved > 3.0, "{before:?}");
    assert!(matches!(
        bucket.consume(-500.0),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(bucket.stats(), before);
    bucket.release().unwrap();
    assert_eq!(bucket_tokens(&server, "minus-blocking"), 60_000.0 - 3.0);
}

/// Runs `lua/token_bucket_lease.lua` directly, as a client that says what it likes would:
/// returned tokens, anchor, requested, wanted, max share, lease id.
fn lease_script(server: &RedisServer, args: &[&str]) -> Vec<redis::Value> {
    let script = regulator::client::scripts::source("token_bucket_lease.lua").unwrap();
    let mut all = vec![
        "EVAL",
        script.as_str(),
        "3",
        "throttle:raw",
        "throttle:raw:knobs",
        "throttle:raw:leases",
        "100",
        "1",
        "600",
        "0",
    ];
    all.extend_from_slice(args);
    server.cmd(&all)
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
        redis::Value::Int(i) => i.to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_lease_script_restores_at_most_what_the_lease_reserved_once() {
    let server = redis();
    // 10 tokens reserved: granted, tokens, sleep, source, capacity, anchor, restored, id.
    let grant = lease_script(&server, &["0", "", "10", "10", "1", ""]);
    assert_eq!(text(&grant[0]), "10");
    let (anchor, id) = (text(&grant[5]), text(&grant[7]));
    assert!(!id.is_empty());
    let second = lease_script(&server, &["0", "", "10", "10", "1", ""]);
    assert_ne!(text(&second[7]), id, "each lease has its own id");
    assert_eq!(bucket_tokens(&server, "raw"), 60_000.0 - 20.0);

    // A client claiming 500 unspent tokens of a 10-token lease gets 10 back, once.
    let back = lease_script(&server, &["500", &anchor, "0", "0", "1", &id]);
    assert_eq!(text(&back[6]), "10");
    let again = lease_script(&server, &["500", &anchor, "0", "0", "1", &id]);
    assert_eq!(
        text(&again[6]),
        "0",
        "a repeated give-back restores nothing"
    );
    // Ids that are not the script's own never restore (the hash's other fields included).
    for forged in ["next", "anchor", "0", "-1", "99"] {
        let r = lease_script(&server, &["500", &anchor, "0", "0", "1", forged]);
        assert_eq!(text(&r[6]), "0", "{forged}");
    }
    assert_eq!(bucket_tokens(&server, "raw"), 60_000.0 - 10.0);
}

#[tokio::test]
async fn a_leaky_drain_repeated_after_a_lost_reply_drains_once() {
    let server = redis();
    server.freeze_time(T0, 0);
    let proxy = Proxy::start(server.port()).unwrap();
    let client = client_through(&proxy).await;
    // One drop leaks every 1,000 s: nothing leaks within the test.
    let bucket = client.leaky_bucket(
        "drain",
        LeakyParams {
            rate: 0.001,
            capacity: 100.0,
            block: None,
        },
    );
    assert_eq!(bucket.consume(10.0).await.unwrap().level, 10.0);
    proxy.lose_next_reply();
    let drained = bucket.consume(-3.0).await;
    assert_eq!(proxy.lost(), 1, "the reply was lost");
    let level: String = server.cmd(&["HGET", "throttle:drain:leaky", "level"]);
    assert_eq!(level, "7", "drained once: {drained:?}");
    // A positive consume repeated after a lost reply takes twice at most: never less.
    assert_eq!(drained.unwrap().level, 7.0);
}

#[tokio::test]
async fn a_semaphore_release_repeated_after_a_lost_reply_frees_only_its_own_slot() {
    let server = redis();
    let proxy = Proxy::start(server.port()).unwrap();
    let client = client_through(&proxy).await;
    let pool = client.semaphore(
        "pool",
        SemaphoreParams {
            capacity: 2,
            hold: Duration::from_secs(60),
        },
    );
    let first = pool.try_acquire().await.unwrap().expect("a slot");
    let _second = pool.try_acquire().await.unwrap().expect("a slot");
    proxy.lose_next_reply();
    let _ = first.release().await;
    assert_eq!(proxy.lost(), 1, "the reply was lost");
    let holders: i64 = server.cmd(&["ZCARD", "throttle:pool:holders"]);
    assert_eq!(holders, 1, "the second holder still holds its slot");
    let third = pool.try_acquire().await.unwrap();
    assert!(third.is_some(), "the released slot is free");
    assert!(pool.try_acquire().await.unwrap().is_none(), "capacity 2");
}

/// Polls `fut` once, so its synchronous start (queueing, sending) has run.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let waker = std::task::Waker::noop();
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

type Pending = Pin<Box<dyn Future<Output = regulator::Result<regulator::Decision>> + Send>>;

/// `bucket.consume(1.0)` as a future that owns its bucket.
fn take_one(bucket: &TokenBucket) -> Pending {
    let bucket = bucket.clone();
    Box::pin(async move { bucket.consume(1.0).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_in_flight_caller_strands_nobody_and_abandoned_queued_callers_spend_nothing() {
    let server = redis();
    server.freeze_time(T0, 0);
    let proxy = Proxy::start(server.port()).unwrap();
    let client = client_through(&proxy).await;
    let bucket = client.token_bucket("queue", knobs(1000.0, 1.0, 600.0));
    // Creates the bucket, so its tokens can be read.
    assert!(bucket.consume(1.0).await.unwrap().allowed);

    proxy.hold();
    let seen = proxy.requests();
    let mut leader = take_one(&bucket);
    assert!(poll_once(&mut leader).is_pending());
    assert!(
        proxy.wait_requests_above(seen, LIMIT),
        "the leader's call reached the proxy"
    );
    let mut queued: Vec<Pending> = (0..10).map(|_| take_one(&bucket)).collect();
    for q in &mut queued {
        assert!(poll_once(q).is_pending(), "queued behind the leader");
    }
    // Four queued callers give up, then the leader is cancelled mid-call.
    let kept = queued.split_off(4);
    drop(queued);
    drop(leader);
    proxy.pass();
    for q in kept {
        let d = tokio::time::timeout(LIMIT, q)
            .await
            .expect("a queued caller was stranded")
            .unwrap();
        assert!(d.allowed);
    }
    // Spent: the first call, the cancelled leader's (it reached Redis), the six kept. The four
    // that gave up while queued were never sent.
    assert_eq!(bucket_tokens(&server, "queue"), 600_000.0 - 1.0 - 1.0 - 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_caller_waits_no_longer_than_its_own_call_timeout() {
    let server = redis();
    let proxy = Proxy::start(server.port()).unwrap();
    let timeout = Duration::from_millis(500);
    let client = Client::builder(&proxy.url())
        .call_timeout(timeout)
        .connect()
        .await
        .unwrap();
    let bucket = client.token_bucket("bounded", knobs(1000.0, 1.0, 600.0));
    assert!(bucket.consume(1.0).await.unwrap().allowed);

    // Redis never answers: the leader's call times out, and the batch sent after it would too.
    proxy.hold();
    let seen = proxy.requests();
    let leader = tokio::spawn(take_one(&bucket));
    assert!(proxy.wait_requests_above(seen, LIMIT));
    let queued_at = Instant::now();
    let queued: Vec<_> = (0..4).map(|_| tokio::spawn(take_one(&bucket))).collect();
    for q in queued {
        let result = q.await.unwrap();
        assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    }
    let waited = queued_at.elapsed();
    // Bounded by one call timeout, not by the leader's and then the batch's (1 s and more).
    assert!(waited < timeout + timeout / 2, "{waited:?}");
    assert!(matches!(leader.await.unwrap(), Err(Error::Timeout(_))));
    proxy.pass();
}

#[test]
fn the_blocking_client_through_the_proxy_loses_no_budget_either() {
    let server = redis();
    let proxy = Proxy::start(server.port()).unwrap();
    let client = blocking::Client::connect(&proxy.url()).unwrap();
    let bucket = client.token_bucket("blocking", knobs(1.0, 10.0, 600.0));
    assert!(bucket.consume(1.0).unwrap().allowed);
    proxy.lose_next_reply();
    // A consume repeated after a lost reply may take twice, never give back.
    let _ = bucket.consume(1.0);
    let left = bucket_tokens(&server, "blocking");
    assert!((6000.0 - 3.0..=6000.0 - 2.0).contains(&left), "{left}");
}

#[tokio::test]
async fn a_knob_write_repeated_after_a_lost_reply_records_its_history_once() {
    use regulator_daemon::config::Knob;
    use regulator_daemon::store::{KnobChange, KnobStore, RedisStore};
    let server = redis();
    let proxy = Proxy::start(server.port()).unwrap();
    let store = RedisStore::new(client_through(&proxy).await, LIMIT, 100);
    let change = |old: Option<regulator::Knobs>, rps: f64| KnobChange {
        name: "orders".into(),
        knob: Knob::Rate,
        old,
        new: knobs(rps, 1.0, 1.0),
        signal: Some(0.4),
        law: "predictive",
        reason: "overloaded".into(),
        aim: 0.9,
    };
    let history_len = || server.cmd::<i64>(&["XLEN", "throttle:orders:history"]);
    store.write(&[change(None, 100.0)]).await.unwrap();
    assert_eq!(history_len(), 1);

    proxy.lose_next_reply();
    store
        .write(&[change(Some(knobs(100.0, 1.0, 1.0)), 80.0)])
        .await
        .expect("made again on a fresh connection");
    assert_eq!(proxy.lost(), 1, "the reply was lost");
    let rps: String = server.cmd(&["HGET", "throttle:orders:knobs", "rps"]);
    assert_eq!(rps, "80");
    assert_eq!(history_len(), 2, "one entry for the repeated write");

    // A later tick with the same change is a new entry: its time differs.
    tokio::time::sleep(Duration::from_millis(5)).await;
    store
        .write(&[change(Some(knobs(100.0, 1.0, 1.0)), 80.0)])
        .await
        .unwrap();
    assert_eq!(history_len(), 3);
}
