//! The daemon's own metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! Per throttle: the knobs it computed (written by the leader, shadowed by the others) and
//! the last usable signal. Per policy: the target, ticks, decisions by direction, no-data
//! reasons, knob writes, throttles governed and the tick duration. Per process: errors by
//! kind, leader state and reloads by result.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    policy: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyOutcome {
    policy: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyDirection {
    policy: String,
    direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyReason {
    policy: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Every metric the daemon exports, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    per_throttle: throttles::Throttles,
    target: Family<PolicyLabels, FloatGauge>,
    throttles: Family<PolicyLabels, Gauge>,
    ticks: Family<PolicyOutcome, Counter>,
    decisions: Family<PolicyDirection, Counter>,
    no_data: Family<PolicyReason, Counter>,
    writes: Family<PolicyLabels, Counter>,
    errors: Family<KindLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    tick_seconds: Family<PolicyLabels, Histogram, fn() -> Histogram>,
    leader: Gauge,
    dry_run: Gauge,
    redis_up: Gauge,
    refused: Family<PolicyReason, Counter>,
}

fn tick_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `regulator_` prefix.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("regulator");
        let m = Self {
            per_throttle: throttles::Throttles::default(),
            target: Family::default(),
            throttles: Family::default(),
            ticks: Family::default(),
            decisions: Family::default(),
            no_data: Family::default(),
            writes: Family::default(),
            errors: Family::default(),
            reloads: Family::default(),
            tick_seconds: Family::new_with_constructor(tick_histogram),
            leader: Gauge::default(),
            dry_run: Gauge::default(),
            redis_up: Gauge::default(),
            refused: Family::default(),
            registry: Registry::default(),
        };
        m.register_throttles(&mut registry);
        m.register_process(&mut registry);
        // Both outcomes exist from the start at 0, so an alert on `increase()` sees the first
        // failed reload too (a series born at 1 has no increase).
        for result in ["ok", "error"] {
            let _ = m.reloads.get_or_create(&ResultLabels { result });
        }
        Self { registry, ..m }
    }

    /// Per throttle and per policy.
    fn register_throttles(&self, r: &mut Registry) {
        let m = self;
        // knob, signal, knob_min and knob_max.
        r.register_collector(Box::new(m.per_throttle.clone()));
        r.register("target", "The policy's setpoint", m.target.clone());
        r.register(
            "throttles",
            "Throttles governed by the policy",
            m.throttles.clone(),
        );
        r.register(
            "ticks",
            "Policy ticks by outcome (ok, error)",
            m.ticks.clone(),
        );
        r.register(
            "decisions",
            "Per-throttle decisions by direction of rps (up, down, hold)",
            m.decisions.clone(),
        );
        r.register(
            "no_data",
            "Throttle ticks without a usable signal, by reason",
            m.no_data.clone(),
        );
        r.register(
            "knob_writes",
            "Knob changes written to Redis",
            m.writes.clone(),
        );
        r.register("errors", "Errors by kind", m.errors.clone());
        r.register(
            "reloads",
            "Configuration reloads by result (ok, error)",
            m.reloads.clone(),
        );
        r.register_with_unit(
            "tick_duration",
            "Wall time of one policy tick: query, compute, write",
            prometheus_client::registry::Unit::Seconds,
            m.tick_seconds.clone(),
        );
    }

    /// Per process.
    fn register_process(&self, r: &mut Registry) {
        let m = self;
        r.register(
            "leader",
            "1 while this replica holds the lease and writes knobs, 0 in shadow",
            m.leader.clone(),
        );
        r.register(
            "dry_run",
            "1 when the daemon computes and logs without writing",
            m.dry_run.clone(),
        );
        r.register(
            "redis_up",
            "1 when Redis answered this replica's last call, 0 when it did not",
            m.redis_up.clone(),
        );
        r.register(
            "template_refused",
            "Names a template produced but does not govern, by reason (collision: another \
             policy governs it; cap: past max_throttles; key: its bucket would be another \
             throttle's key)",
            m.refused.clone(),
        );
    }

    /// The metrics in the OpenMetrics text format.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

mod record;
mod throttles;

fn policy_labels(policy: &str) -> PolicyLabels {
    PolicyLabels {
        policy: policy.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Knob;
    use regulator::Knobs;

    #[test]
    fn series_appear_and_are_forgotten() {
        let m = Metrics::new();
        m.throttle(
            "orders-db",
            Knob::Rate,
            Knobs {
                rps: 12.5,
                burst: 1.0,
                window: 5.0,
            },
            Some(0.3),
        );
        m.no_data("orders", "timeout", 2);
        m.reload("error");
        let text = m.encode();
        assert!(
            text.contains(r#"regulator_knob{throttle="orders-db",knob="rps"} 12.5"#),
            "{text}"
        );
        assert!(text.contains(r#"regulator_signal{throttle="orders-db"} 0.3"#));
        assert!(text.contains(r#"regulator_no_data_total{policy="orders",reason="timeout"} 2"#));
        assert!(text.contains(r#"regulator_reloads_total{result="error"} 1"#));
        assert!(text.ends_with("# EOF\n"));
        m.bounds("orders-db", std::sync::Arc::new([("rps", 1.0, 100.0)]));
        m.throttle(
            "pool",
            Knob::Concurrency,
            Knobs {
                rps: 4.0,
                burst: 1.0,
                window: 1.0,
            },
            None,
        );
        let text = m.encode();
        for line in [
            r#"regulator_knob_min{throttle="orders-db",knob="rps"} 1.0"#,
            r#"regulator_knob_max{throttle="orders-db",knob="rps"} 100.0"#,
            r#"regulator_knob{throttle="pool",knob="concurrency"} 4.0"#,
            r#"regulator_signal{throttle="pool"} NaN"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(!text.contains(r#"{throttle="pool",knob="rps"}"#));
        m.forget_throttle("orders-db");
        assert!(!m.encode().contains("orders-db"));
    }
}
