//! Signals for the main loop: SIGTERM / SIGINT → orderly shutdown; SIGHUP →
//! reload inputs and reopen the audit log. No thread of their own: each
//! handler sets its flag and writes a byte to a socket the main loop waits on
//! with a timeout (signal-hook's flag and self-pipe registrations, both
//! async-signal-safe).

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

pub enum Signal {
    /// SIGTERM or SIGINT, by name.
    Shutdown(&'static str),
    Hangup,
}

pub struct Signals {
    wake: UnixStream,
    /// (flag, signal) in the order they are reported: a shutdown wins.
    flags: [(Arc<AtomicBool>, Signal); 3],
}

/// Installs the handlers (before we listen, so a signal during startup is not
/// lost).
pub fn listen() -> Result<Signals, String> {
    let err = |e: std::io::Error| format!("cannot install signal handlers: {e}");
    let (wake, notify) = UnixStream::pair().map_err(err)?;
    let flags = [
        (
            Arc::new(AtomicBool::new(false)),
            Signal::Shutdown("SIGTERM"),
        ),
        (Arc::new(AtomicBool::new(false)), Signal::Shutdown("SIGINT")),
        (Arc::new(AtomicBool::new(false)), Signal::Hangup),
    ];
    for ((flag, _), sig) in flags.iter().zip([SIGTERM, SIGINT, SIGHUP]) {
        // Handlers run in registration order: the flag is set before the
        // byte that wakes the loop is written.
        signal_hook::flag::register(sig, Arc::clone(flag)).map_err(err)?;
        signal_hook::low_level::pipe::register(sig, notify.try_clone().map_err(err)?)
            .map_err(err)?;
    }
    Ok(Signals { wake, flags })
}

impl Signals {
    /// The next signal, or `Timeout` when none arrived within `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Signal, RecvTimeoutError> {
        let mut buf = [0u8; 64];
        loop {
            if let Some(signal) = self.take() {
                return Ok(signal);
            }
            self.wake
                .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
                .map_err(|_| RecvTimeoutError::Disconnected)?;
            match (&self.wake).read(&mut buf) {
                Ok(0) => return Err(RecvTimeoutError::Disconnected),
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return self.take().ok_or(RecvTimeoutError::Timeout);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Err(RecvTimeoutError::Disconnected),
            }
        }
    }

    fn take(&self) -> Option<Signal> {
        self.flags
            .iter()
            .find(|(flag, _)| flag.swap(false, Ordering::SeqCst))
            .map(|(_, signal)| match signal {
                Signal::Shutdown(name) => Signal::Shutdown(name),
                Signal::Hangup => Signal::Hangup,
            })
    }
}
