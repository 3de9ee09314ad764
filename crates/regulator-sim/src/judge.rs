//! Judging a law phase by phase against the best static limit of each phase, chosen in
//! hindsight: the comparison a law must win on plants that are not its own model.
//!
//! A phase is the stretch between two capacity steps. Its **settled** intervals are those
//! after the first [`SETTLE`] of the phase (after the warm-up, for the first phase). For each
//! phase, the reference is the static limit (`rps` × window, from [`statics`](super::statics))
//! that served the most queries inside the SLO in that phase's settled intervals. A law is
//! then measured, per phase:
//!
//! - **compliance**: share of settled intervals whose true p99 is within the target;
//! - **goodput**: queries served inside the SLO (not timed out, in compliant intervals) in
//!   the settled intervals, over the reference's;
//! - **recovery**: after a step, intervals until the law's good rate first reaches 80% of the
//!   reference's mean good rate (`None`: never in the phase);
//! - **overshoot**: the largest excess of the served rate over the reference's mean served
//!   rate in a settled interval that broke the SLO (serving more than the best static and
//!   staying in the SLO is not overshoot; serving more and breaking it is).

use serde::Serialize;

use super::{Period, Scenario, Trace};

/// Intervals after a step that are not judged for compliance and goodput.
pub const SETTLE: usize = 10;
/// Recovery means reaching this share of the reference's good rate.
pub const RECOVERED: f64 = 0.8;

/// The intervals of each phase: `(first, settled, end)` indices into a trace's periods.
#[must_use]
pub fn phases(scenario: &Scenario, periods: usize) -> Vec<(usize, usize, usize)> {
    let interval = scenario.policy.interval.as_secs_f64();
    let index = |at: f64| ((at / interval).floor() as usize).min(periods);
    let warmup = ((scenario.warmup.as_secs_f64() / interval).ceil() as usize).min(periods);
    let mut starts = vec![0];
    starts.extend(scenario.steps().iter().map(|d| index(d.as_secs_f64())));
    starts.dedup();
    starts
        .iter()
        .enumerate()
        .map(|(i, &first)| {
            let end = starts.get(i + 1).copied().unwrap_or(periods);
            let settled = if i == 0 { warmup } else { first + SETTLE };
            (first, settled.min(end), end)
        })
        .filter(|(first, _, end)| first < end)
        .collect()
}

/// Whether `p`'s true p99 is within the target (an interval that served nothing is).
fn compliant(p: &Period, target: f64) -> bool {
    p.p99.is_none_or(|l| l <= target)
}

/// Queries served inside the SLO in `p`.
fn good_in(p: &Period, target: f64) -> f64 {
    if compliant(p, target) {
        (p.served - p.timeouts).max(0.0)
    } else {
        0.0
    }
}

/// The best static limit of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    /// Its name (`rps` and window).
    pub law: String,
    /// Its knobs.
    #[serde(skip)]
    pub knobs: regulator::Knobs,
    /// Good queries in the phase's settled intervals.
    pub good: f64,
    /// Its mean good rate there, per second.
    pub good_rate: f64,
    /// Its mean served rate there, per second.
    pub served_rate: f64,
    /// Its compliance there.
    pub compliance: f64,
    /// The good queries of the best static limit whose compliance meets [`GOAL_COMPLIANCE`],
    /// over this one's: whether the goals (that compliance, [`GOAL_GOODPUT`] of this one's
    /// good queries) can be met together by any static limit, in hindsight.
    pub within_goal: f64,
}

/// The compliance goal of a phase.
pub const GOAL_COMPLIANCE: f64 = 0.95;
/// The goodput goal of a phase, over the best static limit's.
pub const GOAL_GOODPUT: f64 = 0.9;

/// One law in one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseScore {
    /// Share of settled intervals in the SLO.
    pub compliance: f64,
    /// Good queries over the reference's.
    pub goodput: f64,
    /// Intervals to reach 80% of the reference's good rate after the step (`None` for the
    /// first phase, or never).
    pub recovery: Option<usize>,
    /// Served rate above the reference's in a settled interval that broke the SLO.
    pub overshoot: f64,
}

/// For each phase, the static limit of `statics` with the most good queries in its settled
/// intervals.
///
/// # Panics
/// If `statics` is empty.
#[must_use]
pub fn references(scenario: &Scenario, statics: &[Trace]) -> Vec<Reference> {
    let target = scenario.policy.throttle.signal.target;
    let n = statics[0].periods.len();
    phases(scenario, n)
        .into_iter()
        .map(|(_, settled, end)| {
            statics
                .iter()
                .map(|t| {
                    let ps = &t.periods[settled..end.min(t.periods.len())];
                    let time: f64 = ps.iter().map(|p| p.length).sum::<f64>().max(1e-9);
                    let good: f64 = ps.iter().map(|p| good_in(p, target)).sum();
                    let served: f64 = ps.iter().map(|p| p.served).sum();
                    let ok = ps.iter().filter(|p| compliant(p, target)).count();
                    Reference {
                        law: t.law.clone(),
                        knobs: t
                            .periods
                            .last()
                            .map_or_else(regulator::Knobs::default, |p| p.knobs),
                        good,
                        good_rate: good / time,
                        served_rate: served / time,
                        compliance: ok as f64 / ps.len().max(1) as f64,
                        within_goal: 0.0,
                    }
                })
                .collect::<Vec<_>>()
        })
        .map(|all| {
            let compliant = all
                .iter()
                .filter(|r| r.compliance >= GOAL_COMPLIANCE)
                .map(|r| r.good)
                .fold(0.0_f64, f64::max);
            let mut best = all
                .into_iter()
                .max_by(|a, b| a.good.total_cmp(&b.good))
                .expect("statics are not empty");
            best.within_goal = if best.good > 0.0 {
                compliant / best.good
            } else {
                1.0
            };
            best
        })
        .collect()
}

/// `trace` phase by phase against `references`.
#[must_use]
pub fn judge(scenario: &Scenario, trace: &Trace, references: &[Reference]) -> Vec<PhaseScore> {
    let target = scenario.policy.throttle.signal.target;
    phases(scenario, trace.periods.len())
        .into_iter()
        .zip(references)
        .enumerate()
        .map(|(i, ((first, settled, end), r))| {
            let ps = &trace.periods[settled..end];
            let ok = ps.iter().filter(|p| compliant(p, target)).count();
            let good: f64 = ps.iter().map(|p| good_in(p, target)).sum();
            let recovery = (i > 0)
                .then(|| {
                    trace.periods[first..end]
                        .iter()
                        .position(|p| good_in(p, target) / p.length >= RECOVERED * r.good_rate)
                })
                .flatten();
            let overshoot = ps
                .iter()
                .filter(|p| !compliant(p, target))
                .map(|p| p.served / p.length / r.served_rate.max(1e-9) - 1.0)
                .fold(0.0_f64, f64::max);
            PhaseScore {
                compliance: ok as f64 / ps.len().max(1) as f64,
                goodput: if r.good > 0.0 { good / r.good } else { 1.0 },
                recovery,
                overshoot,
            }
        })
        .collect()
}

/// Every contender of a scenario judged on one seed.
#[derive(Debug, Clone, Serialize)]
pub struct Judgement {
    /// The seed.
    pub seed: u64,
    /// The best static limit of each phase.
    pub references: Vec<Reference>,
    /// Each law's name and its phases.
    pub laws: Vec<(String, Vec<PhaseScore>)>,
}

/// Runs the statics and every law of [`super::contenders`] on `scenario` with `seed`, and
/// judges the laws phase by phase; only laws whose name contains `only`, if given.
#[must_use]
pub fn judge_all(scenario: &Scenario, seed: u64, only: Option<&str>) -> Judgement {
    let mut statics = super::statics(scenario, seed);
    // Then finer around each phase's best: the grid's step is about a fifth.
    let coarse = references(scenario, &statics);
    for r in &coarse {
        let (rps, window) = (r.knobs.rps, r.knobs.window);
        for k in [-3, -2, -1, 1, 2, 3] {
            let rps = rps * 1.06_f64.powi(k);
            statics.push(super::run_static(scenario, seed, rps, window));
        }
    }
    let references = references(scenario, &statics);
    let laws = super::contenders(scenario)
        .iter_mut()
        .filter(|l| only.is_none_or(|o| l.name().contains(o)))
        .map(|l| {
            let trace = super::run(scenario, &mut **l, seed);
            let phases = judge(scenario, &trace, &references);
            (trace.law, phases)
        })
        .collect();
    Judgement {
        seed,
        references,
        laws,
    }
}
