//! Control: from a signal to bounded knobs. Pure: state, an observation and `now` in, knobs
//! out; no I/O, no clock.
//!
//! - [`laws`]: `predictive` (the default), `aimd`, `pid`, `gradient`, each proposing a new
//!   `rps`.
//! - `predictive`: that law's memory (the knobs it pairs the signal with, the signal's noise,
//!   the floor it learns, its last cut).
//! - [`Controller`]: one throttle's state; applies what is common to every law after it (the
//!   deadband, the direction rules, the cooldown, `max_step`, the bounds) and moves `burst`
//!   and `window`.

pub mod laws;
mod predictive;

use std::time::Duration;

use laws::PidState;
use predictive::PredictiveState;
pub use predictive::{FIRST_FLOOR, FLOOR_RANGE};

use super::config::{Bounds, Control, Direction, LIMITLION_MIN_SPAN, OnNoData, Throttle};
use regulator::Knobs;

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

/// One throttle's controller. Clones share the policy's settings, and a clone of a fresh
/// controller is a fresh controller: a template makes its throttles' controllers that way,
/// so 100,000 throttles hold one copy of the settings.
#[derive(Debug, Clone)]
pub struct Controller {
    settings: std::sync::Arc<Settings>,
    pid: PidState,
    last_tick: Option<Duration>,
    last_decrease: Option<Duration>,
    /// The predictive law's memory; `None` for the other laws.
    predictive: Option<Box<PredictiveState>>,
}

/// What a controller takes from its policy, the same for all of a template's throttles.
#[derive(Debug)]
struct Settings {
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
    /// limitlion workers may share the buckets: `burst × window` stays at 0.5 or more.
    limitlion: bool,
}

/// How much burst and window grow back each healthy tick.
pub const SHAPE_RECOVERY: f64 = 0.1;

impl Controller {
    /// A controller for `policy`, ticking every `interval` by default.
    #[must_use]
    pub fn new(policy: &Throttle, interval: Duration) -> Self {
        Self {
            settings: std::sync::Arc::new(Settings {
                control: policy.control,
                bounds: policy.bounds,
                defaults: policy.defaults.into(),
                target: policy.signal.target,
                direction: policy.signal.direction,
                max_step: policy.max_step(),
                deadband: policy.deadband,
                cooldown: policy.cooldown,
                on_no_data: policy.on_no_data,
                interval: policy.interval.unwrap_or(interval),
                limitlion: policy.limitlion,
            }),
            pid: PidState::default(),
            last_tick: None,
            last_decrease: None,
            predictive: match policy.control {
                Control::Predictive {
                    margin,
                    gain,
                    floor,
                    lag,
                } => Some(Box::new(PredictiveState::new(
                    (margin, gain, floor),
                    lag.unwrap_or(policy.interval.unwrap_or(interval)),
                    range_window(&policy.signal.query),
                ))),
                _ => None,
            },
        }
    }

    /// The signal the policy aims at: its target, or for the predictive law `margin` under it
    /// (wider when the signal is noisy), as of the last tick; logged with each knob change so
    /// that "above aim" can be read.
    #[must_use]
    pub fn aim(&self) -> f64 {
        let margin = self.predictive.as_ref().map_or(0.0, |p| p.margin());
        match self.settings.direction {
            Direction::HigherIsWorse => self.settings.target * (1.0 - margin),
            Direction::LowerIsWorse => self.settings.target / (1.0 - margin),
        }
    }

    /// The knobs a throttle starts from, inside the bounds.
    #[must_use]
    pub fn initial(&self) -> Knobs {
        self.bounded(
            self.settings.defaults.rps,
            self.settings.defaults.burst,
            self.settings.defaults.window,
        )
    }

    /// The last tick's knobs are stored with `rps` (a concurrency in whole holders): the
    /// predictive law then counts its proposal as written when the store shows that value.
    pub fn stored_as(&mut self, rps: f64) {
        if let Some(p) = &mut self.predictive {
            p.stored_as(rps);
        }
    }

    /// One tick with a usable signal. `current` are the knobs in force (the initial ones if
    /// none are stored or they are unusable); `now` is time since any fixed origin.
    pub fn tick(&mut self, current: Knobs, signal: f64, now: Duration) -> Step {
        self.tick_served(current, signal, None, now)
    }

    /// [`Controller::tick`] knowing the rate the protected system served over the signal's
    /// window (`signal.throughput`), when there is one: the predictive law cuts from it when
    /// the limit was well above it, so the cut binds at once.
    pub fn tick_served(
        &mut self,
        current: Knobs,
        signal: f64,
        served: Option<f64>,
        now: Duration,
    ) -> Step {
        let dt = self
            .last_tick
            .map_or(self.settings.interval, |last| now.saturating_sub(last))
            .as_secs_f64();
        self.last_tick = Some(now);
        if let Some(p) = &mut self.predictive {
            p.confirm(current.rps);
            let ratio =
                Observation::new(signal, self.settings.target, self.settings.direction, dt).ratio;
            p.see(signal, 1.0 / ratio, current.rps, now);
            p.served(served, current.rps, now);
        }
        let obs = Observation::new(signal, self.aim(), self.settings.direction, dt);
        let past_target =
            Observation::new(signal, self.settings.target, self.settings.direction, dt).headroom
                < 0.0;
        // A stored -1 ("unlimited", set by hand) continues from the policy's ceiling, the
        // nearest value it may write; any other stored value outside the bounds is brought
        // inside first, so every step is taken from a value the policy allows.
        let rps = if current.rps == -1.0 {
            self.settings.bounds.max_rps
        } else if current.rps.is_finite() {
            within(
                current.rps,
                self.settings.bounds.min_rps,
                self.settings.bounds.max_rps,
            )
        } else {
            current.rps
        };

        // A signal so far from the target that its headroom overflows is as unusable as NaN.
        if !obs.headroom.is_finite() || !rps.is_finite() {
            return self.hold(current, rps, "unusable input");
        }
        // A value set by hand (or by `on_no_data`) is in force from now on.
        if let Some(p) = &mut self.predictive {
            p.record(now, rps);
        }
        let overloaded = obs.headroom < -self.settings.deadband;
        let healthy = obs.headroom > self.settings.deadband;
        let before = self.predictive.as_ref().map(|p| p.before_proposal());
        if !overloaded && !healthy {
            return self.within_deadband(current, rps, obs.ratio, now);
        }

        let proposed = self.propose(rps, &obs, now);
        if !proposed.is_finite() {
            // `min`/`max` below would turn a NaN into `rps` or a bound: refuse it here.
            return self.hold(current, rps, "unusable input");
        }
        let mut reason = match (overloaded, past_target) {
            (true, true) => "overloaded",
            (true, false) => "above aim",
            (false, _) => "headroom",
        };
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
        let step = (self.settings.max_step * rps.max(self.settings.bounds.max_rps * 0.01)).abs();
        new = within(new, rps - step, rps + step);
        if !new.is_finite() {
            new = rps;
            reason = "unusable input";
        }
        // Burst and window shrink only past the target and grow back only with headroom; the
        // cooldown holds them too: nothing grows until it has passed.
        let (burst, window) = if cooling || (overloaded && !past_target) {
            (current.burst, current.window)
        } else {
            (
                self.next_shape(
                    current.burst,
                    self.settings.defaults.burst,
                    self.settings.bounds.min_burst,
                    past_target,
                ),
                self.next_shape(
                    current.window,
                    self.settings.defaults.window,
                    self.settings.bounds.min_window,
                    past_target,
                ),
            )
        };
        let knobs = self.bounded(new, burst, window);
        if knobs.rps < rps {
            self.last_decrease = Some(now);
        }
        if let (Some(p), Some(before)) = (&mut self.predictive, before) {
            p.proposed(now, knobs.rps, before);
        }
        Self::step(current, knobs, reason)
    }

    /// A tick whose signal is within the deadband: a hold, or for the predictive law a step
    /// back toward a cut it escalated past ([`PredictiveState::undo`]).
    fn within_deadband(&mut self, current: Knobs, rps: f64, ratio: f64, now: Duration) -> Step {
        let cooling = self.cooling(now);
        let most = rps * (1.0 + self.settings.max_step);
        let up = match &mut self.predictive {
            Some(p) if !cooling => {
                let before = p.before_proposal();
                p.undo(rps, ratio, now).map(|up| (before, up.min(most)))
            }
            _ => None,
        };
        let Some((before, up)) = up else {
            return self.hold(current, rps, "within deadband");
        };
        let knobs = self.bounded(up, current.burst, current.window);
        if let Some(p) = &mut self.predictive {
            p.proposed(now, knobs.rps, before);
        }
        Self::step(current, knobs, "undoing an escalated cut")
    }

    /// `rps` kept (inside the bounds), burst and window as they are.
    fn hold(&self, current: Knobs, rps: f64, reason: &'static str) -> Step {
        Self::step(
            current,
            self.bounded(rps, current.burst, current.window),
            reason,
        )
    }

    /// The law's proposal for the next `rps`, before the common limits.
    fn propose(&mut self, rps: f64, obs: &Observation, now: Duration) -> f64 {
        match self.settings.control {
            Control::Predictive { .. } => match &mut self.predictive {
                Some(p) => p.propose(rps, obs.ratio, now),
                None => rps,
            },
            Control::Aimd { increase, decrease } => laws::aimd(
                rps,
                obs,
                increase.unwrap_or(self.settings.bounds.max_rps * 0.05),
                decrease,
            ),
            Control::Pid { kp, ki, kd } => laws::pid(
                rps,
                obs,
                &mut self.pid,
                (kp, ki, kd),
                self.settings.max_step,
            ),
            Control::Gradient {
                min_gradient,
                max_gradient,
                headroom,
                smoothing,
            } => laws::gradient(rps, obs, (min_gradient, max_gradient), headroom, smoothing),
        }
    }

    /// A tick without a usable signal: `on_no_data` decides.
    #[must_use]
    pub fn no_data(&self, current: Knobs) -> Step {
        let knobs = match self.settings.on_no_data {
            OnNoData::Hold if current.rps == -1.0 => {
                self.bounded(self.settings.bounds.max_rps, current.burst, current.window)
            }
            OnNoData::Hold if current.rps.is_finite() => {
                self.bounded(current.rps, current.burst, current.window)
            }
            OnNoData::Hold | OnNoData::Defaults => self.initial(),
            OnNoData::Min => self.bounded(
                self.settings.bounds.min_rps,
                self.settings
                    .bounds
                    .min_burst
                    .unwrap_or(self.settings.defaults.burst),
                self.settings
                    .bounds
                    .min_window
                    .unwrap_or(self.settings.defaults.window),
            ),
        };
        let reason = match self.settings.on_no_data {
            OnNoData::Hold => "no data: hold",
            OnNoData::Defaults => "no data: defaults",
            OnNoData::Min => "no data: min",
        };
        Self::step(current, knobs, reason)
    }

    fn cooling(&self, now: Duration) -> bool {
        self.last_decrease
            .is_some_and(|at| now.saturating_sub(at) < self.settings.cooldown)
    }

    /// Burst and window (each a "shape" knob) shrink toward their minimum past the target,
    /// by `max_step` a tick, so tokens come in smaller grants while the backend struggles (no
    /// pile-up at a window boundary); they grow back toward their default with headroom, by
    /// [`SHAPE_RECOVERY`] a tick: slowly, so that the quiet spell between two bursts of demand
    /// does not restore the grants that piled up in the last one. Each moves only when the policy bounds it from below; otherwise it stays at its
    /// default.
    fn next_shape(&self, value: f64, default: f64, min: Option<f64>, overloaded: bool) -> f64 {
        let Some(min) = min else {
            return default;
        };
        let value = if value.is_finite() && value > 0.0 {
            value
        } else {
            default
        };
        if overloaded {
            (value * (1.0 - self.settings.max_step)).max(min)
        } else {
            (value * (1.0 + SHAPE_RECOVERY)).min(default.max(value))
        }
    }

    /// Knobs inside every bound, with a capacity of at least one token.
    fn bounded(&self, rps: f64, burst: f64, window: f64) -> Knobs {
        let b = self.settings.bounds;
        let finite = |v: f64, default: f64| if v.is_finite() { v } else { default };
        let mut knobs = Knobs {
            rps: within(
                finite(rps, self.settings.defaults.rps),
                b.min_rps,
                b.max_rps,
            ),
            burst: within(
                finite(burst, self.settings.defaults.burst),
                b.min_burst.unwrap_or(self.settings.defaults.burst),
                b.max_burst.unwrap_or(self.settings.defaults.burst),
            ),
            window: within(
                finite(window, self.settings.defaults.window),
                b.min_window.unwrap_or(self.settings.defaults.window),
                b.max_window.unwrap_or(self.settings.defaults.window),
            ),
        };
        if self.settings.limitlion && knobs.burst * knobs.window < LIMITLION_MIN_SPAN {
            // Validated bounds never get here; should they, limitlion must keep its bucket.
            knobs.window = LIMITLION_MIN_SPAN / knobs.burst;
        }
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

/// The longest range selector of a PromQL query (`rate(x[1m])` → 60 s; a subquery's
/// `[5m:30s]` counts its range): how long the signal averages. Zero when it has none.
#[must_use]
pub fn range_window(query: &str) -> Duration {
    query
        .split('[')
        .skip(1)
        .filter_map(|rest| {
            let inside = rest.split(']').next()?;
            let range = inside.split(':').next()?.trim();
            humantime::parse_duration(range).ok()
        })
        .max()
        .unwrap_or(Duration::ZERO)
}

/// `v` inside `[lo, hi]`, preferring `hi` should `lo > hi`; unlike `f64::clamp` it never
/// panics, whatever a stored value or a bug feeds it (NaN stays NaN and is caught later).
fn within(v: f64, lo: f64, hi: f64) -> f64 {
    // `f64::max` and `min` drop a NaN operand: without this test a NaN would come out as
    // `lo`, a maximal cut, and no finiteness check after could catch it.
    if v.is_nan() { v } else { v.max(lo).min(hi) }
}

#[cfg(test)]
mod tests;
