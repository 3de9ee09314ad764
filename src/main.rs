//! `regulator`: the command-line entry point. Parses arguments, sets up logging and calls into
//! the library.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use regulator::daemon::status::{ThrottleStatus, table};
use regulator::{Client, KnobsUpdate};

/// Adaptive throttles for fleets of workers that share rate limits through Redis.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct RedisArgs {
    /// Redis URL (`redis://[user:password@]host:port/db`, `rediss://` for TLS).
    #[arg(
        long,
        env = "REGULATOR_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/0"
    )]
    redis: String,
}

#[derive(Subcommand)]
enum Command {
    /// Show each throttle's knobs, bucket tokens and TTLs.
    Status {
        #[command(flatten)]
        redis: RedisArgs,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// Throttle names (default: every throttle with knobs or a bucket in Redis).
        names: Vec<String>,
    },
    /// Write knobs by hand (validated like limitlion's `throttle_set`: floats >= 0; a knob
    /// not given must already be stored).
    Set {
        #[command(flatten)]
        redis: RedisArgs,
        /// Throttle name.
        name: String,
        /// Tokens per second (0 denies all).
        #[arg(long, allow_negative_numbers = true)]
        rps: Option<f64>,
        /// Burst multiplier.
        #[arg(long, allow_negative_numbers = true)]
        burst: Option<f64>,
        /// Refill window in seconds.
        #[arg(long, allow_negative_numbers = true)]
        window: Option<f64>,
        /// Expire the knobs after this many seconds (workers then use their defaults).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Delete a throttle's knobs, so workers use their defaults again.
    Reset {
        #[command(flatten)]
        redis: RedisArgs,
        /// Throttle name.
        name: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regulator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Status { redis, json, names } => {
            let client = connect(&redis).await?;
            let names = if names.is_empty() {
                list_throttles(&client).await?
            } else {
                names
            };
            let mut rows = Vec::with_capacity(names.len());
            for name in names {
                let state = client.get(&name).await?;
                rows.push(ThrottleStatus { name, state });
            }
            if json {
                for row in &rows {
                    println!("{}", row.to_json());
                }
            } else {
                print!("{}", table(&rows));
            }
        }
        Command::Set {
            redis,
            name,
            rps,
            burst,
            window,
            ttl,
        } => {
            let client = connect(&redis).await?;
            let update = KnobsUpdate { rps, burst, window };
            client
                .set_knobs(&name, update, ttl.map(Duration::from_secs))
                .await
                .with_context(|| format!("set knobs of {name:?}"))?;
        }
        Command::Reset { redis, name } => {
            connect(&redis).await?.reset_knobs(&name).await?;
        }
    }
    Ok(())
}

async fn connect(args: &RedisArgs) -> anyhow::Result<Client> {
    Client::connect(&args.redis)
        .await
        .context("connect to redis")
}

/// Throttle names found in Redis: every `throttle:<name>:knobs` and `throttle:<name>` bucket,
/// by SCAN (never KEYS, which blocks a busy server).
async fn list_throttles(client: &Client) -> anyhow::Result<Vec<String>> {
    let mut names = client.scan_throttles().await?;
    names.sort();
    names.dedup();
    Ok(names)
}
