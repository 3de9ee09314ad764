//! `regulator`: the command-line entry point. Parses arguments, sets up logging and calls into
//! the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use regulator::{Client, KnobsUpdate};
use regulator_daemon::admin::RedisTarget;

/// Adaptive throttles for fleets of workers that share rate limits through Redis.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format: `human` (default) or `json`, one object per line for log pipelines.
    /// The level comes from `RUST_LOG` (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Where Redis is: `--redis`, else the `redis:` section of `--config` (password file and
/// certificates included), else `$REGULATOR_REDIS_URL`, else `redis://127.0.0.1:6379/0`.
#[derive(Args)]
struct RedisArgs {
    /// Redis URL (`redis://[user:password@]host:port/db`, `rediss://` for TLS).
    #[arg(long)]
    redis: Option<String>,
    /// Take the Redis URL from this configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The URL is a seed node of a Redis Cluster (throttle keys carry a hash tag there).
    /// With `--config`, the file's `redis.cluster` decides.
    #[arg(long, env = "REGULATOR_REDIS_CLUSTER")]
    cluster: bool,
}

impl RedisArgs {
    fn target(&self) -> RedisTarget {
        RedisTarget {
            url: self.redis.clone(),
            config: self.config.clone(),
            cluster: self.cluster,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: keep every throttle's knobs right from its Prometheus signal.
    ///
    /// SIGHUP reloads the configuration, as does a change of the file (checked every 2 s);
    /// a bad new configuration is logged and the running one stays. SIGTERM or SIGINT
    /// finishes the ticks in flight and exits 0; a second one exits at once.
    Run {
        /// The YAML configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Compute and log every change, write nothing, never take the lease.
        #[arg(long)]
        dry_run: bool,
        /// How long a stop waits for ticks in flight.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        drain: Duration,
    },
    /// Validate a configuration: exit 0 with a summary line per throttle, or exit 64 with
    /// every error and its line:column.
    Check {
        /// The YAML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show each throttle's knobs, bucket tokens, TTLs and the daemon's last change.
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
        /// Expire the knobs after this many seconds (workers then use their defaults); 0 leaves
        /// the knobs' expiry as it is, as limitlion's `knobs_ttl=0`.
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
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, never into journald or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("regulator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            config,
            dry_run,
            drain,
        } => return daemon(config, dry_run, drain).await,
        Command::Check { config } => match regulator_daemon::config::load(&config) {
            Ok(c) => {
                for t in &c.throttles {
                    println!("{}", t.describe(c.interval));
                }
                println!(
                    "{}: ok, {} throttle policies",
                    config.display(),
                    c.throttles.len()
                );
            }
            Err(errors) => {
                eprint!("{errors}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        },
        Command::Status { redis, json, names } => {
            let client = connect(&redis).await?;
            let rows = regulator_daemon::status::collect(&client, names).await?;
            print!("{}", regulator_daemon::status::render(&rows, json));
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
    Ok(ExitCode::SUCCESS)
}

/// `regulator run`: load the configuration (exit 64 on a bad one), route signals, run until
/// stopped.
async fn daemon(path: PathBuf, dry_run: bool, drain: Duration) -> anyhow::Result<ExitCode> {
    let config = match regulator_daemon::config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{errors}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let options = regulator_daemon::RunOptions {
        config_path: Some(path),
        dry_run,
        drain,
        notify: regulator_daemon::notify::Notifier::from_env(),
        ..Default::default()
    };
    let signals = regulator_daemon::signals::register().context("install signal handlers")?;
    let daemon = regulator_daemon::Daemon::start(config, options).await?;
    signals
        .route(daemon.handle())
        .context("start the signal thread")?;
    daemon.wait().await.context("daemon")?;
    Ok(ExitCode::SUCCESS)
}

/// `EX_USAGE`: the configuration is not usable as written.
const EXIT_CONFIG: u8 = 64;

async fn connect(args: &RedisArgs) -> anyhow::Result<Client> {
    args.target()
        .builder()?
        .connect()
        .await
        .context("connect to redis")
}
