//! What the README promises: `serve --dev` prints a `request` command, and that
//! command gets and verifies a certificate. Also `request` as a deployment check.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;
use openssl::x509::X509;
use talos_csr_signer::pki::keys::KeyType;

fn dev_server(dir: &TempDir) -> Server {
    let args: Vec<String> = [
        "serve",
        "--dev",
        "--dev-dir",
        &dir.0.display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Server::start(&args, &[])
}

/// The `request …` line the dev server printed, as arguments.
fn printed_request(server: &Server) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = server
            .log()
            .lines()
            .find(|l| l.contains(" request --endpoint "))
        {
            let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            assert_eq!(words[0], BIN, "prints this binary's path");
            return words[1..].to_vec();
        }
        assert!(
            Instant::now() < deadline,
            "no request command printed:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn dev_mode_round_trip_with_the_printed_command() {
    let dir = TempDir::new("dev");
    let server = dev_server(&dir);
    let args = printed_request(&server);
    assert!(
        args.contains(&format!("127.0.0.1:{}", server.addr.port())),
        "{args:?}"
    );

    // Throwaway material: an Ed25519 CA with O=talos and a Talos-shaped token, private files 0600.
    let ca = X509::from_pem(&std::fs::read(dir.path("ca.crt")).unwrap()).unwrap();
    assert_eq!(
        KeyType::of(&ca.public_key().unwrap()),
        Some(KeyType::Ed25519)
    );
    assert_eq!(
        talos_csr_signer::pki::name_to_string(ca.subject_name()),
        "O=talos"
    );
    assert!(talos_csr_signer::pki::is_ca(&ca));
    for f in ["ca.key", "token"] {
        let mode = std::fs::metadata(dir.path(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let token = std::fs::read_to_string(dir.path("token")).unwrap();
    let (a, b) = token.trim().split_once('.').unwrap();
    assert_eq!((a.len(), b.len()), (6, 16));

    let out = TempDir::new("dev-out");
    let mut with_out = args.clone();
    with_out.extend(["--out".to_string(), out.0.display().to_string()]);
    let (status, stdout, stderr) = run_binary(&with_out, &[], Duration::from_secs(30));
    assert!(status.success(), "request failed:\n{stdout}\n{stderr}");
    for check in [
        "certificate",
        "key",
        "chain",
        "subject",
        "SANs",
        "usage",
        "validity",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(check)),
            "{check} not ok:\n{stdout}"
        );
    }
    assert!(stdout.contains("checks out"), "{stdout}");

    // What it saved is what a worker's apid would serve.
    let crt = X509::from_pem(&std::fs::read(out.path("crt.pem")).unwrap()).unwrap();
    let bundle = X509::stack_from_pem(&std::fs::read(out.path("ca.pem")).unwrap()).unwrap();
    verify_chain(&crt, &bundle).unwrap();
    let key =
        talos_csr_signer::pki::pem::parse_private_key(&std::fs::read(out.path("key.pem")).unwrap())
            .unwrap();
    assert!(crt.public_key().unwrap().public_eq(&key));
    assert_eq!(
        std::fs::metadata(out.path("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    server.wait_log("code=OK cn=\"dev-worker\"");
    assert!(
        !server.log().contains(token.trim()),
        "token printed or logged"
    );
}

#[test]
fn request_exits_nonzero_when_the_signer_refuses_or_tls_does_not_verify() {
    let dir = TempDir::new("dev-bad");
    let server = dev_server(&dir);
    let mut args = printed_request(&server);
    let i = args.iter().position(|a| a == "--token-file").unwrap();
    args.splice(
        i..i + 2,
        ["--token".to_string(), "wrong0.0000000000000000".to_string()],
    );
    let (status, stdout, stderr) = run_binary(&args, &[], Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("UNAUTHENTICATED") && stderr.contains("invalid token"),
        "{stderr}"
    );

    // Trusting another CA: the TLS handshake must fail, and so must the command.
    let other = Ca::new(KeyType::Ed25519);
    let other_ca = dir.write("other.crt", &other.cert_pem());
    let mut args = printed_request(&server);
    let i = args.iter().position(|a| a == "--ca").unwrap();
    args[i + 1] = other_ca.display().to_string();
    let (status, _, stderr) = run_binary(&args, &[], Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("UNAVAILABLE") || stderr.contains("failed"),
        "{stderr}"
    );
}

#[test]
fn request_uses_the_ca_key_type_and_honours_key_type() {
    let setup = Setup::new(KeyType::EcP384);
    let server = setup.start();
    let ca = setup.dir.path("ca.crt").display().to_string();
    let token = setup.dir.path("token").display().to_string();
    let endpoint = server.addr.to_string();
    for (extra, expect) in [
        (None, "ECDSA P-384"),
        (Some("rsa-2048"), "RSA-2048"),
        (Some("ed25519"), "Ed25519"),
    ] {
        let mut args: Vec<String> = [
            "request",
            "--endpoint",
            &endpoint,
            "--ca",
            &ca,
            "--token-file",
            &token,
            "--cn",
            "w1",
            "--ip",
            "10.0.0.9",
            "--dns",
            "w1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(kt) = extra {
            args.extend(["--key-type".to_string(), kt.to_string()]);
        }
        let (status, stdout, stderr) = run_binary(&args, &[], Duration::from_secs(30));
        assert!(status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("ok") && l.contains(expect)),
            "{expect}:\n{stdout}"
        );
    }
}
