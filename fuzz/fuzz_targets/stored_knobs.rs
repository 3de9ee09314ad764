//! Knob fields typed by people (`redis-cli HSET throttle:x:knobs rps ...`) are read as the
//! Lua script reads them, and usable ones keep the bucket within [0, capacity], never NaN.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};

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

libfuzzer_sys::fuzz_target!(|i: Input<'_>| {
    regulator_fuzz::stored_knobs(&regulator_fuzz::KnobInput {
        fields: [i.rps, i.burst, i.window],
        bucket: [i.tokens, i.refreshed],
        now: i.now,
        usec: i.usec,
        requested: i.requested,
        concurrency: i.concurrency,
    });
});
