//! [`LeakyBucket`]: aiosteady's leaky bucket with blocking, shared through Redis
//! (`lua/leaky_bucket.lua`), and its blocking wrapper.

use std::time::Duration;

use super::connection::Client;
use super::decision::Source;
use super::error::{Error, Result};
use super::ids::unique_id;
use super::keys::check_name;
use super::reply;
use super::script_call::ScriptCall;
use super::scripts::ScriptId;

/// A leaky bucket's limits, as a worker passes them; the knobs hash overrides them per field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakyParams {
    /// Drops leaked per second, above 0: one drop leaves every `1 / rate` seconds
    /// (aiosteady's `drop_recharge`). Knob field `rps`.
    pub rate: f64,
    /// Drops the bucket holds, above 0; a consume that would take the level above it fails.
    /// Knob field `capacity`.
    pub capacity: f64,
    /// How long an overflowing consume blocks the bucket: every call fails until it is over.
    /// `None` (or zero) never blocks. Knob field `block`, in seconds (0 = none).
    pub block: Option<Duration>,
}

impl LeakyParams {
    /// Checks the values: `rate` and `capacity` finite and above 0 (and `1 / rate` finite).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let Self { rate, capacity, .. } = *self;
        if !(rate > 0.0 && rate.is_finite() && (1e6 / rate).is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "rate must be a finite number of drops per second above 0; got {rate}"
            )));
        }
        if !(capacity > 0.0 && capacity.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "capacity must be a finite number above 0; got {capacity}"
            )));
        }
        Ok(())
    }
}

/// The outcome of one [`LeakyBucket::consume`] or [`LeakyBucket::peek`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeakyDecision {
    /// Whether the consume succeeded; for a peek, whether consuming one drop would.
    pub allowed: bool,
    /// Drops in the bucket after the call: the real level, on a failed consume too.
    pub level: f64,
    /// Time until the next drop leaks out (a full `1 / rate` for an empty bucket; zero when
    /// the knobs' `rps` is 0 or -1).
    pub until_next_drop: Duration,
    /// Time left on the bucket's block; zero when it is not blocked.
    pub blocked_for: Duration,
    /// Which parameters applied.
    pub source: Source,
    /// The capacity that applied.
    pub capacity: f64,
    /// The leak rate that applied: 0 when the knobs deny every call, -1 when they allow every
    /// call (limitlion's meanings of `rps`).
    pub rate: f64,
}

impl LeakyDecision {
    /// Whether the bucket is blocked (every call fails until [`blocked_for`](Self::blocked_for)
    /// has passed).
    #[must_use]
    pub fn is_blocked(&self) -> bool {
        !self.blocked_for.is_zero()
    }
}

/// A named leaky bucket shared through Redis, as aiosteady's `Throttler` keeps it: each
/// consume adds drops, drops leak out one every `1 / rate` seconds, an overflow fails and may
/// block the bucket for a while. State lives in `throttle:<name>:leaky`; the limits may come
/// from the knobs hash `throttle:<name>:knobs` (fields `rps`, `capacity`, `block`), field by
/// field. Cheap to clone.
///
/// ```no_run
/// # async fn f() -> Result<(), regulator::Error> {
/// use std::time::Duration;
/// use regulator::LeakyParams;
/// let client = regulator::Client::connect("redis://127.0.0.1:6379/0").await?;
/// // Ten logins in a burst, then one every 5 s; a client that goes over waits a minute.
/// let logins = client.leaky_bucket(
///     "logins:alice",
///     LeakyParams { rate: 0.2, capacity: 10.0, block: Some(Duration::from_secs(60)) },
/// );
/// let d = logins.consume(1.0).await?;
/// if !d.allowed {
///     println!("retry in {:?}", d.blocked_for.max(d.until_next_drop));
/// }
/// let now = logins.peek().await?; // reads, changes nothing
/// println!("level {} of {}", now.level, now.capacity);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LeakyBucket {
    params: LeakyParams,
    call: ScriptCall,
}

crate::client::script_call::limiter_accessors!(LeakyBucket, call, params: LeakyParams);

impl Client {
    /// A leaky bucket named `name`. `params` apply field by field while the throttle's knobs
    /// hold no usable `rps`, `capacity` or `block`.
    #[must_use]
    pub fn leaky_bucket(&self, name: impl Into<String>, params: LeakyParams) -> LeakyBucket {
        LeakyBucket::new(self.clone(), name.into(), params)
    }
}

impl LeakyBucket {
    fn new(client: Client, name: String, params: LeakyParams) -> Self {
        let keys = client.keys();
        let keys = [keys.leaky(&name), keys.knobs(&name), keys.drains(&name)];
        let call = ScriptCall::new(client, name, ScriptId::LeakyBucket, &keys, |cmd| {
            cmd.arg(params.rate)
                .arg(params.capacity)
                .arg(params.block.map_or(0.0, |b| b.as_secs_f64()));
        });
        Self { params, call }
    }

    /// Adds `amount` drops if the level stays within capacity; one atomic script call.
    ///
    /// A negative amount drains drops (never below 0) and always succeeds, unless the bucket
    /// is blocked: while it is, every consume fails and changes nothing. A drain is applied
    /// once even when the call is repeated after a lost reply. An overflow changes
    /// nothing but, with a block duration, blocks the bucket for that long.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] before any call for an `amount` that is not finite, invalid
    /// parameters or an empty name; otherwise the connection's errors.
    pub async fn consume(&self, amount: f64) -> Result<LeakyDecision> {
        if !amount.is_finite() {
            return Err(Error::InvalidArgument(format!(
                "amount must be a finite number of drops; got {amount}"
            )));
        }
        self.run("consume", amount).await
    }

    /// Reads the bucket without changing it: its level, its block, and whether consuming one
    /// drop would succeed.
    ///
    /// # Errors
    /// As [`consume`](Self::consume).
    pub async fn peek(&self) -> Result<LeakyDecision> {
        self.run("peek", 0.0).await
    }

    async fn run(&self, op: &str, amount: f64) -> Result<LeakyDecision> {
        check_name(self.name()).map_err(Error::InvalidArgument)?;
        self.params
            .validate()
            .map_err(|e| Error::InvalidArgument(format!("params of {:?}: {e}", self.name())))?;
        // A drain gives drops back, so it must not count twice when the connection repeats
        // it after a lost reply: the script applies each request id once.
        let request = if amount < 0.0 {
            unique_id()
        } else {
            String::new()
        };
        let (allowed, level, next_us, blocked_us, source, capacity, rate): Reply = self
            .call
            .run(|cmd| {
                cmd.arg(op).arg(amount).arg(request);
            })
            .await?;
        Ok(LeakyDecision {
            allowed: allowed == 1,
            level: reply::float("level", &level)?,
            until_next_drop: reply::micros(next_us),
            blocked_for: reply::micros(blocked_us),
            source: reply::source(source)?,
            capacity: reply::float("capacity", &capacity)?,
            rate: reply::float("rate", &rate)?,
        })
    }
}

/// `{ allowed, level, until_next_drop us, blocked_for us, source, capacity, rate }`.
type Reply = (i64, String, i64, i64, i64, String, String);

/// The blocking wrapper, re-exported as [`crate::blocking::LeakyBucket`].
pub(crate) mod sync {
    use super::{LeakyDecision, LeakyParams};
    use crate::Result;
    use crate::blocking::block_on;

    crate::client::blocking::blocking_twin!(
        /// A blocking leaky bucket; see [`crate::LeakyBucket`].
        ///
        /// ```no_run
        /// # fn f() -> Result<(), regulator::Error> {
        /// let client = regulator::blocking::Client::connect("redis://127.0.0.1:6379/0")?;
        /// let params = regulator::LeakyParams { rate: 0.2, capacity: 10.0, block: None };
        /// let d = client.leaky_bucket("logins:alice", params).consume(1.0)?;
        /// println!("allowed={} level={}", d.allowed, d.level);
        /// # Ok(()) }
        /// ```
        LeakyBucket,
        leaky_bucket(LeakyParams),
        params
    );

    impl LeakyBucket {
        /// See [`crate::LeakyBucket::consume`].
        ///
        /// # Errors
        /// As [`crate::LeakyBucket::consume`].
        pub fn consume(&self, amount: f64) -> Result<LeakyDecision> {
            block_on(&self.runtime, self.inner.consume(amount))?
        }

        /// See [`crate::LeakyBucket::peek`].
        ///
        /// # Errors
        /// As [`crate::LeakyBucket::peek`].
        pub fn peek(&self) -> Result<LeakyDecision> {
            block_on(&self.runtime, self.inner.peek())?
        }
    }
}
