//! Who writes: this replica while it holds the lease, and only until the lease it last
//! renewed could have run out.
//!
//! The lease is renewed every third of its length. Leadership is not a flag set on success
//! and cleared on failure: it is a deadline, `start of the last successful renewal + 90% of
//! the lease`, so a replica cut off from Redis stops writing before another one can take the
//! lease over, whatever its renewals are doing.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::Backends;
use super::leader_lease::LeaderLease;
use super::metrics::Metrics;

/// This replica's standing, and the token that names it in the lease and fences its writes.
#[derive(Debug)]
pub struct Leadership {
    token: Arc<str>,
    state: std::sync::Mutex<State>,
    /// The lease epoch of this replica's current tenure (0 while not the leader), shared
    /// with the store, which fences cluster writes by it.
    epoch: Arc<AtomicU64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct State {
    until: Option<Instant>,
    /// Bumped by each [`Leadership::step_down`]: a lease attempt that started before it
    /// cannot make this replica the leader again.
    generation: u64,
}

impl Default for Leadership {
    fn default() -> Self {
        Self::new(&LeaderLease::new_token())
    }
}

impl Leadership {
    /// Not the leader yet, under `token`.
    #[must_use]
    pub fn new(token: &str) -> Self {
        Self {
            token: token.into(),
            state: std::sync::Mutex::default(),
            epoch: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The epoch cell the store reads at each cluster write: the lease epoch of this
    /// replica's current tenure, 0 while it is not the leader.
    #[must_use]
    pub fn epoch(&self) -> &Arc<AtomicU64> {
        &self.epoch
    }

    /// This replica's lease token.
    #[must_use]
    pub fn token(&self) -> &Arc<str> {
        &self.token
    }

    /// True while this replica may write.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.state().until.is_some_and(|u| Instant::now() < u)
    }

    /// Stops writing at once (the lease's Redis or key changed with a reload); the lease
    /// task takes it again under the new settings. An attempt already under way under the
    /// old settings does not count.
    pub fn step_down(&self) {
        let mut s = self.state();
        s.until = None;
        s.generation = s.generation.wrapping_add(1);
        self.epoch.store(0, Ordering::SeqCst);
    }

    /// Leads until `until` under `epoch`, as a won lease attempt would make it: for tests
    /// of what a deadline stops.
    #[cfg(feature = "test-util")]
    pub fn lead_until(&self, until: Instant, epoch: u64) {
        let generation = self.generation();
        self.set(generation, Some(until), epoch);
    }

    /// The current generation, to pass to [`Leadership::set`] with an attempt's outcome.
    fn generation(&self) -> u64 {
        self.state().generation
    }

    /// Records an attempt that started in `generation`, with the lease epoch it read when it
    /// held the lease; ignored if this replica stepped down since. A tenure keeps the epoch
    /// of its first attempt: renewals do not move it.
    fn set(&self, generation: u64, until: Option<Instant>, epoch: u64) {
        let mut s = self.state();
        if s.generation != generation {
            return;
        }
        let was_leader = s.until.is_some_and(|u| Instant::now() < u);
        s.until = until;
        if until.is_none() {
            self.epoch.store(0, Ordering::SeqCst);
        } else if !was_leader || self.epoch.load(Ordering::SeqCst) == 0 {
            self.epoch.store(epoch, Ordering::SeqCst);
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Takes and renews the lease until `token` is cancelled, then gives it up. `first` is told
/// when the first attempt is over, so a leader's first tick already writes.
pub async fn lead(
    leadership: Arc<Leadership>,
    mut backends: watch::Receiver<Arc<Backends>>,
    metrics: Arc<Metrics>,
    token: CancellationToken,
    first: tokio::sync::oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let me = Arc::clone(leadership.token());
    let mut held: Option<LeaderLease> = None;
    let mut was_leader = false;
    loop {
        let b = Arc::clone(&backends.borrow_and_update());
        let length = b.leader.lease;
        let started = Instant::now();
        let generation = leadership.generation();
        let outcome = match b.redis.client().await {
            Ok(client) => {
                let lease = LeaderLease::with_token(client, &b.leader.key, length, &me);
                // The lease key changed with a reload: give the old one up.
                if let Some(old) = held
                    .take()
                    .filter(|old| was_leader && old.key() != b.leader.key)
                {
                    let _ = old.release().await;
                }
                let r = b.redis.note(lease.try_lead().await);
                held = Some(lease);
                r
            }
            Err(e) => Err(e),
        };
        let mut next = renew_every(length);
        match outcome {
            Ok(s) if s.held => {
                leadership.set(
                    generation,
                    started.checked_add(length.saturating_sub(length / 10)),
                    s.epoch,
                );
            }
            Ok(s) => {
                leadership.set(generation, None, 0);
                // A standby tries again just after the holder's lease runs out, so a dead
                // leader is replaced within one lease, not one lease plus a renewal period.
                if let Some(left) = s.expires_in {
                    next = next.min(left.saturating_add(Duration::from_millis(20)));
                }
            }
            Err(e) => {
                // Keep the deadline: the lease may still be ours until it passes.
                metrics.error("lease");
                if leadership.is_leader() {
                    tracing::warn!(error = %e, "lease renewal failed; writing until the lease could have run out");
                } else {
                    tracing::debug!(error = %e, "lease attempt failed");
                }
            }
        }
        let leader = leadership.is_leader();
        metrics.leader(leader);
        if leader != was_leader {
            if leader {
                tracing::info!(key = %b.leader.key, token = %me, "leader: writing knobs");
            } else {
                tracing::info!(key = %b.leader.key, "not the leader: computing in shadow");
            }
            was_leader = leader;
        }
        if let Some(first) = first.take() {
            let _ = first.send(());
        }
        tokio::select! {
            () = token.cancelled() => break,
            () = tokio::time::sleep(next) => {}
            // A reload: take (or renew) the lease under the new settings now.
            r = backends.changed() => if r.is_err() { break },
        }
    }
    if let Some(lease) = held.filter(|_| leadership.is_leader()) {
        leadership.step_down();
        metrics.leader(false);
        match lease.release().await {
            Ok(()) => tracing::info!("lease released"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release the lease; it expires on its own");
            }
        }
    }
}

/// How often the lease is renewed: three times a lease, so two lost renewals in a row still
/// leave it held.
#[must_use]
pub fn renew_every(length: Duration) -> Duration {
    (length / 3).max(Duration::from_millis(100))
}
