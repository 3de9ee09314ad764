//! Text to [`Config`]: every section and every throttle is read on its own, so one mistake does
//! not hide the next; then the rules of `validate` run on what parsed.

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde_norway::Value;

use super::locate::{Location, Locations};
use super::{Config, duration};

const TOP_LEVEL: [&str; 7] = [
    "redis",
    "prometheus",
    "listen",
    "interval",
    "leader",
    "history",
    "throttles",
];

/// One problem with a configuration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Line and column, when known.
    pub location: Option<Location>,
    /// The path of the offending value (`throttles[0].bounds.min_rps`); empty for the file.
    pub path: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file (or a name for the text).
    pub source: String,
    /// The problems, in document order.
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        writeln!(
            f,
            "{}: {n} error{}",
            self.source,
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.errors {
            match e.location {
                Some(l) => write!(f, "  {}:{l}: ", self.source)?,
                None => write!(f, "  {}: ", self.source)?,
            }
            if e.path.is_empty() {
                writeln!(f, "{}", e.message)?;
            } else {
                writeln!(f, "{}: {}", e.path, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and parses a configuration file.
///
/// # Errors
/// Every problem found, or the file that could not be read.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let source = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &source),
        Err(e) => Err(ConfigErrors {
            errors: vec![ConfigError {
                location: None,
                path: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
            source,
        }),
    }
}

/// Parses and validates configuration text; `source` names it in errors.
///
/// # Errors
/// Every problem found, each with its line and column where known.
pub fn parse(text: &str, source: &str) -> Result<Config, ConfigErrors> {
    let mut c = Collector {
        locations: Locations::index(text),
        errors: Vec::new(),
        removed: Vec::new(),
    };
    let root: Value = match serde_norway::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            c.errors.push(ConfigError {
                location: e.location().map(|l| Location {
                    line: l.line(),
                    column: l.column(),
                }),
                path: String::new(),
                message: e.to_string(),
            });
            return Err(c.finish(source));
        }
    };
    let Some((config, indices)) = c.config(root) else {
        return Err(c.finish(source));
    };
    for (path, message) in super::validate::validate(&config, &indices) {
        let about_removed = c.removed.iter().any(|r| {
            path.strip_prefix(r.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        });
        if !about_removed {
            c.push(&path, message);
        }
    }
    if c.errors.is_empty() {
        Ok(config)
    } else {
        Err(c.finish(source))
    }
}

struct Collector {
    locations: Locations,
    errors: Vec<ConfigError>,
    /// Paths of keys taken away from a throttle so the rest of it could be checked.
    removed: Vec<String>,
}

/// How many mistakes one throttle may have before the rest of it goes unchecked.
const MAX_REPAIRS: usize = 32;

/// Takes the key at `path` out of `item` (an unreadable `control` becomes `law: aimd`, a law
/// with no rule tied to other keys). False when there is no such key.
fn take_away(item: &mut Value, path: &[String]) -> bool {
    if path.first().is_some_and(|k| k == "control") {
        let Value::Mapping(map) = item else {
            return false;
        };
        let mut aimd = serde_norway::Mapping::new();
        aimd.insert(Value::from("law"), Value::from("aimd"));
        return map
            .insert(Value::from("control"), Value::Mapping(aimd))
            .is_some();
    }
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut here = item;
    for key in parents {
        match here.get_mut(key.as_str()) {
            Some(v) => here = v,
            None => return false,
        }
    }
    let Value::Mapping(map) = here else {
        return false;
    };
    map.remove(last.as_str()).is_some()
}

impl Collector {
    fn push(&mut self, path: &str, message: String) {
        self.errors.push(ConfigError {
            location: self.locations.get(path),
            path: path.to_owned(),
            message,
        });
    }

    fn finish(mut self, source: &str) -> ConfigErrors {
        self.errors
            .sort_by_key(|e| e.location.map(|l| (l.line, l.column)));
        ConfigErrors {
            source: source.to_owned(),
            errors: self.errors,
        }
    }

    /// Reads `value` as a `T`; on failure records the error against the exact field that
    /// failed (`serde_path_to_error` tracks it), or the field an "unknown field" names.
    fn section<T: DeserializeOwned>(&mut self, path: &str, value: Value) -> Option<T> {
        self.attempt(path, value).ok()
    }

    /// As [`Collector::section`], returning on failure where the error is inside `value`
    /// (the path of the offending key, `.`-separated; empty for `value` itself).
    fn attempt<T: DeserializeOwned>(&mut self, path: &str, value: Value) -> Result<T, Vec<String>> {
        let e = match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let inner = e.path().to_string();
        let mut at = match inner.as_str() {
            "." | "" => path.to_owned(),
            p if path.is_empty() => p.to_owned(),
            p => format!("{path}.{p}"),
        };
        let message = e.into_inner().to_string();
        let mut culprit: Vec<String> = match inner.as_str() {
            "." | "" => Vec::new(),
            p => p.split('.').map(str::to_owned).collect(),
        };
        if let Some(field) = message
            .split_once("unknown field `")
            .and_then(|(_, rest)| rest.split_once('`'))
            .map(|(name, _)| name)
        {
            if culprit.last().is_none_or(|k| k != field) {
                culprit.push(field.to_owned());
            }
            if let Some((p, _)) = self.locations.find_key(&at, field) {
                at = p;
            }
        } else if message.starts_with("missing field") {
            // Nothing to take away: the throttle cannot be read further.
            culprit.clear();
        }
        self.push(&at, message);
        Err(culprit)
    }

    /// One throttle. One that does not parse is read again without the offending key (an
    /// unknown key, a value of the wrong type; an unreadable `control` becomes the plain
    /// AIMD law), until it parses, so every mistake in it is reported, not only the first;
    /// the rules then run on what remains. Returns the throttle and the paths taken away
    /// (rules about them are not reported again), or `None` when it cannot be read at all.
    fn throttle(&mut self, at: &str, mut item: Value) -> Option<(super::Throttle, Vec<String>)> {
        let mut removed = Vec::new();
        for _ in 0..MAX_REPAIRS {
            let culprit = match self.attempt(at, item.clone()) {
                Ok(t) => return Some((t, removed)),
                Err(culprit) => culprit,
            };
            if culprit.is_empty() || !take_away(&mut item, &culprit) {
                return None;
            }
            // A law's keys depend on each other: all of `control` was taken away.
            let gone = if culprit[0] == "control" {
                "control".to_owned()
            } else {
                culprit.join(".")
            };
            removed.push(format!("{at}.{gone}"));
        }
        None
    }

    /// The configuration as far as it parsed: a section that failed keeps its default (its
    /// error is recorded), and only the throttles that parsed are kept, with their indices in
    /// the file, so the rules can still check everything else.
    fn config(&mut self, root: Value) -> Option<(Config, Vec<usize>)> {
        let map = match root {
            Value::Mapping(m) => m,
            Value::Null => serde_norway::Mapping::new(),
            _ => {
                self.push("", "the configuration must be a mapping of keys".to_owned());
                return None;
            }
        };
        let mut redis = None;
        let mut prometheus = None;
        let mut listen = None;
        let mut interval = None;
        let mut leader = None;
        let mut history = None;
        let mut throttles = Vec::new();
        for (key, value) in map {
            let Some(key) = key.as_str().map(str::to_owned) else {
                self.push("", format!("keys must be strings, found {key:?}"));
                continue;
            };
            match key.as_str() {
                "redis" => redis = self.section(&key, value),
                "prometheus" => prometheus = self.section(&key, value),
                "listen" => listen = self.section(&key, value),
                "interval" => {
                    interval = duration::deserialize(value)
                        .map_err(|e| self.push(&key, e.to_string()))
                        .ok();
                }
                "leader" => leader = self.section(&key, value),
                "history" => history = self.section(&key, value),
                "throttles" => throttles = self.throttles(value),
                other => self.push(
                    other,
                    format!(
                        "unknown key `{other}`, expected one of {}",
                        TOP_LEVEL.join(", ")
                    ),
                ),
            }
        }
        let (indices, throttles) = throttles.into_iter().unzip();
        let config = Config {
            redis: redis.unwrap_or_default(),
            prometheus: prometheus.unwrap_or_default(),
            listen: listen.unwrap_or_else(|| "127.0.0.1:9477".to_owned()),
            interval: interval.unwrap_or(std::time::Duration::from_secs(10)),
            leader: leader.unwrap_or_default(),
            history: history.unwrap_or_default(),
            throttles,
        };
        Some((config, indices))
    }

    /// The throttles that parse, each with its index in the file.
    fn throttles(&mut self, value: Value) -> Vec<(usize, super::Throttle)> {
        let Value::Sequence(items) = value else {
            self.push("throttles", "expected a list of throttles".to_owned());
            return Vec::new();
        };
        items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let at = format!("throttles[{i}]");
                let item = self.concurrency_names(&at, item);
                let (throttle, removed) = self.throttle(&at, item)?;
                self.removed.extend(removed);
                Some((i, throttle))
            })
            .collect()
    }

    /// A policy with `knob: concurrency` names its values `defaults.concurrency` and
    /// `bounds.min_concurrency`/`max_concurrency`; they are read into the fields a rate
    /// policy calls `rps`, `min_rps` and `max_rps` (the level the laws move), and burst and
    /// window are fixed at 1. A rate-only key in such a policy is an error at that key.
    fn concurrency_names(&mut self, at: &str, mut item: Value) -> Value {
        let Value::Mapping(policy) = &mut item else {
            return item;
        };
        if policy.get("knob").and_then(Value::as_str) != Some("concurrency") {
            return item;
        }
        let mut rename = |section: &str, from: &str, to: &str, rate_only: &[&str]| {
            let Some(Value::Mapping(m)) = policy.get_mut(section) else {
                return;
            };
            for key in rate_only {
                if m.contains_key(*key) {
                    self.push(
                        &format!("{at}.{section}.{key}"),
                        format!("`{key}` is for rate policies; this one has `knob: concurrency`"),
                    );
                    m.remove(*key);
                }
            }
            if let Some(v) = m.remove(from) {
                m.insert(Value::from(to), v);
            }
        };
        rename(
            "defaults",
            "concurrency",
            "rps",
            &["rps", "burst", "window"],
        );
        rename(
            "bounds",
            "min_concurrency",
            "min_rps",
            &[
                "min_rps",
                "max_rps",
                "min_burst",
                "max_burst",
                "min_window",
                "max_window",
            ],
        );
        rename("bounds", "max_concurrency", "max_rps", &[]);
        if let Some(Value::Mapping(d)) = policy.get_mut("defaults") {
            d.insert(Value::from("burst"), Value::from(1.0));
            d.insert(Value::from("window"), Value::from(1.0));
        }
        item
    }
}
