//! Control: from a signal to bounded knobs. Pure: state, an observation and `now` in, knobs
//! out; no I/O, no clock.
//!
//! - [`laws`]: `aimd`, `pid`, `gradient`, each proposing a new `rps`.
//! - [`Controller`]: one throttle's state; applies what is common to every law after it (the
//!   deadband, the direction rules, the cooldown, `max_step`, the bounds) and moves `burst`.

pub mod laws;

use std::time::Duration;

use laws::PidState;

use super::config::{Bounds, Control, Direction, OnNoData, Throttle};
use crate::Knobs;

/// The signal as every law sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// Relative distance from the target, signed so that positive means healthy:
    /// `(target - signal) / |target|` when higher is worse (plain difference for target 0).
    pub headroom: f64,
    /// `target / signal` oriented so that above 1 means healthy (infinite when the signal is
    /// 0 or below while higher is worse).
    pub ratio: f64,
    /// Seconds since the previous tick.
    pub dt: f64,
}

impl Observation {
    /// Orients a raw signal against its target.
    #[must_use]
    pub fn new(signal: f64, target: f64, direction: Direction, dt: f64) -> Self {
        let rel = |diff: f64| {
            if target == 0.0 {
                diff
            } else {
                diff / target.abs()
            }
        };
        let (headroom, ratio) = match direction {
            Direction::HigherIsWorse => (
                rel(target - signal),
                if signal > 0.0 {
                    target / signal
                } else {
                    f64::INFINITY
                },
            ),
            Direction::LowerIsWorse => (
                rel(signal - target),
                if target > 0.0 {
                    (signal / target).max(0.0)
                } else {
                    f64::INFINITY
                },
            ),
        };
        Self {
            headroom,
            ratio,
            dt,
        }
    }
}

/// Which way a tick moved `rps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Raised.
    Up,
    /// Lowered.
    Down,
    /// Unchanged.
    Hold,
}

impl Change {
    /// Label for metrics and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Hold => "hold",
        }
    }
}

/// One tick's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// The knobs to write (equal to the current ones when nothing changes).
    pub knobs: Knobs,
    /// Which way `rps` moved.
    pub change: Change,
    /// Why, in a word or two, for the history entry and the log.
    pub reason: &'static str,
}

/// One throttle's controller.
#[derive(Debug, Clone)]
pub struct Controller {
    control: Control,
    bounds: Bounds,
    defaults: Knobs,
    target: f64,
    direction: Direction,
    max_step: f64,
    deadband: f64,
    cooldown: Duration,
    on_no_data: OnNoData,
    interval: Duration,
    pid: PidState,
    last_tick: Option<Duration>,
    last_decrease: Option<Duration>,
}

impl Controller {
    /// A controller for `policy`, ticking every `interval` by default.
    #[must_use]
    pub fn new(policy: &Throttle, interval: Duration) -> Self {
        Self {
            control: policy.control,
            bounds: policy.bounds,
            defaults: policy.defaults.into(),
            target: policy.signal.target,
            direction: policy.signal.direction,
            max_step: policy.max_step,
            deadband: policy.deadband,
            cooldown: policy.cooldown,
            on_no_data: policy.on_no_data,
            interval: policy.interval.unwrap_or(interval),
            pid: PidState::default(),
            last_tick: None,
            last_decrease: None,
        }
    }

    /// The knobs a throttle starts from, inside the bounds.
    #[must_use]
    pub fn initial(&self) -> Knobs {
        self.bounded(self.defaults.rps, self.defaults.burst)
    }

    /// One tick with a usable signal. `current` are the knobs in force (the initial ones if
    /// none are stored or they are unusable); `now` is time since any fixed origin.
    pub fn tick(&mut self, current: Knobs, signal: f64, now: Duration) -> Step {
        let dt = self
            .last_tick
            .map_or(self.interval, |last| now.saturating_sub(last))
            .as_secs_f64();
        self.last_tick = Some(now);
        let obs = Observation::new(signal, self.target, self.direction, dt);
        // A stored -1 ("unlimited", set by hand) continues from the policy's ceiling, the
        // nearest value it may write; any other stored value outside the bounds is brought
        // inside first, so every step is taken from a value the policy allows.
        let rps = if current.rps == -1.0 {
            self.bounds.max_rps
        } else if current.rps.is_finite() {
            within(current.rps, self.bounds.min_rps, self.bounds.max_rps)
        } else {
            current.rps
        };

        if obs.headroom.is_nan() || !rps.is_finite() {
            return Self::step(current, self.bounded(rps, current.burst), "unusable input");
        }
        let overloaded = obs.headroom < -self.deadband;
        let healthy = obs.headroom > self.deadband;
        if !overloaded && !healthy {
            return Self::step(current, self.bounded(rps, current.burst), "within deadband");
        }

        let proposed = match self.control {
            Control::Aimd { increase, decrease } => laws::aimd(
                rps,
                &obs,
                increase.unwrap_or(self.bounds.max_rps * 0.05),
                decrease,
            ),
            Control::Pid { kp, ki, kd } => {
                laws::pid(rps, &obs, &mut self.pid, (kp, ki, kd), self.max_step)
            }
            Control::Gradient {
                min_gradient,
                max_gradient,
                headroom,
                smoothing,
            } => laws::gradient(rps, &obs, (min_gradient, max_gradient), headroom, smoothing),
        };
        let mut reason = if overloaded { "overloaded" } else { "headroom" };
        let cooling = healthy && self.cooling(now);
        // Never up while overloaded, never down while healthy, whatever the law's state says.
        let mut new = if overloaded {
            proposed.min(rps)
        } else {
            proposed.max(rps)
        };
        if cooling && new > rps {
            new = rps;
            reason = "cooldown";
        }
        // Relative to rps, with a floor so that a throttle at 0 (min_rps: 0) can rise again.
        let step = (self.max_step * rps.max(self.bounds.max_rps * 0.01)).abs();
        new = within(new, rps - step, rps + step);
        if !new.is_finite() {
            new = rps;
            reason = "unusable input";
        }
        // The cooldown holds burst too: nothing grows until it has passed.
        let burst = if cooling {
            current.burst
        } else {
            self.next_burst(current.burst, overloaded)
        };
        let knobs = self.bounded(new, burst);
        if knobs.rps < rps {
            self.last_decrease = Some(now);
        }
        Self::step(current, knobs, reason)
    }

    /// A tick without a usable signal: `on_no_data` decides.
    #[must_use]
    pub fn no_data(&self, current: Knobs) -> Step {
        let knobs = match self.on_no_data {
            OnNoData::Hold if current.rps == -1.0 => {
                self.bounded(self.bounds.max_rps, current.burst)
            }
            OnNoData::Hold if current.rps.is_finite() => self.bounded(current.rps, current.burst),
            OnNoData::Hold | OnNoData::Defaults => self.initial(),
            OnNoData::Min => self.bounded(
                self.bounds.min_rps,
                self.bounds.min_burst.unwrap_or(self.defaults.burst),
            ),
        };
        let reason = match self.on_no_data {
            OnNoData::Hold => "no data: hold",
            OnNoData::Defaults => "no data: defaults",
            OnNoData::Min => "no data: min",
        };
        Self::step(current, knobs, reason)
    }

    fn cooling(&self, now: Duration) -> bool {
        self.last_decrease
            .is_some_and(|at| now.saturating_sub(at) < self.cooldown)
    }

    /// Burst shrinks toward its minimum while overloaded and returns toward its default when
    /// healthy, by at most `max_step` a tick; it moves only when the policy bounds it.
    fn next_burst(&self, burst: f64, overloaded: bool) -> f64 {
        let Some(min) = self.bounds.min_burst else {
            return self.defaults.burst;
        };
        let burst = if burst.is_finite() && burst > 0.0 {
            burst
        } else {
            self.defaults.burst
        };
        if overloaded {
            (burst * (1.0 - self.max_step)).max(min)
        } else {
            (burst * (1.0 + self.max_step)).min(self.defaults.burst.max(burst))
        }
    }

    /// Knobs inside every bound, with a capacity of at least one token.
    fn bounded(&self, rps: f64, burst: f64) -> Knobs {
        let b = self.bounds;
        let rps = if rps.is_finite() {
            rps
        } else {
            self.defaults.rps
        };
        let burst = if burst.is_finite() {
            burst
        } else {
            self.defaults.burst
        };
        let knobs = Knobs {
            rps: within(rps, b.min_rps, b.max_rps),
            burst: within(
                burst,
                b.min_burst.unwrap_or(self.defaults.burst),
                b.max_burst.unwrap_or(self.defaults.burst),
            ),
            window: within(
                self.defaults.window,
                b.min_window.unwrap_or(self.defaults.window),
                b.max_window.unwrap_or(self.defaults.window),
            ),
        };
        debug_assert!(
            knobs.capacity() >= 1.0,
            "validated bounds keep capacity >= 1"
        );
        knobs
    }

    fn step(current: Knobs, knobs: Knobs, reason: &'static str) -> Step {
        let change = if knobs.rps > current.rps {
            Change::Up
        } else if knobs.rps < current.rps {
            Change::Down
        } else {
            Change::Hold
        };
        Step {
            knobs,
            change,
            reason,
        }
    }
}

/// `v` inside `[lo, hi]`, preferring `hi` should `lo > hi`; unlike `f64::clamp` it never
/// panics, whatever a stored value or a bug feeds it (NaN stays NaN and is caught later).
fn within(v: f64, lo: f64, hi: f64) -> f64 {
    v.max(lo).min(hi)
}

#[cfg(test)]
mod tests;
