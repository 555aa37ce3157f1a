//! Log lines as their reader needs them. On a terminal or in a container log:
//! env_logger's usual `[time LEVEL target] message`. Under journald (systemd
//! connects stderr to it and says so in JOURNAL_STREAM): `<N>target: message`,
//! N the syslog priority (sd-daemon's prefixes, which journald strips and
//! records), and no timestamp, since journald keeps its own. Without the
//! prefixes every line would be priority 6 and `journalctl -p warning` would
//! show no error.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

use log::Level;

/// Whether stderr is the journal stream systemd named (`dev:inode` of the
/// stream socket). A child that inherited the variable but writes elsewhere
/// (a pipe, a file) keeps the usual format.
pub fn under_journald() -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| {
        let Some(stream) = std::env::var("JOURNAL_STREAM").ok() else {
            return false;
        };
        // A duplicate of fd 2, closed again when dropped: no unsafe needed.
        let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
            return false;
        };
        File::from(fd)
            .metadata()
            .is_ok_and(|m| stream == format!("{}:{}", m.dev(), m.ino()))
    })
}

/// syslog(3) priority of a log level.
pub fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The process's logger: `RUST_LOG` filters (default `info`).
pub fn init() {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if under_journald() {
        builder.format(|buf, record| {
            writeln!(
                buf,
                "<{}>{}: {}",
                priority(record.level()),
                record.target(),
                record.args()
            )
        });
    }
    builder.init();
}

/// The prefix for a line written to stderr without the logger (the final
/// error line): `<3>` under journald, nothing elsewhere.
pub fn error_prefix() -> &'static str {
    if under_journald() {
        "<3>"
    } else {
        ""
    }
}
