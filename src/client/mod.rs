//! The worker library: a Redis connection and the limiters that share state through it.
//!
//! Everything here is available with `default-features = false`.

mod admin;
pub mod blocking;
mod coalesce;
mod connection;
mod continuous_bucket;
mod decision;
mod error;
mod ids;
pub mod keys;
mod knobs;
mod leaky_bucket;
mod lease;
mod limiter;
mod memory;
pub mod model;
mod reply;
mod scheduled_bucket;
mod script_call;
pub mod scripts;
mod semaphore;
mod token_bucket;

pub use admin::{OtherKinds, ThrottleState};
pub use connection::{
    Client, ClientBuilder, DEFAULT_CALL_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, redact_url,
};
pub use continuous_bucket::{ContinuousBucket, ContinuousDecision, ContinuousParams};
pub use decision::{Decision, FailMode, Source};
pub use error::{Error, Result};
pub use knobs::{DEFAULT_KNOBS_TTL, Knobs, KnobsUpdate, StoredKnobs, lua_tonumber};
pub use leaky_bucket::{LeakyBucket, LeakyDecision, LeakyParams};
pub use lease::{LeaseOptions, LeaseStats, LeasedBucket};
pub use limiter::Limiter;
pub use memory::{MAX_RATE, MAX_REFILL, MemoryBucket, MemoryLimiter};
pub use scheduled_bucket::{Reservation, ScheduledBucket, ScheduledParams};
pub use semaphore::{Permit, Semaphore, SemaphoreParams};
pub use token_bucket::TokenBucket;
