//! `regulator run`: the daemon. A task per policy, the lease, the endpoints, and a supervisor
//! that reloads the configuration (on request, or when its file changes) and drains on
//! shutdown.
//!
//! A reload is validated whole before anything changes; a bad one is logged with its errors
//! and counted, and the running configuration stays. A good one starts new policies, stops
//! removed ones (their knobs are left to expire), restarts changed ones, and leaves unchanged
//! ones, with their controllers' state, alone.

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

mod supervisor;

use super::backend::BackendError;
use super::backend::Backends;
use super::config::Config;
use super::http::{self, Endpoints};
use super::leader;
use super::metrics::Metrics;
use super::notify::Notifier;
use super::schedule::Shared;
use supervisor::Supervisor;

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
    /// Where start, reloads and the drain are reported (systemd's `$NOTIFY_SOCKET`).
    pub notify: Notifier,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            config_path: None,
            dry_run: false,
            drain: Duration::from_secs(5),
            watch: Some(Duration::from_secs(2)),
            notify: Notifier::default(),
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
            &shared.leadership,
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
        tracing::info!(
            %addr,
            policies = config.throttles.len(),
            dry_run = options.dry_run,
            "regulator running"
        );
        let mut supervisor =
            Supervisor::new(config, options, backends_tx, Arc::clone(&reachable), shared);
        supervisor.start();
        let h = handle.clone();
        let supervisor = tokio::spawn(async move {
            supervisor.supervise(&h).await;
            supervisor.notify_stopping();
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
