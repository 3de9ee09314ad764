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

use super::config::Knob;
use crate::Knobs;

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KnobLabels {
    throttle: String,
    knob: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThrottleLabels {
    throttle: String,
}

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
    knob: Family<KnobLabels, FloatGauge>,
    signal: Family<ThrottleLabels, FloatGauge>,
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
            knob: Family::default(),
            signal: Family::default(),
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
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "knob",
            "Knobs computed for a throttle at its last tick (written by the leader, shadowed by the others)",
            m.knob.clone(),
        );
        r.register(
            "signal",
            "Last usable signal value of a throttle (NaN while there is no data)",
            m.signal.clone(),
        );
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
        Self { registry, ..m }
    }

    /// The metrics in the OpenMetrics text format.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The knobs computed for `throttle` and the signal behind them.
    pub fn throttle(&self, throttle: &str, knob: Knob, knobs: Knobs, signal: Option<f64>) {
        let values = match knob {
            Knob::Rate => vec![
                ("rps", knobs.rps),
                ("burst", knobs.burst),
                ("window", knobs.window),
            ],
            Knob::Concurrency => vec![("concurrency", knobs.rps)],
        };
        for (knob, value) in values {
            self.knob
                .get_or_create(&KnobLabels {
                    throttle: throttle.to_owned(),
                    knob,
                })
                .set(value);
        }
        self.signal
            .get_or_create(&ThrottleLabels {
                throttle: throttle.to_owned(),
            })
            .set(signal.unwrap_or(f64::NAN));
    }

    /// Drops a throttle's series (it left the configuration or its template's answer).
    pub fn forget_throttle(&self, throttle: &str) {
        for knob in ["rps", "burst", "window", "concurrency"] {
            self.knob.remove(&KnobLabels {
                throttle: throttle.to_owned(),
                knob,
            });
        }
        self.signal.remove(&ThrottleLabels {
            throttle: throttle.to_owned(),
        });
    }

    /// A policy's target and throttle count.
    pub fn policy(&self, policy: &str, target: f64, throttles: usize) {
        let labels = policy_labels(policy);
        self.target.get_or_create(&labels).set(target);
        self.throttles
            .get_or_create(&labels)
            .set(i64::try_from(throttles).unwrap_or(i64::MAX));
    }

    /// Drops a policy's series (it left the configuration).
    pub fn forget_policy(&self, policy: &str) {
        let labels = policy_labels(policy);
        self.target.remove(&labels);
        self.throttles.remove(&labels);
    }

    /// One policy tick that ended `outcome` ("ok" or "error") after `seconds`.
    pub fn tick(&self, policy: &str, outcome: &'static str, seconds: f64) {
        self.ticks
            .get_or_create(&PolicyOutcome {
                policy: policy.to_owned(),
                outcome,
            })
            .inc();
        self.tick_seconds
            .get_or_create(&policy_labels(policy))
            .observe(seconds);
    }

    /// `n` throttles of `policy` moved `direction` ("up", "down", "hold").
    pub fn decisions(&self, policy: &str, direction: &'static str, n: u64) {
        if n > 0 {
            self.decisions
                .get_or_create(&PolicyDirection {
                    policy: policy.to_owned(),
                    direction,
                })
                .inc_by(n);
        }
    }

    /// `n` throttles of `policy` had no usable signal, for `reason`.
    pub fn no_data(&self, policy: &str, reason: &'static str, n: u64) {
        if n > 0 {
            self.no_data
                .get_or_create(&PolicyReason {
                    policy: policy.to_owned(),
                    reason,
                })
                .inc_by(n);
        }
    }

    /// `n` knob changes of `policy` were written.
    pub fn writes(&self, policy: &str, n: u64) {
        self.writes.get_or_create(&policy_labels(policy)).inc_by(n);
    }

    /// One error of `kind` (a Redis error kind, `invalid_knob`, ...).
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabels { kind }).inc();
    }

    /// One reload that ended `result` ("ok" or "error").
    pub fn reload(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabels { result }).inc();
    }

    /// Whether this replica writes.
    pub fn leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// Whether the daemon runs with `--dry-run`.
    pub fn dry_run(&self, dry_run: bool) {
        self.dry_run.set(i64::from(dry_run));
    }
}

fn policy_labels(policy: &str) -> PolicyLabels {
    PolicyLabels {
        policy: policy.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        m.forget_throttle("orders-db");
        assert!(!m.encode().contains("orders-db"));
    }
}
