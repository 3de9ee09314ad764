//! The laws a simulation compares: the daemon's own [`Controller`] (the code `regulator run`
//! steps, not a copy) and baselines from other systems, each as it would steer `rps` from the
//! same signal. Baselines stay inside the policy's `rps` bounds and keep its burst and window.

use std::time::Duration;

use regulator::Knobs;
use regulator_daemon::config::Throttle;
use regulator_daemon::control::Controller;

/// Something that sets the knobs from the signal, once a tick.
pub trait Law {
    /// Its name in tables and plots.
    fn name(&self) -> String;
    /// The knobs before the first tick (the daemon writes nothing until it ticks).
    fn initial(&self) -> Knobs;
    /// One tick: `signal` is `None` when Prometheus had no usable answer; `served` is how
    /// many queries the fleet sent since the last tick (what a per-request law samples);
    /// `throughput` the rate the histogram counted over the signal's window, if it has one.
    fn tick(
        &mut self,
        current: Knobs,
        signal: Option<f64>,
        served: f64,
        throughput: Option<f64>,
        now: Duration,
    ) -> Knobs;
}

/// The daemon's controller for a policy.
pub struct Daemon {
    name: String,
    controller: Controller,
    /// Whether the policy has a throughput query (its own, or derived from its signal's).
    throughput: bool,
}

impl Daemon {
    /// The controller `regulator run` would build for `policy` at `interval`.
    #[must_use]
    pub fn new(name: impl Into<String>, policy: &Throttle, interval: Duration) -> Self {
        Self {
            name: name.into(),
            controller: Controller::new(policy, interval),
            throughput: policy.signal.throughput_query().is_some(),
        }
    }
}

impl Law for Daemon {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn initial(&self) -> Knobs {
        self.controller.initial()
    }

    fn tick(
        &mut self,
        current: Knobs,
        signal: Option<f64>,
        _served: f64,
        throughput: Option<f64>,
        now: Duration,
    ) -> Knobs {
        let throughput = throughput.filter(|_| self.throughput);
        match signal {
            Some(s) => {
                self.controller
                    .tick_served(current, s, throughput, now)
                    .knobs
            }
            None => self.controller.no_data(current).knobs,
        }
    }
}

/// Which baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// The same knobs for the whole run.
    Static(Knobs),
    /// Netflix concurrency-limits' `AIMDLimit` as published: `+1` for every request sampled
    /// while the limit is in use (at least half of it sent) and the signal is within the
    /// target, `×0.9` when it is over.
    NetflixAimd,
    /// Envoy's adaptive-concurrency gradient: `limit × clamp((minRTT + buffer) / sample,
    /// 0.5, 2) + √limit`, with minRTT the lowest signal seen and the buffer set so that
    /// `minRTT + buffer` is the target (Envoy's 25% of minRTT would ignore the SLO).
    EnvoyGradient,
    /// Aperture's AIMD load scheduler: over the target, `× clamp((signal / setpoint)^-1,
    /// 0.1, 1)`; under it, a multiplier growing by 0.025 a tick (reset by an overload).
    Aperture,
}

/// A baseline law.
pub struct Baseline {
    kind: Kind,
    defaults: Knobs,
    min: f64,
    max: f64,
    target: f64,
    min_signal: f64,
    ramp: f64,
    last: Duration,
}

impl Baseline {
    /// `kind`, inside `policy`'s `rps` bounds, with its burst and window.
    #[must_use]
    pub fn new(kind: Kind, policy: &Throttle) -> Self {
        Self {
            kind,
            defaults: policy.defaults.into(),
            min: policy.bounds.min_rps,
            max: policy.bounds.max_rps,
            target: policy.signal.target,
            min_signal: f64::INFINITY,
            ramp: 0.0,
            last: Duration::ZERO,
        }
    }
}

impl Law for Baseline {
    fn name(&self) -> String {
        match self.kind {
            Kind::Static(_) => "static (best)".into(),
            Kind::NetflixAimd => "netflix aimd".into(),
            Kind::EnvoyGradient => "envoy gradient".into(),
            Kind::Aperture => "aperture".into(),
        }
    }

    fn initial(&self) -> Knobs {
        match self.kind {
            Kind::Static(knobs) => knobs,
            _ => self.defaults,
        }
    }

    fn tick(
        &mut self,
        current: Knobs,
        signal: Option<f64>,
        served: f64,
        _throughput: Option<f64>,
        now: Duration,
    ) -> Knobs {
        let dt = now.saturating_sub(self.last).as_secs_f64();
        self.last = now;
        if let Kind::Static(knobs) = self.kind {
            return knobs;
        }
        let Some(s) = signal.filter(|s| s.is_finite() && *s >= 0.0) else {
            return current;
        };
        let rps = current.rps;
        let next = match self.kind {
            Kind::Static(knobs) => knobs.rps,
            Kind::NetflixAimd => {
                if s > self.target {
                    rps * 0.9
                } else if served >= 0.5 * rps * dt {
                    rps + served
                } else {
                    rps
                }
            }
            Kind::EnvoyGradient => {
                self.min_signal = self.min_signal.min(s);
                let setpoint = self.target.max(self.min_signal);
                let gradient = if s > 0.0 {
                    (setpoint / s).clamp(0.5, 2.0)
                } else {
                    2.0
                };
                let limit = rps * gradient;
                limit + limit.sqrt()
            }
            Kind::Aperture => {
                if s > self.target {
                    self.ramp = 0.0;
                    rps * (self.target / s).clamp(0.1, 1.0)
                } else {
                    self.ramp = (self.ramp + 0.025).min(2.0);
                    rps * (1.0 + self.ramp)
                }
            }
        };
        Knobs {
            rps: next.max(self.min).min(self.max),
            ..self.defaults
        }
    }
}
