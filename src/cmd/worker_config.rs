//! `worker-config`: a Talos worker machine config for a kubeadm or Kamaji
//! control plane, and what that cluster needs to accept the worker.
//!
//! A worker of a non-Talos control plane needs two PKIs: the Talos one (the
//! machine token and OS CA, which this signer checks and signs with) and the
//! Kubernetes one of the cluster it joins (that cluster's CA and a bootstrap
//! token kubeadm knows). `talosctl gen config` fills the second with Talos's
//! own values, which the control plane has never seen, and the kubelet never
//! registers. Here the Talos half comes from the secrets bundle (as `import`
//! reads it) and the Kubernetes half from the cluster's kubeconfig plus a
//! fresh bootstrap token, delivered to the cluster as kubeadm makes it.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use openssl::base64;
use openssl::nid::Nid;

use super::import::{self, Material};
use super::kubeconfig::{self, Cluster};
use crate::cli::args::WorkerConfigArgs;
use crate::pki::ca::MachineCa;
use crate::pki::cert::{self, Profile, SubjectKey};
use crate::pki::{names, openssl_reason};
use crate::rfc3339;
use crate::server::config::{format_duration, parse_duration};
use crate::signer::auth;

/// The role talosctl needs for everything (`talosctl -n <worker> version`).
const ADMIN_ROLE: &str = "os:admin";

/// `worker-config`: write the files, then say where they went and what next.
pub fn run(args: WorkerConfigArgs) -> Result<ExitCode, String> {
    let req = Request::from_args(args)?;
    let written = write(&req)?;
    eprint!("{}", describe(&written, &req.out));
    Ok(ExitCode::SUCCESS)
}

/// `s` as a YAML double-quoted scalar: a JSON string literal is one, and
/// serde_json escapes everything YAML would misread.
fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// The cluster-side RBAC workers need (the same file `deploy/` applies):
/// Talos workers read the default/kubernetes EndpointSlice to find trustd.
const TALOS_NODES_RBAC: &str = include_str!("../../deploy/04-talos-nodes-rbac.yaml");

/// kubeadm's group for bootstrap tokens: its ClusterRoleBindings let such a
/// token create the kubelet's CSR and have it approved.
const BOOTSTRAP_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// Talos versions the written config is for. 1.8 made workers verify trustd's
/// certificate (so they need this signer to be right); the fields used exist
/// from 1.7 (machine.acceptedCAs) on; v1.13.9 is what the tests validate with.
pub const OLDEST_TALOS: (u32, u32) = (1, 8);
pub const NEWEST_TESTED_TALOS: (u32, u32) = (1, 13);
pub const DEFAULT_TALOS_VERSION: &str = "v1.13.9";

/// What to write, resolved from the command line.
pub struct Request {
    pub from: PathBuf,
    pub kubeconfig: PathBuf,
    pub context: Option<String>,
    pub out: PathBuf,
    pub endpoint: Option<String>,
    pub install_disk: String,
    pub install_image: Option<String>,
    pub talos_version: String,
    pub kubernetes_version: Option<String>,
    pub cert_sans: Vec<String>,
    pub cluster_dns: Vec<IpAddr>,
    pub dns_domain: String,
    pub token_ttl: Duration,
    pub nodes: Vec<String>,
    pub admin_validity: Duration,
    pub force: bool,
}

impl Request {
    /// The command line, its durations parsed.
    pub fn from_args(args: WorkerConfigArgs) -> Result<Request, String> {
        let duration =
            |flag: &str, text: &str| parse_duration(text).map_err(|e| format!("{flag}: {e}"));
        Ok(Request {
            token_ttl: duration("--token-ttl", &args.token_ttl)?,
            admin_validity: duration("--admin-validity", &args.admin_validity)?,
            from: args.from,
            kubeconfig: args.kubeconfig,
            context: args.kubeconfig_context,
            out: args.out,
            endpoint: args.endpoint,
            install_disk: args.install_disk,
            install_image: args.install_image,
            talos_version: args
                .talos_version
                .unwrap_or_else(|| DEFAULT_TALOS_VERSION.to_string()),
            kubernetes_version: args.kubernetes_version,
            cert_sans: args.cert_san,
            cluster_dns: args.cluster_dns,
            dns_domain: args.dns_domain,
            nodes: args.node,
            force: args.force,
        })
    }
}

/// What was written, for the command's summary.
pub struct Written {
    pub files: Vec<PathBuf>,
    pub endpoint: String,
    pub token_id: String,
    pub expiration: String,
    pub warnings: Vec<String>,
}

pub fn write(req: &Request) -> Result<Written, String> {
    let version = talos_version(&req.talos_version)?;
    let material = import::read(&req.from)?;
    let cluster = kubeconfig::read(&req.kubeconfig, req.context.as_deref())?;
    let endpoint = endpoint(req.endpoint.as_deref().unwrap_or(&cluster.server))?;
    check_sans(&req.cert_sans)?;
    names::host_name(req.dns_domain.as_bytes()).map_err(|e| format!("--dns-domain {e}"))?;
    let token = BootstrapToken::generate()?;
    let now = crate::unix_now();
    let expiration = rfc3339(now + secs(req.token_ttl));
    let ca = MachineCa::new(&material.ca_crt, &material.ca_key, &[], now)
        .map_err(|e| format!("{}: {e}", req.from.display()))?;

    let files = [
        (
            "worker.yaml",
            worker_yaml(req, version, &material, &cluster, &endpoint, &token)?,
        ),
        ("cluster.yaml", cluster_yaml(&cluster, &token, &expiration)),
        (
            "talosconfig",
            talosconfig(req, &cluster, &material, &ca, now)?,
        ),
    ];
    let paths: Vec<PathBuf> = files.iter().map(|(n, _)| req.out.join(n)).collect();
    refuse_overwrite(&paths, req.force)?;
    std::fs::create_dir_all(&req.out)
        .map_err(|e| format!("cannot create {}: {e}", req.out.display()))?;
    // Every file holds a secret: the machine token and cluster secret, the
    // bootstrap token, the admin key.
    for ((_, text), path) in files.iter().zip(&paths) {
        crate::write_new_file(path, text.as_bytes(), 0o600)?;
    }
    Ok(Written {
        files: paths,
        endpoint,
        token_id: token.id,
        expiration,
        warnings: warnings(req, version),
    })
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
}

/// `v1.13.9` (or `1.13.9`) as (major, minor), within what is supported.
fn talos_version(text: &str) -> Result<(u32, u32), String> {
    let bad = || {
        format!("--talos-version {text:?} is not a Talos release; write it in full, e.g. v1.13.9")
    };
    // In full: it names the installer image too.
    let parts: Vec<u32> = text
        .trim()
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let [major, minor, _patch] = parts[..] else {
        return Err(bad());
    };
    let version = (major, minor);
    if version < OLDEST_TALOS {
        return Err(format!(
            "--talos-version {text}: Talos before v{}.{} is not supported (workers before it do \
             not verify trustd and lack machine.acceptedCAs); upgrade the workers' Talos",
            OLDEST_TALOS.0, OLDEST_TALOS.1
        ));
    }
    Ok(version)
}

fn warnings(req: &Request, version: (u32, u32)) -> Vec<String> {
    let mut out = Vec::new();
    if version > NEWEST_TESTED_TALOS {
        out.push(format!(
            "Talos v{}.{} is newer than the v{}.{} this config was validated against; check it \
             with `talosctl validate --mode metal --config worker.yaml`",
            version.0, version.1, NEWEST_TESTED_TALOS.0, NEWEST_TESTED_TALOS.1
        ));
    }
    if req.kubernetes_version.is_none() {
        out.push(
            "no --kubernetes-version: the kubelet is Talos's default for its version, which may \
             be newer than your control plane (Kubernetes allows the kubelet to be older, not \
             newer); pass the control plane's version"
                .to_string(),
        );
    }
    if req.nodes.is_empty() {
        out.push(
            "no --node: talosconfig has no endpoints; add the workers' IPs with `talosctl \
             --talosconfig talosconfig config endpoint <ip>…` (or rerun with --node)"
                .to_string(),
        );
    }
    out
}

/// The API server URL workers dial; they also dial its host on port 50001
/// for this signer.
fn endpoint(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let bad = |why: &str| format!("endpoint {url:?} {why}; write e.g. https://10.10.10.101:6443");
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| bad("is not an https:// URL"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(bad("must be https://HOST[:PORT] and nothing else"));
    }
    Ok(url.to_string())
}

/// `--cert-san` values become SANs of the worker's apid certificate: each
/// must be an IP or a host name by the one rule the signer applies
/// (`pki::names`), or the worker's CSR would be refused.
fn check_sans(sans: &[String]) -> Result<(), String> {
    for san in sans {
        if let Ok(ip) = san.parse::<IpAddr>() {
            names::usable_ip(ip).map_err(|e| format!("--cert-san: {e}"))?;
        } else {
            names::host_name(san.as_bytes()).map_err(|e| format!("--cert-san {e}"))?;
        }
    }
    Ok(())
}

fn refuse_overwrite(paths: &[PathBuf], force: bool) -> Result<(), String> {
    if force {
        return Ok(());
    }
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Err(format!(
            "{} exists; choose another --out or pass --force to replace it",
            p.display()
        )),
        None => Ok(()),
    }
}

/// A kubeadm bootstrap token: the shape of a Talos machine token
/// (`signer::auth::generate`), split as kubeadm stores it.
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

impl BootstrapToken {
    pub fn generate() -> Result<BootstrapToken, String> {
        let (id, secret) = auth::generate()?;
        Ok(BootstrapToken { id, secret })
    }

    pub fn value(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

fn b64(data: &[u8]) -> String {
    base64::encode_block(data).replace(['\n', '\r'], "")
}

fn yaml_list(indent: &str, items: &[String]) -> String {
    if items.is_empty() {
        return " []\n".to_string();
    }
    let mut out = "\n".to_string();
    for item in items {
        out += &format!("{indent}- {}\n", quote(item));
    }
    out
}

/// The worker's machine config (v1alpha1), every field chosen for a worker
/// of a kubeadm or Kamaji control plane.
fn worker_yaml(
    req: &Request,
    version: (u32, u32),
    m: &Material,
    cluster: &Cluster,
    endpoint: &str,
    token: &BootstrapToken,
) -> Result<String, String> {
    let missing = |what: &str| {
        format!(
            "{} has no {what}; use the secrets bundle (secrets.yaml) the cluster's configs were \
             made from",
            req.from.display()
        )
    };
    let cluster_id = m
        .cluster_id
        .as_deref()
        .ok_or_else(|| missing("cluster.id"))?;
    let cluster_secret = m
        .cluster_secret
        .as_deref()
        .ok_or_else(|| missing("cluster.secret"))?;
    let os_ca = b64(&m.ca_crt);
    let install_image = req.install_image.clone().unwrap_or_else(|| {
        format!(
            "ghcr.io/siderolabs/installer:v{}",
            req.talos_version.trim().trim_start_matches('v')
        )
    });
    let kubelet_image = match &req.kubernetes_version {
        Some(v) => format!(
            "        image: {}\n",
            quote(&format!(
                "ghcr.io/siderolabs/kubelet:v{}",
                v.trim().trim_start_matches('v')
            ))
        ),
        None => String::new(),
    };
    // Talos derives it from its service subnet (10.96.0.10, as kubeadm and
    // Kamaji default to); a cluster with other subnets says so.
    let cluster_dns = if req.cluster_dns.is_empty() {
        String::new()
    } else {
        let ips: Vec<String> = req.cluster_dns.iter().map(ToString::to_string).collect();
        format!("        clusterDNS:{}", yaml_list("            ", &ips))
    };
    // Locked to true and dropped from the schema in Talos 1.12.
    let rbac = if version < (1, 12) {
        "        rbac: true\n"
    } else {
        ""
    };
    Ok(format!(
        "# Talos worker for the cluster at {endpoint}, made by `talos-csr-signer worker-config`.\n\
         # It holds the machine token, the cluster secret and a bootstrap token: keep it out of git.\n\
         version: v1alpha1\n\
         debug: false\n\
         persist: true\n\
         machine:\n\
         \x20   type: worker\n\
         \x20   # What talos-csr-signer checks; the OS CA without its key.\n\
         \x20   token: {token}\n\
         \x20   ca:\n\
         \x20       crt: {os_ca}\n\
         \x20       key: \"\"\n\
         \x20   # The CAs apid accepts talosctl client certificates from; the signer's\n\
         \x20   # answer replaces this list at run time.\n\
         \x20   acceptedCAs:\n\
         \x20       - crt: {os_ca}\n\
         \x20   certSANs:{sans}\
         \x20   kubelet:\n\
         {kubelet_image}\
         {cluster_dns}\
         \x20       defaultRuntimeSeccompProfileEnabled: true\n\
         \x20       disableManifestsDirectory: true\n\
         \x20   install:\n\
         \x20       disk: {disk}\n\
         \x20       image: {install_image}\n\
         \x20       wipe: false\n\
         \x20   features:\n\
         {rbac}\
         \x20       # KubePrism balances over API servers Talos discovers on a Talos control\n\
         \x20       # plane; here the endpoint below is the way in.\n\
         \x20       kubePrism:\n\
         \x20           enabled: false\n\
         cluster:\n\
         \x20   id: {cluster_id}\n\
         \x20   secret: {cluster_secret}\n\
         \x20   controlPlane:\n\
         \x20       # Workers dial this host on port 50001 for talos-csr-signer too.\n\
         \x20       endpoint: {endpoint_q}\n\
         \x20   clusterName: {name}\n\
         \x20   network:\n\
         \x20       dnsDomain: {dns_domain}\n\
         \x20   # The Kubernetes cluster's own CA (no key) and a bootstrap token it knows\n\
         \x20   # (cluster.yaml creates it), not Talos's: this is how the kubelet registers.\n\
         \x20   token: {bootstrap}\n\
         \x20   ca:\n\
         \x20       crt: {k8s_ca}\n\
         \x20       key: \"\"\n\
         \x20   # No Talos discovery service: trustd endpoints come from the endpoint\n\
         \x20   # above and the default/kubernetes EndpointSlice (cluster.yaml's RBAC).\n\
         \x20   discovery:\n\
         \x20       enabled: false\n",
        token = quote(&m.token),
        sans = yaml_list("        ", &req.cert_sans),
        disk = quote(&req.install_disk),
        install_image = quote(&install_image),
        cluster_id = quote(cluster_id),
        cluster_secret = quote(cluster_secret),
        endpoint_q = quote(endpoint),
        name = quote(&cluster.name),
        dns_domain = quote(&req.dns_domain),
        bootstrap = quote(&token.value()),
        k8s_ca = b64(&cluster.ca_pem),
    ))
}

/// What to `kubectl apply` to the joined cluster: the bootstrap token Secret
/// exactly as `kubeadm token create` stores it, and the Talos node RBAC.
fn cluster_yaml(cluster: &Cluster, token: &BootstrapToken, expiration: &str) -> String {
    let data = |v: &str| b64(v.as_bytes());
    format!(
        "# For the cluster {name} (kubectl apply -f cluster.yaml): the bootstrap token in\n\
         # worker.yaml, as kubeadm stores one, and the RBAC Talos workers need.\n\
         # The token is a secret: keep this file out of git.\n\
         apiVersion: v1\n\
         kind: Secret\n\
         metadata:\n\
         \x20 name: bootstrap-token-{id}\n\
         \x20 namespace: kube-system\n\
         type: bootstrap.kubernetes.io/token\n\
         data:\n\
         \x20 auth-extra-groups: {groups}\n\
         \x20 description: {description}\n\
         \x20 expiration: {expiration}\n\
         \x20 token-id: {id_b64}\n\
         \x20 token-secret: {secret}\n\
         \x20 usage-bootstrap-authentication: {yes}\n\
         \x20 usage-bootstrap-signing: {yes}\n\
         ---\n\
         {rbac}",
        name = cluster.name,
        id = token.id,
        groups = data(BOOTSTRAP_GROUP),
        description = data("Talos workers, made by talos-csr-signer worker-config"),
        expiration = data(expiration),
        id_b64 = data(&token.id),
        secret = data(&token.secret),
        yes = data("true"),
        rbac = TALOS_NODES_RBAC,
    )
}

/// talosctl's configuration: the OS CA and an os:admin client certificate,
/// endpoints and nodes from `--node`.
fn talosconfig(
    req: &Request,
    cluster: &Cluster,
    m: &Material,
    ca: &MachineCa,
    now: i64,
) -> Result<String, String> {
    let client = admin_certificate(ca, req.admin_validity, now)
        .map_err(|e| format!("cannot make the talosctl client certificate: {e}"))?;
    let name = quote(&cluster.name);
    Ok(format!(
        "# talosctl --talosconfig talosconfig -n <worker> version\n\
         # Holds an {ADMIN_ROLE} key (valid {validity}): keep it out of git.\n\
         context: {name}\n\
         contexts:\n\
         \x20   {name}:\n\
         \x20       endpoints:{endpoints}\
         \x20       nodes:{nodes}\
         \x20       ca: {ca}\n\
         \x20       crt: {crt}\n\
         \x20       key: {key}\n",
        validity = format_duration(req.admin_validity),
        endpoints = yaml_list("            ", &req.nodes),
        nodes = yaml_list("            ", &req.nodes),
        ca = b64(&m.ca_crt),
        crt = b64(&client.0),
        key = b64(&client.1),
    ))
}

/// talosctl's client certificate as `talosctl gen config` makes it: O=os:admin
/// (the role apid authorises), clientAuth only, a fresh key of the CA's type,
/// signed by the machine CA; apid accepts it when it chains to a CA in the
/// bundle the worker got from the signer. (certificate PEM, key PEM)
fn admin_certificate(
    ca: &MachineCa,
    lifetime: Duration,
    now: i64,
) -> Result<(Vec<u8>, Vec<u8>), String> {
    let key = ca.key_type().generate().map_err(|e| openssl_reason(&e))?;
    let subject = cert::name(&[(Nid::ORGANIZATIONNAME, ADMIN_ROLE)]).map_err(|e| e.to_string())?;
    let signed = ca
        .sign(
            Profile::Client,
            &subject,
            SubjectKey::Own(&key),
            &[],
            lifetime,
            now,
        )
        .map_err(|e| e.to_string())?;
    let cert_pem = signed.cert.to_pem().map_err(|e| openssl_reason(&e))?;
    let key_pem = key
        .private_key_to_pem_pkcs8()
        .map_err(|e| openssl_reason(&e))?;
    Ok((cert_pem, key_pem))
}

/// Where the files went, for the summary.
pub fn describe(written: &Written, out: &Path) -> String {
    let mut text = format!(
        "wrote {} (0600): workers join {} with bootstrap token {}.… (expires {})\n",
        written
            .files
            .iter()
            .map(|p| p.file_name().unwrap_or_default().to_string_lossy())
            .collect::<Vec<_>>()
            .join(", "),
        written.endpoint,
        written.token_id,
        written.expiration,
    );
    text += &format!(
        "next: kubectl apply -f {0}/cluster.yaml; talosctl apply-config --insecure -n <worker> \
         --file {0}/worker.yaml; talosctl --talosconfig {0}/talosconfig -n <worker> version\n",
        out.display()
    );
    for w in &written.warnings {
        text += &format!("warning: {w}\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_tokens_have_kubeadm_shape_and_differ() {
        let a = BootstrapToken::generate().unwrap();
        let b = BootstrapToken::generate().unwrap();
        for t in [&a, &b] {
            let v = t.value();
            assert_eq!(v.len(), 23);
            assert!(v[..6]
                .bytes()
                .chain(v[7..].bytes())
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
            assert_eq!(&v[6..7], ".");
        }
        assert_ne!(a.value(), b.value());
    }

    #[test]
    fn versions_endpoints_and_sans() {
        assert_eq!(talos_version("v1.13.9"), Ok((1, 13)));
        assert_eq!(talos_version("1.8.4"), Ok((1, 8)));
        assert!(talos_version("v1.7.6")
            .unwrap_err()
            .contains("not supported"));
        assert!(talos_version("v1.13").unwrap_err().contains("in full"));
        assert!(talos_version("latest").unwrap_err().contains("in full"));
        assert_eq!(
            endpoint("https://10.0.0.1:6443/").unwrap(),
            "https://10.0.0.1:6443"
        );
        assert!(endpoint("http://10.0.0.1:6443").is_err());
        assert!(endpoint("https://10.0.0.1:6443/api").is_err());
        assert!(check_sans(&["10.0.0.1".into(), "w1.example".into()]).is_ok());
        assert!(check_sans(&["a b".into()]).is_err());
        assert!(check_sans(&["*.w1.example".into()])
            .unwrap_err()
            .contains("wildcard"));
        assert!(check_sans(&["0.0.0.0".into()]).is_err());
    }
}
