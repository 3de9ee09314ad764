//! The controller daemon and its command-line tools.
//!
//! - [`config`]: the YAML configuration, parsed strictly and validated with locations.
//! - [`control`]: the control laws and the limits common to them (pure).
//! - [`source`]: signals from Prometheus, and what makes an answer usable.
//! - [`store`]: the knob store: changed fields only, TTL, history, writes fenced by the
//!   leader lease.
//! - [`reconcile`]: one policy's tick: signal, stored knobs, controllers, writes, reasons.
//! - [`names`]: which policy governs each throttle name; templates never collide.
//! - [`schedule`]: when a policy ticks: jittered intervals, capped backoff after failures.
//! - [`leader_lease`], [`leader`]: the leader lease that elects the one replica that writes,
//!   and the deadline past which a replica stops writing.
//! - [`backend`]: the Redis and Prometheus connections of one configuration; [`secret`]: the
//!   password, token and certificate files they read.
//! - [`metrics`], [`http`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`run`](mod@run): the daemon: tasks, reload, drain. [`signals`]: SIGHUP, SIGTERM, SIGINT.
//!   [`notify`]: readiness, reloads and the drain reported to systemd (`Type=notify`).
//! - [`status`]: `regulator status`, what Redis holds for each throttle; [`admin`]: where the
//!   admin commands find Redis.

pub mod admin;
pub mod backend;
pub mod config;
pub mod control;
#[cfg(test)]
mod fakes;
pub mod http;
pub mod leader;
pub mod leader_lease;
pub mod metrics;
pub mod names;
pub mod notify;
pub mod reconcile;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod signals;
pub mod source;
pub mod status;
pub mod store;

pub use run::{Daemon, Handle, RunOptions, StartError, run};
