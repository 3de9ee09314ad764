//! Blocking wrappers for threaded workers: the same shape as the async client.
//!
//! A [`Client`] owns a current-thread Tokio runtime that the calling threads drive
//! themselves: a call's I/O runs on the thread that makes it, with no hand-off to another
//! thread, so a round trip costs about what the wire costs. While one thread drives, the
//! others' calls share the connection (and a token bucket's coalesced script calls). Clones
//! share the runtime and the connection. Work left in the background (giving back a
//! semaphore slot after a timed-out acquire) runs at the next call of any thread; until then
//! the slot's lease bounds it. Do not call these from inside an async runtime: use [`crate::Client`] there
//! (such a call, `connect` included, returns [`Error::InvalidArgument`] rather than panicking;
//! dropping a client there is safe).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::continuous_bucket::sync::ContinuousBucket;
use super::decision::{Decision, FailMode, retry_delay};
use super::error::{Error, Result};
use super::knobs::{Knobs, KnobsUpdate};
pub use super::leaky_bucket::sync::LeakyBucket;
use super::{ClientBuilder, ThrottleState};

pub use super::scheduled_bucket::blocking::ScheduledBucket;
pub use super::semaphore::blocking::{Permit, Semaphore};

/// A blocking handle to Redis. Cheap to clone; shareable across threads.
#[derive(Debug, Clone)]
pub struct Client {
    inner: crate::Client,
    runtime: Arc<IoRuntime>,
}

/// Declares the blocking twin of an async limiter `crate::$ty`: a struct of the limiter and
/// the runtime that drives it, its constructor `$ctor(name, $params)` on the blocking
/// [`Client`], `with_knobs_ttl`, `name` and `$getter` (the parameters used where the knobs hold
/// none). Each twin then adds its own operations.
macro_rules! blocking_twin {
    ($(#[$doc:meta])* $ty:ident, $ctor:ident($params:ty), $getter:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $ty {
            inner: $crate::$ty,
            runtime: std::sync::Arc<$crate::blocking::IoRuntime>,
        }

        impl $crate::blocking::Client {
            #[doc = concat!("See [`crate::Client::", stringify!($ctor), "`].")]
            #[must_use]
            pub fn $ctor(&self, name: impl Into<String>, params: $params) -> $ty {
                $ty {
                    inner: self.as_async().$ctor(name, params),
                    runtime: self.runtime(),
                }
            }
        }

        impl $ty {
            #[doc = concat!("See [`crate::", stringify!($ty), "::with_knobs_ttl`].")]
            #[must_use]
            pub fn with_knobs_ttl(mut self, ttl: std::time::Duration) -> Self {
                self.inner = self.inner.with_knobs_ttl(ttl);
                self
            }

            /// The throttle's name.
            #[must_use]
            pub fn name(&self) -> &str {
                self.inner.name()
            }

            /// The parameters used where the knobs hold none.
            #[must_use]
            pub fn $getter(&self) -> $params {
                self.inner.$getter()
            }
        }
    };
}
pub(crate) use blocking_twin;

blocking_twin!(
    /// A blocking token bucket; see [`crate::TokenBucket`].
    TokenBucket,
    token_bucket(Knobs),
    defaults
);

/// Runs `fut` on the client's I/O runtime, refusing (rather than panicking) when called from
/// inside an async runtime.
pub(crate) fn block_on<F: Future>(runtime: &IoRuntime, fut: F) -> Result<F::Output> {
    refuse_inside_async()?;
    runtime.0.as_ref().map(|r| r.block_on(fut)).ok_or_else(|| {
        Error::InvalidArgument("the blocking client's runtime has stopped".to_owned())
    })
}

fn refuse_inside_async() -> Result<()> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::InvalidArgument(
            "regulator::blocking called from inside an async runtime; use regulator::Client"
                .to_owned(),
        ));
    }
    Ok(())
}

/// The runtime of a blocking client and its clones. Stopped without waiting when the last
/// of them is dropped, so dropping one inside an async runtime (where waiting is not allowed)
/// is no panic.
#[derive(Debug)]
pub(crate) struct IoRuntime(Option<tokio::runtime::Runtime>);

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Client {
    /// Connects with the default options; see [`crate::Client::connect`].
    ///
    /// # Errors
    /// As [`crate::Client::connect`]; [`Error::InvalidArgument`] if the runtime cannot start.
    pub fn connect(url: &str) -> Result<Self> {
        Self::from_builder(crate::Client::builder(url))
    }

    /// Connects with the given options.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn from_builder(builder: ClientBuilder) -> Result<Self> {
        refuse_inside_async()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot start the runtime: {e}")))?;
        let runtime = IoRuntime(Some(runtime));
        let inner = block_on(&runtime, builder.connect())??;
        Ok(Self {
            inner,
            runtime: Arc::new(runtime),
        })
    }

    /// The runtime that drives the connection, for the blocking wrappers of each limiter.
    pub(crate) fn runtime(&self) -> Arc<IoRuntime> {
        self.runtime.clone()
    }

    /// The async client this one wraps.
    #[must_use]
    pub fn as_async(&self) -> &crate::Client {
        &self.inner
    }

    /// See [`crate::Client::get`].
    ///
    /// # Errors
    /// As [`crate::Client::get`].
    pub fn get(&self, name: &str) -> Result<ThrottleState> {
        block_on(&self.runtime, self.inner.get(name))?
    }

    /// See [`crate::Client::set_knobs`].
    ///
    /// # Errors
    /// As [`crate::Client::set_knobs`].
    pub fn set_knobs(
        &self,
        name: &str,
        knobs: impl Into<KnobsUpdate>,
        ttl: Option<Duration>,
    ) -> Result<()> {
        block_on(&self.runtime, self.inner.set_knobs(name, knobs, ttl))?
    }

    /// See [`crate::Client::reset_knobs`].
    ///
    /// # Errors
    /// As [`crate::Client::reset_knobs`].
    pub fn reset_knobs(&self, name: &str) -> Result<()> {
        block_on(&self.runtime, self.inner.reset_knobs(name))?
    }

    /// See [`crate::Client::delete`].
    ///
    /// # Errors
    /// As [`crate::Client::delete`].
    pub fn delete(&self, name: &str) -> Result<()> {
        block_on(&self.runtime, self.inner.delete(name))?
    }
}

impl TokenBucket {
    /// See [`crate::TokenBucket::consume`].
    ///
    /// # Errors
    /// As [`crate::TokenBucket::consume`].
    pub fn consume(&self, tokens: f64) -> Result<Decision> {
        block_on(&self.runtime, self.inner.consume(tokens))?
    }

    /// See [`crate::TokenBucket::consume_or`].
    ///
    /// # Errors
    /// As [`crate::TokenBucket::consume_or`].
    pub fn consume_or(&self, tokens: f64, mode: FailMode) -> Result<Decision> {
        block_on(&self.runtime, self.inner.consume_or(tokens, mode))?
    }

    /// See [`crate::TokenBucket::wait`]; sleeps the calling thread.
    ///
    /// # Errors
    /// As [`crate::TokenBucket::wait`].
    pub fn wait(&self, tokens: f64, max_wait: Duration) -> Result<Decision> {
        wait_blocking(max_wait, || self.consume(tokens))
    }

    /// This bucket, deciding from local leases; see [`crate::TokenBucket::leased`].
    ///
    /// On this client a lease's timer runs while some thread is in a call, so the rest of a
    /// lease that ends while every thread is idle goes back at the next call (or at
    /// [`LeasedBucket::release`]); dropping the bucket does not give it back.
    ///
    /// # Errors
    /// As [`crate::TokenBucket::leased`].
    pub fn leased(&self, options: crate::LeaseOptions) -> Result<LeasedBucket> {
        Ok(LeasedBucket {
            inner: self.inner.leased(options)?,
            runtime: Arc::clone(&self.runtime),
        })
    }
}

/// A blocking token bucket deciding from local leases; see [`crate::LeasedBucket`]. Clones
/// share the lease.
#[derive(Debug, Clone)]
pub struct LeasedBucket {
    inner: crate::LeasedBucket,
    runtime: Arc<IoRuntime>,
}

impl LeasedBucket {
    /// See [`crate::LeasedBucket::consume`]: a decision the lease in hand can make is made
    /// on the calling thread without entering the client's runtime.
    ///
    /// # Errors
    /// As [`crate::LeasedBucket::consume`].
    pub fn consume(&self, tokens: f64) -> Result<Decision> {
        if let Some(d) = self.inner.decide_locally(tokens)? {
            return Ok(d);
        }
        block_on(&self.runtime, self.inner.consume(tokens))?
    }

    /// See [`crate::LeasedBucket::decide_locally`].
    ///
    /// # Errors
    /// As [`crate::LeasedBucket::decide_locally`].
    pub fn decide_locally(&self, tokens: f64) -> Result<Option<Decision>> {
        self.inner.decide_locally(tokens)
    }

    /// See [`crate::LeasedBucket::consume_or`].
    ///
    /// # Errors
    /// As [`crate::LeasedBucket::consume_or`].
    pub fn consume_or(&self, tokens: f64, mode: FailMode) -> Result<Decision> {
        block_on(&self.runtime, self.inner.consume_or(tokens, mode))?
    }

    /// See [`crate::LeasedBucket::wait`]; sleeps the calling thread.
    ///
    /// # Errors
    /// As [`crate::LeasedBucket::wait`].
    pub fn wait(&self, tokens: f64, max_wait: Duration) -> Result<Decision> {
        wait_blocking(max_wait, || self.consume(tokens))
    }

    /// See [`crate::LeasedBucket::release`].
    ///
    /// # Errors
    /// As [`crate::LeasedBucket::release`].
    pub fn release(&self) -> Result<()> {
        block_on(&self.runtime, self.inner.release())?
    }

    /// See [`crate::LeasedBucket::stats`].
    #[must_use]
    pub fn stats(&self) -> crate::LeaseStats {
        self.inner.stats()
    }

    /// The throttle's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.inner.name()
    }
}

/// Calls `consume` until it allows, sleeping the thread on each denial's hint, never past
/// `max_wait`.
fn wait_blocking(
    max_wait: Duration,
    mut consume: impl FnMut() -> Result<Decision>,
) -> Result<Decision> {
    let start = Instant::now();
    let deadline = start + max_wait;
    loop {
        let d = consume()?;
        if d.allowed {
            return Ok(d);
        }
        let now = Instant::now();
        let delay = retry_delay(d.sleep);
        if now + delay > deadline {
            return Err(Error::MaxWaitExceeded {
                waited: now - start,
                retry_after: d.sleep,
            });
        }
        std::thread::sleep(delay);
    }
}
