//! `/metrics` (OpenMetrics), `/healthz` (the process serves) and `/readyz` (the
//! configuration is loaded and every policy of the first configuration has made a first
//! tick, whatever its outcome).
//!
//! Readiness does not depend on Redis or Prometheus. The daemon serves no traffic: readiness
//! only gates rollouts and the pod disruption budget, and every replica sees the same Redis, so
//! a Redis outage would make them all unready together and block the node drains and the
//! rollout of a fix while gaining nothing. An outage shows in `regulator_redis_up`, the
//! error counters and their alerts instead, and `/readyz` names it in its body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::schedule::Shared;

/// What the endpoints read.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The daemon's metrics.
    pub metrics: Arc<Metrics>,
    /// First ticks.
    pub shared: Arc<Shared>,
    /// Whether Redis answered last time it was asked.
    pub redis: Arc<AtomicBool>,
}

impl Endpoints {
    /// The metrics as `/metrics` serves them, the leader gauge read at this moment (the
    /// lease deadline may have passed since the lease task last looked).
    #[must_use]
    pub fn render(&self) -> String {
        self.metrics.leader(self.shared.leadership.is_leader());
        self.metrics.redis_up(self.redis.load(Ordering::Relaxed));
        self.metrics.encode()
    }

    /// What keeps the daemon from being ready; empty when it is.
    #[must_use]
    pub fn not_ready(&self) -> Vec<String> {
        let mut why = Vec::new();
        let pending = self.shared.pending_first_ticks();
        if pending > 0 {
            why.push(format!("{pending} policies have not finished a first tick"));
        }
        why
    }
}

/// Serves the endpoints on `listener` until `token` is cancelled.
///
/// # Errors
/// The server's I/O errors.
pub async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    token: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(endpoints);
    axum::serve(listener, app)
        .with_graceful_shutdown(token.cancelled_owned())
        .await
}

async fn metrics(State(e): State<Endpoints>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        e.render(),
    )
}

async fn readyz(State(e): State<Endpoints>) -> impl IntoResponse {
    let why = e.not_ready();
    if why.is_empty() {
        let note = if e.redis.load(Ordering::Relaxed) {
            ""
        } else {
            " (redis is not reachable: knobs are not being written)"
        };
        (StatusCode::OK, format!("ready{note}\n"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join("; ")),
        )
    }
}
