//! Unix signals: SIGHUP reloads the configuration; SIGTERM or SIGINT starts a graceful
//! shutdown, and a second one exits at once.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::run::Handle;

/// Exit status of a forced stop: 128 + SIGINT, as a shell reports an interrupted program.
pub const FORCED_EXIT: i32 = 130;

/// Routes signals to `handle` from a dedicated thread (signal-hook's iterator runs the
/// handlers' work outside the signal context).
///
/// # Errors
/// When the handlers cannot be registered.
pub fn install(handle: Handle) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                match signal {
                    SIGHUP => {
                        tracing::info!("SIGHUP: reloading the configuration");
                        handle.reload();
                    }
                    _ if stopping => {
                        tracing::warn!(signal, "second stop signal: exiting now");
                        std::process::exit(FORCED_EXIT);
                    }
                    _ => {
                        tracing::info!(
                            signal,
                            "stopping: finishing ticks in flight (a second signal exits at once)"
                        );
                        stopping = true;
                        handle.shutdown();
                    }
                }
            }
        })?;
    Ok(())
}
