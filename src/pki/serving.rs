//! The server's own TLS certificate: a fresh P-256 key signed by the machine CA,
//! so a worker that trusts the machine CA can verify us. P-256 rather than the
//! CA's type because gRPC core clients fail handshakes with Ed25519 server keys.

use std::time::Duration;

use openssl::nid::Nid;

use super::ca::MachineCa;
use super::cert::{self, CertError, Profile, SubjectKey};
use super::keys::KeyType;
use super::pem;
use super::{openssl_reason, CryptoError, San};

#[derive(Clone)]
pub struct ServingCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub serial_hex: String,
    pub not_after_unix: i64,
    /// When to replace it: half way through its life.
    pub renew_at_unix: i64,
}

/// The serving certificate's SANs: what operators configured plus loopback, so
/// local probes and `request --endpoint 127.0.0.1` verify too.
pub fn serving_sans(configured: &[San]) -> Vec<San> {
    let mut sans = configured.to_vec();
    for lo in ["127.0.0.1", "::1"] {
        let lo = San::Ip(lo.parse().expect("loopback literal"));
        if !sans.contains(&lo) {
            sans.push(lo);
        }
    }
    sans
}

pub fn generate(
    ca: &MachineCa,
    sans: &[San],
    lifetime: Duration,
    now_unix: i64,
) -> Result<ServingCert, CertError> {
    let c = |step: &'static str| move |e| CertError::Crypto(CryptoError::new(step, &e));
    let key = KeyType::EcP256
        .generate()
        .map_err(c("generating the serving key"))?;
    let subject = cert::name(&[(Nid::COMMONNAME, "talos-csr-signer")])?;
    let own = SubjectKey::Own(&key);
    let signed = ca.sign(Profile::Server, &subject, own, sans, lifetime, now_unix)?;
    let not_after_unix = signed.not_after_unix;
    Ok(ServingCert {
        cert_pem: signed
            .cert
            .to_pem()
            .map_err(c("encoding the serving certificate"))?,
        key_pem: key
            .private_key_to_pem_pkcs8()
            .map_err(c("encoding the serving key"))?,
        serial_hex: signed.serial_hex,
        not_after_unix,
        renew_at_unix: now_unix + ((not_after_unix - now_unix) / 2).max(1),
    })
}

impl std::fmt::Debug for ServingCert {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("serial", &self.serial_hex)
            .field("not_after_unix", &self.not_after_unix)
            .finish_non_exhaustive()
    }
}

/// Checks an operator-supplied serving certificate (e.g. from cert-manager):
/// key and certificate belong together, it is valid now, and it chains to a CA
/// in the bundle, since workers verify it against their accepted CAs.
pub fn external(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca: &MachineCa,
    now_unix: i64,
) -> Result<ServingCert, String> {
    let mut chain =
        pem::parse_certificates(cert_pem).map_err(|e| format!("TLS certificate {e}"))?;
    let leaf = chain.remove(0);
    let key = pem::parse_private_key(key_pem).map_err(|e| format!("TLS key {e}"))?;
    let matches = leaf
        .public_key()
        .map(|k| k.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        return Err("the TLS key does not match the TLS certificate".to_string());
    }
    let (not_before_unix, not_after_unix) =
        super::ca::validity(&leaf).map_err(|e| format!("the TLS certificate {e}"))?;
    if not_after_unix <= now_unix || not_before_unix > now_unix {
        return Err(format!(
            "the TLS certificate is not valid now ({} to {})",
            leaf.not_before(),
            leaf.not_after()
        ));
    }
    super::verify_chain(&leaf, &chain, ca.bundle()).map_err(|e| {
        format!(
            "workers would reject the TLS certificate: it does not chain to the machine CA or an \
             accepted CA ({e})"
        )
    })?;
    Ok(ServingCert {
        cert_pem: cert_pem.to_vec(),
        key_pem: key
            .private_key_to_pem_pkcs8()
            .map_err(|e| openssl_reason(&e))?,
        serial_hex: leaf
            .serial_number()
            .to_bn()
            .and_then(|b| b.to_hex_str().map(|h| h.to_string()))
            .unwrap_or_default(),
        not_after_unix,
        // Replaced when the files change (reload), not by age.
        renew_at_unix: i64::MAX,
    })
}
