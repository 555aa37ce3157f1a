//! The command line as argh reads it (after `argv::normalize`): one struct
//! per subcommand, each flag with its environment variable and default in its
//! help. `resolve` turns them into typed configuration.

use std::net::IpAddr;
use std::path::PathBuf;

use argh::FromArgs;

use crate::pki::keys::KeyType;

#[derive(FromArgs)]
/// Signs Talos worker apid certificates the way trustd does, for Talos workers
/// that join kubeadm or Kamaji control planes. With no subcommand it serves,
/// so the Go talos-csr-signer's command lines work as they are (its flags
/// --port, --ca-cert-path, --ca-key-path, --tls-cert-path, --tls-key-path and
/// --talos-token included). `check` takes serve's flags and reports the
/// configuration without serving (same as `serve --check`).
pub struct Cli {
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
// Built once at startup; boxing would only complicate argh's derive.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    Serve(ServeArgs),
    Request(RequestArgs),
    Import(ImportArgs),
    WorkerConfig(WorkerConfigArgs),
}

#[derive(FromArgs)]
#[argh(subcommand, name = "worker-config")]
/// write a Talos worker config for a kubeadm/Kamaji cluster (worker.yaml), what that cluster needs (cluster.yaml) and a talosconfig.
pub struct WorkerConfigArgs {
    /// a `talosctl gen secrets` bundle or a control-plane machine config (as for import)
    #[argh(option)]
    pub from: PathBuf,
    /// kubeconfig of the cluster the workers join (its server and CA)
    #[argh(option)]
    pub kubeconfig: PathBuf,
    /// the kubeconfig context to use [default: its current-context]
    #[argh(option)]
    pub kubeconfig_context: Option<String>,
    /// directory to write worker.yaml, cluster.yaml and talosconfig in (all 0600)
    #[argh(option)]
    pub out: PathBuf,
    /// API server URL workers dial, https://HOST:PORT [default: the kubeconfig's server]
    #[argh(option)]
    pub endpoint: Option<String>,
    /// disk Talos installs to [default /dev/sda]
    #[argh(option, default = "String::from(\"/dev/sda\")")]
    pub install_disk: String,
    /// installer image [default ghcr.io/siderolabs/installer:<talos version>]
    #[argh(option)]
    pub install_image: Option<String>,
    /// the workers' Talos release, in full (v1.8.0 or later) [default v1.13.9]
    #[argh(option)]
    pub talos_version: Option<String>,
    /// the control plane's Kubernetes version, for the kubelet image (e.g. v1.33.0) [default: Talos's own]
    #[argh(option)]
    pub kubernetes_version: Option<String>,
    /// the cluster's DNS service IP for the kubelet, repeatable [default: Talos's, 10.96.0.10, as kubeadm and Kamaji]
    #[argh(option)]
    pub cluster_dns: Vec<IpAddr>,
    /// the cluster's DNS domain [default cluster.local]
    #[argh(option, default = "String::from(\"cluster.local\")")]
    pub dns_domain: String,
    /// extra IP or DNS SAN for the workers' apid certificate, repeatable
    #[argh(option)]
    pub cert_san: Vec<String>,
    /// lifetime of the bootstrap token [default 24h]
    #[argh(option, default = "String::from(\"24h\")")]
    pub token_ttl: String,
    /// worker IP for talosconfig's endpoints and nodes, repeatable
    #[argh(option)]
    pub node: Vec<String>,
    /// lifetime of talosconfig's admin client certificate [default 365d]
    #[argh(option, default = "String::from(\"365d\")")]
    pub admin_validity: String,
    /// replace files that already exist in --out
    #[argh(switch)]
    pub force: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "import")]
/// take the machine CA, its key and the token out of talosctl's secrets.yaml or controlplane.yaml.
pub struct ImportArgs {
    /// a `talosctl gen secrets` bundle or a control-plane machine config
    #[argh(option)]
    pub from: PathBuf,
    /// write ca.crt, ca.key (0600) and token (0600) into this directory
    #[argh(option)]
    pub out: Option<PathBuf>,
    /// print a Kubernetes Secret manifest on stdout instead
    #[argh(switch)]
    pub secret: bool,
    /// the Secret's name [default talos-csr-signer]
    #[argh(option, default = "String::from(\"talos-csr-signer\")")]
    pub name: String,
    /// the Secret's namespace [default talos-csr-signer]
    #[argh(option, default = "String::from(\"talos-csr-signer\")")]
    pub namespace: String,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "serve")]
/// serve trustd's SecurityService (gRPC over TLS, port 50001).
pub struct ServeArgs {
    /// listen address IP:PORT [default 0.0.0.0:50001]
    #[argh(option)]
    pub listen: Option<String>,
    /// port to listen on, all interfaces; --listen wins [env PORT; default 50001]
    #[argh(option)]
    pub port: Option<String>,
    /// machine CA certificate, PEM [env CA_CERT_PATH; default /etc/talos-ca/ca.crt, else /etc/talos-ca/tls.crt]
    #[argh(option)]
    pub ca_cert: Option<PathBuf>,
    /// machine CA private key, PEM [env CA_KEY_PATH; default /etc/talos-ca/ca.key, else /etc/talos-ca/tls.key]
    #[argh(option)]
    pub ca_key: Option<PathBuf>,
    /// file holding the machine token [env TALOS_TOKEN_FILE]; or set TALOS_TOKEN
    #[argh(option)]
    pub token_file: Option<PathBuf>,
    /// the machine token itself: every user of the machine can read it in the process list, prefer TALOS_TOKEN or --token-file
    #[argh(option)]
    pub talos_token: Option<String>,
    /// IPs workers dial (VIP, node IPs), comma-separated, for our TLS cert [env SERVER_IPS]
    #[argh(option)]
    pub server_ips: Option<String>,
    /// DNS names workers dial, comma-separated, for our TLS cert [env SERVER_DNS_NAMES]
    #[argh(option)]
    pub server_dns_names: Option<String>,
    /// extra CA certificate file for the response bundle, repeatable [env ACCEPTED_CA_PATHS, comma-separated]
    #[argh(option)]
    pub accepted_ca: Vec<PathBuf>,
    /// lifetime of issued certificates [env CERT_VALIDITY; default 24h]
    #[argh(option)]
    pub cert_validity: Option<String>,
    /// lifetime of our own TLS certificate, renewed at half [env SERVING_CERT_VALIDITY; default 7d]
    #[argh(option)]
    pub serving_cert_validity: Option<String>,
    /// signing threads [env WORKERS; default: number of CPUs]
    #[argh(option)]
    pub workers: Option<String>,
    /// gRPC completion-queue threads (accept and decode calls) [env CQ_COUNT; default 1]
    #[argh(option)]
    pub cq_count: Option<String>,
    /// calls queued or in signing before new ones get RESOURCE_EXHAUSTED [env MAX_QUEUE; default 4096]
    #[argh(option)]
    pub max_queue: Option<String>,
    /// CIDRs every non-loopback IP SAN must fall in, comma-separated [env ALLOWED_IP_SANS; default: any]
    #[argh(option)]
    pub allowed_ip_sans: Option<String>,
    /// DNS SANs allowed: exact names and *.suffix patterns, comma-separated [env ALLOWED_DNS_SANS; default: any]
    #[argh(option)]
    pub allowed_dns_sans: Option<String>,
    /// the caller's address must be one of the CSR's IP SANs [env PEER_IP_MUST_MATCH=true]
    #[argh(switch)]
    pub peer_ip_must_match: bool,
    /// most SANs a CSR may carry [env MAX_SANS; default 64]
    #[argh(option)]
    pub max_sans: Option<String>,
    /// largest CSR accepted, in bytes [env MAX_CSR_BYTES; default 16384]
    #[argh(option)]
    pub max_csr_bytes: Option<String>,
    /// CSR key types: ed25519, ecdsa-p256, ecdsa-p384, ecdsa-p521, rsa (>= 2048 bits) [env ALLOWED_KEY_TYPES; default ed25519,ecdsa-p256,ecdsa-p384,rsa + the CA's type]
    #[argh(option)]
    pub allowed_key_types: Option<String>,
    /// upper bound on issued certificate lifetime, whatever else is set [env MAX_VALIDITY]
    #[argh(option)]
    pub max_validity: Option<String>,
    /// failed token attempts from one address before it is refused [env AUTH_FAIL_LIMIT; default 20]
    #[argh(option)]
    pub auth_fail_limit: Option<String>,
    /// window in which failed attempts count [env AUTH_FAIL_WINDOW; default 60s]
    #[argh(option)]
    pub auth_fail_window: Option<String>,
    /// how long a throttled address is refused [env AUTH_COOLDOWN; default 120s]
    #[argh(option)]
    pub auth_cooldown: Option<String>,
    /// audit records (JSON lines): "-" for stderr, "off", or a file [env AUDIT_LOG; default -]
    #[argh(option)]
    pub audit_log: Option<String>,
    /// serve this certificate (PEM, e.g. from cert-manager) instead of a generated one [env TLS_CERT_PATH; default /etc/talos-server-crt/tls.crt if it and its key exist]
    #[argh(option)]
    pub tls_cert: Option<PathBuf>,
    /// its private key [env TLS_KEY_PATH; default /etc/talos-server-crt/tls.key]
    #[argh(option)]
    pub tls_key: Option<PathBuf>,
    /// how often to look for changed CA, token and TLS files; 0 disables (SIGHUP still reloads) [env RELOAD_INTERVAL; default 10s]
    #[argh(option)]
    pub reload_interval: Option<String>,
    /// plaintext gRPC health endpoint for Kubernetes probes, IP:PORT [env HEALTH_LISTEN; default off]
    #[argh(option)]
    pub health_listen: Option<String>,
    /// prometheus /metrics endpoint, IP:PORT [env METRICS_LISTEN; default off]
    #[argh(option)]
    pub metrics_listen: Option<String>,
    /// development mode: throwaway Ed25519 CA and token where none is given, listen on 127.0.0.1
    #[argh(switch)]
    pub dev: bool,
    /// where --dev writes its CA and token [default ./dev-pki]
    #[argh(option)]
    pub dev_dir: Option<PathBuf>,
    /// FIPS mode: load the OpenSSL fips and base providers, fips=yes for everything, refuse non-approved keys [env FIPS_MODE=1]
    #[argh(switch)]
    pub fips: bool,
    /// in FIPS mode, still allow Ed25519 (for modules that approve EdDSA) [env FIPS_ALLOW_ED25519=1]
    #[argh(switch)]
    pub fips_allow_ed25519: bool,
    /// load and check the configuration, report it, and exit (`check` is short for `serve --check`)
    #[argh(switch)]
    pub check: bool,
    /// with --check: print the report as JSON
    #[argh(switch)]
    pub json: bool,
}

#[derive(FromArgs)]
#[argh(subcommand, name = "request")]
/// act like a Talos worker: request a certificate, verify it, print a summary.
pub struct RequestArgs {
    /// signer address HOST[:PORT] (port defaults to 50001)
    #[argh(option)]
    pub endpoint: String,
    /// CA certificates to trust for the signer's TLS (the worker's accepted CAs)
    #[argh(option)]
    pub ca: PathBuf,
    /// machine token [or env TALOS_TOKEN]
    #[argh(option)]
    pub token: Option<String>,
    /// file holding the machine token [or env TALOS_TOKEN_FILE]
    #[argh(option)]
    pub token_file: Option<PathBuf>,
    /// key type: ed25519, ecdsa-p256, ecdsa-p384, ecdsa-p521, rsa-2048… [default: the CA's type]
    #[argh(option)]
    pub key_type: Option<KeyType>,
    /// subject common name [default: this host's name]
    #[argh(option)]
    pub cn: Option<String>,
    /// IP SAN to request, repeatable
    #[argh(option)]
    pub ip: Vec<IpAddr>,
    /// DNS SAN to request, repeatable
    #[argh(option)]
    pub dns: Vec<String>,
    /// directory to save key.pem, crt.pem and ca.pem in
    #[argh(option)]
    pub out: Option<PathBuf>,
    /// call deadline [default 10s]
    #[argh(option)]
    pub timeout: Option<String>,
}
