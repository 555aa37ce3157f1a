//! Compatibility with Go's crypto/tls and crypto/x509, the stack of Talos's
//! workers, apid and talosctl: tests/go/talos_compat.go (standard library
//! only) dials the signer as a worker does, serves the issued certificate as
//! apid does, and connects to it as talosctl does with an os:admin client
//! certificate — for every machine-CA type.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use talos_csr_signer::pki::keys::KeyType;

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
    let text = output_text(&go);
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
