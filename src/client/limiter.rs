//! [`Limiter`]: what every token-taking limiter offers, so a worker can switch between local
//! and distributed limiting by configuration without changing the code that takes tokens.

use std::future::Future;

use super::decision::Decision;
use super::error::Result;
use super::lease::LeasedBucket;
use super::token_bucket::TokenBucket;

/// A limiter that hands out tokens: the Redis [`TokenBucket`] shared by a fleet, or an
/// in-process bucket for one process.
///
/// ```no_run
/// # async fn f(limiter: impl regulator::Limiter) -> Result<(), regulator::Error> {
/// let d = limiter.consume(1.0).await?;
/// if !d.allowed {
///     tokio::time::sleep(d.sleep).await;
/// }
/// # Ok(()) }
/// ```
pub trait Limiter: Send + Sync {
    /// Takes `tokens` if the limiter holds that many; all or nothing.
    fn consume(&self, tokens: f64) -> impl Future<Output = Result<Decision>> + Send;
}

impl Limiter for TokenBucket {
    fn consume(&self, tokens: f64) -> impl Future<Output = Result<Decision>> + Send {
        TokenBucket::consume(self, tokens)
    }
}

impl Limiter for LeasedBucket {
    fn consume(&self, tokens: f64) -> impl Future<Output = Result<Decision>> + Send {
        LeasedBucket::consume(self, tokens)
    }
}
