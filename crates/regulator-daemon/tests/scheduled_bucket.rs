//! The scheduled bucket against a real redis-server: the `limiters` library's timing tables in
//! real time, its arithmetic with the clock frozen, a reservation past `max_wait` that takes
//! nothing (where `limiters` consumes it), and the `rps`/`capacity` knobs.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{T0, frozen_client, patient_client, redis};
use regulator::{Error, ScheduledParams, Source};
use regulator_testing::RedisServer;

fn params(capacity: u32, refill_every_ms: u64, refill_amount: u32) -> ScheduledParams {
    ScheduledParams {
        capacity,
        refill_every: Duration::from_millis(refill_every_ms),
        refill_amount,
    }
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// A slot, `plus_us` after the frozen second `s`.
fn at(s: i64, plus_us: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        + Duration::from_secs(s.try_into().unwrap())
        + Duration::from_micros(plus_us)
}

fn state(server: &RedisServer, name: &str) -> Vec<String> {
    server.cmd(&["HGETALL", &format!("throttle:{name}:scheduled")])
}

/// `limiters`' table (`test_token_bucket_runtimes`): n+1 tasks at capacity 1, one token per
/// `frequency`, take n × frequency, within 0.25 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtimes_follow_the_refill() {
    let server = redis();
    let client = patient_client(&server.url(), false).await;
    for (n, frequency, expected) in [(5, 500, 2.5), (4, 750, 3.0)] {
        let bucket = client.scheduled_bucket(format!("runtimes-{n}"), params(1, frequency, 1));
        let start = Instant::now();
        let tasks: Vec<_> = (0..=n)
            .map(|_| {
                let bucket = bucket.clone();
                tokio::spawn(async move { bucket.acquire(1, Duration::ZERO).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = start.elapsed().as_secs_f64();
        assert!(
            (elapsed - expected).abs() <= 0.25,
            "{n} tasks every {frequency} ms: {elapsed} s"
        );
    }
}

/// `limiters`' `test_max_sleep`: 5 tasks, capacity 1, one token a second, max wait 1 s. Ours
/// fails the ones that would wait past it at once, and they take nothing: the two that fit
/// get their slots, the other three all see the same next slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_past_max_wait_fail_at_once_and_take_nothing() {
    let server = redis();
    let client = patient_client(&server.url(), false).await;
    let bucket = client.scheduled_bucket("max-wait", params(1, 1000, 1));
    let mut reserved = Vec::new();
    let mut exceeded = Vec::new();
    for _ in 0..5 {
        match bucket.reserve(1, Duration::from_secs(1)).await {
            Ok(r) => reserved.push(r.wait),
            Err(Error::MaxWaitExceeded {
                waited,
                retry_after,
            }) => {
                assert!(waited < ms(500), "{waited:?}");
                exceeded.push(retry_after);
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(reserved.len(), 2);
    assert_eq!(reserved[0], Duration::ZERO);
    assert!(reserved[1] > ms(900) && reserved[1] <= ms(1000));
    assert_eq!(exceeded.len(), 3);
    for w in exceeded {
        assert!(w > ms(1900) && w <= ms(2000), "{w:?}");
    }
}

#[test]
fn slots_follow_limiters_arithmetic_on_an_exact_grid() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.scheduled_bucket("grid", params(5, 1000, 2));
    let reserve = |tokens| bucket.reserve(tokens, Duration::ZERO).unwrap();

    // A new bucket is full.
    let r = reserve(5);
    assert_eq!((r.wait, r.slot), (Duration::ZERO, at(T0, 0)));
    assert_eq!(
        (r.capacity, r.refill_every, r.source),
        (5, ms(1000), Source::Defaults)
    );
    // Empty: 3 tokens need two refills of 2, leaving 1 at that slot...
    let r = reserve(3);
    assert_eq!((r.wait, r.slot), (ms(2000), at(T0 + 2, 0)));
    // ... which the next call gets, then the one after waits a refill more.
    assert_eq!(reserve(1).slot, at(T0 + 2, 0));
    assert_eq!(reserve(1).slot, at(T0 + 3, 0));
    // The state lasts until the bucket would be full again: 1 left at T0 + 3, and 4 more
    // come with two refills, at T0 + 5.
    let pttl: i64 = server.cmd(&["PTTL", "throttle:grid:scheduled"]);
    assert!(pttl > 4900 && pttl <= 5000, "{pttl}");

    // Idle: refills up to capacity, anchored to the grid, not to the call.
    server.freeze_time(T0 + 10, 500_000);
    let r = reserve(5);
    assert_eq!((r.wait, r.slot), (Duration::ZERO, at(T0 + 10, 0)));
    let r = reserve(1);
    assert_eq!((r.wait, r.slot), (ms(500), at(T0 + 11, 0)));
}

/// The bug `limiters` has: a reservation that raises for its wait still consumes its slot.
#[test]
fn max_wait_exceeded_leaves_the_bucket_unchanged() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.scheduled_bucket("unchanged", params(2, 1000, 1));
    for _ in 0..2 {
        assert_eq!(
            bucket.reserve(1, Duration::ZERO).unwrap().wait,
            Duration::ZERO
        );
    }
    assert_eq!(bucket.reserve(1, Duration::ZERO).unwrap().wait, ms(1000));
    let before = state(&server, "unchanged");

    for max_wait in [ms(1500), ms(1999)] {
        let e = bucket.reserve(1, max_wait).unwrap_err();
        let Error::MaxWaitExceeded { retry_after, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(retry_after, ms(2000));
        assert_eq!(state(&server, "unchanged"), before);
    }
    // The next reservation gets the slot the failed ones would have had; a max wait equal
    // to the wait is enough.
    let r = bucket.reserve(1, ms(2000)).unwrap();
    assert_eq!((r.wait, r.slot), (ms(2000), at(T0 + 2, 0)));
}

#[test]
fn knobs_override_rate_and_capacity_field_by_field() {
    let server = redis();
    let client = frozen_client(&server);
    let hset = |name: &str, field: &str, value: &str| {
        let _: i64 = server.cmd(&["HSET", &format!("throttle:{name}:knobs"), field, value]);
    };
    let waits = |name: &str, n: usize| -> Vec<(Duration, Source)> {
        let bucket = client.scheduled_bucket(name, params(1, 1000, 1));
        (0..n)
            .map(|_| {
                let r = bucket.reserve(1, Duration::ZERO).unwrap();
                (r.wait, r.source)
            })
            .collect()
    };
    let k = Source::Knobs;

    // rps 4 with refill 1: a token every 250 ms.
    hset("rate", "rps", "4");
    assert_eq!(waits("rate", 3), [(ms(0), k), (ms(250), k), (ms(500), k)]);

    // capacity 3: three at once, then the caller's rate.
    hset("burst", "capacity", "3");
    assert_eq!(
        waits("burst", 4),
        [(ms(0), k), (ms(0), k), (ms(0), k), (ms(1000), k)]
    );

    // A bad field is reported and replaced by the caller's value; the good one applies.
    hset("mixed", "rps", "fast");
    hset("mixed", "capacity", "2");
    let bad = Source::InvalidKnobs;
    assert_eq!(
        waits("mixed", 3),
        [(ms(0), bad), (ms(0), bad), (ms(1000), bad)]
    );

    // rps -1: no limit, and no state.
    hset("open", "rps", "-1");
    assert!(waits("open", 5).iter().all(|&(w, _)| w == Duration::ZERO));
    assert!(state(&server, "open").is_empty());

    // rps 0: paused; a bounded reservation fails at once and takes nothing.
    hset("paused", "rps", "0");
    let bucket = client.scheduled_bucket("paused", params(1, 1000, 1));
    let e = bucket.reserve(1, ms(100)).unwrap_err();
    assert!(matches!(e, Error::MaxWaitExceeded { .. }), "{e}");
    assert!(state(&server, "paused").is_empty());

    // The knobs' TTL is refreshed by the calls that use them.
    let ttl: i64 = server.cmd(&["TTL", "throttle:rate:knobs"]);
    assert!(ttl > 604_000, "{ttl}");
}

#[test]
fn bad_input_is_rejected_before_anything_is_written() {
    let server = redis();
    let client = regulator::blocking::Client::connect(&server.url()).unwrap();
    let ok = params(1, 1000, 1);
    for (name, p, tokens) in [
        ("", ok, 1),
        ("zero-tokens", ok, 0),
        ("zero-capacity", params(0, 1000, 1), 1),
        ("zero-refill", params(1, 1000, 0), 1),
        ("zero-period", params(1, 0, 1), 1),
        (
            "huge-period",
            ScheduledParams {
                refill_every: Duration::from_secs(60 * 86_400),
                ..ok
            },
            1,
        ),
    ] {
        let bucket = client.scheduled_bucket(name, p);
        for result in [
            bucket.reserve(tokens, Duration::ZERO),
            bucket.acquire(tokens, Duration::ZERO),
        ] {
            assert!(
                matches!(result, Err(Error::InvalidArgument(_))),
                "{name}: {result:?}"
            );
        }
    }
    let keys: i64 = server.cmd(&["DBSIZE"]);
    assert_eq!(keys, 0);
}
