//! Signals: SIGTERM / SIGINT → orderly shutdown; SIGHUP → reopen files.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals as Iter;

pub struct Signals(Iter);

pub enum Signal {
    /// SIGTERM or SIGINT, by name.
    Shutdown(&'static str),
    Hangup,
}

impl Signals {
    /// Installed before we listen, so a signal during startup is not lost.
    pub fn install() -> Result<Signals, String> {
        Iter::new([SIGTERM, SIGINT, SIGHUP])
            .map(Signals)
            .map_err(|e| format!("cannot install signal handlers: {e}"))
    }

    /// Blocks until a signal arrives.
    pub fn wait(&mut self) -> Signal {
        loop {
            match self.0.forever().next() {
                Some(SIGHUP) => return Signal::Hangup,
                Some(SIGTERM) => return Signal::Shutdown("SIGTERM"),
                Some(_) => return Signal::Shutdown("SIGINT"),
                None => continue,
            }
        }
    }
}
