//! The properties the fuzz targets check. Plain functions of plain inputs, so the stable test
//! suite can run the same checks on the recorded corpus.

use std::time::Duration;

use regulator::StoredKnobs;
use regulator::client::model::{Bucket, consume};
use regulator_daemon::source::{parse_answer, per_label, single};

/// Any text is a valid configuration or a list of located errors: never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match regulator_daemon::config::parse(text, "fuzz.yaml") {
        Ok(config) => {
            for t in &config.throttles {
                let _ = t.describe(config.interval);
                assert!(t.bounds.min_rps <= t.bounds.max_rps, "{t:?}");
            }
        }
        Err(errors) => {
            assert!(!errors.errors.is_empty(), "an error list with no error");
            let _ = errors.to_string();
        }
    }
}

/// Stored knob fields as people type them.
#[derive(Debug, Default)]
pub struct KnobInput<'a> {
    /// `rps`, `burst`, `window` fields.
    pub fields: [Option<&'a str>; 3],
    /// The bucket's `tokens` and `refreshed` fields.
    pub bucket: [Option<&'a str>; 2],
    /// Seconds past a fixed Unix time, and microseconds.
    pub now: u32,
    /// Microseconds of the second.
    pub usec: u32,
    /// Tokens asked for.
    pub requested: u16,
    /// A `concurrency` field.
    pub concurrency: Option<&'a str>,
}

/// Knobs are read as the script reads them; usable ones give a bucket that never holds more
/// than its capacity, never goes negative and never holds NaN.
pub fn stored_knobs(input: &KnobInput<'_>) {
    let _ = regulator_daemon::store::concurrency_knobs(input.concurrency);
    let [rps, burst, window] = input.fields;
    match StoredKnobs::from_fields(rps, burst, window) {
        StoredKnobs::Valid(knobs) => {
            assert!(
                knobs.validate().is_ok(),
                "valid knobs that do not validate: {knobs:?}"
            );
            let number = |s: Option<&str>| s.and_then(regulator::client::lua_tonumber);
            let bucket = Bucket {
                tokens: number(input.bucket[0]).filter(|t| t.is_finite() && *t >= 0.0),
                refreshed: number(input.bucket[1]).filter(|r| r.is_finite() && *r >= 0.0),
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
                    assert!(
                        out.tokens <= out.capacity,
                        "{knobs:?} {bucket:?} -> {out:?}"
                    );
                }
            }
        }
        StoredKnobs::Invalid(why) => assert!(!why.is_empty()),
        StoredKnobs::Absent => assert!(rps.is_none()),
    }
}

/// Any answer gives series or a no-data reason; a value the daemon would act on is finite.
pub fn prometheus_answer(data: &[u8]) {
    let Ok(series) = parse_answer(data, Some("tenant")) else {
        return;
    };
    let now = 1_700_000_000.0;
    let max_age = Duration::from_secs(60);
    if let Ok(v) = single(&series, now, max_age) {
        assert!(v.is_finite());
    }
    for (label, result) in per_label(&series, "tenant", now, max_age) {
        if let Ok(v) = result {
            assert!(v.is_finite(), "{label}: {v}");
        }
    }
}
