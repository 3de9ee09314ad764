//! The controller daemon and its command-line tools.
//!
//! - [`config`]: the YAML configuration, parsed strictly and validated with locations.
//! - [`control`]: the control laws and the limits common to them (pure).
//! - [`source`]: signals from Prometheus, and what makes an answer usable.
//! - `status`: `regulator status`, what Redis holds for each throttle.
//!
//! The control loop (YAML policies, Prometheus signals, control laws, the knob writer) grows
//! here on top of the client library.

pub mod config;
pub mod control;
pub mod source;
pub mod status;
