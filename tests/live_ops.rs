//! Live operations: reload without restart (SIGHUP and file changes, including
//! Kubernetes' `..data` symlink swap), health, metrics, sd_notify, systemd
//! credentials, an external serving certificate, and `check`.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use grpcio::{ChannelBuilder, RpcStatusCode};
use openssl::x509::X509;
use talos_csr_signer::pki::keys::KeyType;
use talos_csr_signer::proto::health::health_check_response::ServingStatus;
use talos_csr_signer::proto::health::HealthCheckRequest;
use talos_csr_signer::proto::health_grpc::HealthClient;

fn csr() -> Vec<u8> {
    CsrSpec::worker(KeyType::Ed25519).build().0
}

fn pem_of(cas: &[&Ca]) -> Vec<u8> {
    cas.iter().flat_map(|c| c.cert_pem()).collect()
}

/// A Kubernetes secret volume: files are symlinks into `..data`, itself a
/// symlink to a timestamped directory that updates replace atomically.
struct SecretVolume {
    dir: TempDir,
    version: usize,
}

impl SecretVolume {
    fn new(files: &[(&str, Vec<u8>)]) -> SecretVolume {
        let mut v = SecretVolume {
            dir: TempDir::new("secretvol"),
            version: 0,
        };
        v.update(files);
        for (name, _) in files {
            symlink(format!("..data/{name}"), v.dir.path(name)).unwrap();
        }
        v
    }

    fn update(&mut self, files: &[(&str, Vec<u8>)]) {
        self.version += 1;
        let ts = format!("..2026_11_28_{:06}", self.version);
        std::fs::create_dir(self.dir.path(&ts)).unwrap();
        for (name, data) in files {
            std::fs::write(self.dir.path(&ts).join(name), data).unwrap();
        }
        let tmp = self.dir.path("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&ts, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.path("..data")).unwrap();
    }
}

#[test]
fn reload_under_load_drops_no_call() {
    let ca1 = Ca::new(KeyType::Ed25519);
    let ca2 = Ca::new(KeyType::EcP256);
    let t1 = "aaaaaa.1111111111111111";
    let t2 = "bbbbbb.2222222222222222";
    let mut vol = SecretVolume::new(&[
        ("ca.crt", ca1.cert_pem()),
        ("ca.key", ca1.key_pem()),
        ("token", format!("{t1}\n").into_bytes()),
        ("accepted.crt", ca1.cert_pem()),
    ]);
    let p = |n: &str| vol.dir.path(n).display().to_string();
    let args: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--ca-cert",
        &p("ca.crt"),
        "--ca-key",
        &p("ca.key"),
        "--token-file",
        &p("token"),
        "--accepted-ca",
        &p("accepted.crt"),
        "--reload-interval",
        "1s",
        "--audit-log",
        "off",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let server = Server::start(&args, &[]);
    // Workers trust every CA they accept: old and new.
    let trust = pem_of(&[&ca1, &ca2]);
    let addr = server.addr.to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed, trust, addr) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            trust.clone(),
            addr.clone(),
        );
        std::thread::spawn(move || {
            let client = client(&addr, &trust);
            let csr = csr();
            let mut errors = Vec::new();
            // Bounded: stops on its own even if the test body hangs.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match call_with(&client, &[t1.as_bytes()], &csr) {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        errors.push(format!("{e:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            errors
        })
    };
    let wait_reloads = |n: usize| server.wait_log_count("reloaded (", n);

    // 1. Add a second token (SIGHUP).
    vol.update(&[
        ("ca.crt", ca1.cert_pem()),
        ("ca.key", ca1.key_pem()),
        ("token", format!("{t1}\n{t2}\n").into_bytes()),
        ("accepted.crt", ca1.cert_pem()),
    ]);
    server.signal(SIGHUP);
    wait_reloads(1);
    call_with(&server.client(&trust), &[t2.as_bytes()], &csr())
        .expect("new token accepted after reload");

    // 2. Rotate the CA, keeping the old one accepted: noticed by the file check alone.
    vol.update(&[
        ("ca.crt", ca2.cert_pem()),
        ("ca.key", ca2.key_pem()),
        ("token", format!("{t1}\n{t2}\n").into_bytes()),
        ("accepted.crt", ca1.cert_pem()),
    ]);
    wait_reloads(2);
    server.wait_log("input files changed");
    let fresh = call_with(&server.client(&trust), &[t1.as_bytes()], &csr()).unwrap();
    let leaf = X509::from_pem(&fresh.crt).unwrap();
    assert_eq!(
        leaf.issuer_name().to_der().unwrap(),
        ca2.cert.subject_name().to_der().unwrap()
    );
    assert_eq!(
        fresh.ca,
        pem_of(&[&ca1, &ca2]),
        "bundle: old CA accepted, new CA last"
    );
    verify_chain(&leaf, &X509::stack_from_pem(&fresh.ca).unwrap()).unwrap();
    // New connections get a serving certificate from the new CA.
    server.wait_log("serving certificate replaced");
    let only_new = client(&addr, &ca2.cert_pem());
    call_with(&only_new, &[t1.as_bytes()], &csr()).expect("serving cert now chains to the new CA");

    // 3. A corrupt CA file is refused; the previous material keeps serving.
    vol.update(&[
        (
            "ca.crt",
            b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n".to_vec(),
        ),
        ("ca.key", ca2.key_pem()),
        ("token", format!("{t1}\n{t2}\n").into_bytes()),
        ("accepted.crt", ca1.cert_pem()),
    ]);
    server.signal(SIGHUP);
    server.wait_log("reload (SIGHUP) refused, still serving the previous material: CA certificate");
    let after = call_with(&server.client(&trust), &[t1.as_bytes()], &csr()).unwrap();
    assert_eq!(
        X509::from_pem(&after.crt)
            .unwrap()
            .issuer_name()
            .to_der()
            .unwrap(),
        ca2.cert.subject_name().to_der().unwrap()
    );

    // 4. Drop the old token.
    vol.update(&[
        ("ca.crt", ca2.cert_pem()),
        ("ca.key", ca2.key_pem()),
        ("token", format!("{t2}\n").into_bytes()),
        ("accepted.crt", ca1.cert_pem()),
    ]);
    stop.store(true, Ordering::Relaxed);
    let errors = load.join().unwrap();
    assert!(errors.is_empty(), "calls failed during reloads: {errors:?}");
    assert!(
        ok.load(Ordering::Relaxed) > 20,
        "load ran: {}",
        ok.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    server.signal(SIGHUP);
    // Either the file check or the SIGHUP gets there first; both load the same.
    server.wait_log(", 1 token(s)");
    let client = server.client(&trust);
    let err = call_with(&client, &[t1.as_bytes()], &csr()).unwrap_err();
    assert_eq!(
        err.code(),
        RpcStatusCode::UNAUTHENTICATED,
        "removed token refused"
    );
    call_with(&client, &[t2.as_bytes()], &csr()).unwrap();
}

fn health_check(client: &HealthClient, service: &str) -> Result<ServingStatus, grpcio::RpcStatus> {
    let req = HealthCheckRequest {
        service: service.to_string(),
        ..Default::default()
    };
    match client.check(&req) {
        Ok(r) => Ok(r.status.enum_value().unwrap()),
        Err(grpcio::Error::RpcFailure(s)) => Err(s),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn health_on_tls_and_plaintext_ports_until_shutdown() {
    let setup = Setup::new(KeyType::Ed25519)
        .arg("--health-listen")
        .arg("127.0.0.1:0");
    let mut server = setup.start();
    let plain_addr = server.log_value("health listening on ");
    let tls = {
        let creds = grpcio::ChannelCredentialsBuilder::new()
            .root_cert(setup.ca.cert_pem())
            .build();
        HealthClient::new(
            ChannelBuilder::new(env())
                .set_credentials(creds)
                .connect(&server.addr.to_string()),
        )
    };
    let plain = HealthClient::new(ChannelBuilder::new(env()).connect(&plain_addr));
    for client in [&tls, &plain] {
        assert_eq!(health_check(client, "").unwrap(), ServingStatus::SERVING);
        assert_eq!(
            health_check(client, "securityapi.SecurityService").unwrap(),
            ServingStatus::SERVING
        );
        assert_eq!(
            health_check(client, "nope").unwrap_err().code(),
            RpcStatusCode::NOT_FOUND
        );
    }
    // The plaintext port carries health only: no certificates without TLS.
    let insecure_signer = talos_csr_signer::proto::security_grpc::SecurityServiceClient::new(
        ChannelBuilder::new(env()).connect(&plain_addr),
    );
    let err = call(&insecure_signer, &csr()).unwrap_err();
    assert_eq!(err.code(), RpcStatusCode::UNIMPLEMENTED);

    // Watch: SERVING now, NOT_SERVING when shutdown begins, then the stream ends.
    let req = HealthCheckRequest {
        service: String::new(),
        ..Default::default()
    };
    let mut stream = plain.watch(&req).unwrap();
    let mut unknown = plain
        .watch(&HealthCheckRequest {
            service: "nope".into(),
            ..Default::default()
        })
        .unwrap();
    let next = |s: &mut grpcio::ClientSStreamReceiver<_>| {
        futures_executor::block_on(futures_util::StreamExt::next(s))
    };
    let first: talos_csr_signer::proto::health::HealthCheckResponse =
        next(&mut stream).unwrap().unwrap();
    assert_eq!(first.status.enum_value().unwrap(), ServingStatus::SERVING);
    let u: talos_csr_signer::proto::health::HealthCheckResponse =
        next(&mut unknown).unwrap().unwrap();
    assert_eq!(
        u.status.enum_value().unwrap(),
        ServingStatus::SERVICE_UNKNOWN
    );
    server.signal(SIGTERM);
    let last: talos_csr_signer::proto::health::HealthCheckResponse =
        next(&mut stream).unwrap().unwrap();
    assert_eq!(
        last.status.enum_value().unwrap(),
        ServingStatus::NOT_SERVING
    );
    assert!(
        next(&mut stream).is_none_or(|r| r.is_err()),
        "stream ends after NOT_SERVING"
    );
    assert_eq!(server.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[test]
fn health_turns_not_serving_when_the_ca_expires() {
    let mut spec = CaSpec::new(KeyType::Ed25519);
    spec.not_after = now_unix() + 4;
    let setup = Setup::with_ca(spec.build())
        .arg("--health-listen")
        .arg("127.0.0.1:0");
    let server = setup.start();
    let plain = HealthClient::new(
        ChannelBuilder::new(env()).connect(&server.log_value("health listening on ")),
    );
    assert_eq!(health_check(&plain, "").unwrap(), ServingStatus::SERVING);
    // A connection made while the CA was valid…
    let signer = server.client(&setup.ca.cert_pem());
    call(&signer, &csr()).expect("signs while the CA is valid");
    wait_until(
        Duration::from_secs(30),
        "health NOT_SERVING once the CA expired",
        || health_check(&plain, "").unwrap() == ServingStatus::NOT_SERVING,
    );
    // …gets a precise refusal once it has expired (new TLS connections fail
    // verification, as the serving certificate cannot outlive the CA).
    let e = call(&signer, &csr()).unwrap_err();
    assert_eq!(
        e.code(),
        RpcStatusCode::FAILED_PRECONDITION,
        "{}",
        e.message()
    );
}

#[test]
fn metrics_endpoint_counts_what_happens() {
    let setup = Setup::new(KeyType::Ed25519)
        .arg("--metrics-listen")
        .arg("127.0.0.1:0")
        .arg("--allowed-ip-sans")
        .arg("10.0.0.0/8");
    let server = setup.start();
    let url = server.log_value("metrics listening on http://");
    let addr = url.trim_end_matches("/metrics");
    let scrape = || {
        let (code, body) = http_get(addr, "/metrics");
        assert_eq!(code, 200);
        body
    };
    let before = scrape();
    assert_eq!(metric(&before, "certificates_issued_total"), Some(0.0));
    assert_eq!(
        metric(&before, "ca_not_after_timestamp_seconds"),
        Some(unix(setup.ca.cert.not_after()) as f64)
    );
    assert!(
        metric(&before, "serving_cert_not_after_timestamp_seconds").unwrap() > now_unix() as f64
    );
    assert!(
        before.contains("talos_csr_signer_build_info{openssl=\"OpenSSL 3."),
        "{before}"
    );
    assert_eq!(
        metric(&before, "reloads_total{result=\"failure\"}"),
        Some(0.0)
    );
    assert_eq!(metric(&before, "queue_depth"), Some(0.0));

    let client = server.client(&setup.ca.cert_pem());
    let mut inside = CsrSpec::worker(KeyType::Ed25519);
    inside.ips = vec!["10.5.0.7".into()];
    let (good, _) = inside.build();
    call(&client, &good).unwrap();
    call(&client, &good).unwrap();
    call_with(&client, &[b"wrong0.0000000000000000"], &good).unwrap_err();
    let mut outside = CsrSpec::worker(KeyType::Ed25519);
    outside.ips = vec!["192.168.1.1".into()];
    call(&client, &outside.build().0).unwrap_err();
    call(&client, b"junk").unwrap_err();
    server.signal(1);
    server.wait_log("reloaded (SIGHUP)");

    let after = scrape();
    assert_eq!(metric(&after, "certificates_issued_total"), Some(2.0));
    assert_eq!(metric(&after, "requests_total{code=\"OK\"}"), Some(2.0));
    assert_eq!(
        metric(&after, "requests_total{code=\"UNAUTHENTICATED\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "requests_total{code=\"PERMISSION_DENIED\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&after, "requests_total{code=\"INVALID_ARGUMENT\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&after, "auth_failures_total"), Some(1.0));
    assert_eq!(
        metric(&after, "policy_denials_total{reason=\"ip_san\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&after, "request_duration_seconds_count"), Some(5.0));
    assert_eq!(
        metric(&after, "reloads_total{result=\"success\"}"),
        Some(1.0)
    );
    assert_eq!(http_get(addr, "/").0, 404);
}

#[test]
fn sd_notify_ready_reloading_stopping_in_order() {
    use std::os::unix::net::UnixDatagram;
    let setup = Setup::new(KeyType::Ed25519);
    let sock_path = setup.dir.path("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut env = setup.env.clone();
    env.push(("NOTIFY_SOCKET".into(), sock_path.display().to_string()));
    let mut server = Server::start(&setup.args, &env);
    let mut buf = [0u8; 512];
    let mut recv = || {
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert!(recv().starts_with("READY=1"));
    server.signal(SIGHUP);
    let reloading = recv();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    let usec: u64 = reloading.rsplit('=').next().unwrap().parse().unwrap();
    assert!(usec > 0);
    assert!(recv().starts_with("READY=1"));
    server.signal(SIGTERM);
    assert_eq!(recv(), "STOPPING=1");
    assert_eq!(server.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn systemd_credentials_directory_is_used_when_nothing_else_is_given() {
    let ca = Ca::new(KeyType::Ed25519);
    let creds = TempDir::new("creds");
    creds.write("ca.crt", &ca.cert_pem());
    creds.write("ca.key", &ca.key_pem());
    creds.write("token", format!("{TOKEN}\n").as_bytes());
    let args: Vec<String> = ["serve", "--listen", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let server = Server::start(
        &args,
        &[(
            "CREDENTIALS_DIRECTORY".into(),
            creds.0.display().to_string(),
        )],
    );
    call(&server.client(&ca.cert_pem()), &csr())
        .expect("CA and token from the credentials directory");
    // systemd copies credentials only at start: a reload cannot see new
    // material in their sources, and must not claim it did.
    server.signal(SIGHUP);
    server.wait_log("reloaded (SIGHUP), no input file changed: ");
    server.wait_log("are systemd credentials, copied only when the service starts");
    // A real change is a plain "reloaded".
    creds.write(
        "token",
        format!("{TOKEN}\nnew0ab.bbbbbbbbbbbbbbbb\n").as_bytes(),
    );
    server.signal(SIGHUP);
    server.wait_log("reloaded (SIGHUP): ");
    assert!(server.log().contains("2 token(s)"), "{}", server.log());
}

/// A serving certificate as cert-manager would issue it, signed by `ca`.
fn external_cert(ca: &Ca, cn: &str) -> (Vec<u8>, Vec<u8>) {
    let mut spec = CsrSpec::worker(KeyType::Rsa(2048));
    spec.subject = vec![(openssl::nid::Nid::COMMONNAME, cn.to_string())];
    spec.ips = vec!["127.0.0.1".into()];
    spec.dns = vec![];
    let (csr_pem, key) = spec.build();
    // Sign it with a throwaway signer run on the same CA.
    let setup = Setup::with_ca(Ca {
        cert: ca.cert.clone(),
        key: ca.key.clone(),
    });
    let server = setup.start();
    let resp = call(&server.client(&ca.cert_pem()), &csr_pem).unwrap();
    (resp.crt, key.private_key_to_pem_pkcs8().unwrap())
}

fn served_cn(addr: &str, trust: &Ca) -> String {
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls_client()).unwrap();
    b.cert_store_mut().add_cert(trust.cert.clone()).unwrap();
    b.set_alpn_protos(b"\x02h2").unwrap();
    let tls = b
        .build()
        .connect("127.0.0.1", std::net::TcpStream::connect(addr).unwrap())
        .unwrap();
    let cert = tls.ssl().peer_certificate().unwrap();
    let cn = cert
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()
        .unwrap();
    String::from_utf8(cn.data().as_slice().to_vec()).unwrap()
}

#[test]
fn external_serving_certificate_is_served_and_reloaded() {
    let setup = Setup::new(KeyType::Ed25519);
    let (crt1, key1) = external_cert(&setup.ca, "cert-manager-1");
    let (crt2, key2) = external_cert(&setup.ca, "cert-manager-2");
    let crt = setup.dir.write("tls.crt", &crt1);
    let key = setup.dir.write("tls.key", &key1);
    let setup = setup
        .arg("--tls-cert")
        .arg(&crt.display().to_string())
        .arg("--tls-key")
        .arg(&key.display().to_string())
        .arg("--reload-interval")
        .arg("0");
    let server = setup.start();
    let addr = server.addr.to_string();
    assert_eq!(served_cn(&addr, &setup.ca), "cert-manager-1");
    call(&server.client(&setup.ca.cert_pem()), &csr()).expect("gRPC over the external cert");
    std::fs::write(&crt, &crt2).unwrap();
    std::fs::write(&key, &key2).unwrap();
    assert_eq!(
        served_cn(&addr, &setup.ca),
        "cert-manager-1",
        "no reload without SIGHUP when the interval is 0"
    );
    server.signal(SIGHUP);
    server.wait_log("reloaded (SIGHUP)");
    assert_eq!(served_cn(&addr, &setup.ca), "cert-manager-2");

    // A certificate workers would not trust stops startup.
    let other = Ca::new(KeyType::Ed25519);
    let (bad_crt, bad_key) = external_cert(&other, "stranger");
    setup.dir.write("tls.crt", &bad_crt);
    setup.dir.write("tls.key", &bad_key);
    let (status, _, err) = run_binary(&setup.args, &[], Duration::from_secs(20));
    assert!(!status.success());
    assert!(
        err.contains("workers would reject the TLS certificate"),
        "{err}"
    );
}

#[test]
fn check_reports_and_warns() {
    let mut soon = CaSpec::new(KeyType::EcP256);
    soon.not_after = now_unix() + 10 * 86_400 - 3600;
    let setup = Setup::with_ca(soon.build())
        .arg("--server-ips")
        .arg("10.0.0.1");
    let mut args = setup.args.clone();
    args[0] = "check".into();
    let (status, out, err) = run_binary(&args, &[], Duration::from_secs(20));
    assert!(status.success(), "{out}{err}");
    assert!(out.starts_with("configuration ok"), "{out}");
    assert!(
        out.contains("ECDSA P-256") && out.contains("10.0.0.1; 127.0.0.1; ::1"),
        "{out}"
    );
    assert!(
        out.contains("warning: the machine CA expires in 9 day(s)"),
        "{out}"
    );

    // JSON, with a world-readable key and an odd token.
    std::fs::set_permissions(
        setup.dir.path("ca.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    setup.dir.write("token", b"not-a-talos-token\n");
    args.push("--json".into());
    let (status, out, _) = run_binary(&args, &[], Duration::from_secs(20));
    assert!(status.success());
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["ca_key_type"], "ECDSA P-256");
    assert_eq!(report["tokens"], 1);
    assert_eq!(report["ca_days_left"], 9);
    let warnings: Vec<&str> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("ca.key is readable by group or others (mode 0644)")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("token#1 is not in Talos's format")),
        "{warnings:?}"
    );
    assert!(
        !out.contains("not-a-talos-token"),
        "the token itself is never printed"
    );

    // Errors: exit 1, one line (or a JSON error).
    setup.dir.write("ca.crt", b"junk");
    let (status, out, _) = run_binary(&args, &[], Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], false);
    assert!(report["error"].as_str().unwrap().contains("CA certificate"));
    args.pop();
    let (status, _, err) = run_binary(&args, &[], Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
}
