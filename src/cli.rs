//! Command line (argh) with the environment fallbacks of the Go project we
//! replace, resolved into a typed `ServeConfig`.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use argh::FromArgs;

use crate::config::{
    self, format_duration, DevPlan, PolicyConfig, ServeConfig, TokenSource, DEFAULT_PORT,
};
use crate::ops::audit::Destination;
use crate::pki::keys::KeyType;
use crate::pki::San;
use crate::policy::{DEFAULT_MAX_CSR_BYTES, DEFAULT_MAX_SANS};
use crate::server;
use crate::throttle::Limits;

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
    #[argh(
        option,
        default = "String::from(crate::worker_config::DEFAULT_TALOS_VERSION)"
    )]
    pub talos_version: String,
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

impl WorkerConfigArgs {
    pub fn resolve(self) -> Result<crate::worker_config::Request, String> {
        let duration = |flag: &str, text: &str| {
            config::parse_duration(text).map_err(|e| format!("{flag}: {e}"))
        };
        Ok(crate::worker_config::Request {
            token_ttl: duration("--token-ttl", &self.token_ttl)?,
            admin_validity: duration("--admin-validity", &self.admin_validity)?,
            from: self.from,
            kubeconfig: self.kubeconfig,
            context: self.kubeconfig_context,
            out: self.out,
            endpoint: self.endpoint,
            install_disk: self.install_disk,
            install_image: self.install_image,
            talos_version: self.talos_version,
            kubernetes_version: self.kubernetes_version,
            cert_sans: self.cert_san,
            cluster_dns: self.cluster_dns,
            dns_domain: self.dns_domain,
            nodes: self.node,
            force: self.force,
        })
    }
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
    /// calls queued or in signing before new ones get RESOURCE_EXHAUSTED [env MAX_QUEUE; default 256]
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

/// Flag values with their environment fallbacks: a flag wins; an empty
/// variable counts as unset. `env` is `std::env::var` in production and a
/// table in tests.
struct Lookup<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    /// `Path::exists` in production: the default file layouts are chosen by
    /// which files are there.
    exists: &'a dyn Fn(&Path) -> bool,
}

impl Lookup<'_> {
    fn text(&self, flag: Option<String>, var: &str) -> Option<String> {
        flag.or_else(|| self.var(var))
    }

    /// An environment variable; empty counts as unset.
    fn var(&self, var: &str) -> Option<String> {
        (self.env)(var).filter(|v| !v.trim().is_empty())
    }

    fn path(&self, flag: Option<PathBuf>, var: &str) -> Option<PathBuf> {
        self.text(flag.map(|p| p.display().to_string()), var)
            .map(PathBuf::from)
    }

    /// Like `path`, with the name of the setting that gave it, for the
    /// startup log.
    fn named_path(
        &self,
        flag: Option<PathBuf>,
        flag_name: &str,
        var: &str,
    ) -> Option<(PathBuf, String)> {
        match flag {
            Some(p) => Some((p, flag_name.to_string())),
            None => self.var(var).map(|v| (PathBuf::from(v), var.to_string())),
        }
    }

    fn duration(&self, flag: Option<String>, var: &str, default: &str) -> Result<Duration, String> {
        let text = self.text(flag, var).unwrap_or_else(|| default.to_string());
        config::parse_duration(&text).map_err(|e| format!("{var}: {e}"))
    }

    /// Like `duration`, but `0` (off) is allowed.
    fn interval(&self, flag: Option<String>, var: &str, default: &str) -> Result<Duration, String> {
        match self.text(flag, var) {
            Some(t) if t.trim() == "0" => Ok(Duration::ZERO),
            other => self.duration(other, var, default),
        }
    }

    fn number(
        &self,
        flag: Option<String>,
        var: &str,
        default: usize,
        range: RangeInclusive<usize>,
    ) -> Result<usize, String> {
        let Some(text) = self.text(flag, var) else {
            return Ok(default);
        };
        match text.trim().parse::<usize>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(format!(
                "{var}: {text:?} is not a number from {} to {}",
                range.start(),
                range.end()
            )),
        }
    }

    fn list<T: std::str::FromStr<Err = String>>(
        &self,
        flag: Option<String>,
        var: &str,
    ) -> Result<Option<Vec<T>>, String> {
        self.text(flag, var)
            .map(|t| config::parse_list(var, &t))
            .transpose()
    }

    /// A switch, or its variable set to 1/true/yes (0/false/no: off).
    fn switch(&self, flag: bool, var: &str) -> Result<bool, String> {
        match (self.env)(var)
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            _ if flag => Ok(true),
            None | Some("") | Some("0") | Some("false") | Some("no") => Ok(false),
            Some("1") | Some("true") | Some("yes") => Ok(true),
            Some(other) => Err(format!("{var}: {other:?} is not true or false")),
        }
    }

    fn addr(&self, flag: Option<String>, var: &str) -> Result<Option<SocketAddr>, String> {
        self.text(flag, var)
            .map(|a| {
                a.trim().parse().map_err(|_| {
                    format!("{var}: {a:?} is not IP:PORT; write e.g. 0.0.0.0:9090 or [::]:9090")
                })
            })
            .transpose()
    }
}

/// Where systemd's `LoadCredential=` put a file, if it did.
fn credential(env: &Lookup<'_>, name: &str) -> Option<PathBuf> {
    let dir = env.var("CREDENTIALS_DIRECTORY")?;
    let path = PathBuf::from(dir).join(name);
    (env.exists)(&path).then_some(path)
}

/// Where the Go talos-csr-signer's images find their files, and so do we when
/// nothing names them: the machine CA Secret and cert-manager's serving
/// certificate Secret, mounted as its manifests mount them.
const CA_DIR: &str = "/etc/talos-ca";
const SERVING_DIR: &str = "/etc/talos-server-crt";

/// The CA files when nothing names them. The Go signer's first version
/// mounted `ca.crt`/`ca.key`; its current one mounts the Secret that
/// cert-manager's CA Issuer reads, whose keys are `tls.crt`/`tls.key`. Take
/// the first pair that is there, whole.
fn default_ca_files(env: &Lookup<'_>) -> (PathBuf, PathBuf, String) {
    let dir = Path::new(CA_DIR);
    let both = |c: &str, k: &str| {
        let (c, k) = (dir.join(c), dir.join(k));
        ((env.exists)(&c) && (env.exists)(&k)).then_some((c, k))
    };
    if let Some((c, k)) = both("ca.crt", "ca.key") {
        return (c, k, "the default paths".to_string());
    }
    if let Some((c, k)) = both("tls.crt", "tls.key") {
        let why = format!(
            "the default paths of a cert-manager CA Secret ({CA_DIR}/ca.crt and ca.key are not \
             both there)"
        );
        return (c, k, why);
    }
    let why = format!(
        "the default paths (neither ca.crt + ca.key nor tls.crt + tls.key are in {CA_DIR}; \
         mount the machine CA Secret there or set --ca-cert and --ca-key)"
    );
    (dir.join("ca.crt"), dir.join("ca.key"), why)
}

impl ServeArgs {
    /// Applies environment fallbacks and checks every value.
    pub fn resolve(self, env: &dyn Fn(&str) -> Option<String>) -> Result<ServeConfig, String> {
        self.resolve_with(env, &|p: &Path| p.exists())
    }

    /// `resolve`, with the file-existence check that picks default layouts
    /// given (tests use a table).
    pub fn resolve_with(
        self,
        env: &dyn Fn(&str) -> Option<String>,
        exists: &dyn Fn(&Path) -> bool,
    ) -> Result<ServeConfig, String> {
        let env = Lookup { env, exists };
        let dev_dir = self
            .dev_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("dev-pki"));
        let ca = self.ca_paths(&env, &dev_dir)?;
        let (token, make_token) = self.token_source(&env, &dev_dir)?;
        let (external_tls, serving_origin) = self.serving_files(&env)?;
        let cert_validity = capped_validity(
            env.duration(self.cert_validity, "CERT_VALIDITY", "24h")?,
            env.text(self.max_validity, "MAX_VALIDITY"),
        )?;
        let defaults = Limits::default();
        Ok(ServeConfig {
            listen: resolve_listen(self.listen, self.port, self.dev, &env)?,
            ca_cert: ca.cert,
            ca_key: ca.key,
            ca_origin: ca.origin,
            serving_origin,
            token,
            accepted_cas: accepted_cas(self.accepted_ca, &env),
            server_sans: server_sans(self.server_ips, self.server_dns_names, &env)?,
            cert_validity,
            serving_cert_validity: env.duration(
                self.serving_cert_validity,
                "SERVING_CERT_VALIDITY",
                "7d",
            )?,
            external_tls,
            workers: env.number(self.workers, "WORKERS", default_workers(), 1..=256)?,
            max_queue: env.number(self.max_queue, "MAX_QUEUE", 256, 1..=1_000_000)?,
            cq_count: env.number(self.cq_count, "CQ_COUNT", 1, 1..=64)?,
            policy: PolicyConfig {
                allowed_ip_sans: env.list(self.allowed_ip_sans, "ALLOWED_IP_SANS")?,
                allowed_dns_sans: env.list(self.allowed_dns_sans, "ALLOWED_DNS_SANS")?,
                peer_ip_must_match: env.switch(self.peer_ip_must_match, "PEER_IP_MUST_MATCH")?,
                max_sans: env.number(self.max_sans, "MAX_SANS", DEFAULT_MAX_SANS, 1..=10_000)?,
                max_csr_bytes: env.number(
                    self.max_csr_bytes,
                    "MAX_CSR_BYTES",
                    DEFAULT_MAX_CSR_BYTES,
                    256..=(server::MAX_MESSAGE_BYTES as usize),
                )?,
                key_types: env.list(self.allowed_key_types, "ALLOWED_KEY_TYPES")?,
            },
            throttle: Limits {
                limit: env.number(
                    self.auth_fail_limit,
                    "AUTH_FAIL_LIMIT",
                    defaults.limit as usize,
                    1..=1_000_000,
                )? as u32,
                window: env.duration(self.auth_fail_window, "AUTH_FAIL_WINDOW", "60s")?,
                cooldown: env.duration(self.auth_cooldown, "AUTH_COOLDOWN", "120s")?,
                max_tracked: defaults.max_tracked,
            },
            audit: audit_destination(env.text(self.audit_log, "AUDIT_LOG")),
            reload_interval: env.interval(self.reload_interval, "RELOAD_INTERVAL", "10s")?,
            health_listen: env.addr(self.health_listen, "HEALTH_LISTEN")?,
            metrics_listen: env.addr(self.metrics_listen, "METRICS_LISTEN")?,
            fips: env.switch(self.fips, "FIPS_MODE")?,
            fips_allow_ed25519: env.switch(self.fips_allow_ed25519, "FIPS_ALLOW_ED25519")?,
            dev: self.dev.then_some(DevPlan {
                dir: dev_dir,
                make_ca: ca.make,
                make_token,
            }),
        })
    }

    /// Flag, variable, systemd credential, `--dev` material, default: in that order.
    fn ca_paths(&self, env: &Lookup<'_>, dev_dir: &Path) -> Result<CaFiles, String> {
        let cert = env
            .named_path(self.ca_cert.clone(), "--ca-cert", "CA_CERT_PATH")
            .or_else(|| credential(env, "ca.crt").map(|p| (p, "a systemd credential".into())));
        let key = env
            .named_path(self.ca_key.clone(), "--ca-key", "CA_KEY_PATH")
            .or_else(|| credential(env, "ca.key").map(|p| (p, "a systemd credential".into())));
        match (cert, key) {
            (None, None) if self.dev => Ok(CaFiles {
                cert: dev_dir.join("ca.crt"),
                key: dev_dir.join("ca.key"),
                make: true,
                origin: "--dev (a throwaway CA, made if missing)".to_string(),
            }),
            (Some(_), None) | (None, Some(_)) if self.dev => Err(
                "--dev with a real CA needs both the CA certificate and key (--ca-cert and \
                 --ca-key); give both or neither"
                    .to_string(),
            ),
            (None, None) => {
                let (cert, key, origin) = default_ca_files(env);
                Ok(CaFiles {
                    cert,
                    key,
                    make: false,
                    origin,
                })
            }
            (cert, key) => {
                let (default_cert, default_key, _) = default_ca_files(env);
                let (cert, cert_from) = cert.unwrap_or((default_cert, "the default".into()));
                let (key, key_from) = key.unwrap_or((default_key, "the default".into()));
                Ok(CaFiles {
                    cert,
                    key,
                    make: false,
                    origin: format!("certificate from {cert_from}, key from {key_from}"),
                })
            }
        }
    }

    /// The machine token: `--talos-token` (discouraged), TALOS_TOKEN, a token
    /// file, a systemd credential, or `--dev` material.
    fn token_source(
        &self,
        env: &Lookup<'_>,
        dev_dir: &Path,
    ) -> Result<(TokenSource, bool), String> {
        let file = env.path(self.token_file.clone(), "TALOS_TOKEN_FILE");
        if let Some(flag) = &self.talos_token {
            if file.is_some() {
                return Err("both --talos-token and a token file are set; use one of them".into());
            }
            if flag.trim().is_empty() {
                return Err(
                    "--talos-token is empty; set it to machine.token, or better use \
                            TALOS_TOKEN or --token-file"
                        .into(),
                );
            }
            log::warn!(
                "--talos-token puts the machine token on the command line, where every user of \
                 this machine can read it (ps, /proc/*/cmdline); set TALOS_TOKEN or \
                 --token-file instead"
            );
            return Ok((
                TokenSource::Value(flag.trim().to_string(), "--talos-token"),
                false,
            ));
        }
        let value = (env.env)("TALOS_TOKEN");
        match (value.as_deref().map(str::trim), file) {
            (Some(v), Some(_)) if !v.is_empty() => {
                Err("both TALOS_TOKEN and a token file are set; use one of them".to_string())
            }
            (Some(v), None) if !v.is_empty() => {
                Ok((TokenSource::Value(v.to_string(), "TALOS_TOKEN"), false))
            }
            (_, Some(f)) => Ok((TokenSource::File(f), false)),
            (Some(_), None) => Err("TALOS_TOKEN is empty; set it to machine.token \
                                    (trustdinfo.token in a `talosctl gen secrets` bundle)"
                .to_string()),
            (None, None) => match credential(env, "token") {
                Some(f) => Ok((TokenSource::File(f), false)),
                None if self.dev => Ok((TokenSource::File(dev_dir.join("token")), true)),
                None => Err("no machine token: set TALOS_TOKEN or --token-file / \
                             TALOS_TOKEN_FILE to machine.token of your Talos machine config"
                    .to_string()),
            },
        }
    }

    /// `--tls-cert`/`--tls-key`, else cert-manager's Secret where the Go
    /// signer's manifests mount it, else none (we generate our own). Also
    /// says why, for the startup log.
    fn serving_files(
        &self,
        env: &Lookup<'_>,
    ) -> Result<(Option<(PathBuf, PathBuf)>, String), String> {
        let given = (
            env.path(self.tls_cert.clone(), "TLS_CERT_PATH"),
            env.path(self.tls_key.clone(), "TLS_KEY_PATH"),
        );
        let generated = "generated, signed by the machine CA, renewed at half its life";
        match given {
            (Some(c), Some(k)) => Ok((Some((c, k)), "--tls-cert/--tls-key".to_string())),
            (None, None) if self.dev => Ok((None, format!("{generated} (--dev)"))),
            (None, None) => {
                let (c, k) = (
                    Path::new(SERVING_DIR).join("tls.crt"),
                    Path::new(SERVING_DIR).join("tls.key"),
                );
                if (env.exists)(&c) && (env.exists)(&k) {
                    let why =
                        format!("the default paths ({SERVING_DIR}/tls.crt and tls.key are there)");
                    Ok((Some((c, k)), why))
                } else {
                    let why = format!(
                        "{generated} (no --tls-cert, and {SERVING_DIR}/tls.crt and tls.key are not \
                         both there)"
                    );
                    Ok((None, why))
                }
            }
            _ => Err(
                "--tls-cert and --tls-key (TLS_CERT_PATH / TLS_KEY_PATH) go together; \
                      give both or neither"
                    .to_string(),
            ),
        }
    }
}

/// The machine CA files and why they were chosen.
struct CaFiles {
    cert: PathBuf,
    key: PathBuf,
    /// `--dev` makes them if they are missing.
    make: bool,
    origin: String,
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn accepted_cas(flags: Vec<PathBuf>, env: &Lookup<'_>) -> Vec<PathBuf> {
    if !flags.is_empty() {
        return flags;
    }
    env.text(None, "ACCEPTED_CA_PATHS")
        .map(|list| config::list_items(&list).map(PathBuf::from).collect())
        .unwrap_or_default()
}

fn server_sans(
    ips: Option<String>,
    names: Option<String>,
    env: &Lookup<'_>,
) -> Result<Vec<San>, String> {
    let mut sans = Vec::new();
    if let Some(ips) = env.text(ips, "SERVER_IPS") {
        sans.extend(
            config::parse_ip_list("SERVER_IPS", &ips)?
                .into_iter()
                .map(San::Ip),
        );
    }
    if let Some(names) = env.text(names, "SERVER_DNS_NAMES") {
        let names = config::parse_dns_list("SERVER_DNS_NAMES", &names)?;
        sans.extend(names.into_iter().map(San::Dns));
    }
    Ok(sans)
}

/// Talos workers ask for a new apid certificate about every 12 hours; an
/// hour more covers their retries (about a minute, then the controller's
/// back-off) and clock skew. Anything shorter leaves workers with expired
/// certificates between renewals.
pub const MIN_CERT_VALIDITY: Duration = Duration::from_secs(13 * 3600);

/// `--max-validity` bounds the lifetime whatever else is configured; neither
/// may go below what workers can live with.
fn capped_validity(validity: Duration, max: Option<String>) -> Result<Duration, String> {
    let too_short = |setting: &str, d: Duration| {
        format!(
            "{setting}: {} is shorter than Talos workers can live with: they renew their apid \
             certificate about every 12 h, so it would expire first; use at least {} (default 24h)",
            format_duration(d),
            format_duration(MIN_CERT_VALIDITY)
        )
    };
    if validity < MIN_CERT_VALIDITY {
        return Err(too_short("CERT_VALIDITY (--cert-validity)", validity));
    }
    let Some(text) = max else {
        return Ok(validity);
    };
    let max = config::parse_duration(&text).map_err(|e| format!("MAX_VALIDITY: {e}"))?;
    if max < MIN_CERT_VALIDITY {
        return Err(too_short("MAX_VALIDITY (--max-validity)", max));
    }
    if validity > max {
        log::warn!(
            "certificate validity {} capped at --max-validity {}",
            format_duration(validity),
            format_duration(max)
        );
    }
    Ok(validity.min(max))
}

fn audit_destination(text: Option<String>) -> Destination {
    match text.as_deref().map(str::trim) {
        None | Some("-") => Destination::Stderr,
        Some("off") => Destination::Off,
        Some(path) => Destination::File(PathBuf::from(path)),
    }
}

/// `--listen` wins; otherwise all interfaces (loopback with `--dev`) on
/// `--port` or PORT, as the Go project listens.
fn resolve_listen(
    flag: Option<String>,
    port: Option<String>,
    dev: bool,
    env: &Lookup<'_>,
) -> Result<SocketAddr, String> {
    if let Some(addr) = flag {
        return addr.trim().parse().map_err(|_| {
            format!("--listen {addr:?} is not IP:PORT; write e.g. 0.0.0.0:50001 or [::]:50001")
        });
    }
    let setting = if port.is_some() { "--port" } else { "PORT" };
    let port = match env.text(port, "PORT") {
        Some(p) => p
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("{setting}: {p:?} is not a port number (0-65535)"))?,
        None => DEFAULT_PORT,
    };
    let ip: IpAddr = if dev {
        [127, 0, 0, 1].into()
    } else {
        [0, 0, 0, 0].into()
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn serve(args: &[&str], vars: &[(&str, &str)]) -> Result<ServeConfig, String> {
        serve_with_files(args, vars, &[])
    }

    /// `args` as the binary gets them (no subcommand: serve), `vars` as the
    /// environment, `files` the only files that exist.
    fn serve_with_files(
        args: &[&str],
        vars: &[(&str, &str)],
        files: &[&str],
    ) -> Result<ServeConfig, String> {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(args);
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let argv = crate::argv::normalize(&argv)?;
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let cli = Cli::from_args(&["talos-csr-signer"], &argv).map_err(|e| e.output)?;
        let Command::Serve(s) = cli.command else {
            unreachable!()
        };
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.resolve_with(&|k| vars.get(k).cloned(), &|p| {
            files.iter().any(|f| Path::new(f) == p)
        })
    }

    #[test]
    fn go_project_env_names_and_defaults() {
        let c = serve(&[], &[("TALOS_TOKEN", "abc.def"), ("PORT", "6000")]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:6000".parse().unwrap());
        assert_eq!(c.ca_cert, PathBuf::from("/etc/talos-ca/ca.crt"));
        assert_eq!(c.ca_key, PathBuf::from("/etc/talos-ca/ca.key"));
        assert!(matches!(c.token, TokenSource::Value(ref t, "TALOS_TOKEN") if t == "abc.def"));
        assert_eq!(c.cert_validity, Duration::from_secs(86_400));
        assert!(c.dev.is_none());

        let c = serve(
            &["--listen", "[::]:7000"],
            &[
                ("TALOS_TOKEN_FILE", "/run/tok"),
                ("CA_CERT_PATH", "/x/c"),
                ("CA_KEY_PATH", "/x/k"),
                ("SERVER_IPS", "10.0.0.1, 10.0.0.2"),
                ("SERVER_DNS_NAMES", "cp.example"),
                ("ACCEPTED_CA_PATHS", "/a.crt,/b.crt"),
                ("PORT", "1"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen, "[::]:7000".parse().unwrap());
        assert!(matches!(c.token, TokenSource::File(ref p) if p == &PathBuf::from("/run/tok")));
        assert_eq!(c.ca_cert, PathBuf::from("/x/c"));
        assert_eq!(
            c.accepted_cas,
            vec![PathBuf::from("/a.crt"), PathBuf::from("/b.crt")]
        );
        assert_eq!(c.server_sans.len(), 3);
    }

    #[test]
    fn flags_win_over_env() {
        let c = serve(
            &[
                "--ca-cert",
                "/flag/c",
                "--cert-validity",
                "14h",
                "--workers",
                "3",
            ],
            &[
                ("TALOS_TOKEN", "t"),
                ("CA_CERT_PATH", "/env/c"),
                ("CERT_VALIDITY", "15h"),
                ("WORKERS", "9"),
            ],
        )
        .unwrap();
        assert_eq!(c.ca_cert, PathBuf::from("/flag/c"));
        assert_eq!(c.cert_validity, Duration::from_secs(14 * 3600));
        assert_eq!(c.workers, 3);
    }

    #[test]
    fn token_rules() {
        let err = |r: Result<ServeConfig, String>| r.err().expect("should fail");
        assert!(err(serve(&[], &[])).contains("no machine token"));
        assert!(err(serve(&[], &[("TALOS_TOKEN", " ")])).contains("TALOS_TOKEN is empty"));
        assert!(err(serve(&["--token-file", "/t"], &[("TALOS_TOKEN", "x")])).contains("both"));
    }

    #[test]
    fn bad_values_name_the_setting() {
        let tok = ("TALOS_TOKEN", "t");
        let e = serve(&[], &[tok, ("SERVER_IPS", "10.0.0.1,nope")])
            .err()
            .unwrap();
        assert!(e.starts_with("SERVER_IPS:"), "{e}");
        assert!(serve(&[], &[tok, ("PORT", "x")])
            .err()
            .unwrap()
            .starts_with("PORT:"));
        assert!(serve(&["--listen", "cp:1"], &[tok])
            .err()
            .unwrap()
            .contains("--listen"));
        assert!(serve(&[], &[tok, ("CERT_VALIDITY", "0s")])
            .err()
            .unwrap()
            .starts_with("CERT_VALIDITY:"));
        // Shorter than a worker's renewal interval plus margin.
        let e = serve(&["--cert-validity", "6h"], &[tok]).err().unwrap();
        assert!(
            e.contains("6h is shorter than Talos workers can live with"),
            "{e}"
        );
        assert!(e.contains("at least 13h"), "{e}");
        let e = serve(&[], &[tok, ("MAX_VALIDITY", "12h")]).err().unwrap();
        assert!(e.starts_with("MAX_VALIDITY (--max-validity): 12h"), "{e}");
        assert_eq!(
            serve(&["--cert-validity", "13h"], &[tok])
                .unwrap()
                .cert_validity,
            MIN_CERT_VALIDITY
        );
        assert!(serve(&["--workers", "0"], &[tok])
            .err()
            .unwrap()
            .starts_with("WORKERS:"));
    }

    #[test]
    fn dev_mode_fills_in_only_what_is_missing() {
        let c = serve(&["--dev"], &[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:50001".parse().unwrap());
        let plan = c.dev.unwrap();
        assert!(plan.make_ca && plan.make_token);
        assert_eq!(c.ca_cert, PathBuf::from("dev-pki/ca.crt"));

        let c = serve(&["--dev", "--dev-dir", "/d"], &[("TALOS_TOKEN", "real")]).unwrap();
        let plan = c.dev.unwrap();
        assert!(plan.make_ca && !plan.make_token);
        assert_eq!(c.ca_key, PathBuf::from("/d/ca.key"));

        assert!(serve(&["--dev", "--ca-cert", "/c"], &[])
            .err()
            .unwrap()
            .contains("both"));
    }

    #[test]
    fn go_signer_flags_are_ours() {
        let c = serve(
            &[
                "--port=6001",
                "--ca-cert-path=/m/tls.crt",
                "--ca-key-path",
                "/m/tls.key",
                "--tls-cert-path=/s/tls.crt",
                "--tls-key-path=/s/tls.key",
                "--talos-token=abc.def",
            ],
            &[("TALOS_TOKEN", "ignored.flagwins")],
        )
        .unwrap();
        assert_eq!(c.listen, "0.0.0.0:6001".parse().unwrap());
        assert_eq!(c.ca_cert, PathBuf::from("/m/tls.crt"));
        assert_eq!(c.ca_key, PathBuf::from("/m/tls.key"));
        assert_eq!(
            c.external_tls,
            Some((PathBuf::from("/s/tls.crt"), PathBuf::from("/s/tls.key")))
        );
        assert!(matches!(c.token, TokenSource::Value(ref t, "--talos-token") if t == "abc.def"));
        assert_eq!(c.ca_origin, "certificate from --ca-cert, key from --ca-key");
        // --listen wins over --port; --port over PORT.
        let c = serve(
            &["--port", "7", "--listen", "127.0.0.1:8"],
            &[("TALOS_TOKEN", "t")],
        );
        assert_eq!(c.unwrap().listen, "127.0.0.1:8".parse().unwrap());
        let c = serve(&["--port", "7"], &[("TALOS_TOKEN", "t"), ("PORT", "9")]);
        assert_eq!(c.unwrap().listen, "0.0.0.0:7".parse().unwrap());
        let e = serve(&["--port=x"], &[("TALOS_TOKEN", "t")]).err().unwrap();
        assert!(e.starts_with("--port:"), "{e}");
        let e = serve(&["--talos-token="], &[]).err().unwrap();
        assert!(e.contains("--talos-token is empty"), "{e}");
        let e = serve(&["--talos-token=a", "--token-file=/t"], &[])
            .err()
            .unwrap();
        assert!(e.contains("both --talos-token and a token file"), "{e}");
    }

    #[test]
    fn default_layouts_of_both_go_versions() {
        let tok = [("TALOS_TOKEN", "t")];
        // First version: ca.crt/ca.key, generated serving certificate.
        let c = serve_with_files(
            &[],
            &tok,
            &[
                "/etc/talos-ca/ca.crt",
                "/etc/talos-ca/ca.key",
                "/etc/talos-ca/token",
            ],
        )
        .unwrap();
        assert_eq!(c.ca_cert, PathBuf::from("/etc/talos-ca/ca.crt"));
        assert_eq!(c.ca_key, PathBuf::from("/etc/talos-ca/ca.key"));
        assert_eq!(c.external_tls, None);
        assert!(
            c.serving_origin.starts_with("generated"),
            "{}",
            c.serving_origin
        );
        // Current version: cert-manager's keys for both Secrets.
        let c = serve_with_files(
            &[],
            &tok,
            &[
                "/etc/talos-ca/tls.crt",
                "/etc/talos-ca/tls.key",
                "/etc/talos-ca/ca.crt",
                "/etc/talos-server-crt/tls.crt",
                "/etc/talos-server-crt/tls.key",
                "/etc/talos-server-crt/ca.crt",
            ],
        )
        .unwrap();
        assert_eq!(c.ca_cert, PathBuf::from("/etc/talos-ca/tls.crt"));
        assert_eq!(c.ca_key, PathBuf::from("/etc/talos-ca/tls.key"));
        assert!(c.ca_origin.contains("cert-manager"), "{}", c.ca_origin);
        assert_eq!(
            c.external_tls,
            Some((
                PathBuf::from("/etc/talos-server-crt/tls.crt"),
                PathBuf::from("/etc/talos-server-crt/tls.key")
            ))
        );
        // Half a serving pair is no serving certificate; nothing at all
        // names the first layout's files (their load error says where).
        let c = serve_with_files(&[], &tok, &["/etc/talos-server-crt/tls.crt"]).unwrap();
        assert_eq!(c.external_tls, None);
        assert_eq!(c.ca_cert, PathBuf::from("/etc/talos-ca/ca.crt"));
        assert!(c.ca_origin.contains("neither"), "{}", c.ca_origin);
        // --dev never picks up the system's serving certificate.
        let c = serve_with_files(
            &["--dev"],
            &[],
            &[
                "/etc/talos-server-crt/tls.crt",
                "/etc/talos-server-crt/tls.key",
            ],
        )
        .unwrap();
        assert_eq!(c.external_tls, None);
    }
}
