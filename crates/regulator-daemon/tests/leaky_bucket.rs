//! The leaky bucket (COMPAT.md section 2): aiosteady's own traces, replayed with the clock
//! frozen, and what it got wrong, mended; knobs; bad input; many workers on one bucket.

mod common;

use std::time::{Duration, Instant};

use common::{T0, assert_nothing_written, crowd, frozen_client, patient_client, redis};
use regulator::{Error, LeakyDecision, LeakyParams, Source, blocking};
use regulator_testing::RedisServer;

fn params(rate: f64, capacity: f64, block: Option<f64>) -> LeakyParams {
    LeakyParams {
        rate,
        capacity,
        block: block.map(Duration::from_secs_f64),
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    server.cmd(&["PTTL", key])
}

fn exists(server: &RedisServer, key: &str) -> bool {
    server.cmd::<i64>(&["EXISTS", key]) == 1
}

/// Polls until `key` is gone (it expires in real time), for at most `limit`.
fn wait_gone(server: &RedisServer, key: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while exists(server, key) {
        assert!(
            Instant::now() < deadline,
            "{key} still exists after {limit:?}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn aiosteady_trace_ten_drops_then_overflow() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.leaky_bucket("quick", params(0.2, 10.0, None));
    for i in 0..10u32 {
        // Ten calls 10 ms apart: the drop timer starts at the first and is not reset.
        server.freeze_time(T0, i * 10_000);
        let peek = bucket.peek().unwrap();
        assert!(peek.allowed, "{i}");
        assert_eq!(peek.level, f64::from(i));
        let d = bucket.consume(1.0).unwrap();
        assert!(d.allowed, "{i}");
        assert_eq!(d.level, f64::from(i + 1));
        let next = secs(d.until_next_drop);
        assert!(4.0 < next && next <= 5.0, "{i}: {next}");
        assert!(
            (next - (5.0 - 0.01 * f64::from(i))).abs() < 1e-6,
            "{i}: {next}"
        );
        assert!(!d.is_blocked());
        assert_eq!(d.source, Source::Defaults);
        assert_eq!((d.capacity, d.rate), (10.0, 0.2));
    }
    let peek = bucket.peek().unwrap();
    assert!(!peek.allowed);
    assert_eq!(peek.level, 10.0);
    let d = bucket.consume(1.0).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.level, 10.0, "the real level");
    assert!(!d.is_blocked(), "no block duration, no block");
}

#[test]
fn an_overflow_reports_the_real_level() {
    // aiosteady reports the capacity here.
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.leaky_bucket("real-level", params(0.2, 10.0, None));
    assert_eq!(bucket.consume(5.0).unwrap().level, 5.0);
    let d = bucket.consume(11.0).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.level, 5.0);
    assert_eq!(bucket.peek().unwrap().level, 5.0, "nothing was added");
}

#[test]
fn aiosteady_trace_overflow_blocks() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.leaky_bucket("blocky", params(0.5, 5.0, Some(1.0)));
    for i in 0..5u32 {
        let peek = bucket.peek().unwrap();
        assert!(peek.allowed);
        assert_eq!(peek.level, f64::from(i));
        let d = bucket.consume(1.0).unwrap();
        assert!(d.allowed);
        assert_eq!(d.level, f64::from(i + 1));
        assert!(1.0 < secs(d.until_next_drop) && secs(d.until_next_drop) <= 2.0);
        assert!(!d.is_blocked());
    }
    let peek = bucket.peek().unwrap();
    assert!(!peek.allowed);
    assert_eq!(peek.level, 5.0);

    let d = bucket.consume(1.0).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.blocked_for, Duration::from_secs(1), "this consume blocks");
    assert_eq!(d.level, 5.0);

    server.freeze_time(T0, 100_000);
    let during = [bucket.peek().unwrap(), bucket.consume(-1.0).unwrap()];
    for d in during {
        assert!(!d.allowed, "{d:?}");
        assert_eq!(d.level, 5.0, "a blocked call changes nothing");
        assert!((0.8..1.0).contains(&secs(d.blocked_for)), "{d:?}");
    }

    server.freeze_time(T0 + 1, 0);
    let peek = bucket.peek().unwrap();
    assert!(!peek.allowed, "unblocked but still full");
    assert_eq!(peek.level, 5.0);
    assert!(!peek.is_blocked());
    let d = bucket.consume(1.0).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.blocked_for, Duration::from_secs(1), "blocks again");
    server.freeze_time(T0 + 1, 100_000);
    let peek = bucket.peek().unwrap();
    assert!(!peek.allowed);
    assert!((0.8..1.0).contains(&secs(peek.blocked_for)));

    server.freeze_time(T0 + 2, 0);
    let peek = bucket.peek().unwrap();
    assert!(peek.allowed, "{peek:?}");
    assert_eq!(peek.level, 4.0);
    assert!(!peek.is_blocked());
}

#[test]
fn drops_leak_whole_on_a_timer_that_consumes_do_not_reset() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.leaky_bucket("timer", params(0.5, 10.0, None));
    bucket.consume(4.0).unwrap();
    server.freeze_time(T0 + 1, 0);
    let d = bucket.consume(1.0).unwrap();
    assert_eq!((d.level, d.until_next_drop), (5.0, Duration::from_secs(1)));
    server.freeze_time(T0 + 3, 0);
    let d = bucket.peek().unwrap();
    assert_eq!((d.level, d.until_next_drop), (4.0, Duration::from_secs(1)));
    server.freeze_time(T0 + 7, 500_000);
    let d = bucket.peek().unwrap();
    assert_eq!(
        (d.level, d.until_next_drop),
        (2.0, Duration::from_millis(500))
    );
    server.freeze_time(T0 + 11, 0);
    let d = bucket.consume(0.5).unwrap();
    assert_eq!((d.level, d.until_next_drop), (0.5, Duration::from_secs(2)));
    assert!(
        exists(&server, "throttle:timer:leaky"),
        "an empty bucket filled again"
    );
}

#[test]
fn the_key_lives_exactly_as_long_as_the_level() {
    let server = redis();
    let client = frozen_client(&server);
    let key = "throttle:ttl:leaky";
    let bucket = client.leaky_bucket("ttl", params(0.2, 10.0, None));
    assert!(bucket.peek().unwrap().allowed);
    assert!(!exists(&server, key), "a peek writes nothing");

    bucket.consume(3.0).unwrap();
    let ttl = pttl(&server, key);
    assert!((14_000..=15_000).contains(&ttl), "3 drops, 5 s each: {ttl}");

    // 2.5 s into the first drop, one more: the first drop leaves in 2.5 s, three more follow.
    server.freeze_time(T0 + 2, 500_000);
    bucket.consume(1.0).unwrap();
    let ttl = pttl(&server, key);
    assert!((17_000..=17_500).contains(&ttl), "{ttl}");

    // Fractional levels take their last drop whole.
    server.freeze_time(T0 + 5, 0);
    let d = bucket.consume(-0.5).unwrap();
    assert_eq!(d.level, 2.5);
    let ttl = pttl(&server, key);
    assert!((14_000..=15_000).contains(&ttl), "{ttl}");

    // Drained: the key goes at once.
    let d = bucket.consume(-2.5).unwrap();
    assert_eq!(d.level, 0.0);
    assert!(!exists(&server, key));
}

#[test]
fn a_fractional_recharge_expires_the_key() {
    // aiosteady's SETEX fails here (a TTL of 0.5 s).
    let server = redis();
    let client = frozen_client(&server);
    let key = "throttle:half:leaky";
    let bucket = client.leaky_bucket("half", params(2.0, 5.0, None));
    let d = bucket.consume(1.0).unwrap();
    assert!(d.allowed);
    assert_eq!(d.until_next_drop, Duration::from_millis(500));
    let ttl = pttl(&server, key);
    assert!((1..=500).contains(&ttl), "{ttl}");
    wait_gone(&server, key, Duration::from_secs(5));
}

#[test]
fn a_block_outlives_an_empty_bucket() {
    let server = redis();
    let client = frozen_client(&server);
    let key = "throttle:long-block:leaky";
    let bucket = client.leaky_bucket("long-block", params(1.0, 1.0, Some(30.0)));
    bucket.consume(1.0).unwrap();
    assert!(bucket.consume(1.0).unwrap().is_blocked());
    let ttl = pttl(&server, key);
    assert!(
        (29_000..=30_000).contains(&ttl),
        "the block's 30 s, not the level's 1 s: {ttl}"
    );
    server.freeze_time(T0 + 10, 0);
    let d = bucket.consume(1.0).unwrap();
    assert!(!d.allowed);
    assert_eq!((d.level, d.blocked_for), (0.0, Duration::from_secs(20)));
}

#[test]
fn negative_amounts_drain_and_never_below_zero() {
    // aiosteady's test_recharge.
    let server = redis();
    let client = frozen_client(&server);
    let key = "throttle:recharge:leaky";
    let bucket = client.leaky_bucket("recharge", params(0.2, 3.0, None));
    let d = bucket.consume(3.0).unwrap();
    assert_eq!((d.level, d.until_next_drop), (3.0, Duration::from_secs(5)));
    let d = bucket.consume(-1.0).unwrap();
    assert!(d.allowed);
    assert_eq!((d.level, d.until_next_drop), (2.0, Duration::from_secs(5)));
    let d = bucket.consume(-5.0).unwrap();
    assert!(d.allowed);
    assert_eq!((d.level, d.until_next_drop), (0.0, Duration::from_secs(5)));
    assert!(!exists(&server, key));
    let d = bucket.consume(-1.0).unwrap();
    assert_eq!(d.level, 0.0);
    assert!(
        !exists(&server, key),
        "draining an empty bucket stores nothing"
    );

    // A drain is never refused, even above a capacity the knobs have since lowered.
    bucket.consume(3.0).unwrap();
    let _: () = server.cmd(&["HSET", "throttle:recharge:knobs", "capacity", "1"]);
    let d = bucket.consume(-1.0).unwrap();
    assert!(d.allowed);
    assert_eq!((d.level, d.capacity), (2.0, 1.0));
}

#[test]
fn knobs_override_field_by_field() {
    let server = redis();
    let client = frozen_client(&server);
    let knobs = "throttle:steered:knobs";
    let bucket = client.leaky_bucket("steered", params(0.2, 10.0, None));
    // limitlion's fields alone are not a leaky bucket's.
    let _: () = server.cmd(&["HSET", knobs, "burst", "1", "window", "5"]);
    assert_eq!(bucket.peek().unwrap().source, Source::Defaults);

    let _: () = server.cmd(&["HSET", knobs, "rps", "1"]);
    let d = bucket.consume(1.0).unwrap();
    assert_eq!(d.source, Source::Knobs);
    assert_eq!(
        (d.rate, d.capacity),
        (1.0, 10.0),
        "capacity from the caller"
    );
    assert_eq!(d.until_next_drop, Duration::from_secs(1));

    let _: () = server.cmd(&["HSET", knobs, "capacity", "2", "block", "0.25"]);
    assert!(bucket.consume(1.0).unwrap().allowed);
    let d = bucket.consume(1.0).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.capacity, 2.0);
    assert_eq!(d.blocked_for, Duration::from_millis(250));
}

#[test]
fn unusable_knobs_fall_back_field_by_field_and_are_never_written() {
    let server = redis();
    let client = frozen_client(&server);
    let defaults = params(0.2, 10.0, Some(2.0));
    let cases: &[(&str, &[&str], (f64, f64))] = &[
        ("rps-abc", &["rps", "abc", "capacity", "3"], (0.2, 3.0)),
        ("rps-neg", &["rps", "-5", "capacity", "3"], (0.2, 3.0)),
        ("rps-nan", &["rps", "nan", "capacity", "3"], (0.2, 3.0)),
        ("rps-inf", &["rps", "inf", "capacity", "3"], (0.2, 3.0)),
        ("rps-huge", &["rps", "1e400", "capacity", "3"], (0.2, 3.0)),
        ("rps-empty", &["rps", "", "capacity", "3"], (0.2, 3.0)),
        ("cap-zero", &["rps", "1", "capacity", "0"], (1.0, 10.0)),
        ("cap-neg", &["rps", "1", "capacity", "-3"], (1.0, 10.0)),
        ("cap-abc", &["rps", "1", "capacity", "x"], (1.0, 10.0)),
        ("cap-inf", &["rps", "1", "capacity", "inf"], (1.0, 10.0)),
        ("block-neg", &["rps", "1", "block", "-1"], (1.0, 10.0)),
        ("block-nan", &["rps", "1", "block", "nan"], (1.0, 10.0)),
        ("block-huge", &["rps", "1", "block", "1e308"], (1.0, 10.0)),
    ];
    for (name, fields, (rate, capacity)) in cases {
        let key = format!("throttle:{name}:knobs");
        let mut args = vec!["HSET", key.as_str()];
        args.extend_from_slice(fields);
        let _: () = server.cmd(&args);
        let before: Vec<String> = server.cmd(&["HGETALL", &key]);

        let bucket = client.leaky_bucket(*name, defaults);
        let d = bucket.consume(1.0).unwrap();
        assert_eq!(d.source, Source::InvalidKnobs, "{name}");
        assert!(d.allowed, "{name}");
        assert_eq!((d.rate, d.capacity), (*rate, *capacity), "{name}");
        assert_eq!(
            bucket.peek().unwrap().source,
            Source::InvalidKnobs,
            "{name}"
        );
        let after: Vec<String> = server.cmd(&["HGETALL", &key]);
        assert_eq!(before, after, "{name}: the script never writes knobs");
        assert_eq!(
            pttl(&server, &key),
            -1,
            "{name}: unusable knobs are not kept alive"
        );
    }
    // The default block applied where the knob was unusable.
    let bucket = client.leaky_bucket("block-nan", defaults);
    bucket.consume(9.0).unwrap();
    assert_eq!(
        bucket.consume(1.0).unwrap().blocked_for,
        Duration::from_secs(2)
    );
}

#[test]
fn zero_rps_denies_and_minus_one_allows_without_touching_the_bucket() {
    let server = redis();
    let client = frozen_client(&server);
    let _: () = server.cmd(&["HSET", "throttle:stop:knobs", "rps", "0"]);
    let _: () = server.cmd(&["HSET", "throttle:open:knobs", "rps", "-1"]);
    let stop = client.leaky_bucket("stop", params(1.0, 10.0, None));
    let open = client.leaky_bucket("open", params(1.0, 10.0, None));
    for _ in 0..20 {
        let d = stop.consume(1.0).unwrap();
        assert!(!d.allowed);
        assert_eq!((d.rate, d.source), (0.0, Source::Knobs));
        let d = open.consume(1.0).unwrap();
        assert!(d.allowed);
        assert_eq!(d.rate, -1.0);
    }
    assert!(!stop.peek().unwrap().allowed);
    assert!(open.peek().unwrap().allowed);
    assert!(!exists(&server, "throttle:stop:leaky"));
    assert!(!exists(&server, "throttle:open:leaky"));
}

#[test]
fn consumes_whose_knobs_applied_keep_the_knobs_alive() {
    let server = redis();
    let client = frozen_client(&server);
    for name in ["kept", "kept-peek", "kept-zero"] {
        let _: () = server.cmd(&["HSET", &format!("throttle:{name}:knobs"), "rps", "1"]);
    }
    let p = params(1.0, 10.0, None);
    client.leaky_bucket("kept", p).consume(1.0).unwrap();
    let ttl: i64 = server.cmd(&["TTL", "throttle:kept:knobs"]);
    assert!((604_790..=604_800).contains(&ttl), "{ttl}");
    client.leaky_bucket("kept-peek", p).peek().unwrap();
    let ttl: i64 = server.cmd(&["TTL", "throttle:kept-peek:knobs"]);
    assert_eq!(ttl, -1, "a peek changes nothing");
    client
        .leaky_bucket("kept-zero", p)
        .with_knobs_ttl(Duration::ZERO)
        .consume(1.0)
        .unwrap();
    let ttl: i64 = server.cmd(&["TTL", "throttle:kept-zero:knobs"]);
    assert_eq!(ttl, -1, "knobs TTL 0 sets no expiry");
}

#[test]
fn a_rate_change_keeps_the_share_of_the_current_drop_and_rearms_the_key() {
    let server = redis();
    let client = frozen_client(&server);
    let key = "throttle:slower:leaky";
    let bucket = client.leaky_bucket("slower", params(0.5, 10.0, None));
    bucket.consume(3.0).unwrap();
    server.freeze_time(T0 + 1, 0);
    let _: () = server.cmd(&["HSET", "throttle:slower:knobs", "rps", "0.25"]);
    let d = bucket.peek().unwrap();
    assert_eq!(d.level, 3.0);
    assert_eq!(
        d.until_next_drop,
        Duration::from_secs(2),
        "half of a 4 s drop is left"
    );
    // A zero consume re-anchors the bucket to the new rate: 2 s + two 4 s drops.
    let d = bucket.consume(0.0).unwrap();
    assert!(d.allowed);
    let ttl = pttl(&server, key);
    assert!((9_000..=10_000).contains(&ttl), "{ttl}");
    server.freeze_time(T0 + 3, 0);
    assert_eq!(bucket.peek().unwrap().level, 2.0);
}

fn invalid(result: Result<LeakyDecision, Error>) -> bool {
    result.is_err_and(|e| matches!(e, Error::InvalidArgument(_)))
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let server = redis();
    let client = frozen_client(&server);
    let good = params(1.0, 5.0, None);
    let bad_params = [
        params(0.0, 5.0, None),
        params(-1.0, 5.0, None),
        params(f64::NAN, 5.0, None),
        params(f64::INFINITY, 5.0, None),
        params(1e-320, 5.0, None),
        params(1.0, 0.0, None),
        params(1.0, -5.0, None),
        params(1.0, f64::NAN, None),
        params(1.0, f64::INFINITY, None),
    ];
    for p in bad_params {
        let bucket = client.leaky_bucket("bad", p);
        assert!(invalid(bucket.consume(1.0)), "{p:?}");
        assert!(invalid(bucket.peek()), "{p:?}");
    }
    let unnamed = client.leaky_bucket("", good);
    assert!(invalid(unnamed.consume(1.0)));
    assert!(invalid(unnamed.peek()));
    let bucket = client.leaky_bucket("bad", good);
    for amount in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(invalid(bucket.consume(amount)), "{amount}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bucket = client
            .as_async()
            .leaky_bucket("bad", params(0.0, 5.0, None));
        assert!(invalid(bucket.consume(1.0).await));
        assert!(invalid(bucket.peek().await));
        let bucket = client.as_async().leaky_bucket("bad", good);
        assert!(invalid(bucket.consume(f64::NAN).await));
        // A blocking call from inside a runtime is refused, not a panic.
        assert!(invalid(client.leaky_bucket("bad", good).consume(1.0)));
    });
    assert_nothing_written(&server);
}

/// Async tasks on a multi-threaded runtime and OS threads with the blocking client, all on one
/// bucket, in phases; between phases the test moves the frozen clock ten seconds. Each phase
/// asks for far more drops than fit, so the count is exact: the capacity, then ten seconds'
/// leak per phase. (A slow leak keeps the key's real-time TTL far longer than the test.)
#[test]
fn many_tasks_and_threads_never_exceed_the_bucket() {
    const TASKS: usize = 16;
    const THREADS: usize = 4;
    const CALLS: usize = 40;
    const PHASES: u32 = 4;
    let (rate, capacity) = (1.0, 50.0);
    let server = redis();
    let client = frozen_client(&server);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let async_client = runtime.block_on(patient_client(&server.url(), true));
    let p = params(rate, capacity, None);
    for phase in 0..PHASES {
        server.freeze_time(T0 + 10 * i64::from(phase), 0);
        let allowed = crowd(
            &runtime,
            (TASKS, THREADS, CALLS),
            || {
                let bucket = async_client.leaky_bucket("crowd", p);
                move || {
                    let bucket = bucket.clone();
                    async move { bucket.consume(1.0).await.unwrap().allowed }
                }
            },
            || {
                let bucket: blocking::LeakyBucket = client.leaky_bucket("crowd", p);
                move || bucket.consume(1.0).unwrap().allowed
            },
        );
        let expected = if phase == 0 { capacity } else { 10.0 * rate };
        assert_eq!(allowed, expected as u64, "phase {phase}");
        assert_eq!(
            client.leaky_bucket("crowd", p).peek().unwrap().level,
            capacity
        );
    }
}
