//! The default control law against the baselines, in every built-in scenario of the
//! simulator (deterministic: a seed gives the same run on any machine). These pin what
//! BENCHMARKS.md reports: a change to the law that makes it lose to a baseline, or fall under
//! a scenario's figures, fails here. Where a scenario misses the goals (SLO compliance 95%,
//! goodput 90%), its floor is what the law reaches, and BENCHMARKS.md says why.

use regulator_daemon::config::Control;
use regulator_sim::laws::{Baseline, Daemon, Kind, Law};
use regulator_sim::{self as sim, Scenario, Trace};

const SEED: u64 = 1;

fn default_law(s: &Scenario) -> Trace {
    let policy = &s.policy.throttle;
    assert_eq!(
        policy.control.law(),
        "predictive",
        "{}: the built-ins name no law",
        s.name
    );
    sim::run(
        s,
        &mut Daemon::new("default", policy, s.policy.interval),
        SEED,
    )
}

/// Netflix AIMD, Envoy's gradient, Aperture, and the daemon's other laws.
fn baselines(s: &Scenario) -> Vec<Trace> {
    let policy = &s.policy.throttle;
    let mut laws: Vec<Box<dyn Law>> = [Kind::NetflixAimd, Kind::EnvoyGradient, Kind::Aperture]
        .into_iter()
        .map(|k| Box::new(Baseline::new(k, policy)) as Box<dyn Law>)
        .collect();
    for control in Control::defaults() {
        if control.law() != policy.control.law() {
            let mut p = policy.clone();
            p.control = control;
            laws.push(Box::new(Daemon::new(control.law(), &p, s.policy.interval)));
        }
    }
    laws.iter_mut()
        .map(|l| sim::run(s, &mut **l, SEED))
        .collect()
}

/// The default law in `name` beats every adaptive baseline on compliance × goodput, keeps
/// its overshoot within 10%, and reaches at least these compliance and goodput figures.
fn check(name: &str, compliance: f64, goodput: f64) {
    let s = Scenario::built_in(name).expect("a built-in scenario");
    let ours = default_law(&s).score;
    assert!(
        ours.compliance >= compliance && ours.goodput >= goodput,
        "{name}: compliance {:.3} (floor {compliance}), goodput {:.3} (floor {goodput})",
        ours.compliance,
        ours.goodput
    );
    assert!(
        ours.overshoot <= 0.10,
        "{name}: overshoot {:.3}",
        ours.overshoot
    );
    for other in baselines(&s) {
        assert!(
            ours.product() > other.score.product(),
            "{name}: default {:.3} vs {} {:.3}",
            ours.product(),
            other.law,
            other.score.product()
        );
    }
}

#[test]
fn step_down_meets_the_goals_and_beats_the_baselines() {
    check("step-down", 0.95, 0.90);
}

#[test]
fn step_up_holds_the_slo_and_beats_the_baselines() {
    check("step-up", 0.95, 0.85);
}

#[test]
fn ramp_beats_the_baselines() {
    check("ramp", 0.80, 0.72);
}

#[test]
fn noisy_holds_the_slo_and_beats_the_baselines() {
    check("noisy", 0.95, 0.85);
}

#[test]
fn slow_signal_meets_the_goals_and_beats_the_baselines() {
    check("slow-signal", 0.95, 0.90);
}

#[test]
fn vanish_meets_the_goals_and_beats_the_baselines() {
    check("vanish", 0.95, 0.90);
}

#[test]
fn bursty_holds_the_slo_and_beats_the_adaptive_baselines() {
    check("bursty", 0.95, 0.38);
}

#[test]
fn controlling_burst_and_window_pays_in_the_bursty_scenario() {
    let s = Scenario::built_in("bursty").expect("built in");
    let mut fixed = s.policy.throttle.clone();
    fixed.bounds.min_burst = None;
    fixed.bounds.min_window = None;
    let with = default_law(&s).score;
    let without = sim::run(
        &s,
        &mut Daemon::new("fixed", &fixed, s.policy.interval),
        SEED,
    )
    .score;
    assert!(
        with.product() > without.product(),
        "with {:.3} ({:.3} x {:.3}), fixed {:.3} ({:.3} x {:.3})",
        with.product(),
        with.compliance,
        with.goodput,
        without.product(),
        without.compliance,
        without.goodput
    );
}

#[test]
fn a_simulation_is_the_same_for_a_seed_and_differs_across_seeds() {
    let s = Scenario::built_in("noisy").expect("built in");
    let policy = &s.policy.throttle;
    let run = |seed| sim::run(&s, &mut Daemon::new("d", policy, s.policy.interval), seed);
    let (a, b, c) = (run(7), run(7), run(8));
    assert_eq!(a.score, b.score);
    assert_eq!(a.periods, b.periods);
    assert_ne!(a.score, c.score, "another seed, other noise");
}

/// What the default law must reach in each phase of a plant family, on every seed: share of
/// settled intervals in the SLO, good queries over the best static limit of the phase
/// (searched over `rps` and window, in hindsight), intervals to recover 80% of that static's
/// good rate after a step, and overshoot (see `sim::judge`).
#[derive(Debug, Clone, Copy)]
struct Floors {
    compliance: f64,
    goodput: f64,
    recovery: usize,
    overshoot: f64,
}

/// The goals of the control issue.
const GOALS: Floors = Floors {
    compliance: regulator_sim::judge::GOAL_COMPLIANCE,
    goodput: regulator_sim::judge::GOAL_GOODPUT,
    recovery: 10,
    overshoot: 0.10,
};

/// Seeds every family is judged on.
const SEEDS: std::ops::RangeInclusive<u64> = 1..=5;

/// Judges the default law on `name` over [`SEEDS`]: every phase must meet its floors (the
/// goals, or where the law loses, the floor BENCHMARKS.md marks as a loss). Prints the table,
/// with the best static limit of each phase. Returns, per phase and worst over the seeds,
/// the good queries of the best static limit that meets the compliance goal over the best
/// static's: under the goodput goal, no static limit meets both goals there.
fn family(name: &str, floors: [Floors; 3]) -> [f64; 3] {
    let s = Scenario::built_in(name).expect("a built-in family");
    let mut failures = Vec::new();
    let mut within = [f64::INFINITY; 3];
    for seed in SEEDS {
        let j = regulator_sim::judge::judge_all(&s, seed, Some("predictive"));
        let (law, phases) = &j.laws[0];
        assert_eq!(law, "regulator predictive", "{name}: the default law");
        assert_eq!(phases.len(), floors.len(), "{name}: three phases");
        for (p, ((score, floor), reference)) in
            phases.iter().zip(&floors).zip(&j.references).enumerate()
        {
            eprintln!(
                "{name} seed {seed} phase {p}: compliance {:.3} goodput {:.3} recovery {:?} \
                 overshoot {:.3} (best static: {}, {:.0} good/s; meeting the compliance \
                 goal: {:.3} of it)",
                score.compliance,
                score.goodput,
                score.recovery,
                score.overshoot,
                reference.law,
                reference.good_rate,
                reference.within_goal
            );
            within[p] = within[p].min(reference.within_goal);
            let recovered = p == 0 || score.recovery.is_some_and(|r| r <= floor.recovery);
            if score.compliance < floor.compliance
                || score.goodput < floor.goodput
                || !recovered
                || score.overshoot > floor.overshoot
            {
                failures.push(format!("seed {seed} phase {p}: {score:?} under {floor:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{name}:\n{}", failures.join("\n"));
    within
}

/// The goals can be met together in every phase of `name` by a static limit in hindsight, so
/// a law that misses them there loses to the plant, not to goals no limit could meet.
fn feasible(name: &str, within: [f64; 3]) {
    assert!(
        within.iter().all(|w| *w >= GOALS.goodput),
        "{name}: the best static limit meeting the compliance goal serves only {within:?} of \
         the best one's good queries"
    );
}

#[test]
fn every_plant_family_is_judged_on_five_seeds_against_the_best_static_limit() {
    let names: Vec<&str> = regulator_sim::scenario::FAMILIES.to_vec();
    assert_eq!(
        names,
        [
            "family-formula",
            "family-pool",
            "family-cliff",
            "family-saturating",
            "family-neighbour",
            "family-threads"
        ],
        "a family added here needs a test below"
    );
}

/// A floor under the goals where the default law loses: each is marked in BENCHMARKS.md.
const fn loses(compliance: f64, goodput: f64, recovery: usize, overshoot: f64) -> Floors {
    Floors {
        compliance,
        goodput,
        recovery,
        overshoot,
    }
}

#[test]
fn the_formula_family_meets_the_goals_but_the_halved_phase_goodput() {
    // LOSES: phase 1 goodput 86% of the best static (goal 90%).
    let within = family(
        "family-formula",
        [GOALS, loses(0.95, 0.85, 10, 0.10), GOALS],
    );
    feasible("family-formula", within);
}

#[test]
fn the_connection_pool_family_holds_its_floors_and_meets_the_goals_when_capacity_returns() {
    // LOSES: compliance 92% in phases 0 and 1 (goal 95%), goodput 85-89% of the best
    // static (goal 90%), overshoot up to 21% (goal 10%): the pool's latency is flat until a
    // few connections are left, so a raise past capacity shows late. Trusting the latest
    // signal under steady demand in the fast recovery (2026-12-07) met every goal when
    // capacity returns (goodput 91% -> 94%, recovery 9 -> 5, overshoot 12% -> 4%) and cost
    // the startup (compliance 92% -> 90%, overshoot 15% -> 21%).
    let within = family(
        "family-pool",
        [
            loses(0.89, 0.85, 10, 0.22),
            loses(0.91, 0.88, 10, 0.14),
            GOALS,
        ],
    );
    feasible("family-pool", within);
}

#[test]
fn the_cliff_family_meets_the_goals_but_the_returned_phase_goodput() {
    // LOSES: phase 2 goodput 86% of the best static (goal 90%).
    let within = family("family-cliff", [GOALS, GOALS, loses(0.95, 0.84, 10, 0.10)]);
    feasible("family-cliff", within);
}

#[test]
fn the_saturating_signal_family_holds_its_floors() {
    // LOSES: in the halved phase, compliance 94%, goodput 87%, recovery 12 intervals and
    // overshoot 11% (goals 95%, 90%, 10, 10%): a signal capped at 1.6 x the target hides how
    // deep an overload is, so a cut is too shallow and repeated.
    let within = family(
        "family-saturating",
        [GOALS, loses(0.93, 0.86, 13, 0.13), GOALS],
    );
    feasible("family-saturating", within);
}

#[test]
fn the_neighbour_family_holds_its_floors() {
    // LOSES, widely: compliance 54-80% and goodput 37-80% of the best static (goals 95%, 90%),
    // recovery 19 intervals after capacity returns (goal 10). A neighbour taking 40% of the
    // capacity for 60 s of every 120 s moves the latency with something the law cannot see;
    // it cuts for each of its spells and recovers too slowly between them. The escalated
    // cuts (a creeping signal past 1.5 × target, which fixed the live limitlion service)
    // cost it here: phase 0 goodput 79.7% -> 75.3%, phase 2 overshoot 0% -> 22.4%
    // (BENCHMARKS.md records the trade). Trusting the latest signal under steady demand in
    // the fast recovery (2026-12-07) won goodput back (phase 0 75% -> 92%, phase 2 77% ->
    // 93%, overshoot 22% -> 0%) and cost phase 2 compliance (80% -> 76%).
    let within = family(
        "family-neighbour",
        [
            loses(0.78, 0.88, 10, 0.05),
            loses(0.50, 0.42, 10, 0.05),
            loses(0.75, 0.90, 16, 0.05),
        ],
    );
    // Nor can a static limit meet both goals here: the best one that meets the compliance
    // goal serves 43-72% of the best one's good queries.
    assert!(
        within.iter().all(|w| *w < GOALS.goodput),
        "the neighbour's goals became feasible for a static limit: {within:?}"
    );
}

#[test]
fn the_threads_family_holds_its_floors() {
    // LOSES: in the halved phase, compliance 92% (goal 95%) and overshoot up to 10.4% (goal
    // 10%): at 24 rps in whole-second grants this pool's p99 sits at 0.8-1.0 × the target,
    // so its noise crosses it. (Before the saturated cut of 2026-12-07: 88%, 94.7% goodput,
    // recovery 9, overshoot 17%; with it, before a cut from the rate served held off
    // escalations: 90%, 96.5%, 8, 12.5%; and before it applied past the target, not only
    // past 1.5 × it: 92%, 95.3%, 8, 12.5%.)
    let within = family(
        "family-threads",
        [GOALS, loses(0.92, 0.97, 10, 0.11), GOALS],
    );
    feasible("family-threads", within);
}

/// The halved phase of `family-threads` steered by the default law, per seed: the share of
/// settled intervals (from 10 intervals after the step) with p99 within the target.
fn threads_halved_compliance(s: &Scenario) -> Vec<f64> {
    let target = s.policy.throttle.signal.target;
    SEEDS
        .map(|seed| {
            let mut law = Daemon::new("default", &s.policy.throttle, s.policy.interval);
            let trace = sim::run(s, &mut law, seed);
            let settled: Vec<_> = trace
                .periods
                .iter()
                .filter(|p| p.end > 320.0 && p.end <= 600.0)
                .collect();
            let within = settled
                .iter()
                .filter(|p| p.p99.is_none_or(|p99| p99 <= target))
                .count();
            within as f64 / settled.len() as f64
        })
        .collect()
}

#[test]
fn the_rate_served_is_what_holds_the_threads_family() {
    let with = Scenario::built_in("family-threads").expect("built in");
    let mut without = with.clone();
    // Not exactly `histogram_quantile(φ, X)`: no throughput query is derived.
    without.policy.throttle.signal.query = format!("({})", with.policy.throttle.signal.query);
    assert!(with.policy.throttle.signal.throughput_query().is_some());
    assert!(without.policy.throttle.signal.throughput_query().is_none());
    let (with, without) = (
        threads_halved_compliance(&with),
        threads_halved_compliance(&without),
    );
    let worst = |v: &[f64]| v.iter().copied().fold(1.0, f64::min);
    eprintln!("halved phase compliance by seed: with {with:.3?}, without {without:.3?}");
    assert!(
        worst(&with) >= worst(&without) + 0.05,
        "with the rate served {with:.3?}, without {without:.3?}"
    );
}

/// Seeds of `threads-live` (the threads family on the live limitlion service's 80 s phases)
/// judged as `live_services.rs` judges that service: every phase from 10 intervals after its
/// step (15 after start), the share of intervals whose p99 is within 1.2 × the target and the
/// good queries over the SLO capacity. Per seed: whether it meets the live test's floors (75%,
/// 80%) and its goals (90%, 80%).
fn live_schedule(seeds: std::ops::RangeInclusive<u64>) -> Vec<(bool, bool)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../regulator-sim/scenarios/threads-live.yaml");
    let s = Scenario::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let target = s.policy.throttle.signal.target;
    let mut bounds = vec![0.0];
    bounds.extend(s.steps().iter().map(std::time::Duration::as_secs_f64));
    bounds.push(s.duration.as_secs_f64());
    seeds
        .map(|seed| {
            let mut law = Daemon::new("default", &s.policy.throttle, s.policy.interval);
            let trace = sim::run(&s, &mut law, seed);
            let (mut floors, mut goals) = (true, true);
            for (i, phase) in bounds.windows(2).enumerate() {
                let settle = if i == 0 { 30.0 } else { 20.0 };
                let settled: Vec<_> = trace
                    .periods
                    .iter()
                    .filter(|p| p.end > phase[0] + settle && p.end <= phase[1])
                    .collect();
                assert!(
                    !settled.is_empty(),
                    "seed {seed} phase {i}: no settled interval"
                );
                let n = settled.len() as f64;
                let within = settled
                    .iter()
                    .filter(|p| p.p99.is_none_or(|p99| p99 <= 1.2 * target))
                    .count() as f64
                    / n;
                let share = settled
                    .iter()
                    .map(|p| (p.served - p.timeouts) / p.length / p.slo_capacity)
                    .sum::<f64>()
                    / n;
                eprintln!(
                    "threads-live seed {seed} phase {i}: {:.1}% within 1.2 x target, {:.1}% of \
                     the SLO capacity",
                    100.0 * within,
                    100.0 * share
                );
                floors &= within >= 0.75 && share >= 0.8;
                goals &= within >= 0.9 && share >= 0.8;
            }
            (floors, goals)
        })
        .collect()
}

#[test]
fn the_live_limitlion_schedule_meets_the_live_tests_goals_in_all_30_seeds() {
    // 2026-12-07, before the saturated cut, 4 seeds missed the live test's floors and 9 its
    // goals; with it, seed 5 still missed (an escalation right after the cut from the rate
    // served cascaded to 18 rps, 73% of the SLO capacity, then climbed slowly).
    let seeds = live_schedule(1..=30);
    let floors = seeds.iter().filter(|(f, _)| !f).count();
    let goals = seeds.iter().filter(|(_, g)| !g).count();
    eprintln!("threads-live: {floors} of 30 seeds under the floors, {goals} under the goals");
    assert_eq!(floors, 0, "seeds under the live test's floors");
    assert_eq!(goals, 0, "seeds under the live test's goals");
}
