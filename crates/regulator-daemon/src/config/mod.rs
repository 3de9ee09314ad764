//! The daemon's configuration: YAML, parsed strictly, then validated once, reporting every
//! problem with its line and column.
//!
//! - `types` (here): what a configuration holds, with its defaults; `connections`: the
//!   Redis, Prometheus, lease and history sections.
//! - [`load`]: text to [`Config`], collecting every structural error.
//! - `validate`: the rules a parsed configuration must satisfy.
//! - [`locate`]: paths in the document to lines and columns.

mod connections;
pub mod duration;
mod load;
pub mod locate;
mod validate;

use std::time::Duration;

use serde::Deserialize;

pub use connections::{
    BasicAuth, HistoryConfig, LeaderConfig, PrometheusConfig, RedisConfig, RedisTls,
};
pub use load::{ConfigError, ConfigErrors, load, parse};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the knobs live.
    pub redis: RedisConfig,
    /// Where the signals come from.
    pub prometheus: PrometheusConfig,
    /// Address of `/metrics`, `/healthz`, `/readyz`.
    pub listen: String,
    /// Default control period.
    pub interval: Duration,
    /// The leader lease that elects the one replica that writes.
    pub leader: LeaderConfig,
    /// The per-throttle change log.
    pub history: HistoryConfig,
    /// The throttles to control.
    pub throttles: Vec<Throttle>,
}

/// One throttle policy (or, with `signal.name_label`, a template for one throttle per series).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Throttle {
    /// The throttle's name; with `signal.name_label`, the prefix of every generated name.
    pub name: String,
    /// Which knob the policy drives: the token bucket's rate, or a semaphore's concurrency.
    #[serde(default)]
    pub knob: Knob,
    /// Start values, and what workers use without knobs.
    pub defaults: KnobValues,
    /// The daemon never writes knobs outside these.
    pub bounds: Bounds,
    /// What to watch.
    pub signal: Signal,
    /// How to react.
    #[serde(default)]
    pub control: Control,
    /// What to do when the signal is missing, stale or an error.
    #[serde(default)]
    pub on_no_data: OnNoData,
    /// This throttle's control period (default: the top-level `interval`).
    #[serde(default, with = "duration::option")]
    pub interval: Option<Duration>,
    /// Largest relative change of `rps` in one tick (0.5: at most ±50%). Default: 0.6 for
    /// the predictive law, whose cuts its model bounds (one tick takes a capacity drop of up
    /// to 60%), 0.5 for the others; see [`Throttle::max_step`].
    #[serde(default)]
    pub max_step: Option<f64>,
    /// After a decrease, no increase for this long.
    #[serde(default, with = "duration")]
    pub cooldown: Duration,
    /// No change while the signal is within this fraction of the target (0.05: ±5%).
    #[serde(default = "default_deadband")]
    pub deadband: f64,
    /// A template's cap on the throttles it governs (default 1,000); see
    /// [`Throttle::max_throttles`].
    #[serde(default)]
    pub max_throttles: Option<usize>,
    /// Whether Python limitlion workers may share this throttle's buckets (default: yes).
    /// limitlion deletes its bucket when `burst × window < 0.5` (its `EXPIRE` rounds to 0),
    /// and its workers then run unlimited; so while this is true the daemon never writes
    /// such knobs and `check` refuses bounds (or defaults) that allow them. `false` lifts the
    /// rule for a fleet that runs no limitlion.
    #[serde(default = "yes")]
    pub limitlion: bool,
}

/// The least `burst × window` limitlion keeps its bucket at: its `EXPIRE` of
/// `floor(burst × window × 2)` seconds deletes the bucket below it.
pub const LIMITLION_MIN_SPAN: f64 = 0.5;

fn yes() -> bool {
    true
}

/// How many throttles a template governs unless `max_throttles` says otherwise.
pub const DEFAULT_MAX_THROTTLES: usize = 1_000;

/// The largest `max_throttles` accepted.
pub const MAX_MAX_THROTTLES: usize = 100_000;

impl Throttle {
    /// One line about this policy, as `regulator check` prints it.
    #[must_use]
    pub fn describe(&self, interval: Duration) -> String {
        let d = self.defaults;
        let name = match &self.signal.name_label {
            Some(label) => format!("{}<{label}>", self.name),
            None => self.name.clone(),
        };
        format!(
            "{name}: {} every {}, rps {} in [{}, {}] (burst {}, window {}s), target {} of `{}`, no data: {:?}",
            self.control.law(),
            humantime::format_duration(self.interval.unwrap_or(interval)),
            d.rps,
            self.bounds.min_rps,
            self.bounds.max_rps,
            d.burst,
            d.window,
            self.signal.target,
            self.signal.query,
            self.on_no_data,
        )
    }
    /// The most throttles this template governs: the ones it already governs first, then new
    /// names in order; past the cap a name is refused (counted in
    /// `regulator_template_refused_total{reason="cap"}` and logged), and its workers keep
    /// whatever knobs they find, their defaults once those expire.
    #[must_use]
    pub fn max_throttles(&self) -> usize {
        self.max_throttles.unwrap_or(DEFAULT_MAX_THROTTLES)
    }

    /// The largest relative change of `rps` in one tick: as configured, or the law's default.
    #[must_use]
    pub fn max_step(&self) -> f64 {
        self.max_step.unwrap_or(match self.control {
            Control::Predictive { .. } => 0.6,
            _ => 0.5,
        })
    }
}

fn default_deadband() -> f64 {
    0.05
}

/// Which knob a policy drives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Knob {
    /// `rps` (and `burst`, `window` when bounded): token buckets, leaky and continuous
    /// buckets, scheduled buckets.
    #[default]
    Rate,
    /// `concurrency`: semaphores, so a fleet's concurrency adapts as Netflix's
    /// concurrency-limits and Envoy's adaptive concurrency do inside one process. Written as
    /// a whole number; `defaults.concurrency`, `bounds.min_concurrency` and
    /// `bounds.max_concurrency` replace `rps`, `min_rps` and `max_rps`.
    Concurrency,
}

impl Knob {
    /// The names of the level, its lower and its upper bound in this policy's YAML.
    #[must_use]
    pub fn names(self) -> [&'static str; 3] {
        match self {
            Self::Rate => ["defaults.rps", "bounds.min_rps", "bounds.max_rps"],
            Self::Concurrency => [
                "defaults.concurrency",
                "bounds.min_concurrency",
                "bounds.max_concurrency",
            ],
        }
    }
}

/// `defaults:` the knobs a throttle starts from.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnobValues {
    /// Tokens per second.
    pub rps: f64,
    /// Burst multiplier (default 1).
    #[serde(default = "one")]
    pub burst: f64,
    /// Window in seconds (default 5).
    #[serde(default = "five")]
    pub window: f64,
}

fn one() -> f64 {
    1.0
}

fn five() -> f64 {
    5.0
}

impl From<KnobValues> for regulator::Knobs {
    fn from(k: KnobValues) -> Self {
        Self {
            rps: k.rps,
            burst: k.burst,
            window: k.window,
        }
    }
}

/// `bounds:` the daemon never writes knobs outside these. Burst and window are controlled only
/// when bounded.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Lowest `rps` written.
    pub min_rps: f64,
    /// Highest `rps` written.
    pub max_rps: f64,
    /// Lowest `burst` (the daemon shrinks burst toward it while overloaded).
    pub min_burst: Option<f64>,
    /// Highest `burst`.
    pub max_burst: Option<f64>,
    /// Lowest `window`.
    pub min_window: Option<f64>,
    /// Highest `window`.
    pub max_window: Option<f64>,
}

/// `signal:` a PromQL query and its setpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// PromQL; must return one sample (or, with `name_label`, one per throttle).
    pub query: String,
    /// The setpoint.
    pub target: f64,
    /// Which side of the target means overloaded.
    #[serde(default)]
    pub direction: Direction,
    /// Template: one throttle per series, named `<name><value of this label>`.
    pub name_label: Option<String>,
    /// PromQL for the rate the protected system serves the throttle's work at, per second.
    /// When the throttle's limit is well above it (the fleet sends less than it may), a cut
    /// is computed from this rate, not from the limit, so it binds at once. Absent, it is
    /// derived from a `histogram_quantile(φ, X)` signal as `max(X)` (the `+Inf` bucket: the
    /// count of the histogram); [`Signal::throughput_query`] gives the one in use.
    pub throughput: Option<String>,
}

impl Signal {
    /// The throughput query in use: `throughput` if set, else one derived from a
    /// `histogram_quantile(φ, X)` query, else none. Templates (`name_label`) have none.
    #[must_use]
    pub fn throughput_query(&self) -> Option<std::borrow::Cow<'_, str>> {
        if self.name_label.is_some() {
            return None;
        }
        match &self.throughput {
            Some(q) => Some(std::borrow::Cow::Borrowed(q.as_str())),
            None => derived_throughput(&self.query).map(std::borrow::Cow::Owned),
        }
    }
}

/// `max(X)` for a query that is exactly `histogram_quantile(φ, X)`: the largest cumulative
/// bucket, `+Inf`, which counts every observation. `None` for any other query.
#[must_use]
pub fn derived_throughput(query: &str) -> Option<String> {
    let rest = query
        .trim()
        .strip_prefix("histogram_quantile")?
        .trim_start();
    let inner = rest.strip_prefix('(')?.strip_suffix(')')?;
    // The two arguments, split at the one comma outside brackets and quotes; the closing
    // parenthesis stripped above must close the call (the depth never goes below zero).
    let (mut depth, mut quote, mut comma) = (0_i32, None, None);
    for (i, c) in inner.char_indices() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            ',' if depth == 0 => {
                if comma.is_some() {
                    return None;
                }
                comma = Some(i);
            }
            _ => {}
        }
    }
    let x = inner[comma? + 1..].trim();
    (depth == 0 && quote.is_none() && !x.is_empty()).then(|| format!("max({x})"))
}

/// Which side of the target means overloaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Latency, error rate, queue depth: above the target is overloaded.
    #[default]
    HigherIsWorse,
    /// Free connections, success rate: below the target is overloaded.
    LowerIsWorse,
}

/// What to do when the signal is unusable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNoData {
    /// Keep the knobs as they are.
    #[default]
    Hold,
    /// Go back to `defaults`.
    Defaults,
    /// Go to `bounds.min_rps`: fail safe for the protected system.
    Min,
}

/// `control:` the law and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "law", rename_all = "lowercase", deny_unknown_fields)]
pub enum Control {
    /// The default: pairs the signal with the knobs that were in force while it was measured
    /// and moves toward the rate a queueing model predicts meets the target, a little under
    /// it. See [`crate::control::laws::predictive`].
    Predictive {
        /// Aim at least this share under the target (default 0.1); more when the signal is
        /// noisy, so that its noise rarely crosses the target.
        #[serde(default = "default_margin")]
        margin: f64,
        /// Share of the way up to the predicted rate taken each tick (default 1); cuts past
        /// the target always go all the way.
        #[serde(default = "default_gain")]
        gain: f64,
        /// The signal at no load, as a share of the target (default: learned from how the
        /// signal answers the law's moves, never above the lowest signal seen, kept between
        /// 0.1 and 0.5 of the target).
        floor: Option<f64>,
        /// How long after a knob change the signal starts to show it (default: one
        /// interval); the signal is paired with the knobs stored over the last `2 × lag` plus
        /// the query's range window (its largest `[...]`), so a lag off by up to 2× does no
        /// harm.
        #[serde(default, with = "duration::option")]
        lag: Option<Duration>,
    },
    /// Additive increase, multiplicative decrease.
    Aimd {
        /// rps added per tick while healthy (default: 5% of `max_rps`).
        increase: Option<f64>,
        /// Factor applied while overloaded (default 0.7).
        #[serde(default = "default_decrease")]
        decrease: f64,
    },
    /// PID on the relative error between target and signal.
    Pid {
        /// Proportional gain (default 0.5).
        #[serde(default = "default_kp")]
        kp: f64,
        /// Integral gain per second (default 0.05).
        #[serde(default = "default_ki")]
        ki: f64,
        /// Derivative gain, on the measurement (default 0).
        #[serde(default)]
        kd: f64,
    },
    /// `rps · clamp(target / signal, min_gradient, max_gradient) + headroom`, smoothed.
    Gradient {
        /// Lowest gradient (default 0.5).
        #[serde(default = "default_min_gradient")]
        min_gradient: f64,
        /// Highest gradient (default 1.2).
        #[serde(default = "default_max_gradient")]
        max_gradient: f64,
        /// rps added each tick so a healthy throttle probes upward (default 0).
        #[serde(default)]
        headroom: f64,
        /// Weight of the new value in the exponential smoothing (default 0.5).
        #[serde(default = "default_smoothing")]
        smoothing: f64,
    },
}

impl Default for Control {
    fn default() -> Self {
        Self::Predictive {
            margin: default_margin(),
            gain: default_gain(),
            floor: None,
            lag: None,
        }
    }
}

impl Control {
    /// Every law with its default parameters.
    #[must_use]
    pub fn defaults() -> [Self; 4] {
        [
            Self::default(),
            Self::Aimd {
                increase: None,
                decrease: default_decrease(),
            },
            Self::Pid {
                kp: default_kp(),
                ki: default_ki(),
                kd: 0.0,
            },
            Self::Gradient {
                min_gradient: default_min_gradient(),
                max_gradient: default_max_gradient(),
                headroom: 0.0,
                smoothing: default_smoothing(),
            },
        ]
    }

    /// The law's name, as in the config and in metrics.
    #[must_use]
    pub fn law(&self) -> &'static str {
        match self {
            Self::Predictive { .. } => "predictive",
            Self::Aimd { .. } => "aimd",
            Self::Pid { .. } => "pid",
            Self::Gradient { .. } => "gradient",
        }
    }
}

fn default_margin() -> f64 {
    0.1
}
fn default_gain() -> f64 {
    1.0
}
fn default_decrease() -> f64 {
    0.7
}
fn default_kp() -> f64 {
    0.5
}
fn default_ki() -> f64 {
    0.05
}
fn default_min_gradient() -> f64 {
    0.5
}
fn default_max_gradient() -> f64 {
    1.2
}
fn default_smoothing() -> f64 {
    0.5
}
