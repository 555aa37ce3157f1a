//! The server's own TLS certificate: a fresh P-256 key signed by the machine CA,
//! so a worker that trusts the machine CA can verify us. P-256 rather than the
//! CA's type because gRPC core clients fail handshakes with Ed25519 server keys.

use std::time::Duration;

use openssl::nid::Nid;
use openssl::x509::X509Name;

use super::ca::MachineCa;
use super::issue::{sign_server_cert, IssueError};
use super::keys::KeyType;
use super::San;

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
) -> Result<ServingCert, IssueError> {
    let key = KeyType::EcP256.generate()?;
    let mut subject = X509Name::builder()?;
    subject.append_entry_by_nid(Nid::COMMONNAME, "talos-csr-signer")?;
    let subject = subject.build();
    let (cert, serial) = sign_server_cert(ca, &subject, &key, sans, lifetime, now_unix)?;
    let not_after_unix = super::ca::unix_time(cert.not_after());
    Ok(ServingCert {
        cert_pem: cert.to_pem()?,
        key_pem: key.private_key_to_pem_pkcs8()?,
        serial_hex: serial,
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
