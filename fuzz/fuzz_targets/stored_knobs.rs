//! Knob fields typed by people (`redis-cli HSET throttle:x:knobs rps ...`) are read as the
//! Lua script reads them: usable knobs give a bucket that never holds more than its capacity,
//! never goes negative and never produces NaN; anything else is refused with a reason.
#![no_main]

use libfuzzer_sys::arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use regulator::StoredKnobs;
use regulator::client::model::{Bucket, consume};

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    rps: Option<&'a str>,
    burst: Option<&'a str>,
    window: Option<&'a str>,
    tokens: Option<&'a str>,
    refreshed: Option<&'a str>,
    now: u32,
    usec: u32,
    requested: u16,
    concurrency: Option<&'a str>,
}

fuzz_target!(|input: Input<'_>| {
    let _ = regulator::daemon::store::concurrency_knobs(input.concurrency);
    match StoredKnobs::from_fields(input.rps, input.burst, input.window) {
        StoredKnobs::Valid(knobs) => {
            assert!(knobs.validate().is_ok(), "valid knobs that do not validate: {knobs:?}");
            let number = |s: Option<&str>| s.and_then(regulator::client::lua_tonumber);
            let bucket = Bucket {
                tokens: number(input.tokens).filter(|t| t.is_finite() && *t >= 0.0),
                refreshed: number(input.refreshed).filter(|r| r.is_finite() && *r >= 0.0),
            };
            let now = 1_700_000_000 + i64::from(input.now % 1_000_000);
            let out = consume(
                bucket,
                knobs,
                now,
                input.usec % 1_000_000,
                f64::from(input.requested),
            );
            if knobs.rps > 0.0 {
                assert!(!out.tokens.is_nan(), "{knobs:?} {bucket:?} -> {out:?}");
                assert!(out.tokens >= 0.0, "{knobs:?} {bucket:?} -> {out:?}");
                if bucket.tokens.is_none_or(|t| t <= out.capacity) {
                    assert!(out.tokens <= out.capacity, "{knobs:?} {bucket:?} -> {out:?}");
                }
            }
        }
        StoredKnobs::Invalid(why) => assert!(!why.is_empty()),
        StoredKnobs::Absent => assert!(input.rps.is_none()),
    }
});
