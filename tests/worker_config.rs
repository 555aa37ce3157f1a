//! `worker-config` against the real binary: what it writes is checked by
//! Talos's own validator (Talos v1.13.9's config loader and Validate), by the
//! Kubernetes schema, field by field against its inputs, and end to end: a
//! signer started from the same bundle issues a certificate to a Go worker
//! holding exactly worker.yaml's machine token and OS CA, and an apid-like Go
//! TLS server with that certificate and the returned bundle accepts
//! talosconfig's client certificate.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use openssl::base64;
use openssl::x509::X509;
use talos_csr_signer::pki::keys::KeyType;
use yaml_rust2::{Yaml, YamlLoader};

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/talos/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn s(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// A cluster CA as kubeadm makes one, and a kubeconfig pointing at `server`
/// with it inline (`certificate-authority-data`) or as a file beside it.
struct K8s {
    ca: Ca,
    kubeconfig: PathBuf,
}

fn k8s_cluster(dir: &TempDir, server: &str, inline: bool) -> K8s {
    let mut spec = CaSpec::new(KeyType::Rsa(2048));
    spec.org = "kubernetes";
    let ca = spec.build();
    let ca_field = if inline {
        format!(
            "certificate-authority-data: {}",
            base64::encode_block(&ca.cert_pem())
        )
    } else {
        dir.write("k8s-ca.crt", &ca.cert_pem());
        "certificate-authority: k8s-ca.crt".to_string()
    };
    let kubeconfig = dir.write(
        "kubeconfig",
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://other:6443\n    insecure-skip-tls-verify: true\n- name: tenant-00\n  cluster:\n    server: {server}\n    {ca_field}\ncontexts:\n- name: other\n  context: {{cluster: other, user: admin}}\n- name: admin@tenant-00\n  context: {{cluster: tenant-00, user: admin}}\ncurrent-context: other\nusers:\n- name: admin\n  user: {{token: not-used}}\n"
        )
        .as_bytes(),
    );
    K8s { ca, kubeconfig }
}

/// `--from`, `--kubeconfig` with the tenant's context, `--out`, then `extra`.
fn args_for(from: &str, k8s: &K8s, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = s(&[
        "--from",
        from,
        "--kubeconfig",
        k8s.kubeconfig.to_str().unwrap(),
        "--kubeconfig-context",
        "admin@tenant-00",
        "--out",
        out.to_str().unwrap(),
    ]);
    args.extend(s(extra));
    args
}

fn worker_config(args: &[String]) -> (bool, String) {
    let mut argv = s(&["worker-config"]);
    argv.extend_from_slice(args);
    let (status, out, err) = run_binary(&argv, &[], Duration::from_secs(30));
    (status.success(), format!("{out}{err}"))
}

fn load(path: &Path) -> Vec<Yaml> {
    YamlLoader::load_from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn b64_field(y: &Yaml) -> Vec<u8> {
    base64::decode_block(y.as_str().expect("a base64 string")).unwrap()
}

const NO_VALIDATOR: &str =
    "no talos-config-validate (TALOS_CONFIG_VALIDATE, or ../shared/tools beside the checkout)";

/// Talos's validator on `file`, which must say ok (metal mode, strict).
fn talos_validate(file: &Path) -> String {
    let Some(validator) = talos_config_validate() else {
        cannot_run("talos_validate", NO_VALIDATOR);
    };
    let out = Command::new(validator)
        .args(["--mode", "metal", "--strict"])
        .arg(file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains(": ok (machine type worker"),
        "Talos refuses {}:\n{text}{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn kubernetes_validate(file: &Path) {
    match Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "kubernetes-validate {}:\n{}",
            file.display(),
            output_text(&out)
        ),
        Err(_) => cannot_run(
            "kubernetes_validate",
            "no kubernetes-validate (scripts/test.sh installs it)",
        ),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
#[ignore = "needs Talos's machine-config validator; scripts/test.sh runs it where there is one"]
fn worker_yaml_is_valid_talos_and_carries_both_pkis() {
    let dir = TempDir::new("wc");
    let k8s = k8s_cluster(&dir, "https://10.10.10.101:6443", true);
    let out = dir.path("out");
    let (ok, text) = worker_config(&args_for(
        &fixture("secrets.yaml"),
        &k8s,
        &out,
        &[
            "--kubernetes-version",
            "v1.33.0",
            "--cert-san",
            "10.10.10.201",
            "--cert-san",
            "worker-1.example",
            "--install-disk",
            "/dev/nvme0n1",
            "--node",
            "10.10.10.201",
        ],
    ));
    assert!(ok, "{text}");
    assert!(
        !text.contains("d8cwfa.eyvpi0xwxyarbfid"),
        "token in output: {text}"
    );
    for f in ["worker.yaml", "cluster.yaml", "talosconfig"] {
        assert_eq!(mode(&out.join(f)), 0o600, "{f}");
    }
    let validated = talos_validate(&out.join("worker.yaml"));
    println!("{validated:?}");

    let w = &load(&out.join("worker.yaml"))[0];
    let m = &w["machine"];
    let c = &w["cluster"];
    assert_eq!(m["type"].as_str(), Some("worker"));
    assert_eq!(
        m["token"].as_str(),
        Some(talos_fixture("secrets.yaml", &["trustdinfo", "token"]).as_str())
    );
    let os_ca =
        base64::decode_block(&talos_fixture("secrets.yaml", &["certs", "os", "crt"])).unwrap();
    assert_eq!(b64_field(&m["ca"]["crt"]), os_ca);
    assert_eq!(m["ca"]["key"].as_str(), Some(""));
    assert_eq!(b64_field(&m["acceptedCAs"][0]["crt"]), os_ca);
    assert_eq!(m["certSANs"][0].as_str(), Some("10.10.10.201"));
    assert_eq!(m["certSANs"][1].as_str(), Some("worker-1.example"));
    assert_eq!(m["install"]["disk"].as_str(), Some("/dev/nvme0n1"));
    assert_eq!(
        m["install"]["image"].as_str(),
        Some("ghcr.io/siderolabs/installer:v1.13.9")
    );
    assert_eq!(
        m["kubelet"]["image"].as_str(),
        Some("ghcr.io/siderolabs/kubelet:v1.33.0")
    );
    assert_eq!(
        c["id"].as_str(),
        Some(talos_fixture("secrets.yaml", &["cluster", "id"]).as_str())
    );
    assert_eq!(
        c["secret"].as_str(),
        Some(talos_fixture("secrets.yaml", &["cluster", "secret"]).as_str())
    );
    assert_eq!(
        c["controlPlane"]["endpoint"].as_str(),
        Some("https://10.10.10.101:6443")
    );
    assert_eq!(c["clusterName"].as_str(), Some("tenant-00"));
    // The Kubernetes cluster's CA and a new token, not Talos's own.
    assert_eq!(b64_field(&c["ca"]["crt"]), k8s.ca.cert_pem());
    assert_eq!(c["ca"]["key"].as_str(), Some(""));
    let token = c["token"].as_str().unwrap();
    assert_ne!(
        token,
        talos_fixture("secrets.yaml", &["secrets", "bootstraptoken"])
    );
    let (id, secret) = token.split_once('.').unwrap();
    let shape = |t: &str, n: usize| {
        t.len() == n
            && t.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    assert!(shape(id, 6) && shape(secret, 16), "{token}");
    assert_eq!(c["discovery"]["enabled"].as_bool(), Some(false));

    // cluster.yaml: the token as kubeadm stores it, and the node RBAC.
    kubernetes_validate(&out.join("cluster.yaml"));
    let docs = load(&out.join("cluster.yaml"));
    let secret_doc = &docs[0];
    assert_eq!(secret_doc["kind"].as_str(), Some("Secret"));
    assert_eq!(
        secret_doc["metadata"]["name"].as_str(),
        Some(format!("bootstrap-token-{id}").as_str())
    );
    assert_eq!(
        secret_doc["metadata"]["namespace"].as_str(),
        Some("kube-system")
    );
    assert_eq!(
        secret_doc["type"].as_str(),
        Some("bootstrap.kubernetes.io/token")
    );
    let data = |k: &str| String::from_utf8(b64_field(&secret_doc["data"][k])).unwrap();
    assert_eq!(data("token-id"), id);
    assert_eq!(data("token-secret"), secret);
    assert_eq!(data("usage-bootstrap-authentication"), "true");
    assert_eq!(data("usage-bootstrap-signing"), "true");
    assert_eq!(
        data("auth-extra-groups"),
        "system:bootstrappers:kubeadm:default-node-token"
    );
    // 24 h (--token-ttl's default) from when it ran, in the last minute.
    let expires = data("expiration");
    let day_from = |t: i64| talos_csr_signer::rfc3339(t + 86_400);
    assert!(
        (now_unix() - 60..=now_unix()).any(|t| day_from(t) == expires),
        "expiration {expires}, not 24 h from now"
    );
    assert_eq!(docs[1]["kind"].as_str(), Some("ClusterRole"));
    assert_eq!(
        docs[1]["metadata"]["name"].as_str(),
        Some("system:talos-nodes")
    );
    assert_eq!(docs[2]["kind"].as_str(), Some("ClusterRoleBinding"));
}

#[test]
#[ignore = "needs Talos's machine-config validator; scripts/test.sh runs it where there is one"]
fn a_signer_from_the_same_bundle_serves_the_worker_and_talosconfig_reaches_apid() {
    let dir = TempDir::new("wc-e2e");
    let k8s = k8s_cluster(&dir, "https://cp.example:6443", false);
    let out = dir.path("out");
    let (ok, text) = worker_config(&args_for(
        &fixture("controlplane.yaml"),
        &k8s,
        &out,
        &[
            "--endpoint",
            "https://10.10.10.101:6443",
            "--talos-version",
            "v1.11.3",
            "--node",
            "127.0.0.1",
        ],
    ));
    assert!(ok, "{text}");
    assert!(text.contains("warning: no --kubernetes-version"), "{text}");
    talos_validate(&out.join("worker.yaml"));
    let w = &load(&out.join("worker.yaml"))[0];
    assert_eq!(
        w["cluster"]["controlPlane"]["endpoint"].as_str(),
        Some("https://10.10.10.101:6443")
    );
    // Talos before 1.12 still lists features.rbac.
    assert_eq!(w["machine"]["features"]["rbac"].as_bool(), Some(true));
    assert_eq!(b64_field(&w["cluster"]["ca"]["crt"]), k8s.ca.cert_pem());

    // What the worker holds: exactly worker.yaml's token and OS CA.
    let worker = TempDir::new("wc-worker");
    worker.write("ca.crt", &b64_field(&w["machine"]["ca"]["crt"]));
    worker.write("token", w["machine"]["token"].as_str().unwrap().as_bytes());
    // What talosctl holds: talosconfig's CA, client certificate and key.
    let tc = &load(&out.join("talosconfig"))[0];
    let ctx = &tc["contexts"]["tenant-00"];
    assert_eq!(tc["context"].as_str(), Some("tenant-00"));
    assert_eq!(ctx["endpoints"][0].as_str(), Some("127.0.0.1"));
    assert_eq!(ctx["nodes"][0].as_str(), Some("127.0.0.1"));
    assert_eq!(b64_field(&ctx["ca"]), b64_field(&w["machine"]["ca"]["crt"]));
    let admin = X509::from_pem(&b64_field(&ctx["crt"])).unwrap();
    let org: Vec<String> = admin
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::ORGANIZATIONNAME)
        .map(|e| e.data().as_slice().to_vec())
        .map(|b| String::from_utf8(b).unwrap())
        .collect();
    assert_eq!(org, ["os:admin"]);
    let admin_crt = worker.write("admin.crt", &b64_field(&ctx["crt"]));
    let admin_key = worker.write("admin.key", &b64_field(&ctx["key"]));

    // A signer from the same bundle, as the deployment guide makes it.
    let material = dir.path("material");
    let (status, _, err) = run_binary(
        &s(&[
            "import",
            "--from",
            &fixture("controlplane.yaml"),
            "--out",
            material.to_str().unwrap(),
        ]),
        &[],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{err}");
    let p = |f: &str| material.join(f).display().to_string();
    let server = Server::start(
        &s(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ca-cert",
            &p("ca.crt"),
            "--ca-key",
            &p("ca.key"),
            "--token-file",
            &p("token"),
        ]),
        &[],
    );
    let go = Command::new(go_compat_bin())
        .args(["-signer", &server.addr.to_string(), "-ca"])
        .arg(worker.path("ca.crt"))
        .arg("-token-file")
        .arg(worker.path("token"))
        .arg("-admin-crt")
        .arg(&admin_crt)
        .arg("-admin-key")
        .arg(&admin_key)
        .output()
        .unwrap();
    let text = output_text(&go);
    println!("{text}");
    assert!(
        go.status.success() && text.ends_with("PASS\n"),
        "{text}\nsigner:\n{}",
        server.log()
    );
    assert!(text.contains("admin client certificate accepted"), "{text}");
}

#[test]
fn broken_inputs_get_one_clear_line_and_nothing_is_overwritten() {
    let dir = TempDir::new("wc-bad");
    let k8s = k8s_cluster(&dir, "https://10.10.10.101:6443", true);
    let out = dir.path("out");
    let base = |from: &str| args_for(from, &k8s, &out, &[]);
    let one_line = |text: &str, needle: &str| {
        assert_eq!(text.trim_end().lines().count(), 1, "{text}");
        assert!(text.contains(needle), "{needle:?} not in {text}");
    };
    // A worker config has no CA key.
    let (ok, text) = worker_config(&base(&fixture("worker.yaml")));
    assert!(!ok);
    one_line(&text, "is a worker machine config");
    // A kubeconfig whose cluster has no CA.
    let mut args = base(&fixture("secrets.yaml"));
    args[5] = "other".into();
    let (ok, text) = worker_config(&args);
    assert!(!ok);
    one_line(
        &text,
        "no certificate-authority-data or certificate-authority",
    );
    // Not https, a Talos too old, a SAN that is neither IP nor name.
    for (extra, needle) in [
        (
            &["--endpoint", "http://10.0.0.1:6443"][..],
            "is not an https:// URL",
        ),
        (&["--talos-version", "v1.7.6"][..], "not supported"),
        (&["--cert-san", "not a name"][..], "is not a host name"),
        (&["--token-ttl", "0h"][..], "--token-ttl"),
    ] {
        let mut args = base(&fixture("secrets.yaml"));
        args.extend(s(extra));
        let (ok, text) = worker_config(&args);
        assert!(!ok, "{extra:?}");
        one_line(&text, needle);
    }
    assert!(!out.exists(), "a refused run wrote files");

    // A good run, then a second one refuses to overwrite, --force replaces.
    let (ok, text) = worker_config(&base(&fixture("secrets.yaml")));
    assert!(ok, "{text}");
    let before = std::fs::read(out.join("worker.yaml")).unwrap();
    let (ok, text) = worker_config(&base(&fixture("secrets.yaml")));
    assert!(!ok);
    one_line(&text, "exists; choose another --out or pass --force");
    assert_eq!(std::fs::read(out.join("worker.yaml")).unwrap(), before);
    let mut args = base(&fixture("secrets.yaml"));
    args.push("--force".into());
    let (ok, text) = worker_config(&args);
    assert!(ok, "{text}");
    assert_ne!(std::fs::read(out.join("worker.yaml")).unwrap(), before);
}

/// The validator is no rubber stamp: the same worker.yaml with the CA key
/// filled in (a worker must not hold it) is refused.
#[test]
#[ignore = "needs Talos's machine-config validator; scripts/test.sh runs it where there is one"]
fn talos_validator_refuses_a_worker_holding_the_ca_key() {
    let Some(validator) = talos_config_validate() else {
        cannot_run(
            "talos_validator_refuses_a_worker_holding_the_ca_key",
            NO_VALIDATOR,
        );
    };
    let dir = TempDir::new("wc-neg");
    let k8s = k8s_cluster(&dir, "https://10.10.10.101:6443", true);
    let out = dir.path("out");
    let (ok, text) = worker_config(&args_for(&fixture("secrets.yaml"), &k8s, &out, &[]));
    assert!(ok, "{text}");
    let yaml = std::fs::read_to_string(out.join("worker.yaml")).unwrap();
    let key = talos_fixture("secrets.yaml", &["certs", "os", "key"]);
    let broken = yaml.replacen("        key: \"\"", &format!("        key: {key}"), 1);
    assert_ne!(broken, yaml);
    let file = dir.write("broken.yaml", broken.as_bytes());
    let result = Command::new(validator)
        .args(["--mode", "metal"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&result.stdout);
    assert!(
        !result.status.success() && text.contains("INVALID"),
        "{text}"
    );
}
