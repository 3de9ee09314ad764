//! Knobs: a throttle's `rps`, `burst` and `window`, their validation and how stored ones parse.

use std::time::Duration;

use super::error::{Error, Result};

/// limitlion's default knobs TTL: 7 days, refreshed by every call that uses the knobs.
pub const DEFAULT_KNOBS_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// A throttle's limits, as stored in `throttle:<name>:knobs` and passed as a worker's defaults.
///
/// Capacity is `ceil(rps * burst * window)` tokens; the bucket refills `ceil(rps * window)`
/// tokens at each whole window. `rps == 0` denies everything, `rps == -1` allows everything.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Knobs {
    /// Tokens per second; `0` denies all, `-1` allows all.
    pub rps: f64,
    /// Burst multiplier: how many windows' worth of tokens the bucket holds.
    pub burst: f64,
    /// Refill period in seconds; tokens are added a whole window at a time.
    pub window: f64,
}

/// limitlion's defaults for `burst` and `window` (`THROTTLE_BURST_DEFAULT`, `..._WINDOW_...`).
impl Default for Knobs {
    fn default() -> Self {
        Self {
            rps: 1.0,
            burst: 1.0,
            window: 5.0,
        }
    }
}

impl Knobs {
    /// Knobs with the given rate and limitlion's default burst (1) and window (5 s).
    #[must_use]
    pub fn with_rps(rps: f64) -> Self {
        Self {
            rps,
            ..Self::default()
        }
    }

    /// Tokens a full bucket holds: `ceil(rps * burst * window)`, in that order, as the script
    /// computes it (so `0.1 * 3 * 10` gives 4, not 3: `0.1 * 3` is `0.30000000000000004`).
    #[must_use]
    pub fn capacity(&self) -> f64 {
        (self.rps * self.burst * self.window).ceil()
    }

    /// Checks the knobs are ones the script would use: finite, `rps >= 0` or `rps == -1`,
    /// `burst >= 0`, `window > 0`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        usable(self.rps, self.burst, self.window).map_err(Error::InvalidArgument)
    }
}

/// The validity rule the script applies to a stored knobs hash, in Rust.
pub(crate) fn usable(rps: f64, burst: f64, window: f64) -> Result<(), String> {
    if !(rps == -1.0 || (rps >= 0.0 && rps.is_finite())) {
        return Err(format!(
            "rps must be a finite number >= 0, or -1; got {rps}"
        ));
    }
    if !(burst >= 0.0 && burst.is_finite()) {
        return Err(format!("burst must be a finite number >= 0; got {burst}"));
    }
    if !(window > 0.0 && window.is_finite()) {
        return Err(format!("window must be a finite number > 0; got {window}"));
    }
    if !(rps * burst * window).is_finite() {
        return Err("rps * burst * window overflows".to_owned());
    }
    Ok(())
}

/// A partial knobs write, as limitlion's `throttle_set` takes it: fields left `None` must
/// already exist in the stored hash.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KnobsUpdate {
    /// New `rps`, or keep the stored one.
    pub rps: Option<f64>,
    /// New `burst`, or keep the stored one.
    pub burst: Option<f64>,
    /// New `window`, or keep the stored one.
    pub window: Option<f64>,
}

impl From<Knobs> for KnobsUpdate {
    fn from(k: Knobs) -> Self {
        Self {
            rps: Some(k.rps),
            burst: Some(k.burst),
            window: Some(k.window),
        }
    }
}

impl KnobsUpdate {
    /// The fields to write, validated as limitlion's `throttle_set` does (every value a float
    /// `>= 0`), and stricter where limitlion lets a value through that breaks the bucket:
    /// values must be finite and `window` must be above 0.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] with limitlion's message for the first bad value.
    pub fn fields(&self) -> Result<Vec<(&'static str, f64)>> {
        let mut out = Vec::with_capacity(3);
        for (name, value) in [
            ("rps", self.rps),
            ("burst", self.burst),
            ("window", self.window),
        ] {
            let Some(v) = value else { continue };
            if !(v >= 0.0 && v.is_finite()) || (name == "window" && v == 0.0) {
                return Err(Error::InvalidArgument(format!(
                    "\"{v}\" is not a valid throttle value for {name}: throttle values must be \
                     finite floats >= 0{}",
                    if name == "window" {
                        " (window > 0)"
                    } else {
                        ""
                    }
                )));
            }
            out.push((name, v));
        }
        Ok(out)
    }
}

/// Parses a stored value the way Lua's `tonumber` reads it: surrounding white space allowed,
/// decimal, exponent and `0x` hex forms, `inf` and `nan` as C's `strtod` accepts them.
#[must_use]
pub fn lua_tonumber(s: &str) -> Option<f64> {
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    if t.is_empty() {
        return None;
    }
    let (neg, body) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let v = u64::from_str_radix(hex, 16).ok()? as f64;
        return Some(if neg { -v } else { v });
    }
    t.parse::<f64>().ok()
}

/// What a stored knobs hash means to the script.
#[derive(Debug, Clone, PartialEq)]
pub enum StoredKnobs {
    /// No `rps` field: workers use their own defaults.
    Absent,
    /// Usable knobs: workers use these.
    Valid(Knobs),
    /// An `rps` field is present but the hash is unusable; workers fall back to their
    /// defaults. The string says why.
    Invalid(String),
}

impl StoredKnobs {
    /// Interprets raw `rps`, `burst`, `window` fields exactly as the script does.
    #[must_use]
    pub fn from_fields(rps: Option<&str>, burst: Option<&str>, window: Option<&str>) -> Self {
        let Some(rps) = rps else { return Self::Absent };
        let parse = |name: &str, v: Option<&str>| -> Result<f64, String> {
            let v = v.ok_or_else(|| format!("{name} is missing"))?;
            lua_tonumber(v).ok_or_else(|| format!("{name} is not a number: {v:?}"))
        };
        let parsed = parse("rps", Some(rps)).and_then(|rps| {
            Ok(Knobs {
                rps,
                burst: parse("burst", burst)?,
                window: parse("window", window)?,
            })
        });
        match parsed.and_then(|k| usable(k.rps, k.burst, k.window).map(|()| k)) {
            Ok(k) => Self::Valid(k),
            Err(why) => Self::Invalid(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonumber_reads_what_lua_reads() {
        assert_eq!(lua_tonumber("0.99990000000000001"), Some(0.9999));
        assert_eq!(lua_tonumber("1e-05"), Some(1e-5));
        assert_eq!(lua_tonumber(" 5 "), Some(5.0));
        assert_eq!(lua_tonumber("0x10"), Some(16.0));
        assert_eq!(lua_tonumber("-0x10"), Some(-16.0));
        assert_eq!(lua_tonumber("1e400"), Some(f64::INFINITY));
        assert!(lua_tonumber("nan").unwrap().is_nan());
        assert_eq!(lua_tonumber("abc"), None);
        assert_eq!(lua_tonumber(""), None);
        assert_eq!(lua_tonumber("5x"), None);
    }

    #[test]
    fn capacity_multiplies_in_limitlion_order() {
        let k = Knobs {
            rps: 0.1,
            burst: 3.0,
            window: 10.0,
        };
        assert_eq!(k.capacity(), 4.0);
    }

    #[test]
    fn stored_knobs_fall_back_like_the_script() {
        use StoredKnobs::{Absent, Invalid, Valid};
        assert_eq!(StoredKnobs::from_fields(None, Some("1"), Some("5")), Absent);
        assert_eq!(
            StoredKnobs::from_fields(Some("10"), Some("2"), Some("5")),
            Valid(Knobs {
                rps: 10.0,
                burst: 2.0,
                window: 5.0
            })
        );
        for (rps, burst, window) in [
            ("abc", Some("1"), Some("5")),
            ("", Some("1"), Some("5")),
            ("-5", Some("1"), Some("5")),
            ("1e400", Some("1"), Some("5")),
            ("nan", Some("1"), Some("5")),
            ("10", None, Some("5")),
            ("10", Some("1"), Some("0")),
            ("10", Some("-1"), Some("5")),
        ] {
            assert!(
                matches!(
                    StoredKnobs::from_fields(Some(rps), burst, window),
                    Invalid(_)
                ),
                "{rps} {burst:?} {window:?}"
            );
        }
        assert!(matches!(
            StoredKnobs::from_fields(Some("-1"), Some("1"), Some("5")),
            Valid(_)
        ));
    }

    #[test]
    fn update_rejects_what_limitlion_rejects_and_more() {
        assert!(KnobsUpdate::from(Knobs::with_rps(-1.0)).fields().is_err());
        assert!(
            KnobsUpdate {
                window: Some(0.0),
                ..KnobsUpdate::default()
            }
            .fields()
            .is_err()
        );
        assert!(
            KnobsUpdate {
                burst: Some(f64::NAN),
                ..KnobsUpdate::default()
            }
            .fields()
            .is_err()
        );
        let f = KnobsUpdate {
            rps: Some(0.0),
            ..KnobsUpdate::default()
        }
        .fields()
        .unwrap();
        assert_eq!(f, vec![("rps", 0.0)]);
    }
}
