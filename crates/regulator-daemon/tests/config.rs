//! The configuration: the shipped example, the design's core example, and broken files whose
//! every error must be reported with its line and path.

use std::process::Command;

use regulator_daemon::config::{self, Control, Direction, OnNoData};

fn errors(text: &str) -> Vec<(usize, String)> {
    let e = config::parse(text, "test.yaml").expect_err("must not parse");
    e.errors
        .iter()
        .map(|e| (e.location.expect("located").line, e.path.clone()))
        .collect()
}

#[test]
fn the_shipped_example_is_valid_and_means_what_it_says() {
    let c =
        config::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/regulator.yaml").as_ref())
            .unwrap();
    assert_eq!(c.throttles.len(), 2);
    let orders = &c.throttles[0];
    assert_eq!(orders.name, "orders-db");
    assert_eq!(orders.control, Control::default(), "the predictive law");
    assert_eq!(orders.control.law(), "predictive");
    assert_eq!(orders.max_step(), 0.6, "the predictive law's default step");
    assert_eq!(orders.on_no_data, OnNoData::Hold);
    assert_eq!(orders.signal.direction, Direction::HigherIsWorse);
    assert_eq!(c.interval, std::time::Duration::from_secs(10));
    assert_eq!(c.throttles[1].signal.name_label.as_deref(), Some("tenant"));
}

#[test]
fn the_design_core_example_parses_verbatim() {
    let text = r#"
redis: { url: "redis://127.0.0.1:6379/0" }      # rediss:// for TLS; cluster: true for Redis Cluster
prometheus: { url: "http://127.0.0.1:9090", timeout: 5s }
listen: "127.0.0.1:9477"                         # /metrics, /healthz, /readyz
interval: 10s                                    # default control period
throttles:
  - name: orders-db
    defaults: { rps: 200, burst: 1, window: 5 }  # start values and what workers use without knobs
    bounds: { min_rps: 10, max_rps: 2000 }       # the daemon never writes outside these
    signal:
      query: histogram_quantile(0.99, sum by (le) (rate(db_query_seconds_bucket{db="orders"}[1m])))
      target: 0.25                               # setpoint; above it means overloaded
    control: { law: aimd }                       # aimd | pid | gradient, each with its parameters
    on_no_data: hold                             # hold | defaults | min
"#;
    let c = config::parse(text, "design").unwrap();
    assert_eq!(c.throttles[0].bounds.max_rps, 2000.0);
    assert_eq!(c.prometheus.timeout, std::time::Duration::from_secs(5));
}

#[test]
fn every_error_is_reported_at_once_with_its_line() {
    let text = std::fs::read_to_string("tests/configs/broken.yaml").unwrap();
    let got = errors(&text);
    let want = [
        (1, "redis.url"),
        (2, "prometheus.timeout"),
        (3, "listen"),
        (5, "colour"),
        (8, "throttles[0].defaults.rps"),
        (9, "throttles[0].bounds.max_rps"),
        (11, "throttles[0].control.decrease"),
        (15, "throttles[1].signal.direction"),
        (16, "throttles[2].name"),
        (19, "throttles[2].signal.target"),
        (20, "throttles[2].control.smoothing"),
        (21, "throttles[2].speed"),
    ];
    let want: Vec<(usize, String)> = want.iter().map(|(l, p)| (*l, (*p).to_owned())).collect();
    assert_eq!(got, want);
}

#[test]
fn rules_between_fields_are_checked() {
    let text = r"
throttles:
  - name: a
    defaults: { rps: 1, window: 1 }
    bounds: { min_rps: 0, max_rps: 10 }
    signal: { query: up, target: 0 }
    control: { law: gradient, smoothing: 2 }
  - name: a
    defaults: { rps: 1, burst: 3 }
    bounds: { min_rps: 1, max_rps: 10, min_burst: 0.5, max_burst: 2 }
    signal: { query: ' ', target: 1 }
    max_step: 0
    deadband: 1
";
    let got = errors(text);
    let paths: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
    for want in [
        "throttles[0].bounds.min_rps", // 0.1 × 1 × 1 holds no token
        "throttles[0].signal.target",  // gradient divides by it
        "throttles[0].control.smoothing",
        "throttles[1].name",           // duplicate
        "throttles[1].defaults.burst", // outside its bounds
        "throttles[1].signal.query",
        "throttles[1].max_step",
        "throttles[1].deadband",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
}

#[test]
fn settings_the_daemon_cannot_honour_are_refused() {
    let text = r"
redis: { url: 'redis://127.0.0.1:6379/3', cluster: true, timeout: 1s }
leader: { lease: 5s }
throttles:
  - name: orders
    defaults: { rps: 1 }
    bounds: { min_rps: 1, max_rps: 10 }
    signal: { query: up, target: 1 }
  - name: orders
    defaults: { rps: 1 }
    bounds: { min_rps: 1, max_rps: 10 }
    signal: { query: up, target: 1, name_label: tenant }
";
    let got = errors(text);
    let paths: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
    for want in [
        "redis.url",         // a cluster has only database 0
        "leader.lease",      // its last tenth must cover a write (10 × timeout)
        "throttles[1].name", // a template may not share a plain policy's name
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
}

#[test]
fn a_name_whose_bucket_is_another_throttles_key_is_refused_at_its_line() {
    let text = r"
throttles:
  - name: orders
    defaults: { rps: 1 }
    bounds: { min_rps: 1, max_rps: 10 }
    signal: { query: up, target: 1 }
  - name: orders:knobs
    defaults: { rps: 1 }
    bounds: { min_rps: 1, max_rps: 10 }
    signal: { query: up, target: 1 }
  - name: 'tenant:'
    defaults: { rps: 1 }
    bounds: { min_rps: 1, max_rps: 10 }
    signal: { query: up, target: 1, name_label: tenant }
";
    let e = config::parse(text, "t.yaml").unwrap_err();
    let got = errors(text);
    assert_eq!(got, vec![(7, "throttles[1].name".to_owned())], "{e}");
    assert!(
        e.to_string().contains("knobs key of throttle \"orders\""),
        "{e}"
    );
}

#[test]
fn syntax_errors_give_a_location() {
    let e = config::parse("throttles: [ { name: a\nredis: 1\n", "bad.yaml").unwrap_err();
    assert_eq!(e.errors.len(), 1);
    let loc = e.errors[0].location.expect("located");
    assert!(loc.line >= 1, "{e}");
    assert!(e.to_string().starts_with("bad.yaml: 1 error"), "{e}");
}

#[test]
fn durations_need_units_and_unknown_laws_are_named() {
    let text = "interval: 10\nthrottles:\n  - name: a\n    defaults: { rps: 1 }\n    bounds: { min_rps: 1, max_rps: 2 }\n    signal: { query: up, target: 1 }\n    control: { law: magic }\n";
    let got = errors(text);
    assert_eq!(got[0], (1, "interval".to_owned()));
    assert_eq!(got[1].1, "throttles[0].control.law");
}

#[test]
fn check_subcommand_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_regulator");
    let ok = Command::new(bin)
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/regulator.yaml"),
        ])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(out.contains("orders-db: predictive every 10s"), "{out}");
    assert!(out.contains("ok, 2 throttle policies"), "{out}");

    let bad = Command::new(bin)
        .args(["check", "--config", "tests/configs/broken.yaml"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("12 errors") && err.contains("broken.yaml:9:29: throttles[0].bounds.max_rps"),
        "{err}"
    );

    let missing = Command::new(bin)
        .args(["check", "--config", "tests/configs/nope.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(64));
}

#[test]
fn a_concurrency_policy_names_its_own_bounds() {
    let text = r"
throttles:
  - name: search-api
    knob: concurrency
    defaults: { concurrency: 20 }
    bounds: { min_concurrency: 2, max_concurrency: 50 }
    signal: { query: up, target: 1 }
";
    let c = config::parse(text, "t.yaml").expect("valid");
    let t = &c.throttles[0];
    assert_eq!(t.knob, config::Knob::Concurrency);
    assert_eq!(
        (t.defaults.rps, t.defaults.burst, t.defaults.window),
        (20.0, 1.0, 1.0)
    );
    assert_eq!((t.bounds.min_rps, t.bounds.max_rps), (2.0, 50.0));
}

#[test]
fn a_concurrency_policy_refuses_rate_keys_and_fractions() {
    let text = r"
throttles:
  - name: search-api
    knob: concurrency
    defaults: { concurrency: 2.5, burst: 2 }
    bounds: { min_concurrency: 0, max_concurrency: 50, min_window: 1 }
    signal: { query: up, target: 1 }
  - name: orders
    defaults: { rps: 5, concurrency: 3 }
    bounds: { min_rps: 1, max_rps: 10 }
    signal: { query: up, target: 1 }
";
    let got = errors(text);
    let paths: Vec<&str> = got.iter().map(|(_, p)| p.as_str()).collect();
    for want in [
        "throttles[0].defaults.concurrency",   // not a whole number
        "throttles[0].defaults.burst",         // a rate key
        "throttles[0].bounds.min_concurrency", // below 1
        "throttles[0].bounds.min_window",      // a rate key
        "throttles[1].defaults.concurrency",   // a concurrency key in a rate policy
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    // `errors` has already required a line:column for each.
}

#[test]
fn the_shipped_concurrency_example_is_valid_when_uncommented() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/regulator.yaml"
    ))
    .unwrap();
    let start = text.find("  # - name: search-api").expect("the example");
    let example: String = text[start..]
        .lines()
        .map(|l| l.replacen("  # ", "  ", 1))
        .collect::<Vec<_>>()
        .join("\n");
    let c = config::parse(&format!("throttles:\n{example}\n"), "example").expect("valid");
    assert_eq!(c.throttles[0].knob, config::Knob::Concurrency);
    assert_eq!(c.throttles[0].bounds.max_rps, 200.0);
}

#[test]
fn durations_out_of_range_are_errors_with_their_line_and_check_does_not_panic() {
    let text = std::fs::read_to_string("tests/configs/huge-durations.yaml").unwrap();
    let got = errors(&text);
    let want = [
        (1, "redis.timeout"),
        (1, "redis.knobs_ttl"),
        (2, "prometheus.timeout"),
        (3, "interval"),
        (4, "leader.lease"),
        (10, "throttles[0].control.lag"),
        (11, "throttles[0].interval"),
        (12, "throttles[0].cooldown"),
    ];
    let want: Vec<(usize, String)> = want.iter().map(|(l, p)| (*l, (*p).to_owned())).collect();
    assert_eq!(got, want);

    let out = Command::new(env!("CARGO_BIN_EXE_regulator"))
        .args(["check", "--config", "tests/configs/huge-durations.yaml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains("huge-durations.yaml:1:")
            && err.contains("redis.timeout: ")
            && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn every_mistake_inside_one_throttle_is_reported() {
    let text = r"
throttles:
  - name: a
    defaults: { rps: 50 }
    bounds: { min_rps: 100, max_rps: 10, min_burst: lots }
    signal: { query: up, target: 1, direction: up }
    interval: 10
    on_no_data: maybe
    max_step: big
    colour: red
";
    let got = errors(text);
    let want = [
        (4, "throttles[0].defaults.rps"),
        (5, "throttles[0].bounds.max_rps"),
        (5, "throttles[0].bounds.min_burst"),
        (6, "throttles[0].signal.direction"),
        (7, "throttles[0].interval"),
        (8, "throttles[0].on_no_data"),
        (9, "throttles[0].max_step"),
        (10, "throttles[0].colour"),
    ];
    let want: Vec<(usize, String)> = want.iter().map(|(l, p)| (*l, (*p).to_owned())).collect();
    assert_eq!(got, want);
}

#[test]
fn max_throttles_caps_templates_only_and_within_range() {
    let t = |extra: &str| {
        format!(
            "throttles:\n  - name: t\n    defaults: {{ rps: 1 }}\n    bounds: {{ min_rps: 1, max_rps: 2 }}\n    signal: {{ query: up, target: 1{extra} }}\n    max_throttles: 5\n"
        )
    };
    assert_eq!(
        errors(&t("")),
        [(6, "throttles[0].max_throttles".to_owned())]
    );
    assert!(config::parse(&t(", name_label: tenant"), "test.yaml").is_ok());
    let zero = t(", name_label: tenant").replace("max_throttles: 5", "max_throttles: 0");
    assert_eq!(
        errors(&zero),
        [(6, "throttles[0].max_throttles".to_owned())]
    );
}

#[test]
fn bearer_and_basic_auth_together_are_refused() {
    let text = "prometheus:\n  url: http://p:9090\n  bearer_token_env: TOKEN\n  basic_auth: { username: u, password_env: P }\n";
    assert_eq!(errors(text), [(4, "prometheus.basic_auth".to_owned())]);
    let both =
        "prometheus:\n  url: http://p:9090\n  bearer_token_env: TOKEN\n  bearer_token_file: /t\n";
    assert_eq!(
        errors(both),
        [(3, "prometheus.bearer_token_env".to_owned())]
    );
}

#[test]
fn redis_secrets_have_one_source_and_tls_settings_need_tls() {
    let both = "redis:\n  url: redis://h:6379/0\n  password_file: /p\n  password_env: P\n";
    assert_eq!(errors(both), [(4, "redis.password_env".to_owned())]);
    let url_and_file = "redis:\n  url: redis://u:pw@h:6379/0\n  password_file: /p\n";
    assert_eq!(errors(url_and_file), [(2, "redis.url".to_owned())]);
    let tls_on_plain = "redis:\n  url: redis://h:6379/0\n  tls: { ca_file: /ca }\n";
    assert_eq!(errors(tls_on_plain), [(3, "redis.tls".to_owned())]);
    let cert_alone = "redis:\n  url: rediss://h:6379/0\n  tls: { cert_file: /c }\n";
    assert_eq!(errors(cert_alone), [(3, "redis.tls".to_owned())]);
    let fine = "redis:\n  url: rediss://regulator@h:6379/0\n  password_env: P\n  \
                tls: { ca_file: /ca, cert_file: /c, key_file: /k }\n";
    let c = config::parse(fine, "test.yaml").expect("valid");
    let tls = c.redis.tls.expect("tls");
    assert_eq!(tls.key_file.as_deref(), Some(std::path::Path::new("/k")));
    assert_eq!(c.redis.password_env.as_deref(), Some("P"));
}

#[test]
fn bounds_that_would_let_limitlion_delete_its_bucket_are_refused_at_their_line() {
    let policy = |bounds: &str, extra: &str| {
        format!(
            "throttles:\n  - name: t\n    defaults: {{ rps: 10, burst: 1, window: 1 }}\n    \
             bounds: {{ min_rps: 5, max_rps: 20{bounds} }}\n    \
             signal: {{ query: up, target: 1 }}\n{extra}"
        )
    };
    // 1 x 0.4 = 0.4: limitlion's EXPIRE of floor(0.8) = 0 would delete the bucket.
    assert_eq!(
        errors(&policy(", min_window: 0.4", "")),
        vec![(4, "throttles[0].bounds.min_window".to_owned())]
    );
    assert_eq!(
        errors(&policy(", min_burst: 0.25", "")),
        vec![(4, "throttles[0].bounds.min_burst".to_owned())]
    );
    let small_defaults = policy("", "").replace("window: 1 }", "window: 0.25 }");
    assert_eq!(
        errors(&small_defaults),
        vec![(3, "throttles[0].defaults.window".to_owned())]
    );
    // 0.5 is the least limitlion keeps; a fleet without limitlion may go lower.
    assert!(config::parse(&policy(", min_window: 0.5", ""), "t.yaml").is_ok());
    let without = policy(", min_window: 0.1", "    limitlion: false\n");
    let c = config::parse(&without, "t.yaml").expect("no limitlion, no rule");
    assert!(!c.throttles[0].limitlion);
}

#[test]
fn the_throughput_is_derived_from_a_histogram_quantile_signal_only() {
    let derived = config::derived_throughput;
    assert_eq!(
        derived("histogram_quantile(0.99, sum by (le) (rate(q_seconds_bucket[10s])))").as_deref(),
        Some("max(sum by (le) (rate(q_seconds_bucket[10s])))")
    );
    assert_eq!(
        derived(" histogram_quantile ( 0.9, sum(rate(q_bucket{db=\"a,b)\"}[1m])) by (le) ) ")
            .as_deref(),
        Some("max(sum(rate(q_bucket{db=\"a,b)\"}[1m])) by (le))"),
        "a comma or parenthesis inside quotes is not the call's"
    );
    for not in [
        "up",
        "histogram_quantile(0.99, x) / 2",
        "histogram_quantile(0.99, x) + histogram_quantile(0.5, y)",
        "histogram_quantile(0.99)",
        "histogram_quantile(0.99, )",
        "histogram_quantile(0.99, x, y)",
        "max(histogram_quantile(0.99, x))",
        "histogram_quantile(0.99, x{a=\"unclosed)",
    ] {
        assert_eq!(derived(not), None, "{not}");
    }
}

#[test]
fn a_throughput_query_is_checked_and_used_by_plain_policies_only() {
    let t = |signal: &str| {
        format!(
            "throttles:\n  - name: t\n    defaults: {{ rps: 1 }}\n    bounds: {{ min_rps: 1, max_rps: 2 }}\n    signal: {{ target: 1, {signal} }}\n"
        )
    };
    let histogram = "query: 'histogram_quantile(0.99, sum by (le) (rate(h_bucket[1m])))'";
    let c = config::parse(&t(histogram), "test.yaml").unwrap();
    assert_eq!(
        c.throttles[0].signal.throughput_query().as_deref(),
        Some("max(sum by (le) (rate(h_bucket[1m])))")
    );
    let own = format!("{histogram}, throughput: 'sum(rate(h_count[1m]))'");
    let c = config::parse(&t(&own), "test.yaml").unwrap();
    assert_eq!(
        c.throttles[0].signal.throughput_query().as_deref(),
        Some("sum(rate(h_count[1m]))"),
        "a configured query wins"
    );
    let template = format!("{histogram}, name_label: tenant");
    let c = config::parse(&t(&template), "test.yaml").unwrap();
    assert_eq!(c.throttles[0].signal.throughput_query(), None);
    assert_eq!(
        errors(&t(&format!("{own}, name_label: tenant"))),
        [(5, "throttles[0].signal.throughput".to_owned())]
    );
    assert_eq!(
        errors(&t("query: up, throughput: ' '")),
        [(5, "throttles[0].signal.throughput".to_owned())]
    );
}
