//! Properties of what the signer issues, over generated CSRs: whatever a CSR
//! asks for (CA:TRUE, clientAuth, certSign, name constraints, O, odd names,
//! hundreds of SANs), it is either refused for the first rule it breaks (an
//! independent oracle here says which) or certified as a plain TLS server
//! certificate for exactly the DNS/IP names asked, inside the policy's and
//! the CA's lifetime.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509ExtendedKeyUsage, X509Extension, X509KeyUsage, X509Name, X509Req, X509};
use proptest::prelude::*;

mod common;
use talos_csr_signer::pki::ca::MachineCa;
use talos_csr_signer::pki::cert::self_signed_ca;
use talos_csr_signer::pki::keys::KeyType;
use talos_csr_signer::pki::{cert_sans, is_ca, San};
use talos_csr_signer::signer::call::{issue, Code};
use talos_csr_signer::signer::policy::Policy;

const VALIDITY: Duration = Duration::from_secs(86_400);

fn ca() -> &'static (MachineCa, i64) {
    static CA: OnceLock<(MachineCa, i64)> = OnceLock::new();
    CA.get_or_init(|| {
        let (cert, key) = self_signed_ca(KeyType::Ed25519, talos_csr_signer::unix_now()).unwrap();
        let ca = MachineCa::new(
            &cert.to_pem().unwrap(),
            &key.private_key_to_pem_pkcs8().unwrap(),
            &[],
            talos_csr_signer::unix_now(),
        )
        .unwrap();
        let not_after = ca.not_after_unix();
        (ca, not_after)
    })
}

fn keys() -> &'static [(KeyType, PKey<Private>)] {
    static KEYS: OnceLock<Vec<(KeyType, PKey<Private>)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        [KeyType::Ed25519, KeyType::EcP256, KeyType::EcP384]
            .into_iter()
            .map(|k| (k, k.generate().unwrap()))
            .collect()
    })
}

#[derive(Debug, Clone)]
enum Entry {
    Cn(String),
    O(String),
    Ou(String),
    L(String),
}

#[derive(Debug, Clone)]
enum Name {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
    Email(String),
}

#[derive(Debug, Clone)]
struct Spec {
    key: usize,
    subject: Vec<Entry>,
    names: Vec<Name>,
    ask_ca: bool,
    ask_cert_sign: bool,
    ask_client_auth: bool,
    ask_name_constraints: bool,
}

fn text() -> impl Strategy<Value = String> {
    // Printable, with the characters that break naive formatting.
    "[ -~]{1,24}".prop_filter("non-blank", |s| !s.trim().is_empty())
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        text().prop_map(Entry::Cn),
        text().prop_map(Entry::O),
        text().prop_map(Entry::Ou),
        text().prop_map(Entry::L),
    ]
}

fn name() -> impl Strategy<Value = Name> {
    prop_oneof![
        4 => "[a-z0-9][a-z0-9-]{0,20}(\\.[a-z0-9-]{1,12}){0,3}".prop_map(Name::Dns),
        4 => any::<[u8; 4]>().prop_map(|b| Name::Ip(IpAddr::from(b))),
        2 => any::<[u8; 16]>().prop_map(|b| Name::Ip(IpAddr::from(b))),
        1 => "[a-z]{1,8}".prop_map(|h| Name::Uri(format!("spiffe://{h}/node"))),
        1 => "[a-z]{1,8}".prop_map(|u| Name::Email(format!("{u}@example.org"))),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..3usize,
        prop::collection::vec(entry(), 0..5),
        prop::collection::vec(name(), 0..300),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                key,
                subject,
                names,
                ask_ca,
                ask_cert_sign,
                ask_client_auth,
                ask_name_constraints,
            )| Spec {
                key,
                subject,
                names,
                ask_ca,
                ask_cert_sign,
                ask_client_auth,
                ask_name_constraints,
            },
        )
}

fn build(spec: &Spec) -> Vec<u8> {
    let (kt, key) = &keys()[spec.key];
    let mut b = X509Req::builder().unwrap();
    let mut name = X509Name::builder().unwrap();
    for e in &spec.subject {
        let (nid, v) = match e {
            Entry::Cn(v) => (Nid::COMMONNAME, v),
            Entry::O(v) => (Nid::ORGANIZATIONNAME, v),
            Entry::Ou(v) => (Nid::ORGANIZATIONALUNITNAME, v),
            Entry::L(v) => (Nid::LOCALITYNAME, v),
        };
        name.append_entry_by_nid(nid, v).unwrap();
    }
    b.set_subject_name(&name.build()).unwrap();
    b.set_pubkey(key).unwrap();
    let mut exts: Stack<X509Extension> = Stack::new().unwrap();
    if !spec.names.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for n in &spec.names {
            match n {
                Name::Dns(d) => san.dns(d),
                Name::Ip(ip) => san.ip(&ip.to_string()),
                Name::Uri(u) => san.uri(u),
                Name::Email(e) => san.email(e),
            };
        }
        exts.push(san.build(&b.x509v3_context(None)).unwrap())
            .unwrap();
    }
    if spec.ask_ca {
        exts.push(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
    }
    if spec.ask_cert_sign {
        exts.push(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
    }
    if spec.ask_client_auth {
        exts.push(
            ExtendedKeyUsage::new()
                .client_auth()
                .code_signing()
                .build()
                .unwrap(),
        )
        .unwrap();
    }
    if spec.ask_name_constraints {
        #[allow(deprecated)]
        let nc = X509Extension::new_nid(
            None,
            None,
            Nid::NAME_CONSTRAINTS,
            "critical,permitted;DNS:.example",
        )
        .unwrap();
        exts.push(nc).unwrap();
    }
    if !exts.is_empty() {
        b.add_extensions(&exts).unwrap();
    }
    b.sign(key, kt.signing_digest()).unwrap();
    b.build().to_pem().unwrap()
}

fn asked_sans(spec: &Spec) -> Vec<San> {
    spec.names
        .iter()
        .filter_map(|n| match n {
            Name::Dns(d) => Some(San::Dns(d.clone())),
            Name::Ip(ip) => Some(San::Ip(*ip)),
            _ => None,
        })
        .collect()
}

/// The oracle: the first rule `spec` breaks, in the order the signer checks
/// (subject, then each SAN in order, then "names nothing"), as the text its
/// refusal must contain; `None` when it must be certified.
fn expected_refusal(spec: &Spec) -> Option<&'static str> {
    if spec
        .subject
        .iter()
        .any(|e| matches!(e, Entry::Cn(v) if v.contains('*')))
    {
        return Some("is a wildcard");
    }
    for n in &spec.names {
        match n {
            Name::Uri(_) | Name::Email(_) => return Some("only DNS and IP SANs are issued"),
            Name::Dns(d) if !host_name(d) => return Some("DNS SAN"),
            Name::Ip(ip) if !host_ip(*ip) => return Some("not a host"),
            _ => {}
        }
    }
    names_nothing(spec).then_some("CSR names nothing")
}

/// RFC 1123 host names as the signer certifies them, written independently:
/// labels of 1-63 letters, digits and inner hyphens, the last not all digits.
fn host_name(d: &str) -> bool {
    let labels: Vec<&str> = d.split('.').collect();
    d.len() <= 253
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'))
        && !labels.last().unwrap().bytes().all(|b| b.is_ascii_digit())
}

fn host_ip(ip: IpAddr) -> bool {
    let broadcast = ip == IpAddr::from([255, 255, 255, 255]);
    !(ip.is_unspecified() || ip.is_multicast() || broadcast)
}

fn names_nothing(spec: &Spec) -> bool {
    spec.subject.iter().all(|e| matches!(e, Entry::O(_))) && asked_sans(spec).is_empty()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn issued_certificates_are_plain_server_certificates(spec in spec()) {
        let (ca, _) = ca();
        let policy = Policy { max_sans: 1000, ..Policy::default() };
        let pem = build(&spec);
        let now = talos_csr_signer::unix_now();
        let result = issue(ca, &policy, &pem, None, VALIDITY, now);
        match (expected_refusal(&spec), result) {
            (Some(text), Err(r)) => {
                prop_assert_eq!(r.code, Code::InvalidArgument);
                prop_assert!(r.reason.contains(text), "expected {:?}, got {:?}", text, r.reason);
                return Ok(());
            }
            (Some(text), Ok(_)) => return Err(TestCaseError::fail(format!("certified; expected a refusal with {text:?}"))),
            (None, Err(r)) => return Err(TestCaseError::fail(format!("refused: {}", r.reason))),
            (None, Ok(issued)) => check_issued(&spec, &issued.pem, now)?,
        }
    }
}

/// Everything an issued certificate must be, whatever the CSR asked.
fn check_issued(spec: &Spec, pem: &[u8], now: i64) -> Result<(), TestCaseError> {
    {
        let (ca, ca_not_after) = ca();
        let cert = X509::from_pem(pem).unwrap();

        prop_assert!(!is_ca(&cert), "a CA certificate was issued");
        prop_assert_eq!(
            cert.extended_key_usage(),
            Some(X509ExtendedKeyUsage::SSL_SERVER)
        );
        prop_assert_eq!(cert.key_usage(), Some(X509KeyUsage::DIGITAL_SIGNATURE));
        prop_assert!(
            cert.subject_name()
                .entries_by_nid(Nid::ORGANIZATIONNAME)
                .next()
                .is_none(),
            "O kept"
        );
        let kept: Vec<String> = spec
            .subject
            .iter()
            .filter_map(|e| match e {
                Entry::O(_) => None,
                Entry::Cn(v) | Entry::Ou(v) | Entry::L(v) => Some(v.clone()),
            })
            .collect();
        let got: Vec<String> = cert
            .subject_name()
            .entries()
            .map(|e| String::from_utf8(e.data().as_slice().to_vec()).unwrap())
            .collect();
        prop_assert_eq!(got, kept);
        // Exactly our extensions: nothing the CSR asked for is copied.
        let mut want = vec![
            (Nid::BASIC_CONSTRAINTS, true),
            (Nid::KEY_USAGE, true),
            (Nid::EXT_KEY_USAGE, false),
        ];
        if !asked_sans(spec).is_empty() {
            let empty_subject = cert.subject_name().entries().next().is_none();
            want.push((Nid::SUBJECT_ALT_NAME, empty_subject));
        }
        want.push((Nid::SUBJECT_KEY_IDENTIFIER, false));
        want.push((Nid::AUTHORITY_KEY_IDENTIFIER, false));
        prop_assert_eq!(common::extensions(&cert), want);
        prop_assert_eq!(
            cert_sans(&cert),
            asked_sans(spec),
            "SANs differ from the DNS/IP names asked"
        );
        common::verify_chain(&cert, std::slice::from_ref(ca.cert()))
            .map_err(TestCaseError::fail)?;
        let nb = unix(cert.not_before());
        let na = unix(cert.not_after());
        prop_assert!(na <= now + VALIDITY.as_secs() as i64 && na <= *ca_not_after && na > now);
        prop_assert!(nb >= ca.not_before_unix() && nb <= now);
    }
    Ok(())
}

fn unix(t: &openssl::asn1::Asn1TimeRef) -> i64 {
    let d = openssl::asn1::Asn1Time::from_unix(0)
        .unwrap()
        .diff(t)
        .unwrap();
    i64::from(d.days) * 86_400 + i64::from(d.secs)
}
