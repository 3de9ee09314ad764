//! `regulator run`: the daemon. A task per policy, the lease, the endpoints, and a supervisor
//! that reloads the configuration (on request, or when its file changes) and drains on
//! shutdown.
//!
//! A reload is validated whole before anything changes; a bad one is logged with its errors
//! and counted, and the running configuration stays. A good one starts new policies, stops
//! removed ones (their knobs are left to expire), restarts changed ones, and leaves unchanged
//! ones, with their controllers' state, alone.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backend::BackendError;
use super::backend::Backends;
use super::config::{self, Config};
use super::http::{self, Endpoints};
use super::leader;
use super::metrics::Metrics;
use super::reconcile::{Policy, PolicyState};
use super::schedule::{self, Shared};

/// How the daemon runs, beyond its configuration.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The configuration file, read again on reload and watched for changes.
    pub config_path: Option<PathBuf>,
    /// Compute and log, never write (and never take the lease).
    pub dry_run: bool,
    /// How long a shutdown waits for ticks in flight.
    pub drain: Duration,
    /// How often the configuration file is checked for changes (`None`: only on request).
    pub watch: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            config_path: None,
            dry_run: false,
            drain: Duration::from_secs(5),
            watch: Some(Duration::from_secs(2)),
        }
    }
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The `listen` address cannot be bound.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The configured address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A secret or certificate file the configuration names cannot be read.
    #[error(transparent)]
    Backends(#[from] BackendError),
    /// The daemon stopped abnormally (a bug).
    #[error("the daemon stopped abnormally: {0}")]
    Stopped(#[source] tokio::task::JoinError),
}

/// Controls a running daemon. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    reload: Arc<Notify>,
    shutdown: CancellationToken,
    addr: SocketAddr,
    endpoints: Endpoints,
}

impl Handle {
    /// Reloads the configuration file (what SIGHUP does).
    pub fn reload(&self) {
        self.reload.notify_one();
    }

    /// Starts a graceful shutdown (what SIGTERM does).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics, as `/metrics` serves them.
    #[must_use]
    pub fn metrics(&self) -> String {
        self.endpoints.render()
    }

    /// What keeps the daemon from being ready; empty when it is.
    #[must_use]
    pub fn not_ready(&self) -> Vec<String> {
        self.endpoints.not_ready()
    }

    /// Whether this replica writes knobs now.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.endpoints.shared.leadership.is_leader()
    }
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    handle: Handle,
    supervisor: JoinHandle<()>,
}

impl Daemon {
    /// Binds the endpoints and starts every policy, the lease and the supervisor.
    ///
    /// # Errors
    /// When `listen` cannot be bound or the Prometheus client cannot be built. Redis and
    /// Prometheus being down is not an error: the daemon runs, reports not-ready and
    /// catches up when they are back.
    pub async fn start(config: Config, options: RunOptions) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        metrics.dry_run(options.dry_run);
        let reachable = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared::new(
            Arc::clone(&metrics),
            options.dry_run,
            config.throttles.iter().map(|t| t.name.as_str()),
        ));
        let backends = Arc::new(Backends::new(
            &config,
            None,
            &reachable,
            shared.leadership.token(),
        )?);
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| StartError::Listen {
                    addr: config.listen.clone(),
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: config.listen.clone(),
            source,
        })?;
        let endpoints = Endpoints {
            metrics: Arc::clone(&metrics),
            shared: Arc::clone(&shared),
            redis: Arc::clone(&reachable),
        };
        let http_token = CancellationToken::new();
        let serving = http::serve(listener, endpoints.clone(), http_token.clone());
        let http_metrics = Arc::clone(&metrics);
        let http = tokio::spawn(async move {
            if let Err(e) = serving.await {
                http_metrics.error("http");
                tracing::error!(error = %e, "the /metrics, /healthz and /readyz server stopped");
            }
        });
        let (backends_tx, backends_rx) = watch::channel(backends);
        let lease_token = CancellationToken::new();
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let lease = (!options.dry_run).then(|| {
            tokio::spawn(leader::lead(
                Arc::clone(&shared.leadership),
                backends_rx,
                Arc::clone(&metrics),
                lease_token.clone(),
                first_tx,
            ))
        });
        if lease.is_some() {
            // Bounded: a Redis that is down costs at most its connect timeout here.
            let _ = tokio::time::timeout(Duration::from_secs(3), first_rx).await;
        }
        let handle = Handle {
            reload: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
            addr,
            endpoints,
        };
        let last_seen = options
            .config_path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok());
        tracing::info!(
            %addr,
            policies = config.throttles.len(),
            dry_run = options.dry_run,
            "regulator running"
        );
        let mut supervisor = Supervisor {
            config,
            options,
            backends: backends_tx,
            reachable,
            shared,
            tasks: BTreeMap::new(),
            stopping: BTreeMap::new(),
            tracker: TaskTracker::new(),
            last_seen,
            changed: None,
        };
        let policies = policies(&supervisor.config);
        supervisor.start_policies(policies);
        let h = handle.clone();
        let supervisor = tokio::spawn(async move {
            supervisor.supervise(&h).await;
            supervisor.drain().await;
            lease_token.cancel();
            if let Some(lease) = lease {
                let _ = tokio::time::timeout(Duration::from_secs(2), lease).await;
            }
            http_token.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), http).await;
            tracing::info!("regulator stopped");
        });
        Ok(Self { handle, supervisor })
    }

    /// A handle to reload or stop the daemon.
    #[must_use]
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Waits until the daemon has stopped (after [`Handle::shutdown`] and the drain).
    ///
    /// # Errors
    /// When the supervisor itself failed (a bug): the caller should exit non-zero.
    pub async fn wait(self) -> Result<(), tokio::task::JoinError> {
        self.supervisor.await
    }
}

/// Runs the daemon until `shutdown` resolves, then drains and returns.
///
/// # Errors
/// As [`Daemon::start`].
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let daemon = Daemon::start(config, options).await?;
    let handle = daemon.handle();
    let wait = daemon.wait();
    tokio::pin!(wait);
    tokio::select! {
        r = &mut wait => return r.map_err(StartError::Stopped),
        () = shutdown => handle.shutdown(),
    }
    wait.await.map_err(StartError::Stopped)
}

/// One policy's task: waits for its predecessor, then drives the policy until cancelled. A
/// panic (a bug) is logged, counted and followed by a fresh start after one interval, so it
/// never leaves a throttle uncontrolled or takes another policy down.
async fn supervised(
    policy: Arc<Policy>,
    previous: Option<JoinHandle<()>>,
    backends: watch::Receiver<Arc<Backends>>,
    shared: Arc<Shared>,
    token: CancellationToken,
) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    let metrics = Arc::clone(&shared.metrics);
    loop {
        let run = tokio::spawn(schedule::drive(
            PolicyState::new(Arc::clone(&policy)),
            backends.clone(),
            Arc::clone(&shared),
            token.clone(),
        ));
        match run.await {
            Ok(state) => {
                for throttle in state.throttles() {
                    metrics.forget_throttle(throttle);
                }
                metrics.forget_policy(policy.name());
                return;
            }
            Err(e) => {
                metrics.error("panic");
                tracing::error!(policy = %policy.name(), error = %e, "policy task failed; restarting it with fresh state");
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(policy.interval) => {}
                }
            }
        }
    }
}

fn policies(config: &Config) -> Vec<Arc<Policy>> {
    config
        .throttles
        .iter()
        .map(|t| {
            Arc::new(Policy {
                throttle: t.clone(),
                interval: t.interval.unwrap_or(config.interval),
            })
        })
        .collect()
}

struct Running {
    policy: Arc<Policy>,
    token: CancellationToken,
    task: JoinHandle<()>,
}

struct Supervisor {
    config: Config,
    options: RunOptions,
    backends: watch::Sender<Arc<Backends>>,
    reachable: Arc<AtomicBool>,
    shared: Arc<Shared>,
    tasks: BTreeMap<String, Running>,
    /// Removed policies whose last tick may still be in flight: one re-added under the same
    /// name starts only after it.
    stopping: BTreeMap<String, JoinHandle<()>>,
    tracker: TaskTracker,
    /// The file's content when it was last read.
    last_seen: Option<Vec<u8>>,
    /// New content seen by one poll: applied when the next poll finds it unchanged, so a
    /// file caught half-written is never applied.
    changed: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Request,
    FileChanged,
}

impl Supervisor {
    async fn supervise(&mut self, handle: &Handle) {
        let watch = self
            .options
            .watch
            .filter(|_| self.options.config_path.is_some());
        loop {
            let poll = async {
                match watch {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = handle.shutdown.cancelled() => return,
                () = handle.reload.notified() => self.reload(Trigger::Request),
                () = poll => self.reload(Trigger::FileChanged),
            }
        }
    }

    /// Starts each policy that is not running as it is; a changed (or just removed) one
    /// starts after its old task has finished, so one throttle never has two controllers.
    fn start_policies(&mut self, policies: Vec<Arc<Policy>>) {
        self.shared.names.reserve(
            policies
                .iter()
                .filter(|p| p.throttle.signal.name_label.is_none())
                .map(|p| p.name()),
        );
        for policy in policies {
            let name = policy.name().to_owned();
            let previous = match self.tasks.remove(&name) {
                Some(running) if running.policy == policy => {
                    self.tasks.insert(name, running);
                    continue;
                }
                Some(running) => {
                    running.token.cancel();
                    // A changed template may produce other names: it claims them afresh.
                    self.shared.names.release_policy(&name);
                    Some(running.task)
                }
                None => self.stopping.remove(&name),
            };
            let token = CancellationToken::new();
            let task = self.tracker.spawn(supervised(
                Arc::clone(&policy),
                previous,
                self.backends.subscribe(),
                Arc::clone(&self.shared),
                token.clone(),
            ));
            self.tasks.insert(
                name,
                Running {
                    policy,
                    token,
                    task,
                },
            );
        }
    }

    fn reload(&mut self, trigger: Trigger) {
        let Some(path) = self.options.config_path.clone() else {
            tracing::warn!("reload requested, but the daemon was started without a config file");
            return;
        };
        let text = match std::fs::read(&path) {
            Ok(text) => text,
            Err(e) => {
                if trigger == Trigger::Request || self.last_seen.is_some() {
                    tracing::error!(path = %path.display(), error = %e, "reload failed: cannot read the config; the running one stays");
                    self.shared.metrics.reload("error");
                }
                // Report a vanished file once, not every poll.
                self.last_seen = None;
                return;
            }
        };
        if trigger == Trigger::FileChanged {
            if self.last_seen.as_ref() == Some(&text) {
                self.changed = None;
                return;
            }
            if self.changed.as_ref() != Some(&text) {
                self.changed = Some(text);
                return;
            }
        }
        self.changed = None;
        self.last_seen = Some(text.clone());
        let source = path.display().to_string();
        let result = std::str::from_utf8(&text)
            .map_err(|e| format!("{source}: not UTF-8: {e}"))
            .and_then(|t| config::parse(t, &source).map_err(|e| e.to_string()))
            .and_then(|c| self.apply(c).map_err(|e| e.to_string()));
        match result {
            Ok(()) => self.shared.metrics.reload("ok"),
            Err(errors) => {
                tracing::error!(trigger = ?trigger, errors = %errors.trim_end(), "reload rejected; the running configuration stays");
                self.shared.metrics.reload("error");
            }
        }
    }

    fn apply(&mut self, new: Config) -> Result<(), BackendError> {
        let backends = Backends::new(
            &new,
            Some(&self.backends.borrow()),
            &self.reachable,
            self.shared.leadership.token(),
        )?;
        if !backends.same_lease(&self.backends.borrow()) {
            // Stop writing before the first write under the new settings: the lease held
            // under the old ones says nothing about the new Redis or key.
            self.shared.leadership.step_down();
        }
        if new.listen != self.config.listen {
            tracing::warn!(listen = %new.listen, running = %self.config.listen, "a new listen address takes effect at restart");
        }
        self.backends.send_replace(Arc::new(backends));
        let policies = policies(&new);
        let names: std::collections::BTreeSet<&str> = policies.iter().map(|p| p.name()).collect();
        let removed: Vec<String> = self
            .tasks
            .keys()
            .filter(|n| !names.contains(n.as_str()))
            .cloned()
            .collect();
        self.stopping.retain(|_, task| !task.is_finished());
        for name in &removed {
            if let Some(running) = self.tasks.remove(name) {
                running.token.cancel();
                self.stopping.insert(name.clone(), running.task);
            }
            self.shared.names.release_policy(name);
            self.shared.first_tick_done(name);
        }
        let added = policies
            .iter()
            .filter(|p| !self.tasks.contains_key(p.name()))
            .count();
        let changed = policies
            .iter()
            .filter(|p| self.tasks.get(p.name()).is_some_and(|r| r.policy != **p))
            .count();
        let kept = policies.len() - added - changed;
        self.start_policies(policies);
        tracing::info!(
            added,
            changed,
            kept,
            removed = removed.len(),
            removed_names = ?removed,
            "configuration reloaded"
        );
        self.config = new;
        Ok(())
    }

    async fn drain(&mut self) {
        for running in self.tasks.values() {
            running.token.cancel();
        }
        self.tracker.close();
        let deadline = self.options.drain;
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?deadline,
                "ticks still in flight at the drain deadline; stopping anyway"
            );
        }
    }
}
