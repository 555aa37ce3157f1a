//! Shared test harness: real binary, real gRPC over real TLS, real certificates.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use grpcio::{
    CallOption, ChannelBuilder, ChannelCredentialsBuilder, EnvBuilder, Environment,
    MetadataBuilder, RpcStatus,
};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{
    X509Builder, X509Extension, X509Name, X509PurposeId, X509Req, X509StoreContext, X509,
};

use talos_csr_signer::pki::keys::KeyType;
use talos_csr_signer::proto::security::{CertificateRequest, CertificateResponse};
use talos_csr_signer::proto::security_grpc::SecurityServiceClient;

pub const BIN: &str = env!("CARGO_BIN_EXE_talos-csr-signer");
pub const TOKEN: &str = "d8cwfa.eyvpi0xwxyarbfid";

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tcs-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------- certificates made by the tests themselves ----------

pub struct Ca {
    pub cert: X509,
    pub key: PKey<Private>,
}

/// Options for a test CA; the default is a good Talos-like CA.
pub struct CaSpec {
    pub key_type: KeyType,
    pub org: &'static str,
    pub is_ca: bool,
    pub cert_sign: bool,
    pub not_before: i64,
    pub not_after: i64,
}

impl CaSpec {
    pub fn new(key_type: KeyType) -> CaSpec {
        CaSpec {
            key_type,
            org: "talos",
            is_ca: true,
            cert_sign: true,
            not_before: now_unix() - 3600,
            not_after: now_unix() + 10 * 365 * 86_400,
        }
    }

    pub fn build(&self) -> Ca {
        let key = self.key_type.generate().unwrap();
        let mut name = X509Name::builder().unwrap();
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, self.org)
            .unwrap();
        let name = name.build();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        let mut serial = BigNum::new().unwrap();
        serial.rand(64, MsbOption::ONE, false).unwrap();
        b.set_serial_number(&serial.to_asn1_integer().unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(self.not_before).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(self.not_after).unwrap())
            .unwrap();
        if self.is_ca {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
        }
        let mut ku = KeyUsage::new();
        ku.critical().digital_signature();
        if self.cert_sign {
            ku.key_cert_sign();
        }
        b.append_extension(ku.build().unwrap()).unwrap();
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(ski).unwrap();
        b.sign(&key, self.key_type.signing_digest()).unwrap();
        Ca {
            cert: b.build(),
            key,
        }
    }
}

impl Ca {
    pub fn new(key_type: KeyType) -> Ca {
        CaSpec::new(key_type).build()
    }

    pub fn cert_pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap()
    }

    pub fn key_pem(&self) -> Vec<u8> {
        self.key.private_key_to_pem_pkcs8().unwrap()
    }

    /// Writes ca.crt / ca.key into `dir`.
    pub fn write(&self, dir: &TempDir) -> (PathBuf, PathBuf) {
        (
            dir.write("ca.crt", &self.cert_pem()),
            dir.write("ca.key", &self.key_pem()),
        )
    }
}

/// A CSR as a worker (or an attacker) might send it.
pub struct CsrSpec {
    pub key_type: KeyType,
    /// (nid, value) subject entries, in order.
    pub subject: Vec<(Nid, String)>,
    pub dns: Vec<String>,
    pub ips: Vec<String>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
    /// Extra requested extensions beyond SAN.
    pub ask_ca: bool,
    pub ask_client_auth: bool,
    pub ask_cert_sign: bool,
}

impl CsrSpec {
    /// What a Talos worker sends: CN = node name, IP and DNS SANs, no O.
    pub fn worker(key_type: KeyType) -> CsrSpec {
        CsrSpec {
            key_type,
            subject: vec![(Nid::COMMONNAME, "worker-1.example".into())],
            dns: vec!["worker-1".into(), "worker-1.example".into()],
            ips: vec!["10.5.0.7".into(), "fd00::7".into(), "127.0.0.1".into()],
            uris: vec![],
            emails: vec![],
            ask_ca: false,
            ask_client_auth: false,
            ask_cert_sign: false,
        }
    }

    pub fn build(&self) -> (Vec<u8>, PKey<Private>) {
        let key = self.key_type.generate().unwrap();
        (self.build_with(&key), key)
    }

    pub fn build_with(&self, key: &PKey<Private>) -> Vec<u8> {
        let mut b = X509Req::builder().unwrap();
        let mut name = X509Name::builder().unwrap();
        for (nid, v) in &self.subject {
            name.append_entry_by_nid(*nid, v).unwrap();
        }
        b.set_subject_name(&name.build()).unwrap();
        b.set_pubkey(key).unwrap();
        let mut exts: Stack<X509Extension> = Stack::new().unwrap();
        let mut san = SubjectAlternativeName::new();
        let mut any_san = false;
        for d in &self.dns {
            san.dns(d);
            any_san = true;
        }
        for i in &self.ips {
            san.ip(i);
            any_san = true;
        }
        for u in &self.uris {
            san.uri(u);
            any_san = true;
        }
        for e in &self.emails {
            san.email(e);
            any_san = true;
        }
        if any_san {
            exts.push(san.build(&b.x509v3_context(None)).unwrap())
                .unwrap();
        }
        if self.ask_ca {
            exts.push(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
        }
        if self.ask_cert_sign {
            exts.push(
                KeyUsage::new()
                    .key_cert_sign()
                    .crl_sign()
                    .digital_signature()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        }
        if self.ask_client_auth {
            exts.push(
                ExtendedKeyUsage::new()
                    .client_auth()
                    .server_auth()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        }
        if !exts.is_empty() {
            b.add_extensions(&exts).unwrap();
        }
        b.sign(key, self.key_type.signing_digest()).unwrap();
        b.build().to_pem().unwrap()
    }
}

// ---------- the server process ----------

/// The real binary, started on 127.0.0.1 with a free port; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub output: Arc<Mutex<Vec<String>>>,
}

/// A CA on disk plus the arguments that serve it.
pub struct Setup {
    pub dir: TempDir,
    pub ca: Ca,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Setup {
    /// CA of `key_type`, token in a file, listening on 127.0.0.1:0.
    pub fn new(key_type: KeyType) -> Setup {
        Setup::with_ca(Ca::new(key_type))
    }

    pub fn with_ca(ca: Ca) -> Setup {
        let dir = TempDir::new("srv");
        let (cert, key) = ca.write(&dir);
        let token = dir.write("token", format!("{TOKEN}\n").as_bytes());
        let args = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--ca-cert".into(),
            cert.display().to_string(),
            "--ca-key".into(),
            key.display().to_string(),
            "--token-file".into(),
            token.display().to_string(),
            "--workers".into(),
            "2".into(),
        ];
        Setup {
            dir,
            ca,
            args,
            env: vec![],
        }
    }

    pub fn arg(mut self, a: &str) -> Setup {
        self.args.push(a.to_string());
        self
    }

    pub fn start(&self) -> Server {
        Server::start(&self.args, &self.env)
    }
}

/// Copies lines from a child's pipe into `sink` until the pipe closes; the
/// handle ends when every line has been read.
fn pump(src: impl Read + Send + 'static, sink: Arc<Mutex<Vec<String>>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(src).lines() {
            match line {
                Ok(l) => sink.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    })
}

/// Waits until `done()` holds, checking often; fails naming `what` after
/// `within`. For events the tests cannot be told of directly.
pub fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn base_command(args: &[String], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("TALOS_TOKEN")
        .env_remove("TALOS_TOKEN_FILE")
        .env_remove("CA_CERT_PATH")
        .env_remove("CA_KEY_PATH")
        .env_remove("PORT")
        .env_remove("SERVER_IPS")
        .env_remove("SERVER_DNS_NAMES")
        .env_remove("ACCEPTED_CA_PATHS")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl Server {
    pub fn start(args: &[String], env: &[(String, String)]) -> Server {
        Server::spawn(base_command(args, env))
    }

    /// Starts `cmd` (the signer, possibly wrapped) and waits until it logs
    /// its listening address.
    pub fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start server binary");
        let output = Arc::new(Mutex::new(Vec::new()));
        let pumps = [
            pump(child.stdout.take().unwrap(), Arc::clone(&output)),
            pump(child.stderr.take().unwrap(), Arc::clone(&output)),
        ];
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let addr = output.lock().unwrap().iter().find_map(|l| {
                l.split("listening on ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            });
            if let Some(addr) = addr {
                return Server {
                    child,
                    addr,
                    output,
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                // Its pipes are closed: every line it wrote is read then.
                pumps.into_iter().for_each(|p| p.join().unwrap());
                panic!(
                    "server exited with {status} before listening:\n{}",
                    output.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "server did not start:\n{}",
                output.lock().unwrap().join("\n")
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn client(&self, trust_pem: &[u8]) -> SecurityServiceClient {
        client(&self.addr.to_string(), trust_pem)
    }

    pub fn log(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle` (the log is read by a
    /// separate thread, so it may trail the responses).
    pub fn wait_log(&self, needle: &str) {
        self.wait_log_at_least(needle, 1);
    }

    /// Waits until `needle` occurs exactly `n` times.
    pub fn wait_log_count(&self, needle: &str, n: usize) {
        self.wait_log_at_least(needle, n);
        thread::sleep(Duration::from_millis(50));
        assert_eq!(
            self.log().matches(needle).count(),
            n,
            "{needle:?} count:\n{}",
            self.log()
        );
    }

    /// Waits until `needle` occurs at least `n` times.
    pub fn wait_log_at_least(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.log().matches(needle).count() < n {
            assert!(
                Instant::now() < deadline,
                "fewer than {n} log lines with {needle:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit in {within:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

pub const SIGTERM: i32 = libc::SIGTERM;
pub const SIGINT: i32 = libc::SIGINT;
pub const SIGHUP: i32 = libc::SIGHUP;

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion (for startup errors and `request`).
pub fn run_binary(
    args: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> (ExitStatus, String, String) {
    let mut child = base_command(args, env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(Vec::new()));
    let pumps = [
        pump(child.stdout.take().unwrap(), Arc::clone(&out)),
        pump(child.stderr.take().unwrap(), Arc::clone(&err)),
    ];
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{args:?} did not finish in {timeout:?}:\n{}",
                err.lock().unwrap().join("\n")
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    // Exited: its pipes close once any child it left behind is gone too.
    pumps.into_iter().for_each(|p| p.join().unwrap());
    let out = out.lock().unwrap().join("\n");
    let err = err.lock().unwrap().join("\n");
    (status, out, err)
}

// ---------- the gRPC client ----------

pub fn env() -> Arc<Environment> {
    static ENV: OnceLock<Arc<Environment>> = OnceLock::new();
    Arc::clone(ENV.get_or_init(|| Arc::new(EnvBuilder::new().cq_count(1).build())))
}

pub fn client(target: &str, trust_pem: &[u8]) -> SecurityServiceClient {
    let creds = ChannelCredentialsBuilder::new()
        .root_cert(trust_pem.to_vec())
        .build();
    SecurityServiceClient::new(
        ChannelBuilder::new(env())
            .set_credentials(creds)
            .connect(target),
    )
}

/// One Certificate call with the given `token` metadata entries.
pub fn call_with(
    client: &SecurityServiceClient,
    tokens: &[&[u8]],
    csr: &[u8],
) -> Result<CertificateResponse, RpcStatus> {
    let mut md = MetadataBuilder::new();
    for t in tokens {
        md.add_str("token", std::str::from_utf8(t).unwrap())
            .unwrap();
    }
    let opt = CallOption::default()
        .headers(md.build())
        .timeout(Duration::from_secs(20));
    let req = CertificateRequest {
        csr: csr.to_vec(),
        ..Default::default()
    };
    client.certificate_opt(&req, opt).map_err(|e| match e {
        grpcio::Error::RpcFailure(s) => s,
        other => panic!("transport error: {other}"),
    })
}

pub fn call(client: &SecurityServiceClient, csr: &[u8]) -> Result<CertificateResponse, RpcStatus> {
    call_with(client, &[TOKEN.as_bytes()], csr)
}

// ---------- checking what was issued ----------

/// (nid, critical) of every extension, in order.
pub fn extensions(cert: &X509) -> Vec<(Nid, bool)> {
    use foreign_types::ForeignTypeRef;
    let mut out = Vec::new();
    // SAFETY: read-only walk over a valid certificate's extensions.
    unsafe {
        let x = cert.as_ref().as_ptr();
        for i in 0..openssl_sys::X509_get_ext_count(x) {
            let ext = openssl_sys::X509_get_ext(x, i);
            let nid = openssl_sys::OBJ_obj2nid(openssl_sys::X509_EXTENSION_get_object(ext));
            out.push((
                Nid::from_raw(nid),
                openssl_sys::X509_EXTENSION_get_critical(ext) == 1,
            ));
        }
    }
    out
}

/// `leaf` verified against `bundle` as a TLS server certificate twice: by
/// OpenSSL, and by an independent strict validator (rustls-webpki), which also
/// checks that every IP/DNS SAN is a name the certificate is valid for.
pub fn verify_chain(leaf: &X509, bundle: &[X509]) -> Result<(), String> {
    let mut store = X509StoreBuilder::new().unwrap();
    for c in bundle {
        store.add_cert(c.clone()).unwrap();
    }
    store.set_purpose(X509PurposeId::SSL_SERVER).unwrap();
    let store = store.build();
    let mut ctx = X509StoreContext::new().unwrap();
    let (ok, err) = ctx
        .init(&store, leaf, &Stack::new().unwrap(), |c| {
            let ok = c.verify_cert()?;
            Ok((ok, c.error().to_string()))
        })
        .unwrap();
    if !ok {
        return Err(format!("OpenSSL: {err}"));
    }
    webpki_verify(leaf, bundle).map_err(|e| format!("rustls-webpki: {e}"))
}

/// rustls-webpki's verdict. Its ring backend has no P-521, so certificates
/// signed with ECDSA-SHA512 (P-521 CAs) are checked by OpenSSL alone.
fn webpki_verify(leaf: &X509, bundle: &[X509]) -> Result<(), String> {
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    if leaf.signature_algorithm().object().nid() == Nid::ECDSA_WITH_SHA512 {
        return Ok(());
    }
    let ders: Vec<Vec<u8>> = bundle.iter().map(|c| c.to_der().unwrap()).collect();
    let ders: Vec<CertificateDer<'_>> = ders
        .iter()
        .map(|d| CertificateDer::from(d.as_slice()))
        .collect();
    let anchors: Vec<_> = ders
        .iter()
        .map(|d| webpki::anchor_from_trusted_cert(d).map_err(|e| format!("trust anchor: {e:?}")))
        .collect::<Result<_, _>>()?;
    let leaf_der = leaf.to_der().unwrap();
    let leaf_der = CertificateDer::from(leaf_der.as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| format!("parse: {e:?}"))?;
    let now = UnixTime::since_unix_epoch(Duration::from_secs(now_unix() as u64));
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| format!("chain: {e:?}"))?;
    for san in talos_csr_signer::pki::cert_sans(leaf) {
        let name = match &san {
            talos_csr_signer::pki::San::Ip(ip) => ServerName::IpAddress((*ip).into()),
            talos_csr_signer::pki::San::Dns(d) => match ServerName::try_from(d.as_str()) {
                Ok(ServerName::DnsName(n)) => ServerName::DnsName(n.to_owned()),
                // A DNS SAN spelled like an IP address ("0.0.0.0"): dialling
                // that address matches IP SANs only (webpki, Go, OpenSSL), and
                // a SAN that is not a valid DNS name cannot be dialled at all;
                // neither makes a claim to check.
                Ok(_) | Err(_) => continue,
            },
        };
        ee.verify_is_valid_for_subject_name(&name)
            .map_err(|e| format!("name {san}: {e:?}"))?;
    }
    Ok(())
}

pub fn aki_matches_ski(leaf: &X509, ca: &X509) -> bool {
    match (leaf.authority_key_id(), ca.subject_key_id()) {
        (Some(a), Some(s)) => a.as_slice() == s.as_slice(),
        _ => false,
    }
}

pub fn unix(t: &openssl::asn1::Asn1TimeRef) -> i64 {
    let epoch = Asn1Time::from_unix(0).unwrap();
    let d = epoch.diff(t).unwrap();
    d.days as i64 * 86_400 + d.secs as i64
}

/// The expected signature algorithm for a CA key type.
pub fn sig_alg(kt: KeyType) -> Nid {
    match kt {
        KeyType::Ed25519 => Nid::from_raw(openssl_sys::NID_ED25519),
        KeyType::EcP256 => Nid::ECDSA_WITH_SHA256,
        KeyType::EcP384 => Nid::ECDSA_WITH_SHA384,
        KeyType::EcP521 => Nid::ECDSA_WITH_SHA512,
        KeyType::Rsa(_) => Nid::SHA256WITHRSAENCRYPTION,
    }
}

/// Reads a value from a Talos fixture YAML by its key path, e.g.
/// `["certs", "os", "crt"]`.
pub fn talos_fixture(file: &str, path: &[&str]) -> String {
    let file_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/talos")
        .join(file);
    let text = std::fs::read_to_string(&file_path)
        .unwrap_or_else(|e| panic!("{}: {e}", file_path.display()));
    let mut depth = 0;
    let mut indent_stack: Vec<usize> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        let indent = line.len() - trimmed.len();
        while indent_stack.last().is_some_and(|&i| indent <= i) {
            indent_stack.pop();
            depth -= 1;
        }
        if depth < path.len() {
            let want = path[depth];
            if let Some(rest) = trimmed.strip_prefix(want).and_then(|r| r.strip_prefix(':')) {
                if depth + 1 == path.len() {
                    return rest.trim().to_string();
                }
                indent_stack.push(indent);
                depth += 1;
            }
        }
    }
    panic!("{path:?} not found in {file}");
}

pub fn b64(s: &str) -> Vec<u8> {
    openssl::base64::decode_block(s).unwrap()
}

/// A loopback TCP forwarder whose outgoing connections come from `source`
/// (e.g. 127.0.0.2), so one test can be two different client addresses.
/// Forwarding threads end with their connections; the listener with the test.
pub fn source_proxy(target: SocketAddr, source: std::net::IpAddr) -> SocketAddr {
    use socket2::{Domain, Socket, Type};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(inbound) = inbound else { break };
            let sock = Socket::new(Domain::for_address(target), Type::STREAM, None).unwrap();
            sock.bind(&SocketAddr::new(source, 0).into()).unwrap();
            if sock.connect(&target.into()).is_err() {
                continue;
            }
            let outbound: std::net::TcpStream = sock.into();
            let (mut a_read, mut b_write) =
                (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
            let (mut b_read, mut a_write) = (outbound, inbound);
            thread::spawn(move || {
                let _ = std::io::copy(&mut a_read, &mut b_write);
                let _ = b_write.shutdown(std::net::Shutdown::Write);
            });
            thread::spawn(move || {
                let _ = std::io::copy(&mut b_read, &mut a_write);
                let _ = a_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// The JSON audit records in the server's output.
pub fn audit_records(server: &Server) -> Vec<serde_json::Value> {
    server
        .log()
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}"))
        })
        .collect()
}

impl Server {
    /// The first word after `prefix` in the log (e.g. an address), waiting
    /// for the line to appear.
    pub fn log_value(&self, prefix: &str) -> String {
        self.wait_log(prefix);
        let log = self.log();
        let rest = log.split(prefix).nth(1).unwrap();
        rest.split_whitespace().next().unwrap().to_string()
    }
}

/// GET over plain HTTP/1.1 on loopback: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

/// A metric's value from Prometheus text, e.g. `requests_total{code="OK"}`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    let full = format!("talos_csr_signer_{series}");
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(&full)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// DER as PEM with `label`, 64-character lines.
pub fn pem(der: &[u8], label: &str) -> Vec<u8> {
    talos_csr_signer::pki::pem::encode(label, der)
}

/// (header length, content length) of the DER element at `der[at..]`.
pub fn der_element(der: &[u8], at: usize) -> (usize, usize) {
    let first = der[at + 1];
    if first < 0x80 {
        return (2, usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    (
        2 + n,
        der[at + 2..at + 2 + n]
            .iter()
            .fold(0, |a, b| a << 8 | usize::from(*b)),
    )
}

/// `n` Certificate calls started at once on one channel (all in flight
/// together when below the per-connection stream limit).
pub fn start_calls(
    client: &SecurityServiceClient,
    csr: &[u8],
    n: usize,
) -> Vec<grpcio::ClientUnaryReceiver<CertificateResponse>> {
    start_calls_within(client, csr, n, Duration::from_secs(30))
}

/// As `start_calls`, each call with the deadline `timeout` (sent to the
/// server as grpc-timeout, as Talos workers send their 10 s).
pub fn start_calls_within(
    client: &SecurityServiceClient,
    csr: &[u8],
    n: usize,
    timeout: Duration,
) -> Vec<grpcio::ClientUnaryReceiver<CertificateResponse>> {
    let req = CertificateRequest {
        csr: csr.to_vec(),
        ..Default::default()
    };
    let mut md = MetadataBuilder::new();
    md.add_str("token", TOKEN).unwrap();
    let md = md.build();
    (0..n)
        .map(|_| {
            let opt = CallOption::default().headers(md.clone()).timeout(timeout);
            client.certificate_async_opt(&req, opt).unwrap()
        })
        .collect()
}

/// tests/go/talos_compat.go, built once per test binary (Debian's golang-go;
/// scripts/test.sh installs it).
pub fn go_compat_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // Per test process: test binaries run side by side.
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("talos-compat-{}", std::process::id()));
        let status = Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/go/talos_compat.go"
            ))
            .status()
            .expect("go (Debian's golang-go; scripts/test.sh installs it)");
        assert!(
            status.success(),
            "go build of tests/go/talos_compat.go failed"
        );
        out
    })
    .clone()
}

/// talosctl's client certificate: O=os:admin, clientAuth, signed by the OS CA.
pub fn admin_cert(ca: &Ca, dir: &TempDir) -> (String, String) {
    let key = KeyType::EcP256.generate().unwrap();
    let mut name = X509Name::builder().unwrap();
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "os:admin")
        .unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, "admin").unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::ONE, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(ca.cert.subject_name()).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap())
        .unwrap();
    let kt = KeyType::of(&ca.key).unwrap();
    b.sign(&ca.key, kt.signing_digest()).unwrap();
    let crt = dir.write("admin.crt", &b.build().to_pem().unwrap());
    let key = dir.write("admin.key", &key.private_key_to_pem_pkcs8().unwrap());
    (crt.display().to_string(), key.display().to_string())
}

/// A test whose prerequisite is missing fails, saying which: a test never
/// passes without having run. Tests that need what a machine may lack (root,
/// systemd-nspawn, Talos's validator) are `#[ignore = "why"]`, so cargo lists
/// them as ignored with the reason, and scripts/test.sh includes them
/// (`--include-ignored`) where everything they need is there.
pub fn cannot_run(test: &str, why: &str) -> ! {
    panic!("{test} cannot run here: {why}")
}

/// Talos's own machine-config validator (Talos v1.13.9's loader and
/// Validate): $TALOS_CONFIG_VALIDATE, else the one in ../shared/tools.
pub fn talos_config_validate() -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("TALOS_CONFIG_VALIDATE")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            manifest.join("../shared/tools/talos-config-validate/talos-config-validate"),
            PathBuf::from("/work/shared/tools/talos-config-validate/talos-config-validate"),
        ])
        .find(|p| p.is_file())
}

/// `out`, once asserted that its command succeeded; `what` and the command's
/// output otherwise.
pub fn succeeded(out: std::process::Output, what: &str) -> std::process::Output {
    assert!(out.status.success(), "{what}:\n{}", output_text(&out));
    out
}

/// A finished command's stdout followed by its stderr, as text.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A loopback proxy to `target` that keeps every byte the server sends, per
/// connection, so a test can read each TLS handshake's plaintext part.
pub fn recording_proxy(target: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    thread::spawn(move || {
        for inbound in listener.incoming() {
            let Ok(inbound) = inbound else { break };
            let Ok(outbound) = std::net::TcpStream::connect(target) else {
                continue;
            };
            let index = {
                let mut all = record.lock().unwrap();
                all.push(Vec::new());
                all.len() - 1
            };
            let (mut up_read, mut up_write) =
                (inbound.try_clone().unwrap(), outbound.try_clone().unwrap());
            thread::spawn(move || {
                let _ = std::io::copy(&mut up_read, &mut up_write);
                let _ = up_write.shutdown(std::net::Shutdown::Write);
            });
            let record = Arc::clone(&record);
            thread::spawn(move || {
                let (mut down_read, mut down_write) = (outbound, inbound);
                let mut buf = [0u8; 4096];
                loop {
                    match std::io::Read::read(&mut down_read, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            record.lock().unwrap()[index].extend_from_slice(&buf[..n]);
                            if std::io::Write::write_all(&mut down_write, &buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = down_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, seen)
}

/// What a TLS 1.3 server's plaintext flight says: how many ServerHello
/// messages it sent (a HelloRetryRequest is one, with its fixed random) and
/// the key-share group of each (IANA numbers: 0x001d X25519, 0x0017 P-256).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ServerHellos {
    pub retries: usize,
    pub hellos: usize,
    pub groups: Vec<u16>,
}

/// RFC 8446 4.1.3: the random of a HelloRetryRequest.
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Reads the server's TLS records up to the first encrypted one after a real
/// ServerHello.
pub fn server_hellos(bytes: &[u8]) -> ServerHellos {
    let mut out = ServerHellos::default();
    let mut at = 0;
    while at + 5 <= bytes.len() {
        let (kind, len) = (
            bytes[at],
            usize::from(bytes[at + 3]) << 8 | usize::from(bytes[at + 4]),
        );
        let Some(body) = bytes.get(at + 5..at + 5 + len) else {
            break;
        };
        at += 5 + len;
        if kind == 23 && out.hellos > out.retries {
            break;
        }
        if kind != 22 || body.first() != Some(&2) || body.len() < 4 + 2 + 32 + 1 {
            continue;
        }
        let hello = &body[4..];
        let retry = hello[2..34] == HRR_RANDOM;
        out.hellos += 1;
        out.retries += usize::from(retry);
        let sid = usize::from(hello[34]);
        let mut ext = 35 + sid + 2 + 1 + 2;
        while ext + 4 <= hello.len() {
            let typ = u16::from_be_bytes([hello[ext], hello[ext + 1]]);
            let elen = usize::from(u16::from_be_bytes([hello[ext + 2], hello[ext + 3]]));
            if typ == 0x0033 && elen >= 2 {
                out.groups
                    .push(u16::from_be_bytes([hello[ext + 4], hello[ext + 5]]));
            }
            ext += 4 + elen;
        }
    }
    out
}

/// A Secret volume in `root` as kubelet writes it: the files in a
/// timestamped directory, `..data` pointing at it, one symlink per key.
pub fn secret_volume(root: &Path, files: &[(&str, Vec<u8>)]) {
    let stamped = root.join("..2026_12_01_10_00_00.000000001");
    std::fs::create_dir_all(&stamped).unwrap();
    for (name, data) in files {
        std::fs::write(stamped.join(name), data).unwrap();
        std::os::unix::fs::symlink(format!("..data/{name}"), root.join(name)).unwrap();
    }
    std::os::unix::fs::symlink("..2026_12_01_10_00_00.000000001", root.join("..data")).unwrap();
}

/// A Secret update as kubelet makes it: the new files in a new timestamped
/// directory, then `..data` swapped to it in one rename.
pub fn update_secret_volume(root: &Path, files: &[(&str, Vec<u8>)]) {
    let stamped = root.join("..2026_12_01_11_00_00.000000002");
    std::fs::create_dir_all(&stamped).unwrap();
    for (name, data) in files {
        std::fs::write(stamped.join(name), data).unwrap();
    }
    let tmp = root.join("..data_tmp");
    std::os::unix::fs::symlink("..2026_12_01_11_00_00.000000002", &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
}

/// A serving certificate as cert-manager's CA Issuer signs it: empty subject,
/// critical SANs, key usages digitalSignature + keyEncipherment, serverAuth.
/// The key as cert-manager encodes it by default (SEC1 for ECDSA, PKCS#1 for
/// RSA, PKCS#8 for Ed25519).
pub fn cert_manager_cert(
    issuer: &X509,
    issuer_key: &PKey<Private>,
    key_type: KeyType,
    dns: &[&str],
    ips: &[&str],
) -> (X509, Vec<u8>) {
    let key = key_type.generate().unwrap();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(127, MsbOption::ONE, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&X509Name::builder().unwrap().build())
        .unwrap();
    b.set_issuer_name(issuer.subject_name()).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(90).unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_encipherment()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().build().unwrap())
        .unwrap();
    let mut san = SubjectAlternativeName::new();
    san.critical();
    for d in dns {
        san.dns(d);
    }
    for ip in ips {
        san.ip(ip);
    }
    let san = san.build(&b.x509v3_context(Some(issuer), None)).unwrap();
    b.append_extension(san).unwrap();
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&b.x509v3_context(Some(issuer), None))
        .unwrap();
    b.append_extension(aki).unwrap();
    let kt = KeyType::of(issuer_key).unwrap();
    b.sign(issuer_key, kt.signing_digest()).unwrap();
    let key_pem = match key_type {
        KeyType::Ed25519 => key.private_key_to_pem_pkcs8().unwrap(),
        KeyType::Rsa(_) => key.rsa().unwrap().private_key_to_pem().unwrap(),
        _ => key.ec_key().unwrap().private_key_to_pem().unwrap(),
    };
    (b.build(), key_pem)
}
