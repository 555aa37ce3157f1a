//! Everything cryptographic: keys, the machine CA, reading CSRs, the one
//! certificate builder, and the server's own serving certificate. Nothing
//! here knows about files, flags, policy or gRPC.

pub mod ca;
pub mod cert;
pub mod csr;
mod der;
mod ffi;
pub mod fips;
pub mod keys;
pub mod names;
pub mod pem;
pub mod serving;

use std::fmt;
use std::net::IpAddr;

use openssl::error::ErrorStack;
use openssl::x509::X509NameRef;

/// An OpenSSL failure on our side, never a client's mistake: which step
/// failed, and OpenSSL's reason — or that it gave none, so a message is
/// never built from an empty error queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptoError(String);

impl CryptoError {
    pub fn new(step: &str, e: &ErrorStack) -> CryptoError {
        CryptoError(format!("{step}: {}", openssl_reason(e)))
    }

    /// Takes OpenSSL's error queue for a raw call that just failed.
    pub fn last(step: &str) -> CryptoError {
        CryptoError::new(step, &ErrorStack::get())
    }

    pub fn message(step: &str, what: &str) -> CryptoError {
        CryptoError(format!("{step}: {what}"))
    }
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CryptoError {}

/// The most specific reason OpenSSL gave, without the error-stack noise; an
/// empty queue says so instead of inventing a reason.
pub fn openssl_reason(e: &ErrorStack) -> String {
    e.errors()
        .last()
        .map(|err| {
            err.reason()
                .map(str::to_string)
                .unwrap_or_else(|| format!("OpenSSL error {:#x}", err.code()))
        })
        .unwrap_or_else(|| "OpenSSL reported a failure without a reason".to_string())
}

/// A subjectAltName entry of the two kinds trustd certificates carry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => f.write_str(name),
            San::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Formats a distinguished name as `CN=a, O=b`, escaping anything that is not
/// printable ASCII so that a hostile name cannot forge log lines.
pub fn name_to_string(name: &X509NameRef) -> String {
    let parts: Vec<String> = name
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            format!("{key}={}", printable(e.data().as_slice()))
        })
        .collect();
    if parts.is_empty() {
        "(empty)".to_string()
    } else {
        parts.join(", ")
    }
}

/// Bytes as text with every non-printable or non-ASCII byte (and `\` and `"`)
/// shown as `\xNN`, so the result can sit between quotes in a log line.
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if (0x20..0x7f).contains(&b) && b != b'\\' && b != b'"' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Whether a certificate has basicConstraints CA:TRUE.
pub fn is_ca(cert: &openssl::x509::X509Ref) -> bool {
    ffi::is_ca(cert)
}

/// The DNS and IP SANs of a certificate, in order.
pub fn cert_sans(cert: &openssl::x509::X509Ref) -> Vec<San> {
    let Some(names) = cert.subject_alt_names() else {
        return Vec::new();
    };
    names
        .iter()
        .filter_map(|n| {
            if let Some(dns) = n.dnsname() {
                return Some(San::Dns(dns.to_string()));
            }
            match n.ipaddress()? {
                b if b.len() == 4 => Some(San::Ip(IpAddr::from(<[u8; 4]>::try_from(b).ok()?))),
                b if b.len() == 16 => Some(San::Ip(IpAddr::from(<[u8; 16]>::try_from(b).ok()?))),
                _ => None,
            }
        })
        .collect()
}

/// OpenSSL's verification of `leaf` as a TLS server certificate, through
/// `intermediates`, up to one of `roots`. The error is OpenSSL's reason.
pub fn verify_chain(
    leaf: &openssl::x509::X509Ref,
    intermediates: &[openssl::x509::X509],
    roots: &[openssl::x509::X509],
) -> Result<(), String> {
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::{X509PurposeId, X509StoreContext};
    let run = || -> Result<Result<(), String>, openssl::error::ErrorStack> {
        let mut store = X509StoreBuilder::new()?;
        for ca in roots {
            store.add_cert(ca.clone())?;
        }
        store.set_purpose(X509PurposeId::SSL_SERVER)?;
        let store = store.build();
        let mut chain = Stack::new()?;
        for c in intermediates {
            chain.push(c.clone())?;
        }
        let mut ctx = X509StoreContext::new()?;
        ctx.init(&store, leaf, &chain, |c| {
            Ok(if c.verify_cert()? {
                Ok(())
            } else {
                Err(c.error().error_string().to_string())
            })
        })
    };
    run().map_err(|e| openssl_reason(&e))?
}
