//! A deterministic simulator of the closed loop, for tuning and judging control laws without
//! servers: the daemon's own [`Controller`](regulator_daemon::control::Controller) against a
//! model of the fleet, the backend and the measurement path.
//!
//! - [`scenario`]: what runs (backend, demand, scrapes, rate window, the policy under test);
//!   the built-in scenarios are YAML files in `src/scenarios/`.
//! - [`plant`]: the fleet taking tokens through the crate's bucket model, the backend's
//!   queue, its latency histogram, Prometheus' scrapes and `histogram_quantile`.
//! - [`laws`]: the daemon's controller and the baselines from other systems.
//! - [`score`](mod@score): compliance, goodput, settling, overshoot, oscillation.
//! - [`judge`]: each capacity phase against the best static limit of that phase, in hindsight.
//! - [`plot`]: one figure per scenario, a panel per law (SVG and PNG).
//! - `rng`: the seeded random source: the same seed gives the same run, on any machine.
//!
//! Every law of one comparison sees the same noise: noise and jitter come from their own
//! seeded streams, so nothing a law does changes what the others face.

pub mod judge;
pub mod laws;
pub mod plant;
pub mod plot;
mod rng;
pub mod scenario;
pub mod score;

use std::time::Duration;

use serde::Serialize;

use laws::{Baseline, Daemon, Kind, Law};
use plant::{Plant, QUANTILE, STEP};
use regulator::Knobs;
use regulator_daemon::config::Control;
use rng::Rng;
pub use scenario::Scenario;
pub use score::{Score, score};

/// One interval of a run, as scored and plotted.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    /// When it ends, seconds.
    pub end: f64,
    /// Its length, seconds.
    pub length: f64,
    /// The knobs in force at its end.
    pub knobs: Knobs,
    /// Queries served.
    pub served: f64,
    /// Tries denied by the bucket.
    pub denied: f64,
    /// Queries whose client gave up (a timeout): served, but not good.
    pub timeouts: f64,
    /// True p99 of the queries served in it; `None` if none was.
    pub p99: Option<f64>,
    /// What the daemon's last query in it returned.
    pub signal: Option<f64>,
    /// The backend's mean capacity, queries/s.
    pub capacity: f64,
    /// The rate that meets the target at that capacity, queries/s.
    pub slo_capacity: f64,
    /// The fleet's mean demand, tries/s.
    pub demand: f64,
}

impl Period {
    /// What could have been served inside the SLO, per second.
    #[must_use]
    pub fn possible(&self) -> f64 {
        self.slo_capacity.min(self.demand)
    }
}

/// One law's run of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    /// The law.
    pub law: String,
    /// One entry per interval.
    #[serde(skip)]
    pub periods: Vec<Period>,
    /// Its scores.
    pub score: Score,
}

/// Runs `scenario` with `law` steering the knobs.
pub fn run(scenario: &Scenario, law: &mut dyn Law, seed: u64) -> Trace {
    let mut plant = Plant::new(scenario, seed);
    let mut jitter = Rng::new(seed, 2);
    let interval = scenario.policy.interval.as_secs_f64();
    let mut next_tick = interval * (1.0 + scenario.jitter * (2.0 * jitter.uniform() - 1.0));
    let defaults: Knobs = scenario.policy.throttle.defaults.into();
    let mut stored: Option<Knobs> = None;
    let mut signal = None;
    let mut sent = 0.0;
    let steps = (scenario.duration.as_secs_f64() / STEP).round() as u64;
    let per_period = (interval / STEP).round().max(1.0) as u64;
    let mut periods = Vec::with_capacity((steps / per_period) as usize + 1);
    let (mut capacity, mut demand) = (0.0, 0.0);
    for k in 0..steps {
        let t = k as f64 * STEP;
        if t >= next_tick {
            signal = plant.query(t);
            let current = stored.unwrap_or_else(|| law.initial());
            let served = plant.sent() - sent;
            sent = plant.sent();
            let throughput = plant.throughput(t);
            let now = Duration::from_secs_f64(t);
            stored = Some(law.tick(current, signal, served, throughput, now));
            next_tick += interval * (1.0 + scenario.jitter * (2.0 * jitter.uniform() - 1.0));
        }
        let knobs = stored.unwrap_or(defaults);
        plant.step(t, knobs);
        capacity += scenario.capacity_at(t);
        demand += scenario.demand_at(t);
        if (k + 1) % per_period == 0 || k + 1 == steps {
            let n = ((k % per_period) + 1) as f64;
            let mut taken = plant.take_period();
            let mean_capacity = capacity / n;
            periods.push(Period {
                end: (k + 1) as f64 * STEP,
                length: n * STEP,
                knobs,
                served: taken.latencies.count(),
                denied: taken.denied,
                timeouts: taken.timeouts,
                p99: taken.latencies.quantile(QUANTILE),
                signal,
                capacity: mean_capacity,
                slo_capacity: scenario.slo_capacity(mean_capacity),
                demand: demand / n,
            });
            (capacity, demand) = (0.0, 0.0);
        }
    }
    let index = |d: Duration| (d.as_secs_f64() / interval).floor() as usize;
    let steps: Vec<usize> = scenario.steps().into_iter().map(index).collect();
    let warmup = (scenario.warmup.as_secs_f64() / interval).ceil() as usize;
    let score = score(
        &periods,
        scenario.policy.throttle.signal.target,
        &steps,
        warmup,
    );
    Trace {
        law: law.name(),
        periods,
        score,
    }
}

/// The highest static `rps` at which the noise-free plant at `capacity`, under the full
/// demand and with the smallest burst and window the policy allows, keeps the p99 of every
/// interval after the first few within the target.
fn reachable(scenario: &Scenario, capacity: f64) -> f64 {
    let mut quiet = scenario.clone();
    quiet.capacity = vec![scenario::CapacityPoint {
        at: Duration::ZERO,
        capacity,
        ramp: false,
    }];
    quiet.latency.noise = 0.0;
    quiet.demand.bursts = None;
    quiet.measurement.vanish.clear();
    quiet.duration = Duration::from_secs(40);
    let policy = &scenario.policy.throttle;
    let target = policy.signal.target;
    // The best shape the policy allows: the smallest grants.
    let defaults = Knobs {
        rps: policy.defaults.rps,
        burst: policy.bounds.min_burst.unwrap_or(policy.defaults.burst),
        window: policy.bounds.min_window.unwrap_or(policy.defaults.window),
    };
    let meets = |rps: f64| {
        let mut plant = Plant::new(&quiet, 0);
        let steps = (40.0 / STEP) as u64;
        let mut worst = 0.0_f64;
        for k in 0..steps {
            let t = k as f64 * STEP;
            plant.step(t, Knobs { rps, ..defaults });
            if (k + 1) % (5.0 / STEP) as u64 == 0 {
                let mut taken = plant.take_period();
                if t > 10.0 {
                    worst = worst.max(taken.latencies.quantile(QUANTILE).unwrap_or(0.0));
                }
            }
        }
        worst <= target
    };
    let (mut lo, mut hi) = (0.0, capacity.min(scenario.demand.rate));
    if meets(hi) {
        return hi;
    }
    for _ in 0..24 {
        let mid = f64::midpoint(lo, hi);
        if meets(mid) { lo = mid } else { hi = mid }
    }
    lo
}

/// Every law of a comparison on `scenario`: the policy as configured (first), the same with
/// burst and window fixed when the policy controls them, the daemon's other laws with their
/// default parameters, and the baselines; only those whose name contains `only`, if given.
pub fn compare(scenario: &Scenario, seed: u64, only: Option<&str>) -> Vec<Trace> {
    let wanted = |name: &str| only.is_none_or(|o| name.contains(o));
    let mut traces: Vec<Trace> = contenders(scenario)
        .iter_mut()
        .filter(|l| wanted(&l.name()))
        .map(|l| run(scenario, &mut **l, seed))
        .collect();
    if wanted("static (best)") {
        traces.push(best_static(scenario, seed));
    }
    traces
}

/// The adaptive laws a scenario compares: the policy as configured (first), the same with
/// burst and window fixed when the policy controls them, the daemon's other laws with the
/// parameters a user would set for the scenario (AIMD adding 2.5% of the highest capacity a
/// tick), and the baselines as published.
#[must_use]
pub fn contenders(scenario: &Scenario) -> Vec<Box<dyn Law>> {
    let policy = &scenario.policy.throttle;
    let interval = scenario.policy.interval;
    let law = policy.control.law();
    let mut laws: Vec<Box<dyn Law>> = vec![Box::new(Daemon::new(
        format!("regulator {law}"),
        policy,
        interval,
    ))];
    let b = policy.bounds;
    let controls_shape = b.min_burst.is_some()
        || b.max_burst.is_some()
        || b.min_window.is_some()
        || b.max_window.is_some();
    if controls_shape {
        let mut fixed = policy.clone();
        fixed.bounds.min_burst = None;
        fixed.bounds.max_burst = None;
        fixed.bounds.min_window = None;
        fixed.bounds.max_window = None;
        laws.push(Box::new(Daemon::new(
            format!("regulator {law}, fixed burst/window"),
            &fixed,
            interval,
        )));
    }
    let (_, highest) = capacity_range(scenario);
    for other in Control::defaults() {
        if other.law() != law {
            let mut p = policy.clone();
            p.control = match other {
                Control::Aimd { decrease, .. } => Control::Aimd {
                    increase: Some(highest * 0.025),
                    decrease,
                },
                other => other,
            };
            laws.push(Box::new(Daemon::new(
                format!("regulator {}", other.law()),
                &p,
                interval,
            )));
        }
    }
    for kind in [Kind::NetflixAimd, Kind::EnvoyGradient, Kind::Aperture] {
        laws.push(Box::new(Baseline::new(kind, policy)));
    }
    laws
}

/// The static limits a comparison searches: a geometric grid of `rps` from a tenth of the
/// lowest scheduled capacity to 1.2 times the highest, at each window of [`STATIC_WINDOWS`]
/// (times the default window; never under what keeps `burst × window` at 0.5 or more, so
/// limitlion keeps its bucket), each run whole.
#[must_use]
pub fn statics(scenario: &Scenario, seed: u64) -> Vec<Trace> {
    let (lo, hi) = capacity_range(scenario);
    grid(lo * 0.1, hi * 1.2, STATIC_GRID)
        .flat_map(|rps| static_windows(scenario).map(move |w| (rps, w)))
        .map(|(rps, window)| run_static(scenario, seed, rps, window))
        .collect()
}

/// Windows a static limit is searched over, as shares of the policy's default window.
pub const STATIC_WINDOWS: [f64; 3] = [2.0, 1.0, 0.5];
/// Points of the static `rps` grid.
const STATIC_GRID: u32 = 20;

fn static_windows(scenario: &Scenario) -> impl Iterator<Item = f64> + use<> {
    let d = scenario.policy.throttle.defaults;
    let least = 0.5 / d.burst.max(f64::MIN_POSITIVE);
    let mut windows: Vec<f64> = STATIC_WINDOWS
        .iter()
        .map(|f| (f * d.window).max(least))
        .collect();
    windows.dedup();
    windows.into_iter()
}

fn capacity_range(scenario: &Scenario) -> (f64, f64) {
    scenario
        .capacity
        .iter()
        .map(|p| p.capacity)
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), c| {
            (lo.min(c), hi.max(c))
        })
}

/// `n` points from `from` to `to`, evenly spaced in log.
fn grid(from: f64, to: f64, n: u32) -> impl Iterator<Item = f64> {
    (0..n).map(move |i| from * (to / from).powf(f64::from(i) / f64::from(n.max(2) - 1)))
}

/// One static run at `rps` and `window` (the default burst).
#[must_use]
pub fn run_static(scenario: &Scenario, seed: u64, rps: f64, window: f64) -> Trace {
    let policy = &scenario.policy.throttle;
    let knobs = Knobs {
        rps,
        burst: policy.defaults.burst,
        window,
    };
    let mut trace = run(
        scenario,
        &mut Baseline::new(Kind::Static(knobs), policy),
        seed,
    );
    trace.law = format!("static {rps:.0} rps, window {window}");
    trace
}

/// The static limit with the best compliance × goodput over the whole run, chosen in
/// hindsight among [`statics`].
///
/// # Panics
/// Never: the grid is not empty.
pub fn best_static(scenario: &Scenario, seed: u64) -> Trace {
    let mut best = statics(scenario, seed)
        .into_iter()
        .max_by(|a, b| a.score.product().total_cmp(&b.score.product()))
        .expect("a grid");
    best.law = best.law.replacen("static", "static (best)", 1);
    best
}
