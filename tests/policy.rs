//! Signing policy, token rotation, throttling, bounded work and the audit
//! trail, each against the real binary over real TLS.

mod common;

use std::time::{Duration, Instant};

use common::*;
use grpcio::RpcStatusCode;
use openssl::x509::X509;
use talos_csr_signer::pki::keys::KeyType;
use talos_csr_signer::proto::security_grpc::SecurityServiceClient;

fn worker_csr(ips: &[&str], dns: &[&str]) -> Vec<u8> {
    let mut spec = CsrSpec::worker(KeyType::Ed25519);
    spec.ips = ips.iter().map(|s| s.to_string()).collect();
    spec.dns = dns.iter().map(|s| s.to_string()).collect();
    spec.build().0
}

fn expect_status(
    r: Result<talos_csr_signer::proto::security::CertificateResponse, grpcio::RpcStatus>,
    code: RpcStatusCode,
    text: &str,
) {
    let s = r
        .err()
        .unwrap_or_else(|| panic!("expected {code:?} ({text}), got a certificate"));
    assert_eq!(s.code(), code, "{}", s.message());
    assert!(
        s.message().contains(text),
        "{:?} lacks {text:?}",
        s.message()
    );
}

#[test]
fn allowed_ip_and_dns_sans() {
    let setup = Setup::new(KeyType::Ed25519)
        .arg("--allowed-ip-sans")
        .arg("10.5.0.0/16, fd00:5::/64")
        .arg("--allowed-dns-sans")
        .arg("*.nodes.example,worker-1");
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let ok = worker_csr(
        &["10.5.0.7", "fd00:5::7", "127.0.0.1", "::1"],
        &["worker-1", "w1.nodes.example"],
    );
    call(&client, &ok).expect("inside the policy");
    expect_status(
        call(
            &client,
            &worker_csr(&["10.5.0.7", "10.6.0.1"], &["worker-1"]),
        ),
        RpcStatusCode::PERMISSION_DENIED,
        "IP SAN 10.6.0.1 is outside --allowed-ip-sans",
    );
    expect_status(
        call(&client, &worker_csr(&["fd00:6::1"], &[])),
        RpcStatusCode::PERMISSION_DENIED,
        "fd00:6::1",
    );
    expect_status(
        call(&client, &worker_csr(&["10.5.0.7"], &["evil.example"])),
        RpcStatusCode::PERMISSION_DENIED,
        "DNS SAN evil.example is outside --allowed-dns-sans",
    );
    expect_status(
        call(&client, &worker_csr(&[], &["nodes.example"])),
        RpcStatusCode::PERMISSION_DENIED,
        "nodes.example",
    );
    // `*.suffix` allows names below the suffix, never a wildcard certificate
    // covering them all.
    for wildcard in ["*.nodes.example", "*", "a.*.nodes.example"] {
        expect_status(
            call(&client, &worker_csr(&["10.5.0.7"], &[wildcard])),
            RpcStatusCode::INVALID_ARGUMENT,
            "is a wildcard",
        );
    }
    call(&client, &ok).expect("still serving");

    // A pattern that is not `*.` and a host name stops startup, naming it.
    let plain = Setup::new(KeyType::Ed25519);
    for bad in ["*", "*.*.nodes.example", "a.*.example"] {
        let mut args = plain.args.clone();
        args.extend(["--allowed-dns-sans".to_string(), bad.to_string()]);
        let (status, _, err) = run_binary(&args, &[], Duration::from_secs(20));
        assert_eq!(status.code(), Some(78), "{bad}: {err}");
        assert!(
            err.contains("ALLOWED_DNS_SANS: ")
                && err.contains("is not a DNS name or *.suffix pattern"),
            "{bad}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }

    // The same rules from the environment.
    let mut env_setup = Setup::with_ca(Ca {
        cert: setup.ca.cert.clone(),
        key: setup.ca.key.clone(),
    });
    env_setup
        .env
        .push(("ALLOWED_IP_SANS".into(), "10.5.0.0/16".into()));
    env_setup
        .env
        .push(("ALLOWED_DNS_SANS".into(), "*.nodes.example".into()));
    let server = env_setup.start();
    let client = server.client(&setup.ca.cert_pem());
    call(&client, &worker_csr(&["10.5.9.9"], &["a.nodes.example"])).unwrap();
    expect_status(
        call(&client, &worker_csr(&["10.6.0.1"], &[])),
        RpcStatusCode::PERMISSION_DENIED,
        "10.6.0.1",
    );
}

#[test]
fn peer_ip_binding() {
    let setup = Setup::new(KeyType::Ed25519).arg("--peer-ip-must-match");
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    call(&client, &worker_csr(&["10.5.0.7", "127.0.0.1"], &["w"]))
        .expect("caller 127.0.0.1 is listed");
    expect_status(
        call(&client, &worker_csr(&["10.5.0.7"], &["w"])),
        RpcStatusCode::PERMISSION_DENIED,
        "caller address 127.0.0.1 is not among the CSR's IP SANs",
    );
    // Off (the default): the same CSR is signed.
    let plain = Setup::with_ca(Ca {
        cert: setup.ca.cert.clone(),
        key: setup.ca.key.clone(),
    });
    let server = plain.start();
    call(
        &server.client(&setup.ca.cert_pem()),
        &worker_csr(&["10.5.0.7"], &["w"]),
    )
    .expect("no peer binding by default");

    // From 127.0.0.2 (through a forwarder bound to it), 127.0.0.1 is someone else's.
    let mut bound = Setup::with_ca(Ca {
        cert: setup.ca.cert.clone(),
        key: setup.ca.key.clone(),
    });
    bound.env.push(("PEER_IP_MUST_MATCH".into(), "true".into()));
    let server = bound.start();
    let via = source_proxy(server.addr, "127.0.0.2".parse().unwrap());
    let client = common::client(&via.to_string(), &setup.ca.cert_pem());
    expect_status(
        call(&client, &worker_csr(&["127.0.0.1"], &[])),
        RpcStatusCode::PERMISSION_DENIED,
        "caller address 127.0.0.2",
    );
    call(&client, &worker_csr(&["127.0.0.2"], &[])).expect("own address");
}

#[test]
fn ipv6_loopback_peer() {
    let setup = Setup::new(KeyType::Ed25519).arg("--peer-ip-must-match");
    let mut args = setup.args.clone();
    let i = args.iter().position(|a| a == "--listen").unwrap();
    args[i + 1] = "[::1]:0".into();
    let server = Server::start(&args, &[]);
    let client = common::client(&server.addr.to_string(), &setup.ca.cert_pem());
    call(&client, &worker_csr(&["::1"], &[])).expect("::1 asks for ::1");
    expect_status(
        call(&client, &worker_csr(&["127.0.0.1"], &[])),
        RpcStatusCode::PERMISSION_DENIED,
        "caller address ::1",
    );
    server.wait_log("peer=[::1]:");
}

#[test]
fn size_count_and_key_type_limits() {
    let setup = Setup::new(KeyType::Ed25519)
        .arg("--max-sans")
        .arg("3")
        .arg("--max-csr-bytes")
        .arg("1500")
        .arg("--allowed-key-types")
        .arg("ed25519,ecdsa-p256");
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    call(&client, &worker_csr(&["10.0.0.1", "127.0.0.1"], &["w"])).expect("3 SANs");
    expect_status(
        call(
            &client,
            &worker_csr(&["10.0.0.1", "10.0.0.2", "127.0.0.1"], &["w"]),
        ),
        RpcStatusCode::INVALID_ARGUMENT,
        "CSR has 4 SANs; the limit is 3",
    );
    let mut rsa = CsrSpec::worker(KeyType::Rsa(4096));
    rsa.ips.truncate(1);
    rsa.dns.truncate(1);
    let (rsa_csr, _) = rsa.build();
    assert!(rsa_csr.len() > 1500);
    expect_status(
        call(&client, &rsa_csr),
        RpcStatusCode::INVALID_ARGUMENT,
        "the limit is 1500",
    );
    let mut p384 = CsrSpec::worker(KeyType::EcP384);
    p384.ips.truncate(1);
    p384.dns.truncate(1);
    expect_status(
        call(&client, &p384.build().0),
        RpcStatusCode::INVALID_ARGUMENT,
        "allowed: ed25519, ecdsa-p256",
    );
    let mut p256 = CsrSpec::worker(KeyType::EcP256);
    p256.ips.truncate(1);
    p256.dns.truncate(1);
    call(&client, &p256.build().0).expect("P-256 allowed");
}

#[test]
fn max_validity_caps_whatever_else_is_set() {
    let setup = Setup::new(KeyType::Ed25519)
        .arg("--cert-validity")
        .arg("48h")
        .arg("--max-validity")
        .arg("14h");
    let server = setup.start();
    let resp = call(
        &server.client(&setup.ca.cert_pem()),
        &worker_csr(&["10.0.0.1"], &[]),
    )
    .unwrap();
    let leaf = X509::from_pem(&resp.crt).unwrap();
    let left = unix(leaf.not_after()) - now_unix();
    assert!((14 * 3600 - 60..=14 * 3600).contains(&left), "{left}s");
    server.wait_log("capped at --max-validity 14h");
}

#[test]
fn several_tokens_each_work_and_are_named_by_position() {
    let setup = Setup::new(KeyType::Ed25519);
    let old = "old0ab.aaaaaaaaaaaaaaaa";
    let new = "new0cd.bbbbbbbbbbbbbbbb";
    setup.dir.write(
        "token",
        format!("# rotation in progress\n{old}\n\n{new}\n").as_bytes(),
    );
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let csr = worker_csr(&["10.0.0.1"], &[]);
    call_with(&client, &[old.as_bytes()], &csr).expect("old token");
    call_with(&client, &[new.as_bytes()], &csr).expect("new token");
    expect_status(
        call(&client, &csr),
        RpcStatusCode::UNAUTHENTICATED,
        "invalid token",
    );
    server.wait_log("token=token#1");
    server.wait_log("token=token#2");
    server.wait_log("tokens=2");

    // The old one removed: it fails, the new one works.
    setup.dir.write("token", format!("{new}\n").as_bytes());
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    expect_status(
        call_with(&client, &[old.as_bytes()], &csr),
        RpcStatusCode::UNAUTHENTICATED,
        "invalid token",
    );
    call_with(&client, &[new.as_bytes()], &csr).expect("new token");

    // TALOS_TOKEN with several comma-separated tokens.
    let mut env_setup = Setup::with_ca(Ca {
        cert: setup.ca.cert.clone(),
        key: setup.ca.key.clone(),
    });
    let i = env_setup
        .args
        .iter()
        .position(|a| a == "--token-file")
        .unwrap();
    env_setup.args.drain(i..i + 2);
    env_setup
        .env
        .push(("TALOS_TOKEN".into(), format!("{old}, {new}")));
    let server = env_setup.start();
    let client = server.client(&setup.ca.cert_pem());
    call_with(&client, &[old.as_bytes()], &csr).unwrap();
    call_with(&client, &[new.as_bytes()], &csr).unwrap();
    server.wait_log("token=token#2");
    for t in [old, new, &old[..6], &new[..6]] {
        assert!(!server.log().contains(t), "{t} in log");
    }
}

#[test]
fn failed_tokens_throttle_that_address_only() {
    let setup = Setup::new(KeyType::Ed25519)
        .arg("--auth-fail-limit")
        .arg("3")
        .arg("--auth-cooldown")
        .arg("3s");
    let server = setup.start();
    let trust = setup.ca.cert_pem();
    let csr = worker_csr(&["10.0.0.1"], &[]);
    let from_1 = server.client(&trust);
    let from_2 = client(
        &source_proxy(server.addr, "127.0.0.2".parse().unwrap()).to_string(),
        &trust,
    );
    let wrong: &[&[u8]] = &[b"wrong0.0000000000000000"];
    for _ in 0..3 {
        expect_status(
            call_with(&from_1, wrong, &csr),
            RpcStatusCode::UNAUTHENTICATED,
            "invalid token",
        );
    }
    // Wrong tokens from 127.0.0.1 are now refused before any CSR parsing…
    expect_status(
        call_with(&from_1, wrong, &csr),
        RpcStatusCode::RESOURCE_EXHAUSTED,
        "too many failed token attempts from this address; retry in",
    );
    server.wait_log("throttling 127.0.0.1: 3 failed token attempts");
    // …while the right token from the same address is still served (many
    // workers share one address behind NAT), and 127.0.0.2 is unaffected.
    call(&from_1, &csr).expect("the right token from a throttled address is served");
    call(&from_2, &csr).expect("other address served");
    // After the cool-down a wrong token is an ordinary UNAUTHENTICATED again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match call_with(&from_1, wrong, &csr) {
            Err(s) if s.code() == RpcStatusCode::UNAUTHENTICATED => break,
            Err(s) => {
                assert_eq!(
                    s.code(),
                    RpcStatusCode::RESOURCE_EXHAUSTED,
                    "{}",
                    s.message()
                );
                assert!(
                    Instant::now() < deadline,
                    "still throttled after the cool-down"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok(_) => panic!("a wrong token was served"),
        }
    }
    server.wait_log_count("code=OK", 2);
}

/// A server with one signing thread and an RSA-4096 machine CA (several
/// milliseconds a signature), so a burst of calls has to queue.
fn one_slow_signer(extra: &[&str]) -> (Server, SecurityServiceClient) {
    let setup = Setup::new(KeyType::Rsa(4096));
    let mut args = setup.args.clone();
    let i = args.iter().position(|a| a == "--workers").unwrap();
    args[i + 1] = "1".into();
    args.extend(extra.iter().map(|a| a.to_string()));
    let server = Server::start(&args, &[]);
    let client = server.client(&setup.ca.cert_pem());
    (server, client)
}

#[test]
fn a_full_queue_fails_fast_and_recovers() {
    // One slow signer and room for two calls.
    let (_server, client) = one_slow_signer(&["--max-queue", "2"]);
    let csr = worker_csr(&["10.0.0.1"], &[]);
    let burst = start_calls(&client, &csr, 30);
    let (mut ok, mut busy) = (0, 0);
    for r in burst.into_iter().map(futures_executor::block_on) {
        match r {
            Ok(_) => ok += 1,
            Err(grpcio::Error::RpcFailure(s)) if s.code() == RpcStatusCode::RESOURCE_EXHAUSTED => {
                assert!(s.message().contains("signer busy"), "{}", s.message());
                busy += 1;
            }
            Err(e) => panic!("unexpected: {e:?}"),
        }
    }
    assert_eq!(ok + busy, 30);
    assert!(ok >= 2 && busy >= 1, "ok={ok} busy={busy}");
    call(&client, &csr).expect("served once the burst is over");
}

#[test]
fn a_call_whose_caller_gave_up_is_not_signed() {
    // One slow signer, a queue with room for everyone, and 60
    // callers who give up after 150 ms: far more work than fits in that
    // time, so deadlines pass while calls wait.
    let (server, client) = one_slow_signer(&[]);
    let csr = worker_csr(&["10.0.0.1"], &[]);
    let burst = start_calls_within(&client, &csr, 60, Duration::from_millis(150));
    let (mut ok, mut gave_up) = (0, 0);
    for r in burst.into_iter().map(futures_executor::block_on) {
        match r {
            Ok(_) => ok += 1,
            Err(grpcio::Error::RpcFailure(s)) if s.code() == RpcStatusCode::DEADLINE_EXCEEDED => {
                gave_up += 1
            }
            Err(e) => panic!("unexpected: {e:?}"),
        }
    }
    assert_eq!(ok + gave_up, 60);
    // The pool is one FIFO thread: once this call is answered, every call of
    // the burst has been decided and logged.
    call(&client, &csr).expect("served once the burst is over");
    let log = server.log();
    let signed = log.matches("code=OK").count();
    let dropped = log
        .matches("code=DEADLINE_EXCEEDED reason=\"deadline passed while queued; nothing signed\"")
        .count();
    assert!(dropped >= 1, "no queued call was dropped:\n{log}");
    assert!(
        signed < 61 && signed > ok,
        "signed {signed}, answered {ok} of 60 plus one"
    );
    // Calls beyond the 16 streams a connection may carry wait in the client
    // and may give up before they reach the signer at all.
    assert!(signed + dropped <= 61, "signed {signed}, dropped {dropped}");
}

#[test]
fn audit_records_are_json_lines_without_secrets() {
    let setup = Setup::new(KeyType::EcP256)
        .arg("--allowed-ip-sans")
        .arg("10.0.0.0/8");
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let mut spec = CsrSpec::worker(KeyType::EcP256);
    spec.ips = vec!["10.0.0.9".into()];
    spec.dns = vec!["w9".into()];
    let (csr, _) = spec.build();
    let resp = call(&client, &csr).unwrap();
    let serial = X509::from_pem(&resp.crt)
        .unwrap()
        .serial_number()
        .to_bn()
        .unwrap()
        .to_hex_str()
        .unwrap()
        .to_string();
    expect_status(
        call_with(&client, &[b"wrong0.0000000000000000"], &csr),
        RpcStatusCode::UNAUTHENTICATED,
        "invalid",
    );
    expect_status(
        call(&client, b"junk"),
        RpcStatusCode::INVALID_ARGUMENT,
        "not PEM",
    );
    spec.ips = vec!["192.168.7.7".into()];
    expect_status(
        call(&client, &spec.build().0),
        RpcStatusCode::PERMISSION_DENIED,
        "192.168.7.7",
    );
    server.wait_log_count("\"outcome\":", 4);
    let records = audit_records(&server);
    assert_eq!(records.len(), 4);
    let issued = &records[0];
    assert_eq!(issued["outcome"], "issued");
    assert_eq!(issued["code"], "OK");
    assert_eq!(issued["cn"], "worker-1.example");
    assert_eq!(issued["ip_sans"], serde_json::json!(["10.0.0.9"]));
    assert_eq!(issued["dns_sans"], serde_json::json!(["w9"]));
    assert_eq!(issued["key_type"], "ECDSA P-256");
    assert_eq!(issued["serial"], serial.as_str());
    assert_eq!(issued["token"], "token#1");
    assert!(issued["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(issued["time"].as_str().unwrap().ends_with('Z'));
    assert!(issued["not_after"].as_str().unwrap().ends_with('Z'));
    assert_eq!(records[1]["outcome"], "refused");
    assert_eq!(records[1]["code"], "UNAUTHENTICATED");
    assert_eq!(records[1]["reason"], "invalid token");
    assert!(records[1]["token"].is_null());
    assert_eq!(records[2]["code"], "INVALID_ARGUMENT");
    assert!(records[2]["cn"].is_null(), "nothing was read from junk");
    // A policy refusal records what was asked for.
    assert_eq!(records[3]["code"], "PERMISSION_DENIED");
    assert_eq!(records[3]["ip_sans"], serde_json::json!(["192.168.7.7"]));
    assert_eq!(records[3]["cn"], "worker-1.example");
    assert!(records[3]["serial"].is_null() && records[3]["token"].is_null());
    let log = server.log();
    assert!(!log.contains(TOKEN) && !log.contains(&TOKEN[..6]) && !log.contains("wrong0"));
}

#[test]
fn audit_file_is_appended_and_reopened_on_sighup() {
    let setup = Setup::new(KeyType::Ed25519);
    let path = setup.dir.path("audit.jsonl");
    let setup = setup.arg("--audit-log").arg(&path.display().to_string());
    let server = setup.start();
    let client = server.client(&setup.ca.cert_pem());
    let csr = worker_csr(&["10.0.0.1"], &[]);
    call(&client, &csr).unwrap();
    server.wait_log("code=OK");
    // logrotate: move the file away, then SIGHUP.
    let rotated = setup.dir.path("audit.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    server.signal(SIGHUP);
    server.wait_log("reopened");
    call(&client, &csr).unwrap();
    server.wait_log_count("code=OK", 2);
    let read = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert_eq!(read(&rotated).len(), 1);
    assert_eq!(read(&path).len(), 1, "new records go to the new file");
    assert!(
        !server.log().contains("\"outcome\""),
        "nothing on stderr when a file is set"
    );
}

#[test]
fn idle_and_half_open_connections_do_not_starve_a_worker() {
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    // 1000 connections that never start TLS (more than a default 1024-file
    // limit allows, were it not raised).
    talos_csr_signer::server::limits::raise_open_files_limit();
    let idle: Vec<_> = (0..1000)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    let started = Instant::now();
    call(
        &server.client(&setup.ca.cert_pem()),
        &worker_csr(&["10.0.0.1"], &[]),
    )
    .expect("served past idle sockets");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The handshake timeout closes them.
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut first, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server closed the silent connection");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed after {:?}",
        started.elapsed()
    );
}

#[test]
fn server_announces_the_per_connection_stream_limit() {
    use std::io::{Read, Write};
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    b.cert_store_mut().add_cert(setup.ca.cert.clone()).unwrap();
    b.set_alpn_protos(b"\x02h2").unwrap();
    let tcp = std::net::TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = b.build().connect("127.0.0.1", tcp).unwrap();
    // HTTP/2 client preface and an empty SETTINGS frame.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    let mut header = [0u8; 9];
    tls.read_exact(&mut header).unwrap();
    assert_eq!(header[3], 0x4, "the server's first frame is SETTINGS");
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; len];
    tls.read_exact(&mut payload).unwrap();
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS (0x3).
    assert!(settings.contains(&(0x3, 16)), "{settings:?}");
}
