//! The machine CA: the issuing certificate and key, parsed and checked once, plus
//! the accepted-CA bundle every response carries.

use std::fmt;

use std::time::Duration;

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509KeyUsage, X509NameRef, X509};

use super::cert::{self, CertError, Extensions, Issuer, Profile, Signed, SubjectKey};
use super::csr::Csr;
use super::keys::{KeyType, MAX_RSA_BITS, MIN_RSA_BITS};
use super::{ffi, openssl_reason, pem, San};

/// Why CA material was refused; the loader adds which file it came from.
#[derive(Debug)]
pub enum CaError {
    /// The issuing certificate file.
    Cert(String),
    /// The issuing key file.
    Key(String),
    /// The key does not belong to the certificate.
    Pair(String),
    /// An accepted-CA file (index into the list the caller passed).
    Accepted(usize, String),
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::Cert(m) | CaError::Key(m) | CaError::Pair(m) | CaError::Accepted(_, m) => {
                f.write_str(m)
            }
        }
    }
}

pub struct MachineCa {
    cert: X509,
    key: PKey<Private>,
    key_type: KeyType,
    /// Accepted CAs then the issuing CA, each PEM ending in a newline.
    bundle_pem: Vec<u8>,
    bundle: Vec<X509>,
    not_before_unix: i64,
    not_after_unix: i64,
    server_extensions: Extensions,
}

impl MachineCa {
    /// Checks everything that would make signing fail or produce certificates
    /// workers reject, so that a bad CA stops startup instead of every request.
    pub fn new(
        cert_pem: &[u8],
        key_pem: &[u8],
        accepted_pems: &[Vec<u8>],
        now_unix: i64,
    ) -> Result<MachineCa, CaError> {
        let cert = single_certificate(cert_pem).map_err(CaError::Cert)?;
        check_is_ca(&cert).map_err(CaError::Cert)?;
        let (not_before_unix, not_after_unix) = validity(&cert).map_err(CaError::Cert)?;
        if not_after_unix <= now_unix {
            return Err(CaError::Cert(format!(
                "the CA expired on {}; rotate the machine CA (talosctl gen secrets) or point \
                 to the current one",
                cert.not_after()
            )));
        }
        if not_before_unix > now_unix {
            return Err(CaError::Cert(format!(
                "the CA is not valid until {}; check this machine's clock",
                cert.not_before()
            )));
        }

        let key = pem::parse_private_key(key_pem).map_err(CaError::Key)?;
        let key_type = supported_ca_key(&key).map_err(CaError::Key)?;
        let cert_key = cert
            .public_key()
            .map_err(|e| CaError::Cert(format!("unreadable public key: {}", openssl_reason(&e))))?;
        if !cert_key.public_eq(&key) {
            return Err(CaError::Pair(
                "the private key does not match the CA certificate's public key; use the key \
                 from the same Talos secrets bundle"
                    .to_string(),
            ));
        }

        let (bundle_pem, bundle) = build_bundle(&cert, accepted_pems)?;
        let server_extensions = Extensions::new(Profile::Server, Some(&cert)).map_err(|e| {
            CaError::Cert(format!(
                "cannot build the authorityKeyIdentifier that names this CA in issued certificates ({e}); \
                 give the CA certificate a subjectKeyIdentifier"
            ))
        })?;
        Ok(MachineCa {
            cert,
            key,
            key_type,
            bundle_pem,
            bundle,
            not_before_unix,
            not_after_unix,
            server_extensions,
        })
    }

    /// This CA as the signer of a certificate.
    pub fn issuer(&self) -> Issuer<'_> {
        Issuer {
            name: self.cert.subject_name(),
            key: &self.key,
            key_type: self.key_type,
            not_before_unix: self.not_before_unix,
            not_after_unix: self.not_after_unix,
        }
    }

    /// A worker's apid certificate for a checked CSR.
    pub fn sign_csr(&self, csr: &Csr, lifetime: Duration, now: i64) -> Result<Signed, CertError> {
        let key = SubjectKey::Csr(&csr.key);
        self.sign(Profile::Server, &csr.subject, key, &csr.sans, lifetime, now)
    }

    /// A certificate of `profile` signed by this CA, through the one builder.
    /// The server profile's extensions are built once per CA (every call
    /// uses them); the client profile's, rarely used, when asked.
    pub fn sign(
        &self,
        profile: Profile,
        subject: &X509NameRef,
        key: SubjectKey<'_>,
        sans: &[San],
        lifetime: Duration,
        now: i64,
    ) -> Result<Signed, CertError> {
        let built;
        let extensions = match profile {
            Profile::Server => &self.server_extensions,
            other => {
                built = Extensions::new(other, Some(&self.cert))?;
                &built
            }
        };
        let spec = cert::Spec {
            subject,
            key,
            sans,
            lifetime,
            now_unix: now,
            extensions,
        };
        cert::build(&self.issuer(), &spec)
    }

    pub fn cert(&self) -> &X509 {
        &self.cert
    }

    pub fn key(&self) -> &PKey<Private> {
        &self.key
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The `ca` field of every response.
    pub fn bundle_pem(&self) -> &[u8] {
        &self.bundle_pem
    }

    /// The bundle's certificates, the issuing CA last.
    pub fn bundle(&self) -> &[X509] {
        &self.bundle
    }

    pub fn not_before_unix(&self) -> i64 {
        self.not_before_unix
    }

    pub fn not_after_unix(&self) -> i64 {
        self.not_after_unix
    }

    /// The subject in OpenSSL's one-line form, for logs.
    pub fn subject(&self) -> String {
        super::name_to_string(self.cert.subject_name())
    }
}

fn single_certificate(pem: &[u8]) -> Result<X509, String> {
    let mut certs = pem::parse_certificates(pem)?;
    if certs.len() > 1 {
        return Err(format!(
            "holds {} certificates; keep only the issuing machine CA here and pass the others \
             with --accepted-ca",
            certs.len()
        ));
    }
    Ok(certs.remove(0))
}

fn check_is_ca(cert: &X509) -> Result<(), String> {
    if !ffi::is_ca(cert) {
        return Err(
            "is not a CA certificate (no basicConstraints CA:TRUE); use the Talos \
                    machine CA (machine.ca.crt / certs.os.crt)"
                .to_string(),
        );
    }
    // A CA without a keyUsage extension may sign (RFC 5280, and OpenSSL's own
    // `req -x509` CAs have none); one that lists usages must list certSign.
    if let Some(usage) = cert.key_usage() {
        if !usage.contains(X509KeyUsage::KEY_CERT_SIGN) {
            return Err(
                "is a CA certificate whose keyUsage lacks keyCertSign, so it may not \
                        sign certificates; use the Talos machine CA"
                    .to_string(),
            );
        }
    }
    Ok(())
}

fn supported_ca_key(key: &PKey<Private>) -> Result<KeyType, String> {
    match KeyType::of(key) {
        Some(KeyType::Rsa(bits)) if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) => Err(format!(
            "holds an RSA-{bits} key; machine CA keys must be RSA-{MIN_RSA_BITS} to RSA-{MAX_RSA_BITS}"
        )),
        Some(t) => Ok(t),
        None => Err(format!(
            "holds an unsupported {} key; use Ed25519, ECDSA P-256/P-384/P-521 or RSA",
            KeyType::describe(key)
        )),
    }
}

/// Accepted CAs first, the issuing CA last: workers keep this as the list their
/// apid verifies talosctl client certificates against, so it must be complete.
fn build_bundle(
    issuing: &X509,
    accepted_pems: &[Vec<u8>],
) -> Result<(Vec<u8>, Vec<X509>), CaError> {
    let mut bundle: Vec<X509> = Vec::new();
    for (i, file) in accepted_pems.iter().enumerate() {
        for cert in pem::parse_certificates(file).map_err(|m| CaError::Accepted(i, m))? {
            if !ffi::is_ca(&cert) {
                return Err(CaError::Accepted(
                    i,
                    format!(
                        "holds {}, which is not a CA certificate (no basicConstraints CA:TRUE)",
                        super::name_to_string(cert.subject_name())
                    ),
                ));
            }
            // The issuing CA goes last exactly once, and duplicates add nothing.
            if !same_cert(&cert, issuing) && !bundle.iter().any(|b| same_cert(b, &cert)) {
                bundle.push(cert);
            }
        }
    }
    bundle.push(issuing.clone());
    let mut pem = Vec::new();
    for cert in &bundle {
        append_pem(&mut pem, cert).map_err(CaError::Cert)?;
    }
    Ok((pem, bundle))
}

fn same_cert(a: &X509, b: &X509) -> bool {
    a.to_der().ok() == b.to_der().ok()
}

fn append_pem(out: &mut Vec<u8>, cert: &X509) -> Result<(), String> {
    let pem = cert.to_pem().map_err(|e| openssl_reason(&e))?;
    out.extend_from_slice(&pem);
    if !pem.ends_with(b"\n") {
        out.push(b'\n');
    }
    Ok(())
}

/// Seconds since the Unix epoch for an ASN.1 time; `None` for a malformed one
/// (a certificate's time fields are only checked when used).
pub fn unix_time(t: &Asn1TimeRef) -> Option<i64> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(t).ok()?;
    Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

/// A certificate's (notBefore, notAfter) in Unix seconds, or why not.
pub fn validity(cert: &X509) -> Result<(i64, i64), String> {
    match (unix_time(cert.not_before()), unix_time(cert.not_after())) {
        (Some(nb), Some(na)) => Ok((nb, na)),
        _ => Err("has a malformed validity time (notBefore/notAfter)".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `loaders` fuzz target: a CA whose notAfter is not a valid
    /// time made startup (and a reload) panic instead of refusing the file.
    #[test]
    fn malformed_ca_time_is_an_error_not_a_panic() {
        let input = include_bytes!("../../tests/fuzz/regressions/loaders-invalid-ca-time");
        let split = input.iter().position(|b| *b == 0).unwrap();
        let (key, cert) = (&input[..split], &input[split + 1..]);
        let err = MachineCa::new(cert, key, &[], 0).err().expect("refused");
        assert!(err.to_string().contains("malformed validity time"), "{err}");
    }
}
