//! One call to Redis: under the call timeout, its error classified, repeated once on a
//! fresh connection, and for scripts loaded again on `NOSCRIPT`.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::{Pipeline, Value};

use super::{Client, Conn};
use crate::client::error::{Error, Result};

impl Client {
    /// Runs one Redis call under the call timeout and classifies its error.
    ///
    /// A call that fails because the connection had dropped (a restarted server, a reset
    /// link) is made once more on the fresh connection, within the same timeout, so the
    /// first call after Redis comes back succeeds (a cluster connection repeats such calls
    /// itself too). So every call made through here must be safe to repeat when its first
    /// attempt did reach Redis and only the reply was lost:
    /// - a call that only takes (a token, a drop, a slot) leaves the limit lower, never
    ///   higher: the fleet gets less, never more;
    /// - a call that gives back is applied once per id, checked in its script: a lease's
    ///   give-back by the lease id the script recorded, a leaky-bucket drain by its request
    ///   id, a semaphore release by its holder id (unique to each acquisition);
    /// - reads read again, and knob writes set the same values again (the daemon's tick
    ///   write records its history entry once, checked in its script).
    pub(crate) async fn call<T, F>(&self, script: bool, attempt: impl FnMut(Conn) -> F) -> Result<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        self.call_within(self.inner.timeout, script, attempt).await
    }

    /// [`Client::call`] with its own bound, for a large pipeline whose Redis time grows with
    /// its length.
    pub(crate) async fn call_within<T, F>(
        &self,
        timeout: Duration,
        script: bool,
        mut attempt: impl FnMut(Conn) -> F,
    ) -> Result<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let both = async {
            match attempt(self.conn()).await {
                Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                    attempt(self.conn()).await
                }
                other => other,
            }
        };
        let result = match tokio::time::timeout(timeout, both).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::from_redis(e, script, timeout)),
            Err(_) => Err(Error::Timeout(timeout)),
        };
        self.note_availability(&result);
        result
    }

    /// Logs the moment Redis becomes unavailable and the moment it is back, once each, rather
    /// than once per failed call.
    fn note_availability<T>(&self, result: &Result<T>) {
        match result {
            Err(e) if e.is_unavailable() => {
                if !self.inner.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(redis = %self.inner.target, error = %e, "redis unavailable");
                }
            }
            _ => {
                if self.inner.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(redis = %self.inner.target, "redis available again");
                }
            }
        }
    }

    /// Runs one command under the call timeout. Like every call of this client, it is made
    /// once more on a fresh connection when the connection had dropped: use it for reads and
    /// writes that are safe to repeat, never for one that is not (an increment, a push).
    ///
    /// # Errors
    /// The connection's errors.
    pub async fn run_command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T> {
        self.call(
            false,
            |mut conn| async move { cmd.query_async(&mut conn).await },
        )
        .await
    }

    /// Runs a prepared `EVALSHA` of `script` under the call timeout. A server that does not
    /// know the script (restarted, flushed, a new cluster node) gets it loaded and the call
    /// made again.
    ///
    /// # Errors
    /// The connection's errors; a script failure is [`Error::Script`].
    pub async fn run_script<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        evalsha: &redis::Cmd,
    ) -> Result<T> {
        self.run_script_within(self.inner.timeout, script, evalsha)
            .await
    }

    /// [`Client::run_script`] with its own bound, for a script whose Redis time grows with
    /// its arguments.
    ///
    /// # Errors
    /// As [`Client::run_script`].
    pub async fn run_script_within<T: redis::FromRedisValue>(
        &self,
        timeout: Duration,
        script: &redis::Script,
        evalsha: &redis::Cmd,
    ) -> Result<T> {
        self.call_within(timeout, true, |mut conn| async move {
            match evalsha.query_async(&mut conn).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    script.load_async(&mut conn).await?;
                    evalsha.query_async(&mut conn).await
                }
                other => other,
            }
        })
        .await
    }

    /// Runs `pipe` on the one server (not a cluster: its commands may span slots), in one
    /// round trip.
    ///
    /// # Errors
    /// The connection's errors; the first error ends the whole call.
    pub async fn run_pipeline(&self, timeout: Duration, pipe: &Pipeline) -> Result<Vec<Value>> {
        self.call_within(timeout, false, |mut conn| async move {
            pipe.query_async(&mut conn).await
        })
        .await
    }
}
