//! Blocking wrappers of [`Semaphore`](crate::Semaphore) and [`Permit`](crate::Permit), for
//! threaded workers; exported as `regulator::blocking::{Semaphore, Permit}`.

use std::sync::Arc;
use std::time::Duration;

use super::SemaphoreParams;
use crate::client::blocking::block_on;
use crate::client::decision::Source;
use crate::client::error::Result;

crate::client::blocking::blocking_twin!(
    /// A blocking semaphore; see [`crate::Semaphore`]. Cheap to clone.
    ///
    /// ```no_run
    /// # fn f() -> Result<(), regulator::Error> {
    /// use std::time::Duration;
    /// let client = regulator::blocking::Client::connect("redis://127.0.0.1:6379/0")?;
    /// let exports = client.semaphore(
    ///     "exports",
    ///     regulator::SemaphoreParams { capacity: 4, hold: Duration::from_secs(30) },
    /// );
    /// let permit = exports.acquire(Duration::from_secs(10))?;
    /// // ... the work; the permit is released when dropped, or:
    /// permit.release()?;
    /// # Ok(()) }
    /// ```
    Semaphore,
    semaphore(SemaphoreParams),
    params
);

/// A blocking permit; see [`crate::Permit`]. Dropping it releases the slot before `drop`
/// returns (best effort: when the release fails, the hold frees the slot).
#[derive(Debug)]
#[must_use = "dropping a permit releases it at once"]
pub struct Permit {
    /// `None` once released.
    inner: Option<crate::Permit>,
    runtime: Arc<crate::client::blocking::IoRuntime>,
}

impl Semaphore {
    /// See [`crate::Semaphore::acquire`]; blocks the calling thread while it waits.
    ///
    /// # Errors
    /// As [`crate::Semaphore::acquire`].
    pub fn acquire(&self, max_wait: Duration) -> Result<Permit> {
        let permit = block_on(&self.runtime, self.inner.acquire(max_wait))??;
        Ok(self.wrap(permit))
    }

    /// See [`crate::Semaphore::try_acquire`].
    ///
    /// # Errors
    /// As [`crate::Semaphore::try_acquire`].
    pub fn try_acquire(&self) -> Result<Option<Permit>> {
        let permit = block_on(&self.runtime, self.inner.try_acquire())??;
        Ok(permit.map(|p| self.wrap(p)))
    }

    fn wrap(&self, permit: crate::Permit) -> Permit {
        Permit {
            inner: Some(permit),
            runtime: self.runtime.clone(),
        }
    }
}

impl Permit {
    fn inner(&self) -> &crate::Permit {
        self.inner
            .as_ref()
            .expect("a permit is held until released")
    }

    /// See [`crate::Permit::id`].
    #[must_use]
    pub fn id(&self) -> &str {
        self.inner().id()
    }

    /// See [`crate::Permit::capacity`].
    #[must_use]
    pub fn capacity(&self) -> u32 {
        self.inner().capacity()
    }

    /// See [`crate::Permit::source`].
    #[must_use]
    pub fn source(&self) -> Source {
        self.inner().source()
    }

    /// See [`crate::Permit::renew`].
    ///
    /// # Errors
    /// As [`crate::Permit::renew`].
    pub fn renew(&self) -> Result<()> {
        block_on(&self.runtime, self.inner().renew())?
    }

    /// See [`crate::Permit::release`].
    ///
    /// # Errors
    /// As [`crate::Permit::release`].
    pub fn release(mut self) -> Result<()> {
        match self.inner.take() {
            Some(permit) => block_on(&self.runtime, permit.release())?,
            None => Ok(()),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(permit) = self.inner.take() {
            // Inside an async runtime block_on refuses, and the async permit's own drop
            // releases it in the background instead.
            let _ = block_on(&self.runtime, permit.release());
        }
    }
}
