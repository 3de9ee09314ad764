//! Shared set-up for the integration tests.
#![allow(dead_code)]

use regulator::testing::RedisServer;
use regulator::{Knobs, blocking};

/// A Unix second far from zero, as Redis TIME would give.
pub const T0: i64 = 1_700_000_000;

pub fn redis() -> RedisServer {
    RedisServer::start().expect("start redis-server")
}

/// A blocking client running the frozen-clock scripts, with the clock frozen at `T0`.
pub fn frozen_client(server: &RedisServer) -> blocking::Client {
    server.freeze_time(T0, 0);
    blocking::Client::from_builder(regulator::Client::builder(&server.url()).frozen_time(true))
        .expect("connect")
}

pub fn knobs(rps: f64, burst: f64, window: f64) -> Knobs {
    Knobs { rps, burst, window }
}

/// limitlion's own test grid.
pub fn grid() -> impl Iterator<Item = Knobs> {
    [1.0, 2.0, 5.0, 10.0].into_iter().flat_map(|window| {
        [1.0, 2.0, 3.3, 10.0].into_iter().flat_map(move |burst| {
            [0.0001, 0.2, 0.5, 0.6, 1.0, 2.0, 2.2, 5.0, 10.0]
                .into_iter()
                .map(move |rps| knobs(rps, burst, window))
        })
    })
}

pub fn name(prefix: &str, k: Knobs) -> String {
    format!("{prefix}-{}-{}-{}", k.rps, k.burst, k.window)
}

pub mod stack;
