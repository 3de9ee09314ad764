//! The tick against an in-memory source and store: what is written, in which mode, and what
//! happens when a side fails.

use super::*;
use crate::config::parse;
use crate::fakes::{FakeSource, MemStore, series};
use crate::source::Series;

const PLAIN: &str = r"
throttles:
  - name: orders-db
    defaults: { rps: 100 }
    bounds: { min_rps: 10, max_rps: 200 }
    signal: { query: 'latency', target: 0.25 }
    control: { law: aimd, increase: 10, decrease: 0.5 }
    on_no_data: min
";

const TEMPLATE: &str = r"
throttles:
  - name: 'tenant-'
    defaults: { rps: 100 }
    bounds: { min_rps: 10, max_rps: 200 }
    signal: { query: 'load', target: 1, name_label: tenant }
    control: { law: aimd, increase: 10, decrease: 0.5 }
    on_no_data: defaults
";

fn state(yaml: &str) -> PolicyState {
    let config = parse(yaml, "test").expect("valid config");
    let throttle = config.throttles[0].clone();
    PolicyState::new(Arc::new(Policy {
        throttle,
        interval: Duration::from_secs(10),
    }))
}

const NOW: f64 = 1_000_000.0;

fn sample(value: f64, labels: &[(&str, &str)]) -> Series {
    series(value, NOW, labels)
}

struct World {
    source: FakeSource,
    store: MemStore,
    metrics: Metrics,
    names: crate::names::Names,
}

impl World {
    fn new() -> Self {
        Self {
            source: FakeSource::default(),
            store: MemStore::default(),
            metrics: Metrics::new(),
            names: crate::names::Names::default(),
        }
    }

    async fn tick(
        &self,
        state: &mut PolicyState,
        mode: Mode,
        tick: u64,
    ) -> regulator::Result<Report> {
        let mode = move || mode;
        let ctx = Ctx {
            source: &self.source,
            store: &self.store,
            metrics: &self.metrics,
            mode: &mode,
            names: &self.names,
            now: Duration::from_secs(10 * tick),
            wall: NOW,
        };
        state.reconcile(&ctx).await
    }
}

#[tokio::test]
async fn an_overloaded_signal_lowers_rps_and_explains_it() {
    let w = World::new();
    let mut s = state(PLAIN);
    w.source.set(Ok(vec![sample(0.5, &[])]));
    let report = w.tick(&mut s, Mode::Write, 1).await.unwrap();
    assert_eq!(report.changes, 1);
    assert_eq!(w.store.rps("orders-db"), Some(50.0));
    let writes = w.store.writes.lock().unwrap().clone();
    assert_eq!(writes[0].old, None, "nothing was stored before");
    assert_eq!(writes[0].signal, Some(0.5));
    assert_eq!(writes[0].law, "aimd");
    assert_eq!(writes[0].reason, "overloaded");
    let text = w.metrics.encode();
    assert!(
        text.contains(r#"regulator_knob{throttle="orders-db",knob="rps"} 50.0"#),
        "{text}"
    );
    assert!(text.contains(r#"regulator_decisions_total{policy="orders-db",direction="down"} 1"#));
    assert!(text.contains(r#"regulator_knob_writes_total{policy="orders-db"} 1"#));
}

const CONCURRENCY: &str = r"
throttles:
  - name: search-api
    knob: concurrency
    defaults: { concurrency: 20 }
    bounds: { min_concurrency: 2, max_concurrency: 50 }
    signal: { query: 'latency', target: 0.25 }
    control: { law: aimd, increase: 0.4, decrease: 0.7 }
";

#[tokio::test]
async fn a_concurrency_policy_writes_whole_holders_both_ways() {
    let w = World::new();
    let mut s = state(CONCURRENCY);
    w.source.set(Ok(vec![sample(0.5, &[])]));
    w.tick(&mut s, Mode::Write, 1).await.unwrap();
    // 20 × 0.7 = 14 exactly; then 14 × 0.7 = 9.8 rounds down to 9.
    assert_eq!(w.store.rps("search-api"), Some(14.0));
    w.tick(&mut s, Mode::Write, 2).await.unwrap();
    assert_eq!(w.store.rps("search-api"), Some(9.0));
    // +0.4 a tick still moves: a step up rounds up.
    w.source.set(Ok(vec![sample(0.1, &[])]));
    w.tick(&mut s, Mode::Write, 3).await.unwrap();
    assert_eq!(w.store.rps("search-api"), Some(10.0));
    let writes = w.store.writes.lock().unwrap().clone();
    assert!(
        writes
            .iter()
            .all(|c| c.knob == crate::config::Knob::Concurrency)
    );
    let text = w.metrics.encode();
    assert!(
        text.contains(r#"regulator_knob{throttle="search-api",knob="concurrency"} 10.0"#),
        "{text}"
    );
    assert!(!text.contains(r#"knob="rps""#), "{text}");
}

const CONCURRENCY_PREDICTIVE: &str = r"
throttles:
  - name: search-api
    knob: concurrency
    defaults: { concurrency: 20 }
    bounds: { min_concurrency: 2, max_concurrency: 50 }
    signal: { query: 'latency', target: 0.25 }
";

/// The store keeps a concurrency in whole holders, so the predictive law's cut of 20 to
/// 8.33 is stored as 8. The law must count that cut as written: a signal still creeping up
/// past 1.5 × the target a lag later is then a second cut in the same overload, escalated to
/// 0.7 × the knob (5.6, stored as 5). Were the rounded value taken for a failed write, the
/// law would forget its first cut and cut once more by its model only (to 7.9, stored as 7).
#[tokio::test]
async fn a_concurrency_rounded_to_whole_holders_counts_as_the_cut_the_law_made() {
    let w = World::new();
    let mut s = state(CONCURRENCY_PREDICTIVE);
    w.source.set(Ok(vec![sample(0.6, &[])]));
    w.tick(&mut s, Mode::Write, 1).await.unwrap();
    assert_eq!(
        w.store.rps("search-api"),
        Some(8.0),
        "20 / 2.4 = 8.33, rounded down"
    );
    w.source.set(Ok(vec![sample(0.63, &[])]));
    w.tick(&mut s, Mode::Write, 2).await.unwrap();
    assert_eq!(
        w.store.rps("search-api"),
        Some(5.0),
        "0.7 × 8 = 5.6, rounded down"
    );
}

#[tokio::test]
async fn a_knob_set_by_hand_is_where_control_continues() {
    let w = World::new();
    let mut s = state(PLAIN);
    w.store.knobs.lock().unwrap().insert(
        "orders-db".into(),
        StoredKnobs::Valid(Knobs::with_rps(40.0)),
    );
    w.source.set(Ok(vec![sample(0.1, &[])]));
    w.tick(&mut s, Mode::Write, 1).await.unwrap();
    assert_eq!(w.store.rps("orders-db"), Some(50.0), "40 + 10");
    let writes = w.store.writes.lock().unwrap().clone();
    assert_eq!(writes[0].old, Some(Knobs::with_rps(40.0)));
}

#[tokio::test]
async fn unchanged_knobs_are_not_rewritten() {
    let w = World::new();
    let mut s = state(PLAIN);
    w.store.knobs.lock().unwrap().insert(
        "orders-db".into(),
        StoredKnobs::Valid(Knobs::with_rps(100.0)),
    );
    w.source.set(Ok(vec![sample(0.25, &[])]));
    let report = w.tick(&mut s, Mode::Write, 1).await.unwrap();
    assert_eq!(report.changes, 0, "within the deadband");
    assert!(w.store.writes.lock().unwrap().is_empty());
}

#[tokio::test]
async fn shadow_and_dry_run_compute_but_never_write() {
    for mode in [Mode::Shadow, Mode::DryRun] {
        let w = World::new();
        let mut s = state(PLAIN);
        w.source.set(Ok(vec![sample(0.5, &[])]));
        let report = w.tick(&mut s, mode, 1).await.unwrap();
        assert_eq!(report.changes, 1);
        assert!(w.store.writes.lock().unwrap().is_empty(), "{mode:?}");
        assert!(
            w.metrics
                .encode()
                .contains(r#"regulator_knob{throttle="orders-db",knob="rps"} 50.0"#),
            "{mode:?} exposes what it would write"
        );
    }
}

#[tokio::test]
async fn no_data_applies_the_policy_and_counts_the_reason() {
    let w = World::new();
    let mut s = state(PLAIN);
    w.source.set(Err(NoData::Timeout));
    let report = w.tick(&mut s, Mode::Write, 1).await.unwrap();
    assert_eq!(report.no_data, 1);
    assert_eq!(w.store.rps("orders-db"), Some(10.0), "on_no_data: min");
    assert_eq!(w.store.writes.lock().unwrap()[0].reason, "no data: min");
    let text = w.metrics.encode();
    assert!(text.contains(r#"regulator_no_data_total{policy="orders-db",reason="timeout"} 1"#));
    assert!(
        text.contains(r#"regulator_signal{throttle="orders-db"} NaN"#),
        "{text}"
    );

    // A stale sample is no data too.
    let mut old = sample(0.1, &[]);
    old.timestamp = NOW - 60.0;
    w.source.set(Ok(vec![old]));
    w.tick(&mut s, Mode::Write, 2).await.unwrap();
    assert!(
        w.metrics
            .encode()
            .contains(r#"regulator_no_data_total{policy="orders-db",reason="stale"} 1"#)
    );
}

#[tokio::test]
async fn a_failed_read_writes_nothing_and_keeps_the_controller() {
    let w = World::new();
    let mut s = state(PLAIN);
    *w.store.down.lock().unwrap() = true;
    w.source.set(Ok(vec![sample(0.5, &[])]));
    let err = w.tick(&mut s, Mode::Write, 1).await.unwrap_err();
    assert_eq!(err.kind(), "timeout");
    assert!(w.store.writes.lock().unwrap().is_empty());
    assert_eq!(s.throttles().count(), 0, "no controller was stepped");
    *w.store.down.lock().unwrap() = false;
    w.tick(&mut s, Mode::Write, 2).await.unwrap();
    assert_eq!(w.store.rps("orders-db"), Some(50.0));
}

#[tokio::test]
async fn known_throttles_are_read_in_one_call_and_new_ones_in_another() {
    let w = World::new();
    let mut s = state(TEMPLATE);
    let tenants = |names: &[&str]| {
        names
            .iter()
            .map(|t| sample(2.0, &[("tenant", t)]))
            .collect::<Vec<_>>()
    };
    w.source.set(Ok(tenants(&["b", "a"])));
    w.tick(&mut s, Mode::Write, 1).await.unwrap();
    // Set by hand between ticks: read with the next query, and control continues from it.
    w.store
        .knobs
        .lock()
        .unwrap()
        .insert("tenant-b".into(), StoredKnobs::Valid(Knobs::with_rps(80.0)));
    w.source.set(Ok(tenants(&["c", "b", "a"])));
    w.tick(&mut s, Mode::Write, 2).await.unwrap();
    let reads = w.store.reads.lock().unwrap().clone();
    assert_eq!(
        reads,
        [
            vec!["tenant-a", "tenant-b"],
            vec!["tenant-a", "tenant-b"],
            vec!["tenant-c"],
        ],
        "tick 1 knows no throttle; tick 2 reads the known two early and the new one after"
    );
    assert_eq!(w.store.rps("tenant-a"), Some(25.0));
    assert_eq!(w.store.rps("tenant-b"), Some(40.0));
    assert_eq!(w.store.rps("tenant-c"), Some(50.0));
}

#[tokio::test]
async fn a_store_that_answers_short_fails_the_tick_and_writes_nothing() {
    let w = World::new();
    let mut s = state(TEMPLATE);
    w.source.set(Ok(vec![
        sample(2.0, &[("tenant", "a")]),
        sample(2.0, &[("tenant", "b")]),
    ]));
    *w.store.short_reads.lock().unwrap() = true;
    let err = w.tick(&mut s, Mode::Write, 1).await.unwrap_err();
    assert!(err.to_string().contains("answered 1 of 2"), "{err}");
    assert!(w.store.writes.lock().unwrap().is_empty());
    *w.store.short_reads.lock().unwrap() = false;
    w.tick(&mut s, Mode::Write, 2).await.unwrap();
    *w.store.short_reads.lock().unwrap() = true;
    let err = w.tick(&mut s, Mode::Write, 3).await.unwrap_err();
    assert!(err.to_string().contains("answered 1 of 2"), "{err}");
    assert_eq!(w.store.rps("tenant-a"), Some(50.0), "only tick 2 wrote");
}

#[tokio::test]
async fn a_quick_retry_after_a_failed_write_does_not_step_again() {
    let w = World::new();
    let mut s = state(PLAIN);
    w.source.set(Ok(vec![sample(0.5, &[])]));
    // Reads succeed, the write fails: a store that goes down between the two.
    w.store.knobs.lock().unwrap().insert(
        "orders-db".into(),
        StoredKnobs::Valid(Knobs::with_rps(100.0)),
    );
    let mode = || Mode::Write;
    let ctx = |now| Ctx {
        source: &w.source,
        store: &w.store,
        metrics: &w.metrics,
        mode: &mode,
        names: &w.names,
        now,
        wall: NOW,
    };
    *w.store.fail_writes.lock().unwrap() = true;
    assert!(s.reconcile(&ctx(Duration::from_secs(10))).await.is_err());
    *w.store.fail_writes.lock().unwrap() = false;
    // Retried 1 s later: the same 100 -> 50, not 100 -> 25.
    s.reconcile(&ctx(Duration::from_secs(11))).await.unwrap();
    assert_eq!(w.store.rps("orders-db"), Some(50.0));
    // A full interval later it steps again.
    s.reconcile(&ctx(Duration::from_secs(20))).await.unwrap();
    assert_eq!(w.store.rps("orders-db"), Some(25.0));
}

#[tokio::test]
async fn unusable_stored_knobs_are_replaced() {
    let w = World::new();
    let mut s = state(PLAIN);
    w.store.knobs.lock().unwrap().insert(
        "orders-db".into(),
        StoredKnobs::Invalid("rps is not a number".into()),
    );
    w.source.set(Ok(vec![sample(0.25, &[])]));
    w.tick(&mut s, Mode::Write, 1).await.unwrap();
    assert_eq!(
        w.store.rps("orders-db"),
        Some(100.0),
        "the policy's defaults"
    );
}

#[tokio::test]
async fn a_template_governs_one_throttle_per_series() {
    let w = World::new();
    let mut s = state(TEMPLATE);
    w.source.set(Ok(vec![
        sample(2.0, &[("tenant", "acme")]),
        sample(0.5, &[("tenant", "globex")]),
        sample(0.5, &[("tenant", "initech")]),
        sample(0.5, &[("tenant", "initech")]),
        sample(0.5, &[("job", "other")]),
    ]));
    let report = w.tick(&mut s, Mode::Write, 1).await.unwrap();
    assert_eq!(report.throttles, 3);
    assert_eq!(w.store.rps("tenant-acme"), Some(50.0));
    assert_eq!(w.store.rps("tenant-globex"), Some(110.0));
    assert_eq!(
        w.store.rps("tenant-initech"),
        Some(100.0),
        "ambiguous: defaults"
    );

    // A tenant that leaves the answer gets on_no_data, then is forgotten.
    w.source.set(Ok(vec![sample(0.5, &[("tenant", "globex")])]));
    for tick in 2..=u64::from(FORGET_AFTER) + 1 {
        let report = w.tick(&mut s, Mode::Write, tick).await.unwrap();
        assert_eq!(report.throttles, 3, "tick {tick}");
    }
    assert_eq!(
        w.store.rps("tenant-acme"),
        Some(100.0),
        "on_no_data: defaults"
    );
    let report = w.tick(&mut s, Mode::Write, 20).await.unwrap();
    assert_eq!(report.throttles, 1);
    assert_eq!(s.throttles().collect::<Vec<_>>(), ["tenant-globex"]);
    assert!(!w.metrics.encode().contains("tenant-acme"));
}

#[tokio::test]
async fn a_failed_template_query_reaches_every_known_throttle() {
    let w = World::new();
    let mut s = state(TEMPLATE);
    w.source.set(Ok(vec![
        sample(2.0, &[("tenant", "a")]),
        sample(2.0, &[("tenant", "b")]),
    ]));
    w.tick(&mut s, Mode::Write, 1).await.unwrap();
    assert_eq!(w.store.rps("tenant-a"), Some(50.0));
    w.source.set(Err(NoData::Http(502)));
    let report = w.tick(&mut s, Mode::Write, 2).await.unwrap();
    assert_eq!(report.no_data, 2);
    assert_eq!(w.store.rps("tenant-a"), Some(100.0));
    assert_eq!(w.store.rps("tenant-b"), Some(100.0));
    assert!(
        w.metrics
            .encode()
            .contains(r#"regulator_no_data_total{policy="tenant-",reason="http_error"} 2"#)
    );
}

#[tokio::test]
async fn a_template_name_governed_by_another_policy_is_refused_and_counted() {
    let w = World::new();
    // A plain policy is named like one of the template's throttles, and another template
    // produced a second one first.
    w.names.reserve(["tenant-acme"]);
    assert!(w.names.claim("tenant-globex", "other-template"));
    let mut s = state(TEMPLATE);
    w.source.set(Ok(vec![
        sample(2.0, &[("tenant", "acme")]),
        sample(2.0, &[("tenant", "globex")]),
        sample(2.0, &[("tenant", "initech")]),
    ]));
    let report = w.tick(&mut s, Mode::Write, 1).await.unwrap();
    assert_eq!(report.throttles, 1);
    assert_eq!(s.throttles().collect::<Vec<_>>(), ["tenant-initech"]);
    assert_eq!(w.store.rps("tenant-initech"), Some(50.0));
    assert_eq!(
        w.store.rps("tenant-acme"),
        None,
        "not written by the template"
    );
    assert_eq!(w.store.rps("tenant-globex"), None);
    let text = w.metrics.encode();
    assert!(
        text.contains(r#"regulator_template_refused_total{policy="tenant-",reason="collision"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_template_name_whose_bucket_is_another_throttles_key_is_refused_and_counted() {
    let w = World::new();
    let mut s = state(TEMPLATE);
    // `tenant-acme:knobs`'s bucket would be `tenant-acme`'s knobs hash.
    w.source.set(Ok(vec![
        sample(2.0, &[("tenant", "acme")]),
        sample(2.0, &[("tenant", "acme:knobs")]),
        sample(2.0, &[("tenant", "acme:leases")]),
    ]));
    let report = w.tick(&mut s, Mode::Write, 1).await.unwrap();
    assert_eq!(report.throttles, 1);
    assert_eq!(s.throttles().collect::<Vec<_>>(), ["tenant-acme"]);
    assert_eq!(w.store.rps("tenant-acme:knobs"), None);
    assert_eq!(w.names.owner("tenant-acme:knobs"), None, "not held");
    let text = w.metrics.encode();
    assert!(
        text.contains(r#"regulator_template_refused_total{policy="tenant-",reason="key"} 2"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_template_past_max_throttles_keeps_its_members_and_refuses_new_names() {
    let w = World::new();
    let mut s = state(&format!("{TEMPLATE}    max_throttles: 2\n"));
    w.source.set(Ok(vec![
        sample(2.0, &[("tenant", "b")]),
        sample(2.0, &[("tenant", "c")]),
        sample(2.0, &[("tenant", "d")]),
    ]));
    assert_eq!(w.tick(&mut s, Mode::Write, 1).await.unwrap().throttles, 2);
    assert_eq!(s.throttles().collect::<Vec<_>>(), ["tenant-b", "tenant-c"]);
    assert_eq!(w.store.rps("tenant-d"), None);
    assert_eq!(
        w.names.owner("tenant-d"),
        None,
        "a refused name is not held"
    );

    // A new name that sorts first does not push out a member.
    w.source.set(Ok(vec![
        sample(2.0, &[("tenant", "a")]),
        sample(2.0, &[("tenant", "b")]),
        sample(2.0, &[("tenant", "c")]),
        sample(2.0, &[("tenant", "d")]),
    ]));
    assert_eq!(w.tick(&mut s, Mode::Write, 2).await.unwrap().throttles, 2);
    assert_eq!(s.throttles().collect::<Vec<_>>(), ["tenant-b", "tenant-c"]);
    assert_eq!(w.store.rps("tenant-a"), None);
    let text = w.metrics.encode();
    assert!(
        text.contains(r#"regulator_template_refused_total{policy="tenant-",reason="cap"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(r#"regulator_knob_min{throttle="tenant-b",knob="rps"} 10.0"#),
        "{text}"
    );
}

#[tokio::test]
async fn a_tick_reports_its_time_by_phase() {
    let w = World::new();
    let mut s = state(PLAIN);
    w.source.set(Ok(vec![sample(0.5, &[])]));
    let started = std::time::Instant::now();
    let report = w.tick(&mut s, Mode::Write, 1).await.unwrap();
    let elapsed = started.elapsed();
    let p = report.phases;
    // Each phase is timed once, end to end: together they fit in the tick.
    assert!(
        p.query + p.read + p.compute + p.write + p.log <= elapsed,
        "{p:?} in {elapsed:?}"
    );
    for (phase, took) in [
        ("query", p.query),
        ("read", p.read),
        ("compute", p.compute),
        ("write", p.write),
    ] {
        assert!(took > Duration::ZERO, "{phase} was not timed: {p:?}");
    }
}

const HISTOGRAM: &str = r"
throttles:
  - name: svc
    defaults: { rps: 120 }
    bounds: { min_rps: 1, max_rps: 200 }
    signal: { query: 'histogram_quantile(0.99, sum by (le) (rate(h_bucket[10s])))', target: 1 }
";
const HISTOGRAM_COUNT: &str = "max(sum by (le) (rate(h_bucket[10s])))";

/// Four ticks of a worsening overload of `svc`, with `throughput` as the answer to its
/// derived throughput query: the `rps` stored after each, and the metrics' text.
async fn overload_of_a_histogram_policy(
    throughput: Result<Vec<Series>, NoData>,
) -> (Vec<f64>, String) {
    let w = World::new();
    let mut s = state(HISTOGRAM);
    w.source
        .by_query
        .lock()
        .unwrap()
        .insert(HISTOGRAM_COUNT.into(), throughput);
    let mut stored = Vec::new();
    for (tick, signal) in [1.3, 1.5, 1.7, 1.9].into_iter().enumerate() {
        w.source.set(Ok(vec![sample(signal, &[])]));
        w.tick(&mut s, Mode::Write, tick as u64 + 1).await.unwrap();
        stored.push(w.store.rps("svc").expect("written"));
    }
    (stored, w.metrics.encode())
}

#[tokio::test]
async fn the_derived_throughput_reaches_the_law_and_a_missing_one_is_counted() {
    let (seeing, text) = overload_of_a_histogram_policy(Ok(vec![sample(30.0, &[])])).await;
    assert!(!text.contains(r#"kind="throughput""#), "{text}");
    let (blind, text) = overload_of_a_histogram_policy(Err(NoData::Empty)).await;
    assert!(
        text.contains(r#"regulator_errors_total{kind="throughput"} 4"#),
        "{text}"
    );
    assert_eq!(seeing[0], blind[0], "the first cut is the limit's");
    assert!(
        seeing[3] < 30.0 && blind[3] > 30.0,
        "then cuts follow the rate served: {seeing:?} vs {blind:?}"
    );
    let (negative, text) = overload_of_a_histogram_policy(Ok(vec![sample(-3.0, &[])])).await;
    assert_eq!(negative, blind, "a negative rate is no rate");
    assert!(
        text.contains(r#"regulator_errors_total{kind="throughput"} 4"#),
        "{text}"
    );
}
