//! The blocking wrapper of [`ScheduledBucket`](crate::ScheduledBucket), for threaded workers;
//! exported as `regulator::blocking::ScheduledBucket`.

use std::time::Duration;

use super::{Reservation, ScheduledParams};
use crate::client::blocking::block_on;
use crate::client::error::Result;

crate::client::blocking::blocking_twin!(
    /// A blocking scheduled bucket; see [`crate::ScheduledBucket`]. Cheap to clone.
    ///
    /// ```no_run
    /// # fn f() -> Result<(), regulator::Error> {
    /// use std::time::Duration;
    /// let client = regulator::blocking::Client::connect("redis://127.0.0.1:6379/0")?;
    /// let api = client.scheduled_bucket(
    ///     "partner-api",
    ///     regulator::ScheduledParams { capacity: 5, refill_every: Duration::from_millis(100), refill_amount: 1 },
    /// );
    /// api.acquire(1, Duration::from_secs(5))?; // sleeps the thread until its slot
    /// # Ok(()) }
    /// ```
    ScheduledBucket,
    scheduled_bucket(ScheduledParams),
    params
);

impl ScheduledBucket {
    /// See [`crate::ScheduledBucket::reserve`].
    ///
    /// # Errors
    /// As [`crate::ScheduledBucket::reserve`].
    pub fn reserve(&self, tokens: u32, max_wait: Duration) -> Result<Reservation> {
        block_on(&self.runtime, self.inner.reserve(tokens, max_wait))?
    }

    /// See [`crate::ScheduledBucket::acquire`]; sleeps the calling thread until the slot.
    ///
    /// # Errors
    /// As [`crate::ScheduledBucket::acquire`].
    pub fn acquire(&self, tokens: u32, max_wait: Duration) -> Result<Reservation> {
        let r = self.reserve(tokens, max_wait)?;
        std::thread::sleep(r.wait);
        Ok(r)
    }
}
