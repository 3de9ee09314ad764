//! When a policy ticks: every interval with ±10% jitter (so many policies and replicas do
//! not query in lockstep), and after a failed tick again soon, then less and less often
//! (1 s doubling, capped at the larger of the interval and 30 s). A failure never stops
//! the task; only cancellation does, and never in the middle of a tick.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::{Backends, Store};
use super::leader::Leadership;
use super::metrics::Metrics;
use super::reconcile::{Ctx, Mode, PolicyState};
use super::source::{MetricSource, Prometheus};
use super::store::KnobStore;

/// What a policy task talks to; [`Backends`] in the daemon, fakes in tests.
pub trait Sides: Send + Sync + 'static {
    /// The signal source.
    type Source: MetricSource;
    /// The knob store.
    type Store: KnobStore;
    /// The signal source.
    fn source(&self) -> &Self::Source;
    /// The knob store.
    fn store(&self) -> &Self::Store;
}

impl Sides for Backends {
    type Source = Prometheus;
    type Store = Store;
    fn source(&self) -> &Prometheus {
        &self.source
    }
    fn store(&self) -> &Store {
        &self.store
    }
}

/// What every policy task shares.
#[derive(Debug)]
pub struct Shared {
    /// Where to count.
    pub metrics: Arc<Metrics>,
    /// Whether this replica writes.
    pub leadership: Arc<Leadership>,
    /// `--dry-run`.
    pub dry_run: bool,
    /// Which policy governs each throttle name.
    pub names: super::names::Names,
    /// The controllers' time origin.
    pub origin: Instant,
    /// Policies of the first configuration (or their replacements) that have not finished
    /// a tick yet: `/readyz` waits for them.
    pub first_ticks_pending: std::sync::Mutex<BTreeSet<String>>,
}

impl Shared {
    /// What every policy task shares; `/readyz` waits for a first tick of each of `policies`.
    #[must_use]
    pub fn new<'a>(
        metrics: Arc<Metrics>,
        dry_run: bool,
        policies: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        Self {
            metrics,
            leadership: Arc::default(),
            dry_run,
            names: super::names::Names::default(),
            origin: Instant::now(),
            first_ticks_pending: std::sync::Mutex::new(
                policies.into_iter().map(str::to_owned).collect(),
            ),
        }
    }

    /// How many policies `/readyz` still waits for.
    #[must_use]
    pub fn pending_first_ticks(&self) -> usize {
        self.pending().len()
    }

    /// `policy` finished a tick, or left the configuration.
    pub fn first_tick_done(&self, policy: &str) {
        self.pending().remove(policy);
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.first_ticks_pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn mode(&self) -> Mode {
        if self.dry_run {
            Mode::DryRun
        } else if self.leadership.is_leader() {
            Mode::Write
        } else {
            Mode::Shadow
        }
    }
}

/// Runs `state`'s policy until `token` is cancelled.
pub async fn drive<B: Sides>(
    mut state: PolicyState,
    backends: watch::Receiver<Arc<B>>,
    shared: Arc<Shared>,
    token: CancellationToken,
) -> PolicyState {
    let policy = Arc::clone(state.policy());
    let name = policy.name().to_owned();
    let mut pending_ready = true;
    let mut failures: u32 = 0;
    let mut next = later(Instant::now(), first_delay(policy.interval));
    loop {
        tokio::select! {
            biased;
            () = token.cancelled() => break,
            () = tokio::time::sleep_until(next) => {}
        }
        let started = Instant::now();
        let b = Arc::clone(&backends.borrow());
        let mode = || shared.mode();
        let ctx = Ctx {
            source: b.source(),
            store: b.store(),
            metrics: &shared.metrics,
            mode: &mode,
            names: &shared.names,
            now: started - shared.origin,
            wall: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        };
        let result = state.reconcile(&ctx).await;
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(report) => {
                if failures > 0 {
                    tracing::info!(policy = %name, failures, "tick succeeded again");
                }
                failures = 0;
                shared.metrics.tick(&name, "ok", seconds);
                let p = report.phases;
                tracing::debug!(policy = %name, throttles = report.throttles, changes = report.changes, no_data = report.no_data, seconds,
                    query_s = p.query.as_secs_f64(), read_s = p.read.as_secs_f64(), compute_s = p.compute.as_secs_f64(),
                    write_s = p.write.as_secs_f64(), log_s = p.log.as_secs_f64(), "tick");
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                shared.metrics.tick(&name, "error", seconds);
                shared.metrics.error(e.kind());
                let retry = retry_after(policy.interval, failures);
                if failures == 1 {
                    tracing::warn!(policy = %name, error = %e, kind = e.kind(), retry_in = ?retry, "tick failed; nothing written");
                } else {
                    tracing::debug!(policy = %name, error = %e, failures, retry_in = ?retry, "tick failed again");
                }
            }
        }
        // Ready after a first tick, whatever its outcome (see `http`).
        if std::mem::take(&mut pending_ready) {
            shared.first_tick_done(&name);
        }
        next = later(started, jitter(retry_after(policy.interval, failures)));
    }
    state
}

/// The delay before the next tick after `failures` failures in a row (0: a success).
#[must_use]
pub fn retry_after(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let base = interval.min(Duration::from_secs(1));
    let cap = interval.max(Duration::from_secs(30));
    base.saturating_mul(1 << (failures - 1).min(16)).min(cap)
}

/// The first tick comes soon, spread over up to a tenth of the interval (at most 1 s).
fn first_delay(interval: Duration) -> Duration {
    (interval / 10)
        .min(Duration::from_secs(1))
        .mul_f64(random_unit())
}

/// `d` ±10% (saturating: no interval, however long, can make it panic).
#[must_use]
pub fn jitter(d: Duration) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * (0.9 + 0.2 * random_unit()))
        .unwrap_or(Duration::MAX)
}

/// `d` after `at`, or a year after it should that overflow the clock: a wait that long is
/// never reached, and is no panic.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(at)
}

/// A number in [0, 1).
fn random_unit() -> f64 {
    fastrand::f64()
}

#[cfg(test)]
mod tests;
