//! Startup refusals, the TLS endpoint itself, and shutdown.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::{X509ExtendedKeyUsage, X509};
use talos_csr_signer::pki::keys::KeyType;
use talos_csr_signer::pki::{cert_sans, San};

/// Runs `serve` with `setup`'s arguments changed by `edit`; expects a refusal
/// whose single stderr line contains every `needles` entry.
/// A configuration error: one line, exit status 78 (EX_CONFIG, which the
/// systemd unit does not restart).
fn refused(
    setup: &Setup,
    edit: impl FnOnce(&mut Vec<String>, &mut Vec<(String, String)>),
    needles: &[&str],
) {
    refused_with(78, setup, edit, needles)
}

fn refused_with(
    code: i32,
    setup: &Setup,
    edit: impl FnOnce(&mut Vec<String>, &mut Vec<(String, String)>),
    needles: &[&str],
) {
    let mut args = setup.args.clone();
    let mut env = setup.env.clone();
    edit(&mut args, &mut env);
    let (status, _out, err) = run_binary(&args, &env, Duration::from_secs(20));
    assert_eq!(
        status.code(),
        Some(code),
        "should refuse to start: {args:?}\n{err}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got:\n{err}");
    assert!(lines[0].starts_with("talos-csr-signer: error: "), "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "{:?} missing in {err}", n);
    }
    assert!(
        !err.contains("PRIVATE KEY") && !err.contains(TOKEN),
        "secret in error: {err}"
    );
}

fn set(args: &mut [String], flag: &str, value: &str) {
    let i = args.iter().position(|a| a == flag).unwrap();
    args[i + 1] = value.to_string();
}

#[test]
fn bad_configuration_stops_startup_with_one_clear_line() {
    let setup = Setup::new(KeyType::Ed25519);
    let dir = &setup.dir;
    let missing = dir.path("nope.crt").display().to_string();
    refused(
        &setup,
        |a, _| set(a, "--ca-cert", &missing),
        &["cannot read CA certificate", &missing, "CA_CERT_PATH"],
    );

    // A leaf certificate is not a CA.
    let mut leaf = CaSpec::new(KeyType::Ed25519);
    leaf.is_ca = false;
    let leaf = leaf.build();
    let leaf_crt = dir
        .write("leaf.crt", &leaf.cert_pem())
        .display()
        .to_string();
    let leaf_key = dir.write("leaf.key", &leaf.key_pem()).display().to_string();
    refused(
        &setup,
        |a, _| {
            set(a, "--ca-cert", &leaf_crt);
            set(a, "--ca-key", &leaf_key)
        },
        &["is not a CA certificate", &leaf_crt],
    );

    // A CA whose keyUsage forbids certificate signing.
    let mut nosign = CaSpec::new(KeyType::Ed25519);
    nosign.cert_sign = false;
    let nosign = nosign.build();
    let ns_crt = dir
        .write("ns.crt", &nosign.cert_pem())
        .display()
        .to_string();
    let ns_key = dir.write("ns.key", &nosign.key_pem()).display().to_string();
    refused(
        &setup,
        |a, _| {
            set(a, "--ca-cert", &ns_crt);
            set(a, "--ca-key", &ns_key)
        },
        &["keyCertSign"],
    );

    // Key from another CA.
    let other = Ca::new(KeyType::Ed25519);
    let other_key = dir
        .write("other.key", &other.key_pem())
        .display()
        .to_string();
    refused(
        &setup,
        |a, _| set(a, "--ca-key", &other_key),
        &["does not match", &other_key],
    );

    // Expired CA.
    let mut old = CaSpec::new(KeyType::EcP256);
    old.not_before = now_unix() - 86_400 * 30;
    old.not_after = now_unix() - 60;
    let old = old.build();
    let old_crt = dir.write("old.crt", &old.cert_pem()).display().to_string();
    let old_key = dir.write("old.key", &old.key_pem()).display().to_string();
    refused(
        &setup,
        |a, _| {
            set(a, "--ca-cert", &old_crt);
            set(a, "--ca-key", &old_key)
        },
        &["expired", &old_crt],
    );

    // Not a key at all; an encrypted key.
    let junk = dir.write("junk.key", b"hello").display().to_string();
    refused(
        &setup,
        |a, _| set(a, "--ca-key", &junk),
        &["CA key", &junk, "no PEM block"],
    );
    let enc = setup
        .ca
        .key
        .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_128_cbc(), b"pw")
        .unwrap();
    let enc = dir.write("enc.key", &enc).display().to_string();
    refused(&setup, |a, _| set(a, "--ca-key", &enc), &["encrypted"]);

    // Weak RSA CA.
    let weak = Ca::new(KeyType::Rsa(1024));
    let weak_crt = dir
        .write("weak.crt", &weak.cert_pem())
        .display()
        .to_string();
    let weak_key = dir.write("weak.key", &weak.key_pem()).display().to_string();
    refused(
        &setup,
        |a, _| {
            set(a, "--ca-cert", &weak_crt);
            set(a, "--ca-key", &weak_key)
        },
        &["RSA-1024"],
    );

    // Tokens: empty file, empty env, none, both.
    let empty = dir.write("empty-token", b"\n").display().to_string();
    refused(
        &setup,
        |a, _| set(a, "--token-file", &empty),
        &["token file", &empty, "holds no token"],
    );
    let drop_token_file = |a: &mut Vec<String>| {
        let i = a.iter().position(|x| x == "--token-file").unwrap();
        a.drain(i..i + 2);
    };
    refused(
        &setup,
        |a, e| {
            drop_token_file(a);
            e.push(("TALOS_TOKEN".into(), "".into()))
        },
        &["TALOS_TOKEN is empty"],
    );
    refused(
        &setup,
        |a, _| drop_token_file(a),
        &["no machine token", "TALOS_TOKEN"],
    );
    refused(
        &setup,
        |_, e| e.push(("TALOS_TOKEN".into(), TOKEN.into())),
        &["both"],
    );

    // Bad IPs are an error, never dropped; flags and env alike.
    refused(
        &setup,
        |a, _| {
            a.push("--server-ips".into());
            a.push("10.0.0.1, vip.example".into())
        },
        &["SERVER_IPS", "vip.example", "not an IP"],
    );
    refused(
        &setup,
        |_, e| e.push(("SERVER_IPS".into(), "10.0.0.999".into())),
        &["SERVER_IPS", "10.0.0.999"],
    );
    refused(
        &setup,
        |a, _| {
            a.push("--accepted-ca".into());
            a.push(missing.clone())
        },
        &["accepted CA", &missing],
    );
    refused(
        &setup,
        |a, _| {
            a.push("--cert-validity".into());
            a.push("forever".into())
        },
        &["CERT_VALIDITY"],
    );
    // Shorter than a Talos worker's renewal interval plus margin: `serve`
    // and `check` both refuse it, naming the setting.
    // (`check` reports with exit status 1.)
    for (first, code) in [("serve", 78), ("check", 1)] {
        refused_with(
            code,
            &setup,
            |a, e| {
                a[0] = first.into();
                e.push(("CERT_VALIDITY".into(), "6h".into()))
            },
            &[
                "CERT_VALIDITY",
                "6h is shorter than Talos workers can live with",
                "13h",
            ],
        );
    }
}

#[test]
fn occupied_port_is_a_clear_error() {
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let taken = server.addr.to_string();
    // Exit status 1: the machine's doing (the port may free up), so systemd
    // may restart it.
    refused_with(
        1,
        &setup,
        |a, _| set(a, "--listen", &taken),
        &["cannot listen on", &taken],
    );
}

fn tls_handshake(addr: &str, trust: &[u8], host: &str) -> openssl::ssl::SslStream<TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    for ca in X509::stack_from_pem(trust).unwrap() {
        b.cert_store_mut().add_cert(ca).unwrap();
    }
    b.set_verify(SslVerifyMode::PEER);
    b.set_alpn_protos(b"\x02h2").unwrap();
    let connector = b.build();
    let tcp = TcpStream::connect(addr).unwrap();
    // `connect` checks the name: for an IP it requires a matching IP SAN.
    connector
        .connect(host, tcp)
        .expect("TLS handshake verified against the machine CA")
}

#[test]
fn serving_endpoint_negotiates_h2_with_a_p256_cert_from_the_machine_ca() {
    let setup = Setup::new(KeyType::Ed25519)
        .arg("--server-ips")
        .arg("10.10.10.101, fd00::101")
        .arg("--server-dns-names")
        .arg("cp.example.org");
    let server = setup.start();
    let tls = tls_handshake(&server.addr.to_string(), &setup.ca.cert_pem(), "127.0.0.1");
    assert_eq!(
        tls.ssl().selected_alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN h2"
    );
    let cert = tls.ssl().peer_certificate().unwrap();
    assert_eq!(
        KeyType::of(&cert.public_key().unwrap()),
        Some(KeyType::EcP256)
    );
    assert_eq!(
        cert.extended_key_usage(),
        Some(X509ExtendedKeyUsage::SSL_SERVER)
    );
    let sans = cert_sans(&cert);
    for want in ["10.10.10.101", "fd00::101", "127.0.0.1", "::1"] {
        assert!(
            sans.contains(&San::Ip(want.parse().unwrap())),
            "{want} missing: {sans:?}"
        );
    }
    assert!(sans.contains(&San::Dns("cp.example.org".into())));
    verify_chain(&cert, std::slice::from_ref(&setup.ca.cert)).unwrap();
    assert!(
        server
            .log()
            .contains("SANs=[10.10.10.101,fd00::101,cp.example.org,127.0.0.1,::1]"),
        "{}",
        server.log()
    );

    // The IPv6 loopback endpoint verifies too.
    let v6 = Setup::with_ca(Ca {
        cert: setup.ca.cert.clone(),
        key: setup.ca.key.clone(),
    });
    let mut args = v6.args.clone();
    set(&mut args, "--listen", "[::1]:0");
    let v6srv = Server::start(&args, &[]);
    let tls = tls_handshake(&v6srv.addr.to_string(), &setup.ca.cert_pem(), "::1");
    assert_eq!(tls.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
}

#[test]
fn serving_cert_is_renewed_at_half_life_without_restart() {
    let setup = Setup::new(KeyType::Ed25519)
        .arg("--serving-cert-validity")
        .arg("4s");
    let server = setup.start();
    let addr = server.addr.to_string();
    let serial = |tls: &openssl::ssl::SslStream<TcpStream>| {
        tls.ssl()
            .peer_certificate()
            .unwrap()
            .serial_number()
            .to_bn()
            .unwrap()
    };
    let first = serial(&tls_handshake(&addr, &setup.ca.cert_pem(), "127.0.0.1"));
    assert_eq!(
        first,
        serial(&tls_handshake(&addr, &setup.ca.cert_pem(), "127.0.0.1")),
        "same cert before half-life"
    );
    // Renewed after half its lifetime: a new handshake sees a new serial.
    wait_until(
        Duration::from_secs(20),
        "the serving certificate renewed",
        || serial(&tls_handshake(&addr, &setup.ca.cert_pem(), "127.0.0.1")) != first,
    );
    server.wait_log("serving certificate replaced");
    // And gRPC calls keep working over the new certificate.
    let client = server.client(&setup.ca.cert_pem());
    let (csr, _) = CsrSpec::worker(KeyType::Ed25519).build();
    call(&client, &csr).expect("served with the renewed certificate");
}

#[test]
fn sigterm_finishes_calls_in_flight_and_exits_zero() {
    // RSA-4096 signing is slow enough to keep a queue of calls in flight.
    let setup = Setup::new(KeyType::Rsa(4096));
    let mut args = setup.args.clone();
    set(&mut args, "--workers", "1");
    let mut server = Server::start(&args, &[]);
    let client = server.client(&setup.ca.cert_pem());
    let (csr, _) = CsrSpec::worker(KeyType::EcP256).build();
    // 12 calls: below the per-connection stream limit (16), so all of them
    // reach the server before SIGTERM rather than waiting in the client.
    let pending = start_calls(&client, &csr, 12);
    server.wait_log("code=OK");
    server.signal(SIGTERM);
    let results: Vec<_> = pending
        .into_iter()
        .map(futures_executor::block_on)
        .collect();
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "calls lost on SIGTERM: {failed:?}");
    server.wait_log_count("code=OK", 12);
    server.wait_log("stopped");
    assert!(
        server.log().contains("received SIGTERM"),
        "{}",
        server.log()
    );
}

#[test]
fn sigint_exits_zero_when_idle() {
    let setup = Setup::new(KeyType::Ed25519);
    let mut server = setup.start();
    server.signal(SIGINT);
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

/// Under journald (stderr is the stream JOURNAL_STREAM names) every line
/// carries its syslog priority as sd-daemon's `<N>` prefix and no timestamp
/// of its own; anywhere else (the variable inherited, stderr elsewhere) the
/// usual format stays.
#[test]
fn journald_lines_carry_their_priority() {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixStream;
    let setup = Setup::new(KeyType::Ed25519);
    let run = |args: &[String], journal: bool| -> String {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let meta = std::fs::metadata(format!("/proc/self/fd/{}", {
            use std::os::unix::io::AsRawFd;
            theirs.as_raw_fd()
        }))
        .unwrap();
        let stream = if journal {
            format!("{}:{}", meta.dev(), meta.ino())
        } else {
            "1:2".to_string()
        };
        let mut child = std::process::Command::new(BIN)
            .args(args)
            .env("JOURNAL_STREAM", stream)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(std::os::fd::OwnedFd::from(
                theirs,
            )))
            .spawn()
            .unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        let mut text = String::new();
        ours.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = ours.read_to_string(&mut text);
        text
    };
    // A bad CA path: one error line, priority 3.
    let mut args = setup.args.clone();
    set(&mut args, "--ca-cert", "/nonexistent/ca.crt");
    let text = run(&args, true);
    assert!(
        text.starts_with(
            "<3>talos-csr-signer: error: cannot read CA certificate /nonexistent/ca.crt"
        ),
        "{text}"
    );
    // A warning and then an error: each with its own priority, no timestamps.
    args.extend(["--talos-token".into(), TOKEN.into()]);
    let i = args.iter().position(|a| a == "--token-file").unwrap();
    args.drain(i..i + 2);
    let text = run(&args, true);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("<4>talos_csr_signer::cli::token: --talos-token puts"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("<3>talos-csr-signer: error:"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
    // JOURNAL_STREAM naming another stream: the usual format.
    let text = run(&args, false);
    assert!(text.starts_with("[20") && text.contains(" WARN "), "{text}");
}
