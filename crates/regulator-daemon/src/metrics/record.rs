//! Recording: what the daemon's tasks tell the metrics.

use super::{
    KindLabels, Metrics, PolicyDirection, PolicyOutcome, PolicyReason, ResultLabels, policy_labels,
};
use crate::config::Knob;
use regulator::Knobs;

impl Metrics {
    /// The knobs computed for `throttle` and the signal behind them.
    pub fn throttle(&self, throttle: &str, knob: Knob, knobs: Knobs, signal: Option<f64>) {
        self.per_throttle.set(throttle, knob, knobs, signal);
    }

    /// The bounds `throttle`'s knobs are kept in: `(knob, min, max)` triples, shared by the
    /// throttles of a policy.
    pub fn bounds(&self, throttle: &str, bounds: std::sync::Arc<[(&'static str, f64, f64)]>) {
        self.per_throttle.set_bounds(throttle, bounds);
    }

    /// Whether Redis answered the last call.
    pub fn redis_up(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }

    /// `n` names `policy` produced were refused, for `reason` ("collision", "cap").
    pub fn refused(&self, policy: &str, reason: &'static str, n: u64) {
        if n > 0 {
            self.refused
                .get_or_create(&PolicyReason {
                    policy: policy.to_owned(),
                    reason,
                })
                .inc_by(n);
        }
    }

    /// Drops a throttle's series (it left the configuration or its template's answer).
    pub fn forget_throttle(&self, throttle: &str) {
        self.per_throttle.forget(throttle);
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
