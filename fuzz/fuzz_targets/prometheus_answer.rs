//! Whatever a Prometheus (or a proxy in front of it) answers, the daemon gets series or a
//! no-data reason, never a panic; and a value it would act on is always finite.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| regulator_fuzz::prometheus_answer(data));
