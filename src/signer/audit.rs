//! The audit trail: one JSON line per decision (issued or refused), to stderr
//! or an append-only file that SIGHUP reopens (for logrotate). Fields are
//! documented in docs/operations.md; tokens appear only as their position.
//! Records are written with serde_json (its escaping, not ours).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use serde::ser::{Serialize, SerializeMap, Serializer};

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

impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let names = |ip: bool| -> Vec<String> {
            self.sans
                .iter()
                .filter(|n| matches!(n, San::Ip(_)) == ip)
                .map(ToString::to_string)
                .collect()
        };
        let mut m = s.serialize_map(Some(12))?;
        m.serialize_entry("time", &crate::rfc3339(self.time_unix))?;
        m.serialize_entry("peer", self.peer)?;
        m.serialize_entry("outcome", self.outcome)?;
        m.serialize_entry("code", self.code)?;
        m.serialize_entry("reason", &self.reason)?;
        m.serialize_entry("cn", &self.cn)?;
        m.serialize_entry("ip_sans", &names(true))?;
        m.serialize_entry("dns_sans", &names(false))?;
        m.serialize_entry("key_type", &self.key_type)?;
        m.serialize_entry("serial", &self.serial)?;
        m.serialize_entry("not_after", &self.not_after_unix.map(crate::rfc3339))?;
        m.serialize_entry("token", &self.token.map(|p| format!("token#{p}")))?;
        m.end()
    }
}

impl Record<'_> {
    /// One JSON line.
    pub fn to_json(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|e| {
            // Strings and numbers into a String cannot fail; if it ever did,
            // the trail says so rather than losing the record silently.
            serde_json::json!({ "error": e.to_string() }).to_string()
        });
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["reason"], "a \"quoted\"\\ line\nwith\u{1} control");
        assert!(line.contains(r#""token":"token#2""#));
        assert!(
            line.contains(r#""ip_sans":["10.0.0.1"],"dns_sans":[]"#),
            "{line}"
        );
        assert!(line.contains(r#""cn":null"#));
    }
}
