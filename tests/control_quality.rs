//! The default control law against the baselines, in every built-in scenario of the
//! simulator (deterministic: a seed gives the same run on any machine). These pin what
//! BENCHMARKS.md reports: a change to the law that makes it lose to a baseline, or fall under
//! a scenario's figures, fails here. Where a scenario misses the goals (SLO compliance 95%,
//! goodput 90%), its floor is what the law reaches, and BENCHMARKS.md says why.

use regulator::daemon::config::Control;
use regulator::sim::laws::{Baseline, Daemon, Kind, Law};
use regulator::sim::{self, Scenario, Trace};

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
