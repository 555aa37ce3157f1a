//! FIPS mode against a real OpenSSL FIPS provider (3.0.8, built by
//! scripts/fips-provider.sh, which scripts/test.sh runs first): the server's
//! TLS and signing run on it, and non-approved keys are refused.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use grpcio::RpcStatusCode;
use openssl::x509::X509;
use talos_csr_signer::pki::keys::KeyType;

fn provider_dir() -> PathBuf {
    let dir = std::env::var_os("TALOS_FIPS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/talos-csr-signer/fips-3.0.8")
        });
    assert!(
        dir.join("fips.so").exists() && dir.join("openssl-fips.cnf").exists(),
        "no FIPS provider in {}: run scripts/fips-provider.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// OPENSSL_MODULES and OPENSSL_CONF as an operator sets them for a FIPS host.
fn fips_env(conf: &str) -> Vec<(String, String)> {
    let dir = provider_dir();
    vec![
        ("OPENSSL_MODULES".into(), dir.display().to_string()),
        ("OPENSSL_CONF".into(), dir.join(conf).display().to_string()),
    ]
}

/// A config that defines the FIPS module (its MAC) and the default provider,
/// but leaves fips=yes to `--fips`.
fn include_only_conf(dir: &TempDir) -> (String, String) {
    let p = provider_dir();
    let path = dir.write(
        "include-only.cnf",
        format!(
            "openssl_conf = openssl_init\n.include {}/fipsmodule.cnf\n[openssl_init]\nproviders = provider_sect\n\
             [provider_sect]\nfips = fips_sect\ndefault = default_sect\n[default_sect]\nactivate = 1\n",
            p.display()
        )
        .as_bytes(),
    );
    ("OPENSSL_CONF".into(), path.display().to_string())
}

fn s_client(addr: &str, ca: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            addr,
            "-CAfile",
            &ca.display().to_string(),
            "-alpn",
            "h2",
            "-brief",
        ])
        .args(extra)
        .env_remove("OPENSSL_CONF")
        .env_remove("OPENSSL_MODULES")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = output_text(&out);
    (text.contains("CONNECTION ESTABLISHED"), text)
}

#[test]
fn ecdsa_ca_signs_under_the_fips_provider_with_approved_tls() {
    let mut setup = Setup::new(KeyType::EcP256)
        .arg("--fips")
        .arg("--metrics-listen")
        .arg("127.0.0.1:0");
    setup.env = fips_env("openssl-fips.cnf");
    let server = setup.start();
    server.wait_log("FIPS mode: on via OPENSSL_CONF (provider fips 3.0.8");
    let spec = CsrSpec::worker(KeyType::EcP256);
    let (csr, key) = spec.build();
    let resp = call(&server.client(&setup.ca.cert_pem()), &csr).expect("signed in FIPS mode");
    let leaf = X509::from_pem(&resp.crt).unwrap();
    assert!(leaf.public_key().unwrap().public_eq(&key));
    verify_chain(&leaf, &X509::stack_from_pem(&resp.ca).unwrap()).unwrap();

    // The client offers non-approved choices first; the server must pick
    // approved ones (AES-GCM, ECDHE on P-256, ECDSA with SHA-256).
    let ca = setup.dir.path("ca.crt");
    let addr = server.addr.to_string();
    let (ok, text) = s_client(
        &addr,
        &ca,
        &[
            "-groups",
            "X25519:P-256:P-384",
            "-ciphersuites",
            "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("Ciphersuite: TLS_AES_128_GCM_SHA256"),
        "{text}"
    );
    assert!(text.contains("Server Temp Key: ECDH, prime256v1"), "{text}");
    assert!(
        text.contains("Signature type: ECDSA") && text.contains("Hash used: SHA256"),
        "{text}"
    );
    // Offered only non-approved parameters, the handshake fails.
    assert!(
        !s_client(&addr, &ca, &["-groups", "X25519"]).0,
        "X25519 accepted in FIPS mode"
    );
    assert!(
        !s_client(
            &addr,
            &ca,
            &["-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"]
        )
        .0,
        "ChaCha20 accepted"
    );
    // A Talos worker (Go's crypto/tls, X25519 first) is asked for P-256:
    // the groups src/server/tls.rs sets in FIPS mode are approved ones only.
    let (proxy, seen) = recording_proxy(server.addr);
    let out = std::process::Command::new(go_compat_bin())
        .args(["-signer", &proxy.to_string(), "-ca"])
        .arg(&ca)
        .arg("-token-file")
        .arg(setup.dir.path("token"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let hellos = server_hellos(&seen.lock().unwrap()[0]);
    println!("Go worker in FIPS mode: {hellos:?}");
    assert_eq!(hellos.groups.last(), Some(&0x0017), "{hellos:?}");
    assert!(
        !hellos.groups.contains(&0x001d),
        "X25519 in FIPS mode: {hellos:?}"
    );

    let metrics_addr = server.log_value("metrics listening on http://");
    let (_, body) = http_get(metrics_addr.trim_end_matches("/metrics"), "/metrics");
    assert_eq!(metric(&body, "fips_mode"), Some(1.0));
}

#[test]
fn fips_flag_loads_the_provider_itself() {
    let dir = TempDir::new("fipsconf");
    let conf = include_only_conf(&dir);
    let modules = fips_env("openssl-fips.cnf").remove(0);
    // Without --fips: the default provider does the work.
    let mut plain = Setup::new(KeyType::EcP384);
    plain.env = vec![modules.clone(), conf.clone()];
    let server = plain.start();
    server.wait_log("FIPS mode: off (provider ");
    drop(server);
    // With --fips: fips=yes, from the fips provider.
    let mut setup = Setup::new(KeyType::EcP384).arg("--fips");
    setup.env = vec![modules, conf];
    let server = setup.start();
    server.wait_log("FIPS mode: on via --fips (provider fips 3.0.8");
    call(
        &server.client(&setup.ca.cert_pem()),
        &CsrSpec::worker(KeyType::EcP384).build().0,
    )
    .expect("signed");
    // check reports it too.
    let mut args = setup.args.clone();
    args[0] = "check".into();
    let (status, out, err) = run_binary(&args, &setup.env, Duration::from_secs(20));
    assert!(status.success(), "{err}");
    assert!(
        out.contains("fips            on via --fips (provider fips 3.0.8; fips=yes"),
        "{out}"
    );
}

#[test]
fn ed25519_ca_is_refused_unless_allowed() {
    let mut setup = Setup::new(KeyType::Ed25519).arg("--fips");
    setup.env = fips_env("openssl-fips.cnf");
    let (status, _, err) = run_binary(&setup.args, &setup.env, Duration::from_secs(20));
    // EX_CONFIG: a configuration error, which systemd does not restart.
    assert_eq!(status.code(), Some(78));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("the machine CA is Ed25519, refused in FIPS mode")
            && err.contains("EdDSA as non-approved")
            && err.contains("--fips-allow-ed25519"),
        "{err}"
    );

    let setup = setup.arg("--fips-allow-ed25519");
    let server = setup.start();
    server.wait_log("FIPS mode: on");
    let resp = call(
        &server.client(&setup.ca.cert_pem()),
        &CsrSpec::worker(KeyType::Ed25519).build().0,
    )
    .expect("allowed");
    verify_chain(
        &X509::from_pem(&resp.crt).unwrap(),
        &X509::stack_from_pem(&resp.ca).unwrap(),
    )
    .unwrap();
}

#[test]
fn weak_and_unapproved_csrs_are_refused() {
    let mut setup = Setup::new(KeyType::Rsa(2048)).arg("--fips");
    setup.env = fips_env("openssl-fips.cnf");
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let (rsa1024, _) = CsrSpec::worker(KeyType::Rsa(1024)).build();
    let err = call(&client, &rsa1024).unwrap_err();
    assert_eq!(err.code(), RpcStatusCode::INVALID_ARGUMENT);
    assert!(err.message().contains("RSA-1024"), "{}", err.message());
    let err = call(&client, &CsrSpec::worker(KeyType::Ed25519).build().0).unwrap_err();
    assert_eq!(err.code(), RpcStatusCode::INVALID_ARGUMENT);
    assert!(
        err.message()
            .contains("CSR key is Ed25519; allowed: ecdsa-p256, ecdsa-p384, rsa"),
        "{}",
        err.message()
    );
    call(&client, &CsrSpec::worker(KeyType::Rsa(2048)).build().0).expect("RSA-2048 is approved");
    call(&client, &CsrSpec::worker(KeyType::EcP256).build().0).expect("P-256 is approved");
}

#[test]
fn a_missing_provider_stops_startup_with_directions() {
    let empty = TempDir::new("nomodules");
    let mut setup = Setup::new(KeyType::EcP256).arg("--fips");
    setup.env = vec![
        ("OPENSSL_MODULES".into(), empty.0.display().to_string()),
        ("OPENSSL_CONF".into(), "/dev/null".into()),
    ];
    let (status, _, err) = run_binary(&setup.args, &setup.env, Duration::from_secs(20));
    // EX_CONFIG: a configuration error, which systemd does not restart.
    assert_eq!(status.code(), Some(78));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("FIPS mode: the OpenSSL fips provider cannot be loaded"),
        "{err}"
    );
    assert!(
        err.contains("OPENSSL_MODULES")
            && err.contains("OPENSSL_CONF")
            && err.contains("openssl fipsinstall"),
        "{err}"
    );
}
