//! The material every call reads (CA, tokens, issuing rules), loaded from the
//! configured files as one immutable snapshot. Calls hold the snapshot they
//! started with; replacing it (reload) never disturbs them.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::auth::TokenSet;
use crate::config::{PolicyConfig, ServeConfig, TokenSource};
use crate::pki::ca::{CaError, MachineCa};
use crate::pki::keys::KeyType;
use crate::pki::serving::{self, ServingCert};
use crate::policy::{KeyClass, Policy};

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
    pub fn load(cfg: &ServeConfig) -> Result<Snapshot, String> {
        let cert = read(&cfg.ca_cert, "CA certificate", "--ca-cert / CA_CERT_PATH")?;
        let key = read(&cfg.ca_key, "CA key", "--ca-key / CA_KEY_PATH")?;
        let accepted = cfg
            .accepted_cas
            .iter()
            .map(|p| read(p, "accepted CA", "--accepted-ca / ACCEPTED_CA_PATHS"))
            .collect::<Result<Vec<_>, _>>()?;
        let ca = MachineCa::new(&cert, &key, &accepted, crate::unix_now()).map_err(|e| {
            let (what, path) = match &e {
                CaError::Cert(_) => ("CA certificate", &cfg.ca_cert),
                CaError::Key(_) | CaError::Pair(_) => ("CA key", &cfg.ca_key),
                CaError::Accepted(i, _) => ("accepted CA", &cfg.accepted_cas[*i]),
            };
            format!("{what} {}: {e}", path.display())
        })?;
        let tokens = match &cfg.token {
            TokenSource::Value(value, setting) => {
                TokenSet::from_env_text(value).map_err(|e| format!("{setting} {e}"))?
            }
            TokenSource::File(path) => {
                let bytes = read(path, "token file", "--token-file / TALOS_TOKEN_FILE")?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| format!("token file {} is not UTF-8 text", path.display()))?;
                TokenSet::from_file_text(&text)
                    .map_err(|e| format!("token file {} {e}", path.display()))?
            }
        };
        if crate::fips::enabled() && ca.key_type() == KeyType::Ed25519 && !cfg.fips_allow_ed25519 {
            return Err(format!(
                "CA key {}: the machine CA is Ed25519, refused in FIPS mode: {}",
                cfg.ca_key.display(),
                crate::fips::ED25519_REFUSED
            ));
        }
        let policy = policy(&cfg.policy, &ca, cfg.fips_allow_ed25519)?;
        let external_tls = match &cfg.external_tls {
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
            cert_validity: cfg.cert_validity,
            external_tls,
        })
    }
}

/// Workers make their key the type of their CA, so the CA's own type is always
/// allowed unless the operator lists key types explicitly. FIPS mode takes
/// Ed25519 out (and refuses a list that names it) unless allowed.
fn policy(cfg: &PolicyConfig, ca: &MachineCa, fips_allow_ed25519: bool) -> Result<Policy, String> {
    let no_ed25519 = crate::fips::enabled() && !fips_allow_ed25519;
    if no_ed25519
        && cfg
            .key_types
            .as_ref()
            .is_some_and(|t| t.contains(&KeyClass::Ed25519))
    {
        return Err(format!(
            "ALLOWED_KEY_TYPES lists ed25519, refused in FIPS mode: {}",
            crate::fips::ED25519_REFUSED
        ));
    }
    let mut key_types = cfg.key_types.clone().unwrap_or_else(|| {
        let mut types = KeyClass::DEFAULT.to_vec();
        let own = KeyClass::of(ca.key_type());
        if !types.contains(&own) {
            types.push(own);
        }
        types
    });
    if no_ed25519 {
        key_types.retain(|k| *k != KeyClass::Ed25519);
    }
    Ok(Policy {
        allowed_ip_sans: cfg.allowed_ip_sans.clone(),
        allowed_dns_sans: cfg.allowed_dns_sans.clone(),
        peer_ip_must_match: cfg.peer_ip_must_match,
        max_sans: cfg.max_sans,
        max_csr_bytes: cfg.max_csr_bytes,
        key_types,
    })
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
