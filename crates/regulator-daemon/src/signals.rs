//! Unix signals: SIGHUP reloads the configuration; SIGTERM or SIGINT starts a graceful
//! shutdown, and a second one exits at once.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::run::Handle;

/// Exit status of a forced stop: 128 + SIGINT, as a shell reports an interrupted program.
pub const FORCED_EXIT: i32 = 130;

/// Signals caught from the moment of [`register`], held until [`Registered::route`] has a
/// daemon to give them to: a SIGHUP during start-up must not kill the process (its default
/// action), and a SIGTERM then must still stop it.
pub struct Registered(Signals);

/// Catches SIGHUP, SIGTERM and SIGINT from now on.
///
/// # Errors
/// When the handlers cannot be registered.
pub fn register() -> std::io::Result<Registered> {
    Ok(Registered(Signals::new([SIGHUP, SIGTERM, SIGINT])?))
}

impl Registered {
    /// Routes the signals (those already caught first) to `handle` from a dedicated thread
    /// (signal-hook's iterator does the work outside the signal context).
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn route(self, handle: Handle) -> std::io::Result<()> {
        route(self.0, handle)
    }
}

fn route(mut signals: Signals, handle: Handle) -> std::io::Result<()> {
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
