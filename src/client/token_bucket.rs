//! [`TokenBucket`]: the limitlion-compatible limiter workers call before each unit of work.

use std::time::Duration;

use super::connection::Client;
use super::decision::{Decision, FailMode, check_tokens, fallback, wait_until_allowed};
use super::error::{Error, Result};
use super::keys::check_name;
use super::knobs::Knobs;
use super::reply::number;
use super::script_call::ScriptCall;
use super::scripts::ScriptId;

impl Client {
    /// A limitlion-compatible token bucket named `name`. `defaults` apply while the throttle
    /// has no knobs in Redis (or its knobs are unusable).
    #[must_use]
    pub fn token_bucket(&self, name: impl Into<String>, defaults: Knobs) -> TokenBucket {
        TokenBucket::new(self.clone(), name.into(), defaults)
    }
}

/// A named token bucket shared through Redis with every worker, Python or Rust, that uses the
/// same name. Cheap to clone.
///
/// ```no_run
/// # async fn f() -> Result<(), regulator::Error> {
/// use std::time::Duration;
/// let client = regulator::Client::connect("redis://127.0.0.1:6379/0").await?;
/// let orders = client.token_bucket("orders-db", regulator::Knobs { rps: 200.0, burst: 1.0, window: 5.0 });
/// let d = orders.consume(1.0).await?;
/// if !d.allowed {
///     tokio::time::sleep(d.sleep).await;
/// }
/// orders.wait(1.0, Duration::from_secs(2)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct TokenBucket {
    defaults: Knobs,
    /// `EVALSHA <sha> 2 <bucket> <knobs> <rps> <burst> <window>`, built once; each call
    /// appends the knobs TTL and the token count.
    call: ScriptCall,
    /// The calls of this process waiting for the one in flight, shared by the clones.
    pub(crate) coalescer: std::sync::Arc<super::coalesce::Coalescer>,
}

crate::client::script_call::limiter_accessors!(TokenBucket, call, defaults: Knobs);

impl TokenBucket {
    pub(crate) fn new(client: Client, name: String, defaults: Knobs) -> Self {
        let keys = client.keys();
        // The leases hash is only the leased form's; the others ignore it.
        let keys = [keys.bucket(&name), keys.knobs(&name), keys.leases(&name)];
        let call = ScriptCall::new(client, name, ScriptId::TokenBucket, &keys, |cmd| {
            cmd.arg(defaults.rps)
                .arg(defaults.burst)
                .arg(defaults.window);
        });
        Self {
            defaults,
            call,
            coalescer: std::sync::Arc::default(),
        }
    }

    pub(crate) fn call(&self) -> &ScriptCall {
        &self.call
    }

    /// Takes `tokens` from the bucket if it holds that many; one atomic script call.
    ///
    /// A request above the bucket's capacity is always denied and takes nothing.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] before any call for `tokens` that is not a finite number
    /// above 0, invalid defaults or an empty name; otherwise the connection's errors.
    pub async fn consume(&self, tokens: f64) -> Result<Decision> {
        self.check(tokens)?;
        if self.call.client().coalesces() {
            self.consume_coalesced(tokens).await
        } else {
            self.consume_one(tokens).await
        }
    }

    /// One script call for one request.
    pub(crate) async fn consume_one(&self, tokens: f64) -> Result<Decision> {
        let reply = self
            .call
            .run(|cmd| {
                cmd.arg(tokens);
            })
            .await?;
        parse_reply(reply)
    }

    /// As [`consume`](Self::consume), but when Redis is unreachable or times out, decides
    /// by `mode` instead of failing. Such decisions have [`Source::Unavailable`](super::decision::Source::Unavailable); the
    /// client counts them ([`Client::fallbacks`]) and logs when Redis goes and comes back.
    ///
    /// # Errors
    /// Errors other than unavailability still surface: invalid arguments, auth, scripts.
    pub async fn consume_or(&self, tokens: f64, mode: FailMode) -> Result<Decision> {
        match self.consume(tokens).await {
            Err(e) if e.is_unavailable() => {
                self.call.client().count_fallback();
                Ok(fallback(mode, self.defaults))
            }
            other => other,
        }
    }

    /// Takes `tokens`, sleeping on the bucket's hint and retrying until allowed.
    ///
    /// Never sleeps past `max_wait`: when the next chance lies beyond it, returns
    /// [`Error::MaxWaitExceeded`] at once.
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`], or any error of [`consume`](Self::consume).
    pub async fn wait(&self, tokens: f64, max_wait: Duration) -> Result<Decision> {
        wait_until_allowed(max_wait, || self.consume(tokens)).await
    }

    pub(crate) fn check(&self, tokens: f64) -> Result<()> {
        check_tokens(tokens)?;
        check_name(self.name()).map_err(Error::InvalidArgument)?;
        self.defaults
            .validate()
            .map_err(|e| Error::InvalidArgument(format!("defaults of {:?}: {e}", self.name())))
    }
}

fn parse_reply(
    (allowed, tokens, sleep_us, source_code, capacity): (i64, redis::Value, i64, i64, redis::Value),
) -> Result<Decision> {
    let sleep = u64::try_from(sleep_us.max(0)).unwrap_or_default();
    Ok(Decision {
        allowed: allowed == 1,
        tokens: number("tokens", &tokens)?,
        sleep: Duration::from_micros(sleep),
        source: super::reply::source(source_code)?,
        capacity: match number("capacity", &capacity)? {
            -1.0 => f64::INFINITY,
            c => c,
        },
    })
}
