//! The controller daemon and its command-line tools.
//!
//! The public surface is what the `regulator` binary, the simulator and the tests need:
//! - [`run`](mod@run) ([`Daemon`], [`RunOptions`]): the daemon: tasks, reload, drain.
//!   [`signals`]: SIGHUP, SIGTERM, SIGINT. [`notify`]: readiness, reloads and the drain
//!   reported to systemd (`Type=notify`).
//! - [`config`]: the YAML configuration, parsed strictly and validated with locations;
//!   [`Policy`]: a throttle policy as it runs.
//! - [`control`]: the control laws and the limits common to them (pure).
//! - [`source`]: signals from Prometheus, and what makes an answer usable.
//! - [`store`]: the knob store: changed fields only, TTL, history, writes fenced by the
//!   leader lease.
//! - [`leader_lease`], [`leader`]: the leader lease that elects the one replica that writes,
//!   and the deadline past which a replica stops writing.
//! - [`metrics`]: what `/metrics` exports.
//! - [`status`]: `regulator status`, what Redis holds for each throttle; [`admin`]: where the
//!   admin commands find Redis.
//!
//! Inside the crate: one policy's tick (`reconcile`), which policy governs each throttle name
//! (`names`), when a policy ticks (`schedule`), the connections of one configuration and the
//! secrets they read (`backend`, `secret`), and the HTTP server (`http`).

pub mod admin;
pub(crate) mod backend;
pub mod config;
pub mod control;
#[cfg(test)]
mod fakes;
pub(crate) mod http;
pub mod leader;
pub mod leader_lease;
pub mod metrics;
pub(crate) mod names;
pub mod notify;
pub(crate) mod reconcile;
pub mod run;
pub(crate) mod schedule;
pub(crate) mod secret;
pub mod signals;
pub mod source;
pub mod status;
pub mod store;

pub use reconcile::Policy;
pub use run::{Daemon, Handle, RunOptions, StartError, run};
