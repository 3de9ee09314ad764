//! What a template governs: the names it produced that no other policy governs, up to its
//! `max_throttles`; the others are refused, counted and logged.

use std::collections::BTreeMap;

use super::{Ctx, PolicyState};
use crate::config::{Knob, Throttle};
use crate::source::NoData;
use regulator::client::keys::clashing_suffix;

/// How many names were refused at the last tick, by reason, and a few of them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Refused {
    collision: (usize, Vec<String>),
    cap: (usize, Vec<String>),
    /// Names whose bucket key is another throttle's key (`x:knobs`).
    key: (usize, Vec<String>),
}

/// Names shown in a log line about refused names.
const SHOWN: usize = 5;

impl PolicyState {
    /// The throttles this template governs among `signals`: its members first (they keep
    /// their place under the cap), then new names in order.
    pub(super) fn govern<S, K>(
        &mut self,
        signals: BTreeMap<String, Result<f64, NoData>>,
        ctx: &Ctx<'_, S, K>,
    ) -> Vec<(String, Result<f64, NoData>)> {
        let policy = std::sync::Arc::clone(&self.policy);
        let name = policy.name();
        let cap = policy.throttle.max_throttles();
        let (old, new): (Vec<_>, Vec<_>) = signals
            .into_iter()
            .partition(|(n, _)| self.members.contains_key(n));
        let mut governed = Vec::with_capacity(old.len() + new.len().min(cap));
        let mut refused = Refused::default();
        for (throttle, signal) in old.into_iter().chain(new) {
            let why = if clashing_suffix(&throttle).is_some() {
                &mut refused.key
            } else if !ctx.names.claim(&throttle, name) {
                &mut refused.collision
            } else if governed.len() >= cap {
                ctx.names.release(&throttle, name);
                &mut refused.cap
            } else {
                governed.push((throttle, signal));
                continue;
            };
            // Its series now belong to the policy that governs it, if any: left alone.
            self.members.remove(&throttle);
            why.0 += 1;
            if why.1.len() < SHOWN {
                why.1.push(throttle);
            }
        }
        ctx.metrics
            .refused(name, "collision", refused.collision.0 as u64);
        ctx.metrics.refused(name, "cap", refused.cap.0 as u64);
        ctx.metrics.refused(name, "key", refused.key.0 as u64);
        if refused != self.refused {
            if refused.collision.0 > 0 {
                let owners: Vec<String> = refused
                    .collision
                    .1
                    .iter()
                    .map(|t| format!("{t} ({})", ctx.names.owner(t).unwrap_or_default()))
                    .collect();
                tracing::warn!(policy = name, refused = refused.collision.0, examples = ?owners, "template names governed by another policy are refused");
            }
            if refused.key.0 > 0 {
                tracing::warn!(policy = name, refused = refused.key.0, examples = ?refused.key.1, "template names ending in a throttle's key suffix (:knobs, :history...) are refused: their buckets would be other throttles' keys");
            }
            if refused.cap.0 > 0 {
                tracing::warn!(policy = name, refused = refused.cap.0, max_throttles = cap, examples = ?refused.cap.1, "template past max_throttles: further names are refused");
            }
            self.refused = refused;
        }
        governed
    }
}

/// The bounds of each knob `throttle` writes, as `(knob, min, max)`.
#[must_use]
pub(super) fn knob_bounds(t: &Throttle) -> Vec<(&'static str, f64, f64)> {
    let b = &t.bounds;
    match t.knob {
        Knob::Concurrency => vec![("concurrency", b.min_rps, b.max_rps)],
        Knob::Rate => vec![
            ("rps", b.min_rps, b.max_rps),
            (
                "burst",
                b.min_burst.unwrap_or(t.defaults.burst),
                b.max_burst.unwrap_or(t.defaults.burst),
            ),
            (
                "window",
                b.min_window.unwrap_or(t.defaults.window),
                b.max_window.unwrap_or(t.defaults.window),
            ),
        ],
    }
}
