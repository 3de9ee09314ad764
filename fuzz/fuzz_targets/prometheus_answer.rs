//! Whatever a Prometheus (or a proxy in front of it) answers, the daemon gets series or a
//! no-data reason, never a panic; and a value it would act on is always finite.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use regulator::daemon::source::{parse_answer, per_label, single};

fuzz_target!(|data: &[u8]| {
    let Ok(series) = parse_answer(data) else {
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
});
