//! Any text given as a configuration is either a valid configuration or a list of located
//! errors: never a panic, a hang or an error without a place to look.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match regulator::daemon::config::parse(text, "fuzz.yaml") {
        Ok(config) => {
            // What loads must be what validation accepts: parsing it again is a no-op.
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
});
