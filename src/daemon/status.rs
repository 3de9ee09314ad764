//! `regulator status`: what Redis holds for each throttle, for people and for scripts.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::client::model;
use crate::{StoredKnobs, ThrottleState};

/// One throttle's state, read with [`crate::Client::get`].
#[derive(Debug, Clone)]
pub struct ThrottleStatus {
    /// The throttle's name.
    pub name: String,
    /// What Redis holds.
    pub state: ThrottleState,
}

impl ThrottleStatus {
    /// Tokens the bucket holds now, refill included (as the next call would see them before
    /// taking any), when both bucket and knobs are stored and usable.
    #[must_use]
    pub fn tokens_now(&self) -> Option<f64> {
        let StoredKnobs::Valid(knobs) = self.state.knobs() else {
            return None;
        };
        if knobs.rps <= 0.0 || self.state.tokens.is_none() {
            return None;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(model::refill(self.state.bucket(), knobs, now as f64).0)
    }

    /// A JSON object (hand-written: the status line format is small and fixed).
    #[must_use]
    pub fn to_json(&self) -> String {
        let s = &self.state;
        let (knobs, problem) = match s.knobs() {
            StoredKnobs::Absent => ("null".to_owned(), None),
            StoredKnobs::Valid(k) => (
                format!(
                    r#"{{"rps":{},"burst":{},"window":{}}}"#,
                    k.rps, k.burst, k.window
                ),
                None,
            ),
            StoredKnobs::Invalid(why) => ("null".to_owned(), Some(why)),
        };
        format!(
            r#"{{"name":{},"knobs":{},"knobs_invalid":{},"raw":{{"rps":{},"burst":{},"window":{}}},"tokens":{},"tokens_now":{},"refreshed":{},"knobs_ttl_s":{},"bucket_ttl_s":{}}}"#,
            json_str(Some(&self.name)),
            knobs,
            json_str(problem.as_deref()),
            json_str(s.rps.as_deref()),
            json_str(s.burst.as_deref()),
            json_str(s.window.as_deref()),
            json_num(s.bucket().tokens),
            json_num(self.tokens_now()),
            json_num(s.bucket().refreshed),
            json_num(s.knobs_ttl.map(|d| d.as_secs_f64())),
            json_num(s.bucket_ttl.map(|d| d.as_secs_f64())),
        )
    }
}

/// A readable table, one line per throttle.
#[must_use]
pub fn table(rows: &[ThrottleStatus]) -> String {
    let mut out = format!(
        "{:<24} {:>10} {:>7} {:>7} {:>10} {:>12} {:>12}\n",
        "THROTTLE", "RPS", "BURST", "WINDOW", "TOKENS", "KNOBS TTL", "BUCKET TTL"
    );
    for row in rows {
        let s = &row.state;
        let (rps, burst, window) = match s.knobs() {
            StoredKnobs::Absent => ("(defaults)".to_owned(), "-".to_owned(), "-".to_owned()),
            StoredKnobs::Valid(k) => (k.rps.to_string(), k.burst.to_string(), k.window.to_string()),
            StoredKnobs::Invalid(why) => (format!("INVALID: {why}"), "-".into(), "-".into()),
        };
        let tokens = row
            .tokens_now()
            .or(s.bucket().tokens)
            .map_or_else(|| "-".to_owned(), |t| t.to_string());
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>7} {:>7} {:>10} {:>12} {:>12}",
            row.name,
            rps,
            burst,
            window,
            tokens,
            ttl(s.knobs_ttl, s.rps.is_some()),
            ttl(s.bucket_ttl, s.tokens.is_some()),
        );
    }
    out
}

fn ttl(ttl: Option<Duration>, exists: bool) -> String {
    match (ttl, exists) {
        (Some(d), _) => format!("{}s", d.as_secs()),
        (None, true) => "none".to_owned(),
        (None, false) => "-".to_owned(),
    }
}

fn json_str(s: Option<&str>) -> String {
    let Some(s) = s else { return "null".to_owned() };
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "null".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escapes_names_people_type() {
        assert_eq!(json_str(Some("a\"b\\c\nd")), r#""a\"b\\c\u000ad""#);
        assert_eq!(json_num(Some(f64::NAN)), "null");
    }

    #[test]
    fn invalid_knobs_are_shown_not_hidden() {
        let row = ThrottleStatus {
            name: "t".into(),
            state: ThrottleState {
                rps: Some("abc".into()),
                ..ThrottleState::default()
            },
        };
        assert!(table(std::slice::from_ref(&row)).contains("INVALID"));
        assert!(row.to_json().contains(r#""knobs":null"#));
        assert!(
            row.to_json()
                .contains("knobs_invalid\":\"rps is not a number")
        );
    }
}
