//! What a simulation runs: the backend, the fleet, the measurement path and the policy under
//! test. A scenario is YAML (the built-in ones are YAML too, in `scenarios/`), and its
//! `policy` is a throttle policy parsed and validated by the daemon's own config code.

use std::time::Duration;

use serde::Deserialize;
use serde_norway::Value;

use regulator_daemon::Policy;
use regulator_daemon::config::duration;
use regulator_daemon::config::locate::Locations;
use regulator_daemon::config::{ConfigError, ConfigErrors, Throttle, parse};

/// The built-in scenarios, by name, as YAML.
pub const BUILT_IN: [(&str, &str); 13] = [
    ("step-down", include_str!("scenarios/step-down.yaml")),
    ("step-up", include_str!("scenarios/step-up.yaml")),
    ("ramp", include_str!("scenarios/ramp.yaml")),
    ("noisy", include_str!("scenarios/noisy.yaml")),
    ("slow-signal", include_str!("scenarios/slow-signal.yaml")),
    ("vanish", include_str!("scenarios/vanish.yaml")),
    ("bursty", include_str!("scenarios/bursty.yaml")),
    (
        "family-formula",
        include_str!("scenarios/family-formula.yaml"),
    ),
    ("family-pool", include_str!("scenarios/family-pool.yaml")),
    ("family-cliff", include_str!("scenarios/family-cliff.yaml")),
    (
        "family-saturating",
        include_str!("scenarios/family-saturating.yaml"),
    ),
    (
        "family-neighbour",
        include_str!("scenarios/family-neighbour.yaml"),
    ),
    (
        "family-threads",
        include_str!("scenarios/family-threads.yaml"),
    ),
];

/// The plant families every law is judged on: one scenario each, the same capacity schedule
/// (halved, then back), so that a law is never judged on its own model alone; and a fleet
/// family, whose threads hold it under its limit.
pub const FAMILIES: [&str; 6] = [
    "family-formula",
    "family-pool",
    "family-cliff",
    "family-saturating",
    "family-neighbour",
    "family-threads",
];

/// Longest scenario: a day of simulated time keeps every count and product of durations far
/// from overflow.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// One simulation setup.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Its name, in tables and file names.
    pub name: String,
    /// One line on what it shows.
    pub description: String,
    /// Simulated time.
    pub duration: Duration,
    /// Scores count only after this.
    pub warmup: Duration,
    /// The backend's capacity over time.
    pub capacity: Vec<CapacityPoint>,
    /// The backend's family.
    pub plant: PlantModel,
    /// How latency responds to load.
    pub latency: LatencyModel,
    /// How much the fleet wants.
    pub demand: Demand,
    /// Scrapes, the rate window, and when the signal is gone.
    pub measurement: Measurement,
    /// The daemon's tick jitter (±, as a fraction of the interval).
    pub jitter: f64,
    /// The policy under test, with its effective interval.
    pub policy: Policy,
    /// SLO-capacity at each capacity of the schedule, computed once.
    slo: std::sync::OnceLock<Vec<(f64, f64)>>,
}

/// A point of the capacity schedule.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacityPoint {
    /// From when.
    #[serde(with = "duration")]
    pub at: Duration,
    /// Queries per second the backend completes.
    pub capacity: f64,
    /// Reach it linearly from the previous point (default: a step at `at`).
    #[serde(default)]
    pub ramp: bool,
}

/// The backend's family: how its latency answers the rate it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PlantModel {
    /// The queueing formula: p99 `latency.base / (1 - utilization)`, plus the backlog's wait.
    /// The predictive law inverts this very formula: judged on it alone, it proves little.
    #[default]
    Formula,
    /// A connection pool simulated query by query: `servers` connections, each query waits
    /// (first come, first served) for a free one and holds it for a log-normal service time
    /// (log standard deviation `sigma`; the mean makes the pool's throughput the scheduled
    /// capacity); a query that waits past `timeout` is given up. `latency.base` is unused.
    Pool {
        /// Connections.
        servers: u32,
        /// Standard deviation of the log of the service time.
        sigma: f64,
        /// The client's timeout.
        #[serde(with = "duration")]
        timeout: Duration,
    },
    /// Flat latency (`latency.base`) until saturation; past it the backlog's wait, up to the
    /// client's `timeout`, where queries are given up.
    Cliff {
        /// The client's timeout.
        #[serde(with = "duration")]
        timeout: Duration,
    },
    /// The formula, but every latency is seen capped at the client's `timeout`: far past the
    /// target the signal stops growing, however deep the overload.
    Saturating {
        /// The client's timeout.
        #[serde(with = "duration")]
        timeout: Duration,
    },
    /// The formula on a capacity shared with a neighbour who takes `share` of it in the first
    /// half of every `period`: the latency moves with something other than the rate.
    Neighbour {
        /// The neighbour's share of the capacity while it runs, in [0, 0.9].
        share: f64,
        /// One on/off cycle of the neighbour.
        #[serde(with = "duration")]
        period: Duration,
    },
}

impl PlantModel {
    /// Its name in tables.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Formula => "formula",
            Self::Pool { .. } => "pool",
            Self::Cliff { .. } => "cliff",
            Self::Saturating { .. } => "saturating",
            Self::Neighbour { .. } => "neighbour",
        }
    }
}

/// Latency: a queue's p99 is `base / (1 - utilization)`, plus the backlog's wait when the
/// arrivals outrun the capacity, times a slowly varying log-normal noise.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyModel {
    /// p99 latency at no load, seconds.
    pub base: f64,
    /// Standard deviation of the log of the noise factor.
    pub noise: f64,
    /// How long the noise takes to change (its correlation time).
    #[serde(with = "duration")]
    pub noise_time: Duration,
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self {
            base: 0.05,
            noise: 0.05,
            noise_time: Duration::from_secs(2),
        }
    }
}

/// The fleet's demand: attempts per second while tokens last, by workers that each wait for
/// their query before the next.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demand {
    /// Attempts per second.
    pub rate: f64,
    /// Workers: at most this many queries in flight (default 32).
    #[serde(default = "workers")]
    pub workers: u32,
    /// On/off demand: full `rate` for `duty` of each `period`, `low × rate` otherwise.
    pub bursts: Option<Bursts>,
}

/// On/off demand.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bursts {
    /// One cycle.
    #[serde(with = "duration")]
    pub period: Duration,
    /// Share of the cycle at full rate.
    pub duty: f64,
    /// Demand the rest of the cycle, as a share of `rate`.
    pub low: f64,
}

/// The path from the backend to the daemon.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Measurement {
    /// Prometheus' scrape interval.
    #[serde(with = "duration")]
    pub scrape: Duration,
    /// `0s`: the signal is a gauge of the last second's p99 (as `make demo` exports it);
    /// otherwise `histogram_quantile(0.99, rate(..._bucket[rate_window]))`.
    #[serde(with = "duration")]
    pub rate_window: Duration,
    /// Histogram bucket bounds in seconds (default: around the target).
    pub buckets: Option<Vec<f64>>,
    /// Spans during which the signal is gone (the exporter is down).
    pub vanish: Vec<Span>,
}

impl Default for Measurement {
    fn default() -> Self {
        Self {
            scrape: Duration::from_secs(1),
            rate_window: Duration::ZERO,
            buckets: None,
            vanish: Vec::new(),
        }
    }
}

/// A span of simulated time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    /// Start.
    #[serde(with = "duration")]
    pub from: Duration,
    /// End.
    #[serde(with = "duration")]
    pub to: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(with = "duration")]
    duration: Duration,
    #[serde(default, with = "duration::option")]
    warmup: Option<Duration>,
    capacity: Vec<CapacityPoint>,
    #[serde(default)]
    plant: PlantModel,
    #[serde(default)]
    latency: LatencyModel,
    demand: Demand,
    #[serde(default)]
    measurement: Measurement,
    #[serde(default = "ten_seconds", with = "duration")]
    interval: Duration,
    #[serde(default = "tenth")]
    jitter: f64,
    policy: Value,
}

fn workers() -> u32 {
    32
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

fn tenth() -> f64 {
    0.1
}

impl Scenario {
    /// A built-in scenario by name.
    ///
    /// # Panics
    /// If a built-in scenario does not parse (a test checks they all do).
    #[must_use]
    pub fn built_in(name: &str) -> Option<Self> {
        let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name)?;
        Some(Self::parse(text, name).expect("built-in scenarios are valid"))
    }

    /// Every built-in scenario.
    ///
    /// # Panics
    /// If a built-in scenario does not parse (a test checks they all do).
    #[must_use]
    pub fn all() -> Vec<Self> {
        BUILT_IN
            .iter()
            .map(|(n, t)| Self::parse(t, n).expect("built-in scenarios are valid"))
            .collect()
    }

    /// Reads a scenario file.
    ///
    /// # Errors
    /// Every problem found, each with its line and column, or the file that cannot be read.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigErrors> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            errors: vec![error(None, "", format!("cannot read the file: {e}"))],
            source: source.clone(),
        })?;
        Self::parse(&text, &source)
    }

    /// Parses scenario text; `source` names it in errors.
    ///
    /// # Errors
    /// Every problem found, each with its line and column where known.
    pub fn parse(text: &str, source: &str) -> Result<Self, ConfigErrors> {
        let locations = Locations::index(text);
        let fail = |errors: Vec<(String, String)>| ConfigErrors {
            source: source.to_owned(),
            errors: errors
                .into_iter()
                .map(|(path, msg)| error(locations.get(&path), &path, msg))
                .collect(),
        };
        let value: Value =
            serde_norway::from_str(text).map_err(|e| fail(vec![(String::new(), e.to_string())]))?;
        let file: File = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            fail(vec![(path, e.into_inner().to_string())])
        })?;
        let throttle = policy(file.policy.clone(), file.interval).map_err(|errors| {
            let mut e = fail(Vec::new());
            e.errors = errors
                .into_iter()
                .map(|c| {
                    let path = c.path.replacen("throttles[0]", "policy", 1);
                    let path = if path.is_empty() {
                        "policy".into()
                    } else {
                        path
                    };
                    error(locations.get(&path), &path, c.message)
                })
                .collect();
            e
        })?;
        let interval = throttle.interval.unwrap_or(file.interval);
        let scenario = Self {
            name: file.name,
            description: file.description,
            duration: file.duration,
            warmup: file.warmup.unwrap_or(interval.saturating_mul(10)),
            capacity: file.capacity,
            plant: file.plant,
            latency: file.latency,
            demand: file.demand,
            measurement: file.measurement,
            jitter: file.jitter,
            policy: Policy { throttle, interval },
            slo: std::sync::OnceLock::new(),
        };
        let problems = scenario.problems();
        if problems.is_empty() {
            Ok(scenario)
        } else {
            Err(fail(problems))
        }
    }

    /// The backend's capacity at `t` (seconds).
    #[must_use]
    pub fn capacity_at(&self, t: f64) -> f64 {
        let mut value = self.capacity[0].capacity;
        let mut prev_at = 0.0;
        for p in &self.capacity {
            let at = p.at.as_secs_f64();
            if t < at {
                if p.ramp && at > prev_at {
                    return value + (p.capacity - value) * (t - prev_at) / (at - prev_at);
                }
                return value;
            }
            value = p.capacity;
            prev_at = at;
        }
        value
    }

    /// The fleet's demand at `t` (seconds).
    #[must_use]
    pub fn demand_at(&self, t: f64) -> f64 {
        match self.demand.bursts {
            Some(b) => {
                let period = b.period.as_secs_f64();
                if (t % period) < b.duty * period {
                    self.demand.rate
                } else {
                    self.demand.rate * b.low
                }
            }
            None => self.demand.rate,
        }
    }

    /// The SLO-capacity at `capacity`: the highest steady `rps` knob (with the smallest burst
    /// and window the policy allows, under the full demand) at which the noise-free backend's p99
    /// meets the target. It includes what the bucket's whole-second grants cost, so it is
    /// what a law could really reach. Interpolated between the schedule's capacities.
    #[must_use]
    pub fn slo_capacity(&self, capacity: f64) -> f64 {
        let table = self.slo_table();
        let i = table.partition_point(|(c, _)| *c < capacity);
        match (table.get(i.wrapping_sub(1)), table.get(i)) {
            (Some(&(c0, s0)), Some(&(c1, s1))) if c1 > c0 => {
                s0 + (s1 - s0) * (capacity - c0) / (c1 - c0)
            }
            (_, Some(&(c, s))) | (Some(&(c, s)), None) => s * capacity / c,
            (None, None) => 0.0,
        }
    }

    fn slo_table(&self) -> &[(f64, f64)] {
        self.slo.get_or_init(|| {
            let mut caps: Vec<f64> = self.capacity.iter().map(|p| p.capacity).collect();
            caps.sort_by(f64::total_cmp);
            caps.dedup();
            caps.into_iter()
                .map(|c| (c, super::reachable(self, c)))
                .collect()
        })
    }

    /// When the capacity steps (the moments settling is measured from).
    #[must_use]
    pub fn steps(&self) -> Vec<Duration> {
        self.capacity
            .iter()
            .skip(1)
            .filter(|p| !p.ramp)
            .map(|p| p.at)
            .collect()
    }

    /// Whether the signal is gone at `t`.
    #[must_use]
    pub fn vanished(&self, t: Duration) -> bool {
        self.measurement
            .vanish
            .iter()
            .any(|s| s.from <= t && t < s.to)
    }

    /// Histogram bounds: given ones, or a ladder around the target.
    #[must_use]
    pub fn buckets(&self) -> Vec<f64> {
        self.measurement.buckets.clone().unwrap_or_else(|| {
            let t = self.policy.throttle.signal.target;
            [
                0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0,
                10.0, 20.0,
            ]
            .iter()
            .map(|f| f * t)
            .collect()
        })
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut p = Vec::new();
        let mut check = |ok: bool, path: &str, msg: &str| {
            if !ok {
                p.push((path.to_owned(), msg.to_owned()));
            }
        };
        let interval = self.policy.interval;
        check(
            self.duration <= MAX_DURATION,
            "duration",
            "must be at most 24h",
        );
        check(
            self.duration >= interval.saturating_mul(10),
            "duration",
            "must be at least 10 intervals",
        );
        check(
            self.warmup < self.duration,
            "warmup",
            "must be shorter than the duration",
        );
        check(
            self.capacity.first().is_some_and(|p| p.at.is_zero()),
            "capacity",
            "must start with a point at 0s",
        );
        for (i, c) in self.capacity.iter().enumerate() {
            let at = format!("capacity[{i}]");
            check(
                c.capacity.is_finite() && c.capacity > 0.0,
                &format!("{at}.capacity"),
                "must be a number above 0",
            );
            check(
                i == 0 || c.at >= self.capacity[i - 1].at,
                &format!("{at}.at"),
                "points must be in time order",
            );
        }
        let target = self.policy.throttle.signal.target;
        let l = self.latency;
        check(
            l.base.is_finite() && l.base > 0.0 && l.base < target,
            "latency.base",
            "must be above 0 and below the policy's target (else no load meets it)",
        );
        check(
            l.noise.is_finite() && (0.0..=2.0).contains(&l.noise),
            "latency.noise",
            "must be in [0, 2]",
        );
        check(
            !l.noise_time.is_zero(),
            "latency.noise_time",
            "must be above 0",
        );
        self.plant_model(&mut check);
        self.fleet_and_measurement(&mut check);
        check(
            (0.0..=0.5).contains(&self.jitter),
            "jitter",
            "must be in [0, 0.5]",
        );
        p
    }

    fn plant_model(&self, check: &mut impl FnMut(bool, &str, &str)) {
        let timeout = |t: Duration, check: &mut dyn FnMut(bool, &str, &str)| {
            check(
                t.as_secs_f64() > self.policy.throttle.signal.target && t.as_secs() <= 30,
                "plant.timeout",
                "must be above the policy's target and at most 30s",
            );
        };
        match self.plant {
            PlantModel::Formula => {}
            PlantModel::Pool {
                servers,
                sigma,
                timeout: t,
            } => {
                check(
                    (1..=10_000).contains(&servers),
                    "plant.servers",
                    "must be in [1, 10000]",
                );
                check(
                    sigma.is_finite() && (0.0..=3.0).contains(&sigma),
                    "plant.sigma",
                    "must be in [0, 3]",
                );
                timeout(t, check);
            }
            PlantModel::Cliff { timeout: t } | PlantModel::Saturating { timeout: t } => {
                timeout(t, check);
            }
            PlantModel::Neighbour { share, period } => {
                check(
                    share.is_finite() && (0.0..=0.9).contains(&share),
                    "plant.share",
                    "must be in [0, 0.9]",
                );
                check(
                    period.as_millis() >= 200,
                    "plant.period",
                    "must be at least 200ms",
                );
            }
        }
    }

    fn fleet_and_measurement(&self, check: &mut impl FnMut(bool, &str, &str)) {
        check(
            self.demand.rate.is_finite() && self.demand.rate > 0.0 && self.demand.rate < 1e7,
            "demand.rate",
            "must be above 0 and below 10 million",
        );
        check(
            (1..=1_000_000).contains(&self.demand.workers),
            "demand.workers",
            "must be in [1, 1000000]",
        );
        if let Some(b) = self.demand.bursts {
            check(
                !b.period.is_zero(),
                "demand.bursts.period",
                "must be above 0",
            );
            check(
                (0.0..=1.0).contains(&b.duty),
                "demand.bursts.duty",
                "must be in [0, 1]",
            );
            check(
                (0.0..=1.0).contains(&b.low),
                "demand.bursts.low",
                "must be in [0, 1]",
            );
        }
        let m = &self.measurement;
        check(
            m.scrape.as_millis() >= 100,
            "measurement.scrape",
            "must be at least 100ms",
        );
        check(
            m.rate_window.is_zero() || m.rate_window >= m.scrape.saturating_mul(2),
            "measurement.rate_window",
            "must be 0s (a gauge) or at least two scrapes",
        );
        if let Some(b) = &m.buckets {
            check(
                !b.is_empty()
                    && b.iter().all(|x| x.is_finite() && *x > 0.0)
                    && b.windows(2).all(|w| w[0] < w[1]),
                "measurement.buckets",
                "must be increasing numbers above 0",
            );
        }
        for (i, s) in m.vanish.iter().enumerate() {
            check(
                s.from < s.to,
                &format!("measurement.vanish[{i}]"),
                "from must be before to",
            );
        }
    }
}

/// The policy, through the daemon's config parser: wrapped as the only throttle of a config.
fn policy(value: Value, interval: Duration) -> Result<Throttle, Vec<ConfigError>> {
    let mut root = serde_norway::Mapping::new();
    root.insert(
        "interval".into(),
        format!("{}ms", interval.as_millis()).into(),
    );
    root.insert("throttles".into(), Value::Sequence(vec![value]));
    let text = serde_norway::to_string(&root).map_err(|e| {
        vec![error(
            None,
            "policy",
            format!("cannot be read as a policy: {e}"),
        )]
    })?;
    let config = parse(&text, "policy").map_err(|e| e.errors)?;
    let throttle = config.throttles.into_iter().next();
    throttle.ok_or_else(|| vec![error(None, "policy", "is missing".into())])
}

fn error(
    location: Option<regulator_daemon::config::locate::Location>,
    path: &str,
    message: String,
) -> ConfigError {
    ConfigError {
        location,
        path: path.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_parses_and_is_distinct() {
        let all = Scenario::all();
        assert_eq!(all.len(), BUILT_IN.len());
        for (s, (name, _)) in all.iter().zip(BUILT_IN) {
            assert_eq!(s.name, name, "file name and `name:` agree");
        }
    }

    #[test]
    fn the_example_file_parses_and_means_what_it_says() {
        let s = Scenario::parse(
            include_str!("../../../config/scenario.yaml"),
            "scenario.yaml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.name, "my-database");
        assert_eq!(s.policy.interval, Duration::from_secs(5));
        assert_eq!(s.warmup, Duration::from_secs(50));
        assert_eq!(s.steps(), vec![Duration::from_secs(300)]);
        assert_eq!(s.policy.throttle.control.law(), "predictive");
    }

    #[test]
    fn the_live_schedule_file_is_the_threads_family_in_80_s_phases() {
        let live = Scenario::parse(
            include_str!("../scenarios/threads-live.yaml"),
            "threads-live.yaml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let family = Scenario::built_in("family-threads").expect("built in");
        assert_eq!(live.name, "threads-live");
        assert_eq!(
            live.steps(),
            vec![Duration::from_secs(80), Duration::from_secs(160)]
        );
        assert_eq!(live.duration, Duration::from_secs(240));
        assert_eq!(
            format!("{:?}", live.policy),
            format!("{:?}", family.policy),
            "the same policy as the family"
        );
        assert_eq!(live.plant, family.plant, "the same plant as the family");
    }

    #[test]
    fn five_families_are_five_plants_the_sixth_a_fleet_and_bad_plants_are_refused() {
        let kinds: Vec<&str> = FAMILIES
            .iter()
            .map(|n| Scenario::built_in(n).expect("built in").plant.kind())
            .collect();
        assert_eq!(
            kinds,
            [
                "formula",
                "pool",
                "cliff",
                "saturating",
                "neighbour",
                "pool"
            ]
        );
        let threads = Scenario::built_in("family-threads").expect("built in");
        assert_eq!(threads.demand.workers, 48, "a fleet of threads on a pool");
        let text = |plant: &str| {
            format!(
                "name: x\nduration: 100s\ncapacity: [{{at: 0s, capacity: 100}}]\n\
                 demand: {{rate: 200}}\ninterval: 1s\nplant: {plant}\npolicy: {{name: t, \
                 defaults: {{rps: 5}}, bounds: {{min_rps: 1, max_rps: 10}}, \
                 signal: {{query: q, target: 0.25}}}}\n"
            )
        };
        for (plant, path) in [
            (
                "{kind: pool, servers: 0, sigma: 0.5, timeout: 1s}",
                "plant.servers",
            ),
            (
                "{kind: pool, servers: 8, sigma: 9, timeout: 1s}",
                "plant.sigma",
            ),
            ("{kind: cliff, timeout: 0.1s}", "plant.timeout"),
            ("{kind: neighbour, share: 1.5, period: 60s}", "plant.share"),
        ] {
            let e = Scenario::parse(&text(plant), "s.yaml").unwrap_err();
            assert!(e.errors.iter().any(|e| e.path == path), "{plant}: {e}");
        }
        assert!(Scenario::parse(&text("{kind: lava}"), "s.yaml").is_err());
        assert!(Scenario::parse(&text("{kind: saturating, timeout: 1s}"), "s.yaml").is_ok());
    }

    #[test]
    fn capacity_steps_and_ramps() {
        let s = Scenario::built_in("ramp").unwrap();
        let first = s.capacity[0].capacity;
        assert_eq!(s.capacity_at(0.0), first);
        let ramp = s.capacity.iter().position(|p| p.ramp).unwrap();
        let (a, b) = (s.capacity[ramp - 1], s.capacity[ramp]);
        let mid = f64::midpoint(a.at.as_secs_f64(), b.at.as_secs_f64());
        assert!((s.capacity_at(mid) - f64::midpoint(a.capacity, b.capacity)).abs() < 1e-9);
        let s = Scenario::built_in("step-down").unwrap();
        let at = s.steps()[0].as_secs_f64();
        assert!(s.capacity_at(at) < s.capacity_at(at - 0.01));
    }

    #[test]
    fn a_bad_policy_is_reported_at_its_line_under_policy() {
        let text = "name: x\nduration: 100s\ncapacity: [{at: 0s, capacity: 100}]\n\
                    demand: {rate: 200}\ninterval: 1s\npolicy:\n  name: t\n  defaults: {rps: 5}\n\
                    \x20 bounds: {min_rps: 10, max_rps: 1}\n  signal: {query: q, target: 0.25}\n";
        let e = Scenario::parse(text, "s.yaml").unwrap_err();
        let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"policy.bounds.max_rps"), "{e}");
        let at = e.errors.iter().find(|e| e.path == "policy.bounds.max_rps");
        assert_eq!(at.and_then(|e| e.location).map(|l| l.line), Some(9), "{e}");
    }

    #[test]
    fn a_bad_scenario_field_is_reported_at_its_line() {
        let text = "name: x\nduration: 100s\ncapacity:\n  - {at: 0s, capacity: lots}\n\
                    demand: {rate: 200}\npolicy: {}\n";
        let e = Scenario::parse(text, "s.yaml").unwrap_err();
        assert_eq!(e.errors[0].path, "capacity[0].capacity", "{e}");
        assert_eq!(e.errors[0].location.map(|l| l.line), Some(4), "{e}");
    }

    #[test]
    fn scenario_rules_are_all_reported() {
        let text = "name: x\nduration: 5s\ncapacity: [{at: 1s, capacity: -1}]\n\
                    latency: {base: 0.5}\ndemand: {rate: 0}\ninterval: 1s\njitter: 2\n\
                    policy: {name: t, defaults: {rps: 5}, bounds: {min_rps: 1, max_rps: 10}, \
                    signal: {query: q, target: 0.25}}\n";
        let e = Scenario::parse(text, "s.yaml").unwrap_err();
        let paths: Vec<&str> = e.errors.iter().map(|e| e.path.as_str()).collect();
        for p in [
            "duration",
            "capacity",
            "capacity[0].capacity",
            "latency.base",
            "demand.rate",
            "jitter",
        ] {
            assert!(paths.contains(&p), "{p} missing from {e}");
        }
    }
}
