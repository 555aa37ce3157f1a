//! The deployment kit: `import` on Talos's own files, the Secret it prints,
//! and the hardening the systemd unit asks for (no W+X memory).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use openssl::x509::X509;
use talos_csr_signer::pki::keys::KeyType;
use yaml_rust2::YamlLoader;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/talos/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn import_to(src: &str, dir: &TempDir) -> (std::process::ExitStatus, String) {
    let out = dir.0.join("material").display().to_string();
    let (status, _, err) = run_binary(
        &args(&["import", "--from", &fixture(src), "--out", &out]),
        &[],
        Duration::from_secs(20),
    );
    (status, err)
}

#[test]
fn import_from_secrets_bundle_and_controlplane_config_then_serve() {
    for src in ["secrets.yaml", "controlplane.yaml"] {
        let dir = TempDir::new("import");
        let (status, err) = import_to(src, &dir);
        assert!(status.success(), "{src}: {err}");
        assert!(err.contains("O=talos") && err.contains("Ed25519"), "{err}");
        let m = dir.0.join("material");
        let mode = |f: &str| std::fs::metadata(m.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            (mode("ca.key"), mode("token"), mode("ca.crt")),
            (0o600, 0o600, 0o644)
        );
        let key = std::fs::read_to_string(m.join("ca.key")).unwrap();
        assert!(
            key.starts_with("-----BEGIN PRIVATE KEY-----\n"),
            "PKCS#8, relabelled: {}",
            &key[..30]
        );
        let token = std::fs::read_to_string(m.join("token")).unwrap();
        assert_eq!(
            token.trim(),
            talos_fixture(
                src,
                if src == "secrets.yaml" {
                    &["trustdinfo", "token"]
                } else {
                    &["machine", "token"]
                }
            )
        );
        let crt = std::fs::read(m.join("ca.crt")).unwrap();

        // What import wrote is exactly what serve reads.
        let m_str = |f: &str| m.join(f).display().to_string();
        let server = Server::start(
            &args(&[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--ca-cert",
                &m_str("ca.crt"),
                "--ca-key",
                &m_str("ca.key"),
                "--token-file",
                &m_str("token"),
            ]),
            &[],
        );
        let resp = call_with(
            &server.client(&crt),
            &[token.trim().as_bytes()],
            &CsrSpec::worker(KeyType::Ed25519).build().0,
        )
        .unwrap();
        verify_chain(
            &X509::from_pem(&resp.crt).unwrap(),
            &X509::stack_from_pem(&resp.ca).unwrap(),
        )
        .unwrap();
        assert!(!err.contains(token.trim()), "import never prints the token");
    }
}

#[test]
fn import_refuses_a_worker_config_and_says_what_to_use() {
    let dir = TempDir::new("import-worker");
    let (status, err) = import_to("worker.yaml", &dir);
    assert_eq!(status.code(), Some(1));
    assert!(
        err.contains("worker machine config")
            && err.contains("controlplane.yaml")
            && err.contains("secrets.yaml"),
        "{err}"
    );
    assert!(!dir.0.join("material").exists(), "nothing written");
}

#[test]
fn import_prints_a_kubernetes_secret() {
    let (status, out, err) = run_binary(
        &args(&[
            "import",
            "--from",
            &fixture("secrets.yaml"),
            "--secret",
            "--namespace",
            "tenants",
            "--name",
            "t0-talos-ca",
        ]),
        &[],
        Duration::from_secs(20),
    );
    assert!(status.success(), "{err}");
    let doc = &YamlLoader::load_from_str(&out).unwrap()[0];
    assert_eq!(doc["kind"].as_str(), Some("Secret"));
    assert_eq!(doc["metadata"]["namespace"].as_str(), Some("tenants"));
    assert_eq!(doc["metadata"]["name"].as_str(), Some("t0-talos-ca"));
    let field = |k: &str| openssl::base64::decode_block(doc["data"][k].as_str().unwrap()).unwrap();
    let crt = X509::from_pem(&field("ca.crt")).unwrap();
    let key = talos_csr_signer::pki::pem::parse_private_key(&field("ca.key")).unwrap();
    assert!(crt.public_key().unwrap().public_eq(&key));
    // cert-manager's CA Issuer reads tls.crt/tls.key: the same CA, the key as
    // PKCS#8 `PRIVATE KEY` (cert-manager refuses Talos's own label).
    assert_eq!(field("tls.crt"), field("ca.crt"));
    assert_eq!(field("tls.key"), field("ca.key"));
    assert!(String::from_utf8(field("tls.key"))
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert_eq!(
        String::from_utf8(field("token")).unwrap(),
        talos_fixture("secrets.yaml", &["trustdinfo", "token"])
    );
    // Validates against the Kubernetes schema when the validator is present (CI installs it).
    if let Ok(mut child) = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(out.as_bytes())
            .unwrap();
        let result = child.wait_with_output().unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
    }
}

/// `MemoryDenyWriteExecute=` in the unit: the kernel's equivalent (prctl
/// PR_SET_MDWE, Linux ≥ 6.3) refuses any writable+executable mapping; gRPC
/// core and OpenSSL must work without one.
#[test]
fn serves_with_memory_deny_write_execute() {
    // linux/prctl.h (Linux 6.3); the libc crate's version may lack them.
    const PR_SET_MDWE: i32 = 65;
    const PR_GET_MDWE: i32 = 66;
    const PR_MDWE_REFUSE_EXEC_GAIN: u64 = 1;
    let setup = Setup::new(KeyType::Ed25519);
    let mut cmd = Command::new(BIN);
    cmd.args(&setup.args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: prctl is async-signal-safe; it only changes this child's flags.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0u64, 0u64, 0u64) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Inherited by the exec'd binary; confirm it took.
            if libc::prctl(PR_GET_MDWE, 0u64, 0u64, 0u64, 0u64) != PR_MDWE_REFUSE_EXEC_GAIN as i32 {
                return Err(std::io::Error::other("MDWE not set"));
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .expect("kernel supports PR_SET_MDWE (Linux >= 6.3)");
    let stderr = child.stderr.take().unwrap();
    let addr = {
        use std::io::{BufRead, BufReader};
        let mut lines = BufReader::new(stderr).lines();
        loop {
            let line = lines.next().expect("server output").unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        }
    };
    let result = call(
        &client(&addr, &setup.ca.cert_pem()),
        &CsrSpec::worker(KeyType::Ed25519).build().0,
    );
    let _ = child.kill();
    let _ = child.wait();
    result.expect("signed under MemoryDenyWriteExecute");
}

/// Runs the binary with standard output already closed by its reader, as in
/// `talos-csr-signer --help | head -0` or a `kubectl apply` that gave up.
fn run_into_closed_pipe(list: &[&str]) -> (std::process::ExitStatus, String) {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(ours);
    let out = Command::new(BIN)
        .args(list)
        .stdin(Stdio::null())
        .stdout(std::os::fd::OwnedFd::from(theirs))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn output_to_a_closed_pipe_is_an_error_not_a_panic() {
    let (status, err) = run_into_closed_pipe(&["--help"]);
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.is_empty(), "help into a closed pipe is quiet: {err}");

    let secrets = fixture("secrets.yaml");
    let (status, err) = run_into_closed_pipe(&["import", "--from", &secrets, "--secret"]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim(),
        "talos-csr-signer: error: cannot write to standard output: Broken pipe (os error 32)"
    );
}

/// The signer container's `args` and plain `env` values in one of our
/// manifests (the TenantControlPlane keeps its containers elsewhere).
fn manifest_container(path: &str) -> (Vec<String>, Vec<(String, String)>) {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let doc = &YamlLoader::load_from_str(&text).unwrap()[0];
    let containers = if doc["kind"].as_str() == Some("TenantControlPlane") {
        &doc["spec"]["controlPlane"]["deployment"]["additionalContainers"]
    } else {
        &doc["spec"]["template"]["spec"]["containers"]
    };
    let c = &containers[0];
    let args = c["args"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let env = c["env"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect();
    (args, env)
}

/// Our own manifests' command lines (`--health-listen=…` included, which
/// argh alone refused) start the real binary: `check` with exactly their
/// args and environment, the files redirected to a test CA.
#[test]
fn our_manifests_command_lines_start_the_signer() {
    let setup = Setup::new(KeyType::Ed25519);
    for path in [
        "deploy/02-deployment.yaml",
        "deploy/kubeadm/daemonset.yaml",
        "deploy/kamaji/tenant-control-plane.yaml",
    ] {
        let (mut argv, env) = manifest_container(path);
        assert_eq!(argv[0], "serve", "{path}");
        argv[0] = "check".into();
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| !k.ends_with("_PATH") && !k.starts_with("TALOS_TOKEN"))
            .collect();
        for (k, f) in [
            ("CA_CERT_PATH", "ca.crt"),
            ("CA_KEY_PATH", "ca.key"),
            ("TALOS_TOKEN_FILE", "token"),
        ] {
            env.push((k.into(), setup.dir.path(f).display().to_string()));
        }
        let (status, out, err) = run_binary(&argv, &env, Duration::from_secs(20));
        assert!(status.success(), "{path}: {argv:?}\n{out}{err}");
        assert!(out.contains("Ed25519"), "{path}: {out}");
    }
}
