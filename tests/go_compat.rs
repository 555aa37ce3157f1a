//! Compatibility with Go's crypto/tls and crypto/x509, the stack of Talos's
//! workers, apid and talosctl: tests/go/talos_compat.go (standard library
//! only) dials the signer as a worker does, serves the issued certificate as
//! apid does, and connects to it as talosctl does with an os:admin client
//! certificate — for every machine-CA type.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::nid::Nid;
use openssl::x509::extension::{ExtendedKeyUsage, KeyUsage};
use openssl::x509::{X509Builder, X509Name};
use talos_csr_signer::pki::keys::KeyType;

/// talosctl's client certificate: O=os:admin, clientAuth, signed by the OS CA.
fn admin_cert(ca: &Ca, dir: &TempDir) -> (String, String) {
    let key = KeyType::EcP256.generate().unwrap();
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "os:admin")
        .unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, "admin").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::ONE, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca.cert.subject_name()).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap())
        .unwrap();
    let kt = KeyType::of(&ca.key).unwrap();
    b.sign(&ca.key, kt.signing_digest()).unwrap();
    let crt = dir.write("admin.crt", &b.build().to_pem().unwrap());
    let key = dir.write("admin.key", &key.private_key_to_pem_pkcs8().unwrap());
    (crt.display().to_string(), key.display().to_string())
}

fn go_check(ca_type: KeyType) {
    let setup = Setup::new(ca_type);
    let server = setup.start();
    let out = setup.dir.path("issued");
    let p = |n: &str| setup.dir.path(n).display().to_string();
    let args: Vec<String> = [
        "request",
        "--endpoint",
        &server.addr.to_string(),
        "--ca",
        &p("ca.crt"),
        "--token-file",
        &p("token"),
        "--cn",
        "worker-1",
        "--ip",
        "127.0.0.1",
        "--ip",
        "10.5.0.7",
        "--dns",
        "worker-1",
        "--out",
        &out.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (status, stdout, stderr) = run_binary(&args, &[], Duration::from_secs(30));
    assert!(status.success(), "request: {stdout}{stderr}");
    let (admin_crt, admin_key) = admin_cert(&setup.ca, &setup.dir);
    let go = Command::new("go")
        .args([
            "run",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/go/talos_compat.go"),
        ])
        .args(["-signer", &server.addr.to_string(), "-ca", &p("ca.crt")])
        .args([
            "-crt",
            &out.join("crt.pem").display().to_string(),
            "-key",
            &out.join("key.pem").display().to_string(),
        ])
        .args([
            "-bundle",
            &out.join("ca.pem").display().to_string(),
            "-admin-crt",
            &admin_crt,
            "-admin-key",
            &admin_key,
        ])
        .output()
        .expect("go (Debian's golang-go; scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&go.stdout),
        String::from_utf8_lossy(&go.stderr)
    );
    println!("{ca_type} CA:\n{text}");
    assert!(
        go.status.success() && text.contains("PASS"),
        "{ca_type} CA:\n{text}"
    );
}

#[test]
fn go_accepts_ed25519_ca_certificates() {
    go_check(KeyType::Ed25519);
}

#[test]
fn go_accepts_p256_ca_certificates() {
    go_check(KeyType::EcP256);
}

#[test]
fn go_accepts_p384_ca_certificates() {
    go_check(KeyType::EcP384);
}

#[test]
fn go_accepts_rsa_ca_certificates() {
    go_check(KeyType::Rsa(2048));
}
