//! The material every call reads (CA, tokens, issuing rules), loaded from the
//! configured files as one immutable snapshot. Calls hold the snapshot they
//! started with; replacing it (reload) never disturbs them.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use super::auth::{TokenSet, TokenSource};
use super::policy::{Policy, PolicyConfig};
use crate::pki::ca::{CaError, MachineCa};
use crate::pki::fips;
use crate::pki::keys::KeyType;
use crate::pki::serving::{self, ServingCert};

/// Where a snapshot's material comes from: the files (and settings) that
/// reload reads again.
pub struct Sources {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub accepted_cas: Vec<PathBuf>,
    pub token: TokenSource,
    /// `--tls-cert` / `--tls-key`: serve these instead of a generated cert.
    pub external_tls: Option<(PathBuf, PathBuf)>,
    pub policy: PolicyConfig,
    pub cert_validity: Duration,
    /// `--fips-allow-ed25519`: for modules that approve EdDSA.
    pub fips_allow_ed25519: bool,
}

impl Sources {
    /// Every input file, for reload's change detection.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.ca_cert.clone(), self.ca_key.clone()];
        paths.extend(self.accepted_cas.iter().cloned());
        if let TokenSource::File(p) = &self.token {
            paths.push(p.clone());
        }
        if let Some((cert, key)) = &self.external_tls {
            paths.push(cert.clone());
            paths.push(key.clone());
        }
        paths
    }
}

pub struct Snapshot {
    pub ca: MachineCa,
    pub tokens: TokenSet,
    pub policy: Policy,
    pub cert_validity: Duration,
    /// `--tls-cert`/`--tls-key`, checked; `None`: we generate our own.
    pub external_tls: Option<ServingCert>,
}

impl Snapshot {
    /// Reads and checks every input; the error is one line naming the file and
    /// what to do about it.
    pub fn load(src: &Sources) -> Result<Snapshot, String> {
        let cert = read(&src.ca_cert, "CA certificate", "--ca-cert / CA_CERT_PATH")?;
        let key = read(&src.ca_key, "CA key", "--ca-key / CA_KEY_PATH")?;
        let accepted = src
            .accepted_cas
            .iter()
            .map(|p| read(p, "accepted CA", "--accepted-ca / ACCEPTED_CA_PATHS"))
            .collect::<Result<Vec<_>, _>>()?;
        let ca = MachineCa::new(&cert, &key, &accepted, crate::unix_now()).map_err(|e| {
            let (what, path) = match &e {
                CaError::Cert(_) => ("CA certificate", &src.ca_cert),
                CaError::Key(_) | CaError::Pair(_) => ("CA key", &src.ca_key),
                CaError::Accepted(i, _) => ("accepted CA", &src.accepted_cas[*i]),
            };
            format!("{what} {}: {e}", path.display())
        })?;
        let tokens = load_tokens(&src.token)?;
        let no_ed25519 = fips::enabled() && !src.fips_allow_ed25519;
        if no_ed25519 && ca.key_type() == KeyType::Ed25519 {
            return Err(format!(
                "CA key {}: the machine CA is Ed25519, refused in FIPS mode: {}",
                src.ca_key.display(),
                fips::ED25519_REFUSED
            ));
        }
        let policy = src.policy.resolve(ca.key_type(), no_ed25519)?;
        let external_tls = match &src.external_tls {
            Some((cert, key)) => {
                let cert_pem = read(cert, "TLS certificate", "--tls-cert / TLS_CERT_PATH")?;
                let key_pem = read(key, "TLS key", "--tls-key / TLS_KEY_PATH")?;
                let checked = serving::external(&cert_pem, &key_pem, &ca, crate::unix_now())
                    .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))?;
                Some(checked)
            }
            None => None,
        };
        Ok(Snapshot {
            ca,
            tokens,
            policy,
            cert_validity: src.cert_validity,
            external_tls,
        })
    }
}

fn load_tokens(source: &TokenSource) -> Result<TokenSet, String> {
    match source {
        TokenSource::Value(value, setting) => {
            TokenSet::from_env_text(value).map_err(|e| format!("{setting} {e}"))
        }
        TokenSource::File(path) => {
            let bytes = read(path, "token file", "--token-file / TALOS_TOKEN_FILE")?;
            let text = String::from_utf8(bytes)
                .map_err(|_| format!("token file {} is not UTF-8 text", path.display()))?;
            TokenSet::from_file_text(&text)
                .map_err(|e| format!("token file {} {e}", path.display()))
        }
    }
}

fn read(path: &Path, what: &str, setting: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| {
        format!(
            "cannot read {what} {}: {e}; check the path ({setting}) and that this user may read it",
            path.display()
        )
    })
}

/// The current snapshot, swapped whole, with a generation number that moves on
/// every swap (the serving certificate follows it).
pub struct Current {
    snapshot: RwLock<Arc<Snapshot>>,
    generation: AtomicU64,
}

impl Current {
    pub fn new(snapshot: Snapshot) -> Current {
        Current {
            snapshot: RwLock::new(Arc::new(snapshot)),
            generation: AtomicU64::new(0),
        }
    }

    pub fn get(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn replace(&self, snapshot: Snapshot) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(snapshot);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}
