//! Durations in the config are strings with a unit: `250ms`, `10s`, `1m`, `7d`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration with a unit, for `#[serde(with = "duration")]`.
///
/// # Errors
/// A value that is not a string, or not a duration with a unit.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)
        .map_err(|_| serde::de::Error::custom("expected a duration with a unit, like 10s or 1m"))?;
    parse(&s).map_err(serde::de::Error::custom)
}

fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration like 250ms, 10s or 1m: {e}"))
}

/// An optional duration with a unit, for `#[serde(with = "duration::option")]`.
pub mod option {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// A duration with a unit, or none.
    ///
    /// # Errors
    /// A value that is neither null nor a duration with a unit.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a duration with a unit, like 10s or 1m")
        })? {
            None => Ok(None),
            Some(s) => super::parse(&s).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn units_are_required_and_understood() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse("10").is_err());
        assert!(parse("soon").is_err());
    }
}
