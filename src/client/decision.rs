//! What every limiter's decision is made of, whatever decided it: [`Decision`], its
//! [`Source`], the [`FailMode`] that decides without Redis, and the waiting loop shared by
//! the limiters' `wait`.

use std::time::Duration;

use super::error::{Error, Result};
use super::knobs::Knobs;

/// Which knobs a decision was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// The throttle has no knobs in Redis; the caller's defaults applied.
    Defaults,
    /// The knobs stored in Redis applied.
    Knobs,
    /// Knobs are stored but unusable (a non-numeric or missing field, a negative rate...);
    /// the caller's defaults applied. `regulator status` shows what is wrong.
    InvalidKnobs,
    /// Redis was unavailable and the decision is the caller's fail-open or fail-closed
    /// choice (see [`TokenBucket::consume_or`](crate::TokenBucket::consume_or)).
    Unavailable,
    /// An in-process limiter decided, without Redis.
    Local,
}

/// What to decide when Redis cannot be reached in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Allow the work: availability matters more than the limit.
    Open,
    /// Deny the work: the protected system matters more than the work.
    Closed,
}

/// The outcome of one [`TokenBucket::consume`](crate::TokenBucket::consume) (and of the other
/// limiters' decisions in the same shape).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Whether the work may go ahead.
    pub allowed: bool,
    /// Tokens left in the bucket after this call.
    pub tokens: f64,
    /// Time until the next window starts: how long to sleep before retrying when denied.
    pub sleep: Duration,
    /// Which knobs applied.
    pub source: Source,
    /// The bucket's capacity under those knobs (`0` when `rps == 0`, infinite when
    /// `rps == -1`).
    pub capacity: f64,
}

/// Refuses a request that is not a finite number of tokens above 0.
pub(crate) fn check_tokens(tokens: f64) -> Result<()> {
    if tokens > 0.0 && tokens.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "tokens must be a finite number above 0; got {tokens}"
        )))
    }
}

/// Calls `consume` until it allows, sleeping on each denial's hint, never past `max_wait`.
pub(crate) async fn wait_until_allowed<F: Future<Output = Result<Decision>>>(
    max_wait: Duration,
    mut consume: impl FnMut() -> F,
) -> Result<Decision> {
    let start = tokio::time::Instant::now();
    let deadline = start + max_wait;
    loop {
        let d = consume().await?;
        if d.allowed {
            return Ok(d);
        }
        let now = tokio::time::Instant::now();
        let wake = now + retry_delay(d.sleep);
        if wake > deadline {
            return Err(Error::MaxWaitExceeded {
                waited: now - start,
                retry_after: d.sleep,
            });
        }
        tokio::time::sleep_until(wake).await;
    }
}

/// A floor under the retry hint so a zero hint (possible with fractional windows) never
/// turns a waiting loop into a busy one.
pub(crate) fn retry_delay(sleep: Duration) -> Duration {
    sleep.max(Duration::from_millis(1))
}

pub(crate) fn fallback(mode: FailMode, defaults: Knobs) -> Decision {
    let allowed = mode == FailMode::Open;
    Decision {
        allowed,
        tokens: 0.0,
        sleep: if allowed {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(defaults.window).unwrap_or(Duration::from_secs(1))
        },
        source: Source::Unavailable,
        capacity: 0.0,
    }
}
