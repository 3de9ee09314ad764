//! Test support: real servers on free loopback ports, killed on drop.
//!
//! Every fixture starts the real program (`redis-server`, `prometheus`, `redis-cli --cluster`)
//! in a temporary directory, waits until it answers, and kills it when dropped. None touches
//! the default ports. A missing program is an error that names the command installing it,
//! never a skip.

mod cluster;
mod http;
mod process;
mod prometheus;
mod proxy;
mod python;
mod redis_server;

pub use cluster::RedisCluster;
pub use http::{Answer, Exporter, Scripted};
pub use process::{FixtureError, free_port};
pub use prometheus::PrometheusServer;
pub use proxy::Proxy;
pub use python::{LimitlionDriver, python};
pub use redis_server::{RedisServer, TlsMaterial};

/// The frozen-clock variant of a script's text, as the client builds it with
/// `ClientBuilder::frozen_time`: while the key `frozen_second` exists, `TIME` is read from it
/// (see [`RedisServer::freeze_time`]).
#[must_use]
pub fn frozen_script(script: &str) -> String {
    regulator::client::scripts::frozen(script)
}
