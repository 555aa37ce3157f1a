//! talos-csr-signer: Talos trustd's certificate signing, for Talos workers that
//! join kubeadm or Kamaji control planes.
//!
//! The folders follow a Certificate call: `cli` turns flags and environment
//! into typed configuration, `server` wires gRPC core and the process's life
//! around `signer` (service → pool → auth → policy → snapshot → report),
//! which reads CSRs and signs with `pki`. `cmd` holds the subcommands.
//! Dependencies point that way only: nothing in `signer` below its service
//! knows gRPC, nothing in `pki` knows configuration, policy or gRPC.
//!
//! Modules are public only where a binary, a test or a fuzz target needs them.

pub mod cli;
pub mod cmd;
pub mod pki;
pub mod proto;
pub mod server;
pub mod signer;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `2026-11-28T05:03:41Z` from Unix seconds (UTC; the inverse of
/// days-from-civil). Twenty lines, table-tested, rather than a date crate for
/// one format.
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

/// Writes a new file created with `mode`; an old file is removed first so its
/// (possibly looser) mode is not kept.
pub(crate) fn write_new_file(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_842_221), "2026-11-28T05:03:41Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }
}
