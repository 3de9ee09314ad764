//! What each fuzz target checks, shared with `tests/fuzz_corpus.rs`, which replays the seeds
//! and every input a fuzzer ever found against the same checks on the stable toolchain.

#[path = "checks.rs"]
mod checks;

pub use checks::*;
