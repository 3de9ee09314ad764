//! What the daemon examples (`daemon_bench`, `soak`) share: waiting for Prometheus to have
//! scraped every gauge, and reading the daemon's memory.

use std::time::{Duration, Instant};

use regulator_testing::PrometheusServer;

/// Waits until Prometheus answers `count(tenant_load)` with `n`.
pub fn wait_scraped(prometheus: &PrometheusServer, n: usize) {
    let scraped = Instant::now();
    loop {
        if let Ok((200, body)) = prometheus.get("/api/v1/query?query=count(tenant_load)") {
            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
            if v["data"]["result"][0]["value"][1].as_str() == Some(&n.to_string()) {
                return;
            }
        }
        assert!(scraped.elapsed() < Duration::from_secs(60), "never scraped");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A memory figure of `pid` (`VmRSS`, `VmHWM`) from `/proc/<pid>/status`, in MiB.
pub fn rss_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
