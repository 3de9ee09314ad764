//! The Lua scripts, embedded from `lua/` and invoked by SHA with a load-on-`NOSCRIPT` fallback.

use redis::Script;

const TOKEN_BUCKET: &str = include_str!("../../lua/token_bucket.lua");
const SET_KNOBS: &str = include_str!("../../lua/set_knobs.lua");

/// The line every time-reading script uses; the frozen-clock variant replaces it.
const TIME_LINE: &str = "local time = redis.call('TIME')";

/// The scripts a client runs. Built once per [`Client`](crate::Client).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) token_bucket: Script,
    pub(crate) set_knobs: Script,
}

impl Scripts {
    pub(crate) fn new(frozen_time: bool) -> Self {
        let token_bucket = if frozen_time {
            Script::new(&frozen(TOKEN_BUCKET))
        } else {
            Script::new(TOKEN_BUCKET)
        };
        Self {
            token_bucket,
            set_knobs: Script::new(SET_KNOBS),
        }
    }
}

/// The frozen-clock variant of a script, as limitlion's testing mode builds it: while the key
/// `frozen_second` exists, `TIME` is read from `frozen_second` and `frozen_microsecond`
/// instead. Production scripts never contain this code, so it costs them nothing.
fn frozen(script: &str) -> String {
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
}
