//! Where each value of a YAML document stands: its path (`throttles[1].bounds.min_rps`) to its
//! line and column, so that every configuration error can point at the text.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A position in the configuration file, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Paths of a document to their locations: a mapping entry is located at its key, a sequence
/// item at its first character.
#[derive(Debug, Default)]
pub struct Locations {
    map: HashMap<String, Location>,
}

impl Locations {
    /// Indexes `text`. A document that does not scan is indexed up to the fault.
    #[must_use]
    pub fn index(text: &str) -> Self {
        let mut walker = Walker::default();
        let _ = Parser::new_from_str(text).load(&mut walker, false);
        Self { map: walker.found }
    }

    /// The location of `path`, or of its nearest ancestor that exists (an error about a
    /// missing field points at the mapping that lacks it).
    #[must_use]
    pub fn get(&self, path: &str) -> Option<Location> {
        let mut p = path;
        loop {
            if let Some(l) = self.map.get(p) {
                return Some(*l);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// The first path under `prefix` whose last segment is `key`, for errors that name a
    /// field but not where it is (serde's "unknown field `x`").
    #[must_use]
    pub fn find_key(&self, prefix: &str, key: &str) -> Option<(String, Location)> {
        let mut hits: Vec<(&String, &Location)> = self
            .map
            .iter()
            .filter(|(p, _)| {
                // Under `prefix` itself: `throttles[1]` must not match `throttles[10]`.
                let under = p.strip_prefix(prefix).is_some_and(|rest| {
                    prefix.is_empty() || rest.starts_with('.') || rest.starts_with('[')
                });
                under && p.rsplit_once('.').is_some_and(|(_, last)| last == key)
            })
            .collect();
        hits.sort_by_key(|(_, l)| (l.line, l.column));
        hits.first().map(|(p, l)| ((*p).clone(), **l))
    }
}

enum Frame {
    Map { key: Option<String> },
    Seq { next: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    found: HashMap<String, Location>,
}

impl Walker {
    fn path(&self) -> String {
        let mut out = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Map { key: Some(k) } => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Frame::Map { key: None } => {}
                Frame::Seq { next } => {
                    let _ = write!(out, "[{next}]");
                }
            }
        }
        out
    }

    /// A value is starting here: record where, unless its mapping key was recorded already.
    fn value_at(&mut self, mark: Marker) {
        if let Some(Frame::Seq { .. }) = self.stack.last() {
            let path = self.path();
            self.found.entry(path).or_insert(location(mark));
        }
    }

    /// A value has ended: the enclosing map expects a key again, a sequence its next item.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key }) => *key = None,
            Some(Frame::Seq { next }) => *next += 1,
            None => {}
        }
    }
}

fn location(mark: Marker) -> Location {
    Location {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { key: None }) = self.stack.last() {
                    // A mapping is located at its first key (the parser marks a block
                    // mapping's start at that key's colon).
                    let parent = self.path();
                    self.found.entry(parent).or_insert(location(mark));
                    if let Some(Frame::Map { key }) = self.stack.last_mut() {
                        *key = Some(value);
                    }
                    let path = self.path();
                    self.found.entry(path).or_insert(location(mark));
                } else {
                    self.value_at(mark);
                    self.value_done();
                }
            }
            Event::Alias(_) => {
                self.value_at(mark);
                self.value_done();
            }
            Event::MappingStart(..) => {
                self.stack.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                self.value_at(mark);
                self.stack.push(Frame::Seq { next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "redis: { url: \"redis://x\" }\n\
interval: 10s\n\
throttles:\n  \
  - name: a\n    \
    bounds: { min_rps: 5, max_rps: 1 }\n  \
  - name: b\n    \
    signal:\n      \
      query: up\n";

    #[test]
    fn paths_map_to_their_keys() {
        let l = Locations::index(DOC);
        let at = |p| l.get(p).map(|l| (l.line, l.column));
        assert_eq!(at("redis.url"), Some((1, 10)));
        assert_eq!(at("interval"), Some((2, 1)));
        assert_eq!(at("throttles[0]"), Some((4, 5)));
        assert_eq!(at("throttles[0].name"), Some((4, 5)));
        assert_eq!(at("throttles[0].bounds.max_rps"), Some((5, 27)));
        assert_eq!(at("throttles[1].signal.query"), Some((8, 7)));
    }

    /// `find_key("throttles[1]", ..)` used to match keys under `throttles[10]` too.
    #[test]
    fn find_key_stays_under_its_prefix() {
        use std::fmt::Write as _;

        let mut doc = String::from("throttles:\n");
        for i in 0..11 {
            let field = if i == 10 { "speed" } else { "name" };
            let _ = writeln!(doc, "  - {field}: t{i}");
        }
        let l = Locations::index(&doc);
        assert_eq!(l.find_key("throttles[1]", "speed"), None);
        let (path, loc) = l.find_key("throttles[10]", "speed").unwrap();
        assert_eq!((path.as_str(), loc.line), ("throttles[10].speed", 12));
    }

    #[test]
    fn missing_paths_point_at_their_parent() {
        let l = Locations::index(DOC);
        assert_eq!(
            l.get("throttles[1].signal.target"),
            l.get("throttles[1].signal")
        );
        assert_eq!(l.get("nothing.here"), None);
    }

    #[test]
    fn keys_are_found_under_a_prefix() {
        let l = Locations::index(DOC);
        let (path, loc) = l.find_key("throttles[1]", "query").unwrap();
        assert_eq!(path, "throttles[1].signal.query");
        assert_eq!(loc.line, 8);
    }
}
