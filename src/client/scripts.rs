//! The Lua scripts, embedded from `lua/` and invoked by SHA with a load-on-`NOSCRIPT` fallback.

use std::sync::LazyLock;

use redis::Script;

/// The token bucket's three scripts share one core: each is a template whose lines
/// `--#include <fragment>` are replaced by the fragments of `lua/token_bucket/`, so the
/// single, coalesced and leased decisions cannot drift apart.
static TOKEN_BUCKET: LazyLock<String> =
    LazyLock::new(|| assemble(include_str!("../../lua/token_bucket.lua")));
static TOKEN_BUCKET_BATCH: LazyLock<String> =
    LazyLock::new(|| assemble(include_str!("../../lua/token_bucket_batch.lua")));
static TOKEN_BUCKET_LEASE: LazyLock<String> =
    LazyLock::new(|| assemble(include_str!("../../lua/token_bucket_lease.lua")));

/// The fragments a template may include, by their path under `lua/`.
const FRAGMENTS: [(&str, &str); 4] = [
    (
        "token_bucket/knobs.lua",
        include_str!("../../lua/token_bucket/knobs.lua"),
    ),
    (
        "token_bucket/clock.lua",
        include_str!("../../lua/token_bucket/clock.lua"),
    ),
    (
        "token_bucket/refill.lua",
        include_str!("../../lua/token_bucket/refill.lua"),
    ),
    (
        "token_bucket/store.lua",
        include_str!("../../lua/token_bucket/store.lua"),
    ),
];

/// `template` with each line `--#include <fragment>` replaced by that fragment's text (a line
/// naming no known fragment stays, and the tests below catch it).
fn assemble(template: &str) -> String {
    let mut script = String::with_capacity(template.len() * 2);
    for line in template.lines() {
        let fragment = line.strip_prefix(INCLUDE).and_then(|name| {
            FRAGMENTS
                .iter()
                .find(|(path, _)| *path == name.trim())
                .map(|(_, text)| *text)
        });
        if let Some(text) = fragment {
            script.push_str(text);
        } else {
            script.push_str(line);
            script.push('\n');
        }
    }
    script
}

const INCLUDE: &str = "--#include ";

/// The source of the script `lua/<file>` as Redis runs it (fragments included): for tests
/// and tools that run a script directly.
#[must_use]
pub fn source(file: &str) -> Option<String> {
    match file {
        "token_bucket.lua" => Some(TOKEN_BUCKET.clone()),
        "token_bucket_batch.lua" => Some(TOKEN_BUCKET_BATCH.clone()),
        "token_bucket_lease.lua" => Some(TOKEN_BUCKET_LEASE.clone()),
        _ => None,
    }
}
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
            token_bucket: clocked(&TOKEN_BUCKET),
            token_bucket_batch: clocked(&TOKEN_BUCKET_BATCH),
            token_bucket_lease: clocked(&TOKEN_BUCKET_LEASE),
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
///
/// # Panics
/// If `script` does not read the clock with `local time = redis.call('TIME')`: every timed
/// script of this crate does (a test checks it).
#[must_use]
pub fn frozen(script: &str) -> String {
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
        let f = frozen(&TOKEN_BUCKET);
        assert!(!f.contains(TIME_LINE));
        assert!(f.contains("frozen_second"));
        assert!(!TOKEN_BUCKET.contains("frozen_second"));
    }

    #[test]
    fn every_token_bucket_script_includes_the_whole_core_once() {
        for script in [&*TOKEN_BUCKET, &*TOKEN_BUCKET_BATCH, &*TOKEN_BUCKET_LEASE] {
            assert!(!script.contains(INCLUDE), "an include was left: {script}");
            for (path, text) in FRAGMENTS {
                assert_eq!(script.matches(text).count(), 1, "{path}");
            }
        }
    }

    #[test]
    fn every_timed_script_reads_the_clock_once() {
        for script in [
            TOKEN_BUCKET.as_str(),
            TOKEN_BUCKET_BATCH.as_str(),
            TOKEN_BUCKET_LEASE.as_str(),
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
