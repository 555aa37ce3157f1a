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
/// that join kubeadm or Kamaji control planes. `check` takes serve's flags and
/// reports the configuration without serving (same as `serve --check`).
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
    /// listen address IP:PORT [default 0.0.0.0:50001; env PORT sets only the port]
    #[argh(option)]
    pub listen: Option<String>,
    /// machine CA certificate, PEM [env CA_CERT_PATH; default /etc/talos-ca/ca.crt]
    #[argh(option)]
    pub ca_cert: Option<PathBuf>,
    /// machine CA private key, PEM [env CA_KEY_PATH; default /etc/talos-ca/ca.key]
    #[argh(option)]
    pub ca_key: Option<PathBuf>,
    /// file holding the machine token [env TALOS_TOKEN_FILE]; or set TALOS_TOKEN
    #[argh(option)]
    pub token_file: Option<PathBuf>,
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
    /// serve this certificate (PEM, e.g. from cert-manager) instead of a generated one [env TLS_CERT_PATH]
    #[argh(option)]
    pub tls_cert: Option<PathBuf>,
    /// its private key [env TLS_KEY_PATH]
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
}

impl Lookup<'_> {
    fn text(&self, flag: Option<String>, var: &str) -> Option<String> {
        flag.or_else(|| (self.env)(var).filter(|v| !v.trim().is_empty()))
    }

    fn path(&self, flag: Option<PathBuf>, var: &str) -> Option<PathBuf> {
        self.text(flag.map(|p| p.display().to_string()), var)
            .map(PathBuf::from)
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
    let dir = (env.env)("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty())?;
    let path = PathBuf::from(dir).join(name);
    path.exists().then_some(path)
}

impl ServeArgs {
    /// Applies environment fallbacks and checks every value.
    pub fn resolve(self, env: &dyn Fn(&str) -> Option<String>) -> Result<ServeConfig, String> {
        let env = Lookup { env };
        let dev_dir = self
            .dev_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("dev-pki"));
        let (ca_cert, ca_key, make_ca) = self.ca_paths(&env, &dev_dir)?;
        let (token, make_token) = self.token_source(&env, &dev_dir)?;
        let cert_validity = capped_validity(
            env.duration(self.cert_validity, "CERT_VALIDITY", "24h")?,
            env.text(self.max_validity, "MAX_VALIDITY"),
        )?;
        let external_tls = match (
            env.path(self.tls_cert, "TLS_CERT_PATH"),
            env.path(self.tls_key, "TLS_KEY_PATH"),
        ) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(
                    "--tls-cert and --tls-key (TLS_CERT_PATH / TLS_KEY_PATH) go \
                            together; give both or neither"
                        .to_string(),
                )
            }
        };
        let defaults = Limits::default();
        Ok(ServeConfig {
            listen: resolve_listen(self.listen, self.dev, env.env)?,
            ca_cert,
            ca_key,
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
                make_ca,
                make_token,
            }),
        })
    }

    /// Flag, variable, systemd credential, `--dev` material, default: in that order.
    fn ca_paths(
        &self,
        env: &Lookup<'_>,
        dev_dir: &Path,
    ) -> Result<(PathBuf, PathBuf, bool), String> {
        let cert = env
            .path(self.ca_cert.clone(), "CA_CERT_PATH")
            .or_else(|| credential(env, "ca.crt"));
        let key = env
            .path(self.ca_key.clone(), "CA_KEY_PATH")
            .or_else(|| credential(env, "ca.key"));
        match (cert, key) {
            (None, None) if self.dev => Ok((dev_dir.join("ca.crt"), dev_dir.join("ca.key"), true)),
            (Some(_), None) | (None, Some(_)) if self.dev => Err(
                "--dev with a real CA needs both the CA certificate and key (--ca-cert and \
                 --ca-key); give both or neither"
                    .to_string(),
            ),
            (cert, key) => Ok((
                cert.unwrap_or_else(|| PathBuf::from("/etc/talos-ca/ca.crt")),
                key.unwrap_or_else(|| PathBuf::from("/etc/talos-ca/ca.key")),
                false,
            )),
        }
    }

    /// TALOS_TOKEN, a token file, a systemd credential, or `--dev` material.
    fn token_source(
        &self,
        env: &Lookup<'_>,
        dev_dir: &Path,
    ) -> Result<(TokenSource, bool), String> {
        let file = env.path(self.token_file.clone(), "TALOS_TOKEN_FILE");
        let value = (env.env)("TALOS_TOKEN");
        match (value.as_deref().map(str::trim), file) {
            (Some(v), Some(_)) if !v.is_empty() => {
                Err("both TALOS_TOKEN and a token file are set; use one of them".to_string())
            }
            (Some(v), None) if !v.is_empty() => Ok((TokenSource::Env(v.to_string()), false)),
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

/// `--max-validity` bounds the lifetime whatever else is configured.
fn capped_validity(validity: Duration, max: Option<String>) -> Result<Duration, String> {
    let Some(text) = max else {
        return Ok(validity);
    };
    let max = config::parse_duration(&text).map_err(|e| format!("MAX_VALIDITY: {e}"))?;
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

/// `--listen` wins; otherwise the default address with PORT's port, as the Go
/// project did. `--dev` listens on loopback only.
fn resolve_listen(
    flag: Option<String>,
    dev: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SocketAddr, String> {
    if let Some(addr) = flag {
        return addr.trim().parse().map_err(|_| {
            format!("--listen {addr:?} is not IP:PORT; write e.g. 0.0.0.0:50001 or [::]:50001")
        });
    }
    let port = match env("PORT").filter(|p| !p.trim().is_empty()) {
        Some(p) => p
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("PORT: {p:?} is not a port number (0-65535)"))?,
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
        let mut argv = vec!["serve"];
        argv.extend_from_slice(args);
        let cli = Cli::from_args(&["talos-csr-signer"], &argv).map_err(|e| e.output)?;
        let Command::Serve(s) = cli.command else {
            unreachable!()
        };
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s.resolve(&|k| vars.get(k).cloned())
    }

    #[test]
    fn go_project_env_names_and_defaults() {
        let c = serve(&[], &[("TALOS_TOKEN", "abc.def"), ("PORT", "6000")]).unwrap();
        assert_eq!(c.listen, "0.0.0.0:6000".parse().unwrap());
        assert_eq!(c.ca_cert, PathBuf::from("/etc/talos-ca/ca.crt"));
        assert_eq!(c.ca_key, PathBuf::from("/etc/talos-ca/ca.key"));
        assert!(matches!(c.token, TokenSource::Env(ref t) if t == "abc.def"));
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
                "1h",
                "--workers",
                "3",
            ],
            &[
                ("TALOS_TOKEN", "t"),
                ("CA_CERT_PATH", "/env/c"),
                ("CERT_VALIDITY", "2h"),
                ("WORKERS", "9"),
            ],
        )
        .unwrap();
        assert_eq!(c.ca_cert, PathBuf::from("/flag/c"));
        assert_eq!(c.cert_validity, Duration::from_secs(3600));
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
}
