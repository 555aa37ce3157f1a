//! The container image users run, run as they run it: built from the
//! Dockerfile (scripts/image.sh build), started by podman (this machine has
//! no Docker engine; a `docker` shim runs podman for the README's line), read
//! only, as UID 65532, without capabilities. Workers are Go's crypto/tls and
//! our `request` on the host, through the published port.
//!
//! Needs root, podman and the image: the tests are marked ignored with that
//! reason, and scripts/test.sh builds the image and runs them as root.

mod common;

use std::ffi::OsStr;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;
use grpcio::ChannelBuilder;
use openssl::x509::X509;
use talos_csr_signer::pki::keys::KeyType;
use talos_csr_signer::proto::health::health_check_response::ServingStatus;
use talos_csr_signer::proto::health::HealthCheckRequest;
use talos_csr_signer::proto::health_grpc::HealthClient;

const NEEDS: &str = "needs root, podman and the image (scripts/image.sh build)";

fn image() -> String {
    std::env::var("TALOS_IMAGE").unwrap_or_else(|_| "localhost/talos-csr-signer:dev".into())
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman").args(args).output().unwrap()
}

fn require_image(test: &str) {
    // A manifest list (scripts/image.sh build with podman) or an image.
    let exists = |what: &str| {
        Command::new("podman")
            .args([what, "exists", &image()])
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = exists("manifest") || exists("image");
    if !ok {
        cannot_run(test, NEEDS);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A container, removed when dropped.
struct Container(String);

impl Container {
    /// `podman run -d` with the hardening the Kubernetes manifests use, then
    /// `extra` options, the image, and `args` after its entrypoint.
    fn run(extra: &[&str], args: &[&str]) -> Container {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tcs-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend(HARDENED);
        all.extend(extra);
        let image = image();
        all.push(&image);
        all.extend(args);
        let out = podman(&all);
        assert!(out.status.success(), "podman run: {}", output_text(&out));
        Container(name)
    }

    fn logs(&self) -> String {
        output_text(&podman(&["logs", &self.0]))
    }

    fn wait_log(&self, needle: &str) {
        wait_until(Duration::from_secs(30), needle, || {
            self.logs().contains(needle)
        });
    }

    fn inspect(&self, format: &str) -> String {
        let out = podman(&["inspect", "--format", format, &self.0]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn wait_exit(&self) -> i32 {
        let out = podman(&["wait", &self.0]);
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.0]);
    }
}

/// What a Pod's securityContext says in deploy/: read-only root, UID 65532,
/// no capabilities, no privilege gain.
const HARDENED: [&str; 7] = [
    "--read-only",
    "--user",
    "65532:65532",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
];

/// Secret files readable by 65532 (a Pod gets that through fsGroup).
fn world_readable(dir: &Path) {
    Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(dir)
        .status()
        .unwrap();
}

/// The Go worker dialling `name` at `addr`, making its Certificate call.
fn go_worker(addr: SocketAddr, name: Option<&str>, ca: &Path, token: &Path) -> String {
    let mut cmd = Command::new(go_compat_bin());
    cmd.args(["-signer", &addr.to_string(), "-ca"])
        .arg(ca)
        .arg("-token-file")
        .arg(token);
    if let Some(name) = name {
        cmd.args(["-server-name", name]);
    }
    let text = output_text(&cmd.output().unwrap());
    assert!(text.ends_with("PASS\n"), "Go worker:\n{text}");
    text
}

/// Our `request` on the host against `endpoint`.
fn request(endpoint: &str, ca: &Path, token: &Path) -> String {
    request_by(Path::new(BIN), endpoint, ca, token, &[])
}

/// `request` run by the binary `bin` (or a runner of one) as worker-9, with
/// `extra` options; its output, once it has succeeded.
fn request_by(bin: &Path, endpoint: &str, ca: &Path, token: &Path, extra: &[&OsStr]) -> String {
    let out = Command::new(bin)
        .args(["request", "--endpoint", endpoint, "--ca"])
        .arg(ca)
        .arg("--token-file")
        .arg(token)
        .args(["--cn", "worker-9", "--ip", "127.0.0.1", "--dns", "worker-9"])
        .args(extra)
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(out.status.success(), "{} request:\n{text}", bin.display());
    text
}

/// The Go signer's current contract with only the image changed: no
/// arguments, TALOS_TOKEN from the environment, cert-manager's CA Secret at
/// /etc/talos-ca and its serving certificate (DNS SANs only) at
/// /etc/talos-server-crt, both in kubelet's layout.
#[test]
#[ignore = "needs root, podman and the image; scripts/test.sh builds it and runs this as root"]
fn the_go_signer_contract_with_only_the_image_changed() {
    require_image("the_go_signer_contract_with_only_the_image_changed");
    let ca = Ca::new(KeyType::Ed25519);
    let dir = TempDir::new("img-go");
    let (serving, serving_key) =
        cert_manager_cert(&ca.cert, &ca.key, KeyType::EcP256, &["signer.example"], &[]);
    secret_volume(
        &dir.path("talos-ca"),
        &[
            ("tls.crt", ca.cert_pem()),
            ("tls.key", ca.key_pem()),
            ("ca.crt", ca.cert_pem()),
        ],
    );
    secret_volume(
        &dir.path("serving"),
        &[
            ("tls.crt", serving.to_pem().unwrap()),
            ("tls.key", serving_key),
            ("ca.crt", ca.cert_pem()),
        ],
    );
    world_readable(&dir.0);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:50001");
    let ca_mount = format!("{}:/etc/talos-ca:ro", dir.path("talos-ca").display());
    let srv_mount = format!("{}:/etc/talos-server-crt:ro", dir.path("serving").display());
    let token_env = format!("TALOS_TOKEN={TOKEN}");
    let c = Container::run(
        &[
            "-p", &publish, "-v", &ca_mount, "-v", &srv_mount, "-e", &token_env,
        ],
        &[],
    );
    c.wait_log("listening on");
    assert_eq!(c.inspect("{{.Config.User}}"), "65532:65532");
    let worker = worker_files(&ca, &dir);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    println!(
        "{}",
        go_worker(addr, Some("signer.example"), &worker.0, &worker.1)
    );
    let log = c.logs();
    assert!(
        log.contains("chosen by the default paths of a cert-manager CA Secret"),
        "{log}"
    );
    assert!(log.contains("/etc/talos-server-crt/tls.crt"), "{log}");
    assert!(!log.contains(TOKEN), "the token reached the log");
}

/// ca.crt and token as a worker holds them.
fn worker_files(ca: &Ca, dir: &TempDir) -> (PathBuf, PathBuf) {
    (
        dir.write("worker-ca.crt", &ca.cert_pem()),
        dir.write("worker-token", format!("{TOKEN}\n").as_bytes()),
    )
}

/// The README's `docker run` line, as written, through a `docker` that runs
/// podman; and dev mode in a container, with `request` from the host.
#[test]
#[ignore = "needs root, podman and the image; scripts/test.sh builds it and runs this as root"]
fn the_readme_docker_run_line_works_as_written() {
    require_image("the_readme_docker_run_line_works_as_written");
    let line = readme_block("**Run the image**");
    let published = line
        .split_whitespace()
        .find(|w| w.contains("talos-csr-signer:"))
        .expect("the line names our image")
        .to_string();
    // The image deploy/image names, the one place that does.
    let kustomization = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/image/kustomization.yaml"),
    )
    .unwrap();
    let field = |key: &str| {
        kustomization
            .lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.trim().trim_matches('"').to_string())
            .unwrap()
    };
    assert_eq!(
        published,
        format!("{}:{}", field("newName:"), field("newTag:"))
    );
    // The line publishes port 50001 as written: say so plainly if another
    // process has it, rather than fail later in a confusing way.
    if let Err(e) = TcpListener::bind("0.0.0.0:50001") {
        panic!("port 50001 is taken ({e}); the README's line publishes it: stop what holds it");
    }
    // The name goes on this machine's image, not the list: podman 4 can
    // neither untag nor remove one name of a manifest list.
    let native = instance(match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    });
    assert!(podman(&["tag", &native, &published]).status.success());
    let dir = TempDir::new("img-readme");
    let ca = Ca::new(KeyType::Ed25519);
    // What `talos-csr-signer import --out ./talos-ca` writes.
    std::fs::create_dir_all(dir.path("talos-ca")).unwrap();
    dir.write("talos-ca/ca.crt", &ca.cert_pem());
    dir.write("talos-ca/ca.key", &ca.key_pem());
    dir.write("talos-ca/token", format!("{TOKEN}\n").as_bytes());
    let shim = docker_shim(&dir);
    // Removes the container whatever happens below: one left running keeps
    // port 50001 and its NAT rules on this machine.
    let _cleanup = CidFile(dir.path("cid"));
    let mut run = Command::new("bash");
    run.args(["-c", &line])
        .current_dir(&dir.0)
        .env(
            "PATH",
            format!("{}:{}", shim.display(), std::env::var("PATH").unwrap()),
        )
        .env("TALOS_TEST_CIDFILE", dir.path("cid"))
        .env("TALOS_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut server = Server::spawn(run);
    request(
        &format!("127.0.0.1:{}", server.addr.port()),
        &dir.path("talos-ca/ca.crt"),
        &dir.path("talos-ca/token"),
    );
    // `docker run` in the foreground passes SIGTERM on to the container, and
    // with --rm removes it before it returns (slow on a busy machine).
    server.signal(SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(90)).code(),
        Some(0),
        "{}",
        server.log()
    );
    assert!(server.log().contains("stopped"), "{}", server.log());
    let untag = podman(&["untag", &native, &published]);
    assert!(untag.status.success(), "{}", output_text(&untag));
}

/// The container `docker run --cidfile FILE` started, removed when dropped.
struct CidFile(PathBuf);

impl Drop for CidFile {
    fn drop(&mut self) {
        if let Ok(id) = std::fs::read_to_string(&self.0) {
            let _ = podman(&["rm", "-f", "-t", "0", "--ignore", id.trim()]);
        }
    }
}

/// A `docker` command that is podman, as podman-docker installs it; `run`
/// also writes the container's ID to $TALOS_TEST_CIDFILE (Docker's own
/// --cidfile), so the test can remove it whatever happens.
fn docker_shim(dir: &TempDir) -> PathBuf {
    let bin = dir.path("shim");
    std::fs::create_dir_all(&bin).unwrap();
    let docker = bin.join("docker");
    std::fs::write(
        &docker,
        "#!/bin/sh\nif [ \"$1\" = run ]; then\n  shift\n  exec podman run --cidfile \"$TALOS_TEST_CIDFILE\" \"$@\"\nfi\nexec podman \"$@\"\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&docker)
        .status()
        .unwrap();
    bin
}

/// The sh block after the line starting with `marker` in README.md, its
/// backslash continuations joined.
fn readme_block(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = &readme[readme
        .find(marker)
        .unwrap_or_else(|| panic!("README has {marker}"))..];
    let open = after.find("```sh\n").unwrap() + 6;
    let close = open + after[open..].find("```").unwrap();
    after[open..close].replace("\\\n", " ")
}

#[test]
#[ignore = "needs root, podman and the image; scripts/test.sh builds it and runs this as root"]
fn dev_mode_in_a_container_serves_the_host() {
    require_image("dev_mode_in_a_container_serves_the_host");
    let dir = TempDir::new("img-dev");
    std::fs::create_dir_all(dir.path("dev-pki")).unwrap();
    Command::new("chmod")
        .arg("777")
        .arg(dir.path("dev-pki"))
        .status()
        .unwrap();
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:50001");
    let mount = format!("{}:/dev-pki", dir.path("dev-pki").display());
    let c = Container::run(
        &["-p", &publish, "-v", &mount],
        &[
            "serve",
            "--dev",
            "--dev-dir",
            "/dev-pki",
            "--listen",
            "0.0.0.0:50001",
        ],
    );
    c.wait_log("request a certificate like a Talos worker with:");
    request(
        &format!("127.0.0.1:{port}"),
        &dir.path("dev-pki/ca.crt"),
        &dir.path("dev-pki/token"),
    );
}

/// Ready within a second, gone with exit 0 well inside `docker stop`'s
/// 10 s, a Secret update picked up without a restart; and a missing or bad
/// CA ends the container with 78 and one log line naming the file.
#[test]
#[ignore = "needs root, podman and the image; scripts/test.sh builds it and runs this as root"]
fn lifecycle_ready_reload_stop_and_bad_config() {
    require_image("lifecycle_ready_reload_stop_and_bad_config");
    let ca = Ca::new(KeyType::EcP256);
    let dir = TempDir::new("img-life");
    let files = |ca: &Ca| {
        vec![
            ("ca.crt", ca.cert_pem()),
            ("ca.key", ca.key_pem()),
            ("token", format!("{TOKEN}\n").into_bytes()),
        ]
    };
    secret_volume(&dir.path("talos-ca"), &files(&ca));
    world_readable(&dir.0);
    let (port, health) = (free_port(), free_port());
    let publish = format!("127.0.0.1:{port}:50001");
    let publish_health = format!("127.0.0.1:{health}:50002");
    let mount = format!("{}:/etc/talos-ca:ro", dir.path("talos-ca").display());
    let c = Container::run(
        &[
            "-p",
            &publish,
            "-p",
            &publish_health,
            "-v",
            &mount,
            "-e",
            "TALOS_TOKEN_FILE=/etc/talos-ca/token",
            "-e",
            "RELOAD_INTERVAL=1s",
        ],
        &["--health-listen", "0.0.0.0:50002"],
    );
    let started = Instant::now();
    // A new channel for every look: a refused connection would otherwise put
    // the channel into gRPC's reconnect back-off (1 s), which is not ours.
    let target = format!("127.0.0.1:{health}");
    let serving = || {
        let client = HealthClient::new(ChannelBuilder::new(env()).connect(&target));
        let opt = grpcio::CallOption::default().timeout(Duration::from_millis(200));
        client
            .check_opt(&HealthCheckRequest::default(), opt)
            .is_ok_and(|r| r.status == ServingStatus::SERVING.into())
    };
    wait_until(Duration::from_secs(10), "health SERVING", serving);
    let ready = started.elapsed();
    println!(
        "ready (health SERVING through the published port) {ready:?} after podman run returned"
    );
    assert!(ready < Duration::from_secs(1), "ready after {ready:?}");
    request(
        &format!("127.0.0.1:{port}"),
        &dir.path("talos-ca/..data/ca.crt"),
        &dir.path("talos-ca/..data/token"),
    );

    // A Secret update as kubelet makes it: a new CA, `..data` swapped.
    let rotated = Ca::new(KeyType::EcP256);
    update_secret_volume(&dir.path("talos-ca"), &files(&rotated));
    world_readable(&dir.0);
    c.wait_log("reloaded (input files changed)");
    let fresh = dir.write("rotated-ca.crt", &rotated.cert_pem());
    let token = dir.write("worker-token", format!("{TOKEN}\n").as_bytes());
    request(&format!("127.0.0.1:{port}"), &fresh, &token);

    let stop = Instant::now();
    assert!(podman(&["stop", "-t", "10", &c.0]).status.success());
    let took = stop.elapsed();
    println!(
        "docker stop: {took:?}, exit {}",
        c.inspect("{{.State.ExitCode}}")
    );
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{}", c.logs());
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert!(c.logs().contains("stopped"), "{}", c.logs());

    // No CA at all, then a CA file that is no certificate.
    let missing = Container::run(&["-e", &format!("TALOS_TOKEN={TOKEN}")], &[]);
    assert_eq!(missing.wait_exit(), 78, "{}", missing.logs());
    let log = missing.logs();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("/etc/talos-ca/ca.crt"), "{log}");
    let bad = TempDir::new("img-bad");
    bad.write("ca.crt", b"not a certificate\n");
    bad.write("ca.key", &ca.key_pem());
    world_readable(&bad.0);
    let bad_mount = format!("{}:/etc/talos-ca:ro", bad.0.display());
    let broken = Container::run(
        &["-v", &bad_mount, "-e", &format!("TALOS_TOKEN={TOKEN}")],
        &[],
    );
    assert_eq!(broken.wait_exit(), 78, "{}", broken.logs());
    let log = broken.logs();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("CA certificate /etc/talos-ca/ca.crt"), "{log}");
}

/// The image holds the binary, its libraries and the account, nothing else:
/// no shell, no benchmark tools; its labels say what it is. Each platform's
/// image holds its own architecture's libraries and OpenSSL's modules
/// directory.
#[test]
#[ignore = "needs root, podman and the image; scripts/test.sh builds it and runs this as root"]
fn the_image_holds_only_what_the_binary_needs() {
    require_image("the_image_holds_only_what_the_binary_needs");
    let shell = podman(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        &image(),
        "-c",
        "true",
    ]);
    assert!(!shell.status.success(), "the image has a shell");
    for (arch, gnu) in [
        ("amd64", "x86_64-linux-gnu"),
        ("arm64", "aarch64-linux-gnu"),
    ] {
        holds_only_what_the_binary_needs(&instance(arch), gnu);
    }
}

fn holds_only_what_the_binary_needs(image: &str, gnu: &str) {
    let id = String::from_utf8(podman(&["create", image]).stdout).unwrap();
    let id = id.trim();
    assert!(!id.is_empty(), "podman create {image}");
    let export = Command::new("sh")
        .arg("-c")
        .arg(format!("podman export {id} | tar -t"))
        .output()
        .unwrap();
    let _ = podman(&["rm", id]);
    let entries: Vec<String> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let modules = format!("usr/lib/{gnu}/ossl-modules/");
    assert!(entries.contains(&modules), "{image}: no {modules}");
    let files: Vec<&String> = entries.iter().filter(|l| !l.ends_with('/')).collect();
    println!("{image}: {files:#?}");
    let libs = [format!("lib/{gnu}/"), format!("usr/lib/{gnu}/")];
    let unexpected: Vec<&&String> = files
        .iter()
        .filter(|f| {
            !(libs.iter().any(|l| f.starts_with(l.as_str()))
                // The dynamic loader, where the binary's PT_INTERP names it.
                || (f.starts_with("lib") && f.contains("/ld-linux"))
                || ["usr/local/bin/talos-csr-signer", "etc/passwd", "etc/group"]
                    .contains(&f.as_str())
                // podman adds these when it creates a container.
                || f.starts_with("etc/hosts") || f.starts_with("etc/resolv") || f.starts_with("run/"))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "{image}: unexpected files: {unexpected:?}"
    );
    assert!(files
        .iter()
        .any(|f| f.ends_with(&format!("{gnu}/libssl.so.3"))));
    assert!(!files.iter().any(|f| f.contains("loadgen")));
    let labels = String::from_utf8(
        podman(&["image", "inspect", "--format", "{{json .Labels}}", image]).stdout,
    )
    .unwrap();
    for label in [
        "org.opencontainers.image.source",
        "org.opencontainers.image.version",
        "org.opencontainers.image.licenses",
    ] {
        assert!(labels.contains(label), "{image}: {labels}");
    }
    let user = String::from_utf8(
        podman(&["image", "inspect", "--format", "{{.Config.User}}", image]).stdout,
    )
    .unwrap();
    assert_eq!(user.trim(), "65532:65532", "{image}");
}

/// The image for linux/`arch`: the manifest list's instance, by digest
/// (podman 4 resolves a list by name to this machine's platform only).
fn instance(arch: &str) -> String {
    let digest = manifest_list()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch)
        .unwrap_or_else(|| panic!("{} has no linux/{arch} image", image()))["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let image = image();
    let repo = image.rsplit_once(':').filter(|(_, tag)| !tag.contains('/'));
    format!("{}@{digest}", repo.map_or(image.as_str(), |(r, _)| r))
}

/// `podman manifest inspect` of the image: the manifest list scripts/image.sh
/// builds.
fn manifest_list() -> serde_json::Value {
    let list = succeeded(
        podman(&["manifest", "inspect", &image()]),
        "not a manifest list",
    );
    serde_json::from_slice(&list.stdout).unwrap()
}

/// scripts/image.sh with `args`, for this image; its stdout, once it has
/// succeeded.
fn image_sh(args: &[&OsStr]) -> String {
    let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/image.sh"))
        .args(args)
        .env("IMAGE_TAG", image())
        .output()
        .unwrap();
    let out = succeeded(out, &format!("image.sh {args:?}"));
    String::from_utf8(out.stdout).unwrap()
}

/// FIPS mode in the image, with the OpenSSL 3.0.8 FIPS provider
/// (scripts/fips-provider.sh) mounted where its configuration names it.
#[test]
#[ignore = "needs root, podman and the image; scripts/test.sh builds it and runs this as root"]
fn fips_mode_in_the_image_with_a_mounted_provider() {
    require_image("fips_mode_in_the_image_with_a_mounted_provider");
    let fips = PathBuf::from(std::env::var("TALOS_FIPS_DIR").unwrap_or_else(|_| {
        cannot_run(
            "fips_mode_in_the_image_with_a_mounted_provider",
            "no TALOS_FIPS_DIR (scripts/test.sh builds the provider)",
        )
    }));
    let ca = Ca::new(KeyType::EcP256);
    let dir = TempDir::new("img-fips");
    std::fs::create_dir_all(dir.path("talos-ca")).unwrap();
    dir.write("talos-ca/ca.crt", &ca.cert_pem());
    dir.write("talos-ca/ca.key", &ca.key_pem());
    world_readable(&dir.0);
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:50001");
    let ca_mount = format!("{}:/etc/talos-ca:ro", dir.path("talos-ca").display());
    // openssl-fips.cnf includes fipsmodule.cnf by its absolute path.
    let fips_mount = format!("{0}:{0}:ro", fips.display());
    let modules = format!("OPENSSL_MODULES={}", fips.display());
    let conf = format!("OPENSSL_CONF={}", fips.join("openssl-fips.cnf").display());
    let token_env = format!("TALOS_TOKEN={TOKEN}");
    let c = Container::run(
        &[
            "-p",
            &publish,
            "-v",
            &ca_mount,
            "-v",
            &fips_mount,
            "-e",
            &modules,
            "-e",
            &conf,
            "-e",
            &token_env,
        ],
        &["--fips"],
    );
    c.wait_log("listening on");
    let log = c.logs();
    assert!(log.contains("FIPS mode: on via"), "{log}");
    assert!(log.contains("provider fips 3.0.8"), "{log}");
    let worker = worker_files(&ca, &dir);
    request(&format!("127.0.0.1:{port}"), &worker.0, &worker.1);
}

/// `scripts/image.sh extract` of this image for `arch` into `dir`: the path
/// of the runner it writes (under qemu-user for a foreign architecture).
fn extract(arch: &str, dir: &TempDir) -> PathBuf {
    PathBuf::from(image_sh(&["extract".as_ref(), dir.0.as_os_str(), arch.as_ref()]).trim())
}

/// The arm64 binary and its libraries, taken out of the image's linux/arm64
/// instance and run under qemu-user with the image's files as its library
/// root: `check`, `serve` answering a Go worker (Talos's TLS stack) and our
/// own `request`, and a SIGTERM stop, with an Ed25519 and a P-256 machine CA.
/// Its certificates are checked against the same request to the amd64 build.
#[test]
#[ignore = "needs root, podman, qemu-user-static and the multi-arch image; scripts/test.sh builds it and runs this as root"]
fn the_arm64_binary_serves_a_real_worker_under_qemu() {
    let test = "the_arm64_binary_serves_a_real_worker_under_qemu";
    require_image(test);
    let dir = TempDir::new("img-arm64");
    let run = extract("arm64", &dir);
    let elf = std::fs::read(dir.path("root/usr/local/bin/talos-csr-signer")).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    // 64-bit, little-endian, e_machine EM_AARCH64 (183).
    assert_eq!((elf[4], elf[5]), (2, 1));
    assert_eq!(
        u16::from_le_bytes([elf[18], elf[19]]),
        183,
        "not an arm64 binary"
    );
    // On an amd64 machine (CI's) the runner is qemu-user.
    println!("{}", std::fs::read_to_string(&run).unwrap());
    for kt in [KeyType::Ed25519, KeyType::EcP256] {
        arm64_round(&run, kt);
    }
}

/// One CA type's round on the arm64 binary.
fn arm64_round(run: &Path, kt: KeyType) {
    let started = Instant::now();
    let setup = Setup::new(kt);
    // `check`: the same options as `serve`.
    let check = Command::new(run)
        .arg("check")
        .args(&setup.args[1..])
        .output()
        .unwrap();
    let check = succeeded(check, &format!("arm64 check ({kt:?})"));
    assert!(
        String::from_utf8_lossy(&check.stdout).starts_with("configuration ok"),
        "arm64 check ({kt:?}):\n{}",
        output_text(&check)
    );
    let mut cmd = Command::new(run);
    cmd.args(&setup.args);
    let mut server = Server::spawn(cmd);
    let worker = worker_files(&setup.ca, &setup.dir);
    // A Go worker, as Talos's: TLS 1.3, its CSR, the certificate it checks.
    go_worker(server.addr, None, &worker.0, &worker.1);
    let endpoint = server.addr.to_string();
    let from_arm64 = issue_with(run, &endpoint, &worker, &setup.dir, "arm64-client");
    let from_native = issue_with(
        Path::new(BIN),
        &endpoint,
        &worker,
        &setup.dir,
        "native-client",
    );
    for cert in [&from_arm64, &from_native] {
        verify_chain(cert, std::slice::from_ref(&setup.ca.cert))
            .unwrap_or_else(|e| panic!("{kt:?}: {e}"));
        assert_eq!(cert.signature_algorithm().object().nid(), sig_alg(kt));
    }
    // The arm64 client's certificate is the one the amd64 client gets.
    assert_eq!(extensions(&from_arm64), extensions(&from_native), "{kt:?}");
    assert_eq!(
        from_arm64.subject_alt_names().map(|s| s.len()),
        from_native.subject_alt_names().map(|s| s.len())
    );
    server.signal(SIGTERM);
    let status = server.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", server.log());
    server.wait_log("stopped");
    println!(
        "arm64, {kt:?} CA: check ok; Go worker PASS; request's certificate verifies, \
         {} extensions as on amd64; SIGTERM -> exit 0; {:.1} s under qemu-user",
        extensions(&from_arm64).len(),
        started.elapsed().as_secs_f64()
    );
}

/// `request --out` with the binary `bin`: the certificate it saved.
fn issue_with(
    bin: &Path,
    endpoint: &str,
    worker: &(PathBuf, PathBuf),
    dir: &TempDir,
    name: &str,
) -> X509 {
    let out = dir.path(name);
    request_by(
        bin,
        endpoint,
        &worker.0,
        &worker.1,
        &["--out".as_ref(), out.as_os_str()],
    );
    X509::from_pem(&std::fs::read(out.join("crt.pem")).unwrap()).unwrap()
}

/// One reference for both platforms: the manifest list names linux/amd64 and
/// linux/arm64, and `scripts/image.sh save` writes an OCI archive whose index
/// leads to both.
#[test]
#[ignore = "needs root, podman and the multi-arch image; scripts/test.sh builds it and runs this as root"]
fn one_image_index_for_amd64_and_arm64() {
    require_image("one_image_index_for_amd64_and_arm64");
    let platforms = |index: &serde_json::Value| -> Vec<String> {
        let mut p: Vec<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}/{}",
                    m["platform"]["os"].as_str().unwrap(),
                    m["platform"]["architecture"].as_str().unwrap()
                )
            })
            .collect();
        p.sort();
        p
    };
    assert_eq!(platforms(&manifest_list()), ["linux/amd64", "linux/arm64"]);
    let dir = TempDir::new("img-save");
    let archive = dir.path("image.oci.tar");
    image_sh(&["save".as_ref(), archive.as_os_str()]);
    let untar = Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&dir.0)
        .status()
        .unwrap();
    assert!(untar.success());
    // index.json names the list (or is it); follow it to the platforms.
    let read_json = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let mut index = read_json(dir.path("index.json"));
    if index["manifests"][0]["platform"].is_null() {
        let digest = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .replace(':', "/");
        index = read_json(dir.path(&format!("blobs/{digest}")));
    }
    assert_eq!(platforms(&index), ["linux/amd64", "linux/arm64"]);
}
