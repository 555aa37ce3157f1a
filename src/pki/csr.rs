//! A worker's CSR, read as trustd reads it and checked as strictly as a
//! security service must: every token holder can send one, so anything that
//! is not what a Talos worker sends is refused with a one-line reason. Two
//! stages, so the caller can apply its key policy before the signature check
//! costs anything: `Unverified::read` (PEM, DER, the key), then `verify`
//! (proof of possession, subject, names).

use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Name, X509NameRef, X509Req, X509ReqRef};
use openssl_sys as sys;

use super::ffi::{self, ReadError, RequestedSans};
use super::keys::{self, CsrKey, CsrKeyError, KeyType};
use super::pem as pem_text;
use super::{der, names, printable, CryptoError, San};

/// Why a CSR is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum CsrError {
    /// The caller sent something no Talos worker sends; the text says what.
    Invalid(String),
    /// Its key is malformed or of a kind we never certify.
    Key(CsrKeyError),
    /// Our side failed (OpenSSL ran out of memory, say).
    Crypto(CryptoError),
}

fn invalid(msg: impl Into<String>) -> CsrError {
    CsrError::Invalid(msg.into())
}

/// A CSR whose encoding and key are sound; not yet checked for proof of
/// possession or names.
pub struct Unverified {
    read: ffi::ReadCsr,
    key: CsrKey,
}

/// A CSR that passed every check: what the caller asked for, as we will
/// certify it.
pub struct Csr {
    pub subject: X509Name,
    pub common_name: String,
    pub key: CsrKey,
    pub sans: Vec<San>,
    /// Organizations removed from the subject.
    pub stripped_orgs: usize,
    /// Requested extensions other than subjectAltName, which are not copied.
    pub dropped: usize,
}

impl Unverified {
    /// Decodes the PEM and checks the key.
    pub fn read(pem: &[u8]) -> Result<Unverified, CsrError> {
        check_pem_framing(pem)?;
        let read = ffi::csr_from_pem(pem).map_err(|e| match e {
            ReadError::Malformed(reason) => invalid(format!("csr PEM does not decode: {reason}")),
            ReadError::Crypto(e) => CsrError::Crypto(e),
        })?;
        // OpenSSL's decoder ignores bytes after the request; what is signed
        // must be exactly what was sent.
        if der::only(&read.der, der::SEQUENCE).is_none() {
            return Err(invalid("csr DER has data after the request"));
        }
        let spki = der::csr_spki(&read.der)
            .ok_or_else(|| invalid("csr DER is not a CertificationRequest"))?;
        let key = keys::csr_key(spki).map_err(CsrError::Key)?;
        Ok(Unverified { read, key })
    }

    pub fn key_type(&self) -> KeyType {
        self.key.key_type
    }

    /// Proof of possession, then the subject and the names.
    pub fn verify(self) -> Result<Csr, CsrError> {
        let req: &X509ReqRef = &self.read.req;
        // A CSR not signed by its own key may carry a key the caller does not
        // hold. Upstream answers INTERNAL; the fault is the caller's.
        if !ffi::csr_signed_by(req, &self.key.key) {
            return Err(invalid(
                "CSR signature does not verify against its public key",
            ));
        }
        // Talos roles (os:admin, os:impersonator…) live in O; a server
        // certificate carrying one could be replayed as a client credential
        // (CVE-2022-36103). Strip rather than refuse: older workers still
        // send O and must get a certificate.
        let (subject, stripped_orgs) = subject_without_org(req.subject_name())?;
        let (sans, dropped) = requested_sans(req)?;
        if subject.entries().next().is_none() && sans.is_empty() {
            return Err(invalid(
                "CSR names nothing: no subject (after removing O) and no DNS/IP SAN",
            ));
        }
        Ok(Csr {
            common_name: common_name(&subject),
            subject,
            key: self.key,
            sans,
            stripped_orgs,
            dropped,
        })
    }
}

/// Exactly one PEM block labelled CERTIFICATE REQUEST (or its old name) and
/// nothing around it: a second block or stray bytes would be silently
/// ignored by the PEM reader, and what was signed would no longer be
/// obviously what was sent.
fn check_pem_framing(pem: &[u8]) -> Result<(), CsrError> {
    if pem.is_empty() {
        return Err(invalid("csr is empty"));
    }
    match pem_text::first_pem_label(pem) {
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

fn subject_without_org(name: &X509NameRef) -> Result<(X509Name, usize), CsrError> {
    let crypto = |e| CsrError::Crypto(CryptoError::new("copying the CSR subject", &e));
    let mut out = X509Name::builder().map_err(crypto)?;
    let mut stripped = 0;
    for entry in name.entries() {
        let nid = entry.object().nid();
        if nid == Nid::ORGANIZATIONNAME {
            stripped += 1;
            continue;
        }
        let attribute = nid.short_name().unwrap_or("attribute");
        // Names are printed by talosctl, logs and audit tools: text only.
        let data = entry.data().as_slice();
        let shown = || printable(&data[..data.len().min(64)]);
        let text = std::str::from_utf8(data).ok();
        if text.is_none_or(|t| t.chars().any(char::is_control)) {
            return Err(invalid(format!(
                "CSR subject {attribute} \"{}\" has control characters or is not UTF-8",
                shown()
            )));
        }
        // Clients that find no DNS SAN fall back to the CN (OpenSSL, gRPC
        // core): a wildcard there would be a wildcard certificate.
        if nid == Nid::COMMONNAME && data.contains(&b'*') {
            return Err(invalid(format!(
                "CSR subject CN \"{}\" is a wildcard; a worker names itself",
                shown()
            )));
        }
        out.append_entry(entry).map_err(crypto)?;
    }
    Ok((out.build(), stripped))
}

/// The DNS and IP SANs in request order, and how many other requested
/// extensions there were (dropped: basicConstraints, keyUsage, EKU… are ours
/// to set). A SAN of any other type (URI, email, otherName…) is refused: a
/// Talos worker never asks for one, and dropping it silently would certify
/// less than was asked without saying so.
fn requested_sans(req: &X509ReqRef) -> Result<(Vec<San>, usize), CsrError> {
    let exts = match req.extensions() {
        Ok(exts) => exts,
        // No extensionRequest attribute at all: a CSR without SANs.
        Err(_) if !ffi::has_extension_request(req) => return Ok((Vec::new(), 0)),
        Err(e) => {
            return Err(invalid(format!(
                "CSR extensionRequest does not decode: {}",
                super::openssl_reason(&e)
            )))
        }
    };
    let names = match ffi::requested_sans(&exts) {
        RequestedSans::None => return Ok((Vec::new(), exts.len())),
        RequestedSans::Names(names) => names,
        RequestedSans::Duplicate => {
            return Err(invalid("CSR requests subjectAltName more than once"))
        }
        RequestedSans::Malformed => return Err(invalid("CSR subjectAltName does not decode")),
    };
    // RFC 5280: GeneralNames has at least one entry.
    if names.is_empty() {
        return Err(invalid("CSR subjectAltName is empty"));
    }
    let mut sans = Vec::with_capacity(names.len());
    for name in &names {
        sans.push(san(ffi::general_name(name))?);
    }
    Ok((sans, exts.len() - 1))
}

/// One requested GeneralName as a SAN we issue, or why not.
fn san((kind, bytes): (std::ffi::c_int, &[u8])) -> Result<San, CsrError> {
    match kind {
        sys::GEN_DNS => names::host_name(bytes)
            .map(|n| San::Dns(n.to_string()))
            .map_err(|e| invalid(format!("DNS SAN {e}"))),
        sys::GEN_IPADD => names::ip_address(bytes).map(San::Ip).map_err(invalid),
        other => {
            let (what, shown) = match other {
                sys::GEN_EMAIL => ("email (rfc822Name)", true),
                sys::GEN_URI => ("URI", true),
                sys::GEN_OTHERNAME => ("otherName", false),
                sys::GEN_X400 => ("x400Address", false),
                sys::GEN_DIRNAME => ("directoryName", false),
                sys::GEN_EDIPARTY => ("ediPartyName", false),
                sys::GEN_RID => ("registeredID", false),
                _ => ("unknown", false),
            };
            let value = if shown {
                format!(" \"{}\"", printable(&bytes[..bytes.len().min(64)]))
            } else {
                String::new()
            };
            Err(invalid(format!(
                "CSR asks for a {what} SAN{value}; only DNS and IP SANs are issued"
            )))
        }
    }
}

fn common_name(name: &X509NameRef) -> String {
    name.entries_by_nid(Nid::COMMONNAME)
        .next()
        .map(|cn| printable(cn.data().as_slice()))
        .unwrap_or_default()
}

/// A CSR as a Talos worker makes it: CN, the requested DNS and IP SANs, no
/// O, signed with the key (for `request` and the load generator).
pub fn build(key: &PKey<Private>, kt: KeyType, cn: &str, sans: &[San]) -> Result<Vec<u8>, String> {
    let build = || -> Result<Vec<u8>, openssl::error::ErrorStack> {
        let mut b = X509Req::builder()?;
        let mut name = X509Name::builder()?;
        name.append_entry_by_nid(Nid::COMMONNAME, cn)?;
        b.set_subject_name(&name.build())?;
        b.set_pubkey(key)?;
        if !sans.is_empty() {
            let mut ext = SubjectAlternativeName::new();
            for san in sans {
                match san {
                    San::Dns(d) => ext.dns(d),
                    San::Ip(ip) => ext.ip(&ip.to_string()),
                };
            }
            let mut exts = Stack::new()?;
            exts.push(ext.build(&b.x509v3_context(None))?)?;
            b.add_extensions(&exts)?;
        }
        b.sign(key, kt.signing_digest())?;
        b.build().to_pem()
    };
    build().map_err(|e| super::openssl_reason(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::{Asn1Object, Asn1OctetString};
    use openssl::hash::MessageDigest;
    use openssl::x509::extension::{BasicConstraints, KeyUsage};
    use openssl::x509::X509Extension;

    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        match content.len() {
            n if n < 128 => out.push(n as u8),
            n => out.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        out.extend(content);
        out
    }

    fn pem(der: &[u8]) -> Vec<u8> {
        pem_text::encode("CERTIFICATE REQUEST", der)
    }

    /// A signed Ed25519 CSR: subject entries (raw bytes, as UTF8String),
    /// the subjectAltName's GeneralNames (DER, without the SEQUENCE) and any
    /// other requested extensions.
    fn csr(subject: &[(Nid, &[u8])], sans: Option<&[u8]>, extra: Vec<X509Extension>) -> Vec<u8> {
        let key = PKey::generate_ed25519().unwrap();
        let mut b = X509Req::builder().unwrap();
        let name = X509Name::builder().unwrap().build();
        for (nid, value) in subject {
            // SAFETY: a valid name; OpenSSL copies the bytes as given.
            let rc = unsafe {
                use foreign_types::ForeignTypeRef;
                openssl_sys::X509_NAME_add_entry_by_NID(
                    name.as_ref().as_ptr(),
                    nid.as_raw(),
                    openssl_sys::V_ASN1_UTF8STRING,
                    value.as_ptr() as *mut _,
                    value.len() as i32,
                    -1,
                    0,
                )
            };
            assert_eq!(rc, 1);
        }
        b.set_subject_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        let mut exts = Stack::new().unwrap();
        if let Some(names) = sans {
            let value = Asn1OctetString::new_from_bytes(&der(0x30, names)).unwrap();
            let oid = Asn1Object::from_str("2.5.29.17").unwrap();
            exts.push(X509Extension::new_from_der(&oid, false, &value).unwrap())
                .unwrap();
        }
        for e in extra {
            exts.push(e).unwrap();
        }
        if !exts.is_empty() {
            b.add_extensions(&exts).unwrap();
        }
        b.sign(&key, MessageDigest::null()).unwrap();
        b.build().to_pem().unwrap()
    }

    fn check(pem: &[u8]) -> Result<Csr, CsrError> {
        Unverified::read(pem)?.verify()
    }

    const CN: Nid = Nid::COMMONNAME;

    /// Every rule of a CSR's way to a certificate, with the reason each
    /// refusal gives; the wire tests (tests/hostile.rs) send the same kinds.
    #[test]
    fn csr_rules() {
        let dns = |n: &[u8]| der(0x82, n);
        let ip = |b: &[u8]| der(0x87, b);
        let good = csr(
            &[(CN, b"w1.example")],
            Some(&[dns(b"w1"), ip(&[10, 0, 0, 7])].concat()),
            vec![],
        );
        let good_der = X509Req::from_pem(&good).unwrap().to_der().unwrap();
        let mut bad_sig = good_der.clone();
        *bad_sig.last_mut().unwrap() ^= 1;
        let ca = BasicConstraints::new().critical().ca().build().unwrap();
        let ku = KeyUsage::new().key_cert_sign().build().unwrap();
        let two_sans = {
            let oid = Asn1Object::from_str("2.5.29.17").unwrap();
            let v = Asn1OctetString::new_from_bytes(&der(0x30, &dns(b"a"))).unwrap();
            X509Extension::new_from_der(&oid, false, &v).unwrap()
        };
        let text = String::from_utf8(good.clone()).unwrap();
        let table: Vec<(&str, Vec<u8>, Result<(), &str>)> = vec![
            ("a worker's CSR", good.clone(), Ok(())),
            ("empty", vec![], Err("csr is empty")),
            ("not PEM", b"hello".to_vec(), Err("csr is not PEM")),
            (
                "a certificate",
                text.replace("CERTIFICATE REQUEST", "CERTIFICATE")
                    .into_bytes(),
                Err("\"CERTIFICATE\" PEM block"),
            ),
            (
                "two blocks",
                [good.clone(), good.clone()].concat(),
                Err("2 PEM blocks"),
            ),
            (
                "data before",
                [b"x\n".to_vec(), good.clone()].concat(),
                Err("data before its PEM block"),
            ),
            (
                "data after",
                [good.clone(), b"x".to_vec()].concat(),
                Err("data after its PEM block"),
            ),
            (
                "no END line",
                good[..good.len() / 2].to_vec(),
                Err("no END line"),
            ),
            (
                "trailing DER",
                pem(&[good_der.clone(), vec![0]].concat()),
                Err("data after the request"),
            ),
            (
                "bad signature",
                pem(&bad_sig),
                Err("signature does not verify"),
            ),
            (
                "NUL in the CN",
                csr(&[(CN, b"a\0b")], None, vec![]),
                Err("control characters"),
            ),
            (
                "wildcard CN",
                csr(&[(CN, b"*.example")], None, vec![]),
                Err("CN \"*.example\" is a wildcard"),
            ),
            (
                "only O",
                csr(&[(Nid::ORGANIZATIONNAME, b"os:admin")], None, vec![]),
                Err("CSR names nothing"),
            ),
            (
                "empty SAN list",
                csr(&[(CN, b"w")], Some(&[]), vec![]),
                Err("subjectAltName is empty"),
            ),
            (
                "SAN twice",
                csr(&[(CN, b"w")], Some(&dns(b"a")), vec![two_sans]),
                Err("more than once"),
            ),
            (
                "wildcard DNS SAN",
                csr(&[(CN, b"w")], Some(&dns(b"*.example")), vec![]),
                Err("is a wildcard"),
            ),
            (
                "inner wildcard",
                csr(&[(CN, b"w")], Some(&dns(b"a.*.example")), vec![]),
                Err("is a wildcard"),
            ),
            (
                "bare wildcard",
                csr(&[(CN, b"w")], Some(&dns(b"*")), vec![]),
                Err("is a wildcard"),
            ),
            (
                "DNS SAN that is an IP",
                csr(&[(CN, b"w")], Some(&dns(b"10.0.0.1")), vec![]),
                Err("looks like an IP address"),
            ),
            (
                "DNS SAN not UTF-8",
                csr(&[(CN, b"w")], Some(&dns(b"n\xffde")), vec![]),
                Err("is not a host name"),
            ),
            (
                "IP SAN of 5 bytes",
                csr(&[(CN, b"w")], Some(&ip(&[1, 2, 3, 4, 5])), vec![]),
                Err("IP SAN has 5 bytes"),
            ),
            (
                "multicast IP SAN",
                csr(&[(CN, b"w")], Some(&ip(&[224, 0, 0, 1])), vec![]),
                Err("not a host"),
            ),
            (
                "email SAN",
                csr(&[(CN, b"w")], Some(&der(0x81, b"a@b.example")), vec![]),
                Err("email (rfc822Name) SAN \"a@b.example\""),
            ),
            (
                "URI SAN",
                csr(&[(CN, b"w")], Some(&der(0x86, b"spiffe://c/n")), vec![]),
                Err("URI SAN \"spiffe://c/n\""),
            ),
            (
                "registeredID SAN",
                csr(&[(CN, b"w")], Some(&der(0x88, &[0x2a, 3])), vec![]),
                Err("registeredID SAN"),
            ),
            (
                "otherName SAN",
                csr(
                    &[(CN, b"w")],
                    Some(&der(
                        0xa0,
                        &[der(0x06, &[0x2a, 3]), der(0xa0, &der(0x0c, b"a"))].concat(),
                    )),
                    vec![],
                ),
                Err("otherName SAN"),
            ),
            (
                "CA:TRUE asked",
                csr(&[(CN, b"w")], Some(&dns(b"w")), vec![ca, ku]),
                Ok(()),
            ),
        ];
        for (name, input, want) in table {
            match (check(&input), want) {
                (Ok(_), Ok(())) => {}
                (Err(CsrError::Invalid(got)), Err(text)) => {
                    assert!(got.contains(text), "{name}: {got:?} lacks {text:?}")
                }
                (got, want) => panic!("{name}: got {:?}, want {want:?}", got.err()),
            }
        }
    }

    /// O is removed (and counted), the rest of the subject kept in order;
    /// other requested extensions are counted as dropped; SANs keep their
    /// order.
    #[test]
    fn what_a_csr_asks_is_what_it_gets() {
        let sans = [
            der(0x82, b"w1"),
            der(0x87, &[10, 0, 0, 7]),
            der(0x82, b"w1.example"),
        ]
        .concat();
        let ca = BasicConstraints::new().critical().ca().build().unwrap();
        let input = csr(
            &[
                (Nid::ORGANIZATIONNAME, b"os:admin"),
                (CN, b"w1.example"),
                (Nid::LOCALITYNAME, b"here"),
            ],
            Some(&sans),
            vec![ca],
        );
        let got = check(&input).unwrap();
        assert_eq!(got.stripped_orgs, 1);
        assert_eq!(got.dropped, 1);
        assert_eq!(got.common_name, "w1.example");
        assert_eq!(
            got.sans,
            vec![
                San::Dns("w1".into()),
                San::Ip("10.0.0.7".parse().unwrap()),
                San::Dns("w1.example".into())
            ]
        );
        let subject: Vec<String> = got
            .subject
            .entries()
            .map(|e| String::from_utf8(e.data().as_slice().to_vec()).unwrap())
            .collect();
        assert_eq!(subject, ["w1.example", "here"]);
        assert_eq!(got.key.key_type, KeyType::Ed25519);
    }

    /// A key we refuse is refused before the signature is checked, with the
    /// key's own reason.
    #[test]
    fn keys_are_refused_before_signatures() {
        let good = csr(&[(CN, b"w")], None, vec![]);
        let mut d = X509Req::from_pem(&good).unwrap().to_der().unwrap();
        // The Ed25519 BIT STRING's unused-bits octet (03 21 00 || key).
        let at = d.windows(3).position(|w| w == [0x03, 0x21, 0x00]).unwrap();
        d[at + 2] = 1;
        match Unverified::read(&pem(&d)) {
            Err(CsrError::Key(CsrKeyError::Malformed(why))) => {
                assert!(why.contains("1 unused bits"))
            }
            other => panic!("{:?}", other.err()),
        }
    }
}
