//! [`ContinuousBucket`]: python-redis-rate-limiter's continuously refilling bucket, as one
//! script (`lua/continuous_bucket.lua`), and its blocking wrapper.

use std::time::Duration;

use super::connection::Client;
use super::decision::Source;
use super::error::{Error, Result};
use super::keys::check_name;
use super::reply;
use super::script_call::ScriptCall;
use super::scripts::ScriptId;

/// A continuous bucket's limits, as a worker passes them; the knobs hash overrides them per
/// field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContinuousParams {
    /// Tokens added per `period`, above 0; also the bucket's capacity.
    pub tokens_per_period: f64,
    /// The period over which `tokens_per_period` tokens refill, above zero.
    pub period: Duration,
}

impl ContinuousParams {
    /// Checks the values: `tokens_per_period` finite and above 0, `period` above zero, and
    /// their ratio finite.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        let tokens = self.tokens_per_period;
        if !(tokens > 0.0 && tokens.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "tokens_per_period must be a finite number above 0; got {tokens}"
            )));
        }
        if self.period.is_zero() {
            return Err(Error::InvalidArgument(
                "period must be above zero".to_owned(),
            ));
        }
        if !(tokens * 1e6 / period_micros(self.period)).is_finite() {
            return Err(Error::InvalidArgument(format!(
                "{tokens} tokens per {:?} is not a finite rate",
                self.period
            )));
        }
        Ok(())
    }
}

/// A duration in microseconds, fractions kept.
fn period_micros(period: Duration) -> f64 {
    period.as_nanos() as f64 / 1000.0
}

/// The outcome of one [`ContinuousBucket::allow`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContinuousDecision {
    /// Whether the call may go ahead.
    pub allowed: bool,
    /// When the decision was made: Redis `TIME` in microseconds since the Unix epoch, for
    /// auditing decisions across workers.
    pub decision_time_us: u64,
    /// Tokens left in the bucket after the call (fractional; infinite when the knobs' `rps`
    /// is -1).
    pub tokens: f64,
    /// Which parameters applied.
    pub source: Source,
    /// The capacity (tokens per period) that applied: 0 when the knobs deny every call,
    /// infinite when they allow every call.
    pub capacity: f64,
    /// The period that applied.
    pub period: Duration,
}

/// A named token bucket that refills continuously, at microsecond resolution, shared through
/// Redis: python-redis-rate-limiter's `allow_call` as one atomic script. It holds up to
/// `tokens_per_period` tokens (a new bucket is full) and gains that many per `period`. State
/// lives in `throttle:<name>:continuous`; the limits may come from the knobs hash
/// `throttle:<name>:knobs` (fields `rps` and `period` in seconds), field by field. Cheap to
/// clone.
///
/// ```no_run
/// # async fn f() -> Result<(), regulator::Error> {
/// use std::time::Duration;
/// use regulator::ContinuousParams;
/// let client = regulator::Client::connect("redis://127.0.0.1:6379/0").await?;
/// let api = client.continuous_bucket(
///     "api:key-42",
///     ContinuousParams { tokens_per_period: 10.0, period: Duration::from_secs(1) },
/// );
/// let d = api.allow(2.5).await?;
/// println!("allowed={} at {} us, {} tokens left", d.allowed, d.decision_time_us, d.tokens);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ContinuousBucket {
    params: ContinuousParams,
    call: ScriptCall,
}

crate::client::script_call::limiter_accessors!(ContinuousBucket, call, params: ContinuousParams);

impl Client {
    /// A continuous bucket named `name`. `params` apply field by field while the throttle's
    /// knobs hold no usable `rps` or `period`.
    #[must_use]
    pub fn continuous_bucket(
        &self,
        name: impl Into<String>,
        params: ContinuousParams,
    ) -> ContinuousBucket {
        ContinuousBucket::new(self.clone(), name.into(), params)
    }
}

impl ContinuousBucket {
    fn new(client: Client, name: String, params: ContinuousParams) -> Self {
        let keys = client.keys();
        let keys = [keys.continuous(&name), keys.knobs(&name)];
        let call = ScriptCall::new(client, name, ScriptId::ContinuousBucket, &keys, |cmd| {
            cmd.arg(params.tokens_per_period)
                .arg(period_micros(params.period));
        });
        Self { params, call }
    }

    /// Takes `tokens` if the bucket holds that many, else takes nothing; one atomic script
    /// call. A request above the capacity is always denied.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] before any call for `tokens` that is not a finite number
    /// above 0, invalid parameters or an empty name; otherwise the connection's errors.
    pub async fn allow(&self, tokens: f64) -> Result<ContinuousDecision> {
        if !(tokens > 0.0 && tokens.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "tokens must be a finite number above 0; got {tokens}"
            )));
        }
        check_name(self.name()).map_err(Error::InvalidArgument)?;
        self.params
            .validate()
            .map_err(|e| Error::InvalidArgument(format!("params of {:?}: {e}", self.name())))?;
        let (allowed, time_us, left, source, capacity, period_us): Reply = self
            .call
            .run(|cmd| {
                cmd.arg(tokens);
            })
            .await?;
        let period_us = reply::float("period", &period_us)?;
        Ok(ContinuousDecision {
            allowed: allowed == 1,
            decision_time_us: u64::try_from(time_us).unwrap_or_default(),
            tokens: reply::float("tokens", &left)?,
            source: reply::source(source)?,
            capacity: reply::float("capacity", &capacity)?,
            period: Duration::try_from_secs_f64(period_us / 1e6).unwrap_or(Duration::MAX),
        })
    }
}

/// `{ allowed, time us, tokens, source, capacity, period us }`.
type Reply = (i64, i64, String, i64, String, String);

/// The blocking wrapper, re-exported as [`crate::blocking::ContinuousBucket`].
pub(crate) mod sync {
    use super::{ContinuousDecision, ContinuousParams};
    use crate::Result;
    use crate::blocking::block_on;

    crate::client::blocking::blocking_twin!(
        /// A blocking continuous bucket; see [`crate::ContinuousBucket`].
        ///
        /// ```no_run
        /// # fn f() -> Result<(), regulator::Error> {
        /// use std::time::Duration;
        /// let client = regulator::blocking::Client::connect("redis://127.0.0.1:6379/0")?;
        /// let params = regulator::ContinuousParams {
        ///     tokens_per_period: 10.0,
        ///     period: Duration::from_secs(1),
        /// };
        /// let d = client.continuous_bucket("api:key-42", params).allow(1.0)?;
        /// println!("allowed={} at {} us", d.allowed, d.decision_time_us);
        /// # Ok(()) }
        /// ```
        ContinuousBucket,
        continuous_bucket(ContinuousParams),
        params
    );

    impl ContinuousBucket {
        /// See [`crate::ContinuousBucket::allow`].
        ///
        /// # Errors
        /// As [`crate::ContinuousBucket::allow`].
        pub fn allow(&self, tokens: f64) -> Result<ContinuousDecision> {
            block_on(&self.runtime, self.inner.allow(tokens))?
        }
    }
}
