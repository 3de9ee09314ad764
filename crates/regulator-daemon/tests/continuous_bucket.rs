//! The continuous bucket (COMPAT.md section 4): python-redis-rate-limiter's scenario, frozen and
//! in real time; microsecond refill; parameter changes checked against a model; expiry; knobs;
//! bad input; many workers on one bucket.

mod common;

use std::time::Duration;

use common::{T0, assert_nothing_written, crowd, frozen_client, patient_client, redis};
use regulator::{ContinuousDecision, ContinuousParams, Error, Source, blocking};
use regulator_testing::RedisServer;

fn params(tokens_per_period: f64, period: Duration) -> ContinuousParams {
    ContinuousParams {
        tokens_per_period,
        period,
    }
}

fn per_second(tokens: f64) -> ContinuousParams {
    params(tokens, Duration::from_secs(1))
}

/// Freezes the clock `us` microseconds after `T0`.
fn at(server: &RedisServer, us: u64) {
    server.freeze_time(
        T0 + i64::try_from(us / 1_000_000).unwrap(),
        u32::try_from(us % 1_000_000).unwrap(),
    );
}

fn t0_us(us: u64) -> u64 {
    u64::try_from(T0).unwrap() * 1_000_000 + us
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn python_rate_limiter_scenario_frozen() {
    // test_client.py: 500 calls 10 ms apart at 10 tokens per 1 000 000 us, 1 token each.
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.continuous_bucket("myresource:someclient", per_second(10.0));
    let mut allowed = 0u32;
    for i in 0..500u64 {
        at(&server, i * 10_000);
        let d = bucket.allow(1.0).unwrap();
        assert_eq!(d.decision_time_us, t0_us(i * 10_000), "the frozen TIME");
        assert!(d.tokens >= 0.0 && d.tokens <= 10.0, "{d:?}");
        allowed += u32::from(d.allowed);
    }
    // A full bucket, then 10 a second for the 4.99 s between the first call and the last.
    let expected = (10.0 + 10.0 * 4.99_f64).floor();
    assert_eq!(f64::from(allowed), expected);
    assert_eq!((allowed, 500 - allowed), (59, 441));
}

#[test]
fn real_time_run_allows_capacity_plus_rate_times_elapsed() {
    let server = redis();
    let client = blocking::Client::connect(&server.url()).unwrap();
    let (capacity, rate) = (10.0, 10.0);
    let bucket = client.continuous_bucket("real", per_second(capacity));
    let mut allowed = 0u32;
    let mut first = None;
    let mut last = None;
    for _ in 0..500 {
        let d = bucket.allow(1.0).unwrap();
        allowed += u32::from(d.allowed);
        first.get_or_insert(d);
        last = Some(d);
        // test_client.py's pacing (10 ms there): calls spread over about a second.
        std::thread::sleep(Duration::from_millis(2));
    }
    let (first, last) = (first.unwrap(), last.unwrap());
    let elapsed = (last.decision_time_us - first.decision_time_us) as f64 / 1e6;
    let supply = capacity + rate * elapsed;
    let allowed = f64::from(allowed);
    assert!(
        close(allowed + last.tokens, supply),
        "every token supplied was taken or is left: {allowed} + {} vs {supply}",
        last.tokens
    );
    assert!(
        allowed <= supply + 1.0 && allowed >= supply - 1.0,
        "{allowed} vs {supply}"
    );
}

#[test]
fn fractional_tokens_refill_by_the_microsecond() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.continuous_bucket("fine", per_second(1.5));
    assert!(close(bucket.allow(0.75).unwrap().tokens, 0.75));
    let d = bucket.allow(0.75).unwrap();
    assert!(d.allowed);
    assert_eq!(d.tokens, 0.0);
    assert!(!bucket.allow(1e-6).unwrap().allowed);
    at(&server, 1);
    let d = bucket.allow(1e-6).unwrap();
    assert!(d.allowed, "1 us brings 1.5e-6 tokens");
    assert!(close(d.tokens, 0.5e-6), "{}", d.tokens);
    at(&server, 500_000);
    let d = bucket.allow(0.75).unwrap();
    assert!(!d.allowed, "one microsecond short");
    assert!(close(d.tokens, 0.749_999), "{}", d.tokens);
    at(&server, 500_001);
    assert!(bucket.allow(0.75).unwrap().allowed);
}

#[test]
fn a_request_above_capacity_is_denied_and_takes_nothing() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.continuous_bucket("big", per_second(5.0));
    let d = bucket.allow(5.5).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.tokens, 5.0);
    let exists: i64 = server.cmd(&["EXISTS", "throttle:big:continuous"]);
    assert_eq!(exists, 0, "a new bucket is full: nothing to store");
    assert!(bucket.allow(5.0).unwrap().allowed);
}

#[test]
fn a_lower_capacity_truncates_and_a_new_rate_applies_from_now_on() {
    let server = redis();
    let client = frozen_client(&server);
    let knobs = "throttle:resized:knobs";
    let bucket = client.continuous_bucket("resized", per_second(10.0));
    assert_eq!(bucket.allow(1.0).unwrap().tokens, 9.0);
    let _: () = server.cmd(&["HSET", knobs, "rps", "4"]);
    let d = bucket.allow(1.0).unwrap();
    assert_eq!((d.capacity, d.tokens, d.source), (4.0, 3.0, Source::Knobs));
    let _: () = server.cmd(&["HSET", knobs, "rps", "20"]);
    assert_eq!(
        bucket.allow(1.0).unwrap().tokens,
        2.0,
        "no jump to the new capacity"
    );
    at(&server, 100_000);
    assert!(
        close(bucket.allow(1.0).unwrap().tokens, 3.0),
        "20 a second since the last call"
    );
    // Slower from here: a denied call re-anchors the bucket at the new rate.
    let _: () = server.cmd(&["HSET", knobs, "rps", "1"]);
    at(&server, 200_000);
    let d = bucket.allow(5.0).unwrap();
    assert!(!d.allowed);
    assert!(
        close(d.tokens, 1.0),
        "truncated to the new capacity: {}",
        d.tokens
    );
    at(&server, 700_000);
    assert!(
        close(bucket.allow(0.1).unwrap().tokens, 0.9),
        "0.5 s at 1/s, capped at 1"
    );
}

/// The algorithm, written again in the test: the stored state and its arithmetic.
#[derive(Debug, Clone, Copy)]
struct Model {
    tokens: f64,
    updated: f64,
    capacity: f64,
    period: f64,
}

/// One call on the model: whether it is allowed, the tokens left, and the TTL in milliseconds
/// the key gets when the call writes the bucket.
fn model_step(
    state: &mut Option<Model>,
    now: f64,
    p: ContinuousParams,
    req: f64,
) -> (bool, f64, Option<i64>) {
    let (capacity, period) = (p.tokens_per_period, p.period.as_nanos() as f64 / 1000.0);
    let available = state.map_or(capacity, |s| {
        let refilled = s.tokens + s.capacity * (now - s.updated).max(0.0) / s.period;
        s.capacity.min(refilled).min(capacity)
    });
    let changed = state.is_some_and(|s| s.capacity != capacity || s.period != period);
    let allowed = available >= req;
    let tokens = if allowed { available - req } else { available };
    let mut ttl = None;
    if allowed || changed {
        *state = Some(Model {
            tokens,
            updated: now,
            capacity,
            period,
        });
        let to_full = (capacity - tokens) * period / capacity / 1000.0;
        ttl = Some((to_full.ceil() as i64).max(1));
    }
    (allowed, tokens, ttl)
}

#[test]
fn changing_parameters_between_calls_never_corrupts_the_bucket() {
    let server = redis();
    let client = frozen_client(&server);
    let key = "throttle:shifting:continuous";
    let choices = [
        per_second(10.0),
        per_second(3.0),
        params(0.5, Duration::from_millis(100)),
        params(40.0, Duration::from_secs(2)),
        params(7.25, Duration::from_micros(1_500)),
    ];
    let mut seed = 0x2545_f491_u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    let mut model = None;
    let mut now = 0u64;
    for step in 0..400 {
        now += next(300_000);
        at(&server, now);
        let p = choices[usize::try_from(next(5)).unwrap()];
        let req = [0.25, 1.0, 2.5, 6.0][usize::try_from(next(4)).unwrap()];
        let d = client.continuous_bucket("shifting", p).allow(req).unwrap();
        let (allowed, tokens, ttl) = model_step(&mut model, t0_us(now) as f64, p, req);
        assert_eq!(d.allowed, allowed, "step {step}: {d:?}");
        assert!(
            close(d.tokens, tokens),
            "step {step}: {} vs {tokens}",
            d.tokens
        );
        assert!(
            d.tokens >= 0.0 && d.tokens <= p.tokens_per_period,
            "step {step}: {d:?}"
        );
        if let Some(ttl) = ttl {
            // The key expires in real time while this clock stands still: check the TTL the
            // call set, then keep the key, as the model does.
            let pttl: i64 = server.cmd(&["PTTL", key]);
            let fresh = pttl <= ttl && pttl >= ttl - 100;
            assert!(
                fresh || (pttl == -2 && ttl <= 100),
                "step {step}: PTTL {pttl} vs {ttl} ms"
            );
            let kept: i64 = server.cmd(&["PERSIST", key]);
            if kept == 0 {
                // Gone in the meantime: a full bucket, as the TTL promised.
                assert!(ttl <= 100, "step {step}: a {ttl} ms key vanished");
                model = None;
            }
        }
    }
}

#[test]
fn the_key_lives_until_the_bucket_is_full_again() {
    let server = redis();
    let client = frozen_client(&server);
    let bucket = client.continuous_bucket("ttl", per_second(10.0));
    bucket.allow(4.0).unwrap();
    let ttl: i64 = server.cmd(&["PTTL", "throttle:ttl:continuous"]);
    assert!(
        (300..=400).contains(&ttl),
        "6 of 10 left: 0.4 s to full: {ttl}"
    );
    let slow = client.continuous_bucket("slow", params(2.0, Duration::from_secs(100)));
    slow.allow(2.0).unwrap();
    let ttl: i64 = server.cmd(&["PTTL", "throttle:slow:continuous"]);
    assert!((99_000..=100_000).contains(&ttl), "{ttl}");
}

#[test]
fn tiny_periods_expire_the_key_without_deleting_it_at_once() {
    // The original PEXPIREs 0 for periods under 200 us, which deletes the bucket at once and
    // lifts the limit. Keyspace events tell a set expiry ("expire", later "expired") from an
    // immediate deletion ("del") without racing the 1 ms TTL.
    let server = redis();
    let client = frozen_client(&server);
    let _: () = server.cmd(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]);
    let mut conn = server.connection();
    let mut events = conn.as_pubsub();
    events
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    events
        .subscribe("__keyspace@0__:throttle:tiny:continuous")
        .unwrap();
    let d = client
        .continuous_bucket("tiny", params(1.0, Duration::from_micros(100)))
        .allow(1.0)
        .unwrap();
    assert!(d.allowed);
    let mut seen = Vec::new();
    while seen.last().is_none_or(|e| e != "expired" && e != "del") {
        let msg = events.get_message().unwrap();
        seen.push(msg.get_payload::<String>().unwrap());
    }
    assert_eq!(seen, ["hset", "expire", "expired"]);
}

#[test]
fn the_decision_time_is_redis_time() {
    let server = redis();
    let client = frozen_client(&server);
    at(&server, 123_456);
    let d = client
        .continuous_bucket("when", per_second(1.0))
        .allow(1.0)
        .unwrap();
    assert_eq!(d.decision_time_us, t0_us(123_456));

    let live = blocking::Client::connect(&server.url()).unwrap();
    let time = || {
        let t: Vec<u64> = server.cmd(&["TIME"]);
        t[0] * 1_000_000 + t[1]
    };
    let before = time();
    let d = live
        .continuous_bucket("when-live", per_second(1.0))
        .allow(1.0)
        .unwrap();
    let after = time();
    assert!(
        (before..=after).contains(&d.decision_time_us),
        "{before} {d:?} {after}"
    );
}

#[test]
fn knobs_override_field_by_field() {
    let server = redis();
    let client = frozen_client(&server);
    // The caller's 10 tokens per 2 s is 5 a second.
    let defaults = params(10.0, Duration::from_secs(2));
    let cases: &[(&str, &[&str], f64, f64)] = &[
        ("none", &["burst", "1", "window", "5"], 10.0, 2.0),
        ("rps", &["rps", "3"], 6.0, 2.0),
        ("period", &["period", "0.5"], 2.5, 0.5),
        ("both", &["rps", "4", "period", "3"], 12.0, 3.0),
    ];
    for (name, fields, capacity, period) in cases {
        let key = format!("throttle:{name}:knobs");
        let mut args = vec!["HSET", key.as_str()];
        args.extend_from_slice(fields);
        let _: () = server.cmd(&args);
        let d = client
            .continuous_bucket(*name, defaults)
            .allow(1.0)
            .unwrap();
        let source = if *name == "none" {
            Source::Defaults
        } else {
            Source::Knobs
        };
        assert_eq!(d.source, source, "{name}");
        assert_eq!(
            (d.capacity, d.period.as_secs_f64()),
            (*capacity, *period),
            "{name}"
        );
        assert_eq!(d.tokens, capacity - 1.0, "{name}");
        let ttl: i64 = server.cmd(&["TTL", &key]);
        let kept = (604_790..=604_800).contains(&ttl);
        assert_eq!(kept, source == Source::Knobs, "{name}: knobs TTL {ttl}");
    }
}

#[test]
fn unusable_knobs_fall_back_field_by_field_and_are_never_written() {
    let server = redis();
    let client = frozen_client(&server);
    let defaults = params(10.0, Duration::from_secs(2));
    let cases: &[(&str, &[&str], f64)] = &[
        ("rps-abc", &["rps", "abc", "period", "1"], 5.0),
        ("rps-neg", &["rps", "-5", "period", "1"], 5.0),
        ("rps-nan", &["rps", "nan", "period", "1"], 5.0),
        ("rps-inf", &["rps", "inf", "period", "1"], 5.0),
        ("period-zero", &["rps", "3", "period", "0"], 6.0),
        ("period-neg", &["rps", "3", "period", "-1"], 6.0),
        ("period-abc", &["rps", "3", "period", "x"], 6.0),
        ("period-huge", &["rps", "3", "period", "1e308"], 6.0),
        ("overflow", &["rps", "1e300", "period", "1e300"], 10.0),
    ];
    for (name, fields, capacity) in cases {
        let key = format!("throttle:{name}:knobs");
        let mut args = vec!["HSET", key.as_str()];
        args.extend_from_slice(fields);
        let _: () = server.cmd(&args);
        let before: Vec<String> = server.cmd(&["HGETALL", &key]);
        let d = client
            .continuous_bucket(*name, defaults)
            .allow(1.0)
            .unwrap();
        assert_eq!(d.source, Source::InvalidKnobs, "{name}");
        assert!(d.allowed, "{name}");
        assert_eq!(d.capacity, *capacity, "{name}");
        let after: Vec<String> = server.cmd(&["HGETALL", &key]);
        assert_eq!(before, after, "{name}: the script never writes knobs");
        let ttl: i64 = server.cmd(&["PTTL", &key]);
        assert_eq!(ttl, -1, "{name}");
    }
}

#[test]
fn zero_rps_denies_and_minus_one_allows_without_touching_the_bucket() {
    let server = redis();
    let client = frozen_client(&server);
    let _: () = server.cmd(&["HSET", "throttle:stop:knobs", "rps", "0"]);
    let _: () = server.cmd(&["HSET", "throttle:open:knobs", "rps", "-1"]);
    for _ in 0..20 {
        let d = client
            .continuous_bucket("stop", per_second(10.0))
            .allow(1.0)
            .unwrap();
        assert!(!d.allowed);
        assert_eq!((d.tokens, d.capacity), (0.0, 0.0));
        let d = client
            .continuous_bucket("open", per_second(10.0))
            .allow(1.0)
            .unwrap();
        assert!(d.allowed);
        assert_eq!((d.tokens, d.capacity), (f64::INFINITY, f64::INFINITY));
    }
    let keys: Vec<String> = server.cmd(&["KEYS", "throttle:*:continuous"]);
    assert!(keys.is_empty(), "{keys:?}");
}

fn invalid(result: Result<ContinuousDecision, Error>) -> bool {
    result.is_err_and(|e| matches!(e, Error::InvalidArgument(_)))
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let server = redis();
    let client = frozen_client(&server);
    let bad_params = [
        per_second(0.0),
        per_second(-1.0),
        per_second(f64::NAN),
        per_second(f64::INFINITY),
        params(1.0, Duration::ZERO),
        params(1e308, Duration::from_nanos(1)),
    ];
    for p in bad_params {
        assert!(
            invalid(client.continuous_bucket("bad", p).allow(1.0)),
            "{p:?}"
        );
    }
    assert!(invalid(
        client.continuous_bucket("", per_second(1.0)).allow(1.0)
    ));
    let bucket = client.continuous_bucket("bad", per_second(1.0));
    for tokens in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(invalid(bucket.allow(tokens)), "{tokens}");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bucket = client.as_async().continuous_bucket("bad", per_second(0.0));
        assert!(invalid(bucket.allow(1.0).await));
        let bucket = client.as_async().continuous_bucket("bad", per_second(1.0));
        assert!(invalid(bucket.allow(f64::NAN).await));
        // A blocking call from inside a runtime is refused, not a panic.
        assert!(invalid(
            client.continuous_bucket("bad", per_second(1.0)).allow(1.0)
        ));
    });
    assert_nothing_written(&server);
}

/// Async tasks on a multi-threaded runtime and OS threads with the blocking client, all on one
/// bucket, in phases; between phases the test moves the frozen clock ten seconds. Each phase
/// asks for far more tokens than there are, so the count is exact: the full bucket, then ten
/// seconds of refill per phase. (A slow refill keeps the key's real-time TTL far longer than
/// the test.)
#[test]
fn many_tasks_and_threads_never_exceed_the_bucket() {
    const TASKS: usize = 16;
    const THREADS: usize = 4;
    const CALLS: usize = 20;
    const PHASES: u64 = 4;
    let capacity = 50.0;
    let server = redis();
    let client = frozen_client(&server);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let async_client = runtime.block_on(patient_client(&server.url(), true));
    let p = params(capacity, Duration::from_secs(100));
    for phase in 0..PHASES {
        at(&server, phase * 10_000_000);
        let allowed = crowd(
            &runtime,
            (TASKS, THREADS, CALLS),
            || {
                let bucket = async_client.continuous_bucket("crowd", p);
                move || {
                    let bucket = bucket.clone();
                    async move { bucket.allow(1.0).await.unwrap().allowed }
                }
            },
            || {
                let bucket = client.continuous_bucket("crowd", p);
                move || bucket.allow(1.0).unwrap().allowed
            },
        );
        let expected = if phase == 0 { 50 } else { 5 };
        assert_eq!(allowed, expected, "phase {phase}");
    }
}
