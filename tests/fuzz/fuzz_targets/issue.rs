//! A CSR's DER, mutated by libFuzzer and PEM-encoded here (base64 would hide
//! the structure from the fuzzer), through the same `signer::call::issue` a
//! Certificate call takes, with a fixed test CA. Every input either gets a
//! client-error refusal — never INTERNAL, never a panic — or a certificate
//! that is a plain server certificate for exactly the names the CSR asked,
//! none of them a wildcard, with the key OpenSSL's own CSR path reads.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use openssl::nid::Nid;
use openssl::x509::{X509ExtendedKeyUsage, X509KeyUsage, X509Req, X509};
use talos_csr_signer::pki::ca::MachineCa;
use talos_csr_signer::pki::cert::self_signed_ca;
use talos_csr_signer::pki::keys::KeyType;
use talos_csr_signer::pki::{cert_sans, is_ca, San};
use talos_csr_signer::signer::call::{issue, Code};
use talos_csr_signer::signer::policy::{KeyClass, Policy};

fn ca() -> &'static MachineCa {
    static CA: OnceLock<MachineCa> = OnceLock::new();
    CA.get_or_init(|| {
        let now = talos_csr_signer::unix_now();
        let (cert, key) = self_signed_ca(KeyType::Ed25519, now).unwrap();
        let (cert, key) = (
            cert.to_pem().unwrap(),
            key.private_key_to_pem_pkcs8().unwrap(),
        );
        MachineCa::new(&cert, &key, &[], now).unwrap()
    })
}

fuzz_target!(|der: &[u8]| {
    let policy = Policy {
        max_sans: 1000,
        key_types: vec![
            KeyClass::Ed25519,
            KeyClass::EcP256,
            KeyClass::EcP384,
            KeyClass::EcP521,
            KeyClass::Rsa,
        ],
        ..Policy::default()
    };
    let data = talos_csr_signer::pki::pem::encode("CERTIFICATE REQUEST", der);
    let now = talos_csr_signer::unix_now();
    let issued = match issue(ca(), &policy, &data, None, Duration::from_secs(3600), now) {
        Ok(issued) => issued,
        Err(refusal) => {
            assert!(
                matches!(refusal.code, Code::InvalidArgument | Code::PermissionDenied),
                "a client's input answered {:?}: {}",
                refusal.code,
                refusal.reason
            );
            assert!(!refusal.reason.contains('\n'), "one line: {}", refusal.reason);
            return;
        }
    };
    let cert = X509::from_pem(&issued.pem).expect("we emit valid PEM");
    assert!(!is_ca(&cert));
    assert_eq!(
        cert.extended_key_usage(),
        Some(X509ExtendedKeyUsage::SSL_SERVER)
    );
    assert_eq!(cert.key_usage(), Some(X509KeyUsage::DIGITAL_SIGNATURE));
    assert!(cert
        .subject_name()
        .entries_by_nid(Nid::ORGANIZATIONNAME)
        .next()
        .is_none());
    let sans = cert_sans(&cert);
    assert_eq!(sans, issued.csr.sans);
    assert!(sans
        .iter()
        .all(|s| !matches!(s, San::Dns(d) if d.contains('*'))));
    // Our CSR reader builds the key itself: OpenSSL's own path must read the
    // same CSR, decode the same key and verify it too.
    let req = X509Req::from_pem(&data).expect("OpenSSL reads what we accepted");
    let key = req.public_key().expect("OpenSSL decodes the key we certified");
    assert!(req.verify(&key).unwrap_or(false), "OpenSSL verifies what we accepted");
    assert!(cert.public_key().unwrap().public_eq(&key), "the certified key is the CSR's");
});
