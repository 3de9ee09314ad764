//! Local token leases: a process reserves a batch of tokens from a shared [`TokenBucket`] in
//! one script call (`lua/token_bucket_lease.lua`), then decides locally, in nanoseconds, until
//! the batch is spent or the lease ends, and gives back what it did not spend.
//!
//! Nothing is ever over budget: a batch leaves the bucket as consumption would, so every other
//! worker (Python limitlion included) sees an ordinary bucket. A lease ends at the earliest of
//!
//! - its horizon ([`LeaseOptions::horizon`], 50 ms by default), counted from the moment the
//!   reserving call was sent, so it never outlives the horizon in Redis time either;
//! - the bucket's next window, when it refills: unspent tokens go back only within the window
//!   they came from (after a refill they are dropped, since the refill was capped without them).
//!
//! A batch is sized from the process's own recent rate to last about one horizon, and never
//! holds more than [`LeaseOptions::max_share`] of the bucket's capacity, so processes take
//! turns and share fairly, and a knob change takes effect within one lease. The unspent part
//! goes back when the lease ends (a timer), when the next batch is reserved (in the same call),
//! on [`LeasedBucket::release`], or when the last clone is dropped inside a runtime.
//!
//! Nothing comes back that did not leave: the script records each grant under a lease id, and
//! a give-back restores at most what that id reserved, once. A request that is not a finite
//! number above 0 is refused before it reaches the lease in hand.
//!
//! A process that dies holding a lease loses at most its batch: those tokens were taken from
//! the bucket and are not returned. The bucket itself is untouched and refills as usual.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::decision::{Decision, FailMode, Source, check_tokens, fallback};
use super::error::{Error, Result};
use super::reply::{micros, number, source};
use super::scripts::ScriptId;
use super::token_bucket::TokenBucket;

/// Shortest time a batch is sized for: below it a rate estimate is noise.
const MIN_SPAN: Duration = Duration::from_millis(1);

/// How a [`LeasedBucket`] sizes and ends its leases.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeaseOptions {
    /// The longest a lease lasts, and the stretch of local demand a batch is sized for.
    /// A knob lowered in Redis is obeyed by this process at most this long after. 1 ms to
    /// 10 s; default 50 ms.
    pub horizon: Duration,
    /// The largest share of the bucket's capacity one batch may take, in (0, 1]; default
    /// 0.01. Smaller shares make processes take more, smaller turns (fairer, more calls).
    pub max_share: f64,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            horizon: Duration::from_millis(50),
            max_share: 0.01,
        }
    }
}

impl LeaseOptions {
    /// Checks the ranges documented on the fields.
    ///
    /// # Errors
    /// A message naming the field that is out of range.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&self.horizon) {
            return Err(format!(
                "lease horizon must be 1 ms to 10 s; got {:?}",
                self.horizon
            ));
        }
        if !(self.max_share > 0.0 && self.max_share <= 1.0) {
            return Err(format!(
                "lease max_share must be above 0 and at most 1; got {}",
                self.max_share
            ));
        }
        Ok(())
    }
}

/// What a [`LeasedBucket`] has done so far (all its clones together).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LeaseStats {
    /// Decisions made (allowed or denied), locally or with a call.
    pub decisions: u64,
    /// Script calls made: reservations, and returns of unspent tokens.
    pub calls: u64,
    /// Tokens reserved from the bucket.
    pub reserved: f64,
    /// Unspent tokens given back to the bucket.
    pub returned: f64,
    /// Unspent tokens that could not go back: their window had ended, or the call that
    /// carried them failed.
    pub dropped: f64,
}

/// A [`TokenBucket`] that decides from local leases. Made by [`TokenBucket::leased`]; clones
/// share the lease.
///
/// ```no_run
/// # async fn f() -> Result<(), regulator::Error> {
/// let client = regulator::Client::connect("redis://127.0.0.1:6379/0").await?;
/// let bucket = client
///     .token_bucket("search-api", regulator::Knobs { rps: 50_000.0, burst: 1.0, window: 1.0 })
///     .leased(regulator::LeaseOptions::default())?;
/// if bucket.consume(1.0).await?.allowed {
///     // call the API
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LeasedBucket {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    bucket: TokenBucket,
    options: LeaseOptions,
    local: Mutex<Local>,
    /// Held while a call changes the lease, so one call at a time does.
    renew: tokio::sync::Mutex<()>,
}

/// The lease in hand, and what the process has learned of the bucket.
#[derive(Debug)]
struct Local {
    /// Tokens of the current lease not yet spent.
    tokens: f64,
    /// When the current lease ends (spending stops; the rest goes back).
    deadline: Instant,
    /// The lease held, as the script knows it; `None` when none is held.
    held: Option<Held>,
    /// The bucket is unlimited (`rps == -1`) until `deadline`.
    unlimited: bool,
    /// What the last reply said of the bucket.
    source: Source,
    capacity: f64,
    /// When the bucket's current window ends, as far as this process can tell.
    window_end: Instant,
    /// The bucket could not give some tokens; asking again before a while is pointless.
    denied: Option<Denied>,
    /// The current lease: when it was granted and how many tokens it held.
    granted_at: Instant,
    granted: f64,
    /// Recent local demand, tokens per second.
    rate: f64,
    /// Changes with every lease, so a timer knows whether its lease is still the one held.
    generation: u64,
    stats: LeaseStats,
}

impl TokenBucket {
    /// This bucket, deciding from local leases (see [`LeasedBucket`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for options out of range.
    pub fn leased(&self, options: LeaseOptions) -> Result<LeasedBucket> {
        options.validate().map_err(Error::InvalidArgument)?;
        let now = Instant::now();
        Ok(LeasedBucket {
            shared: Arc::new(Shared {
                bucket: self.clone(),
                options,
                local: Mutex::new(Local::new(now)),
                renew: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

impl Shared {
    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Local {
    /// No lease held, nothing learned yet.
    fn new(now: Instant) -> Self {
        Self {
            tokens: 0.0,
            deadline: now,
            held: None,
            unlimited: false,
            source: Source::Defaults,
            capacity: f64::INFINITY,
            window_end: now,
            denied: None,
            granted_at: now,
            granted: 0.0,
            rate: 0.0,
            generation: 0,
            stats: LeaseStats::default(),
        }
    }

    /// The decision the lease in hand makes, if it can make one without Redis.
    fn decide(&mut self, tokens: f64, now: Instant) -> Option<Decision> {
        if now < self.deadline && (self.unlimited || self.tokens >= tokens) {
            if !self.unlimited {
                self.tokens -= tokens;
            }
            self.stats.decisions += 1;
            return Some(self.allowed());
        }
        match self.denied {
            Some(d) if now < d.until && tokens > d.available => {
                self.stats.decisions += 1;
                Some(Decision {
                    allowed: false,
                    tokens: 0.0,
                    sleep: d.refill.saturating_duration_since(now),
                    source: self.source,
                    capacity: self.capacity,
                })
            }
            _ => None,
        }
    }

    fn allowed(&self) -> Decision {
        Decision {
            allowed: true,
            tokens: if self.unlimited { 1.0 } else { self.tokens },
            sleep: Duration::ZERO,
            source: self.source,
            capacity: self.capacity,
        }
    }

    /// Ends the lease in hand: learns the demand it saw, and hands back what to return.
    fn close(&mut self, now: Instant) -> (f64, Option<Held>) {
        let held = self.held.take();
        if held.is_some() {
            let used = self.granted - self.tokens;
            let span = now
                .min(self.deadline)
                .saturating_duration_since(self.granted_at);
            let rate = used / span.max(MIN_SPAN).as_secs_f64();
            // Up at once, down gently: a burst is served, a lull does not starve the next one.
            self.rate = if rate > self.rate {
                rate
            } else {
                f64::midpoint(self.rate, rate)
            };
        }
        let returned = std::mem::take(&mut self.tokens);
        self.unlimited = false;
        self.deadline = now;
        self.generation = self.generation.wrapping_add(1);
        (if held.is_some() { returned } else { 0.0 }, held)
    }

    /// The batch to ask for next: the recent rate over what is left of the horizon (or of
    /// the window, if that ends first), bounded by the share of capacity.
    fn wanted(&self, tokens: f64, options: &LeaseOptions, now: Instant) -> f64 {
        let left = self.window_end.saturating_duration_since(now);
        let span = if left.is_zero() {
            options.horizon
        } else {
            options.horizon.min(left)
        };
        let batch = (self.rate * span.as_secs_f64()).min(options.max_share * self.capacity);
        batch.max(tokens)
    }
}

/// A denial the process remembers, so requests it could not serve either are denied
/// without a call.
#[derive(Debug, Clone, Copy)]
struct Denied {
    /// Asking again before this is pointless.
    until: Instant,
    /// When the bucket's window ends: the hint a remembered denial gives.
    refill: Instant,
    /// The tokens the bucket held.
    available: f64,
}

/// A lease as the script recorded it: the window it was granted in and its id. A give-back
/// names both, and the script restores at most what it recorded for that id, once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    /// The bucket's `refreshed` when the lease was granted ("%.17g").
    anchor: String,
    /// The id the script gave the lease.
    id: String,
}

/// One reply of `lua/token_bucket_lease.lua`.
struct Grant {
    granted: f64,
    bucket_tokens: f64,
    sleep: Duration,
    source: Source,
    capacity: f64,
    held: Held,
    restored: f64,
}

fn parse_grant(reply: &[redis::Value]) -> Result<Grant> {
    let bad = || Error::Script(format!("unexpected lease reply: {reply:?}"));
    let [granted, tokens, sleep, code, capacity, anchor, restored, id] = reply else {
        return Err(bad());
    };
    let int = |v: &redis::Value| match v {
        redis::Value::Int(i) => Ok(*i),
        _ => Err(bad()),
    };
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| bad()),
        _ => Err(bad()),
    };
    let held = Held {
        anchor: text(anchor)?,
        id: text(id)?,
    };
    Ok(Grant {
        granted: number("granted", granted)?,
        bucket_tokens: number("tokens", tokens)?,
        sleep: micros(int(sleep)?),
        source: source(int(code)?)?,
        capacity: match number("capacity", capacity)? {
            -1.0 => f64::INFINITY,
            c => c,
        },
        held,
        restored: number("restored", restored)?,
    })
}

impl LeasedBucket {
    /// Takes `tokens`: from the lease in hand when it holds them (no call), else from a new
    /// batch reserved in one script call that also returns the old lease's rest.
    ///
    /// A denial is remembered until the bucket's next window, or one horizon if that is
    /// sooner: until then, requests it could not serve either are denied without a call.
    ///
    /// # Errors
    /// As [`TokenBucket::consume`].
    pub async fn consume(&self, tokens: f64) -> Result<Decision> {
        if let Some(d) = self.decide_locally(tokens)? {
            return Ok(d);
        }
        self.shared.bucket.check(tokens)?;
        let _renewing = self.shared.renew.lock().await;
        let now = Instant::now();
        let (returned, held, wanted) = {
            let mut local = self.shared.local();
            // Another caller may have renewed the lease while this one waited.
            if let Some(d) = local.decide(tokens, now) {
                return Ok(d);
            }
            let (returned, held) = local.close(now);
            let wanted = local.wanted(tokens, &self.shared.options, now);
            (returned, held, wanted)
        };
        let sent = Instant::now();
        let grant = self.exchange(returned, held, tokens, wanted).await?;
        let received = Instant::now();
        let mut local = self.shared.local();
        local.stats.decisions += 1;
        local.source = grant.source;
        local.capacity = grant.capacity;
        local.window_end = received + grant.sleep;
        if grant.granted < 0.0 {
            local.unlimited = true;
            local.deadline = sent + self.shared.options.horizon;
            local.denied = None;
            return Ok(local.allowed());
        }
        if grant.granted >= tokens {
            local.denied = None;
            local.stats.reserved += grant.granted;
            local.tokens = grant.granted - tokens;
            local.granted = grant.granted;
            local.granted_at = received;
            local.deadline = sent + self.shared.options.horizon.min(grant.sleep);
            local.held = Some(grant.held);
            if local.tokens > 0.0 {
                self.expire_at(local.deadline, local.generation);
            }
            return Ok(local.allowed());
        }
        // Remembered until the window ends, but never longer than a lease lasts: a knob
        // raised (from 0, say, whose denial sleeps a whole window) reaches a denied process
        // as soon as a lowered one reaches a leased one.
        local.denied = Some(Denied {
            until: received + grant.sleep.min(self.shared.options.horizon),
            refill: received + grant.sleep,
            available: grant.bucket_tokens,
        });
        Ok(Decision {
            allowed: false,
            tokens: grant.bucket_tokens,
            sleep: grant.sleep,
            source: grant.source,
            capacity: grant.capacity,
        })
    }

    /// The decision the lease in hand makes without Redis, if it can make one: no I/O, no
    /// await, so a caller can take the fast path before it sets up a call (a binding to
    /// another runtime does). `None` when only [`consume`](Self::consume) can decide. A
    /// request that is not a finite number above 0 is refused first, so it never touches the
    /// lease.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for such a request.
    pub fn decide_locally(&self, tokens: f64) -> Result<Option<Decision>> {
        check_tokens(tokens)?;
        Ok(self.shared.local().decide(tokens, Instant::now()))
    }

    /// As [`TokenBucket::consume_or`]: when Redis is unavailable, decides by `mode`.
    ///
    /// # Errors
    /// Errors other than unavailability.
    pub async fn consume_or(&self, tokens: f64, mode: FailMode) -> Result<Decision> {
        match self.consume(tokens).await {
            Err(e) if e.is_unavailable() => {
                let bucket = &self.shared.bucket;
                bucket.call().client().count_fallback();
                Ok(fallback(mode, bucket.defaults()))
            }
            other => other,
        }
    }

    /// As [`TokenBucket::wait`]: takes `tokens`, sleeping on the bucket's hint, never past
    /// `max_wait`.
    ///
    /// # Errors
    /// [`Error::MaxWaitExceeded`], or any error of [`consume`](Self::consume).
    pub async fn wait(&self, tokens: f64, max_wait: Duration) -> Result<Decision> {
        super::decision::wait_until_allowed(max_wait, || self.consume(tokens)).await
    }

    /// Ends the lease in hand now and gives its unspent tokens back.
    ///
    /// # Errors
    /// The connection's errors (the tokens are then dropped, see [`LeaseStats::dropped`]).
    pub async fn release(&self) -> Result<()> {
        let _renewing = self.shared.renew.lock().await;
        let (returned, held) = self.shared.local().close(Instant::now());
        if held.is_none() {
            return Ok(());
        }
        self.exchange(returned, held, 0.0, 0.0).await.map(drop)
    }

    /// What this bucket's leases have done so far.
    #[must_use]
    pub fn stats(&self) -> LeaseStats {
        self.shared.local().stats
    }

    /// The throttle's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.shared.bucket.name()
    }

    /// The options the leases follow.
    #[must_use]
    pub fn options(&self) -> LeaseOptions {
        self.shared.options
    }

    /// One call of the lease script: gives back `returned` (of the lease `held`) and reserves
    /// between `requested` and `wanted`.
    async fn exchange(
        &self,
        returned: f64,
        held: Option<Held>,
        requested: f64,
        wanted: f64,
    ) -> Result<Grant> {
        exchange(&self.shared, returned, held, requested, wanted).await
    }

    /// Ends the lease of `generation` at `deadline` if it is still the one held, giving back
    /// its rest.
    fn expire_at(&self, deadline: Instant, generation: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = Arc::downgrade(&self.shared);
        runtime.spawn(async move {
            tokio::time::sleep_until(deadline).await;
            expire(&shared, generation).await;
        });
    }
}

async fn exchange(
    shared: &Shared,
    returned: f64,
    held: Option<Held>,
    requested: f64,
    wanted: f64,
) -> Result<Grant> {
    let grant = call(
        &shared.bucket,
        shared.options.max_share,
        returned,
        held.as_ref(),
        requested,
        wanted,
    )
    .await;
    let mut local = shared.local();
    local.stats.calls += 1;
    match &grant {
        Ok(g) => {
            local.stats.returned += g.restored;
            local.stats.dropped += returned - g.restored;
        }
        Err(_) => local.stats.dropped += returned,
    }
    grant
}

/// One call of `lua/token_bucket_lease.lua` (its arguments are described there).
///
/// Safe to repeat (the connection does after a dropped link): a repeated give-back finds its
/// lease's record gone and restores nothing, and a repeated reservation only takes tokens.
async fn call(
    bucket: &TokenBucket,
    max_share: f64,
    returned: f64,
    held: Option<&Held>,
    requested: f64,
    wanted: f64,
) -> Result<Grant> {
    let (anchor, id) = held.map_or(("", ""), |h| (h.anchor.as_str(), h.id.as_str()));
    let reply: Vec<redis::Value> = bucket
        .call()
        .run_as(ScriptId::TokenBucketLease, |cmd| {
            cmd.arg(returned)
                .arg(anchor)
                .arg(requested)
                .arg(wanted)
                .arg(max_share)
                .arg(id);
        })
        .await?;
    parse_grant(&reply)
}

async fn expire(shared: &Weak<Shared>, generation: u64) {
    let Some(shared) = shared.upgrade() else {
        return;
    };
    let _renewing = shared.renew.lock().await;
    let (returned, held) = {
        let mut local = shared.local();
        if local.generation != generation {
            return;
        }
        local.close(Instant::now())
    };
    if returned > 0.0
        && let Err(error) = exchange(&shared, returned, held, 0.0, 0.0).await
    {
        tracing::debug!(bucket = shared.bucket.name(), %error, "returning a lease's rest failed; its tokens are dropped");
    }
}

impl Drop for Shared {
    /// Gives the rest of the lease in hand back, if a runtime is there to send it.
    fn drop(&mut self) {
        let local = self.local.get_mut().unwrap_or_else(PoisonError::into_inner);
        let (returned, held) = local.close(Instant::now());
        if returned <= 0.0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let bucket = self.bucket.clone();
        let max_share = self.options.max_share;
        runtime.spawn(async move {
            let _ = call(&bucket, max_share, returned, held.as_ref(), 0.0, 0.0).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(now: Instant) -> Local {
        Local {
            source: Source::Knobs,
            capacity: 1000.0,
            ..Local::new(now)
        }
    }

    #[test]
    fn a_lease_decides_locally_until_spent_or_ended() {
        let now = Instant::now();
        let mut l = local(now);
        l.tokens = 2.0;
        l.held = Some(Held {
            anchor: "1".into(),
            id: "1".into(),
        });
        l.deadline = now + Duration::from_millis(10);
        assert!(l.decide(1.0, now).unwrap().allowed);
        assert!(l.decide(1.0, now).unwrap().allowed);
        assert!(l.decide(1.0, now).is_none(), "spent");
        l.tokens = 5.0;
        assert!(
            l.decide(1.0, now + Duration::from_millis(10)).is_none(),
            "ended"
        );
        assert_eq!(l.stats.decisions, 2);
    }

    #[test]
    fn a_denial_is_remembered_for_larger_requests_until_it_expires() {
        let now = Instant::now();
        let mut l = local(now);
        l.denied = Some(Denied {
            until: now + Duration::from_millis(5),
            refill: now + Duration::from_millis(700),
            available: 2.0,
        });
        let d = l.decide(3.0, now).unwrap();
        assert!(!d.allowed);
        assert_eq!(
            d.sleep,
            Duration::from_millis(700),
            "the hint is the window's end"
        );
        assert!(l.decide(2.0, now).is_none(), "the bucket may hold 2");
        assert!(l.decide(3.0, now + Duration::from_millis(5)).is_none());
    }

    #[test]
    fn batches_follow_demand_within_the_share_and_the_window() {
        let options = LeaseOptions::default();
        let now = Instant::now();
        let mut l = local(now);
        // No history: a batch is the request.
        assert_eq!(l.wanted(1.0, &options, now), 1.0);
        // 10 tokens spent in 1 ms: 10,000/s, 500 over the 50 ms horizon, capped at 1 % of 1000.
        l.held = Some(Held {
            anchor: "1".into(),
            id: "1".into(),
        });
        l.granted = 10.0;
        l.deadline = now + Duration::from_millis(50);
        let (returned, _) = l.close(now + Duration::from_millis(1));
        assert_eq!(returned, 0.0);
        assert!((l.rate - 10_000.0).abs() < 1e-6, "{}", l.rate);
        assert_eq!(l.wanted(1.0, &options, now), 10.0);
        // A window ending in 2 ms bounds the batch to 2 ms of demand.
        l.capacity = 1e9;
        l.window_end = now + Duration::from_millis(2);
        assert!((l.wanted(1.0, &options, now) - 20.0).abs() < 1e-6);
        // A lull halves the estimate, not more.
        l.held = Some(Held {
            anchor: "1".into(),
            id: "1".into(),
        });
        l.granted = 0.0;
        l.granted_at = now;
        let _ = l.close(now + Duration::from_millis(50));
        assert!((l.rate - 5_000.0).abs() < 1e-6, "{}", l.rate);
    }

    #[test]
    fn options_out_of_range_are_refused() {
        assert!(LeaseOptions::default().validate().is_ok());
        for bad in [
            LeaseOptions {
                horizon: Duration::ZERO,
                ..LeaseOptions::default()
            },
            LeaseOptions {
                horizon: Duration::from_secs(11),
                ..LeaseOptions::default()
            },
            LeaseOptions {
                max_share: 0.0,
                ..LeaseOptions::default()
            },
            LeaseOptions {
                max_share: f64::NAN,
                ..LeaseOptions::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
