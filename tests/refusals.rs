//! Bad calls get a precise status and a one-line reason, are logged without
//! secrets, and never stop the server from serving the next caller.

mod common;

use common::*;
use grpcio::RpcStatusCode;
use talos_csr_signer::pki::keys::KeyType;

fn expect(
    result: Result<talos_csr_signer::proto::security::CertificateResponse, grpcio::RpcStatus>,
    code: RpcStatusCode,
    text: &str,
) {
    match result {
        Ok(_) => panic!("expected {code:?} ({text}), got a certificate"),
        Err(s) => {
            assert_eq!(s.code(), code, "message: {}", s.message());
            assert!(
                s.message().contains(text),
                "{:?} does not contain {text:?}",
                s.message()
            );
            assert!(!s.message().contains('\n'), "one-line reason");
        }
    }
}

#[test]
fn token_failures_are_unauthenticated_and_never_logged() {
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let (csr, _) = CsrSpec::worker(KeyType::Ed25519).build();
    let wrong = "d8cwfa.0000000000000000";
    expect(
        call_with(&client, &[wrong.as_bytes()], &csr),
        RpcStatusCode::UNAUTHENTICATED,
        "invalid token",
    );
    expect(
        call_with(&client, &[], &csr),
        RpcStatusCode::UNAUTHENTICATED,
        "missing token",
    );
    expect(
        call_with(&client, &[b""], &csr),
        RpcStatusCode::UNAUTHENTICATED,
        "invalid token",
    );
    expect(
        call_with(&client, &[TOKEN.as_bytes(), TOKEN.as_bytes()], &csr),
        RpcStatusCode::UNAUTHENTICATED,
        "more than one token",
    );
    // The right token with trailing junk is still wrong.
    let longer = format!("{TOKEN}x");
    expect(
        call_with(&client, &[longer.as_bytes()], &csr),
        RpcStatusCode::UNAUTHENTICATED,
        "invalid token",
    );
    // A token failure is decided before the CSR is looked at.
    expect(
        call_with(&client, &[wrong.as_bytes()], b"garbage"),
        RpcStatusCode::UNAUTHENTICATED,
        "invalid token",
    );

    call(&client, &csr).expect("the right token still works");
    server.wait_log("code=OK");
    server.wait_log_count("code=UNAUTHENTICATED", 6);
    let log = server.log();
    for secret in [
        TOKEN,
        wrong,
        &TOKEN[..6],
        &TOKEN[7..],
        "eyvpi0",
        "PRIVATE KEY",
    ] {
        assert!(!log.contains(secret), "log contains {secret:?}:\n{log}");
    }
}

/// A CSR's DER with its last signature byte flipped.
fn bad_signature(csr_pem: &[u8]) -> Vec<u8> {
    let mut der = openssl::x509::X509Req::from_pem(csr_pem)
        .unwrap()
        .to_der()
        .unwrap();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    pem(&der, "CERTIFICATE REQUEST")
}

#[test]
fn malformed_csrs_are_invalid_argument_and_the_server_keeps_serving() {
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let (good, _) = CsrSpec::worker(KeyType::Ed25519).build();
    let der = openssl::x509::X509Req::from_pem(&good)
        .unwrap()
        .to_der()
        .unwrap();
    let (rsa1024, _) = CsrSpec::worker(KeyType::Rsa(1024)).build();
    let half = good[..good.len() / 2].to_vec();
    let mut truncated_body = good.clone();
    let cut = truncated_body.len() - 60;
    truncated_body.drain(cut - 40..cut);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "csr is empty"),
        ("not PEM", b"hello, signer".to_vec(), "csr is not PEM"),
        ("DER", der, "csr is not PEM"),
        ("truncated", half, "csr PEM block has no END line"),
        (
            "bytes cut from the middle",
            truncated_body,
            "csr PEM does not decode",
        ),
        (
            "wrong label",
            setup.ca.cert_pem(),
            "\"CERTIFICATE\" PEM block",
        ),
        (
            "bad signature",
            bad_signature(&good),
            "signature does not verify",
        ),
        ("RSA-1024", rsa1024, "RSA-1024"),
    ];
    for (name, csr, text) in cases {
        let r = call(&client, &csr);
        if let Err(s) = &r {
            assert_eq!(
                s.code(),
                RpcStatusCode::INVALID_ARGUMENT,
                "{name}: {}",
                s.message()
            );
        }
        expect(r, RpcStatusCode::INVALID_ARGUMENT, text);
        call(&client, &good).unwrap_or_else(|s| panic!("good call after {name} failed: {s:?}"));
    }
    server.wait_log_count("code=INVALID_ARGUMENT", 8);
}

#[test]
fn oversized_message_is_refused_by_size() {
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let huge = vec![b'A'; 100 * 1024];
    let err = call(&client, &huge).expect_err("over the 64 KiB cap");
    assert_eq!(
        err.code(),
        RpcStatusCode::RESOURCE_EXHAUSTED,
        "{}",
        err.message()
    );
    let (good, _) = CsrSpec::worker(KeyType::Ed25519).build();
    call(&client, &good).expect("still serving");
}

#[test]
fn concurrent_good_and_bad_callers_do_not_disturb_each_other() {
    // Throttling is tested on its own (tests/policy.rs); here it would only
    // make the bad callers' statuses depend on timing.
    let setup = Setup::new(KeyType::EcP256)
        .arg("--auth-fail-limit")
        .arg("100000");
    let server = setup.start();
    let trust = setup.ca.cert_pem();
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let addr = server.addr.to_string();
            let trust = trust.clone();
            std::thread::spawn(move || {
                let client = client(&addr, &trust);
                let (good, _) = CsrSpec::worker(KeyType::EcP256).build();
                for _ in 0..10 {
                    if i % 2 == 0 {
                        call(&client, &good).expect("good caller served");
                    } else {
                        let r = call_with(&client, &[b"nope"], &good);
                        assert_eq!(r.err().map(|s| s.code()), Some(RpcStatusCode::UNAUTHENTICATED));
                        let r = call(&client, b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
                        assert_eq!(r.err().map(|s| s.code()), Some(RpcStatusCode::INVALID_ARGUMENT));
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    server.wait_log_count("code=OK", 30);
}
