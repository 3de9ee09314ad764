//! `regulator status`: what Redis holds for each throttle, for people and for scripts.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use regulator::client::model;
use regulator::{StoredKnobs, ThrottleState};

/// One throttle's state, read with [`regulator::Client::get`] and [`last_change`].
#[derive(Debug, Clone)]
pub struct ThrottleStatus {
    /// The throttle's name.
    pub name: String,
    /// What Redis holds.
    pub state: ThrottleState,
    /// The daemon's last change, from the history stream.
    pub last_change: Option<LastChange>,
}

/// The newest entry of `throttle:<name>:history`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LastChange {
    /// When, Unix milliseconds.
    pub ts_ms: u64,
    /// `rps` before (empty when nothing usable was stored).
    pub old_rps: String,
    /// `rps` after.
    pub rps: String,
    /// The signal value (empty without data).
    pub signal: String,
    /// Why.
    pub reason: String,
}

impl LastChange {
    fn from_fields(fields: &[(String, String)]) -> Self {
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f == k)
                .map_or_else(String::new, |(_, v)| v.clone())
        };
        Self {
            ts_ms: get("ts_ms").parse().unwrap_or(0),
            old_rps: get("old_rps"),
            rps: get("rps"),
            signal: get("signal"),
            reason: get("reason"),
        }
    }

    /// `12s ago: rps 100 -> 50 (overloaded, signal 0.4)`.
    #[must_use]
    pub fn describe(&self, now_ms: u64) -> String {
        let ago = Duration::from_secs(now_ms.saturating_sub(self.ts_ms) / 1000);
        let old = if self.old_rps.is_empty() {
            "none"
        } else {
            &self.old_rps
        };
        let signal = if self.signal.is_empty() {
            String::new()
        } else {
            format!(", signal {}", self.signal)
        };
        format!(
            "{} ago: rps {old} -> {} ({}{signal})",
            humantime::format_duration(ago),
            self.rps,
            self.reason
        )
    }
}

/// The daemon's last change to `name`, if it made any that is still in the history.
///
/// # Errors
/// The connection's errors.
pub async fn last_change(
    client: &regulator::Client,
    name: &str,
) -> regulator::Result<Option<LastChange>> {
    let key = client.keys().history(name);
    let entries: Vec<(String, Vec<(String, String)>)> = client
        .run_command(
            redis::cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1),
        )
        .await?;
    Ok(entries.first().map(|(_, f)| LastChange::from_fields(f)))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

    /// The other kinds of limiter under this name, in a few words each (`holders 3/20`,
    /// `leaky level 4 blocked 0.8s`...); empty when there are none.
    #[must_use]
    pub fn other_kinds(&self) -> Vec<String> {
        let s = &self.state;
        let k = &s.kinds;
        let mut out = Vec::new();
        if let Some(c) = &s.concurrency {
            out.push(format!("concurrency {c}"));
        }
        if let Some(total) = k.holders_total {
            let live = k.holders.unwrap_or(0);
            let mut h = match &s.concurrency {
                Some(c) => format!("holders {live}/{c}"),
                None => format!("holders {live}"),
            };
            if total > live {
                let _ = write!(h, " ({} expired)", total - live);
            }
            out.push(h);
        }
        if let Some(level) = &k.leaky_level {
            let mut l = format!("leaky level {level}");
            if let Some(b) = k.leaky_blocked_for {
                let _ = write!(l, " blocked {:.1}s", b.as_secs_f64());
            }
            out.push(l);
        }
        if let Some(t) = &k.continuous_tokens {
            out.push(format!("continuous tokens {t}"));
        }
        if let Some(next) = k.scheduled_next {
            out.push(format!("scheduled next slot in {:.3}s", next.as_secs_f64()));
        }
        out
    }

    /// One JSON object: the knobs as numbers when usable, the raw stored strings, the other
    /// kinds of limiter, tokens, TTLs and the last change. Non-finite numbers are `null`.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let s = &self.state;
        let (knobs, problem) = match s.knobs() {
            StoredKnobs::Absent => (serde_json::Value::Null, None),
            StoredKnobs::Valid(k) => (
                json!({"rps": k.rps, "burst": k.burst, "window": k.window}),
                None,
            ),
            StoredKnobs::Invalid(why) => (serde_json::Value::Null, Some(why)),
        };
        let last = self.last_change.as_ref().map(|c| {
            json!({
                "ts_ms": c.ts_ms,
                "old_rps": c.old_rps,
                "rps": c.rps,
                "signal": c.signal,
                "reason": c.reason,
            })
        });
        let k = &s.kinds;
        let number = |v: Option<&str>| v.and_then(regulator::client::lua_tonumber);
        json!({
            "name": self.name,
            "knobs": knobs,
            "knobs_invalid": problem,
            "raw": {
                "rps": s.rps,
                "burst": s.burst,
                "window": s.window,
                "concurrency": s.concurrency,
            },
            "holders": k.holders,
            "holders_total": k.holders_total,
            "leaky_level": number(k.leaky_level.as_deref()),
            "leaky_blocked_for_s": k.leaky_blocked_for.map(|d| d.as_secs_f64()),
            "continuous_tokens": number(k.continuous_tokens.as_deref()),
            "scheduled_next_s": k.scheduled_next.map(|d| d.as_secs_f64()),
            "tokens": s.bucket().tokens,
            "tokens_now": self.tokens_now(),
            "refreshed": s.bucket().refreshed,
            "knobs_ttl_s": s.knobs_ttl.map(|d| d.as_secs_f64()),
            "bucket_ttl_s": s.bucket_ttl.map(|d| d.as_secs_f64()),
            "last_change": last,
        })
    }
}

/// Throttle names found in Redis: every `throttle:<name>:knobs` and `throttle:<name>` bucket,
/// by SCAN (never KEYS, which blocks a busy server), sorted.
///
/// # Errors
/// The connection's errors.
pub async fn list(client: &regulator::Client) -> regulator::Result<Vec<String>> {
    let mut names = client.scan_throttles().await?;
    names.sort();
    names.dedup();
    Ok(names)
}

/// The status of each of `names`, or of every throttle in Redis when `names` is empty.
///
/// # Errors
/// The connection's errors.
pub async fn collect(
    client: &regulator::Client,
    names: Vec<String>,
) -> regulator::Result<Vec<ThrottleStatus>> {
    let names = if names.is_empty() {
        list(client).await?
    } else {
        names
    };
    let mut rows = Vec::with_capacity(names.len());
    for name in names {
        let state = client.get(&name).await?;
        let last_change = last_change(client, &name).await?;
        rows.push(ThrottleStatus {
            name,
            state,
            last_change,
        });
    }
    Ok(rows)
}

/// `rows` as `regulator status` prints them: a [`table`], or one JSON object per line.
#[must_use]
pub fn render(rows: &[ThrottleStatus], json: bool) -> String {
    if !json {
        return table(rows);
    }
    let mut out = String::new();
    for row in rows {
        let _ = writeln!(out, "{}", row.to_json());
    }
    out
}

/// A readable table, one line per throttle.
#[must_use]
pub fn table(rows: &[ThrottleStatus]) -> String {
    let mut out = format!(
        "{:<24} {:>10} {:>7} {:>7} {:>10} {:>12} {:>12}  LAST CHANGE\n",
        "THROTTLE", "RPS", "BURST", "WINDOW", "TOKENS", "KNOBS TTL", "BUCKET TTL"
    );
    let now = now_ms();
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
            "{:<24} {:>10} {:>7} {:>7} {:>10} {:>12} {:>12}  {}",
            row.name,
            rps,
            burst,
            window,
            tokens,
            ttl(s.knobs_ttl, s.rps.is_some()),
            ttl(s.bucket_ttl, s.tokens.is_some()),
            row.last_change
                .as_ref()
                .map_or_else(|| "-".to_owned(), |c| c.describe(now)),
        );
        let others = row.other_kinds();
        if !others.is_empty() {
            let _ = writeln!(out, "{:<24} {}", "", others.join(" · "));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_change_reads_as_a_sentence() {
        let fields: Vec<(String, String)> = [
            ("ts_ms", "1000"),
            ("old_rps", "100"),
            ("rps", "50"),
            ("signal", "0.4"),
            ("reason", "overloaded"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let c = LastChange::from_fields(&fields);
        assert_eq!(
            c.describe(13_000),
            "12s ago: rps 100 -> 50 (overloaded, signal 0.4)"
        );
    }

    #[test]
    fn json_escapes_names_people_type_and_hides_non_finite_numbers() {
        let row = ThrottleStatus {
            name: "a\"b\\c\nd".into(),
            state: ThrottleState {
                tokens: Some("nan".into()),
                ..ThrottleState::default()
            },
            last_change: None,
        };
        let line = render(std::slice::from_ref(&row), true);
        assert_eq!(line.lines().count(), 1, "one object per line: {line}");
        let json: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(json["name"], "a\"b\\c\nd");
        assert!(json["tokens"].is_null(), "{json}");
    }

    #[test]
    fn every_kind_of_limiter_is_shown() {
        let row = ThrottleStatus {
            name: "pool".into(),
            state: ThrottleState {
                concurrency: Some("20".into()),
                kinds: regulator::client::OtherKinds {
                    holders: Some(3),
                    holders_total: Some(4),
                    leaky_level: Some("4".into()),
                    leaky_blocked_for: Some(Duration::from_millis(800)),
                    continuous_tokens: Some("2.5".into()),
                    scheduled_next: Some(Duration::from_millis(1200)),
                },
                ..ThrottleState::default()
            },
            last_change: None,
        };
        let text = table(std::slice::from_ref(&row));
        for want in [
            "concurrency 20",
            "holders 3/20 (1 expired)",
            "leaky level 4 blocked 0.8s",
            "continuous tokens 2.5",
            "scheduled next slot in 1.200s",
        ] {
            assert!(text.contains(want), "{want} missing from {text}");
        }
        let json = row.to_json();
        assert_eq!(json["holders"], 3);
        assert_eq!(json["leaky_blocked_for_s"], 0.8);
        assert_eq!(json["raw"]["concurrency"], "20");
    }

    #[test]
    fn invalid_knobs_are_shown_not_hidden() {
        let row = ThrottleStatus {
            name: "t".into(),
            state: ThrottleState {
                rps: Some("abc".into()),
                ..ThrottleState::default()
            },
            last_change: None,
        };
        assert!(table(std::slice::from_ref(&row)).contains("INVALID"));
        let json = row.to_json();
        assert!(json["knobs"].is_null(), "{json}");
        assert!(
            json["knobs_invalid"]
                .as_str()
                .is_some_and(|w| w.starts_with("rps is not a number")),
            "{json}"
        );
    }
}
