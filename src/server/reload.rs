//! Reloading inputs without a restart. On SIGHUP, and whenever the content of
//! an input file changes (checked every `--reload-interval`; content, not
//! mtime, so Kubernetes secret volumes swapping their `..data` symlink are
//! seen), everything is loaded and checked as at startup. Valid: swapped in
//! whole; calls in flight keep the snapshot they started with. Invalid: the
//! previous material keeps serving and one error line says why.

use std::path::PathBuf;
use std::sync::Arc;

use log::{error, info, warn};
use openssl::sha::Sha256;

use super::config::ServeConfig;
use crate::signer::metrics::Metrics;
use crate::signer::snapshot::{Current, Snapshot};

pub struct Reloader<'a> {
    cfg: &'a ServeConfig,
    current: Arc<Current>,
    metrics: Arc<Metrics>,
    seen: [u8; 32],
    /// Inputs that are systemd credentials: copies made at start, which a
    /// reload cannot refresh.
    credentials: Vec<PathBuf>,
}

impl<'a> Reloader<'a> {
    pub fn new(cfg: &'a ServeConfig, current: Arc<Current>, metrics: Arc<Metrics>) -> Reloader<'a> {
        let credentials = match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) if !dir.is_empty() => cfg
                .sources
                .files()
                .into_iter()
                .filter(|p| p.starts_with(&dir))
                .collect(),
            _ => Vec::new(),
        };
        Reloader {
            seen: inputs_digest(cfg),
            cfg,
            current,
            metrics,
            credentials,
        }
    }

    /// Whether any input differs from what was last loaded (or tried).
    pub fn changed(&self) -> bool {
        inputs_digest(self.cfg) != self.seen
    }

    /// Loads and checks everything; swaps it in only if it is all good. The
    /// log says whether the files held anything new: a reload that could not
    /// see new material must not claim it did.
    pub fn reload(&mut self, why: &str) -> bool {
        let digest = inputs_digest(self.cfg);
        let changed = digest != self.seen;
        self.seen = digest;
        match Snapshot::load(&self.cfg.sources) {
            Ok(snapshot) => {
                let what = if changed {
                    ""
                } else {
                    ", no input file changed"
                };
                info!(
                    "reloaded ({why}){what}: CA \"{}\" notAfter={}, {} bundle cert(s), {} token(s)",
                    snapshot.ca.subject(),
                    snapshot.ca.cert().not_after(),
                    snapshot.ca.bundle().len(),
                    snapshot.tokens.len()
                );
                if !changed && !self.credentials.is_empty() {
                    warn!(
                        "{} are systemd credentials, copied only when the service starts: new \
                         material in their source files needs `systemctl restart`",
                        self.credentials
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                self.metrics.ca_not_after.set(snapshot.ca.not_after_unix());
                self.current.replace(snapshot);
                self.metrics.reloads.with_label_values(&["success"]).inc();
                true
            }
            Err(e) => {
                error!("reload ({why}) refused, still serving the previous material: {e}");
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                false
            }
        }
    }
}

/// One digest over every input's path and content (or read error), following
/// symlinks as any reader would.
fn inputs_digest(cfg: &ServeConfig) -> [u8; 32] {
    let mut h = Sha256::new();
    for path in cfg.sources.files() {
        h.update(path.as_os_str().as_encoded_bytes());
        h.update(&[0]);
        match std::fs::read(&path) {
            Ok(content) => {
                h.update(&(content.len() as u64).to_le_bytes());
                h.update(&content);
            }
            Err(e) => h.update(e.to_string().as_bytes()),
        }
        h.update(&[0]);
    }
    h.finish()
}
