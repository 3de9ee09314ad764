//! What the daemon controls, stepped every 10 ms of simulated time: a fleet taking tokens from
//! the crate's bucket model, a backend that queues what it is sent, and the measurement path
//! from the backend's latency histogram through scrapes and `histogram_quantile` to the
//! daemon's query.
//!
//! The backend is one of the plant families of [`PlantModel`]: the queueing formula the
//! predictive law is built on, and others it was not (a connection pool simulated query by
//! query, a cliff, a signal capped by a client timeout, a neighbour's load).

use std::collections::VecDeque;

use super::rng::Rng;
use super::scenario::{PlantModel, Scenario};
use regulator::Knobs;
use regulator::client::model::{self, Bucket};

/// Simulated time per step, seconds.
pub const STEP: f64 = 0.01;
/// The quantile every latency figure is about.
pub const QUANTILE: f64 = 0.99;
/// Utilization past which the queueing term stops growing; past it, the backlog does.
const MAX_UTILIZATION: f64 = 0.95;
/// Time constant of the load the queueing term sees, seconds: the mean load, while bursts
/// within a second show in the backlog.
const LOAD_TIME: f64 = 2.0;

/// Latency of the queries served in one step by an analytic backend: every one waits for the
/// backlog (`shift`), then an exponential service-and-queue time with this `mean`; a client
/// that gives up at `cap` sees `cap` (infinite: no client timeout).
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    /// Queries served.
    pub served: f64,
    /// Seconds of backlog ahead of them.
    pub shift: f64,
    /// Mean of the exponential part, seconds.
    pub mean: f64,
    /// The client's timeout: no latency is seen above it.
    pub cap: f64,
}

impl Slice {
    fn cdf(&self, x: f64) -> f64 {
        if x >= self.cap {
            1.0
        } else if x <= self.shift {
            0.0
        } else {
            1.0 - (-(x - self.shift) / self.mean).exp()
        }
    }

    /// A latency above every one of the slice's but for a 1e-6 share.
    fn top(&self) -> f64 {
        (self.shift + self.mean * 1e6_f64.ln()).min(self.cap)
    }
}

/// The latencies of queries: analytic slices and single queries' latencies, as one
/// distribution.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    slices: Vec<Slice>,
    /// Single queries' latencies, sorted when `sorted`.
    points: Vec<f64>,
    sorted: bool,
}

impl Latencies {
    /// Queries counted.
    #[must_use]
    pub fn count(&self) -> f64 {
        self.slices.iter().map(|s| s.served).sum::<f64>() + self.points.len() as f64
    }

    fn push_slice(&mut self, s: Slice) {
        if s.served > 0.0 {
            self.slices.push(s);
        }
    }

    fn push_point(&mut self, latency: f64) {
        self.points.push(latency);
        self.sorted = false;
    }

    fn clear(&mut self) {
        self.slices.clear();
        self.points.clear();
        self.sorted = true;
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.points.sort_by(f64::total_cmp);
            self.sorted = true;
        }
    }

    /// How many latencies are at most `x` (the points must be sorted).
    fn below(&self, x: f64) -> f64 {
        let slices: f64 = self.slices.iter().map(|s| s.served * s.cdf(x)).sum();
        slices + self.points.partition_point(|&p| p <= x) as f64
    }

    /// The `q` quantile of every latency; `None` when there is none.
    #[must_use]
    pub fn quantile(&mut self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        self.sort();
        if self.slices.is_empty() {
            let rank = ((q * total).ceil() as usize).clamp(1, self.points.len());
            return Some(self.points[rank - 1]);
        }
        let mut hi = self.slices.iter().map(Slice::top).fold(0.0_f64, f64::max);
        hi = hi.max(self.points.last().copied().unwrap_or(0.0));
        let mut lo = 0.0_f64;
        for _ in 0..60 {
            let mid = f64::midpoint(lo, hi);
            if self.below(mid) >= q * total {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Some(hi)
    }
}

/// The `q` quantile of the latencies of every query in `slices`; `None` when none was served.
#[must_use]
pub fn quantile(slices: &[Slice], q: f64) -> Option<f64> {
    let mut l = Latencies::default();
    for s in slices {
        l.push_slice(*s);
    }
    l.quantile(q)
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
    /// Service times and arrival times inside a step (the pool's).
    service_rng: Rng,
    noise: f64,
    load: f64,
    backlog: f64,
    /// When each of the pool's servers is next free, seconds.
    servers: Vec<f64>,
    bucket: Bucket,
    touched: f64,
    carry: f64,
    bounds: Vec<f64>,
    counts: Vec<f64>,
    scrapes: VecDeque<(f64, Vec<f64>, f64)>,
    second: Latencies,
    gauge: f64,
    /// Latencies since the last [`Plant::take_period`].
    period: Latencies,
    denied: f64,
    /// Queries the fleet has sent since the start.
    sent: f64,
    /// Queries given up by their client since the last [`Plant::take_period`].
    timeouts: f64,
    /// Queries in flight, and when they finish (by step, in a ring).
    in_flight: f64,
    finishing: Vec<f64>,
    /// Single queries' latencies, seen when they finish (by step, in a ring).
    landing: Vec<Vec<f64>>,
    step: usize,
}

/// What a period of the plant did: its latencies, tries denied, queries timed out.
pub struct Taken {
    /// Latencies of the queries that finished in it.
    pub latencies: Latencies,
    /// Tries the bucket denied.
    pub denied: f64,
    /// Queries whose client gave up (their latency is the timeout).
    pub timeouts: f64,
}

/// Steps in the rings of queries finishing: 40 s, longer than any latency the plants keep.
const RING: usize = 4096;

impl<'a> Plant<'a> {
    /// A fresh plant for `scenario`; `seed` drives its noise.
    #[must_use]
    pub fn new(scenario: &'a Scenario, seed: u64) -> Self {
        let bounds = scenario.buckets();
        let n = bounds.len() + 1;
        let servers = match scenario.plant {
            PlantModel::Pool { servers, .. } => vec![0.0; servers as usize],
            _ => Vec::new(),
        };
        Self {
            scenario,
            noise_rng: Rng::new(seed, 1),
            service_rng: Rng::new(seed, 3),
            noise: 0.0,
            load: 0.0,
            backlog: 0.0,
            servers,
            bucket: Bucket::default(),
            touched: f64::NEG_INFINITY,
            carry: 0.0,
            bounds,
            counts: vec![0.0; n],
            scrapes: VecDeque::new(),
            second: Latencies::default(),
            gauge: f64::NAN,
            period: Latencies::default(),
            denied: 0.0,
            sent: 0.0,
            timeouts: 0.0,
            in_flight: 0.0,
            finishing: vec![0.0; RING],
            landing: vec![Vec::new(); RING],
            step: 0,
        }
    }

    /// Advances one step from `t` (seconds) with the workers obeying `knobs`.
    pub fn step(&mut self, t: f64, knobs: Knobs) {
        let slot = self.step % RING;
        self.in_flight = (self.in_flight - std::mem::take(&mut self.finishing[slot])).max(0.0);
        let mut landed = std::mem::take(&mut self.landing[slot]);
        for latency in landed.drain(..) {
            self.observe_point(latency);
        }
        // The emptied vector goes back, so the ring keeps its allocations.
        self.landing[slot] = landed;
        let served = self.fleet(t, knobs);
        self.sent += served;
        self.update_noise();
        if let PlantModel::Pool { .. } = self.scenario.plant {
            self.pool(t, served);
        } else {
            let slice = self.backend(t, served);
            // Its worker is busy until the query's (mean) latency has passed.
            let busy = (slice.shift + slice.mean).min(slice.cap);
            let _ = self.finish_in(busy, served);
            for (count, bound) in self.counts.iter_mut().zip(&self.bounds) {
                *count += served * slice.cdf(*bound);
            }
            if let Some(inf) = self.counts.last_mut() {
                *inf += served;
            }
            self.second.push_slice(slice);
            self.period.push_slice(slice);
        }
        self.step += 1;
        self.measure(t + STEP);
    }

    /// `n` queries started this step finish `latency` seconds later; returns the ring slot
    /// of that step.
    fn finish_in(&mut self, latency: f64, n: f64) -> usize {
        let steps = (latency / STEP).ceil().max(1.0) as usize;
        let slot = (self.step + steps.min(RING - 1)) % RING;
        self.finishing[slot] += n;
        self.in_flight += n;
        slot
    }

    /// One query's latency, seen as it finishes: in the histogram, the gauge and the period.
    fn observe_point(&mut self, latency: f64) {
        for (count, bound) in self.counts.iter_mut().zip(&self.bounds) {
            if latency <= *bound {
                *count += 1.0;
            }
        }
        if let Some(inf) = self.counts.last_mut() {
            *inf += 1.0;
        }
        self.second.push_point(latency);
        self.period.push_point(latency);
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

    /// The rate the histogram counted (its `+Inf` bucket) over the query's range window at
    /// `t`, as `rate()` would give it: `None` without a window or two scrapes in it.
    #[must_use]
    pub fn throughput(&self, t: f64) -> Option<f64> {
        let m = &self.scenario.measurement;
        if m.rate_window.is_zero() {
            return None;
        }
        let from = t - m.rate_window.as_secs_f64();
        let mut inside = self.scrapes.iter().filter(|(at, _, _)| *at > from);
        let first = inside.next()?;
        let last = inside.next_back()?;
        let rate = (last.1.last()? - first.1.last()?) / (last.0 - first.0);
        rate.is_finite().then_some(rate)
    }

    /// Queries the fleet has sent since the start.
    #[must_use]
    pub fn sent(&self) -> f64 {
        self.sent
    }

    /// What the plant did since the last call.
    pub fn take_period(&mut self) -> Taken {
        Taken {
            latencies: std::mem::take(&mut self.period),
            denied: std::mem::replace(&mut self.denied, 0.0),
            timeouts: std::mem::replace(&mut self.timeouts, 0.0),
        }
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

    /// The slow log-normal noise every backend's latency is multiplied by.
    fn update_noise(&mut self) {
        let l = self.scenario.latency;
        let tau = l.noise_time.as_secs_f64();
        self.noise += -self.noise * STEP / tau
            + l.noise * (2.0 * STEP / tau).sqrt() * self.noise_rng.normal();
    }

    /// The analytic backends: a backlog when arrivals outrun the capacity, and a latency
    /// that depends on the plant model.
    fn backend(&mut self, t: f64, served: f64) -> Slice {
        let mut capacity = self.scenario.capacity_at(t);
        let alpha = 1.0 - (-STEP / LOAD_TIME).exp();
        self.load += (served / STEP - self.load) * alpha;
        let l = self.scenario.latency;
        let noise = self.noise.exp();
        let (mut load, mut cap) = (self.load, f64::INFINITY);
        let queueing = match self.scenario.plant {
            PlantModel::Formula | PlantModel::Pool { .. } => true,
            PlantModel::Cliff { timeout } => {
                cap = timeout.as_secs_f64();
                false
            }
            PlantModel::Saturating { timeout } => {
                cap = timeout.as_secs_f64();
                true
            }
            PlantModel::Neighbour { share, period } => {
                // The neighbour takes `share` of the capacity in the first half of each period.
                let period = period.as_secs_f64();
                if t % period < period / 2.0 {
                    load += share * capacity;
                    capacity *= 1.0 - share;
                }
                true
            }
        };
        self.backlog = (self.backlog + served - capacity * STEP).max(0.0);
        let utilization = (load / self.scenario.capacity_at(t)).min(MAX_UTILIZATION);
        let p99 = if queueing {
            l.base / (1.0 - utilization) * noise
        } else {
            l.base * noise
        };
        let mut shift = self.backlog / capacity;
        if shift > cap {
            // Queries waiting longer than the client's timeout are given up: they leave the
            // backlog and count as timeouts.
            let gone = (shift - cap) * capacity;
            self.backlog -= gone;
            self.timeouts += gone.min(served);
            shift = cap;
        }
        Slice {
            served,
            shift,
            mean: p99 / (1.0 / (1.0 - QUANTILE)).ln(),
            cap,
        }
    }

    /// A pool of servers: each query waits for the first free server (first come, first
    /// served), then holds it for a log-normal service time; a query that waits past the
    /// client's timeout is given up and never holds a server. The mean service time is what
    /// makes the pool's throughput the scenario's capacity.
    fn pool(&mut self, t: f64, served: f64) {
        let PlantModel::Pool {
            servers,
            sigma,
            timeout,
        } = self.scenario.plant
        else {
            return;
        };
        let timeout = timeout.as_secs_f64();
        let mean = f64::from(servers) / self.scenario.capacity_at(t);
        let median = mean / (sigma * sigma / 2.0).exp() * self.noise.exp();
        for i in 0..served as u64 {
            // Arrivals spread evenly over the step.
            let at = t + STEP * (i as f64 + self.service_rng.uniform()) / served;
            let Some((first, &free)) = self
                .servers
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
            else {
                return;
            };
            let start = free.max(at);
            let latency = if start - at > timeout {
                self.timeouts += 1.0;
                timeout
            } else {
                let service = median * (sigma * self.service_rng.normal()).exp();
                self.servers[first] = start + service;
                let latency = start - at + service;
                if latency > timeout {
                    self.timeouts += 1.0;
                }
                latency.min(timeout)
            };
            let slot = self.finish_in(at - t + latency, 1.0);
            self.landing[slot].push(latency);
        }
    }

    /// The exporter's gauge (last second's p99) and Prometheus' scrapes.
    fn measure(&mut self, t: f64) {
        let whole = |x: f64, every: f64| (x / every).round() * every;
        if (t - whole(t, 1.0)).abs() < STEP / 2.0 {
            self.gauge = self.second.quantile(QUANTILE).unwrap_or(f64::NAN);
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
            cap: f64::INFINITY,
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
