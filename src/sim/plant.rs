//! What the daemon controls, stepped every 10 ms of simulated time: a fleet taking tokens from
//! the crate's bucket model, a backend that queues what it is sent, and the measurement path
//! from the backend's latency histogram through scrapes and `histogram_quantile` to the
//! daemon's query.

use std::collections::VecDeque;

use super::rng::Rng;
use super::scenario::Scenario;
use crate::Knobs;
use crate::client::model::{self, Bucket};

/// Simulated time per step, seconds.
pub const STEP: f64 = 0.01;
/// The quantile every latency figure is about.
pub const QUANTILE: f64 = 0.99;
/// Utilization past which the queueing term stops growing; past it, the backlog does.
const MAX_UTILIZATION: f64 = 0.95;
/// Time constant of the load the queueing term sees, seconds: the mean load, while bursts
/// within a second show in the backlog.
const LOAD_TIME: f64 = 2.0;

/// Latency of the queries served in one step: every one waits for the backlog (`shift`),
/// then an exponential service-and-queue time with this `mean`.
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    /// Queries served.
    pub served: f64,
    /// Seconds of backlog ahead of them.
    pub shift: f64,
    /// Mean of the exponential part, seconds.
    pub mean: f64,
}

impl Slice {
    fn cdf(&self, x: f64) -> f64 {
        if x <= self.shift {
            0.0
        } else {
            1.0 - (-(x - self.shift) / self.mean).exp()
        }
    }
}

/// The `q` quantile of the latencies of every query in `slices`; `None` when none was served.
#[must_use]
pub fn quantile(slices: &[Slice], q: f64) -> Option<f64> {
    let total: f64 = slices.iter().map(|s| s.served).sum();
    if total <= 0.0 {
        return None;
    }
    let (mut lo, mut hi) = (0.0_f64, 0.0_f64);
    for s in slices.iter().filter(|s| s.served > 0.0) {
        hi = hi.max(s.shift + s.mean * (1.0 / (1.0 - q)).ln());
    }
    for _ in 0..60 {
        let mid = f64::midpoint(lo, hi);
        let below: f64 = slices.iter().map(|s| s.served * s.cdf(mid)).sum();
        if below >= q * total {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// Prometheus' `histogram_quantile`: `bounds` are the finite `le` values, `counts` the
/// cumulative counts for each and, last, for `+Inf`. Linear inside the bucket; a quantile in
/// the `+Inf` bucket is the highest finite bound; no observations is NaN.
#[must_use]
pub fn histogram_quantile(q: f64, bounds: &[f64], counts: &[f64]) -> f64 {
    let Some(&total) = counts.last() else {
        return f64::NAN;
    };
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let i = counts
        .iter()
        .position(|&c| c >= rank)
        .unwrap_or(bounds.len());
    if i >= bounds.len() {
        return bounds.last().copied().unwrap_or(f64::NAN);
    }
    let (start, below) = if i == 0 {
        (0.0, 0.0)
    } else {
        (bounds[i - 1], counts[i - 1])
    };
    let inside = counts[i] - below;
    if inside <= 0.0 {
        return bounds[i];
    }
    start + (bounds[i] - start) * (rank - below) / inside
}

/// The fleet, the backend and the measurement path.
pub struct Plant<'a> {
    scenario: &'a Scenario,
    noise_rng: Rng,
    noise: f64,
    load: f64,
    backlog: f64,
    bucket: Bucket,
    touched: f64,
    carry: f64,
    bounds: Vec<f64>,
    counts: Vec<f64>,
    scrapes: VecDeque<(f64, Vec<f64>, f64)>,
    second: Vec<Slice>,
    gauge: f64,
    /// Slices since the last [`Plant::take_period`].
    period: Vec<Slice>,
    denied: f64,
    /// Queries in flight, and when they finish (by step, in a ring).
    in_flight: f64,
    finishing: Vec<f64>,
    step: usize,
}

impl<'a> Plant<'a> {
    /// A fresh plant for `scenario`; `seed` drives its noise.
    #[must_use]
    pub fn new(scenario: &'a Scenario, seed: u64) -> Self {
        let bounds = scenario.buckets();
        let n = bounds.len() + 1;
        Self {
            scenario,
            noise_rng: Rng::new(seed, 1),
            noise: 0.0,
            load: 0.0,
            backlog: 0.0,
            bucket: Bucket::default(),
            touched: f64::NEG_INFINITY,
            carry: 0.0,
            bounds,
            counts: vec![0.0; n],
            scrapes: VecDeque::new(),
            second: Vec::new(),
            gauge: f64::NAN,
            period: Vec::new(),
            denied: 0.0,
            in_flight: 0.0,
            finishing: vec![0.0; 4096],
            step: 0,
        }
    }

    /// Advances one step from `t` (seconds) with the workers obeying `knobs`.
    pub fn step(&mut self, t: f64, knobs: Knobs) {
        let ring = self.finishing.len();
        let slot = self.step % ring;
        self.in_flight = (self.in_flight - std::mem::take(&mut self.finishing[slot])).max(0.0);
        let served = self.fleet(t, knobs);
        let slice = self.backend(t, served);
        // Its worker is busy until the query's (mean) latency has passed.
        let busy = ((slice.shift + slice.mean) / STEP).ceil().max(1.0) as usize;
        self.finishing[(self.step + busy.min(ring - 1)) % ring] += served;
        self.in_flight += served;
        self.step += 1;
        for (count, bound) in self.counts.iter_mut().zip(&self.bounds) {
            *count += served * slice.cdf(*bound);
        }
        if let Some(inf) = self.counts.last_mut() {
            *inf += served;
        }
        self.second.push(slice);
        self.period.push(slice);
        self.measure(t + STEP);
    }

    /// The daemon's query at `t` (seconds): `None` when Prometheus has no usable answer.
    #[must_use]
    pub fn query(&self, t: f64) -> Option<f64> {
        let m = &self.scenario.measurement;
        let value = if m.rate_window.is_zero() {
            self.scrapes.back().map(|(_, _, gauge)| *gauge)?
        } else {
            let from = t - m.rate_window.as_secs_f64();
            let mut inside = self.scrapes.iter().filter(|(at, _, _)| *at > from);
            let first = inside.next()?;
            let last = inside.next_back()?;
            let increase: Vec<f64> = last.1.iter().zip(&first.1).map(|(b, a)| b - a).collect();
            histogram_quantile(QUANTILE, &self.bounds, &increase)
        };
        value.is_finite().then_some(value)
    }

    /// Queries served and denied, and the slices, since the last call.
    pub fn take_period(&mut self) -> (Vec<Slice>, f64) {
        (
            std::mem::take(&mut self.period),
            std::mem::replace(&mut self.denied, 0.0),
        )
    }

    /// Workers try `demand × STEP` times; each try takes a token through the bucket model,
    /// as the script would, with the time Redis would give.
    fn fleet(&mut self, t: f64, knobs: Knobs) -> f64 {
        self.carry += self.scenario.demand_at(t) * STEP;
        let idle = (f64::from(self.scenario.demand.workers) - self.in_flight).max(0.0);
        let tries = self.carry.floor().min(idle.floor());
        // Tries no idle worker could make are not made later.
        self.carry = (self.carry - tries).min(1.0);
        let now = t.floor();
        let usec = ((t - now) * 1e6) as u32;
        if t - self.touched >= model::bucket_ttl(knobs) as f64 {
            self.bucket = Bucket::default();
        }
        let mut served = 0.0;
        for _ in 0..tries as u64 {
            let o = model::consume(self.bucket, knobs, now as i64, usec, 1.0);
            if let Some(b) = o.bucket {
                self.bucket = b;
                self.touched = t;
            }
            if !o.allowed {
                // Same second, same bucket: every further try this step is denied too.
                self.denied += tries - served;
                break;
            }
            served += 1.0;
        }
        served
    }

    /// The backend: a backlog when arrivals outrun the capacity, a queueing delay that
    /// grows as `1 / (1 - utilization)`, and slow log-normal noise on it.
    fn backend(&mut self, t: f64, served: f64) -> Slice {
        let capacity = self.scenario.capacity_at(t);
        let alpha = 1.0 - (-STEP / LOAD_TIME).exp();
        self.load += (served / STEP - self.load) * alpha;
        self.backlog = (self.backlog + served - capacity * STEP).max(0.0);
        let l = self.scenario.latency;
        let tau = l.noise_time.as_secs_f64();
        self.noise += -self.noise * STEP / tau
            + l.noise * (2.0 * STEP / tau).sqrt() * self.noise_rng.normal();
        let utilization = (self.load / capacity).min(MAX_UTILIZATION);
        let p99 = l.base / (1.0 - utilization) * self.noise.exp();
        Slice {
            served,
            shift: self.backlog / capacity,
            mean: p99 / (1.0 / (1.0 - QUANTILE)).ln(),
        }
    }

    /// The exporter's gauge (last second's p99) and Prometheus' scrapes.
    fn measure(&mut self, t: f64) {
        let whole = |x: f64, every: f64| (x / every).round() * every;
        if (t - whole(t, 1.0)).abs() < STEP / 2.0 {
            self.gauge = quantile(&self.second, QUANTILE).unwrap_or(f64::NAN);
            self.second.clear();
        }
        let at = std::time::Duration::from_secs_f64(t);
        if self.scenario.vanished(at) {
            // The target is down: Prometheus marks its series stale at once.
            self.scrapes.clear();
            return;
        }
        let m = &self.scenario.measurement;
        let scrape = m.scrape.as_secs_f64();
        if (t - whole(t, scrape)).abs() < STEP / 2.0 {
            self.scrapes.push_back((t, self.counts.clone(), self.gauge));
            let keep = m.rate_window.as_secs_f64() + 2.0 * scrape;
            while self
                .scrapes
                .front()
                .is_some_and(|(at, _, _)| *at < t - keep)
            {
                self.scrapes.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantile_interpolates_as_prometheus_does() {
        let bounds = [0.1, 0.2, 0.4];
        // 50 under 0.1, 40 in (0.1, 0.2], 9 in (0.2, 0.4], 1 above.
        let counts = [50.0, 90.0, 99.0, 100.0];
        assert!((histogram_quantile(0.5, &bounds, &counts) - 0.1).abs() < 1e-12);
        assert!((histogram_quantile(0.7, &bounds, &counts) - 0.15).abs() < 1e-12);
        assert!((histogram_quantile(0.99, &bounds, &counts) - 0.4).abs() < 1e-12);
        assert_eq!(histogram_quantile(0.999, &bounds, &counts), 0.4);
        assert!(histogram_quantile(0.99, &bounds, &[0.0; 4]).is_nan());
    }

    #[test]
    fn quantile_of_one_exponential_is_its_p99() {
        let mean = 0.25 / 100_f64.ln();
        let s = Slice {
            served: 10.0,
            shift: 0.0,
            mean,
        };
        assert!((quantile(&[s], 0.99).unwrap() - 0.25).abs() < 1e-9);
        let shifted = Slice { shift: 1.0, ..s };
        assert!((quantile(&[shifted], 0.99).unwrap() - 1.25).abs() < 1e-9);
        assert_eq!(quantile(&[Slice { served: 0.0, ..s }], 0.99), None);
        // A mixture lies between its parts.
        let q = quantile(&[s, shifted], 0.99).unwrap();
        assert!(q > 0.25 && q < 1.25, "{q}");
    }
}
