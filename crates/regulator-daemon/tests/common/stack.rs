//! A real stack for daemon tests: `redis-server`, a `prometheus` scraping an exporter the
//! test sets gauges on, and configuration text pointing at both.

use std::time::{Duration, Instant};

use regulator_testing::{Exporter, PrometheusServer, RedisServer};

pub struct Stack {
    pub redis: RedisServer,
    pub exporter: Exporter,
    pub prometheus: PrometheusServer,
}

impl Stack {
    pub fn start() -> Self {
        Self::with_redis(RedisServer::start().expect("start redis-server"))
    }

    /// A stack around a Redis the test started itself (with an ACL file, say).
    pub fn with_redis(redis: RedisServer) -> Self {
        let exporter = Exporter::start().expect("start exporter");
        let prometheus = PrometheusServer::start(&[exporter.target()]).expect("start prometheus");
        Self {
            redis,
            exporter,
            prometheus,
        }
    }

    /// Waits until Prometheus answers `query` with at least `n` series.
    pub fn wait_scraped(&self, query: &str, n: usize) {
        let start = Instant::now();
        loop {
            let path = format!("/api/v1/query?query={query}");
            if let Ok((200, body)) = self.prometheus.get(&path) {
                let v: serde_json::Value = serde_json::from_str(&body).expect("json");
                if v["data"]["result"].as_array().is_some_and(|r| r.len() >= n) {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "prometheus never scraped {query}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A configuration for this stack: 1 s interval, 3 s lease, an ephemeral listen port.
    pub fn config(&self, throttles: &str) -> String {
        format!(
            "redis: {{ url: \"{}\" }}\n\
             prometheus: {{ url: \"{}\", timeout: 1s }}\n\
             listen: \"127.0.0.1:0\"\n\
             interval: 1s\n\
             leader: {{ lease: 3s }}\n\
             throttles:\n{throttles}",
            self.redis.url(),
            self.prometheus.url(),
        )
    }

    /// The stored `rps` knob of `name`.
    pub fn rps(&self, name: &str) -> Option<f64> {
        let v: Option<String> = self
            .redis
            .cmd(&["HGET", &format!("throttle:{name}:knobs"), "rps"]);
        v.map(|s| s.parse().expect("rps is a number"))
    }

    /// Waits until `ok` holds of the stored `rps` of `name`, within `within`; returns it.
    pub fn wait_rps(&self, name: &str, within: Duration, ok: impl Fn(f64) -> bool) -> f64 {
        let start = Instant::now();
        loop {
            if let Some(rps) = self.rps(name).filter(|r| ok(*r)) {
                return rps;
            }
            assert!(
                start.elapsed() < within,
                "{name}: rps {:?} after {within:?}",
                self.rps(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A throttle policy on gauge `series`, target 1, rps 100 in [0.01, 200], aimd +50 / ×0.5
/// (halving from 100 takes 14 ticks to reach the floor).
pub fn policy(name: &str, series: &str, on_no_data: &str) -> String {
    format!(
        "  - name: {name}\n    defaults: {{ rps: 100 }}\n    bounds: {{ min_rps: 0.01, max_rps: 200 }}\n    \
         signal: {{ query: '{series}', target: 1 }}\n    \
         control: {{ law: aimd, increase: 50, decrease: 0.5 }}\n    on_no_data: {on_no_data}\n"
    )
}
