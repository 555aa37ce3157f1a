//! A fleet behind one address, as a LoadBalancer with
//! `externalTrafficPolicy: Cluster` (or any NAT) shows it to the signer: every
//! caller here comes from 127.0.0.1. Workers with a wrong token (a stale one
//! after a rotation, retrying as Talos does) drive that address into the
//! failed-token cool-down; workers with the right token, among them Go's TLS
//! and HTTP/2 stack making the worker's call (tests/go/talos_compat.go), must
//! be served throughout, and the wrong ones refused cheaply.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use grpcio::RpcStatusCode;
use talos_csr_signer::pki::keys::KeyType;

const STALE: &str = "stale0.aaaaaaaaaaaaaaaa";

/// Counts of what the wrong-token workers got back.
#[derive(Default)]
struct Refused {
    unauthenticated: AtomicUsize,
    throttled: AtomicUsize,
}

/// `n` workers retrying with `token` until `stop`, each on its own
/// connection, every refusal counted; any certificate is a failure.
fn stale_workers(
    server: &Server,
    trust: &[u8],
    token: &'static str,
    n: usize,
    stop: &Arc<AtomicBool>,
    refused: &Arc<Refused>,
) -> Vec<thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let client = server.client(trust);
            let (stop, refused) = (Arc::clone(stop), Arc::clone(refused));
            let csr = CsrSpec::worker(KeyType::Ed25519).build().0;
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let s = call_with(&client, &[token.as_bytes()], &csr)
                        .expect_err("a stale token was served");
                    match s.code() {
                        RpcStatusCode::UNAUTHENTICATED => &refused.unauthenticated,
                        RpcStatusCode::RESOURCE_EXHAUSTED => {
                            assert!(s.message().contains("too many failed token attempts"));
                            &refused.throttled
                        }
                        other => panic!("stale token got {other:?}: {}", s.message()),
                    }
                    .fetch_add(1, Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect()
}

/// One Talos-like worker in Go with `token_file`: TLS, the Certificate call,
/// the answer checked as apid uses it. Returns its output.
fn go_worker(server: &Server, dir: &TempDir, token_file: &str) -> String {
    let out = Command::new(go_compat_bin())
        .args(["-signer", &server.addr.to_string(), "-ca"])
        .arg(dir.path("ca.crt"))
        .arg("-token-file")
        .arg(dir.path(token_file))
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(
        out.status.success() && text.ends_with("PASS\n"),
        "a good worker was refused:\n{text}\nsigner:\n{}",
        server.log()
    );
    text
}

/// Waits until the stale workers have driven the address into its cool-down
/// and been refused there a few times.
fn wait_throttled(server: &Server, refused: &Refused) {
    server.wait_log("throttling 127.0.0.1: 20 failed token attempts");
    while refused.throttled.load(Ordering::Relaxed) < 20 {
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn good_workers_behind_one_address_are_served_while_it_is_throttled() {
    // The default limits (20 failures a minute, 120 s cool-down).
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let trust = setup.ca.cert_pem();
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(Refused::default());
    let stale = stale_workers(&server, &trust, STALE, 4, &stop, &refused);
    wait_throttled(&server, &refused);

    // Interleaved with the refusals: Go workers and grpcio workers with the
    // right token, from the same address, all served.
    let good = server.client(&trust);
    for round in 0..5 {
        go_worker(&server, &setup.dir, "token");
        for _ in 0..10 {
            let (csr, _) = CsrSpec::worker(KeyType::Ed25519).build();
            call(&good, &csr)
                .unwrap_or_else(|s| panic!("round {round}: good worker refused: {}", s.message()));
        }
    }
    stop.store(true, Ordering::Relaxed);
    stale.into_iter().for_each(|t| t.join().unwrap());
    server.wait_log_at_least("code=OK", 55);
    let (unauth, throttled) = (
        refused.unauthenticated.load(Ordering::Relaxed),
        refused.throttled.load(Ordering::Relaxed),
    );
    println!("stale: {unauth} UNAUTHENTICATED, then {throttled} RESOURCE_EXHAUSTED");
    // The throttle still bounds the stale callers: only the first 20 reached
    // the token check in the pool, the rest were refused on arrival.
    assert_eq!(unauth, 20, "failures counted before the cool-down");
    assert!(throttled >= 20);
    // Refused on arrival means unread: the audit records of throttled calls
    // carry no CSR content.
    let log = server.log();
    let throttled_records: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with('{') && l.contains("too many failed token attempts"))
        .collect();
    assert!(throttled_records.len() >= 20);
    for r in throttled_records {
        assert!(
            r.contains(r#""cn":null"#) && r.contains(r#""key_type":null"#),
            "{r}"
        );
    }
}

#[test]
fn rotation_with_part_of_the_fleet_on_the_old_token() {
    let setup = Setup::new(KeyType::Ed25519);
    let old = STALE;
    setup.dir.write(
        "token",
        format!("# rotation: old, then new\n{old}\n{TOKEN}\n").as_bytes(),
    );
    setup.dir.write("old-token", format!("{old}\n").as_bytes());
    setup
        .dir
        .write("new-token", format!("{TOKEN}\n").as_bytes());
    let server = setup.start();
    let trust = setup.ca.cert_pem();
    // During the rotation both halves of the fleet are served.
    go_worker(&server, &setup.dir, "old-token");
    go_worker(&server, &setup.dir, "new-token");
    server.wait_log("token=token#1");
    server.wait_log("token=token#2");

    // The old token is retired while four workers still hold it and retry.
    setup.dir.write("token", format!("{TOKEN}\n").as_bytes());
    server.signal(SIGHUP);
    server.wait_log("reloaded (SIGHUP)");
    assert!(server.log().contains("1 token(s)"), "{}", server.log());
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(Refused::default());
    let stale = stale_workers(&server, &trust, old, 4, &stop, &refused);
    wait_throttled(&server, &refused);
    // The moved part of the fleet keeps renewing from the same address.
    for _ in 0..3 {
        go_worker(&server, &setup.dir, "new-token");
    }
    let good = server.client(&trust);
    for _ in 0..20 {
        let (csr, _) = CsrSpec::worker(KeyType::Ed25519).build();
        call(&good, &csr).expect("a worker on the new token is served");
    }
    stop.store(true, Ordering::Relaxed);
    stale.into_iter().for_each(|t| t.join().unwrap());
    assert!(refused.throttled.load(Ordering::Relaxed) >= 20);
}
