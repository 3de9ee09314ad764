//! The closed-loop simulator: the daemon's own controller against a modelled fleet, backend
//! and measurement path, side by side with baselines from other systems. Deterministic for a
//! seed; no servers.
//!
//! ```text
//! cargo run --release --example simulate -- --scenario NAME|all|families|FILE.yaml [--seed N] [--out DIR] [--json]
//! cargo run --release --example simulate -- --judge --scenario families --seeds 1-5
//! ```
//!
//! `--judge` measures every law phase by phase against the best static limit of each phase
//! (searched over `rps` and window, in hindsight), over several seeds (see `regulator_sim::judge`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use regulator_sim::{self as sim, Scenario, Trace, plot};

#[derive(Parser)]
#[command(about = "Simulate control laws against a modelled backend, fleet and Prometheus")]
struct Args {
    /// A built-in scenario, `all`, or a scenario file (YAML).
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Seed of the noise and the tick jitter.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write one figure per scenario here (SVG and PNG).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the scores as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Only the laws whose name contains this (e.g. `predictive`, `static`).
    #[arg(long)]
    law: Option<String>,
    /// Judge each law phase by phase against the best static limit of each phase.
    #[arg(long)]
    judge: bool,
    /// With `--judge`: the seeds, as `FIRST-LAST`.
    #[arg(long, default_value = "1-5")]
    seeds: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scenarios = match args.scenario.as_str() {
        "all" => Scenario::all(),
        "families" => sim::scenario::FAMILIES
            .iter()
            .filter_map(|n| Scenario::built_in(n))
            .collect(),
        name => match Scenario::built_in(name) {
            Some(s) => vec![s],
            None => match Scenario::load(std::path::Path::new(name)) {
                Ok(s) => vec![s],
                Err(e) => {
                    eprint!("{e}");
                    eprintln!(
                        "built-in scenarios: {}",
                        sim::scenario::BUILT_IN.map(|(n, _)| n).join(", ")
                    );
                    return ExitCode::from(64);
                }
            },
        },
    };
    if let Some(dir) = &args.out
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!("cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    if args.judge {
        let Some((first, last)) = args
            .seeds
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .filter(|(a, b)| a <= b && b - a < 1000)
        else {
            eprintln!("--seeds takes FIRST-LAST, e.g. 1-5");
            return ExitCode::from(64);
        };
        for scenario in &scenarios {
            judged(scenario, first..=last, args.law.as_deref());
        }
        return ExitCode::SUCCESS;
    }
    let mut json = Vec::new();
    for scenario in &scenarios {
        let traces = sim::compare(scenario, args.seed, args.law.as_deref());
        if args.json {
            json.push(serde_json::json!({
                "scenario": scenario.name,
                "description": scenario.description,
                "seed": args.seed,
                "laws": traces,
            }));
        } else {
            table(scenario, &traces);
        }
        if let Some(dir) = &args.out {
            let title = format!("{}: {}", scenario.name, scenario.description);
            let panels = plot::traces(&traces, scenario.policy.throttle.signal.target);
            match plot::figure(&dir.join(&scenario.name), &title, &panels) {
                Ok([svg, png]) => eprintln!("wrote {} and {}", svg.display(), png.display()),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if args.json {
        println!("{}", serde_json::Value::Array(json));
    }
    ExitCode::SUCCESS
}

/// One scenario judged over `seeds`: per law, per phase, the worst seed's compliance, goodput
/// (over the best static of the phase), recovery and overshoot.
fn judged(scenario: &Scenario, seeds: std::ops::RangeInclusive<u64>, only: Option<&str>) {
    use sim::judge::{PhaseScore, judge_all};
    println!("\n{} — {}", scenario.name, scenario.description);
    let all: Vec<_> = seeds.map(|seed| judge_all(scenario, seed, only)).collect();
    let Some(first) = all.first() else { return };
    for (p, r) in first.references.iter().enumerate() {
        let rates: Vec<String> = all
            .iter()
            .map(|j| format!("{:.0}", j.references[p].good_rate))
            .collect();
        let within = all
            .iter()
            .map(|j| j.references[p].within_goal)
            .fold(f64::INFINITY, f64::min);
        println!(
            "  phase {p}: best static (seed {}) {}; good/s by seed {}; the best static with {:.0}% compliance: {:.1}% of its good queries (worst seed){}",
            first.seed,
            r.law,
            rates.join(" "),
            sim::judge::GOAL_COMPLIANCE * 100.0,
            within * 100.0,
            if within < sim::judge::GOAL_GOODPUT {
                ": no static limit meets both goals"
            } else {
                ""
            }
        );
    }
    println!(
        "  {:<34} {:>5} {:>11} {:>9} {:>9} {:>10}",
        "law (worst seed per phase)", "phase", "compliance", "goodput", "recovery", "overshoot"
    );
    for (i, (law, _)) in first.laws.iter().enumerate() {
        for p in 0..first.references.len() {
            let each: Vec<&PhaseScore> = all.iter().map(|j| &j.laws[i].1[p]).collect();
            let worst =
                |f: fn(&PhaseScore) -> f64| each.iter().map(|s| f(s)).fold(f64::INFINITY, f64::min);
            let recovery = if p == 0 {
                "-".to_owned()
            } else {
                each.iter()
                    .map(|s| s.recovery)
                    .try_fold(0, |w, r| r.map(|r| w.max(r)))
                    .map_or_else(|| "never".to_owned(), |r| r.to_string())
            };
            let overshoot = each.iter().map(|s| s.overshoot).fold(0.0_f64, f64::max);
            println!(
                "  {:<34} {:>5} {:>10.1}% {:>8.1}% {:>9} {:>9.1}%",
                if p == 0 { law.as_str() } else { "" },
                p,
                worst(|s| s.compliance) * 100.0,
                worst(|s| s.goodput) * 100.0,
                recovery,
                overshoot * 100.0
            );
        }
    }
}

fn table(scenario: &Scenario, traces: &[Trace]) {
    println!("\n{} — {}", scenario.name, scenario.description);
    println!(
        "  {:<40} {:>10} {:>8} {:>9} {:>10} {:>9} {:>11} {:>9}",
        "law", "compliance", "goodput", "c x g", "settling", "overshoot", "osc/min", "p99 p99"
    );
    for t in traces {
        let s = &t.score;
        let settling = if s.settling.is_empty() {
            "-".to_owned()
        } else {
            s.settling
                .iter()
                .map(|x| x.map_or_else(|| "never".to_owned(), |n| n.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        };
        println!(
            "  {:<40} {:>9.1}% {:>7.1}% {:>9.3} {:>10} {:>8.1}% {:>11.2} {:>6.0} ms",
            t.law,
            s.compliance * 100.0,
            s.goodput * 100.0,
            s.product(),
            settling,
            s.overshoot * 100.0,
            s.oscillation,
            s.p99_of_p99 * 1000.0
        );
    }
}
