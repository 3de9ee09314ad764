//! The controller daemon and its command-line tools.
//!
//! - `status`: `regulator status`, what Redis holds for each throttle.
//!
//! The control loop (YAML policies, Prometheus signals, control laws, the knob writer) grows
//! here on top of the client library.

pub mod status;
