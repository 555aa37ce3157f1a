//! talos-csr-signer: Talos trustd's certificate signing, for Talos workers that
//! join kubeadm or Kamaji control planes.
//!
//! A call travels wire → `service` → `pool` → `auth` + `pki::issue`; `config`
//! and `cli` feed it, `server` and `ops` run it.

pub mod argv;
pub mod auth;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod credentials;
pub mod dev;
pub mod fips;
pub mod import;
pub mod json;
pub mod kubeconfig;
pub mod ops;
pub mod pki;
pub mod policy;
pub mod pool;
pub mod proto;
pub mod server;
pub mod service;
pub mod sink;
pub mod snapshot;
pub mod throttle;
pub mod worker_config;

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

/// Writes a new file created with `mode`; an old file is removed first so its
/// (possibly looser) mode is not kept.
pub fn write_new_file(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
