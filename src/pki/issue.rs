//! CSR → apid server certificate: the trustd signing rules, each with its reason.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkey::{PKeyRef, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{
    X509Builder, X509Extension, X509Name, X509NameRef, X509Ref, X509Req, X509ReqRef, X509,
};

use super::ca::MachineCa;
use super::keys::{self, KeyType};
use super::{ffi, printable, San};
use crate::policy::{Denial, Policy};

/// How far notBefore is backdated, so a worker whose clock runs a little behind
/// ours (or talosctl's) does not see a certificate from the future.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A CSR that passed every check that needs only the CSR: what the caller
/// asked for, as we would certify it.
pub struct Csr {
    req: X509Req,
    subject: X509Name,
    pub common_name: String,
    pub key_type: KeyType,
    pub sans: Vec<San>,
    /// Organizations removed from the subject.
    pub stripped_orgs: usize,
    /// Requested extensions and SAN entries that will not be copied.
    pub dropped: usize,
}

/// What was issued.
pub struct Issued {
    pub pem: Vec<u8>,
    pub serial_hex: String,
    pub not_after_unix: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum IssueError {
    /// The caller sent something we will not sign; the text says what.
    InvalidCsr(String),
    /// The operator's policy refuses it.
    Policy(Denial),
    /// The CA can no longer issue (it expired while we were running).
    CaExpired,
    /// OpenSSL failed while building or signing.
    Internal(String),
}

impl From<Denial> for IssueError {
    fn from(d: Denial) -> Self {
        IssueError::Policy(d)
    }
}

impl From<ErrorStack> for IssueError {
    fn from(e: ErrorStack) -> Self {
        IssueError::Internal(keys::openssl_reason(&e))
    }
}

fn invalid(msg: impl Into<String>) -> IssueError {
    IssueError::InvalidCsr(msg.into())
}

/// Reads a worker's CSR as trustd does: decoded, its signature verified, its
/// key type and size within policy, O removed, only DNS/IP SANs kept.
pub fn parse(policy: &Policy, csr_pem: &[u8]) -> Result<Csr, IssueError> {
    policy.check_csr_size(csr_pem.len())?;
    let req = parse_pem_csr(csr_pem)?;
    let key = keys::csr_public_key(&req).map_err(|e| {
        invalid(format!(
            "CSR public key does not decode: {}",
            keys::openssl_reason(&e)
        ))
    })?;
    // Refuse weak or unwanted key types before spending time on them.
    let key_type = KeyType::of(&key);
    policy.check_key(key_type, || KeyType::describe(&key))?;
    let key_type = key_type.ok_or_else(|| invalid("CSR key type is not supported"))?;
    // Proof of possession: a CSR not signed by its own key may carry a key the
    // caller does not hold. Upstream answers INTERNAL; the fault is the caller's.
    if !ffi::csr_signed_by(&req, &key) {
        return Err(invalid(
            "CSR signature does not verify against its public key",
        ));
    }
    // Talos roles (os:admin, os:impersonator…) live in O; a server certificate
    // carrying one could be replayed as a client credential (CVE-2022-36103).
    // Strip rather than refuse: older workers still send O and must get a cert.
    let (subject, stripped_orgs) = subject_without_org(req.subject_name())?;
    // Only DNS and IP names identify an apid endpoint; URI/email SANs and every
    // other requested extension (CA:TRUE, clientAuth, keyCertSign…) are dropped.
    let (sans, dropped) = requested_sans(&req)?;
    if subject.entries().next().is_none() && sans.is_empty() {
        return Err(invalid(
            "CSR names nothing: no subject (after removing O) and no DNS/IP SAN",
        ));
    }
    Ok(Csr {
        req,
        common_name: common_name(&subject),
        subject,
        key_type,
        sans,
        stripped_orgs,
        dropped,
    })
}

/// Signs a parsed CSR if the operator's SAN policy allows it for this caller
/// (`peer`, for the peer-binding rule).
pub fn issue(
    ca: &MachineCa,
    policy: &Policy,
    csr: &Csr,
    peer: Option<IpAddr>,
    validity: Duration,
    now_unix: i64,
) -> Result<Issued, IssueError> {
    policy.check_sans(&csr.sans, peer)?;
    let signed = sign_server_cert(
        ca,
        &csr.subject,
        SubjectKey::Csr(&csr.req),
        &csr.sans,
        validity,
        now_unix,
    )?;
    Ok(Issued {
        pem: signed.cert.to_pem()?,
        serial_hex: signed.serial_hex,
        not_after_unix: signed.not_after_unix,
    })
}

/// The one certificate profile we issue, for workers and for ourselves: an
/// end-entity TLS server certificate.
/// The key a certificate certifies: a CSR's (copied as is), or our own.
pub(super) enum SubjectKey<'a> {
    Csr(&'a X509ReqRef),
    Key(&'a PKeyRef<Private>),
}

pub(super) struct Signed {
    pub cert: X509,
    pub serial_hex: String,
    pub not_after_unix: i64,
}

pub(super) fn sign_server_cert(
    ca: &MachineCa,
    subject: &X509NameRef,
    key: SubjectKey<'_>,
    sans: &[San],
    validity: Duration,
    now_unix: i64,
) -> Result<Signed, IssueError> {
    let (not_before_unix, not_after_unix) = validity_window(ca, validity, now_unix)?;
    let mut serial = BigNum::new()?;
    // 128 random bits with the top bit set: positive, 17 DER octets (≤ 20), from
    // the provider's DRBG.
    serial.rand(128, MsbOption::ONE, false)?;

    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial_asn1 = serial.to_asn1_integer()?;
    b.set_serial_number(&serial_asn1)?;
    b.set_subject_name(subject)?;
    b.set_issuer_name(ca.cert().subject_name())?;
    let key_bits = match key {
        SubjectKey::Key(key) => {
            b.set_pubkey(key)?;
            spki_bits(&key.public_key_to_der()?)?
        }
        SubjectKey::Csr(req) => ffi::public_key_bits(req)?,
    };
    let (not_before, not_after) = (
        Asn1Time::from_unix(not_before_unix)?,
        Asn1Time::from_unix(not_after_unix)?,
    );
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    let fixed = ca.fixed_extensions();
    b.append_extension2(&fixed.basic_constraints)?;
    b.append_extension2(&fixed.key_usage)?;
    b.append_extension2(&fixed.extended_key_usage)?;
    if !sans.is_empty() {
        let empty_subject = subject.entries().next().is_none();
        b.append_extension(san_extension(sans, empty_subject, &b)?)?;
    }
    b.append_extension(subject_key_id(&key_bits)?)?;
    b.append_extension2(&fixed.authority_key_id)?;
    let cert = b.build();
    if let SubjectKey::Csr(req) = key {
        ffi::copy_public_key(req, &cert)?;
    }
    ffi::sign(&cert, ca.key(), ca.digest())?;
    Ok(Signed {
        cert,
        serial_hex: serial.to_hex_str()?.to_string(),
        not_after_unix,
    })
}

/// The extensions every certificate from one CA carries. Built once per CA
/// (at start and on reload) rather than from their text forms on every call;
/// `X509_add_ext` copies them into each certificate.
pub struct FixedExtensions {
    basic_constraints: X509Extension,
    key_usage: X509Extension,
    extended_key_usage: X509Extension,
    authority_key_id: X509Extension,
}

impl FixedExtensions {
    pub fn for_ca(ca_cert: &X509Ref) -> Result<FixedExtensions, ErrorStack> {
        let b = X509Builder::new()?;
        Ok(FixedExtensions {
            // An end-entity certificate that says so explicitly; apid only
            // serves TLS, so digitalSignature + serverAuth is all it may do.
            basic_constraints: BasicConstraints::new().critical().build()?,
            key_usage: KeyUsage::new().critical().digital_signature().build()?,
            extended_key_usage: ExtendedKeyUsage::new().server_auth().build()?,
            // The CA's key identifier, so clients find the issuer even when
            // several CAs share a subject (rotation).
            authority_key_id: AuthorityKeyIdentifier::new()
                .keyid(false)
                .issuer(false)
                .build(&b.x509v3_context(Some(ca_cert), None))?,
        })
    }
}

/// subjectKeyIdentifier as RFC 7093 method 1: the leftmost 160 bits of the
/// SHA-256 of the key bits (RFC 5280 asks end-entity certificates to carry
/// one; SHA-256 keeps SHA-1 out of FIPS deployments).
fn subject_key_id(key_bits: &[u8]) -> Result<openssl::x509::X509Extension, IssueError> {
    let digest = openssl::hash::hash(openssl::hash::MessageDigest::sha256(), key_bits)?;
    let mut der = vec![0x04, 20];
    der.extend_from_slice(&digest[..20]);
    let oid = openssl::asn1::Asn1Object::from_str("2.5.29.14")?;
    let value = openssl::asn1::Asn1OctetString::new_from_bytes(&der)?;
    Ok(openssl::x509::X509Extension::new_from_der(
        &oid, false, &value,
    )?)
}

/// The subjectPublicKey bits inside a SubjectPublicKeyInfo DER
/// (SEQUENCE { AlgorithmIdentifier, BIT STRING }).
fn spki_bits(der: &[u8]) -> Result<Vec<u8>, IssueError> {
    let bad = || IssueError::Internal("malformed SubjectPublicKeyInfo".to_string());
    let header = |at: usize| -> Option<(usize, usize)> {
        let first = *der.get(at + 1)?;
        if first < 0x80 {
            return Some((2, usize::from(first)));
        }
        let n = usize::from(first & 0x7f);
        let len = der
            .get(at + 2..at + 2 + n)?
            .iter()
            .fold(0usize, |a, b| a << 8 | usize::from(*b));
        Some((2 + n, len))
    };
    let (outer, _) = header(0).ok_or_else(bad)?;
    let (alg_h, alg_len) = header(outer).ok_or_else(bad)?;
    let bit_at = outer + alg_h + alg_len;
    let (bit_h, bit_len) = header(bit_at).ok_or_else(bad)?;
    // Skip the unused-bits octet.
    der.get(bit_at + bit_h + 1..bit_at + bit_h + bit_len)
        .map(<[u8]>::to_vec)
        .ok_or_else(bad)
}

fn parse_pem_csr(pem: &[u8]) -> Result<X509Req, IssueError> {
    if pem.is_empty() {
        return Err(invalid("csr is empty"));
    }
    match keys::first_pem_label(pem) {
        Some("CERTIFICATE REQUEST") | Some("NEW CERTIFICATE REQUEST") => {}
        Some(label) => {
            return Err(invalid(format!(
                "csr holds a {:?} PEM block; expected CERTIFICATE REQUEST",
                printable(label.as_bytes())
            )))
        }
        None => {
            return Err(invalid(
                "csr is not PEM; expected a -----BEGIN CERTIFICATE REQUEST----- block",
            ))
        }
    }
    // Exactly one block and nothing around it: a second block or stray bytes
    // would be silently ignored by the PEM reader, and what was signed would
    // no longer be obviously what was sent.
    single_block(pem)?;
    ffi::csr_from_pem(pem).map_err(|e| {
        invalid(format!(
            "csr PEM does not decode: {}",
            keys::openssl_reason(&e)
        ))
    })
}

fn single_block(pem: &[u8]) -> Result<(), IssueError> {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let blocks = pem.windows(11).filter(|w| w == b"-----BEGIN ").count();
    if blocks > 1 {
        return Err(invalid(format!(
            "csr holds {blocks} PEM blocks; send exactly one CERTIFICATE REQUEST"
        )));
    }
    let begin = find(pem, b"-----BEGIN ").unwrap_or(0);
    if !pem[..begin].iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("csr has data before its PEM block"));
    }
    let Some(end) = find(pem, b"-----END ") else {
        return Err(invalid("csr PEM block has no END line"));
    };
    let after_label = pem[end + 9..]
        .windows(5)
        .position(|w| w == b"-----")
        .map(|i| end + 9 + i + 5);
    match after_label {
        Some(tail) if pem[tail..].iter().all(u8::is_ascii_whitespace) => Ok(()),
        Some(_) => Err(invalid("csr has data after its PEM block")),
        None => Err(invalid("csr PEM END line is cut off")),
    }
}

fn subject_without_org(name: &X509NameRef) -> Result<(X509Name, usize), IssueError> {
    let mut out = X509Name::builder()?;
    let mut stripped = 0;
    for entry in name.entries() {
        if entry.object().nid() == Nid::ORGANIZATIONNAME {
            stripped += 1;
            continue;
        }
        // Names are printed by talosctl, logs and audit tools: text only.
        let data = entry.data().as_slice();
        let text = std::str::from_utf8(data).ok();
        if text.is_none_or(|t| t.chars().any(char::is_control)) {
            return Err(invalid(format!(
                "CSR subject {} \"{}\" has control characters or is not UTF-8",
                entry.object().nid().short_name().unwrap_or("attribute"),
                printable(&data[..data.len().min(64)])
            )));
        }
        out.append_entry(entry)?;
    }
    Ok((out.build(), stripped))
}

/// DNS and IP SANs in request order, and how many other requested extensions
/// and names were dropped.
fn requested_sans(req: &X509Req) -> Result<(Vec<San>, usize), IssueError> {
    let exts = match req.extensions() {
        Ok(exts) => exts,
        // No extensionRequest attribute at all: a CSR without SANs.
        Err(_) if !ffi::has_extension_request(req) => return Ok((Vec::new(), 0)),
        Err(e) => {
            return Err(invalid(format!(
                "CSR extensionRequest does not decode: {}",
                keys::openssl_reason(&e)
            )))
        }
    };
    let names = match ffi::requested_sans(&exts) {
        ffi::RequestedSans::None => return Ok((Vec::new(), exts.len())),
        ffi::RequestedSans::Names(names) => names,
        ffi::RequestedSans::Duplicate => {
            return Err(invalid("CSR requests subjectAltName more than once"))
        }
        ffi::RequestedSans::Malformed => return Err(invalid("CSR subjectAltName does not decode")),
    };
    // RFC 5280: GeneralNames has at least one entry.
    if names.is_empty() {
        return Err(invalid("CSR subjectAltName is empty"));
    }
    let mut sans = Vec::with_capacity(names.len());
    let mut dropped = exts.len() - 1;
    for name in &names {
        if ffi::is_dns_name(name) {
            sans.push(San::Dns(dns_name(ffi::dns_name_bytes(name))?));
        } else if ffi::is_ip_address(name) {
            sans.push(San::Ip(ip_address(name.ipaddress().unwrap_or_default())?));
        } else {
            dropped += 1;
        }
    }
    Ok((sans, dropped))
}

/// A DNS SAN must be a plausible host name: Go's x509 (talosctl, apid) rejects
/// certificates whose SANs are not, so signing one would only break the worker.
fn dns_name(bytes: &[u8]) -> Result<String, IssueError> {
    let ok = !bytes.is_empty()
        && bytes.len() <= 253
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*'));
    match std::str::from_utf8(bytes) {
        Ok(name) if ok => Ok(name.to_string()),
        _ => Err(invalid(format!(
            "DNS SAN \"{}\" is not a valid host name",
            printable(&bytes[..bytes.len().min(64)])
        ))),
    }
}

fn ip_address(bytes: &[u8]) -> Result<IpAddr, IssueError> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Ok(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        return Ok(IpAddr::V6(Ipv6Addr::from(v6)));
    }
    Err(invalid(format!(
        "IP SAN has {} bytes; an IP address has 4 (IPv4) or 16 (IPv6)",
        bytes.len()
    )))
}

fn san_extension(
    sans: &[San],
    critical: bool,
    b: &X509Builder,
) -> Result<openssl::x509::X509Extension, IssueError> {
    let mut ext = SubjectAlternativeName::new();
    // RFC 5280 4.2.1.6: with an empty subject the SAN extension must be critical.
    if critical {
        ext.critical();
    }
    for san in sans {
        match san {
            San::Dns(name) => ext.dns(name),
            San::Ip(ip) => ext.ip(&ip.to_string()),
        };
    }
    Ok(ext.build(&b.x509v3_context(None, None))?)
}

/// notBefore backdated by the skew, notAfter `validity` ahead; both inside the
/// CA's own lifetime, because a chain is only valid while every link is.
fn validity_window(ca: &MachineCa, validity: Duration, now: i64) -> Result<(i64, i64), IssueError> {
    if ca.not_after_unix() <= now {
        return Err(IssueError::CaExpired);
    }
    let not_before = (now - CLOCK_SKEW.as_secs() as i64).max(ca.not_before_unix());
    let not_after = now
        .saturating_add(i64::try_from(validity.as_secs()).unwrap_or(i64::MAX))
        .min(ca.not_after_unix());
    Ok((not_before, not_after))
}

fn common_name(name: &X509NameRef) -> String {
    name.entries_by_nid(Nid::COMMONNAME)
        .next()
        .map(|cn| printable(cn.data().as_slice()))
        .unwrap_or_default()
}

impl std::fmt::Display for IssueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IssueError::InvalidCsr(m) => f.write_str(m),
            IssueError::Policy(d) => f.write_str(&d.reason),
            IssueError::CaExpired => f.write_str("the machine CA has expired"),
            IssueError::Internal(m) => write!(f, "OpenSSL failed: {m}"),
        }
    }
}

impl std::error::Error for IssueError {}
