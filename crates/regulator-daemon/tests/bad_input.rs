//! Bad input: knobs people typed, odd throttle names, impossible token counts. None may
//! crash the script, write a knob, or reach Redis when it should be rejected up front.

mod common;

use common::{frozen_client, knobs, redis};
use regulator::{Source, StoredKnobs};

#[test]
fn unusable_knobs_fall_back_to_the_defaults_and_say_so() {
    let server = redis();
    let client = frozen_client(&server);
    let defaults = knobs(3.0, 1.0, 5.0);
    let cases: &[(&str, &[&str])] = &[
        ("rps-abc", &["rps", "abc", "burst", "1", "window", "5"]),
        ("rps-empty", &["rps", "", "burst", "1", "window", "5"]),
        ("rps-negative", &["rps", "-5", "burst", "1", "window", "5"]),
        ("rps-huge", &["rps", "1e400", "burst", "1", "window", "5"]),
        ("burst-missing", &["rps", "10", "window", "5"]),
        ("burst-abc", &["rps", "10", "burst", "abc", "window", "5"]),
        ("window-missing", &["rps", "10", "burst", "1"]),
        ("window-zero", &["rps", "10", "burst", "1", "window", "0"]),
        (
            "window-huge",
            &["rps", "10", "burst", "1", "window", "1e400"],
        ),
    ];
    for (name, fields) in cases {
        let key = format!("throttle:{name}:knobs");
        let mut args = vec!["HSET", key.as_str()];
        args.extend_from_slice(fields);
        let _: () = server.cmd(&args);
        let before: Vec<String> = server.cmd(&["HGETALL", &key]);

        let d = client.token_bucket(*name, defaults).consume(1.0).unwrap();
        assert_eq!(d.source, Source::InvalidKnobs, "{name}");
        assert!(d.allowed, "{name}");
        assert_eq!(
            (d.capacity, d.tokens),
            (15.0, 14.0),
            "{name}: defaults apply"
        );
        assert!(
            matches!(client.get(name).unwrap().knobs(), StoredKnobs::Invalid(_)),
            "{name}"
        );
        let after: Vec<String> = server.cmd(&["HGETALL", &key]);
        assert_eq!(before, after, "{name}: the script never writes knobs");
    }
}

#[test]
fn tiny_burst_times_window_keeps_the_bucket_alive() {
    // limitlion computes EXPIRE floor(burst*window*2) = 0 here, which deletes the bucket and
    // so lifts the limit. Ours outlasts the next window.
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.token_bucket("tiny", knobs(100.0, 0.1, 1.0));
    assert_eq!(bucket.consume(10.0).unwrap().tokens, 0.0);
    let ttl: i64 = server.cmd(&["TTL", "throttle:tiny"]);
    assert_eq!(ttl, 2);
    assert!(
        !bucket.consume(1.0).unwrap().allowed,
        "the limit still holds"
    );
}

#[test]
fn odd_names_map_to_exactly_their_limitlion_keys() {
    let server = redis();
    let client = frozen_client(&server);
    for name in [
        "100%",
        "{tenant}",
        "a{}b",
        "with space",
        "new\nline",
        "ünïcødé-日本",
        "*",
        "x:y",
    ] {
        let d = client
            .token_bucket(name, knobs(1.0, 1.0, 5.0))
            .consume(1.0)
            .unwrap();
        assert_eq!(d.tokens, 4.0, "{name:?}");
        let exists: i64 = server.cmd(&["EXISTS", &format!("throttle:{name}")]);
        assert_eq!(exists, 1, "{name:?}");
        client.set_knobs(name, knobs(2.0, 1.0, 5.0), None).unwrap();
        assert_eq!(
            client.get(name).unwrap().knobs(),
            StoredKnobs::Valid(knobs(2.0, 1.0, 5.0)),
            "{name:?}"
        );
        client.delete(name).unwrap();
    }
    let keys: Vec<String> = server.cmd(&["KEYS", "throttle:*"]);
    assert!(keys.is_empty(), "delete removed every key: {keys:?}");
}

#[test]
fn impossible_requests_are_rejected_before_any_call() {
    let mut server = redis();
    let client = frozen_client(&server);
    // With Redis gone, an error other than "unavailable" proves nothing was sent.
    server.stop();
    let bucket = client.token_bucket("t", knobs(1.0, 1.0, 5.0));
    for tokens in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = bucket.consume(tokens).unwrap_err();
        assert_eq!(err.kind(), "invalid_argument", "{tokens}: {err}");
    }
    for bad in [
        knobs(-2.0, 1.0, 5.0),
        knobs(f64::NAN, 1.0, 5.0),
        knobs(1.0, -1.0, 5.0),
        knobs(1.0, 1.0, 0.0),
        knobs(1.0, 1.0, f64::INFINITY),
    ] {
        let err = client.token_bucket("t", bad).consume(1.0).unwrap_err();
        assert_eq!(err.kind(), "invalid_argument", "{bad:?}: {err}");
    }
    let err = client
        .token_bucket("", knobs(1.0, 1.0, 5.0))
        .consume(1.0)
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_argument");
    for bad in [
        knobs(-1.0, 1.0, 5.0),
        knobs(1.0, f64::NAN, 5.0),
        knobs(1.0, 1.0, 0.0),
    ] {
        let err = client.set_knobs("t", bad, None).unwrap_err();
        assert_eq!(err.kind(), "invalid_argument", "{bad:?}: {err}");
        assert!(
            err.to_string().contains("is not a valid throttle value"),
            "{err}"
        );
    }
}

#[test]
fn a_request_above_capacity_is_denied_forever_and_takes_nothing() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.token_bucket("big", knobs(1.0, 1.0, 5.0));
    for second in 0..3 {
        server.freeze_time(common::T0 + second * 5, 0);
        let d = bucket.consume(6.0).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.tokens, 5.0);
    }
}
