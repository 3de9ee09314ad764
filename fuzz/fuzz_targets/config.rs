//! Any text given as a configuration is either a valid configuration or a list of located
//! errors: never a panic or a hang.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| regulator_fuzz::config(data));
