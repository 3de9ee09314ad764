//! The asyncio classes: the async client on one shared multi-threaded Tokio runtime; every
//! operation returns an asyncio awaitable. `regulator.asyncio` wraps them in coroutines
//! (so that a leased bucket's local decisions need no round trip through the runtime).

use std::future::Future;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use regulator::Error;

use super::{
    ContinuousDecision, Decision, LeakyDecision, LeaseStats, Reservation, count, fail_mode, knobs,
    lease_options, seconds, slot_bound, source_name, to_py,
};

/// `fut` as an asyncio awaitable, its error as the matching `regulator.errors` exception.
fn awaitable<'py, T, F>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = Result<T, Error>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    pyo3_async_runtimes::tokio::future_into_py(py, async move { fut.await.map_err(|e| to_py(&e)) })
}

/// An async connection to Redis; made by `AsyncClient.connect(...)`, which returns an
/// awaitable.
#[pyclass(frozen, module = "regulator")]
pub struct AsyncClient {
    inner: regulator::Client,
}

#[pymethods]
impl AsyncClient {
    #[staticmethod]
    #[pyo3(signature = (url, *, username=None, password=None, cluster=false, call_timeout=None, connect_timeout=None, coalesce=None, frozen_time=false))]
    fn connect(
        py: Python<'_>,
        url: String,
        username: Option<String>,
        password: Option<String>,
        cluster: bool,
        call_timeout: Option<f64>,
        connect_timeout: Option<f64>,
        coalesce: Option<bool>,
        frozen_time: bool,
    ) -> PyResult<Bound<'_, PyAny>> {
        let builder = super::ConnectOptions {
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
        awaitable(py, async move {
            let inner = builder.connect().await?;
            Ok(AsyncClient { inner })
        })
    }

    #[pyo3(signature = (name, rps, burst=1.0, window=1.0, *, knobs_ttl=None))]
    fn token_bucket(
        &self,
        name: String,
        rps: f64,
        burst: f64,
        window: f64,
        knobs_ttl: Option<f64>,
    ) -> PyResult<AsyncTokenBucket> {
        let mut inner = self.inner.token_bucket(name, knobs(rps, burst, window));
        if let Some(ttl) = knobs_ttl {
            inner = inner.with_knobs_ttl(seconds("knobs_ttl", ttl)?);
        }
        Ok(AsyncTokenBucket { inner })
    }

    #[pyo3(signature = (name, rate, capacity, *, block=None))]
    fn leaky_bucket(
        &self,
        name: String,
        rate: f64,
        capacity: f64,
        block: Option<f64>,
    ) -> PyResult<AsyncLeakyBucket> {
        let block = block.map(|b| seconds("block", b)).transpose()?;
        let params = regulator::LeakyParams {
            rate,
            capacity,
            block,
        };
        Ok(AsyncLeakyBucket {
            inner: self.inner.leaky_bucket(name, params),
        })
    }

    fn continuous_bucket(
        &self,
        name: String,
        tokens_per_period: f64,
        period: f64,
    ) -> PyResult<AsyncContinuousBucket> {
        let params = regulator::ContinuousParams {
            tokens_per_period,
            period: seconds("period", period)?,
        };
        Ok(AsyncContinuousBucket {
            inner: self.inner.continuous_bucket(name, params),
        })
    }

    fn semaphore(&self, name: String, capacity: i64, hold: f64) -> PyResult<AsyncSemaphore> {
        let params = regulator::SemaphoreParams {
            capacity: count("capacity", capacity)?,
            hold: seconds("hold", hold)?,
        };
        Ok(AsyncSemaphore {
            inner: self.inner.semaphore(name, params),
        })
    }

    fn scheduled_bucket(
        &self,
        name: String,
        capacity: i64,
        refill_every: f64,
        refill_amount: i64,
    ) -> PyResult<AsyncScheduledBucket> {
        let params = regulator::ScheduledParams {
            capacity: count("capacity", capacity)?,
            refill_every: seconds("refill_every", refill_every)?,
            refill_amount: count("refill_amount", refill_amount)?,
        };
        Ok(AsyncScheduledBucket {
            inner: self.inner.scheduled_bucket(name, params),
        })
    }

    #[pyo3(signature = (name, *, rps=None, burst=None, window=None, ttl=None))]
    fn set_knobs<'py>(
        &self,
        py: Python<'py>,
        name: String,
        rps: Option<f64>,
        burst: Option<f64>,
        window: Option<f64>,
        ttl: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let ttl = ttl.map(|t| seconds("ttl", t)).transpose()?;
        let update = regulator::KnobsUpdate { rps, burst, window };
        let client = self.inner.clone();
        awaitable(
            py,
            async move { client.set_knobs(&name, update, ttl).await },
        )
    }

    fn reset_knobs<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.inner.clone();
        awaitable(py, async move { client.reset_knobs(&name).await })
    }

    fn delete<'py>(&self, py: Python<'py>, name: String) -> PyResult<Bound<'py, PyAny>> {
        let client = self.inner.clone();
        awaitable(py, async move { client.delete(&name).await })
    }
}

#[pyclass(frozen, module = "regulator")]
pub struct AsyncTokenBucket {
    inner: regulator::TokenBucket,
}

#[pymethods]
impl AsyncTokenBucket {
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    #[pyo3(signature = (tokens=1.0))]
    fn consume<'py>(&self, py: Python<'py>, tokens: f64) -> PyResult<Bound<'py, PyAny>> {
        let b = self.inner.clone();
        awaitable(
            py,
            async move { b.consume(tokens).await.map(Decision::from) },
        )
    }

    #[pyo3(signature = (tokens=1.0, mode="closed"))]
    fn consume_or<'py>(
        &self,
        py: Python<'py>,
        tokens: f64,
        mode: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (b, mode) = (self.inner.clone(), fail_mode(mode)?);
        awaitable(py, async move {
            b.consume_or(tokens, mode).await.map(Decision::from)
        })
    }

    #[pyo3(signature = (tokens=1.0, *, max_wait))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        tokens: f64,
        max_wait: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (b, max_wait) = (self.inner.clone(), seconds("max_wait", max_wait)?);
        awaitable(py, async move {
            b.wait(tokens, max_wait).await.map(Decision::from)
        })
    }

    #[pyo3(signature = (*, horizon=0.05, max_share=0.01))]
    fn leased(&self, horizon: f64, max_share: f64) -> PyResult<AsyncLeasedBucket> {
        let options = lease_options(horizon, max_share)?;
        let inner = self.inner.leased(options).map_err(|e| to_py(&e))?;
        Ok(AsyncLeasedBucket { inner })
    }
}

#[pyclass(frozen, module = "regulator")]
pub struct AsyncLeasedBucket {
    inner: regulator::LeasedBucket,
}

#[pymethods]
impl AsyncLeasedBucket {
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// The decision the lease in hand makes without a call, or None.
    #[pyo3(signature = (tokens=1.0))]
    fn decide_locally(&self, tokens: f64) -> PyResult<Option<Decision>> {
        self.inner
            .decide_locally(tokens)
            .map(|d| d.map(Decision::from))
            .map_err(|e| to_py(&e))
    }

    #[pyo3(signature = (tokens=1.0))]
    fn consume<'py>(&self, py: Python<'py>, tokens: f64) -> PyResult<Bound<'py, PyAny>> {
        let b = self.inner.clone();
        awaitable(
            py,
            async move { b.consume(tokens).await.map(Decision::from) },
        )
    }

    #[pyo3(signature = (tokens=1.0, mode="closed"))]
    fn consume_or<'py>(
        &self,
        py: Python<'py>,
        tokens: f64,
        mode: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (b, mode) = (self.inner.clone(), fail_mode(mode)?);
        awaitable(py, async move {
            b.consume_or(tokens, mode).await.map(Decision::from)
        })
    }

    #[pyo3(signature = (tokens=1.0, *, max_wait))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        tokens: f64,
        max_wait: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (b, max_wait) = (self.inner.clone(), seconds("max_wait", max_wait)?);
        awaitable(py, async move {
            b.wait(tokens, max_wait).await.map(Decision::from)
        })
    }

    fn release<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let b = self.inner.clone();
        awaitable(py, async move { b.release().await })
    }

    #[getter]
    fn stats(&self) -> LeaseStats {
        self.inner.stats().into()
    }
}

#[pyclass(frozen, module = "regulator")]
pub struct AsyncLeakyBucket {
    inner: regulator::LeakyBucket,
}

#[pymethods]
impl AsyncLeakyBucket {
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    #[pyo3(signature = (amount=1.0))]
    fn consume<'py>(&self, py: Python<'py>, amount: f64) -> PyResult<Bound<'py, PyAny>> {
        let b = self.inner.clone();
        awaitable(py, async move {
            b.consume(amount).await.map(LeakyDecision::from)
        })
    }

    fn peek<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let b = self.inner.clone();
        awaitable(py, async move { b.peek().await.map(LeakyDecision::from) })
    }
}

#[pyclass(frozen, module = "regulator")]
pub struct AsyncContinuousBucket {
    inner: regulator::ContinuousBucket,
}

#[pymethods]
impl AsyncContinuousBucket {
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    #[pyo3(signature = (tokens=1.0))]
    fn allow<'py>(&self, py: Python<'py>, tokens: f64) -> PyResult<Bound<'py, PyAny>> {
        let b = self.inner.clone();
        awaitable(py, async move {
            b.allow(tokens).await.map(ContinuousDecision::from)
        })
    }
}

#[pyclass(frozen, module = "regulator")]
pub struct AsyncSemaphore {
    inner: regulator::Semaphore,
}

#[pymethods]
impl AsyncSemaphore {
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    #[pyo3(signature = (max_wait=0.0))]
    fn acquire<'py>(&self, py: Python<'py>, max_wait: f64) -> PyResult<Bound<'py, PyAny>> {
        let (s, max_wait) = (self.inner.clone(), seconds("max_wait", max_wait)?);
        awaitable(py, async move {
            s.acquire(max_wait).await.map(AsyncPermit::new)
        })
    }

    fn try_acquire<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.inner.clone();
        awaitable(py, async move {
            s.try_acquire().await.map(|p| p.map(AsyncPermit::new))
        })
    }
}

type Held = Arc<tokio::sync::Mutex<Option<regulator::Permit>>>;

/// A held slot of an `AsyncSemaphore`. `regulator.asyncio` makes it an async context
/// manager. Garbage-collected unreleased, it is released in the background.
#[pyclass(frozen, module = "regulator")]
pub struct AsyncPermit {
    inner: Held,
    id: String,
    capacity: u32,
    source: &'static str,
}

impl AsyncPermit {
    fn new(p: regulator::Permit) -> Self {
        Self {
            id: p.id().to_owned(),
            capacity: p.capacity(),
            source: source_name(p.source()),
            inner: Arc::new(tokio::sync::Mutex::new(Some(p))),
        }
    }
}

impl Drop for AsyncPermit {
    fn drop(&mut self) {
        let held = Arc::clone(&self.inner);
        pyo3_async_runtimes::tokio::get_runtime().spawn(async move {
            if let Some(p) = held.lock().await.take() {
                let _ = p.release().await;
            }
        });
    }
}

#[pymethods]
impl AsyncPermit {
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

    fn renew<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let held = Arc::clone(&self.inner);
        awaitable(py, async move {
            match held.lock().await.as_ref() {
                Some(p) => p.renew().await,
                None => Err(Error::InvalidArgument("the permit was released".to_owned())),
            }
        })
    }

    fn release<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let held = Arc::clone(&self.inner);
        awaitable(py, async move {
            let permit = held.lock().await.take();
            match permit {
                Some(p) => p.release().await,
                None => Ok(()),
            }
        })
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        let py = slf.py();
        let value: Py<Self> = slf.unbind();
        pyo3_async_runtimes::tokio::future_into_py(py, async move { Ok(value) })
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.release(py)
    }
}

#[pyclass(frozen, module = "regulator")]
pub struct AsyncScheduledBucket {
    inner: regulator::ScheduledBucket,
}

#[pymethods]
impl AsyncScheduledBucket {
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    #[pyo3(signature = (tokens=1, max_wait=None))]
    fn reserve<'py>(
        &self,
        py: Python<'py>,
        tokens: i64,
        max_wait: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (b, tokens, max_wait) = (
            self.inner.clone(),
            count("tokens", tokens)?,
            slot_bound(max_wait)?,
        );
        awaitable(py, async move {
            b.reserve(tokens, max_wait).await.map(Reservation::from)
        })
    }

    #[pyo3(signature = (tokens=1, max_wait=None))]
    fn acquire<'py>(
        &self,
        py: Python<'py>,
        tokens: i64,
        max_wait: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (b, tokens, max_wait) = (
            self.inner.clone(),
            count("tokens", tokens)?,
            slot_bound(max_wait)?,
        );
        awaitable(py, async move {
            b.acquire(tokens, max_wait).await.map(Reservation::from)
        })
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AsyncClient>()?;
    m.add_class::<AsyncTokenBucket>()?;
    m.add_class::<AsyncLeasedBucket>()?;
    m.add_class::<AsyncLeakyBucket>()?;
    m.add_class::<AsyncContinuousBucket>()?;
    m.add_class::<AsyncSemaphore>()?;
    m.add_class::<AsyncPermit>()?;
    m.add_class::<AsyncScheduledBucket>()?;
    Ok(())
}
