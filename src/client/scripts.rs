//! The Lua scripts, embedded from `lua/` and invoked by SHA with a load-on-`NOSCRIPT` fallback.

use redis::Script;

const TOKEN_BUCKET: &str = include_str!("../../lua/token_bucket.lua");
const TOKEN_BUCKET_BATCH: &str = include_str!("../../lua/token_bucket_batch.lua");
const TOKEN_BUCKET_LEASE: &str = include_str!("../../lua/token_bucket_lease.lua");
const SET_KNOBS: &str = include_str!("../../lua/set_knobs.lua");
const LEAKY_BUCKET: &str = include_str!("../../lua/leaky_bucket.lua");
const CONTINUOUS_BUCKET: &str = include_str!("../../lua/continuous_bucket.lua");
const SEMAPHORE_ACQUIRE: &str = include_str!("../../lua/semaphore_acquire.lua");
const SEMAPHORE_RENEW: &str = include_str!("../../lua/semaphore_renew.lua");
const SEMAPHORE_RELEASE: &str = include_str!("../../lua/semaphore_release.lua");
const SCHEDULED_BUCKET: &str = include_str!("../../lua/scheduled_bucket.lua");

/// The line every time-reading script uses; the frozen-clock variant replaces it.
const TIME_LINE: &str = "local time = redis.call('TIME')";

/// The limiter scripts a [`ScriptCall`](super::script_call::ScriptCall) can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScriptId {
    TokenBucket,
    TokenBucketBatch,
    TokenBucketLease,
    LeakyBucket,
    ContinuousBucket,
    SemaphoreAcquire,
    ScheduledBucket,
}

/// The scripts a client runs. Built once per [`Client`](crate::Client).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) token_bucket: Script,
    pub(crate) token_bucket_batch: Script,
    pub(crate) token_bucket_lease: Script,
    pub(crate) set_knobs: Script,
    pub(crate) leaky_bucket: Script,
    pub(crate) continuous_bucket: Script,
    pub(crate) semaphore_acquire: Script,
    pub(crate) semaphore_renew: Script,
    pub(crate) semaphore_release: Script,
    pub(crate) scheduled_bucket: Script,
}

impl Scripts {
    pub(crate) fn new(frozen_time: bool) -> Self {
        let clocked = |source: &str| {
            if frozen_time {
                Script::new(&frozen(source))
            } else {
                Script::new(source)
            }
        };
        Self {
            token_bucket: clocked(TOKEN_BUCKET),
            token_bucket_batch: clocked(TOKEN_BUCKET_BATCH),
            token_bucket_lease: clocked(TOKEN_BUCKET_LEASE),
            set_knobs: Script::new(SET_KNOBS),
            leaky_bucket: clocked(LEAKY_BUCKET),
            continuous_bucket: clocked(CONTINUOUS_BUCKET),
            semaphore_acquire: clocked(SEMAPHORE_ACQUIRE),
            semaphore_renew: clocked(SEMAPHORE_RENEW),
            semaphore_release: clocked(SEMAPHORE_RELEASE),
            scheduled_bucket: clocked(SCHEDULED_BUCKET),
        }
    }
}

/// The frozen-clock variant of a script, as limitlion's testing mode builds it: while the key
/// `frozen_second` exists, `TIME` is read from `frozen_second` and `frozen_microsecond`
/// instead. Production scripts never contain this code, so it costs them nothing.
pub(crate) fn frozen(script: &str) -> String {
    assert!(
        script.contains(TIME_LINE),
        "script has no TIME line to freeze"
    );
    script.replace(
        TIME_LINE,
        "local time = redis.call('MGET', 'frozen_second', 'frozen_microsecond')\n\
         if not time[1] then time = redis.call('TIME') end\n\
         if not time[2] then time[2] = '0' end",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_variant_replaces_the_clock_only() {
        let f = frozen(TOKEN_BUCKET);
        assert!(!f.contains(TIME_LINE));
        assert!(f.contains("frozen_second"));
        assert!(!TOKEN_BUCKET.contains("frozen_second"));
    }

    #[test]
    fn every_timed_script_reads_the_clock_once() {
        for script in [
            TOKEN_BUCKET,
            TOKEN_BUCKET_BATCH,
            TOKEN_BUCKET_LEASE,
            LEAKY_BUCKET,
            CONTINUOUS_BUCKET,
            SEMAPHORE_ACQUIRE,
            SEMAPHORE_RENEW,
            SEMAPHORE_RELEASE,
            SCHEDULED_BUCKET,
        ] {
            assert_eq!(script.matches(TIME_LINE).count(), 1);
            assert_eq!(script.matches("'TIME'").count(), 1);
        }
    }
}
