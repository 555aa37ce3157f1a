//! Command line (argh) with the environment fallbacks of the Go project we
//! replace, resolved into a typed `ServeConfig`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

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
/// that join kubeadm or Kamaji control planes.
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
    /// development mode: throwaway Ed25519 CA and token where none is given, listen on 127.0.0.1
    #[argh(switch)]
    pub dev: bool,
    /// where --dev writes its CA and token [default ./dev-pki]
    #[argh(option)]
    pub dev_dir: Option<PathBuf>,
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

/// Flag, else non-empty environment variable.
fn pick(flag: Option<String>, env: &dyn Fn(&str) -> Option<String>, var: &str) -> Option<String> {
    flag.or_else(|| env(var).filter(|v| !v.trim().is_empty()))
}

impl ServeArgs {
    /// Applies environment fallbacks and checks every value; `env` is
    /// `std::env::var` in production and a table in tests.
    pub fn resolve(self, env: &dyn Fn(&str) -> Option<String>) -> Result<ServeConfig, String> {
        let listen = resolve_listen(self.listen, self.dev, env)?;
        let dev_dir = self.dev_dir.unwrap_or_else(|| PathBuf::from("dev-pki"));
        let path = |flag: Option<PathBuf>, var| {
            pick(flag.map(|p| p.display().to_string()), env, var).map(PathBuf::from)
        };
        let ca_cert = path(self.ca_cert, "CA_CERT_PATH");
        let ca_key = path(self.ca_key, "CA_KEY_PATH");
        let make_ca = self.dev && ca_cert.is_none() && ca_key.is_none();
        let (ca_cert, ca_key) = if make_ca {
            (dev_dir.join("ca.crt"), dev_dir.join("ca.key"))
        } else {
            if self.dev && (ca_cert.is_none() || ca_key.is_none()) {
                return Err(
                    "--dev with a real CA needs both the CA certificate and key \
                            (--ca-cert and --ca-key); give both or neither"
                        .to_string(),
                );
            }
            (
                ca_cert.unwrap_or_else(|| PathBuf::from("/etc/talos-ca/ca.crt")),
                ca_key.unwrap_or_else(|| PathBuf::from("/etc/talos-ca/ca.key")),
            )
        };

        let token_file = path(self.token_file, "TALOS_TOKEN_FILE");
        let token_env = env("TALOS_TOKEN").filter(|v| !v.trim().is_empty());
        let make_token = self.dev && token_file.is_none() && token_env.is_none();
        let token = match (token_env, token_file) {
            (Some(_), Some(_)) => {
                return Err("both TALOS_TOKEN and a token file are set; use one of them".to_string())
            }
            (Some(t), None) => TokenSource::Env(t),
            (None, Some(f)) => TokenSource::File(f),
            (None, None) if make_token => TokenSource::File(dev_dir.join("token")),
            (None, None) if env("TALOS_TOKEN").is_some() => {
                return Err(
                    "TALOS_TOKEN is empty; set it to machine.token (trustdinfo.token \
                            in a `talosctl gen secrets` bundle)"
                        .to_string(),
                )
            }
            (None, None) => {
                return Err("no machine token: set TALOS_TOKEN or --token-file / \
                            TALOS_TOKEN_FILE to machine.token of your Talos machine config"
                    .to_string())
            }
        };

        let mut server_sans: Vec<San> = match pick(self.server_ips, env, "SERVER_IPS") {
            Some(ips) => config::parse_ip_list("SERVER_IPS", &ips)?
                .into_iter()
                .map(San::Ip)
                .collect(),
            None => Vec::new(),
        };
        if let Some(names) = pick(self.server_dns_names, env, "SERVER_DNS_NAMES") {
            let names = config::parse_dns_list("SERVER_DNS_NAMES", &names)?;
            server_sans.extend(names.into_iter().map(San::Dns));
        }

        let mut accepted_cas = self.accepted_ca;
        if accepted_cas.is_empty() {
            if let Some(list) = env("ACCEPTED_CA_PATHS") {
                accepted_cas = config::list_items(&list).map(PathBuf::from).collect();
            }
        }

        let duration = |flag, var, default: &str| -> Result<_, String> {
            let text = pick(flag, env, var).unwrap_or_else(|| default.to_string());
            config::parse_duration(&text).map_err(|e| format!("{var}: {e}"))
        };
        let cert_validity = duration(self.cert_validity, "CERT_VALIDITY", "24h")?;
        let serving_cert_validity =
            duration(self.serving_cert_validity, "SERVING_CERT_VALIDITY", "7d")?;

        let workers = match pick(self.workers, env, "WORKERS") {
            Some(w) => match w.trim().parse::<usize>() {
                Ok(n) if (1..=256).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "WORKERS: {w:?} is not a thread count from 1 to 256"
                    ))
                }
            },
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };

        let number = |flag,
                      var: &str,
                      default: usize,
                      range: std::ops::RangeInclusive<usize>|
         -> Result<usize, String> {
            match pick(flag, env, var) {
                Some(text) => match text.trim().parse::<usize>() {
                    Ok(n) if range.contains(&n) => Ok(n),
                    _ => Err(format!(
                        "{var}: {text:?} is not a number from {} to {}",
                        range.start(),
                        range.end()
                    )),
                },
                None => Ok(default),
            }
        };
        let max_queue = number(self.max_queue, "MAX_QUEUE", 256, 1..=1_000_000)?;

        let mut cert_validity = cert_validity;
        if let Some(text) = pick(self.max_validity, env, "MAX_VALIDITY") {
            let max = config::parse_duration(&text).map_err(|e| format!("MAX_VALIDITY: {e}"))?;
            if cert_validity > max {
                log::warn!(
                    "certificate validity {} capped at --max-validity {}",
                    format_duration(cert_validity),
                    format_duration(max)
                );
                cert_validity = max;
            }
        }

        let policy = PolicyConfig {
            allowed_ip_sans: pick(self.allowed_ip_sans, env, "ALLOWED_IP_SANS")
                .map(|t| config::parse_list("ALLOWED_IP_SANS", &t))
                .transpose()?,
            allowed_dns_sans: pick(self.allowed_dns_sans, env, "ALLOWED_DNS_SANS")
                .map(|t| config::parse_list("ALLOWED_DNS_SANS", &t))
                .transpose()?,
            peer_ip_must_match: self.peer_ip_must_match || env_flag(env, "PEER_IP_MUST_MATCH")?,
            max_sans: number(self.max_sans, "MAX_SANS", DEFAULT_MAX_SANS, 1..=10_000)?,
            max_csr_bytes: number(
                self.max_csr_bytes,
                "MAX_CSR_BYTES",
                DEFAULT_MAX_CSR_BYTES,
                256..=(server::MAX_MESSAGE_BYTES as usize),
            )?,
            key_types: pick(self.allowed_key_types, env, "ALLOWED_KEY_TYPES")
                .map(|t| config::parse_list("ALLOWED_KEY_TYPES", &t))
                .transpose()?,
        };

        let defaults = Limits::default();
        let throttle = Limits {
            limit: number(
                self.auth_fail_limit,
                "AUTH_FAIL_LIMIT",
                defaults.limit as usize,
                1..=1_000_000,
            )? as u32,
            window: duration(self.auth_fail_window, "AUTH_FAIL_WINDOW", "60s")?,
            cooldown: duration(self.auth_cooldown, "AUTH_COOLDOWN", "120s")?,
            max_tracked: defaults.max_tracked,
        };

        let audit = match pick(self.audit_log, env, "AUDIT_LOG")
            .as_deref()
            .map(str::trim)
        {
            None | Some("-") => Destination::Stderr,
            Some("off") => Destination::Off,
            Some(path) => Destination::File(PathBuf::from(path)),
        };

        Ok(ServeConfig {
            listen,
            ca_cert,
            ca_key,
            token,
            accepted_cas,
            server_sans,
            cert_validity,
            serving_cert_validity,
            workers,
            max_queue,
            policy,
            throttle,
            audit,
            dev: self.dev.then_some(DevPlan {
                dir: dev_dir,
                make_ca,
                make_token,
            }),
        })
    }
}

/// A boolean environment variable: 1/true/yes or 0/false/no (or unset).
fn env_flag(env: &dyn Fn(&str) -> Option<String>, var: &str) -> Result<bool, String> {
    match env(var).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("0") | Some("false") | Some("no") => Ok(false),
        Some("1") | Some("true") | Some("yes") => Ok(true),
        Some(other) => Err(format!("{var}: {other:?} is not true or false")),
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
