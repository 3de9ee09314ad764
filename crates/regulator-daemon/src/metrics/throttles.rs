//! The per-throttle series (`regulator_knob`, `regulator_signal`, `regulator_knob_min`,
//! `regulator_knob_max`), kept as one compact row per throttle and written out at scrape time.
//!
//! A throttle has up to ten such series. Held as a metric family each (a label set with its own
//! copy of the name and a gauge behind an `Arc` per series) they cost about 1.4 KiB a throttle,
//! 140 MiB at 100,000 throttles; a row holds the name once and the numbers inline.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::config::Knob;
use regulator::Knobs;

/// The bounds of a throttle's knobs, `(knob, min, max)`; shared by a template's throttles.
pub(super) type Bounds = Arc<[(&'static str, f64, f64)]>;

#[derive(Debug, Default)]
struct Row {
    /// The knobs computed at the last tick, if there was one.
    knobs: Option<(Knob, Knobs)>,
    /// The last usable signal (NaN when there was none).
    signal: f64,
    bounds: Option<Bounds>,
}

/// Every throttle's row, by name (so a scrape lists them in order).
#[derive(Debug, Default, Clone)]
pub(super) struct Throttles(Arc<RwLock<BTreeMap<Box<str>, Row>>>);

impl Throttles {
    fn with_row(&self, throttle: &str, f: impl FnOnce(&mut Row)) {
        let mut rows = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(row) = rows.get_mut(throttle) {
            f(row);
        } else {
            f(rows.entry(throttle.into()).or_default());
        }
    }

    pub(super) fn set(&self, throttle: &str, knob: Knob, knobs: Knobs, signal: Option<f64>) {
        self.with_row(throttle, |row| {
            row.knobs = Some((knob, knobs));
            row.signal = signal.unwrap_or(f64::NAN);
        });
    }

    pub(super) fn set_bounds(&self, throttle: &str, bounds: Bounds) {
        self.with_row(throttle, |row| row.bounds = Some(bounds));
    }

    pub(super) fn forget(&self, throttle: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(throttle);
    }
}

/// A throttle's knob values, named as in the knobs hash.
fn values(knob: Knob, k: Knobs) -> impl Iterator<Item = (&'static str, f64)> {
    let rate = [("rps", k.rps), ("burst", k.burst), ("window", k.window)];
    let n = if knob == Knob::Rate { 3 } else { 1 };
    let concurrency = [("concurrency", k.rps)];
    (0..n).map(move |i| {
        if knob == Knob::Rate {
            rate[i]
        } else {
            concurrency[i]
        }
    })
}

impl Collector for Throttles {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let rows = self.0.read().unwrap_or_else(PoisonError::into_inner);
        let mut family = encoder.encode_descriptor(
            "knob",
            "Knobs computed for a throttle at its last tick (written by the leader, shadowed by the others)",
            None,
            MetricType::Gauge,
        )?;
        for (name, row) in rows.iter() {
            if let Some((knob, knobs)) = row.knobs {
                for (knob, value) in values(knob, knobs) {
                    let labels = [("throttle", &**name), ("knob", knob)];
                    ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "signal",
            "Last usable signal value of a throttle (NaN while there is no data)",
            None,
            MetricType::Gauge,
        )?;
        for (name, row) in rows.iter().filter(|(_, r)| r.knobs.is_some()) {
            let labels = [("throttle", &**name)];
            ConstGauge::new(row.signal).encode(family.encode_family(&labels)?)?;
        }
        for (metric, help, pick) in [
            (
                "knob_min",
                "The lowest value the policy may write to a throttle's knob (bounds.min_*)",
                (|&(_, lo, _)| lo) as fn(&(&'static str, f64, f64)) -> f64,
            ),
            (
                "knob_max",
                "The highest value the policy may write to a throttle's knob (bounds.max_*)",
                |&(_, _, hi)| hi,
            ),
        ] {
            let mut family = encoder.encode_descriptor(metric, help, None, MetricType::Gauge)?;
            for (name, row) in rows.iter() {
                for bound in row.bounds.iter().flat_map(|b| b.iter()) {
                    let labels = [("throttle", &**name), ("knob", bound.0)];
                    ConstGauge::new(pick(bound)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}
