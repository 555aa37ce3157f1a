//! SIGTERM / SIGINT → orderly shutdown.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals as Iter;

pub struct Signals(Iter);

impl Signals {
    /// Installed before we listen, so a SIGTERM during startup is not lost.
    pub fn install() -> Result<Signals, String> {
        Iter::new([SIGTERM, SIGINT])
            .map(Signals)
            .map_err(|e| format!("cannot install signal handlers: {e}"))
    }

    /// Blocks until a shutdown signal arrives; returns its name.
    pub fn wait(&mut self) -> &'static str {
        loop {
            if let Some(sig) = self.0.forever().next() {
                return if sig == SIGTERM { "SIGTERM" } else { "SIGINT" };
            }
        }
    }
}
