//! `regulator._native`: the Rust client for Python workers. The Python package `regulator`
//! re-exports it with its exceptions (`regulator.errors`), its asyncio twin
//! (`regulator.asyncio`) and drop-in adapters for the seed libraries (`regulator.compat`).
//!
//! The blocking classes here wrap [`regulator::blocking`]: a call's I/O runs on the calling
//! thread with the GIL released, so other Python threads run while one waits on Redis. A
//! leased bucket decides from the lease in hand without releasing the GIL at all. The
//! `Async*` classes wrap the async client on one shared multi-threaded Tokio runtime; their
//! outcomes come back through a `Completions` queue that `regulator.asyncio` drains from the
//! event loop (see `asyncio.rs`).

use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use pyo3::prelude::*;
use regulator::{Error, FailMode, LeaseOptions, Source, blocking};

/// A client class, blocking or asyncio: `$own` are the methods of its own (connecting, the
/// knob calls); the limiter factories are the same for both, as the Rust clients' are, and
/// make `$tb`, `$leaky`, `$cont`, `$sem` and `$sched`.
macro_rules! client_class {
    ($client:ident => $tb:ident, $leaky:ident, $cont:ident, $sem:ident, $sched:ident; $($own:tt)*) => {
        #[pymethods]
        impl $client {
            $($own)*

            /// A token bucket shared with limitlion: `rps`, `burst` and `window` apply until
            /// the daemon (or `set_knobs`) stores knobs for `name`.
            #[pyo3(signature = (name, rps, burst=1.0, window=1.0, *, knobs_ttl=None))]
            fn token_bucket(
                &self,
                name: String,
                rps: f64,
                burst: f64,
                window: f64,
                knobs_ttl: Option<f64>,
            ) -> PyResult<$tb> {
                let mut inner = self.inner.token_bucket(name, regulator::Knobs { rps, burst, window });
                if let Some(ttl) = knobs_ttl {
                    inner = inner.with_knobs_ttl($crate::seconds("knobs_ttl", ttl)?);
                }
                Ok($tb { inner })
            }

            /// A leaky bucket (aiosteady's): drains at `rate` per second, holds `capacity`,
            /// and when `block` is given, refuses everything for that many seconds once full.
            #[pyo3(signature = (name, rate, capacity, *, block=None))]
            fn leaky_bucket(
                &self,
                name: String,
                rate: f64,
                capacity: f64,
                block: Option<f64>,
            ) -> PyResult<$leaky> {
                let block = block.map(|b| $crate::seconds("block", b)).transpose()?;
                let params = regulator::LeakyParams { rate, capacity, block };
                Ok($leaky { inner: self.inner.leaky_bucket(name, params) })
            }

            /// A continuous bucket (token-bucket's): `tokens_per_period` refill smoothly over
            /// `period` seconds.
            fn continuous_bucket(
                &self,
                name: String,
                tokens_per_period: f64,
                period: f64,
            ) -> PyResult<$cont> {
                let params = regulator::ContinuousParams {
                    tokens_per_period,
                    period: $crate::seconds("period", period)?,
                };
                Ok($cont { inner: self.inner.continuous_bucket(name, params) })
            }

            /// A fleet-wide semaphore of `capacity` slots, each held at most `hold` seconds
            /// unless renewed.
            fn semaphore(&self, name: String, capacity: i64, hold: f64) -> PyResult<$sem> {
                let params = regulator::SemaphoreParams {
                    capacity: $crate::count("capacity", capacity)?,
                    hold: $crate::seconds("hold", hold)?,
                };
                Ok($sem { inner: self.inner.semaphore(name, params) })
            }

            /// A scheduled bucket (limiters'): `refill_amount` tokens every `refill_every`
            /// seconds, at most `capacity`; a caller reserves its slot and sleeps until it.
            fn scheduled_bucket(
                &self,
                name: String,
                capacity: i64,
                refill_every: f64,
                refill_amount: i64,
            ) -> PyResult<$sched> {
                let params = regulator::ScheduledParams {
                    capacity: $crate::count("capacity", capacity)?,
                    refill_every: $crate::seconds("refill_every", refill_every)?,
                    refill_amount: $crate::count("refill_amount", refill_amount)?,
                };
                Ok($sched { inner: self.inner.scheduled_bucket(name, params) })
            }
        }
    };
}

/// A token bucket class, plain or leased, blocking or asyncio: its `name`, `$own` methods,
/// and `consume_or` and `wait`, which the two kinds of bucket share (and, for asyncio,
/// `consume`). The word after the class says how a call runs: `detach` on the calling
/// thread with the GIL released, `submit` on the asyncio runtime with its outcome queued.
macro_rules! token_bucket_class {
    (@build $class:ident; $($methods:tt)*) => {
        #[pymethods]
        impl $class {
            #[getter]
            fn name(&self) -> &str {
                self.inner.name()
            }

            $($methods)*
        }
    };
    ($class:ident, detach; $($own:tt)*) => {
        token_bucket_class! {
            @build $class;
            $($own)*

            /// As `consume`, but when Redis is unavailable decides by `mode` ("open" or
            /// "closed").
            #[pyo3(signature = (tokens=1.0, mode="closed"))]
            fn consume_or(&self, py: Python<'_>, tokens: f64, mode: &str) -> PyResult<Decision> {
                let mode = $crate::fail_mode(mode)?;
                py.detach(|| self.inner.consume_or(tokens, mode))
                    .map(Decision::from)
                    .map_err(|e| $crate::to_py(&e))
            }

            /// Takes `tokens`, sleeping on the bucket's hints, never past `max_wait` seconds
            /// (`MaxWaitExceeded` then).
            #[pyo3(signature = (tokens=1.0, *, max_wait))]
            fn wait(&self, py: Python<'_>, tokens: f64, max_wait: f64) -> PyResult<Decision> {
                let max_wait = $crate::seconds("max_wait", max_wait)?;
                py.detach(|| self.inner.wait(tokens, max_wait))
                    .map(Decision::from)
                    .map_err(|e| $crate::to_py(&e))
            }
        }
    };
    ($class:ident, submit; $($own:tt)*) => {
        token_bucket_class! {
            @build $class;
            $($own)*

            #[pyo3(signature = (done, id, tokens=1.0))]
            fn consume(&self, done: &Completions, id: u64, tokens: f64) -> PyResult<()> {
                let b = self.inner.clone();
                done.submit(id, async move { b.consume(tokens).await.map(Decision::from) })
            }

            #[pyo3(signature = (done, id, tokens=1.0, mode="closed"))]
            fn consume_or(
                &self,
                done: &Completions,
                id: u64,
                tokens: f64,
                mode: &str,
            ) -> PyResult<()> {
                let (b, mode) = (self.inner.clone(), $crate::fail_mode(mode)?);
                done.submit(id, async move {
                    b.consume_or(tokens, mode).await.map(Decision::from)
                })
            }

            #[pyo3(signature = (done, id, tokens=1.0, *, max_wait))]
            fn wait(&self, done: &Completions, id: u64, tokens: f64, max_wait: f64) -> PyResult<()> {
                let (b, max_wait) = (self.inner.clone(), $crate::seconds("max_wait", max_wait)?);
                done.submit(id, async move {
                    b.wait(tokens, max_wait).await.map(Decision::from)
                })
            }
        }
    };
}

mod asyncio;

/// The Python exception for a client error: an instance of the class in `regulator.errors`
/// that matches its kind.
pub(crate) fn to_py(e: &Error) -> PyErr {
    Python::attach(|py| exception(py, e).unwrap_or_else(|failed| failed))
}

fn exception(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let make = py.import("regulator.errors")?.getattr("_from_kind")?;
    let message = e.to_string();
    let value = match e {
        Error::MaxWaitExceeded {
            waited,
            retry_after,
        } => make.call1((
            e.kind(),
            message,
            waited.as_secs_f64(),
            retry_after.as_secs_f64(),
        ))?,
        Error::PermitExpired { name } => make.call1((e.kind(), message, name.clone()))?,
        _ => make.call1((e.kind(), message))?,
    };
    Ok(PyErr::from_value(value))
}

/// An `InvalidArgument` for a value refused before anything is sent.
pub(crate) fn invalid(message: String) -> PyErr {
    to_py(&Error::InvalidArgument(message))
}

/// Seconds from Python as a [`Duration`]: finite and not negative.
pub(crate) fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        invalid(format!(
            "{name} must be a finite number of seconds >= 0; got {value}"
        ))
    })
}

/// A whole count from Python (`tokens`, `capacity`): at least 1 and within `u32`.
pub(crate) fn count(name: &str, value: i64) -> PyResult<u32> {
    u32::try_from(value)
        .ok()
        .filter(|&v| v >= 1)
        .ok_or_else(|| {
            invalid(format!(
                "{name} must be a whole number from 1 to {}; got {value}",
                u32::MAX
            ))
        })
}

/// A scheduled bucket's bound on the wait for a slot: none for `None` (the Rust client's
/// zero), else at least a microsecond, so `0` means "only a slot that is here now".
pub(crate) fn slot_bound(max_wait: Option<f64>) -> PyResult<Duration> {
    max_wait.map_or(Ok(Duration::ZERO), |s| {
        Ok(seconds("max_wait", s)?.max(Duration::from_micros(1)))
    })
}

pub(crate) fn fail_mode(mode: &str) -> PyResult<FailMode> {
    match mode {
        "open" => Ok(FailMode::Open),
        "closed" => Ok(FailMode::Closed),
        other => Err(invalid(format!(
            "mode must be \"open\" or \"closed\"; got {other:?}"
        ))),
    }
}

pub(crate) fn source_name(source: Source) -> &'static str {
    match source {
        Source::Defaults => "defaults",
        Source::Knobs => "knobs",
        Source::InvalidKnobs => "invalid_knobs",
        Source::Unavailable => "unavailable",
        Source::Local => "local",
        _ => "other",
    }
}

/// Options of a connection, as the keyword arguments of `Client(...)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectOptions {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub cluster: bool,
    pub call_timeout: Option<f64>,
    pub connect_timeout: Option<f64>,
    pub coalesce: Option<bool>,
    /// Tests only: the scripts read the time from `frozen_second` and `frozen_microsecond`
    /// when those keys exist, as limitlion's `testing=True` does.
    pub frozen_time: bool,
}

impl ConnectOptions {
    pub(crate) fn builder(&self) -> PyResult<regulator::ClientBuilder> {
        let mut b = regulator::Client::builder(&self.url)
            .cluster(self.cluster)
            .frozen_time(self.frozen_time);
        if let Some(u) = &self.username {
            b = b.username(u.clone());
        }
        if let Some(p) = &self.password {
            b = b.password(p.clone());
        }
        if let Some(t) = self.call_timeout {
            b = b.call_timeout(seconds("call_timeout", t)?);
        }
        if let Some(t) = self.connect_timeout {
            b = b.connect_timeout(seconds("connect_timeout", t)?);
        }
        if let Some(c) = self.coalesce {
            b = b.coalesce(c);
        }
        Ok(b)
    }
}

pub(crate) fn lease_options(horizon: f64, max_share: f64) -> PyResult<LeaseOptions> {
    let options = LeaseOptions {
        horizon: seconds("horizon", horizon)?,
        max_share,
    };
    options.validate().map_err(invalid)?;
    Ok(options)
}

/// One decision of a token bucket (and of the in-process limiter). True when allowed.
#[pyclass(frozen, get_all, module = "regulator")]
#[derive(Debug, Clone)]
pub struct Decision {
    /// Whether the work may go ahead.
    allowed: bool,
    /// Tokens left in the bucket after this call.
    tokens: f64,
    /// Seconds until the next window starts: how long to sleep before retrying when denied.
    sleep: f64,
    /// Which knobs applied: `knobs`, `defaults`, `invalid_knobs`, `unavailable` or `local`.
    source: &'static str,
    /// The bucket's capacity under those knobs.
    capacity: f64,
}

impl From<regulator::Decision> for Decision {
    fn from(d: regulator::Decision) -> Self {
        Self {
            allowed: d.allowed,
            tokens: d.tokens,
            sleep: d.sleep.as_secs_f64(),
            source: source_name(d.source),
            capacity: d.capacity,
        }
    }
}

#[pymethods]
impl Decision {
    fn __bool__(&self) -> bool {
        self.allowed
    }

    fn __repr__(&self) -> String {
        format!(
            "Decision(allowed={}, tokens={}, sleep={}, source={:?}, capacity={})",
            py_bool(self.allowed),
            self.tokens,
            self.sleep,
            self.source,
            self.capacity
        )
    }
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// One decision of a leaky bucket. True when allowed.
#[pyclass(frozen, get_all, module = "regulator")]
#[derive(Debug, Clone)]
pub struct LeakyDecision {
    allowed: bool,
    level: f64,
    until_next_drop: f64,
    blocked_for: f64,
    source: &'static str,
    capacity: f64,
    rate: f64,
}

impl From<regulator::LeakyDecision> for LeakyDecision {
    fn from(d: regulator::LeakyDecision) -> Self {
        Self {
            allowed: d.allowed,
            level: d.level,
            until_next_drop: d.until_next_drop.as_secs_f64(),
            blocked_for: d.blocked_for.as_secs_f64(),
            source: source_name(d.source),
            capacity: d.capacity,
            rate: d.rate,
        }
    }
}

#[pymethods]
impl LeakyDecision {
    fn __bool__(&self) -> bool {
        self.allowed
    }

    fn __repr__(&self) -> String {
        format!(
            "LeakyDecision(allowed={}, level={}, until_next_drop={}, blocked_for={}, source={:?})",
            py_bool(self.allowed),
            self.level,
            self.until_next_drop,
            self.blocked_for,
            self.source
        )
    }
}

/// One decision of a continuous bucket. True when allowed.
#[pyclass(frozen, get_all, module = "regulator")]
#[derive(Debug, Clone)]
pub struct ContinuousDecision {
    allowed: bool,
    decision_time_us: u64,
    tokens: f64,
    source: &'static str,
    capacity: f64,
    period: f64,
}

impl From<regulator::ContinuousDecision> for ContinuousDecision {
    fn from(d: regulator::ContinuousDecision) -> Self {
        Self {
            allowed: d.allowed,
            decision_time_us: d.decision_time_us,
            tokens: d.tokens,
            source: source_name(d.source),
            capacity: d.capacity,
            period: d.period.as_secs_f64(),
        }
    }
}

#[pymethods]
impl ContinuousDecision {
    fn __bool__(&self) -> bool {
        self.allowed
    }

    fn __repr__(&self) -> String {
        format!(
            "ContinuousDecision(allowed={}, tokens={}, source={:?})",
            py_bool(self.allowed),
            self.tokens,
            self.source
        )
    }
}

/// A scheduled bucket's reservation: the slot at which the tokens are the caller's.
#[pyclass(frozen, get_all, module = "regulator")]
#[derive(Debug, Clone)]
pub struct Reservation {
    /// Seconds from the reservation until the slot.
    wait: f64,
    /// The slot, in seconds since the Unix epoch (Redis time).
    slot: f64,
    source: &'static str,
    capacity: u32,
    refill_every: f64,
}

impl From<regulator::Reservation> for Reservation {
    fn from(r: regulator::Reservation) -> Self {
        Self {
            wait: r.wait.as_secs_f64(),
            slot: r
                .slot
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
            source: source_name(r.source),
            capacity: r.capacity,
            refill_every: r.refill_every.as_secs_f64(),
        }
    }
}

#[pymethods]
impl Reservation {
    fn __repr__(&self) -> String {
        format!(
            "Reservation(wait={}, slot={}, source={:?})",
            self.wait, self.slot, self.source
        )
    }
}

/// What a leased bucket has done so far.
#[pyclass(frozen, get_all, module = "regulator")]
#[derive(Debug, Clone)]
pub struct LeaseStats {
    decisions: u64,
    calls: u64,
    reserved: f64,
    returned: f64,
    dropped: f64,
}

impl From<regulator::LeaseStats> for LeaseStats {
    fn from(s: regulator::LeaseStats) -> Self {
        Self {
            decisions: s.decisions,
            calls: s.calls,
            reserved: s.reserved,
            returned: s.returned,
            dropped: s.dropped,
        }
    }
}

#[pymethods]
impl LeaseStats {
    fn __repr__(&self) -> String {
        format!(
            "LeaseStats(decisions={}, calls={}, reserved={}, returned={}, dropped={})",
            self.decisions, self.calls, self.reserved, self.returned, self.dropped
        )
    }
}

/// A blocking connection to Redis, shared by the limiters made from it and by every thread.
#[pyclass(frozen, module = "regulator")]
pub struct Client {
    inner: blocking::Client,
}

client_class! {
    Client => TokenBucket, LeakyBucket, ContinuousBucket, Semaphore, ScheduledBucket;

    #[new]
    #[pyo3(signature = (url, *, username=None, password=None, cluster=false, call_timeout=None, connect_timeout=None, coalesce=None, frozen_time=false))]
    fn new(
        py: Python<'_>,
        url: String,
        username: Option<String>,
        password: Option<String>,
        cluster: bool,
        call_timeout: Option<f64>,
        connect_timeout: Option<f64>,
        coalesce: Option<bool>,
        frozen_time: bool,
    ) -> PyResult<Self> {
        let builder = ConnectOptions {
            url,
            username,
            password,
            cluster,
            call_timeout,
            connect_timeout,
            coalesce,
            frozen_time,
        }
        .builder()?;
        let inner = py
            .detach(|| blocking::Client::from_builder(builder))
            .map_err(|e| to_py(&e))?;
        Ok(Self { inner })
    }

    /// Stores knobs by hand, as `regulator set` does; the others keep their values.
    #[pyo3(signature = (name, *, rps=None, burst=None, window=None, ttl=None))]
    fn set_knobs(
        &self,
        py: Python<'_>,
        name: &str,
        rps: Option<f64>,
        burst: Option<f64>,
        window: Option<f64>,
        ttl: Option<f64>,
    ) -> PyResult<()> {
        let ttl = ttl.map(|t| seconds("ttl", t)).transpose()?;
        let update = regulator::KnobsUpdate { rps, burst, window };
        py.detach(|| self.inner.set_knobs(name, update, ttl))
            .map_err(|e| to_py(&e))
    }

    /// Removes the stored knobs: the workers' defaults apply again.
    fn reset_knobs(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        py.detach(|| self.inner.reset_knobs(name))
            .map_err(|e| to_py(&e))
    }

    /// Deletes every key of the throttle: knobs, bucket, history and the other limiters'.
    fn delete(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        py.detach(|| self.inner.delete(name)).map_err(|e| to_py(&e))
    }
}

/// A token bucket in Redis, shared with every worker (Rust, Python or limitlion) that uses
/// the same name.
#[pyclass(frozen, module = "regulator")]
pub struct TokenBucket {
    inner: blocking::TokenBucket,
}

token_bucket_class! {
    TokenBucket, detach;

    /// Takes `tokens` if the bucket holds them.
    #[pyo3(signature = (tokens=1.0))]
    fn consume(&self, py: Python<'_>, tokens: f64) -> PyResult<Decision> {
        py.detach(|| self.inner.consume(tokens))
            .map(Decision::from)
            .map_err(|e| to_py(&e))
    }

    /// This bucket deciding from local leases: batches reserved from Redis, each lasting at
    /// most `horizon` seconds and at most `max_share` of the capacity.
    #[pyo3(signature = (*, horizon=0.05, max_share=0.01))]
    fn leased(&self, horizon: f64, max_share: f64) -> PyResult<LeasedBucket> {
        let options = lease_options(horizon, max_share)?;
        let inner = self.inner.leased(options).map_err(|e| to_py(&e))?;
        Ok(LeasedBucket { inner })
    }
}

/// A token bucket deciding from local leases; see `TokenBucket.leased`.
#[pyclass(frozen, module = "regulator")]
pub struct LeasedBucket {
    inner: blocking::LeasedBucket,
}

token_bucket_class! {
    LeasedBucket, detach;

    /// Takes `tokens` from the lease in hand (no call, the GIL kept), or renews it.
    #[pyo3(signature = (tokens=1.0))]
    fn consume(&self, py: Python<'_>, tokens: f64) -> PyResult<Decision> {
        if let Some(d) = self.inner.decide_locally(tokens).map_err(|e| to_py(&e))? {
            return Ok(d.into());
        }
        py.detach(|| self.inner.consume(tokens))
            .map(Decision::from)
            .map_err(|e| to_py(&e))
    }

    /// Ends the lease in hand and gives its unspent tokens back.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.release()).map_err(|e| to_py(&e))
    }

    #[getter]
    fn stats(&self) -> LeaseStats {
        self.inner.stats().into()
    }
}

/// A leaky bucket in Redis; see `Client.leaky_bucket`.
#[pyclass(frozen, module = "regulator")]
pub struct LeakyBucket {
    inner: blocking::LeakyBucket,
}

#[pymethods]
impl LeakyBucket {
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Adds `amount` to the bucket if it fits.
    #[pyo3(signature = (amount=1.0))]
    fn consume(&self, py: Python<'_>, amount: f64) -> PyResult<LeakyDecision> {
        py.detach(|| self.inner.consume(amount))
            .map(LeakyDecision::from)
            .map_err(|e| to_py(&e))
    }

    /// The bucket's state, changing nothing.
    fn peek(&self, py: Python<'_>) -> PyResult<LeakyDecision> {
        py.detach(|| self.inner.peek())
            .map(LeakyDecision::from)
            .map_err(|e| to_py(&e))
    }
}

/// A continuous bucket in Redis; see `Client.continuous_bucket`.
#[pyclass(frozen, module = "regulator")]
pub struct ContinuousBucket {
    inner: blocking::ContinuousBucket,
}

#[pymethods]
impl ContinuousBucket {
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Takes `tokens` (fractional allowed) if the bucket holds them.
    #[pyo3(signature = (tokens=1.0))]
    fn allow(&self, py: Python<'_>, tokens: f64) -> PyResult<ContinuousDecision> {
        py.detach(|| self.inner.allow(tokens))
            .map(ContinuousDecision::from)
            .map_err(|e| to_py(&e))
    }
}

/// A fleet-wide semaphore in Redis; see `Client.semaphore`.
#[pyclass(frozen, module = "regulator")]
pub struct Semaphore {
    inner: blocking::Semaphore,
}

#[pymethods]
impl Semaphore {
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Takes a slot, waiting at most `max_wait` seconds (`MaxWaitExceeded` then).
    #[pyo3(signature = (max_wait=0.0))]
    fn acquire(&self, py: Python<'_>, max_wait: f64) -> PyResult<Permit> {
        let max_wait = seconds("max_wait", max_wait)?;
        py.detach(|| self.inner.acquire(max_wait))
            .map(Permit::new)
            .map_err(|e| to_py(&e))
    }

    /// Takes a slot if one is free now; None otherwise.
    fn try_acquire(&self, py: Python<'_>) -> PyResult<Option<Permit>> {
        py.detach(|| self.inner.try_acquire())
            .map(|p| p.map(Permit::new))
            .map_err(|e| to_py(&e))
    }
}

/// A held slot of a `Semaphore`: released by `release()`, at the end of a `with` block, when
/// garbage-collected, or when its hold runs out unrenewed.
#[pyclass(frozen, module = "regulator")]
pub struct Permit {
    inner: Mutex<Option<blocking::Permit>>,
    id: String,
    capacity: u32,
    source: &'static str,
}

impl Permit {
    fn new(p: blocking::Permit) -> Self {
        Self {
            id: p.id().to_owned(),
            capacity: p.capacity(),
            source: source_name(p.source()),
            inner: Mutex::new(Some(p)),
        }
    }

    fn take(&self) -> Option<blocking::Permit> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl Drop for Permit {
    /// A permit collected unreleased gives its slot back, as the Rust permit's drop does: a
    /// round trip to Redis, made with the GIL released so the other threads run meanwhile.
    fn drop(&mut self) {
        if let Some(p) = self.take() {
            Python::attach(|py| py.detach(|| drop(p)));
        }
    }
}

#[pymethods]
impl Permit {
    /// The holder id, unique fleet-wide.
    #[getter]
    fn id(&self) -> &str {
        &self.id
    }

    #[getter]
    fn capacity(&self) -> u32 {
        self.capacity
    }

    #[getter]
    fn source(&self) -> &'static str {
        self.source
    }

    /// Whether the slot is still held by this permit (not yet released).
    #[getter]
    fn held(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }

    /// Extends the hold by the semaphore's `hold` from now (`PermitExpired` if it ran out).
    fn renew(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| {
            let guard = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match guard.as_ref() {
                Some(p) => p.renew(),
                None => Err(Error::InvalidArgument("the permit was released".to_owned())),
            }
        })
        .map_err(|e| to_py(&e))
    }

    /// Gives the slot back; a second release does nothing.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        match self.take() {
            Some(p) => py.detach(|| p.release()).map_err(|e| to_py(&e)),
            None => Ok(()),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.release(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("Permit(id={:?}, held={})", self.id, py_bool(self.held()))
    }
}

/// A scheduled bucket in Redis; see `Client.scheduled_bucket`.
#[pyclass(frozen, module = "regulator")]
pub struct ScheduledBucket {
    inner: blocking::ScheduledBucket,
}

#[pymethods]
impl ScheduledBucket {
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Reserves `tokens` at the earliest slot, if it is at most `max_wait` seconds away
    /// (`MaxWaitExceeded` otherwise; `None`: however far); returns at once.
    #[pyo3(signature = (tokens=1, max_wait=None))]
    fn reserve(&self, py: Python<'_>, tokens: i64, max_wait: Option<f64>) -> PyResult<Reservation> {
        let (tokens, max_wait) = (count("tokens", tokens)?, slot_bound(max_wait)?);
        py.detach(|| self.inner.reserve(tokens, max_wait))
            .map(Reservation::from)
            .map_err(|e| to_py(&e))
    }

    /// As `reserve`, then sleeps until the slot.
    #[pyo3(signature = (tokens=1, max_wait=None))]
    fn acquire(&self, py: Python<'_>, tokens: i64, max_wait: Option<f64>) -> PyResult<Reservation> {
        let (tokens, max_wait) = (count("tokens", tokens)?, slot_bound(max_wait)?);
        py.detach(|| self.inner.acquire(tokens, max_wait))
            .map(Reservation::from)
            .map_err(|e| to_py(&e))
    }
}

/// An in-process limiter keyed by string: one token bucket per key, no Redis.
#[pyclass(frozen, module = "regulator")]
pub struct MemoryLimiter {
    inner: regulator::MemoryLimiter,
}

#[pymethods]
impl MemoryLimiter {
    #[new]
    fn new(rate: f64, capacity: f64) -> PyResult<Self> {
        let inner = regulator::MemoryLimiter::new(rate, capacity).map_err(|e| to_py(&e))?;
        Ok(Self { inner })
    }

    #[getter]
    fn rate(&self) -> f64 {
        self.inner.rate()
    }

    #[getter]
    fn capacity(&self) -> f64 {
        self.inner.capacity()
    }

    /// Takes `tokens` from `key`'s bucket if it holds them.
    #[pyo3(signature = (key, tokens=1.0))]
    fn try_consume(&self, key: &str, tokens: f64) -> PyResult<bool> {
        self.inner.try_consume(key, tokens).map_err(|e| to_py(&e))
    }

    /// As `try_consume`, with the bucket's state.
    #[pyo3(signature = (key, tokens=1.0))]
    fn consume(&self, key: &str, tokens: f64) -> PyResult<Decision> {
        self.inner
            .consume(key, tokens)
            .map(Decision::from)
            .map_err(|e| to_py(&e))
    }

    /// The tokens `key`'s bucket holds now.
    fn tokens(&self, key: &str) -> PyResult<f64> {
        self.inner.tokens(key).map_err(|e| to_py(&e))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<TokenBucket>()?;
    m.add_class::<LeasedBucket>()?;
    m.add_class::<LeakyBucket>()?;
    m.add_class::<ContinuousBucket>()?;
    m.add_class::<Semaphore>()?;
    m.add_class::<Permit>()?;
    m.add_class::<ScheduledBucket>()?;
    m.add_class::<MemoryLimiter>()?;
    m.add_class::<Decision>()?;
    m.add_class::<LeakyDecision>()?;
    m.add_class::<ContinuousDecision>()?;
    m.add_class::<Reservation>()?;
    m.add_class::<LeaseStats>()?;
    asyncio::register(m)?;
    Ok(())
}
