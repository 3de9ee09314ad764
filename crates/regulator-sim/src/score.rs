//! How well a law did, from its trace, after the warm-up.
//!
//! - **compliance**: share of intervals whose true p99 (every query served in the interval)
//!   is at most the target;
//! - **goodput**: queries served (not timed out) in compliant intervals, as a share of what the backend could
//!   serve inside the SLO (its SLO-capacity, or the demand when that is lower);
//! - **settling**: after each capacity step, intervals until the served rate stays within ±10%
//!   of what is reachable (the SLO-capacity, or the demand when lower) until the next step;
//! - **overshoot**: after the served rate first reaches that band, its peak above it (the
//!   served rate, not the knob: a knob above a lower demand sends nothing to the backend);
//! - **oscillation**: sign changes of the knob's moves per minute, outside the settling spans.

use serde::Serialize;

use super::Period;

/// Settled means within this share of the SLO-capacity.
pub const BAND: f64 = 0.1;

/// One law's scores in one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// Share of intervals in the SLO.
    pub compliance: f64,
    /// Served inside the SLO over what the SLO allows.
    pub goodput: f64,
    /// Intervals to settle after each capacity step; `None`: never settled before the next.
    pub settling: Vec<Option<usize>>,
    /// Peak of the served rate above what is reachable once it reached it, as a share.
    pub overshoot: f64,
    /// Sign changes of the knob's moves per minute in steady state.
    pub oscillation: f64,
    /// p99 of the per-interval true p99, seconds (the bad intervals, at a glance).
    pub p99_of_p99: f64,
}

impl Score {
    /// compliance × goodput: what the default law must beat every baseline on.
    #[must_use]
    pub fn product(&self) -> f64 {
        self.compliance * self.goodput
    }

    /// The slowest settling; `None` if a step never settled.
    #[must_use]
    pub fn worst_settling(&self) -> Option<usize> {
        self.settling
            .iter()
            .try_fold(0, |worst, s| s.map(|s| worst.max(s)))
    }
}

/// Scores `periods` (one per interval) against `target`; `steps` are the indices of the
/// first interval after each capacity step, `warmup` the intervals not scored.
#[must_use]
pub fn score(periods: &[Period], target: f64, steps: &[usize], warmup: usize) -> Score {
    let scored = periods.get(warmup..).unwrap_or_default();
    let compliant = |p: &Period| p.p99.is_none_or(|l| l <= target);
    let n = scored.len().max(1) as f64;
    let compliance = scored.iter().filter(|p| compliant(p)).count() as f64 / n;
    let good: f64 = scored
        .iter()
        .filter(|p| compliant(p))
        .map(|p| p.served - p.timeouts)
        .sum();
    let possible: f64 = scored.iter().map(|p| p.possible() * p.length).sum();
    let goodput = if possible > 0.0 { good / possible } else { 0.0 };

    let excess = |p: &Period| p.served / p.length / p.possible() - 1.0;
    let within = |p: &Period| excess(p).abs() <= BAND;
    let mut settling = Vec::new();
    let mut overshoot = 0.0_f64;
    let mut unsettled = vec![false; periods.len()];
    let segments: Vec<(usize, usize)> = steps
        .iter()
        .enumerate()
        .map(|(i, &s)| (s, steps.get(i + 1).copied().unwrap_or(periods.len())))
        .filter(|(s, e)| s < e && *e <= periods.len())
        .collect();
    for &(start, end) in &segments {
        let seg = &periods[start..end];
        // The first interval from which every later one of the segment is inside the band.
        let settled = (0..seg.len()).rev().take_while(|&i| within(&seg[i])).last();
        settling.push(settled);
        let quiet = settled.unwrap_or(seg.len());
        unsettled[start..start + quiet].fill(true);
        if let Some(first) = seg.iter().position(within) {
            for p in &seg[first..] {
                overshoot = overshoot.max(excess(p));
            }
        }
    }
    if segments.is_empty() {
        for p in scored {
            overshoot = overshoot.max(excess(p));
        }
    }

    let mut changes = 0_u32;
    let mut last_sign = 0.0;
    let mut steady = 0_usize;
    for (i, w) in periods.windows(2).enumerate().skip(warmup) {
        if unsettled[i + 1] {
            last_sign = 0.0;
            continue;
        }
        steady += 1;
        let d = w[1].knobs.rps - w[0].knobs.rps;
        if d != 0.0 {
            let sign = d.signum();
            if last_sign != 0.0 && sign != last_sign {
                changes += 1;
            }
            last_sign = sign;
        }
    }
    let minutes = periods
        .first()
        .map_or(0.0, |p| p.length * steady as f64 / 60.0);
    let oscillation = if minutes > 0.0 {
        f64::from(changes) / minutes
    } else {
        0.0
    };

    let mut p99s: Vec<f64> = scored.iter().filter_map(|p| p.p99).collect();
    p99s.sort_by(f64::total_cmp);
    let p99_of_p99 = p99s
        .get(((p99s.len() as f64 * 0.99).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0);
    Score {
        compliance,
        goodput,
        settling,
        overshoot: overshoot.max(0.0),
        oscillation,
        p99_of_p99,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regulator::Knobs;

    fn period(rps: f64, served: f64, p99: f64) -> Period {
        Period {
            end: 0.0,
            length: 10.0,
            knobs: Knobs {
                rps,
                burst: 1.0,
                window: 1.0,
            },
            served,
            denied: 0.0,
            timeouts: 0.0,
            p99: Some(p99),
            signal: None,
            capacity: 125.0,
            slo_capacity: 100.0,
            demand: 200.0,
        }
    }

    #[test]
    fn compliance_and_goodput_count_only_intervals_in_the_slo() {
        let ps = [period(100.0, 1000.0, 0.2), period(150.0, 1500.0, 0.4)];
        let s = score(&ps, 0.25, &[], 0);
        assert_eq!(s.compliance, 0.5);
        assert_eq!(
            s.goodput, 0.5,
            "1000 served in the SLO of 2 × 1000 possible"
        );
        assert_eq!(s.overshoot, 0.5);
    }

    #[test]
    fn settling_counts_intervals_until_the_knob_stays_in_the_band() {
        let rps = [200.0, 200.0, 150.0, 105.0, 120.0, 95.0, 100.0, 104.0];
        let ps: Vec<Period> = rps.iter().map(|&r| period(r, r * 10.0, 0.2)).collect();
        let s = score(&ps, 0.25, &[1], 0);
        assert_eq!(s.settling, vec![Some(4)], "in the band from index 5 on");
        assert!(
            (s.overshoot - 0.2).abs() < 1e-12,
            "120 after first reaching 105"
        );
        let never = score(&ps[..5], 0.25, &[1], 0);
        assert_eq!(never.settling, vec![None]);
        assert_eq!(never.worst_settling(), None);
    }

    #[test]
    fn oscillation_counts_reversals_in_steady_state() {
        let rps = [100.0, 101.0, 100.0, 101.0, 100.0, 100.0, 100.0];
        let ps: Vec<Period> = rps.iter().map(|&r| period(r, r * 10.0, 0.2)).collect();
        let s = score(&ps, 0.25, &[], 0);
        // Three reversals in six moves of 10 s = one minute.
        assert!((s.oscillation - 3.0).abs() < 1e-12, "{}", s.oscillation);
    }
}
