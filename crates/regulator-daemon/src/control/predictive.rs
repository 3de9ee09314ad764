//! The predictive law's memory: the knobs it pairs the signal with, the signal's noise, the
//! floor it learns from its own moves, and the rules that keep it from moving twice on one
//! piece of news. The arithmetic of a step is the pure [`laws::predictive`]; this feeds it.

use std::collections::VecDeque;
use std::time::Duration;

use super::laws;

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

/// At most this many knob changes are remembered one by one (the history spans 2 × lag +
/// range window); older ones still in that span are kept as their range.
const HISTORY: usize = 512;
/// Below this share of the last rate that overloaded, a healthy signal is trusted at once:
/// the law pairs it with the knob in force now, not the lowest the signal may reflect, so a
/// deep cut is recovered from in a few ticks rather than one window at a time.
const FAST_SHARE: f64 = 0.9;
/// Ticks of headroom a fast recovery after a deep cut waits for.
const FAST_TICKS: usize = 3;
/// A cut under this share of the ceiling is deep: the signal's memory of the overload
/// before it is not held against the climb back.
const DEEP_CUT: f64 = 0.25;
/// The fast recovery needs the signal of those ticks under this share of the aim.
const FAST_HEADROOM: f64 = 0.8;
/// How long the rate that last overloaded is remembered.
const CEILING_MEMORY: Duration = Duration::from_secs(900);
/// Past this pressure the signal no longer measures how deep an overload is: a fleet held
/// back by its own concurrency, a client timeout or a connection pool caps it.
const DEEP_OVERLOAD: f64 = 1.5;
/// A cut on a worse signal past [`DEEP_OVERLOAD`], after an earlier cut in the same
/// overload, goes at least this far below the knob in force, as AIMD would: the model read
/// the capped signal as a small excess and its cut was not enough. Not within the lag and
/// range window after a cut from the rate served: that cut was not read from the signal
/// (see [`PredictiveState::saturated_cut`]).
const ESCALATION: f64 = 0.7;
/// ... when the signal rose since that cut (which had the lag to show) by more than the
/// first and less than the second share: it creeps toward a cap. A signal that climbs
/// faster measures the overload, and the model's own cut is the right size; one that holds
/// at its cap, moving only by its noise, has news of nothing.
const CREEP: (f64, f64) = (1.03, 1.15);
/// After an escalated cut the model's own cut may have been right after all (a signal
/// still climbing from the backlog of a sudden overload looks the same). Sitting in the
/// deadband under the aim with one knob over a whole window, the law steps back toward it
/// by this factor, once a window, until it gets there or the signal says otherwise.
const UNDO_STEP: f64 = 1.12;

/// The fleet sent what the limit allowed when the rate served was at least this share of
/// the lowest limit the signal may reflect, and the highest at least this share of it.
const BOUND: f64 = 0.9;

/// A limit this many times the rate served, after a cut in the same overload and with no
/// burst over the limit in the signal's window, may not bind: the fleet sends less than it may (its own
/// threads or connections hold it back), or the backend serves less than it is sent. Either
/// way a cut from the limit may leave the rate unchanged, so the next cut goes at least to
/// [`ESCALATION`] × the rate served, as AIMD on the rate delivered would. Not at the first
/// cut: a sudden overload holds back the completions the rate counts (the queries are still
/// queued).
const SLACK: f64 = 1.25;

/// One throttle's predictive-law state.
#[derive(Debug, Clone)]
pub(super) struct PredictiveState {
    /// Configured: the least margin, the gain, and the floor if one is set.
    margin: f64,
    gain: f64,
    floor: Option<f64>,
    /// `rps` values in force and since when, oldest first, as far back as the law looks.
    history: VecDeque<(Duration, f64)>,
    /// The lowest and highest `rps` dropped from a full history while the signal may still
    /// reflect them, and until when the last of them was in force.
    dropped: Option<(Duration, f64, f64)>,
    /// How long after a change the signal starts to show it.
    lag: Duration,
    /// The query's range window: the signal averages this long.
    span: Duration,
    /// The signal's last changes (of its log) the model does not explain: its noise; and the
    /// last logs of the signal and of the `rps` it reflected, and the last pressure.
    changes: VecDeque<f64>,
    last_log: Option<(f64, f64)>,
    last_pressure: f64,
    /// The lowest pressure (signal over target, oriented) seen: no floor is above it.
    lowest: f64,
    /// The floor learned from the law's own moves, and the last clean observation (log of
    /// the `rps`, log of the pressure) it learns from.
    learned: f64,
    clean: Option<(f64, f64)>,
    /// Recent pressures, over [`PredictiveState::window`].
    recent: VecDeque<(Duration, f64)>,
    /// The rates served at every tick over [`PredictiveState::window`].
    rates: VecDeque<Rate>,
    /// When the law last cut, and the pressure it cut on.
    last_cut: Option<(Duration, f64)>,
    /// The model's cut that the last escalated cut went under, until the knob is back to
    /// it, and when the law last stepped back toward it (see [`UNDO_STEP`]).
    undo: Option<f64>,
    last_undo: Option<Duration>,
    /// Cuts made in the overload going on (none since the last healthy tick).
    streak: u32,
    /// The highest `rps` an overload was lately blamed on (what the backend could not take),
    /// and since when.
    ceiling: Option<(f64, Duration)>,
    /// The last proposal, until the stored knobs show it was written: when, its `rps` as
    /// stored, and the memory it changed as it was before (see [`Memory`]).
    pending: Option<Pending>,
    /// The rate served over the signal's window, as this tick measured it.
    served: Option<f64>,
    /// When the law last cut from the rate served (see [`PredictiveState::saturated_cut`]).
    saturated: Option<Duration>,
}

/// One recent tick: the rate served then, and the lowest and highest limits its signal may
/// reflect.
#[derive(Debug, Clone, Copy)]
struct Rate {
    at: Duration,
    served: Option<f64>,
    limits: (f64, f64),
}

/// A proposal not yet seen in the stored knobs.
#[derive(Debug, Clone, Copy)]
struct Pending {
    at: Duration,
    rps: f64,
    before: Memory,
}

/// What a proposal may change of the law's memory: its last cut, its ceiling, the cuts of
/// the overload going on, the step back toward an escalated cut's model cut and when it last
/// stepped, and its last cut from the rate served.
#[derive(Debug, Clone, Copy)]
pub(super) struct Memory {
    last_cut: Option<(Duration, f64)>,
    ceiling: Option<(f64, Duration)>,
    streak: u32,
    undo: Option<f64>,
    last_undo: Option<Duration>,
    saturated: Option<Duration>,
}

impl PredictiveState {
    /// State for `(margin, gain, floor)`, a signal that lags by `lag` and averages `span`.
    pub(super) fn new(
        (margin, gain, floor): (f64, f64, Option<f64>),
        lag: Duration,
        span: Duration,
    ) -> Self {
        Self {
            margin,
            gain,
            floor,
            history: VecDeque::new(),
            dropped: None,
            lag,
            span,
            changes: VecDeque::new(),
            last_log: None,
            last_pressure: f64::INFINITY,
            lowest: f64::INFINITY,
            learned: FIRST_FLOOR,
            clean: None,
            recent: VecDeque::new(),
            rates: VecDeque::new(),
            last_cut: None,
            undo: None,
            last_undo: None,
            streak: 0,
            ceiling: None,
            pending: None,
            served: None,
            saturated: None,
        }
    }

    /// Takes in the tick's measured rate served (see [`SLACK`]) at `now`, `current` the
    /// `rps` in force; a missing or unusable one is none.
    pub(super) fn served(&mut self, served: Option<f64>, current: f64, now: Duration) {
        self.served = served.filter(|s| s.is_finite() && *s > 0.0);
        let since = now.saturating_sub(self.window());
        while self.rates.front().is_some_and(|r| r.at < since) {
            self.rates.pop_front();
        }
        self.rates.push_back(Rate {
            at: now,
            served: self.served,
            limits: self.applied(now).unwrap_or((current, current)),
        });
    }

    /// Takes in the `rps` actually stored at the start of a tick. The last proposal counts as
    /// in force from when it was made only if it is what is stored: a proposal whose write
    /// failed (or that a replica made while another wrote) never was, and the cut it made
    /// is forgotten, so the law does not wait for an effect that cannot come.
    pub(super) fn confirm(&mut self, stored: f64) {
        let Some(p) = self.pending.take() else {
            return;
        };
        if stored == p.rps {
            self.record(p.at, p.rps);
        } else {
            self.last_cut = p.before.last_cut;
            self.ceiling = p.before.ceiling;
            // A cut that was not written is not one of the overload's; a healthy tick ended
            // the overload whether or not its raise was written.
            self.streak = self.streak.min(p.before.streak);
            self.undo = p.before.undo;
            self.last_undo = p.before.last_undo;
            self.saturated = p.before.saturated;
        }
    }

    /// The memory a proposal may change, before it does: see [`PredictiveState::proposed`].
    pub(super) fn before_proposal(&self) -> Memory {
        Memory {
            last_cut: self.last_cut,
            ceiling: self.ceiling,
            streak: self.streak,
            undo: self.undo,
            last_undo: self.last_undo,
            saturated: self.saturated,
        }
    }

    /// Notes the tick's proposal `rps` (after every limit), made at `now`, until the next
    /// tick's stored knobs confirm it.
    pub(super) fn proposed(&mut self, now: Duration, rps: f64, before: Memory) {
        self.pending = Some(Pending {
            at: now,
            rps,
            before,
        });
    }

    /// The last proposal is stored as `rps` (the store rounds a concurrency to whole
    /// holders): that is the value [`PredictiveState::confirm`] looks for.
    pub(super) fn stored_as(&mut self, rps: f64) {
        if let Some(p) = &mut self.pending {
            p.rps = rps;
        }
    }

    /// Takes in a tick's signal before the law steps: `pressure` is the signal over the
    /// target (oriented, above 1 overloaded), `current` the `rps` in force.
    pub(super) fn see(&mut self, signal: f64, pressure: f64, current: f64, now: Duration) {
        // A signal of zero (no queries, an idle queue) says nothing of a queue's floor; taken
        // for one, it would hold the floor at its least for good.
        if pressure.is_finite() && pressure > 0.0 {
            self.lowest = self.lowest.min(pressure);
        }
        let (lo, hi) = self.applied(now).unwrap_or((current, current));
        self.learn((lo, hi), pressure);
        self.observe(signal, f64::midpoint(lo, hi), pressure, self.floor());
    }

    /// The law's proposal for the next `rps`; `ratio` is the aim over the signal, oriented
    /// so that above 1 is healthy.
    pub(super) fn propose(&mut self, rps: f64, ratio: f64, now: Duration) -> f64 {
        let margin = self.margin();
        let pressure = (1.0 - margin) / ratio;
        let latest = pressure;
        // Pessimistic pairing: an overload is blamed on the highest knob it may reflect,
        // headroom credited to the lowest, so a stale signal never moves the knob twice for
        // one piece of news, whatever the true lag.
        let (lo, hi) = self.applied(now).unwrap_or((rps, rps));
        let overloaded = pressure > 1.0 - margin;
        // Headroom must hold over the whole window: a quiet spell between bursts of demand says
        // nothing of the next burst.
        let since = now.saturating_sub(self.window());
        while self.recent.front().is_some_and(|(at, _)| *at < since) {
            self.recent.pop_front();
        }
        self.recent.push_back((now, pressure));
        let (steady, slack) = self.demand(rps, (lo, hi), overloaded);
        let mut creeping = false;
        if !overloaded {
            self.streak = 0;
        }
        let (applied, pressure) = if overloaded {
            // One cut per piece of news: until the last cut can show, only a worse signal
            // cuts again.
            if let Some((at, seen)) = self.last_cut
                && now.saturating_sub(at) < self.window()
                && pressure <= seen
            {
                return rps;
            }
            creeping = self.last_cut.is_some_and(|(at, seen)| {
                // (Three quarters of the lag: a tick is a little early or late.)
                now.saturating_sub(at) >= self.lag.mul_f64(0.75)
                    && pressure > seen * CREEP.0
                    && pressure < seen * CREEP.1
            });
            self.last_cut = Some((now, pressure));
            // The ceiling is the highest rate that overloaded lately: a later overload at a
            // lower rate (a capacity drop) does not lower it, so a capacity that comes back
            // is found again at once; it is forgotten after CEILING_MEMORY.
            self.ceiling = match self.ceiling {
                Some((c, at)) if c >= hi && now.saturating_sub(at) < CEILING_MEMORY => {
                    Some((c, at))
                }
                _ => Some((hi, now)),
            };
            (hi, pressure)
        } else {
            let worst = self.recent.iter().map(|(_, p)| *p).fold(pressure, f64::max);
            (lo, worst)
        };
        let params = laws::Predictive {
            margin,
            gain: self.gain,
            floor: self.floor(),
        };
        let careful = laws::predictive(rps, applied, pressure, params);
        if overloaded {
            return self.cut(rps, (careful, pressure), params, (slack, creeping), now);
        }
        match self.ceiling {
            // Well under a rate known to overload, with headroom over the last ticks: the
            // signal speaks of a knob near the current one, and the ceiling bounds the error.
            Some((ceiling, at))
                if rps < FAST_SHARE * ceiling && now.saturating_sub(at) < CEILING_MEMORY =>
            {
                // Headroom over every tick the signal may reflect; after a deep cut, over
                // those since the cut could show (the overload before it says nothing of
                // the knob now), at least FAST_TICKS of them.
                let deep = rps <= DEEP_CUT * ceiling;
                let since = match self.last_cut {
                    Some((at, _)) if deep => at.saturating_add(self.lag),
                    _ => Duration::ZERO,
                };
                let (count, recent) = self
                    .recent
                    .iter()
                    .filter(|(at, _)| *at >= since)
                    .fold((0, latest), |(n, worst), (_, p)| (n + 1, worst.max(*p)));
                let recent = if steady { latest } else { recent };
                if deep && count < FAST_TICKS {
                    return careful;
                }
                if recent >= FAST_HEADROOM * (1.0 - margin) {
                    return careful;
                }
                let fast = laws::predictive(
                    rps,
                    rps,
                    recent,
                    laws::Predictive {
                        gain: 1.0,
                        ..params
                    },
                )
                .min(FAST_SHARE * ceiling);
                careful.max(fast)
            }
            _ => careful,
        }
    }

    /// The cut for an overloaded tick at `rps`: the model's `careful` cut at `pressure`, the
    /// cut from the rate served where that would not cut (see
    /// [`PredictiveState::saturated_cut`]), or an escalation (see [`ESCALATION`]); never over
    /// [`ESCALATION`] × the rate served where the limit does not bind (`slack`, see [`SLACK`]).
    fn cut(
        &mut self,
        rps: f64,
        (careful, pressure): (f64, f64),
        params: laws::Predictive,
        (slack, creeping): (Option<f64>, bool),
        now: Duration,
    ) -> f64 {
        // Sized from the highest limit the signal may reflect, a cut may not cut at all.
        let careful = match self.saturated_cut(rps, pressure, params) {
            Some(cut) if careful >= rps && cut < careful => {
                // The model's cut an earlier escalation went under was sized from a limit
                // the backend no longer sees: no stepping back toward it.
                self.saturated = Some(now);
                self.undo = None;
                cut
            }
            _ => careful,
        };
        self.streak = self.streak.saturating_add(1);
        let binding = |cut: f64| slack.map_or(cut, |served| cut.min(ESCALATION * served));
        // A cut from the rate served counts the queries the signal counts: a signal that
        // still creeps before that cut can show (lag and range window) speaks of the backlog
        // the limit before it built, not of a cut too small.
        let settling = self
            .saturated
            .is_some_and(|at| now.saturating_sub(at) < self.shown());
        if self.streak > 1
            && creeping
            && !settling
            && pressure >= DEEP_OVERLOAD
            && careful > rps * ESCALATION
        {
            self.undo = Some(careful);
            return binding(rps * ESCALATION);
        }
        if self.streak == 1 {
            self.undo = None;
        }
        binding(careful)
    }

    /// The cut for a signal past the target under a limit that binds (the rate served at
    /// least [`BOUND`] × the limit), sized from the rate served and no deeper than
    /// [`ESCALATION`] × it; none without a rate served or outside that case. The law takes it
    /// when the cut sized from the highest limit the signal may reflect would not cut at
    /// all: after a capacity drop, that limit is one the backend no longer sees (a pool
    /// saturated at its new capacity waited out a signal window at 1.9 × the target with no
    /// cut, another at 1.5 ×). The rate served and the signal are counted over the same range
    /// window, so they describe the same queries.
    fn saturated_cut(&self, rps: f64, pressure: f64, params: laws::Predictive) -> Option<f64> {
        let served = self.served?;
        let binding = served >= BOUND * rps;
        (binding && pressure > 1.0)
            .then(|| laws::predictive(rps, served, pressure, params).max(ESCALATION * served))
    }

    /// What the rates served over the window say of the demand, for a tick at `rps` whose
    /// signal may reflect limits `(lo, hi)`: whether it was steady (see the fast recovery),
    /// and the rate served if the limit does not bind in an overload (see [`SLACK`]).
    fn demand(&self, rps: f64, (lo, hi): (f64, f64), overloaded: bool) -> (bool, Option<f64>) {
        let served_all = |ok: &dyn Fn(f64, (f64, f64)) -> bool| {
            self.rates.len() >= FAST_TICKS
                && self
                    .rates
                    .iter()
                    .all(|r| r.served.is_some_and(|served| ok(served, r.limits)))
        };
        // Demand that filled the limit, and no more (no tokens saved in a quiet spell spent),
        // at every tick the signal may reflect: the latest signal speaks for the whole window.
        let steady = served_all(&|served, _| served >= BOUND * lo && served * BOUND <= hi);
        // A limit that does not bind: a cut must take it under the rate served. Unless a rate
        // over the limit at a tick the signal may reflect shows tokens saved in a quiet spell
        // spent in a burst: the burst was served at the limit, while the window's mean rate
        // is well under it.
        let slack = self.served.filter(|now_served| {
            overloaded
                && self.streak > 0
                && rps > SLACK * now_served
                && served_all(&|served, (_, hi)| served <= hi)
        });
        (steady, slack)
    }

    /// How far under the target the predictive law aims: its `margin`, or more when the
    /// signal is noisy, so that 2.5 times its noise (as a log-normal spread) stays under the
    /// target; but never so far that the aim comes closer to the floor than to the target: no
    /// rate brings a signal under its floor, and a law chasing such an aim would cut to the
    /// minimum.
    pub(super) fn margin(&self) -> f64 {
        let margin = self.margin;
        let reachable = (1.0 - self.floor()) / 2.0;
        margin
            .max(1.0 - (-NOISE_SPREAD * self.noise()).exp())
            .min(reachable.max(margin))
    }

    /// A step back toward the model's cut that an escalated cut went under (see
    /// [`UNDO_STEP`]), for a signal within the deadband: under the aim (`ratio` above 1),
    /// one knob over the whole window, no cut within it, one step a window.
    pub(super) fn undo(&mut self, rps: f64, ratio: f64, now: Duration) -> Option<f64> {
        let target = self.undo.filter(|u| rps < *u);
        self.undo = target;
        let window = self.window();
        let steady = self.applied(now) == Some((rps, rps));
        let calm = self
            .last_cut
            .is_none_or(|(at, _)| now.saturating_sub(at) >= window);
        let due = self
            .last_undo
            .is_none_or(|at| now.saturating_sub(at) >= window);
        let target = target.filter(|_| ratio > 1.0 && steady && calm && due)?;
        self.last_undo = Some(now);
        Some(target.min(rps * UNDO_STEP))
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
    fn floor(&self) -> f64 {
        self.floor.unwrap_or_else(|| {
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

    /// The lowest and highest `rps` in force over `[now - 2 × lag - span, now]`: every knob
    /// the signal may reflect, allowing the lag to be off by a factor of two either way.
    /// `None` before anything was recorded.
    fn applied(&self, now: Duration) -> Option<(f64, f64)> {
        let start = now.saturating_sub(self.window());
        let i = self.history.partition_point(|(since, _)| *since <= start);
        let dropped = self
            .dropped
            .filter(|(until, ..)| *until > start)
            .map(|(_, lo, hi)| [lo, hi]);
        self.history
            .iter()
            .skip(i.saturating_sub(1))
            .map(|(_, rps)| *rps)
            .chain(dropped.into_iter().flatten())
            .fold(None, |range, rps| match range {
                None => Some((rps, rps)),
                Some((lo, hi)) => Some((f64::min(lo, rps), f64::max(hi, rps))),
            })
    }

    /// How long after a change the signal has shown it in full: the lag, plus the query's
    /// range window.
    fn shown(&self) -> Duration {
        self.lag.saturating_add(self.span)
    }

    /// How far back the signal may reach: twice the lag, plus the query's range window.
    fn window(&self) -> Duration {
        self.lag.saturating_mul(2).saturating_add(self.span)
    }

    /// Remembers that `rps` is in force from `now`, forgetting what the law no longer needs.
    pub(super) fn record(&mut self, now: Duration, rps: f64) {
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
            let Some((_, rps)) = self.history.pop_front() else {
                break;
            };
            // Dropped for room while still in the window: kept as a range, so that the
            // pairing stays as pessimistic as the window asks.
            if let Some(&(until, _)) = self.history.front()
                && until > oldest
            {
                self.dropped = Some(match self.dropped {
                    Some((_, lo, hi)) => (until, lo.min(rps), hi.max(rps)),
                    None => (until, rps, rps),
                });
            }
        }
        if self.dropped.is_some_and(|(until, ..)| until <= oldest) {
            self.dropped = None;
        }
    }
}
