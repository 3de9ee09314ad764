//! Reading what the limiter scripts reply: `%.17g` numbers, microsecond counts, source codes.

use std::time::Duration;

use super::decision::Source;
use super::error::{Error, Result};

/// A number a script returns as a `%.17g` string (`inf` included).
pub(crate) fn float(what: &str, s: &str) -> Result<f64> {
    s.parse()
        .map_err(|_| Error::Script(format!("unexpected {what} in reply: {s:?}")))
}

/// A non-negative count of microseconds; a negative one (never sent) reads as zero.
pub(crate) fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or_default())
}

/// The scripts' knob source code: 0 defaults, 1 knobs, 2 unusable knobs.
pub(crate) fn source(code: i64) -> Result<Source> {
    match code {
        0 => Ok(Source::Defaults),
        1 => Ok(Source::Knobs),
        2 => Ok(Source::InvalidKnobs),
        other => Err(Error::Script(format!("unexpected source {other} in reply"))),
    }
}

/// A number the script returns as an integer, or as a `%.17g` string when it is not whole.
pub(crate) fn number(what: &str, v: &redis::Value) -> Result<f64> {
    let parsed = match v {
        redis::Value::Int(i) => Some(*i as f64),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()),
        _ => None,
    };
    parsed.ok_or_else(|| Error::Script(format!("unexpected {what} in reply: {v:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_as_the_scripts_write_them() {
        assert_eq!(float("x", "0.10000000000000001").unwrap(), 0.1);
        assert_eq!(float("x", "inf").unwrap(), f64::INFINITY);
        assert!(float("x", "").is_err());
        assert_eq!(micros(-3), Duration::ZERO);
        assert_eq!(micros(1_500_000), Duration::from_millis(1500));
        assert!(source(3).is_err());
    }
}
