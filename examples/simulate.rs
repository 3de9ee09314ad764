//! The closed-loop simulator: the daemon's own controller against a modelled fleet, backend
//! and measurement path, side by side with baselines from other systems. Deterministic for a
//! seed; no servers.
//!
//! ```text
//! cargo run --release --example simulate -- --scenario NAME|all|FILE.yaml [--seed N] [--out DIR] [--json]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use regulator::sim::{self, Scenario, Trace, plot};

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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let scenarios = match args.scenario.as_str() {
        "all" => Scenario::all(),
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
