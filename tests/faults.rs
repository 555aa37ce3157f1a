//! Faults under load, on loopback, each bounded in time: a SIGKILL and
//! restart, thousands of idle and slow connections, a hundred reloads, input
//! files that vanish, an audit log that cannot be written. Each test prints
//! its figures (run with --nocapture).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use grpcio::RpcStatusCode;
use talos_csr_signer::pki::keys::KeyType;

/// Each call's time and outcome.
type CallLog = Arc<Mutex<Vec<(Instant, Result<(), RpcStatusCode>)>>>;

const SIGKILL: i32 = 9;

fn csr() -> Vec<u8> {
    CsrSpec::worker(KeyType::Ed25519).build().0
}

#[test]
fn sigkill_mid_load_then_restart() {
    let setup = Setup::new(KeyType::Ed25519);
    let audit = setup.dir.path("audit.jsonl");
    let setup = setup.arg("--audit-log").arg(&audit.display().to_string());
    let mut first = setup.start();
    let port = first.addr.port();
    let trust = setup.ca.cert_pem();

    let stop = Arc::new(AtomicBool::new(false));
    let log: CallLog = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let (stop, log, addr, trust) = (
            stop.clone(),
            log.clone(),
            first.addr.to_string(),
            trust.clone(),
        );
        thread::spawn(move || {
            let c = client(&addr, &trust);
            let csr = csr();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let r = call(&c, &csr).map(|_| ()).map_err(|s| s.code());
                log.lock().unwrap().push((Instant::now(), r));
            }
        })
    };
    let count = |pred: &dyn Fn(&Result<(), RpcStatusCode>) -> bool, since: Instant| {
        log.lock()
            .unwrap()
            .iter()
            .filter(|(t, r)| *t >= since && pred(r))
            .count()
    };
    let t0 = Instant::now();
    let wait_for = |what: &str, pred: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !pred() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for("50 calls before the kill", &|| {
        count(&|r| r.is_ok(), t0) >= 50
    });
    first.signal(SIGKILL);
    let killed_at = Instant::now();
    let _ = first.wait_exit(Duration::from_secs(5));
    wait_for("a failed call while down", &|| {
        count(&|r| r.is_err(), killed_at) >= 1
    });
    let mut args = setup.args.clone();
    let i = args.iter().position(|a| a == "--listen").unwrap();
    args[i + 1] = format!("127.0.0.1:{port}");
    let second = Server::start(&args, &setup.env);
    let restarted_at = Instant::now();
    wait_for("a success after the restart", &|| {
        count(&|r| r.is_ok(), restarted_at) >= 5
    });
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

    let log = log.lock().unwrap();
    let errors: Vec<RpcStatusCode> = log.iter().filter_map(|(_, r)| r.err()).collect();
    let down = restarted_at.duration_since(killed_at);
    println!(
        "sigkill: {} calls, {} ok, {} failed ({:?}), down {:?}",
        log.len(),
        log.len() - errors.len(),
        errors.len(),
        errors
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<std::collections::BTreeSet<_>>(),
        down
    );
    assert!(
        errors.iter().all(|c| *c == RpcStatusCode::UNAVAILABLE),
        "only UNAVAILABLE while down: {errors:?}"
    );
    second.wait_log("code=OK");
    // The audit log holds only complete records, from both lives.
    let text = std::fs::read_to_string(&audit).unwrap();
    assert!(text.ends_with('\n'), "last record cut off");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("incomplete record ({e}): {line}"));
    }
    println!(
        "sigkill: audit log {} complete records",
        text.lines().count()
    );
}

#[test]
fn thousands_of_idle_and_slow_connections_do_not_delay_a_worker() {
    talos_csr_signer::server::limits::raise_open_files_limit();
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let addr = server.addr.to_string();
    // 2000 idle connections that completed TLS…
    let mut connector =
        openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    connector
        .cert_store_mut()
        .add_cert(setup.ca.cert.clone())
        .unwrap();
    connector.set_alpn_protos(b"\x02h2").unwrap();
    let connector = connector.build();
    let t0 = Instant::now();
    let idle: Vec<_> = (0..2000)
        .map(|_| {
            connector
                .connect("127.0.0.1", TcpStream::connect(&addr).unwrap())
                .expect("TLS handshake")
        })
        .collect();
    let opened = t0.elapsed();
    // …and 100 that send their handshake one byte a second.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let slow: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let dribbler = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let mut slow = slow;
        thread::spawn(move || {
            let hello = [
                0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ];
            for byte in hello {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for s in &mut slow {
                    let _ = s.write_all(&[byte]);
                }
                sent.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_secs(1));
            }
        })
    };
    // The slow clients are mid-handshake (two bytes each sent) when the
    // worker comes.
    wait_until(
        Duration::from_secs(10),
        "two bytes from every slow client",
        || sent.load(Ordering::Relaxed) >= 2,
    );
    // A worker: a new TLS connection and one call, as Talos does it.
    let started = Instant::now();
    let resp = call(&client(&addr, &setup.ca.cert_pem()), &csr());
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    dribbler.join().unwrap();
    let rss = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let rss = rss
        .lines()
        .find(|l| l.starts_with("VmRSS"))
        .unwrap_or("")
        .to_string();
    println!("idle+slow: 2000 TLS connections opened in {opened:?}, 100 slow handshakes; worker call took {took:?}; server {rss}");
    resp.expect("the worker is served");
    assert!(took < Duration::from_secs(1), "worker call took {took:?}");
    drop(idle);
}

#[test]
fn a_hundred_reloads_under_load_fail_no_call() {
    let ca1 = Ca::new(KeyType::Ed25519);
    let ca2 = Ca::new(KeyType::EcP256);
    let setup = Setup::with_ca(Ca {
        cert: ca1.cert.clone(),
        key: ca1.key.clone(),
    })
    .arg("--reload-interval")
    .arg("0");
    let server = setup.start();
    let trust: Vec<u8> = [ca1.cert_pem(), ca2.cert_pem()].concat();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let loads: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed, addr, trust) = (
                stop.clone(),
                ok.clone(),
                failed.clone(),
                server.addr.to_string(),
                trust.clone(),
            );
            thread::spawn(move || {
                let c = client(&addr, &trust);
                let csr = csr();
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match call(&c, &csr) {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(s) => {
                            eprintln!("failed during reloads: {s:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    for i in 1..=100 {
        let ca = if i % 2 == 1 { &ca2 } else { &ca1 };
        // Each file replaced atomically (rename), as a deploy tool would.
        for (name, data) in [("ca.crt", ca.cert_pem()), ("ca.key", ca.key_pem())] {
            let tmp = setup.dir.path(&format!("{name}.tmp"));
            std::fs::write(&tmp, data).unwrap();
            std::fs::rename(&tmp, setup.dir.path(name)).unwrap();
        }
        server.signal(SIGHUP);
        server.wait_log_at_least("reloaded (SIGHUP)", i);
    }
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    for l in loads {
        l.join().unwrap();
    }
    println!(
        "reloads: 100 in {took:?} under load; {} calls ok, {} failed",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    assert!(ok.load(Ordering::Relaxed) > 100);
}

#[test]
fn vanished_ca_files_keep_serving_from_memory_and_audit_failures_do_not_block() {
    let setup = Setup::new(KeyType::Ed25519)
        .arg("--health-listen")
        .arg("127.0.0.1:0")
        .arg("--metrics-listen")
        .arg("127.0.0.1:0")
        .arg("--audit-log")
        .arg("/dev/full");
    let server = setup.start();
    let c = server.client(&setup.ca.cert_pem());
    call(&c, &csr()).expect("served");
    std::fs::remove_file(setup.dir.path("ca.key")).unwrap();
    std::fs::remove_file(setup.dir.path("ca.crt")).unwrap();
    server.signal(SIGHUP);
    server.wait_log(
        "reload (SIGHUP) refused, still serving the previous material: cannot read CA certificate",
    );
    call(&c, &csr()).expect("still served from memory");
    let health = talos_csr_signer::proto::health_grpc::HealthClient::new(
        grpcio::ChannelBuilder::new(env()).connect(&server.log_value("health listening on ")),
    );
    let status = health
        .check(&Default::default())
        .unwrap()
        .status
        .enum_value()
        .unwrap();
    assert_eq!(
        status,
        talos_csr_signer::proto::health::health_check_response::ServingStatus::SERVING
    );
    let metrics = server.log_value("metrics listening on http://");
    let (_, body) = http_get(metrics.trim_end_matches("/metrics"), "/metrics");
    assert_eq!(
        metric(&body, "reloads_total{result=\"failure\"}"),
        Some(1.0)
    );
    // The audit log is /dev/full: every write fails, is logged, and calls go on.
    server.wait_log("cannot write the audit record");
    assert_eq!(metric(&body, "certificates_issued_total"), Some(2.0));
    println!("vanished files: served 2 calls, reload refused once, health SERVING, audit write failures logged");
}
