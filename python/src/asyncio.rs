//! The asyncio classes: the async client on one shared multi-threaded Tokio runtime.
//!
//! An operation does not return an awaitable of its own: it takes a [`Completions`] and an
//! id, runs on the runtime, and queues its outcome there. `regulator.asyncio` keeps one
//! `Completions` per event loop, registered with `loop.add_reader`: the runtime writes one
//! byte when the queue goes from empty to not, and the loop drains every outcome queued by
//! then in one callback, resolving its futures. So a decision costs the loop one future and
//! a share of one wake-up, never a thread taking the GIL, and a burst of decisions one
//! wake-up. A cancelled future aborts its operation (`Completions.cancel`).

use std::collections::HashMap;
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::PyList;
use regulator::Error;
use tokio::task::AbortHandle;

use super::{
    ContinuousDecision, Decision, LeakyDecision, LeaseStats, Reservation, count, lease_options,
    seconds, slot_bound, source_name, to_py,
};

/// The runtime every asyncio operation runs on: one per process, started on first use.
pub(crate) fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("regulator-asyncio")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| super::invalid(format!("cannot start the runtime: {e}")))
}

/// An outcome, turned into a Python value (or exception) on the event loop's thread.
type Outcome = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

struct Queue {
    done: Vec<(u64, Outcome)>,
    running: HashMap<u64, AbortHandle>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// The runtime's end of the wake-up socket.
    wake: UnixStream,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish(&self, id: u64, outcome: Outcome) {
        let first = {
            let mut q = self.queue();
            q.running.remove(&id);
            q.done.push((id, outcome));
            q.done.len() == 1
        };
        if first {
            // Full means a wake-up is already pending: the loop drains everything anyway.
            let _ = (&self.wake).write(&[1]);
        }
    }
}

/// Where the operations started from one event loop queue their outcomes.
#[pyclass(frozen, module = "regulator")]
pub struct Completions {
    shared: Arc<Shared>,
    /// The event loop's end: readable when outcomes are queued.
    reader: UnixStream,
}

impl Completions {
    /// Runs `fut` on the runtime under `id`; its outcome is queued here.
    fn submit<T, F>(&self, id: u64, fut: F) -> PyResult<()>
    where
        F: Future<Output = Result<T, Error>> + Send + 'static,
        T: for<'py> IntoPyObject<'py> + Send + 'static,
    {
        let shared = Arc::clone(&self.shared);
        // Registered before it can finish, so a finished one is never left in `running`.
        let mut q = self.shared.queue();
        let handle = runtime()?.spawn(async move {
            let result = fut.await;
            let outcome: Outcome = Box::new(move |py| match result {
                Ok(value) => value.into_py_any(py),
                Err(e) => Err(to_py(&e)),
            });
            shared.finish(id, outcome);
        });
        q.running.insert(id, handle.abort_handle());
        Ok(())
    }
}

#[pymethods]
impl Completions {
    #[new]
    fn new() -> PyResult<Self> {
        let (reader, wake) = UnixStream::pair()
            .and_then(|(r, w)| {
                r.set_nonblocking(true)?;
                w.set_nonblocking(true)?;
                Ok((r, w))
            })
            .map_err(|e| super::invalid(format!("cannot make the wake-up socket: {e}")))?;
        Ok(Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    done: Vec::new(),
                    running: HashMap::new(),
                }),
                wake,
            }),
            reader,
        })
    }

    /// The file descriptor the event loop watches.
    fn fileno(&self) -> i32 {
        self.reader.as_raw_fd()
    }

    /// Every outcome queued so far, as `(id, ok, value or exception)`.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let mut sink = [0u8; 256];
        while matches!((&self.reader).read(&mut sink), Ok(n) if n > 0) {}
        let done = std::mem::take(&mut self.shared.queue().done);
        let out = PyList::empty(py);
        for (id, outcome) in done {
            match outcome(py) {
                Ok(value) => out.append((id, true, value))?,
                Err(e) => out.append((id, false, e.into_value(py)))?,
            }
        }
        Ok(out)
    }

    /// Aborts the operation `id` (its future was cancelled): nothing of it is queued.
    fn cancel(&self, id: u64) {
        if let Some(h) = self.shared.queue().running.remove(&id) {
            h.abort();
        }
    }

    /// Operations started and not yet queued.
    fn __len__(&self) -> usize {
        self.shared.queue().running.len()
    }
}

/// An async connection to Redis; made by `AsyncClient.connect(done, id, url, ...)`, whose
/// outcome is the client.
#[pyclass(frozen, module = "regulator")]
pub struct AsyncClient {
    inner: regulator::Client,
}

client_class! {
    AsyncClient => AsyncTokenBucket, AsyncLeakyBucket, AsyncContinuousBucket, AsyncSemaphore,
        AsyncScheduledBucket;

    #[staticmethod]
    #[pyo3(signature = (done, id, url, *, username=None, password=None, cluster=false, call_timeout=None, connect_timeout=None, coalesce=None, frozen_time=false))]
    fn connect(
        done: &Completions,
        id: u64,
        url: String,
        username: Option<String>,
        password: Option<String>,
        cluster: bool,
        call_timeout: Option<f64>,
        connect_timeout: Option<f64>,
        coalesce: Option<bool>,
        frozen_time: bool,
    ) -> PyResult<()> {
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
        done.submit(id, async move {
            let inner = builder.connect().await?;
            Ok(AsyncClient { inner })
        })
    }

    #[pyo3(signature = (done, id, name, *, rps=None, burst=None, window=None, ttl=None))]
    fn set_knobs(
        &self,
        done: &Completions,
        id: u64,
        name: String,
        rps: Option<f64>,
        burst: Option<f64>,
        window: Option<f64>,
        ttl: Option<f64>,
    ) -> PyResult<()> {
        let ttl = ttl.map(|t| seconds("ttl", t)).transpose()?;
        let update = regulator::KnobsUpdate { rps, burst, window };
        let client = self.inner.clone();
        done.submit(
            id,
            async move { client.set_knobs(&name, update, ttl).await },
        )
    }

    fn reset_knobs(&self, done: &Completions, id: u64, name: String) -> PyResult<()> {
        let client = self.inner.clone();
        done.submit(id, async move { client.reset_knobs(&name).await })
    }

    fn delete(&self, done: &Completions, id: u64, name: String) -> PyResult<()> {
        let client = self.inner.clone();
        done.submit(id, async move { client.delete(&name).await })
    }
}

#[pyclass(frozen, module = "regulator")]
pub struct AsyncTokenBucket {
    inner: regulator::TokenBucket,
}

token_bucket_class! {
    AsyncTokenBucket, submit;

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

token_bucket_class! {
    AsyncLeasedBucket, submit;

    /// The decision the lease in hand makes without a call, or None.
    #[pyo3(signature = (tokens=1.0))]
    fn decide_locally(&self, tokens: f64) -> PyResult<Option<Decision>> {
        self.inner
            .decide_locally(tokens)
            .map(|d| d.map(Decision::from))
            .map_err(|e| to_py(&e))
    }

    fn release(&self, done: &Completions, id: u64) -> PyResult<()> {
        let b = self.inner.clone();
        done.submit(id, async move { b.release().await })
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

    #[pyo3(signature = (done, id, amount=1.0))]
    fn consume(&self, done: &Completions, id: u64, amount: f64) -> PyResult<()> {
        let b = self.inner.clone();
        done.submit(id, async move {
            b.consume(amount).await.map(LeakyDecision::from)
        })
    }

    fn peek(&self, done: &Completions, id: u64) -> PyResult<()> {
        let b = self.inner.clone();
        done.submit(id, async move { b.peek().await.map(LeakyDecision::from) })
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

    #[pyo3(signature = (done, id, tokens=1.0))]
    fn allow(&self, done: &Completions, id: u64, tokens: f64) -> PyResult<()> {
        let b = self.inner.clone();
        done.submit(id, async move {
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

    #[pyo3(signature = (done, id, max_wait=0.0))]
    fn acquire(&self, done: &Completions, id: u64, max_wait: f64) -> PyResult<()> {
        let (s, max_wait) = (self.inner.clone(), seconds("max_wait", max_wait)?);
        done.submit(id, async move {
            s.acquire(max_wait).await.map(AsyncPermit::new)
        })
    }

    fn try_acquire(&self, done: &Completions, id: u64) -> PyResult<()> {
        let s = self.inner.clone();
        done.submit(id, async move {
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
        if let Ok(rt) = runtime() {
            rt.spawn(async move {
                if let Some(p) = held.lock().await.take() {
                    let _ = p.release().await;
                }
            });
        }
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

    fn renew(&self, done: &Completions, id: u64) -> PyResult<()> {
        let held = Arc::clone(&self.inner);
        done.submit(id, async move {
            match held.lock().await.as_ref() {
                Some(p) => p.renew().await,
                None => Err(Error::InvalidArgument("the permit was released".to_owned())),
            }
        })
    }

    fn release(&self, done: &Completions, id: u64) -> PyResult<()> {
        let held = Arc::clone(&self.inner);
        done.submit(id, async move {
            let permit = held.lock().await.take();
            match permit {
                Some(p) => p.release().await,
                None => Ok(()),
            }
        })
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

    #[pyo3(signature = (done, id, tokens=1, max_wait=None))]
    fn reserve(
        &self,
        done: &Completions,
        id: u64,
        tokens: i64,
        max_wait: Option<f64>,
    ) -> PyResult<()> {
        let (b, tokens, max_wait) = (
            self.inner.clone(),
            count("tokens", tokens)?,
            slot_bound(max_wait)?,
        );
        done.submit(id, async move {
            b.reserve(tokens, max_wait).await.map(Reservation::from)
        })
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Completions>()?;
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
