//! The controller daemon: YAML policies, Prometheus signals, control laws, the knob writer.
//!
//! It is built on the client library; this module grows as the daemon does.
