//! The controller daemon and its command-line tools.
//!
//! - [`config`]: the YAML configuration, parsed strictly and validated with locations.
//! - [`control`]: the control laws and the limits common to them (pure).
//! - [`source`]: signals from Prometheus, and what makes an answer usable.
//! - [`store`]: the knob store: changed fields only, TTL, history, one pipeline a tick.
//! - [`lease`]: the leader lease that elects the one replica that writes.
//! - `status`: `regulator status`, what Redis holds for each throttle.
//!
//! The reconcile loop that ties these together grows here, on top of the client library.

pub mod config;
pub mod control;
pub mod lease;
pub mod source;
pub mod status;
pub mod store;
