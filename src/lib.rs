//! # regulator
//!
//! An adaptive throttle controller. A daemon reads signals from Prometheus, runs a control loop
//! per named throttle and writes each throttle's limits (`rps`, `burst`, `window`) into the
//! Redis hash `throttle:<name>:knobs`. Workers take tokens from Redis-backed limiters that read
//! those knobs on every call, so the whole fleet slows down when the protected system hurts
//! and speeds up when it has headroom. Keys and arithmetic are wire-compatible with the Python
//! library limitlion: Python and Rust workers share buckets and obey the same daemon.
//!
//! ```no_run
//! # async fn f() -> Result<(), regulator::Error> {
//! let client = regulator::Client::connect("redis://127.0.0.1:6379/0").await?;
//! let orders = client.token_bucket("orders-db", regulator::Knobs { rps: 200.0, burst: 1.0, window: 5.0 });
//! let d = orders.consume(1.0).await?;
//! println!("allowed={} tokens={} retry in {:?}", d.allowed, d.tokens, d.sleep);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`client`]: the worker library, available without default features.
//!   - `connection`: [`Client`], one multiplexed auto-reconnecting connection, call timeouts
//!     (`builder`: options, TLS, connecting; `calls`: one bounded call; `cluster`: calls by
//!     hash slot and on every primary).
//!   - `decision`: [`Decision`], its [`Source`] and [`FailMode`], shared by every limiter.
//!   - `token_bucket`: [`TokenBucket`] and `Client::token_bucket`, the limitlion-compatible
//!     limiter (`lua/token_bucket.lua`, whose core, shared with the coalesced and leased
//!     scripts, is in `lua/token_bucket/`).
//!   - `leaky_bucket`: [`LeakyBucket`], aiosteady's leaky bucket with blocking
//!     (`lua/leaky_bucket.lua`, state in `throttle:<name>:leaky`).
//!   - `continuous_bucket`: [`ContinuousBucket`], python-redis-rate-limiter's continuously
//!     refilling bucket (`lua/continuous_bucket.lua`, state in `throttle:<name>:continuous`).
//!   - `reply`: reading the limiter scripts' replies (numbers, microseconds, sources).
//!   - `semaphore`: [`Semaphore`] and its [`Permit`]: at most N holders at once fleet-wide,
//!     each under a lease (`lua/semaphore_*.lua`, holders in `throttle:<name>:holders`).
//!   - `scheduled_bucket`: [`ScheduledBucket`], which never denies but reserves the time the
//!     tokens are there (`lua/scheduled_bucket.lua`).
//!   - `memory`: [`MemoryLimiter`] (a bucket per key) and [`MemoryBucket`] (one bucket), in
//!     process memory with no Redis: lock-free GCRA on an atomic, idle keys forgotten.
//!   - `limiter`: [`Limiter`], what the Redis and in-memory buckets have in common.
//!   - `admin`: `get`, `set_knobs`, `reset_knobs`, `delete` on [`Client`].
//!   - `knobs`: [`Knobs`], their validation, how stored values parse, their default TTL.
//!   - [`client::keys`]: key naming (`throttle:<name>`, hash tags for cluster).
//!   - [`client::model`]: the bucket arithmetic in pure Rust, as the script does it.
//!   - [`blocking`]: the same API for threaded workers.
//!   - `error`: [`Error`], one variant per thing a caller can act on.
//! - The controller daemon and its command line (`regulator run`, `check`, `status`, `set`,
//!   `reset`) are the workspace crate `regulator-daemon` (`crates/regulator-daemon`), built on
//!   this crate's public API; the closed-loop simulator is `regulator-sim`, and the
//!   real-server test fixtures are `regulator-testing`. Feature `test-util` adds this crate's
//!   test hooks (in-memory limiters at a given time, the frozen-clock scripts).

pub mod client;

pub use client::blocking;
pub use client::{
    Client, ClientBuilder, ContinuousBucket, ContinuousDecision, ContinuousParams, Decision, Error,
    FailMode, Knobs, KnobsUpdate, LeakyBucket, LeakyDecision, LeakyParams, LeaseOptions,
    LeaseStats, LeasedBucket, Limiter, MemoryBucket, MemoryLimiter, Permit, Reservation, Result,
    ScheduledBucket, ScheduledParams, Semaphore, SemaphoreParams, Source, StoredKnobs,
    ThrottleState, TokenBucket,
};
