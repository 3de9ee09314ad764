//! Control: from a signal to bounded knobs. Pure: state, an observation and `now` in, knobs
//! out; no I/O, no clock.
//!
//! - [`laws`]: `predictive` (the default), `aimd`, `pid`, `gradient`, each proposing a new
//!   `rps`.
//! - [`Controller`]: one throttle's state; applies what is common to every law after it (the
//!   deadband, the direction rules, the cooldown, `max_step`, the bounds), moves `burst` and
//!   `window`, and keeps the recent knobs the predictive law pairs the signal with.

pub mod laws;

use std::collections::VecDeque;
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
    /// `rps` values in force and since when, oldest first, as far back as the predictive law
    /// looks.
    history: VecDeque<(Duration, f64)>,
    /// How long after a change the signal starts to show it.
    lag: Duration,
    /// The query's range window: the signal averages this long.
    span: Duration,
    /// The signal's last changes (of its log) while the knobs it reflects stood still: its
    /// noise; and the last logs of the signal and of the `rps` it reflected.
    changes: VecDeque<f64>,
    last_log: Option<(f64, f64)>,
    last_pressure: f64,
    /// The lowest pressure (signal over target, oriented) seen: no floor is above it.
    lowest: f64,
    /// The floor learned from the law's own moves, and the last clean observation (log of
    /// the `rps`, log of the pressure) it learns from.
    learned: f64,
    clean: Option<(f64, f64)>,
    /// The predictive law's recent pressures, over [`Controller::window`].
    recent: VecDeque<(Duration, f64)>,
    /// When the predictive law last cut, and the pressure it cut on.
    last_cut: Option<(Duration, f64)>,
}

/// The learned floor of the predictive law stays within these shares of the target.
pub const FLOOR_RANGE: (f64, f64) = (0.1, 0.5);
/// The floor the predictive law starts from: a queue idling at a fifth of its target, a
/// steep response, so that its first raises are small.
pub const FIRST_FLOOR: f64 = 0.2;
/// Two clean observations this far apart in `rps` (in log) say how the signal responds.
const LEARN_MOVE: f64 = 0.05;
/// Responses outside these elasticities are taken for capacity changes, not learned from.
const MIN_ELASTICITY: f64 = 0.2;
const MAX_LEARNED_ELASTICITY: f64 = 20.0;
/// Weight of each response in the learned floor.
const LEARN_WEIGHT: f64 = 0.3;

/// A tick whose `rps` moved more than this (in log) says nothing of the noise.
const ORDINARY_MOVE: f64 = 0.1;
/// The most a knob move is taken to explain of a signal's move (elasticity, in logs).
const MAX_ELASTICITY: f64 = 5.0;
/// The noise of the signal is judged over this many ticks.
const NOISE_TICKS: usize = 21;
/// The predictive law aims this many times the signal's noise under the target.
const NOISE_SPREAD: f64 = 2.5;

/// How much burst and window grow back each healthy tick.
pub const SHAPE_RECOVERY: f64 = 0.1;

/// At most this many knob changes are remembered (the history spans lag + range window).
const HISTORY: usize = 512;

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
            max_step: policy.max_step(),
            deadband: policy.deadband,
            cooldown: policy.cooldown,
            on_no_data: policy.on_no_data,
            interval: policy.interval.unwrap_or(interval),
            pid: PidState::default(),
            last_tick: None,
            last_decrease: None,
            history: VecDeque::new(),
            lag: match policy.control {
                Control::Predictive { lag: Some(lag), .. } => lag,
                _ => policy.interval.unwrap_or(interval),
            },
            span: range_window(&policy.signal.query),
            changes: VecDeque::new(),
            last_log: None,
            last_pressure: f64::INFINITY,
            lowest: f64::INFINITY,
            learned: FIRST_FLOOR,
            clean: None,
            recent: VecDeque::new(),
            last_cut: None,
        }
    }

    /// How far under the target the predictive law aims: its `margin`, or more when the
    /// signal is noisy, so that 2.5 times its noise (as a log-normal spread) stays under the
    /// target; but never so far that the aim comes closer to the floor than to the target: no
    /// rate brings a signal under its floor, and a law chasing such an aim would cut to the
    /// minimum.
    fn margin(&self) -> f64 {
        match self.control {
            Control::Predictive { margin, floor, .. } => {
                let reachable = (1.0 - self.floor(floor)) / 2.0;
                margin
                    .max(1.0 - (-NOISE_SPREAD * self.noise()).exp())
                    .min(reachable.max(margin))
            }
            _ => 0.0,
        }
    }

    /// The signal's noise: the standard deviation of its log, from the median of its recent
    /// tick-to-tick changes, so that the few large moves a capacity change or a cut makes are
    /// not taken for noise.
    fn noise(&self) -> f64 {
        if self.changes.len() < NOISE_TICKS / 2 {
            return 0.0;
        }
        let mut changes: Vec<f64> = self.changes.iter().copied().collect();
        changes.sort_by(f64::total_cmp);
        // For a normal variable, median(|x|) = 0.6745 σ; a difference of two has √2 σ.
        changes[changes.len() / 2] / 0.6745 / std::f64::consts::SQRT_2
    }

    /// Notes a signal's change since the last tick, less what the `rps` it reflects
    /// (`applied`) explains by the queueing model (its elasticity at `pressure` is
    /// `pressure / floor - 1`): the law's own moves are not noise.
    fn observe(&mut self, signal: f64, applied: f64, pressure: f64, floor: f64) {
        if !(signal.is_finite() && signal > 0.0 && applied.is_finite() && applied > 0.0) {
            return;
        }
        let (log, applied_log) = (signal.ln(), applied.ln());
        // Only ordinary ticks: a small move, the signal under 1.5 × the target at both ends.
        // Near saturation or across a capacity step the model cannot say what is noise.
        let ordinary = pressure <= 1.5 && self.last_pressure <= 1.5;
        if let Some((last, last_applied)) = self.last_log
            && ordinary
            && (applied_log - last_applied).abs() <= ORDINARY_MOVE
        {
            let elasticity = (pressure / floor - 1.0).clamp(0.0, MAX_ELASTICITY);
            let residual = (log - last) - elasticity * (applied_log - last_applied);
            if self.changes.len() == NOISE_TICKS {
                self.changes.pop_front();
            }
            self.changes.push_back(residual.abs());
        }
        self.last_log = Some((log, applied_log));
        self.last_pressure = pressure;
    }

    /// The floor the predictive law uses: the configured one, or the one learned from its
    /// moves, never above the lowest pressure seen, within [`FLOOR_RANGE`].
    fn floor(&self, configured: Option<f64>) -> f64 {
        configured.unwrap_or_else(|| {
            let (lo, hi) = FLOOR_RANGE;
            self.learned.min(self.lowest).max(lo).min(hi)
        })
    }

    /// Learns the floor from how the signal answered the law's moves. An observation is
    /// clean when one `rps` was in force over all the signal may reflect (`lo == hi`) and the
    /// signal is under 1.5 × the target (past it a queue grows with time, not rate). Between
    /// two clean observations `LEARN_MOVE` apart, the elasticity `E = Δln p / Δln rps` gives
    /// the floor the queueing model would need, `p / (1 + E)`.
    fn learn(&mut self, (lo, hi): (f64, f64), pressure: f64) {
        if pressure > 1.5 {
            // Something changed (an overload): what came before says nothing of what follows.
            self.clean = None;
            return;
        }
        if lo != hi || pressure <= 0.0 || !(lo > 0.0 && lo.is_finite()) {
            return;
        }
        let here = (lo.ln(), pressure.ln());
        if let Some((x, y)) = self.clean {
            let dx = here.0 - x;
            if dx.abs() < LEARN_MOVE {
                self.clean = Some(here);
                return;
            }
            // A queue answers a rise with a rise; a flat or opposite answer means the
            // capacity moved between the two, and says nothing of the floor.
            let elasticity = (here.1 - y) / dx;
            if (MIN_ELASTICITY..=MAX_LEARNED_ELASTICITY).contains(&elasticity) {
                let (min, max) = FLOOR_RANGE;
                let floor = (pressure / (1.0 + elasticity)).clamp(min, max);
                self.learned += LEARN_WEIGHT * (floor - self.learned);
            }
        }
        self.clean = Some(here);
    }

    /// The signal the policy aims at: its target, or for the predictive law `margin` under it.
    fn aim(&self) -> f64 {
        let margin = self.margin();
        match self.direction {
            Direction::HigherIsWorse => self.target * (1.0 - margin),
            Direction::LowerIsWorse => self.target / (1.0 - margin),
        }
    }

    /// The lowest and highest `rps` in force over `[now - 2 × lag - span, now]`: every knob
    /// the signal may reflect, allowing the lag to be off by a factor of two either way.
    /// `None` before anything was recorded.
    fn applied(&self, now: Duration) -> Option<(f64, f64)> {
        let start = now.saturating_sub(self.window());
        let i = self.history.partition_point(|(since, _)| *since <= start);
        self.history
            .iter()
            .skip(i.saturating_sub(1))
            .map(|(_, rps)| *rps)
            .fold(None, |range, rps| match range {
                None => Some((rps, rps)),
                Some((lo, hi)) => Some((f64::min(lo, rps), f64::max(hi, rps))),
            })
    }

    /// How far back the signal may reach: twice the lag, plus the query's range window.
    fn window(&self) -> Duration {
        self.lag.saturating_mul(2).saturating_add(self.span)
    }

    /// Remembers that `rps` is in force from `now`, forgetting what the law no longer needs.
    fn record(&mut self, now: Duration, rps: f64) {
        if self.history.back().is_some_and(|(_, last)| *last == rps) {
            return;
        }
        self.history.push_back((now, rps));
        let oldest = now.saturating_sub(self.window());
        // Keep the last entry at or before `oldest`: it is in force at the window's start.
        while self.history.len() > HISTORY
            || self
                .history
                .get(1)
                .is_some_and(|(since, _)| *since <= oldest)
        {
            self.history.pop_front();
        }
    }

    /// The knobs a throttle starts from, inside the bounds.
    #[must_use]
    pub fn initial(&self) -> Knobs {
        self.bounded(self.defaults.rps, self.defaults.burst, self.defaults.window)
    }

    /// One tick with a usable signal. `current` are the knobs in force (the initial ones if
    /// none are stored or they are unusable); `now` is time since any fixed origin.
    pub fn tick(&mut self, current: Knobs, signal: f64, now: Duration) -> Step {
        let dt = self
            .last_tick
            .map_or(self.interval, |last| now.saturating_sub(last))
            .as_secs_f64();
        self.last_tick = Some(now);
        if let Control::Predictive { floor, .. } = self.control {
            let ratio = Observation::new(signal, self.target, self.direction, dt).ratio;
            let pressure = 1.0 / ratio;
            if pressure.is_finite() && pressure >= 0.0 {
                self.lowest = self.lowest.min(pressure);
            }
            let (lo, hi) = self.applied(now).unwrap_or((current.rps, current.rps));
            self.learn((lo, hi), pressure);
            self.observe(signal, f64::midpoint(lo, hi), pressure, self.floor(floor));
        }
        let obs = Observation::new(signal, self.aim(), self.direction, dt);
        let past_target = Observation::new(signal, self.target, self.direction, dt).headroom < 0.0;
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
            return Self::step(
                current,
                self.bounded(rps, current.burst, current.window),
                "unusable input",
            );
        }
        // A value set by hand (or by `on_no_data`) is in force from now on.
        self.record(now, rps);
        let overloaded = obs.headroom < -self.deadband;
        let healthy = obs.headroom > self.deadband;
        if !overloaded && !healthy {
            return Self::step(
                current,
                self.bounded(rps, current.burst, current.window),
                "within deadband",
            );
        }

        let proposed = self.propose(rps, &obs, now);
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
        let step = (self.max_step * rps.max(self.bounds.max_rps * 0.01)).abs();
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
                    self.defaults.burst,
                    self.bounds.min_burst,
                    past_target,
                ),
                self.next_shape(
                    current.window,
                    self.defaults.window,
                    self.bounds.min_window,
                    past_target,
                ),
            )
        };
        let knobs = self.bounded(new, burst, window);
        if knobs.rps < rps {
            self.last_decrease = Some(now);
        }
        self.record(now, knobs.rps);
        Self::step(current, knobs, reason)
    }

    /// The law's proposal for the next `rps`, before the common limits.
    fn propose(&mut self, rps: f64, obs: &Observation, now: Duration) -> f64 {
        match self.control {
            Control::Predictive { gain, floor, .. } => {
                let margin = self.margin();
                let pressure = (1.0 - margin) / obs.ratio;
                // Pessimistic pairing: an overload is blamed on the highest knob it may
                // reflect, headroom credited to the lowest, so a stale signal never moves the
                // knob twice for one piece of news, whatever the true lag.
                let (lo, hi) = self.applied(now).unwrap_or((rps, rps));
                // Headroom must hold over the whole span: a quiet spell between bursts of
                // demand says nothing of the next burst.
                let since = now.saturating_sub(self.window());
                while self.recent.front().is_some_and(|(at, _)| *at < since) {
                    self.recent.pop_front();
                }
                self.recent.push_back((now, pressure));
                let (applied, pressure) = if pressure > 1.0 - margin {
                    // One cut per piece of news: until the last cut can show, only a worse
                    // signal cuts again.
                    if let Some((at, seen)) = self.last_cut
                        && now.saturating_sub(at) < self.window()
                        && pressure <= seen
                    {
                        return rps;
                    }
                    self.last_cut = Some((now, pressure));
                    (hi, pressure)
                } else {
                    let worst = self.recent.iter().map(|(_, p)| *p).fold(pressure, f64::max);
                    (lo, worst)
                };
                let floor = self.floor(floor);
                laws::predictive(
                    rps,
                    applied,
                    pressure,
                    laws::Predictive {
                        margin,
                        gain,
                        floor,
                    },
                )
            }
            Control::Aimd { increase, decrease } => laws::aimd(
                rps,
                obs,
                increase.unwrap_or(self.bounds.max_rps * 0.05),
                decrease,
            ),
            Control::Pid { kp, ki, kd } => {
                laws::pid(rps, obs, &mut self.pid, (kp, ki, kd), self.max_step)
            }
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
        let knobs = match self.on_no_data {
            OnNoData::Hold if current.rps == -1.0 => {
                self.bounded(self.bounds.max_rps, current.burst, current.window)
            }
            OnNoData::Hold if current.rps.is_finite() => {
                self.bounded(current.rps, current.burst, current.window)
            }
            OnNoData::Hold | OnNoData::Defaults => self.initial(),
            OnNoData::Min => self.bounded(
                self.bounds.min_rps,
                self.bounds.min_burst.unwrap_or(self.defaults.burst),
                self.bounds.min_window.unwrap_or(self.defaults.window),
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
            (value * (1.0 - self.max_step)).max(min)
        } else {
            (value * (1.0 + SHAPE_RECOVERY)).min(default.max(value))
        }
    }

    /// Knobs inside every bound, with a capacity of at least one token.
    fn bounded(&self, rps: f64, burst: f64, window: f64) -> Knobs {
        let b = self.bounds;
        let finite = |v: f64, default: f64| if v.is_finite() { v } else { default };
        let knobs = Knobs {
            rps: within(finite(rps, self.defaults.rps), b.min_rps, b.max_rps),
            burst: within(
                finite(burst, self.defaults.burst),
                b.min_burst.unwrap_or(self.defaults.burst),
                b.max_burst.unwrap_or(self.defaults.burst),
            ),
            window: within(
                finite(window, self.defaults.window),
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
    v.max(lo).min(hi)
}

#[cfg(test)]
mod tests;
