//! What the demo keeps of each second, and what it makes of them at the end: `demo.csv`, the
//! figure and the per-phase summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use regulator_sim::plot::{Line, Panel, colors, figure};

/// A p99 up to this multiple of the target still counts as inside the SLO.
pub const TOLERANCE: f64 = 1.1;
/// Seconds at the start of the run left out of the summary: the first one is measured before
/// the workers have taken their first tokens and before the daemon has seen any signal.
const WARMUP: u64 = 1;

/// One second of the run.
#[derive(Debug, Clone)]
pub struct Row {
    /// Seconds since the start, from 1.
    pub t: u64,
    /// Which phase of the capacity plan, from 1.
    pub phase: usize,
    /// The database's capacity, queries/s.
    pub capacity: f64,
    /// The rate at which p99 meets the target.
    pub slo_capacity: f64,
    /// Queries the workers were allowed, per second.
    pub served: f64,
    /// Decisions that denied a worker, per second.
    pub denied: f64,
    /// Token-bucket calls that failed, per second (not in the CSV: zero unless Redis fails).
    pub errors: f64,
    /// The simulated p99 latency exported for this second, in seconds.
    pub p99: f64,
    /// The `rps` knob stored in Redis at the end of the second.
    pub knob: Option<f64>,
    /// The daemon's reason for its last change (empty before the first).
    pub reason: String,
}

impl Row {
    /// Whether this second's p99 is within [`TOLERANCE`] of the target.
    pub fn in_slo(&self, target: f64) -> bool {
        self.p99 <= TOLERANCE * target
    }
}

/// How well a stretch of seconds kept to the SLO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// The phase (1, 2, ...); `None` for the whole run.
    pub phase: Option<usize>,
    /// Its capacity (of its last second), queries/s.
    pub capacity: f64,
    /// Seconds counted.
    pub seconds: usize,
    /// Share of those seconds with p99 within the tolerance.
    pub in_slo: f64,
    /// Queries served in those in-SLO seconds, as a share of the SLO-capacity over all the
    /// seconds counted.
    pub goodput: f64,
}

/// Scores each phase and the whole run, leaving out the warm-up second at the very start.
pub fn summarize(rows: &[Row], target: f64) -> (Vec<Score>, Score) {
    let counted: Vec<&Row> = rows.iter().filter(|r| r.t > WARMUP).collect();
    let mut phases: BTreeMap<usize, Vec<&Row>> = BTreeMap::new();
    for row in &counted {
        phases.entry(row.phase).or_default().push(row);
    }
    let per_phase = phases
        .into_iter()
        .map(|(phase, rows)| score(Some(phase), &rows, target))
        .collect();
    (per_phase, score(None, &counted, target))
}

fn score(phase: Option<usize>, rows: &[&Row], target: f64) -> Score {
    let good: Vec<&&Row> = rows.iter().filter(|r| r.in_slo(target)).collect();
    // Folded from +0.0: an empty `sum()` of floats is -0.0, which prints as "-0%".
    let served = good.iter().fold(0.0, |sum, r| sum + r.served);
    let possible = rows.iter().fold(0.0, |sum, r| sum + r.slo_capacity);
    let share = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };
    Score {
        phase,
        capacity: rows.last().map_or(0.0, |r| r.capacity),
        seconds: rows.len(),
        in_slo: share(good.len() as f64, rows.len() as f64),
        goodput: share(served, possible),
    }
}

/// The summary as a small table.
pub fn table(phases: &[Score], whole: &Score) -> String {
    let mut out = format!(
        "{:<6} {:>9} {:>8} {:>8} {:>8}\n",
        "phase", "capacity", "seconds", "in SLO", "goodput"
    );
    for s in phases.iter().chain([whole]) {
        let (phase, capacity) = match s.phase {
            Some(p) => (p.to_string(), format!("{:.0}", s.capacity)),
            None => ("all".to_owned(), String::new()),
        };
        let _ = writeln!(
            out,
            "{phase:<6} {capacity:>9} {:>8} {:>7.0}% {:>7.0}%",
            s.seconds,
            s.in_slo * 100.0,
            s.goodput * 100.0
        );
    }
    out
}

/// The summary as `summary phase=N in_slo=0.95 goodput=0.91` lines (`phase=all` last).
pub fn summary_lines(phases: &[Score], whole: &Score) -> String {
    let mut out = String::new();
    for s in phases.iter().chain([whole]) {
        let phase = s.phase.map_or_else(|| "all".to_owned(), |p| p.to_string());
        let _ = writeln!(
            out,
            "summary phase={phase} seconds={} in_slo={:.2} goodput={:.2}",
            s.seconds, s.in_slo, s.goodput
        );
    }
    out
}

/// `demo.csv`: one row per second.
pub fn csv(rows: &[Row], target: f64) -> String {
    let mut out =
        String::from("t,capacity,served_per_s,denied_per_s,p99_ms,target_ms,rps_knob,reason\n");
    for r in rows {
        let knob = r.knob.map_or_else(String::new, |k| format!("{k:.1}"));
        let _ = writeln!(
            out,
            "{},{:.0},{:.0},{:.0},{:.1},{:.0},{knob},{}",
            r.t,
            r.capacity,
            r.served,
            r.denied,
            r.p99 * 1000.0,
            target * 1000.0,
            csv_field(&r.reason)
        );
    }
    out
}

/// Quotes a field that holds a comma, a quote or a line break, doubling its quotes.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Writes `demo.csv`, `demo.svg` and `demo.png` into `dir`; returns their paths.
pub fn write(dir: &Path, title: &str, rows: &[Row], target: f64) -> Result<Vec<PathBuf>, String> {
    let csv_path = dir.join("demo.csv");
    std::fs::write(&csv_path, csv(rows, target))
        .map_err(|e| format!("cannot write {}: {e}", csv_path.display()))?;
    let [svg, png] =
        figure(&dir.join("demo"), title, &panels(rows, target)).map_err(|e| e.to_string())?;
    Ok(vec![csv_path, svg, png])
}

fn panels(rows: &[Row], target: f64) -> Vec<Panel> {
    let line = |label: &str, color, right, dashed, f: &dyn Fn(&Row) -> Option<f64>| Line {
        label: label.to_owned(),
        color,
        right,
        dashed,
        points: rows
            .iter()
            .filter_map(|r| f(r).map(|v| (r.t as f64, v)))
            .collect(),
    };
    // A row covers the second that ends at `t`: the SLO-capacity is drawn as steps, so that
    // a capacity change shows where it happened.
    let slo_capacity = Line {
        label: "SLO-capacity".into(),
        color: colors::SLO_CAPACITY,
        right: false,
        dashed: true,
        points: rows
            .iter()
            .flat_map(|r| {
                [
                    (r.t as f64 - 1.0, r.slo_capacity),
                    (r.t as f64, r.slo_capacity),
                ]
            })
            .collect(),
    };
    // Denied/s gets no panel: every denied worker retries within 25 ms, so it shows the
    // workers' retry pace (a flat line near workers × 40/s), not the demand.
    vec![Panel {
        title: "the rps knob and the queries the database served, against its p99".into(),
        left: "queries/s".into(),
        right: "p99 (ms)".into(),
        lines: vec![
            line("rps knob", colors::KNOB, false, false, &|r| r.knob),
            line("served/s", colors::SERVED, false, false, &|r| {
                Some(r.served)
            }),
            slo_capacity,
            line("p99", colors::P99, true, false, &|r| Some(r.p99 * 1000.0)),
            line("target", colors::TARGET, true, true, &|_| {
                Some(target * 1000.0)
            }),
        ],
    }]
}
