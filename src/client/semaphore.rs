//! [`Semaphore`]: at most `capacity` holders at once across every process, each holding its
//! slot under a hold (`lua/semaphore_acquire.lua`, `_renew.lua`, `_release.lua`).
//!
//! Holders live in the sorted set `throttle:<name>:holders`, scored by their hold deadlines
//! in Redis time. A crashed holder frees its own slot when its hold runs out, and no other;
//! the `concurrency` knob, when stored, replaces the caller's capacity on the next acquire.
//!
//! # Waiting
//!
//! A waiting [`Semaphore::acquire`] polls: 5 ms after a refusal, doubling to 50 ms, each delay
//! jittered down by up to half (so waiters do not call in step) and never longer than the time
//! until the earliest hold runs out (which the script replies with). A release is therefore
//! noticed within 50 ms, at a cost of 20 to 40 calls a second per waiter. Being woken by a
//! release (pub/sub, or `BLPOP` on a list of tokens as `limiters` does) would notice sooner,
//! but needs a second, dedicated connection per client (and per node on Redis Cluster), and
//! a lost notification or a crashed holder must still be covered by polling: the poll alone is
//! simpler and always correct. Polling is not fair: a waiter may be overtaken by a newer one.

pub(crate) mod blocking;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::connection::Client;
use super::decision::Source;
use super::error::{Error, Result};
use super::ids::unique_id;
use super::keys::check_name;
use super::reply;
use super::script_call::ScriptCall;
use super::scripts::ScriptId;

/// The first delay between polls of a waiting acquire; it doubles up to [`MAX_POLL`].
const MIN_POLL: Duration = Duration::from_millis(5);
/// The longest delay between polls: how late a waiter may notice a release.
const MAX_POLL: Duration = Duration::from_millis(50);
/// The longest hold a holder may take: `u32::MAX` milliseconds, about 49 days.
const MAX_HOLD: Duration = Duration::from_millis(u32::MAX as u64);

/// A semaphore's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemaphoreParams {
    /// How many may hold the semaphore at once (at least 1), unless the throttle's knobs hash
    /// has a `concurrency` field, which then applies.
    pub capacity: u32,
    /// How long a permit holds its slot: a holder that neither releases nor renews within it
    /// loses its slot (from 1 ms to about 49 days).
    pub hold: Duration,
}

impl SemaphoreParams {
    /// Checks the parameters: `capacity >= 1`, `1 ms <= hold <= u32::MAX ms`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        if self.capacity == 0 {
            return Err(Error::InvalidArgument(
                "semaphore capacity must be at least 1; got 0".to_owned(),
            ));
        }
        if self.hold < Duration::from_millis(1) || self.hold > MAX_HOLD {
            return Err(Error::InvalidArgument(format!(
                "semaphore hold must be from 1 ms to {MAX_HOLD:?}; got {:?}",
                self.hold
            )));
        }
        Ok(())
    }
}

/// A named semaphore shared through Redis: at most `capacity` holders at once, across every
/// process that uses the same name. Cheap to clone.
///
/// ```no_run
/// # async fn f() -> Result<(), regulator::Error> {
/// use std::time::Duration;
/// use regulator::SemaphoreParams;
/// let client = regulator::Client::connect("redis://127.0.0.1:6379/0").await?;
/// let exports = client.semaphore(
///     "exports",
///     SemaphoreParams { capacity: 4, hold: Duration::from_secs(30) },
/// );
/// let permit = exports.acquire(Duration::from_secs(10)).await?; // Err(MaxWaitExceeded) past it
/// // ... at most 4 of these run at once, fleet-wide; renew within 30 s if the work runs long:
/// permit.renew().await?;
/// permit.release().await?; // or drop it
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Semaphore {
    params: SemaphoreParams,
    holders: Arc<str>,
    /// `EVALSHA <sha> 2 <holders> <knobs> <capacity> <hold ms>`; each acquire appends the
    /// knobs TTL and the holder id.
    acquire: ScriptCall,
}

crate::client::script_call::limiter_accessors!(Semaphore, acquire, params: SemaphoreParams);

impl Client {
    /// A semaphore named `name`: at most `params.capacity` holders at once (or the
    /// throttle's `concurrency` knob, when stored), each for at most `params.hold` unless
    /// renewed.
    #[must_use]
    pub fn semaphore(&self, name: impl Into<String>, params: SemaphoreParams) -> Semaphore {
        Semaphore::new(self.clone(), name.into(), params)
    }
}

/// What one acquire call found.
enum Attempt {
    Granted {
        capacity: u32,
        source: Source,
    },
    /// All slots are held; the earliest hold runs out in `next`.
    Busy {
        next: Duration,
    },
}

impl Semaphore {
    pub(crate) fn new(client: Client, name: String, params: SemaphoreParams) -> Self {
        let keys = client.keys();
        let keys = [keys.holders(&name), keys.knobs(&name)];
        let holders = keys[0].as_str().into();
        let acquire = ScriptCall::new(client, name, ScriptId::SemaphoreAcquire, &keys, |cmd| {
            cmd.arg(params.capacity).arg(hold_ms(params.hold));
        });
        Self {
            params,
            holders,
            acquire,
        }
    }

    /// Takes a slot, waiting up to `max_wait` for one to free (`Duration::ZERO`: wait as long
    /// as it takes).
    ///
    /// It waits by polling: 5 ms after a refusal, doubling to 50 ms, each delay jittered and
    /// never longer than the time until the earliest hold runs out. A release is noticed
    /// within 50 ms; waiters are not served in order.
    ///
    /// When the wait runs out nothing is held, not even a slot granted by a call still in
    /// flight at the deadline: that call's holder is released before the error returns. A
    /// call whose reply is lost (a timeout) may have taken a slot nevertheless; it is given
    /// back in the background, and if Redis cannot be reached for that, its hold frees it.
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`]; [`Error::InvalidArgument`] before any call for invalid
    /// parameters or an empty name; otherwise the connection's errors.
    pub async fn acquire(&self, max_wait: Duration) -> Result<Permit> {
        self.check()?;
        let id = holder_id();
        let start = Instant::now();
        let deadline = (!max_wait.is_zero()).then(|| start + max_wait);
        let mut poll = MIN_POLL;
        // When the earliest hold runs out, as the last refusal said: the retry hint.
        let mut frees_at = start;
        loop {
            let attempt = match deadline {
                None => self.attempt(&id).await,
                Some(deadline) => {
                    if let Ok(attempt) = tokio::time::timeout_at(deadline, self.attempt(&id)).await
                    {
                        attempt
                    } else {
                        // The call may have been granted after all; the release goes out on
                        // the same connection behind it, so it undoes it either way.
                        self.give_back_quietly(&id).await;
                        return Err(exceeded(start, frees_at));
                    }
                }
            };
            let next = match attempt {
                Ok(Attempt::Granted { capacity, source }) => {
                    return Ok(self.permit(id, capacity, source));
                }
                Ok(Attempt::Busy { next }) => next,
                Err(e) => {
                    if e.is_unavailable() {
                        self.give_back_later(id);
                    }
                    return Err(e);
                }
            };
            frees_at = Instant::now() + next;
            let mut wake = Instant::now() + jitter(poll).min(next).max(Duration::from_millis(1));
            poll = (poll * 2).min(MAX_POLL);
            if let Some(deadline) = deadline {
                wake = wake.min(deadline);
            }
            tokio::time::sleep_until(wake).await;
            if deadline.is_some_and(|deadline| wake >= deadline) {
                // No call is in flight: nothing is held.
                return Err(exceeded(start, frees_at));
            }
        }
    }

    /// Takes a slot if one is free now; one call.
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire), but never [`Error::MaxWaitExceeded`].
    pub async fn try_acquire(&self) -> Result<Option<Permit>> {
        self.check()?;
        let id = holder_id();
        match self.attempt(&id).await {
            Ok(Attempt::Granted { capacity, source }) => {
                Ok(Some(self.permit(id, capacity, source)))
            }
            Ok(Attempt::Busy { .. }) => Ok(None),
            Err(e) => {
                if e.is_unavailable() {
                    self.give_back_later(id);
                }
                Err(e)
            }
        }
    }

    fn permit(&self, id: String, capacity: u32, source: Source) -> Permit {
        Permit {
            semaphore: self.clone(),
            id,
            capacity,
            source,
            held: true,
        }
    }

    async fn attempt(&self, id: &str) -> Result<Attempt> {
        let (granted, _holders, capacity, source, _deadline, next): (i64, i64, i64, i64, i64, i64) =
            self.acquire
                .run(|cmd| {
                    cmd.arg(id);
                })
                .await?;
        let source = reply::source(source)?;
        if granted == 1 {
            let capacity = u32::try_from(capacity)
                .map_err(|_| Error::Script(format!("unexpected capacity {capacity} in reply")))?;
            return Ok(Attempt::Granted { capacity, source });
        }
        let next = Duration::from_millis(u64::try_from(next).unwrap_or_default());
        Ok(Attempt::Busy { next })
    }

    async fn renew_id(&self, id: &str) -> Result<()> {
        let client = self.acquire.client();
        let scripts = &client.inner.scripts;
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(scripts.semaphore_renew.get_hash())
            .arg(1)
            .arg(&*self.holders)
            .arg(hold_ms(self.params.hold))
            .arg(id);
        let (renewed, _deadline): (i64, i64) =
            client.run_script(&scripts.semaphore_renew, &cmd).await?;
        if renewed == 1 {
            Ok(())
        } else {
            Err(self.permit_expired())
        }
    }

    /// Removes `id` from the holders; `Ok(false)` when its hold had run out already.
    async fn give_back(&self, id: &str) -> Result<bool> {
        let client = self.acquire.client();
        let scripts = &client.inner.scripts;
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(scripts.semaphore_release.get_hash())
            .arg(1)
            .arg(&*self.holders)
            .arg(id);
        let in_time: i64 = client.run_script(&scripts.semaphore_release, &cmd).await?;
        Ok(in_time == 1)
    }

    /// Gives back a slot this id may hold; when that fails, the hold will free it.
    async fn give_back_quietly(&self, id: &str) {
        if let Err(error) = self.give_back(id).await {
            tracing::debug!(semaphore = self.name(), %error, "release failed; the hold will free the slot");
        }
    }

    /// As [`give_back_quietly`](Self::give_back_quietly), on the current runtime, without
    /// waiting for it.
    fn give_back_later(&self, id: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let semaphore = self.clone();
        runtime.spawn(async move { semaphore.give_back_quietly(&id).await });
    }

    fn permit_expired(&self) -> Error {
        Error::PermitExpired {
            name: self.name().to_owned(),
        }
    }

    fn check(&self) -> Result<()> {
        check_name(self.name()).map_err(Error::InvalidArgument)?;
        self.params.validate()
    }
}

/// A slot in a [`Semaphore`], held until released, dropped or its hold runs out.
///
/// Dropping a permit releases it in the background on the current Tokio runtime (best effort:
/// without a runtime, or when the release fails, the hold frees the slot).
/// [`release`](Self::release) does it now and reports the outcome.
#[derive(Debug)]
#[must_use = "dropping a permit releases it at once"]
pub struct Permit {
    semaphore: Semaphore,
    id: String,
    capacity: u32,
    source: Source,
    held: bool,
}

impl Permit {
    /// This holder's id: its member in `throttle:<name>:holders`.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The capacity that applied when the slot was granted.
    #[must_use]
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Whether that capacity came from the `concurrency` knob
    /// ([`Source::Knobs`]), the caller ([`Source::Defaults`]), or the caller because the knob
    /// is not a positive integer ([`Source::InvalidKnobs`]).
    #[must_use]
    pub fn source(&self) -> Source {
        self.source
    }

    /// Extends the hold to a full hold from now, for work that runs longer than one hold.
    ///
    /// # Errors
    /// [`Error::PermitExpired`] when the hold had run out already (the slot is lost; the
    /// permit no longer counts as a holder); otherwise the connection's errors.
    pub async fn renew(&self) -> Result<()> {
        self.semaphore.renew_id(&self.id).await
    }

    /// Gives the slot back now.
    ///
    /// # Errors
    /// [`Error::PermitExpired`] when the hold had run out before the release (the work
    /// outlived its hold: the capacity may have been exceeded); otherwise the connection's
    /// errors, after which the hold frees the slot.
    pub async fn release(mut self) -> Result<()> {
        let result = self.semaphore.give_back(&self.id).await;
        self.held = false;
        if result? {
            Ok(())
        } else {
            Err(self.semaphore.permit_expired())
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.held {
            self.semaphore.give_back_later(std::mem::take(&mut self.id));
        }
    }
}

fn exceeded(start: Instant, frees_at: Instant) -> Error {
    let now = Instant::now();
    Error::MaxWaitExceeded {
        waited: now - start,
        retry_after: frees_at.saturating_duration_since(now),
    }
}

fn hold_ms(hold: Duration) -> u64 {
    u64::try_from(hold.as_millis()).unwrap_or(u64::MAX)
}

/// A holder id unique to this acquisition, fleet-wide. The same id is used for every call of
/// one acquire, so a call repeated after a lost reply finds its own slot rather than taking a
/// second one, and a repeated release removes nothing but its own slot.
fn holder_id() -> String {
    unique_id()
}

/// `d` shortened by a random fraction of up to half.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(1.0 - fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_half() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_millis(50));
            assert!(j >= Duration::from_millis(25) && j <= Duration::from_millis(50));
        }
    }

    #[test]
    fn params_are_checked() {
        let ok = SemaphoreParams {
            capacity: 1,
            hold: Duration::from_millis(1),
        };
        assert!(ok.validate().is_ok());
        for bad in [
            SemaphoreParams { capacity: 0, ..ok },
            SemaphoreParams {
                hold: Duration::from_micros(999),
                ..ok
            },
            SemaphoreParams {
                hold: MAX_HOLD + Duration::from_millis(1),
                ..ok
            },
        ] {
            assert!(matches!(bad.validate(), Err(Error::InvalidArgument(_))));
        }
    }
}
