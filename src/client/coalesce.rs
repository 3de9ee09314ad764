//! Coalescing: concurrent [`TokenBucket::consume`] calls of one process on one bucket share
//! script calls. While a call is in flight, the calls that arrive queue up; when it returns,
//! the whole queue goes to Redis as one call of `lua/token_bucket_batch.lua`, which decides
//! each request in arrival order with limitlion's arithmetic, exactly as that many calls in a
//! row would, and leaves the bucket as they would. So a busy process makes one round trip per
//! batch instead of per decision, and every other worker on the bucket (Python limitlion
//! included) sees the same bucket it would see one call at a time.
//!
//! A caller that finds nothing in flight calls alone (no added latency when idle); the
//! batches that follow are sent by a task, so no caller waits for another's decisions.
//!
//! Every call stays bounded: a queued caller waits at most the client's call timeout from the
//! moment it queued, whatever is ahead of it, and then fails with [`Error::Timeout`]. A caller
//! that gave up (cancelled, or timed out) while still queued is left out of the next batch,
//! so no tokens are spent for nobody. One already sent is like a single call cancelled in
//! flight: Redis decides it, and its token, if allowed, is spent.

use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

use super::decision::Decision;
use super::error::{Error, Result};
use super::reply::number;
use super::reply::{micros, source};
use super::scripts::ScriptId;
use super::token_bucket::TokenBucket;

/// Requests per coalesced call: one script call holds Redis for its run, so a flood is
/// decided in slices of this many.
const MAX_BATCH: usize = 512;

/// One bucket's queue. Shared by the clones of a [`TokenBucket`].
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_flight: bool,
    queue: Vec<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    tokens: f64,
    reply: oneshot::Sender<Result<Decision>>,
}

impl Coalescer {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TokenBucket {
    /// Decides several requests in one script call, in order, exactly as that many
    /// [`consume`](Self::consume) calls in a row would (at one Redis instant, so only the
    /// first can see a refill), and leaves the bucket as they would.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] before any call for a request that is not a finite number
    /// above 0; otherwise the connection's errors.
    pub async fn consume_many(&self, requests: &[f64]) -> Result<Vec<Decision>> {
        for &tokens in requests {
            self.check(tokens)?;
        }
        let mut decisions = Vec::with_capacity(requests.len());
        for chunk in requests.chunks(MAX_BATCH) {
            let reply: Vec<redis::Value> = self
                .call()
                .run_as(ScriptId::TokenBucketBatch, |cmd| {
                    for tokens in chunk {
                        cmd.arg(*tokens);
                    }
                })
                .await?;
            decisions.extend(parse(&reply, chunk.len())?);
        }
        Ok(decisions)
    }

    /// `consume`, coalesced with the calls of this process in flight on this bucket.
    pub(crate) async fn consume_coalesced(&self, tokens: f64) -> Result<Decision> {
        let waiting = {
            let mut s = self.coalescer.state();
            if s.in_flight {
                let (reply, rx) = oneshot::channel();
                s.queue.push(Waiter { tokens, reply });
                Some(rx)
            } else {
                s.in_flight = true;
                None
            }
        };
        if let Some(rx) = waiting {
            let timeout = self.call().client().call_timeout();
            // Dropping `rx` on timeout closes the entry, so it is not sent if still queued.
            return match tokio::time::timeout(timeout, rx).await {
                Ok(reply) => reply.unwrap_or_else(|_| Err(abandoned())),
                Err(_) => Err(Error::Timeout(timeout)),
            };
        }
        // Hands the queue on even if this caller is cancelled mid-call.
        let _handoff = Handoff(self);
        self.consume_one(tokens).await
    }
}

/// Passes the queue that built up during a call to a task that sends it, or marks the bucket
/// idle when there is none.
struct Handoff<'a>(&'a TokenBucket);

impl Drop for Handoff<'_> {
    fn drop(&mut self) {
        let Some(batch) = next_batch(&self.0.coalescer) else {
            return;
        };
        let bucket = self.0.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drive(bucket, batch));
        } else {
            // No runtime to send it from (the caller's is shutting down): nobody can wait
            // for these answers any more, but they must not wait for ever.
            for w in batch {
                let _ = w.reply.send(Err(abandoned()));
            }
            let mut s = bucket.coalescer.state();
            for w in s.queue.drain(..) {
                let _ = w.reply.send(Err(abandoned()));
            }
            s.in_flight = false;
        }
    }
}

/// The queued requests to send next (at most [`MAX_BATCH`]), or `None` after marking the
/// bucket idle. Requests whose caller is gone (cancelled, timed out) are dropped unsent.
fn next_batch(coalescer: &Coalescer) -> Option<Vec<Waiter>> {
    let mut s = coalescer.state();
    s.queue.retain(|w| !w.reply.is_closed());
    if s.queue.is_empty() {
        s.in_flight = false;
        return None;
    }
    let n = s.queue.len().min(MAX_BATCH);
    Some(s.queue.drain(..n).collect())
}

/// Sends batches until the queue is empty.
async fn drive(bucket: TokenBucket, mut batch: Vec<Waiter>) {
    loop {
        let result = decide(&bucket, &batch).await;
        match result {
            Ok(decisions) => {
                for (w, d) in batch.into_iter().zip(decisions) {
                    let _ = w.reply.send(Ok(d));
                }
            }
            Err(e) => {
                for w in batch {
                    let _ = w.reply.send(Err(e.clone()));
                }
            }
        }
        match next_batch(&bucket.coalescer) {
            Some(next) => batch = next,
            None => return,
        }
    }
}

/// One coalesced script call for `batch`: a decision per request, in order.
async fn decide(bucket: &TokenBucket, batch: &[Waiter]) -> Result<Vec<Decision>> {
    let reply: Vec<redis::Value> = bucket
        .call()
        .run_as(ScriptId::TokenBucketBatch, |cmd| {
            for w in batch {
                cmd.arg(w.tokens);
            }
        })
        .await?;
    parse(&reply, batch.len())
}

/// `{ source, capacity, sleep_us, allowed, tokens, ... }` as `n` decisions.
pub(crate) fn parse(reply: &[redis::Value], n: usize) -> Result<Vec<Decision>> {
    let bad = || Error::Script(format!("unexpected coalesced reply: {reply:?}"));
    if reply.len() != 3 + 2 * n {
        return Err(bad());
    }
    let int = |v: &redis::Value| match v {
        redis::Value::Int(i) => Ok(*i),
        _ => Err(bad()),
    };
    let source = source(int(&reply[0])?)?;
    let capacity = match number("capacity", &reply[1])? {
        -1.0 => f64::INFINITY,
        c => c,
    };
    let sleep = micros(int(&reply[2])?);
    reply[3..]
        .chunks_exact(2)
        .map(|pair| {
            Ok(Decision {
                allowed: int(&pair[0])? == 1,
                tokens: number("tokens", &pair[1])?,
                sleep,
                source,
                capacity,
            })
        })
        .collect()
}

fn abandoned() -> Error {
    Error::Unreachable {
        source: redis::RedisError::from((
            redis::ErrorKind::Io,
            "the coalesced call was abandoned (the runtime shut down)",
        )),
    }
}
