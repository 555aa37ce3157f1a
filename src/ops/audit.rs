//! The audit trail: one JSON line per decision (issued or refused), to stderr
//! or an append-only file that SIGHUP reopens (for logrotate). Fields are
//! documented in the README; tokens appear only as their position.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use crate::json::Json;
use crate::pki::San;

/// Where audit records go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Off,
    Stderr,
    File(PathBuf),
}

pub struct Audit {
    destination: Destination,
    file: Mutex<Option<File>>,
}

/// One decision. Borrowed fields: building a record allocates only the line.
pub struct Record<'a> {
    pub time_unix: i64,
    pub peer: &'a str,
    pub outcome: &'static str,
    pub code: &'static str,
    pub reason: Option<&'a str>,
    pub cn: Option<&'a str>,
    pub sans: &'a [San],
    pub key_type: Option<String>,
    pub serial: Option<&'a str>,
    pub not_after_unix: Option<i64>,
    pub token: Option<usize>,
}

impl Audit {
    pub fn open(destination: Destination) -> Result<Audit, String> {
        let file = match &destination {
            Destination::File(path) => Some(open_append(path)?),
            _ => None,
        };
        Ok(Audit {
            destination,
            file: Mutex::new(file),
        })
    }

    pub fn enabled(&self) -> bool {
        self.destination != Destination::Off
    }

    /// Writes one line and flushes it, so a crash loses no complete record.
    pub fn record(&self, r: &Record<'_>) {
        let line = r.to_json();
        let result = match &self.destination {
            Destination::Off => Ok(()),
            Destination::Stderr => io::stderr().lock().write_all(line.as_bytes()),
            Destination::File(_) => {
                let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
                match file.as_mut() {
                    Some(f) => f.write_all(line.as_bytes()).and_then(|()| f.flush()),
                    None => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            log::error!("cannot write the audit record: {e}");
        }
    }

    /// Reopens the file (after logrotate moved it); keeps the old one on error.
    pub fn reopen(&self) {
        let Destination::File(path) = &self.destination else {
            return;
        };
        match open_append(path) {
            Ok(f) => {
                *self.file.lock().unwrap_or_else(PoisonError::into_inner) = Some(f);
                log::info!("audit log {} reopened", path.display());
            }
            Err(e) => log::error!("{e}; still writing to the previous file"),
        }
    }
}

fn open_append(path: &PathBuf) -> Result<File, String> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| format!("cannot open audit log {}: {e}", path.display()))
}

impl Record<'_> {
    pub fn to_json(&self) -> String {
        let mut o = Json::new();
        o.str("time", &rfc3339(self.time_unix));
        o.str("peer", self.peer);
        o.str("outcome", self.outcome);
        o.str("code", self.code);
        o.opt_str("reason", self.reason);
        o.opt_str("cn", self.cn);
        let ips: Vec<String> = self
            .sans
            .iter()
            .filter(|s| matches!(s, San::Ip(_)))
            .map(ToString::to_string)
            .collect();
        let dns: Vec<String> = self
            .sans
            .iter()
            .filter(|s| matches!(s, San::Dns(_)))
            .map(ToString::to_string)
            .collect();
        o.list("ip_sans", &ips);
        o.list("dns_sans", &dns);
        o.opt_str("key_type", self.key_type.as_deref());
        o.opt_str("serial", self.serial);
        o.opt_str("not_after", self.not_after_unix.map(rfc3339).as_deref());
        o.opt_str("token", self.token.map(|p| format!("token#{p}")).as_deref());
        o.finish()
    }
}

/// `2026-11-28T05:03:41Z` from Unix seconds (UTC; days-from-civil inverse).
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_842_221), "2026-11-28T05:03:41Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn json_escapes_hostile_strings() {
        let r = Record {
            time_unix: 0,
            peer: "127.0.0.1:1",
            outcome: "refused",
            code: "INVALID_ARGUMENT",
            reason: Some("a \"quoted\"\\ line\nwith\u{1} control"),
            cn: None,
            sans: &[San::Ip("10.0.0.1".parse().unwrap())],
            key_type: None,
            serial: None,
            not_after_unix: None,
            token: Some(2),
        };
        let line = r.to_json();
        assert!(line.ends_with("}\n") && line.matches('\n').count() == 1);
        assert!(
            line.contains(r#""reason":"a \"quoted\"\\ line\nwith\u0001 control""#),
            "{line}"
        );
        assert!(line.contains(r#""token":"token#2""#));
        assert!(
            line.contains(r#""ip_sans":["10.0.0.1"],"dns_sans":[]"#),
            "{line}"
        );
        assert!(line.contains(r#""cn":null"#));
    }
}
