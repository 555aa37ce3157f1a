//! Signals, forwarded to the main loop: SIGTERM / SIGINT → orderly shutdown;
//! SIGHUP → reload inputs and reopen the audit log.

use std::sync::mpsc::{self, Receiver};
use std::thread;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

pub enum Signal {
    /// SIGTERM or SIGINT, by name.
    Shutdown(&'static str),
    Hangup,
}

/// Installs the handlers (before we listen, so a signal during startup is not
/// lost) and forwards signals from a small thread, so the main loop can wait
/// for a signal or a timeout.
pub fn listen() -> Result<Receiver<Signal>, String> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            for sig in signals.forever() {
                let signal = match sig {
                    SIGHUP => Signal::Hangup,
                    SIGTERM => Signal::Shutdown("SIGTERM"),
                    _ => Signal::Shutdown("SIGINT"),
                };
                if tx.send(signal).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    Ok(rx)
}
