//! limitlion's own test scenarios (COMPAT.md section 1), over its whole parameter grid, against
//! a real redis-server with the clock frozen.

mod common;

use std::time::Duration;

use common::{T0, frozen_client, grid, knobs, name, redis};
use regulator::{Error, KnobsUpdate, Source, StoredKnobs};

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[test]
fn bursting_over_the_grid() {
    let server = redis();
    let client = frozen_client(&server);
    for k in grid() {
        server.freeze_time(T0, 0);
        let bucket = client.token_bucket(name("burst", k), k);
        let c = k.capacity();
        let d = bucket.consume(1.0).unwrap();
        assert!(d.allowed, "{k:?}");
        assert_eq!(d.tokens, c - 1.0, "first call leaves C-1 for {k:?}");
        assert_eq!(d.capacity, c);
        assert_eq!(d.source, Source::Defaults);
        assert!(
            (secs(d.sleep) - k.window).abs() < 1e-6,
            "{k:?}: {:?}",
            d.sleep
        );

        server.freeze_time(T0 + k.window as i64, 500_000);
        let d = bucket.consume(c).unwrap();
        assert!(
            d.allowed,
            "a full bucket's worth after one window for {k:?}"
        );
        assert_eq!(d.tokens, 0.0);
        assert!((secs(d.sleep) - (k.window - 0.5)).abs() < 1e-6, "{k:?}");

        server.freeze_time(T0 + 2 * k.window as i64, 500_000);
        let d = bucket.consume(1.0).unwrap();
        assert!(d.allowed, "{k:?}");
        assert_eq!(d.tokens, (k.rps * k.window).ceil() - 1.0, "{k:?}");
    }
}

#[test]
fn zero_rps_denies_with_a_full_window_sleep() {
    let server = redis();
    let client = frozen_client(&server);
    for window in [1.0, 2.0, 5.0, 10.0] {
        let bucket = client.token_bucket(format!("zero-{window}"), knobs(0.0, 1.0, window));
        let d = bucket.consume(1.0).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.tokens, 0.0);
        assert_eq!(secs(d.sleep), window);
        let state = client.get(&format!("zero-{window}")).unwrap();
        assert_eq!(state.tokens, None, "rps 0 leaves the bucket untouched");
    }
}

#[test]
fn requesting_exactly_capacity_and_one_more() {
    let server = redis();
    let client = frozen_client(&server);
    for k in grid() {
        let c = k.capacity();
        let all = client.token_bucket(name("all", k), k);
        let d = all.consume(c).unwrap();
        assert!(d.allowed, "{k:?}");
        assert_eq!(d.tokens, 0.0);

        let over = client.token_bucket(name("over", k), k);
        let d = over.consume(c + 1.0).unwrap();
        assert!(!d.allowed, "{k:?}");
        assert_eq!(d.tokens, c, "a denied request takes nothing");
    }
}

#[test]
fn changing_settings_takes_effect_on_the_next_call() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.token_bucket("changing", knobs(5.0, 1.0, 5.0));
    assert_eq!(bucket.consume(1.0).unwrap().tokens, 24.0);

    client
        .set_knobs("changing", knobs(10.0, 1.0, 5.0), None)
        .unwrap();
    let d = bucket.consume(1.0).unwrap();
    assert_eq!(
        d.tokens, 23.0,
        "caller's defaults are ignored once knobs exist"
    );
    assert_eq!(d.source, Source::Knobs);

    server.freeze_time(T0 + 6, 0);
    let window_only = KnobsUpdate {
        window: Some(10.0),
        ..KnobsUpdate::default()
    };
    client.set_knobs("changing", window_only, None).unwrap();
    assert_eq!(bucket.consume(1.0).unwrap().tokens, 22.0, "no refill yet");

    server.freeze_time(T0 + 11, 0);
    assert_eq!(bucket.consume(1.0).unwrap().tokens, 99.0);
}

/// A call that uses stored knobs sets their 7-day TTL, and every refill (at most once a window)
/// refreshes it; a knobs TTL of 0 sets none.
#[test]
fn knobs_ttl_is_refreshed_at_each_refill_and_zero_keeps_it() {
    let server = redis();
    let client = frozen_client(&server);
    client.set_knobs("ttl", knobs(5.0, 2.0, 6.0), None).unwrap();
    let bucket = client.token_bucket("ttl", knobs(1.0, 1.0, 5.0));
    assert_eq!(bucket.consume(1.0).unwrap().tokens, 59.0);
    let ttl: i64 = server.cmd(&["TTL", "throttle:ttl:knobs"]);
    assert!((604_790..=604_800).contains(&ttl), "ttl {ttl}");
    let _: i64 = server.cmd(&["EXPIRE", "throttle:ttl:knobs", "100"]);
    server.freeze_time(T0 + 6, 0); // one window later: the next call refills
    assert!(bucket.consume(1.0).unwrap().allowed);
    let ttl: i64 = server.cmd(&["TTL", "throttle:ttl:knobs"]);
    assert!(
        (604_790..=604_800).contains(&ttl),
        "refreshed at the refill; ttl {ttl}"
    );

    client
        .set_knobs("ttl0", knobs(5.0, 2.0, 6.0), None)
        .unwrap();
    let d = client
        .token_bucket("ttl0", knobs(1.0, 1.0, 5.0))
        .with_knobs_ttl(Duration::ZERO)
        .consume(1.0)
        .unwrap();
    assert_eq!(d.tokens, 59.0);
    let ttl: i64 = server.cmd(&["TTL", "throttle:ttl0:knobs"]);
    assert_eq!(ttl, -1, "knobs TTL 0 sets no expiry");
}

#[test]
fn a_smaller_capacity_truncates_at_once_a_larger_fills_at_the_boundary() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.token_bucket("resize", knobs(10.0, 1.0, 5.0));
    assert_eq!(bucket.consume(1.0).unwrap().tokens, 49.0);
    client
        .set_knobs("resize", knobs(2.0, 1.0, 5.0), None)
        .unwrap();
    assert_eq!(
        bucket.consume(1.0).unwrap().tokens,
        9.0,
        "truncated to 10, minus 1"
    );
    client
        .set_knobs("resize", knobs(20.0, 1.0, 5.0), None)
        .unwrap();
    assert_eq!(
        bucket.consume(1.0).unwrap().tokens,
        8.0,
        "no fill before the boundary"
    );
    server.freeze_time(T0 + 5, 0);
    assert_eq!(bucket.consume(1.0).unwrap().tokens, 99.0);
}

#[test]
fn minus_one_rps_allows_everything_without_touching_the_bucket() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.token_bucket("open", knobs(-1.0, 1.0, 5.0));
    for _ in 0..100 {
        let d = bucket.consume(1000.0).unwrap();
        assert!(d.allowed);
        assert_eq!(d.sleep, Duration::ZERO);
    }
    assert_eq!(client.get("open").unwrap().tokens, None);
}

#[test]
fn sleep_hint_counts_microseconds_to_the_boundary() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.token_bucket("hint", knobs(1.0, 1.0, 5.0));
    assert!(bucket.consume(5.0).unwrap().allowed);
    server.freeze_time(T0 + 2, 250_000);
    let d = bucket.consume(1.0).unwrap();
    assert!(!d.allowed);
    assert!((secs(d.sleep) - 2.75).abs() < 1e-6, "{:?}", d.sleep);
}

#[test]
fn stored_numbers_are_read_as_lua_reads_them() {
    let server = redis();
    let client = frozen_client(&server);
    let _: () = server.cmd(&[
        "HSET",
        "throttle:typed:knobs",
        "rps",
        "0.99990000000000001",
        "burst",
        "1e1",
        "window",
        " 5 ",
    ]);
    let _: () = server.cmd(&[
        "HSET",
        "throttle:typed",
        "tokens",
        "3.5",
        "refreshed",
        &format!("{}.0", T0 - 1),
    ]);
    let state = client.get("typed").unwrap();
    assert_eq!(state.knobs(), StoredKnobs::Valid(knobs(0.9999, 10.0, 5.0)));
    let d = client
        .token_bucket("typed", knobs(1.0, 1.0, 1.0))
        .consume(1.0)
        .unwrap();
    assert_eq!(d.source, Source::Knobs);
    assert_eq!(d.capacity, 50.0);
    assert_eq!(d.tokens, 2.5);
}

#[test]
fn get_reads_what_consume_and_set_wrote() {
    let server = redis();
    let client = frozen_client(&server);
    client
        .token_bucket("get", knobs(2.0, 1.0, 5.0))
        .consume(3.0)
        .unwrap();
    client
        .set_knobs("get", knobs(4.0, 2.0, 5.0), Some(Duration::from_secs(60)))
        .unwrap();
    let s = client.get("get").unwrap();
    assert_eq!(s.tokens.as_deref(), Some("7"));
    assert_eq!(s.refreshed.as_deref(), Some(T0.to_string().as_str()));
    assert_eq!(s.knobs(), StoredKnobs::Valid(knobs(4.0, 2.0, 5.0)));
    let ttl = s.bucket_ttl.expect("bucket has a TTL");
    assert!(
        ttl > Duration::from_secs(9) && ttl <= Duration::from_secs(10),
        "{ttl:?}"
    );
    assert!(s.knobs_ttl.is_some_and(|t| t <= Duration::from_secs(60)));

    client.reset_knobs("get").unwrap();
    let s = client.get("get").unwrap();
    assert_eq!(s.knobs(), StoredKnobs::Absent);
    assert!(s.tokens.is_some(), "reset leaves the bucket");

    client.delete("get").unwrap();
    assert_eq!(
        client.get("get").unwrap(),
        regulator::ThrottleState::default()
    );
}

#[test]
fn set_without_a_stored_field_writes_nothing() {
    let server = redis();
    let client = frozen_client(&server);
    let rps_only = KnobsUpdate {
        rps: Some(3.0),
        ..KnobsUpdate::default()
    };
    let err = client.set_knobs("partial", rps_only, None).unwrap_err();
    assert_eq!(err.kind(), "invalid_argument");
    assert!(err.to_string().contains("burst, window"), "{err}");
    let exists: i64 = server.cmd(&["EXISTS", "throttle:partial:knobs"]);
    assert_eq!(exists, 0);
}

/// `set_knobs` keeps a sub-second TTL to the millisecond (it used to round up to 1 s), leaves
/// the expiry alone for zero, and refuses a TTL Redis could not add to its clock with nothing
/// written.
#[test]
fn set_knobs_ttl_is_kept_to_the_millisecond_and_zero_keeps_it() {
    let server = redis();
    let client = frozen_client(&server);
    client
        .set_knobs(
            "ms",
            knobs(5.0, 1.0, 1.0),
            Some(Duration::from_millis(1500)),
        )
        .unwrap();
    let pttl: i64 = server.cmd(&["PTTL", "throttle:ms:knobs"]);
    assert!(
        (1001..=1500).contains(&pttl),
        "1.5 s, not rounded to whole seconds: pttl {pttl}"
    );
    client
        .set_knobs("ms", knobs(6.0, 1.0, 1.0), Some(Duration::ZERO))
        .unwrap();
    let pttl: i64 = server.cmd(&["PTTL", "throttle:ms:knobs"]);
    assert!(
        (1..=1500).contains(&pttl),
        "zero leaves the expiry: pttl {pttl}"
    );

    let too_long = Duration::from_secs(u64::MAX);
    assert!(matches!(
        client.set_knobs("huge", knobs(5.0, 1.0, 1.0), Some(too_long)),
        Err(Error::InvalidArgument(_))
    ));
    let exists: i64 = server.cmd(&["EXISTS", "throttle:huge:knobs"]);
    assert_eq!(exists, 0, "nothing written");
}
