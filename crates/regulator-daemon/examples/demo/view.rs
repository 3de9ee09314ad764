//! What the demo prints while it runs: a live view redrawn in place on a terminal, or one
//! `key=value` line per second otherwise.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use crate::report::{Row, TOLERANCE};

const BAR: usize = 30;
/// Reasons longer than this are cut, so that no line of the live view wraps.
const REASON: usize = 60;

/// The live view or the plain lines.
pub struct View {
    live: bool,
    total: u64,
    phases: usize,
    target: f64,
    /// The block drawn last, to redraw it under a new persistent line.
    block: Vec<String>,
    /// How many lines of it are on screen, above the cursor.
    drawn: usize,
}

impl View {
    /// Live when stdout is a terminal.
    pub fn new(total: u64, phases: usize, target: f64) -> Self {
        Self {
            live: std::io::stdout().is_terminal(),
            total,
            phases,
            target,
            block: Vec::new(),
            drawn: 0,
        }
    }

    /// Whether the view is redrawn in place.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// A phase starts: a line that stays above the live block.
    pub fn phase(&mut self, t: u64, phase: usize, capacity: f64, slo_capacity: f64, what: &str) {
        if self.live {
            // The block keeps the last second's values under the new phase's progress bar.
            let progress = self.progress(t, phase);
            if self.block.is_empty() {
                self.block = progress;
            } else {
                self.block.splice(..1, progress);
            }
            let line = format!(
                "\x1b[1m--- t={t}s  phase {phase}/{}: {what}\x1b[0m (SLO-capacity {slo_capacity:.0} queries/s)",
                self.phases
            );
            self.redraw(Some(&line));
        } else {
            println!(
                "phase_start t={t} phase={phase} capacity={capacity:.0} slo_capacity={slo_capacity:.0} what={what:?}"
            );
        }
    }

    /// A second has been measured.
    pub fn second(&mut self, row: &Row) {
        let target_ms = self.target * 1000.0;
        let knob = row
            .knob
            .map_or_else(|| "none".to_owned(), |k| format!("{k:.1}"));
        if !self.live {
            let errors = if row.errors > 0.0 {
                format!(" worker_errors_per_s={:.0}", row.errors)
            } else {
                String::new()
            };
            println!(
                "t={} phase={} capacity={:.0} slo_capacity={:.0} served_per_s={:.0} denied_per_s={:.0} p99_ms={:.0} target_ms={target_ms:.0} rps_knob={knob} reason={:?}{errors}",
                row.t,
                row.phase,
                row.capacity,
                row.slo_capacity,
                row.served,
                row.denied,
                row.p99 * 1000.0,
                row.reason
            );
            return;
        }
        let p99_ms = row.p99 * 1000.0;
        let mark = if row.in_slo(self.target) {
            "\x1b[32mok\x1b[0m".to_owned()
        } else {
            format!(
                "\x1b[1;31mABOVE TARGET (> {:.0} ms)\x1b[0m",
                TOLERANCE * target_ms
            )
        };
        let reason = if row.reason.is_empty() {
            "(no change yet)".to_owned()
        } else {
            row.reason.chars().take(REASON).collect()
        };
        let mut block = self.progress(row.t, row.phase);
        block.extend([
            format!("  rps knob   {knob:>8}"),
            format!(
                "  served/s   {:>8.0}    denied/s {:>8.0}",
                row.served, row.denied
            ),
            format!("  p99        {p99_ms:>5.0} ms    target   {target_ms:>5.0} ms   {mark}"),
            format!(
                "  capacity   {:>6.0}/s    SLO-capacity {:.0}/s",
                row.capacity, row.slo_capacity
            ),
            format!("  daemon     {reason}"),
        ]);
        if row.errors > 0.0 {
            block.push(format!(
                "  \x1b[1;31mworker errors {:.0}/s\x1b[0m",
                row.errors
            ));
        }
        self.block = block;
        self.redraw(None);
    }

    /// Leaves the live block on screen and moves below it (wiping a `^C` the terminal echoed).
    pub fn finish(&mut self) {
        if self.live {
            print!("\r\x1b[K");
            self.block.clear();
            self.drawn = 0;
            let _ = std::io::stdout().flush();
        }
    }

    fn progress(&self, t: u64, phase: usize) -> Vec<String> {
        let done = (t.min(self.total) as usize * BAR)
            .checked_div(self.total as usize)
            .unwrap_or(BAR);
        vec![format!(
            "[{}{}] {t:>3}/{} s  phase {phase}/{}",
            "#".repeat(done),
            ".".repeat(BAR - done),
            self.total,
            self.phases
        )]
    }

    /// Erases the block drawn last, prints `persistent` (if any) where it began, then the
    /// current block under it.
    fn redraw(&mut self, persistent: Option<&str>) {
        let mut out = String::new();
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        out.push_str("\r\x1b[J");
        for line in persistent
            .into_iter()
            .chain(self.block.iter().map(String::as_str))
        {
            out.push_str(line);
            out.push_str("\x1b[K\n");
        }
        self.drawn = self.block.len();
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}
