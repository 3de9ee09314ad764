//! The operations kit in `deploy/` speaks of the metrics the daemon really exports: a renamed
//! metric would otherwise leave an empty dashboard panel or an alert that can never fire.

use std::collections::BTreeSet;

/// Every sample name the daemon's registry can produce, from its `# TYPE` lines once every
/// family holds a series.
fn exported() -> BTreeSet<String> {
    let m = regulator_daemon::metrics::Metrics::new();
    let knobs = regulator::Knobs {
        rps: 1.0,
        burst: 1.0,
        window: 5.0,
    };
    m.throttle("t", regulator_daemon::config::Knob::Rate, knobs, Some(0.5));
    m.bounds("t", std::sync::Arc::new([("rps", 0.1, 10.0)]));
    m.refused("p", "cap", 1);
    m.policy("p", 1.0, 1);
    m.tick("p", "ok", 0.01);
    m.decisions("p", "up", 1);
    m.no_data("p", "empty", 1);
    m.writes("p", 1);
    m.error("lease");
    m.reload("ok");
    let text = m.encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                // The base name, as prose names the histogram.
                names.insert(name.to_owned());
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// The `regulator_*` names a file mentions.
fn mentioned(path: &str) -> BTreeSet<String> {
    // Paths from the repository's root.
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("regulator_") {
        let start = i + at;
        let word_start =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if word_start {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[test]
fn the_dashboard_and_alert_rules_name_only_metrics_the_daemon_exports() {
    let exported = exported();
    assert!(exported.contains("regulator_ticks_total"), "{exported:?}");
    assert!(
        exported.contains("regulator_tick_duration_seconds_bucket"),
        "{exported:?}"
    );
    for path in [
        "deploy/grafana/regulator.json",
        "deploy/prometheus/regulator-rules.yaml",
        "deploy/prometheus/regulator-rules.test.yaml",
    ] {
        let names = mentioned(path);
        assert!(!names.is_empty(), "{path} mentions no metric");
        let unknown: Vec<&String> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{path} names metrics the daemon does not export: {unknown:?}"
        );
    }
}

#[test]
fn the_readmes_and_benchmarks_name_only_metrics_the_daemon_exports() {
    let exported = exported();
    for path in ["README.md", "deploy/README.md", "BENCHMARKS.md"] {
        let names = mentioned(path);
        let unknown: Vec<&String> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{path} names metrics the daemon does not export: {unknown:?}"
        );
    }
    assert!(
        !mentioned("README.md").is_empty(),
        "the README names the metrics an operator watches"
    );
}
