//! The Go talos-csr-signer's deployments with only the image changed. The real
//! binary starts exactly as each Go version's manifests start it (no
//! arguments, or the Go flags; their environment; their Secrets mounted where
//! their volumes mount them, in kubelet's `..data` layout), inside a private
//! mount and network namespace: the default paths (/etc/talos-ca,
//! /etc/talos-server-crt, over an overlay of the host's /etc) and the default
//! port (50001 on all interfaces) are the real ones, and nothing leaves the
//! namespace's loopback. The workers are Go's crypto/tls + net/http making the
//! Certificate call (tests/go/talos_compat.go) and our grpcio `request`.
//!
//! Needs root (unshare): the tests are marked ignored with that reason, and
//! scripts/test.sh runs them as root.

mod common;

use std::process::Command;

use common::*;
use openssl::asn1::Asn1Time;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectKeyIdentifier};
use openssl::x509::X509Builder;
use talos_csr_signer::pki::keys::KeyType;

/// These tests need root for mount and network namespaces (`unshare`).
const NEEDS_ROOT: &str = "needs root for mount and network namespaces";

/// Fails the test, saying why, unless this process may make mount and
/// network namespaces.
fn require_namespaces(test: &str) {
    let ok = Command::new("unshare")
        .args(["--mount", "--net", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        cannot_run(test, NEEDS_ROOT);
    }
}

/// One pod: an overlay over /etc holding its Secret volumes, and the signer
/// in its own network namespace.
struct Pod {
    dir: TempDir,
    server: Option<Server>,
}

impl Pod {
    fn new() -> Pod {
        let dir = TempDir::new("pod");
        std::fs::create_dir_all(dir.path("upper")).unwrap();
        std::fs::create_dir_all(dir.path("work")).unwrap();
        Pod { dir, server: None }
    }

    /// A Secret volume mounted at /etc/MOUNT as kubelet writes it: the files
    /// in a timestamped directory, `..data` pointing at it, one symlink per key.
    fn secret_volume(&self, mount: &str, files: &[(&str, Vec<u8>)]) {
        secret_volume(&self.dir.path("upper").join(mount), files);
    }

    /// Starts the signer as the container would: `args` after the image's
    /// entrypoint, `env` and PATH its whole environment.
    fn start(&mut self, args: &[&str], env: &[(&str, &str)]) -> &Server {
        let script = r#"set -e
ip link set lo up
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc
shift
exec "$@""#;
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--net", "--propagation", "private", "--"])
            .args(["sh", "-c", script, "sh"])
            .arg(&self.dir.0)
            .arg(BIN)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env.iter().copied());
        self.server = Some(Server::spawn(cmd));
        self.server.as_ref().unwrap()
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("started")
    }

    /// `program` run inside the pod's network namespace.
    fn in_netns(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t")
            .arg(self.server().child.id().to_string())
            .args(["-n", "--"])
            .arg(program);
        cmd
    }

    /// A Talos worker (Go) that dials the signer at 127.0.0.1:50001, by IP or
    /// by `server_name`, gets a certificate and uses it as apid and talosctl do.
    fn go_worker(&self, ca: &Ca, client: &TempDir, server_name: Option<&str>) -> String {
        let (admin_crt, admin_key) = admin_cert(ca, client);
        let mut cmd = self.in_netns(go_compat_bin().to_str().unwrap());
        cmd.args(["-signer", "127.0.0.1:50001", "-ca"])
            .arg(client.path("ca.crt"))
            .arg("-token-file")
            .arg(client.path("token"))
            .args(["-admin-crt", &admin_crt, "-admin-key", &admin_key]);
        if let Some(name) = server_name {
            cmd.args(["-server-name", name]);
        }
        let text = output_text(&cmd.output().unwrap());
        assert!(
            text.ends_with("PASS\n"),
            "Go worker:\n{text}\nsigner:\n{}",
            self.server().log()
        );
        println!("{text}");
        text
    }

    /// Our grpcio worker, `request`, against 127.0.0.1:50001.
    fn request(&self, client: &TempDir) -> String {
        let mut cmd = self.in_netns(BIN);
        cmd.args(["request", "--endpoint", "127.0.0.1", "--ca"])
            .arg(client.path("ca.crt"))
            .arg("--token-file")
            .arg(client.path("token"))
            .args(["--cn", "worker-2", "--ip", "127.0.0.1", "--dns", "worker-2"]);
        let out = cmd.output().unwrap();
        let ok = out.status.success();
        let text = output_text(&out);
        assert!(ok, "request:\n{text}\nsigner:\n{}", self.server().log());
        text
    }

    /// The log never shows the token, and says which files were taken.
    fn assert_log(&self, needles: &[&str]) {
        let log = self.server().log();
        assert!(!log.contains(TOKEN), "the token reached the log:\n{log}");
        for needle in needles {
            assert!(log.contains(needle), "no {needle:?} in the log:\n{log}");
        }
        println!("{log}");
    }
}

/// What a worker (and talosctl) holds: the OS CA and the token.
fn worker_files(ca: &Ca) -> TempDir {
    let dir = TempDir::new("worker");
    dir.write("ca.crt", &ca.cert_pem());
    dir.write("token", format!("{TOKEN}\n").as_bytes());
    dir
}

/// The CA key as Talos writes it (`ED25519 PRIVATE KEY`), or PKCS#8.
fn talos_key_pem(ca: &Ca) -> Vec<u8> {
    let pem = String::from_utf8(ca.key_pem()).unwrap();
    pem.replace("PRIVATE KEY", "ED25519 PRIVATE KEY")
        .into_bytes()
}

/// An intermediate CA under the OS CA (for a serving chain in tls.crt).
fn intermediate(ca: &Ca) -> Ca {
    let mut spec = CaSpec::new(KeyType::EcP256);
    spec.org = "talos-intermediate";
    let mut inter = spec.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(inter.cert.serial_number()).unwrap();
    b.set_subject_name(inter.cert.subject_name()).unwrap();
    b.set_issuer_name(ca.cert.subject_name()).unwrap();
    b.set_pubkey(&inter.key).unwrap();
    b.set_not_before(inter.cert.not_before()).unwrap();
    b.set_not_after(&Asn1Time::days_from_now(365).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .digital_signature()
            .build()
            .unwrap(),
    )
    .unwrap();
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(Some(&ca.cert), None))
        .unwrap();
    b.append_extension(ski).unwrap();
    let kt = KeyType::of(&ca.key).unwrap();
    b.sign(&ca.key, kt.signing_digest()).unwrap();
    inter.cert = b.build();
    inter
}

/// The dnsNames and ipAddresses of the Go project's cert-manager Certificate.
const GO_SERVING_DNS: &[&str] = &[
    "talos-csr-signer",
    "talos-csr-signer.default",
    "talos-csr-signer.default.svc",
    "talos-csr-signer.default.svc.cluster.local",
];

/// The Go signer's first manifest: env PORT, CA_CERT_PATH, CA_KEY_PATH,
/// TALOS_TOKEN, SERVER_IPS; the Secret's ca.crt/ca.key items (Talos's key
/// label) at /etc/talos-ca; no arguments; the signer makes its own serving
/// certificate.
#[test]
#[ignore = "needs root (mount and network namespaces); scripts/test.sh runs it as root"]
fn go_first_version_manifest_as_is() {
    require_namespaces("go_first_version_manifest_as_is");
    let ca = Ca::new(KeyType::Ed25519);
    let mut pod = Pod::new();
    pod.secret_volume(
        "talos-ca",
        &[("ca.crt", ca.cert_pem()), ("ca.key", talos_key_pem(&ca))],
    );
    pod.start(
        &[],
        &[
            ("PORT", "50001"),
            ("CA_CERT_PATH", "/etc/talos-ca/ca.crt"),
            ("CA_KEY_PATH", "/etc/talos-ca/ca.key"),
            ("TALOS_TOKEN", TOKEN),
            ("SERVER_IPS", "10.10.10.101"),
        ],
    );
    assert_eq!(pod.server().addr.to_string(), "0.0.0.0:50001");
    let worker = worker_files(&ca);
    pod.go_worker(&ca, &worker, None);
    pod.request(&worker);
    pod.assert_log(&[
        "files /etc/talos-ca/ca.crt and /etc/talos-ca/ca.key, chosen by certificate from \
         CA_CERT_PATH, key from CA_KEY_PATH",
        "serving certificate: generated",
        "10.10.10.101",
    ]);
}

/// The same image with nothing set but the token: the first version's
/// default paths.
#[test]
#[ignore = "needs root (mount and network namespaces); scripts/test.sh runs it as root"]
fn go_first_version_defaults_with_only_the_token() {
    require_namespaces("go_first_version_defaults_with_only_the_token");
    let ca = Ca::new(KeyType::Ed25519);
    let mut pod = Pod::new();
    pod.secret_volume(
        "talos-ca",
        &[
            ("ca.crt", ca.cert_pem()),
            ("ca.key", talos_key_pem(&ca)),
            ("token", TOKEN.as_bytes().to_vec()),
        ],
    );
    pod.start(&[], &[("TALOS_TOKEN", TOKEN)]);
    let worker = worker_files(&ca);
    pod.go_worker(&ca, &worker, None);
    pod.assert_log(&["/etc/talos-ca/ca.key, chosen by the default paths"]);
}

/// The Go signer's current manifests: only TALOS_TOKEN; the CA Secret that
/// cert-manager's CA Issuer reads (tls.crt, tls.key as PKCS#8, token) at
/// /etc/talos-ca; cert-manager's serving Secret (tls.crt, tls.key in SEC1,
/// ca.crt; DNS SANs and 127.0.0.1) at /etc/talos-server-crt. A worker dialling
/// the IP and one dialling a name (SNI) are both served.
#[test]
#[ignore = "needs root (mount and network namespaces); scripts/test.sh runs it as root"]
fn go_current_manifest_with_cert_manager_secrets_as_is() {
    require_namespaces("go_current_manifest_with_cert_manager_secrets_as_is");
    let ca = Ca::new(KeyType::Ed25519);
    let (serving, serving_key) = cert_manager_cert(
        &ca.cert,
        &ca.key,
        KeyType::EcP256,
        GO_SERVING_DNS,
        &["127.0.0.1"],
    );
    let mut pod = Pod::new();
    pod.secret_volume(
        "talos-ca",
        &[
            ("tls.crt", ca.cert_pem()),
            ("tls.key", ca.key_pem()),
            ("token", TOKEN.as_bytes().to_vec()),
        ],
    );
    pod.secret_volume(
        "talos-server-crt",
        &[
            ("tls.crt", serving.to_pem().unwrap()),
            ("tls.key", serving_key),
            ("ca.crt", ca.cert_pem()),
        ],
    );
    pod.start(&[], &[("TALOS_TOKEN", TOKEN)]);
    let worker = worker_files(&ca);
    pod.go_worker(&ca, &worker, None);
    let sni = pod.go_worker(&ca, &worker, Some("talos-csr-signer.default.svc"));
    assert!(
        sni.contains("name talos-csr-signer.default.svc (SNI)"),
        "{sni}"
    );
    pod.request(&worker);
    pod.assert_log(&[
        "files /etc/talos-ca/tls.crt and /etc/talos-ca/tls.key, chosen by the default paths of \
         a cert-manager CA Secret",
        "serving certificate: files /etc/talos-server-crt/tls.crt and \
         /etc/talos-server-crt/tls.key, chosen by the default paths",
    ]);
}

/// A P-256 machine CA in the Go signer's current CA Secret (tls.crt,
/// tls.key) and a cert-manager serving certificate with its DNS names only.
fn cert_manager_dns_only_pod() -> (Ca, Pod) {
    let ca = Ca::new(KeyType::EcP256);
    let (serving, serving_key) =
        cert_manager_cert(&ca.cert, &ca.key, KeyType::EcP256, GO_SERVING_DNS, &[]);
    let pod = Pod::new();
    pod.secret_volume(
        "talos-ca",
        &[("tls.crt", ca.cert_pem()), ("tls.key", ca.key_pem())],
    );
    pod.secret_volume(
        "talos-server-crt",
        &[
            ("tls.crt", serving.to_pem().unwrap()),
            ("tls.key", serving_key),
        ],
    );
    (ca, pod)
}

/// The Go signer's flags, in both of cobra's spellings, with its default
/// paths: --talos-token works and warns, and the token stays out of the log.
#[test]
#[ignore = "needs root (mount and network namespaces); scripts/test.sh runs it as root"]
fn go_current_flags_as_is() {
    require_namespaces("go_current_flags_as_is");
    let (ca, mut pod) = cert_manager_dns_only_pod();
    let token_flag = format!("--talos-token={TOKEN}");
    pod.start(
        &[
            "--port=50001",
            "--ca-cert-path",
            "/etc/talos-ca/tls.crt",
            "--ca-key-path=/etc/talos-ca/tls.key",
            "--tls-cert-path=/etc/talos-server-crt/tls.crt",
            "--tls-key-path",
            "/etc/talos-server-crt/tls.key",
            &token_flag,
        ],
        &[],
    );
    let worker = worker_files(&ca);
    // DNS SANs only: the worker must dial a name.
    pod.go_worker(
        &ca,
        &worker,
        Some("talos-csr-signer.default.svc.cluster.local"),
    );
    pod.assert_log(&[
        "--talos-token puts the machine token on the command line",
        "chosen by certificate from --ca-cert, key from --ca-key",
        "chosen by --tls-cert/--tls-key",
    ]);
}

/// cert-manager variants a Go-signer user may have: an Ed25519 serving key
/// (PKCS#8), DNS SANs only, and a chain (leaf + intermediate) in tls.crt.
/// Go workers accept an Ed25519 serving key (gRPC core clients do not, which
/// is why the generated one is P-256), so only the Go worker dials here.
#[test]
#[ignore = "needs root (mount and network namespaces); scripts/test.sh runs it as root"]
fn cert_manager_ed25519_serving_cert_with_chain() {
    require_namespaces("cert_manager_ed25519_serving_cert_with_chain");
    let ca = Ca::new(KeyType::Ed25519);
    let inter = intermediate(&ca);
    let (serving, serving_key) = cert_manager_cert(
        &inter.cert,
        &inter.key,
        KeyType::Ed25519,
        &["signer.tenant-00.example"],
        &[],
    );
    let mut chain = serving.to_pem().unwrap();
    chain.extend(inter.cert_pem());
    let mut pod = Pod::new();
    pod.secret_volume(
        "talos-ca",
        &[("tls.crt", ca.cert_pem()), ("tls.key", talos_key_pem(&ca))],
    );
    pod.secret_volume(
        "talos-server-crt",
        &[
            ("tls.crt", chain),
            ("tls.key", serving_key),
            ("ca.crt", inter.cert_pem()),
        ],
    );
    pod.start(&[], &[("TALOS_TOKEN", TOKEN)]);
    let worker = worker_files(&ca);
    pod.go_worker(&ca, &worker, Some("signer.tenant-00.example"));
    pod.assert_log(&["serving certificate: files /etc/talos-server-crt/tls.crt"]);
}

/// A worker pointed at a name the cert-manager certificate does not carry is
/// refused by Go's TLS: the check above can fail.
#[test]
#[ignore = "needs root (mount and network namespaces); scripts/test.sh runs it as root"]
fn a_name_missing_from_the_serving_cert_fails_the_go_worker() {
    require_namespaces("a_name_missing_from_the_serving_cert_fails_the_go_worker");
    let (ca, mut pod) = cert_manager_dns_only_pod();
    pod.start(&[], &[("TALOS_TOKEN", TOKEN)]);
    let worker = worker_files(&ca);
    let mut cmd = pod.in_netns(go_compat_bin().to_str().unwrap());
    cmd.args(["-signer", "127.0.0.1:50001", "-ca"])
        .arg(worker.path("ca.crt"))
        .arg("-token-file")
        .arg(worker.path("token"));
    let out = output_text(&cmd.output().unwrap());
    assert!(
        out.contains("FAIL worker TLS handshake") && out.contains("127.0.0.1"),
        "{out}"
    );
}
