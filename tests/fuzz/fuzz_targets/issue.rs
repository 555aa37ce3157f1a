//! Raw `csr` bytes → certificate or refusal, with a fixed test CA. A CSR that
//! parses must sign, and what is signed must be a plain server certificate
//! for exactly the names the CSR asked.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use openssl::nid::Nid;
use openssl::x509::{X509ExtendedKeyUsage, X509KeyUsage, X509Req, X509};
use talos_csr_signer::pki::ca::MachineCa;
use talos_csr_signer::pki::keys::KeyType;
use talos_csr_signer::pki::{cert_sans, is_ca, issue};
use talos_csr_signer::policy::Policy;

fn ca() -> &'static MachineCa {
    static CA: OnceLock<MachineCa> = OnceLock::new();
    CA.get_or_init(|| {
        let (cert, key) = talos_csr_signer::dev::self_signed_ca(KeyType::Ed25519).unwrap();
        let (cert, key) = (
            cert.to_pem().unwrap(),
            key.private_key_to_pem_pkcs8().unwrap(),
        );
        MachineCa::new(&cert, &key, &[], talos_csr_signer::unix_now()).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let policy = Policy {
        max_sans: 1000,
        ..Policy::default()
    };
    let Ok(csr) = issue::parse(&policy, data) else {
        return;
    };
    let now = talos_csr_signer::unix_now();
    let issued = issue::issue(ca(), &policy, &csr, None, Duration::from_secs(3600), now)
        .expect("a CSR that parses is signable");
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
    assert_eq!(cert_sans(&cert), csr.sans);
    // The CSR reader builds the key itself (ffi::csr_from_pem): OpenSSL's own
    // path must read the same CSR, decode the same key and verify it too.
    let req = X509Req::from_pem(data).expect("OpenSSL reads what we accepted");
    let key = req.public_key().expect("OpenSSL decodes the key we certified");
    assert!(req.verify(&key).unwrap_or(false), "OpenSSL verifies what we accepted");
    assert!(cert.public_key().unwrap().public_eq(&key), "the certified key is the CSR's");
});
