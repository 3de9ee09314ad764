//! The worker library: a Redis connection and the limiters that share state through it.
//!
//! Everything here is available with `default-features = false`.

mod admin;
pub mod blocking;
mod connection;
mod error;
pub mod keys;
mod knobs;
mod limiter;
mod memory;
pub mod model;
mod scripts;
mod token_bucket;

pub use admin::ThrottleState;
pub use connection::{Client, ClientBuilder, DEFAULT_CALL_TIMEOUT, DEFAULT_CONNECT_TIMEOUT};
pub use error::{Error, Result};
pub use knobs::{Knobs, KnobsUpdate, StoredKnobs, lua_tonumber};
pub use limiter::Limiter;
pub use memory::{MAX_RATE, MAX_REFILL, MemoryBucket, MemoryLimiter};
pub use token_bucket::{DEFAULT_KNOBS_TTL, Decision, FailMode, Source, TokenBucket};
