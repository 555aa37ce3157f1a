//! TLS as workers meet it (src/server/tls.rs): a Talos worker (Go's
//! crypto/tls, X25519 first) completes its handshake with one ServerHello on
//! X25519, no HelloRetryRequest; our own gRPC client does too; and the
//! server sends no session tickets. If a future grpcio stopped the call the
//! wrapper relies on, or gRPC core forced P-256 another way, these fail.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use openssl::ssl::{SslConnector, SslMethod, SslSessionCacheMode, SslVersion};
use talos_csr_signer::pki::keys::KeyType;

const X25519: u16 = 0x001d;

#[test]
fn a_go_worker_gets_x25519_in_one_server_hello() {
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let (proxy, seen) = recording_proxy(server.addr);
    // The worker's probe connection, then its Certificate call on a new
    // connection, as Talos makes it.
    let out = Command::new(go_compat_bin())
        .args(["-signer", &proxy.to_string(), "-ca"])
        .arg(setup.dir.path("ca.crt"))
        .arg("-token-file")
        .arg(setup.dir.path("token"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let connections = seen.lock().unwrap();
    assert_eq!(connections.len(), 2, "the probe and the call");
    for bytes in connections.iter() {
        let hellos = server_hellos(bytes);
        println!("Go worker: {hellos:?}");
        assert_eq!(
            hellos,
            ServerHellos {
                retries: 0,
                hellos: 1,
                groups: vec![X25519]
            },
            "a Go worker's handshake needed a HelloRetryRequest or another group"
        );
    }
}

#[test]
fn our_grpc_client_offers_x25519_too() {
    let setup = Setup::new(KeyType::EcP256);
    let server = setup.start();
    let (proxy, seen) = recording_proxy(server.addr);
    let client = client(&proxy.to_string(), &setup.ca.cert_pem());
    call(&client, &CsrSpec::worker(KeyType::EcP256).build().0).expect("signed");
    let hellos = server_hellos(&seen.lock().unwrap()[0]);
    println!("grpcio client: {hellos:?}");
    assert_eq!((hellos.retries, hellos.hellos), (0, 1), "{hellos:?}");
    assert_eq!(hellos.groups, [X25519]);
}

/// OpenSSL sends TLS 1.3 tickets right after the handshake, before any
/// application data: once the server's HTTP/2 SETTINGS have been read, every
/// ticket it sent has arrived.
#[test]
fn no_session_tickets_are_sent() {
    let setup = Setup::new(KeyType::Ed25519);
    let server = setup.start();
    let tickets = Arc::new(AtomicUsize::new(0));
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_min_proto_version(Some(SslVersion::TLS1_3)).unwrap();
    b.cert_store_mut().add_cert(setup.ca.cert.clone()).unwrap();
    b.set_alpn_protos(b"\x02h2").unwrap();
    b.set_session_cache_mode(SslSessionCacheMode::CLIENT);
    let count = Arc::clone(&tickets);
    b.set_new_session_callback(move |_, _| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = b.build().connect("127.0.0.1", tcp).unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame, then the server's.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    let mut buf = [0u8; 9];
    tls.read_exact(&mut buf).unwrap();
    assert_eq!(buf[3], 0x04, "the server's first frame is SETTINGS");
    assert_eq!(
        tickets.load(Ordering::SeqCst),
        0,
        "the server sent session tickets"
    );
    // The check can fail: OpenSSL's own server, as configured by default,
    // sends two to this client.
    let mut openssl_server =
        openssl::ssl::SslAcceptor::mozilla_modern_v5(SslMethod::tls_server()).unwrap();
    openssl_server.set_private_key(&setup.ca.key).unwrap();
    openssl_server.set_certificate(&setup.ca.cert).unwrap();
    let acceptor = openssl_server.build();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut s = acceptor.accept(s).unwrap();
        s.write_all(b"x").unwrap();
    });
    let before = tickets.load(Ordering::SeqCst);
    let mut b2 = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b2.cert_store_mut().add_cert(setup.ca.cert.clone()).unwrap();
    b2.set_session_cache_mode(SslSessionCacheMode::CLIENT);
    b2.set_verify(openssl::ssl::SslVerifyMode::NONE);
    let count = Arc::clone(&tickets);
    b2.set_new_session_callback(move |_, _| {
        count.fetch_add(1, Ordering::SeqCst);
    });
    let mut c = b2
        .build()
        .connect("localhost", TcpStream::connect(addr).unwrap())
        .unwrap();
    let mut one = [0u8; 1];
    c.read_exact(&mut one).unwrap();
    serve.join().unwrap();
    assert!(
        tickets.load(Ordering::SeqCst) > before,
        "the ticket counter saw none"
    );
}
