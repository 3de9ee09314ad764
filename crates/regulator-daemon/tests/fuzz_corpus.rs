//! The fuzz targets' checks on the stable toolchain: every seed, every input a fuzzer found
//! that once failed (`fuzz/regressions/<target>/`), and the knob values people type.

#[path = "../../../fuzz/src/checks.rs"]
mod checks;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut n = 0;
    for dir in ["seeds", "regressions"] {
        let path = format!("{}/../../fuzz/{dir}/{target}", env!("CARGO_MANIFEST_DIR"));
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|f| f == ".keep") {
                continue;
            }
            check(&std::fs::read(&path).unwrap());
            n += 1;
        }
    }
    n
}

#[test]
fn every_config_seed_and_regression_passes_the_fuzz_check() {
    assert!(replay("config", checks::config) >= 3);
}

#[test]
fn every_prometheus_answer_seed_and_regression_passes_the_fuzz_check() {
    assert!(replay("prometheus_answer", checks::prometheus_answer) >= 5);
}

#[test]
fn knob_values_people_type_pass_the_fuzz_check() {
    let values = [
        None,
        Some(""),
        Some("10"),
        Some(" 5 "),
        Some("0x10"),
        Some("-1"),
        Some("0"),
        Some("1e400"),
        Some("nan"),
        Some("inf"),
        Some("1e-300"),
        Some("0.5"),
        Some("abc"),
    ];
    for rps in values {
        for burst in values {
            for window in values {
                for tokens in [None, Some("3"), Some("1e308"), Some("-2")] {
                    checks::stored_knobs(&checks::KnobInput {
                        fields: [rps, burst, window],
                        bucket: [tokens, Some("1699999990")],
                        now: 30,
                        usec: 999_999,
                        requested: 1,
                        concurrency: rps,
                    });
                }
            }
        }
    }
}
