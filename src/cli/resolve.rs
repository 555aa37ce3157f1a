//! Flags, environment and default file layouts → typed configuration. A
//! flag wins over its variable; an empty variable counts as unset; every
//! error names the flag or variable the operator set. The Go signer's
//! variable names and file layouts are ours too.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::args::ServeArgs;
use super::layout;
use super::lookup::Lookup;
use super::token::{self, TokenFlags};
use super::values;
use crate::pki::San;
use crate::server::config::{format_duration, parse_duration, DevPlan, ServeConfig, DEFAULT_PORT};
use crate::signer::audit::Destination;
use crate::signer::auth::TokenSource;
use crate::signer::policy::{PolicyConfig, DEFAULT_MAX_CSR_BYTES, DEFAULT_MAX_SANS};
use crate::signer::snapshot::Sources;
use crate::signer::throttle::Limits;

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
        let ca = layout::ca_files(&self, &env, &dev_dir)?;
        let (token, make_token) = self.token_source(&env, &dev_dir)?;
        let (external_tls, serving_origin) = layout::serving_files(&self, &env)?;
        let cert_validity = capped_validity(
            env.duration(self.cert_validity, "CERT_VALIDITY", "24h")?,
            env.text(self.max_validity, "MAX_VALIDITY"),
        )?;
        let defaults = Limits::default();
        let policy = PolicyConfig {
            allowed_ip_sans: env.list(self.allowed_ip_sans, "ALLOWED_IP_SANS")?,
            allowed_dns_sans: env.list(self.allowed_dns_sans, "ALLOWED_DNS_SANS")?,
            peer_ip_must_match: env.switch(self.peer_ip_must_match, "PEER_IP_MUST_MATCH")?,
            max_sans: env.number(self.max_sans, "MAX_SANS", DEFAULT_MAX_SANS, 1..=10_000)?,
            max_csr_bytes: env.number(
                self.max_csr_bytes,
                "MAX_CSR_BYTES",
                DEFAULT_MAX_CSR_BYTES,
                256..=(crate::server::MAX_MESSAGE_BYTES as usize),
            )?,
            key_types: env.list(self.allowed_key_types, "ALLOWED_KEY_TYPES")?,
        };
        let sources = Sources {
            ca_cert: ca.cert,
            ca_key: ca.key,
            accepted_cas: accepted_cas(self.accepted_ca, &env),
            token,
            external_tls,
            policy,
            cert_validity,
            fips_allow_ed25519: env.switch(self.fips_allow_ed25519, "FIPS_ALLOW_ED25519")?,
        };
        Ok(ServeConfig {
            listen: resolve_listen(self.listen, self.port, self.dev, &env)?,
            sources,
            ca_origin: ca.origin,
            serving_origin,
            server_sans: server_sans(self.server_ips, self.server_dns_names, &env)?,
            serving_cert_validity: env.duration(
                self.serving_cert_validity,
                "SERVING_CERT_VALIDITY",
                "7d",
            )?,
            workers: env.number(self.workers, "WORKERS", default_workers(), 1..=256)?,
            max_queue: env.number(
                self.max_queue,
                "MAX_QUEUE",
                DEFAULT_MAX_QUEUE,
                1..=1_000_000,
            )?,
            cq_count: env.number(self.cq_count, "CQ_COUNT", 1, 1..=64)?,
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
            dev: self.dev.then_some(DevPlan {
                dir: dev_dir,
                make_ca: ca.make,
                make_token,
            }),
        })
    }

    /// The machine token by the one rule (`cli::token`), then a systemd
    /// credential, then `--dev` material.
    fn token_source(
        &self,
        env: &Lookup<'_>,
        dev_dir: &Path,
    ) -> Result<(TokenSource, bool), String> {
        let flags = TokenFlags {
            value: self.talos_token.clone().map(|v| ("--talos-token", v)),
            file: self.token_file.clone(),
        };
        if let Some(source) = token::resolve(flags, env.env)? {
            return Ok((source, false));
        }
        match layout::credential(env, "token") {
            Some(f) => Ok((TokenSource::File(f), false)),
            None if self.dev => Ok((TokenSource::File(dev_dir.join("token")), true)),
            None => Err("no machine token: set TALOS_TOKEN or --token-file / \
                         TALOS_TOKEN_FILE to machine.token of your Talos machine config"
                .to_string()),
        }
    }
}

/// Deep enough that a reboot storm is queued, not refused: a refused worker
/// backs off for a second or more and pays a second TLS handshake, so the
/// last one is served later than if it had waited (4000 workers at 2000/s on
/// one core: 256 places drained in 12.3-12.6 s, room for all in 9.3-10.0 s).
/// Waiting costs little beside the worker's open connection (peak RSS of that
/// storm 305-319 MB, the Go signer's 280-324 MB), and a call whose caller
/// gave up meanwhile is dropped unsigned when its turn comes. The bound is
/// on calls, not bytes: at worst 4096 messages of the 64 KiB gRPC admits,
/// 256 MiB (16 MiB with the old 256), which docs/operations.md states.
const DEFAULT_MAX_QUEUE: usize = 4096;

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn accepted_cas(flags: Vec<PathBuf>, env: &Lookup<'_>) -> Vec<PathBuf> {
    if !flags.is_empty() {
        return flags;
    }
    env.text(None, "ACCEPTED_CA_PATHS")
        .map(|list| values::list_items(&list).map(PathBuf::from).collect())
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
            values::parse_ip_list("SERVER_IPS", &ips)?
                .into_iter()
                .map(San::Ip),
        );
    }
    if let Some(names) = env.text(names, "SERVER_DNS_NAMES") {
        let names = values::parse_dns_list("SERVER_DNS_NAMES", &names)?;
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
    let max = parse_duration(&text).map_err(|e| format!("MAX_VALIDITY: {e}"))?;
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
    use crate::cli::args::{Cli, Command};
    use argh::FromArgs;
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
        let argv = crate::cli::argv::normalize(&argv)?;
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
        assert_eq!(c.sources.ca_cert, PathBuf::from("/etc/talos-ca/ca.crt"));
        assert_eq!(c.sources.ca_key, PathBuf::from("/etc/talos-ca/ca.key"));
        assert!(
            matches!(c.sources.token, TokenSource::Value(ref t, "TALOS_TOKEN") if t == "abc.def")
        );
        assert_eq!(c.sources.cert_validity, Duration::from_secs(86_400));
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
        assert!(
            matches!(c.sources.token, TokenSource::File(ref p) if p == &PathBuf::from("/run/tok"))
        );
        assert_eq!(c.sources.ca_cert, PathBuf::from("/x/c"));
        assert_eq!(
            c.sources.accepted_cas,
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
        assert_eq!(c.sources.ca_cert, PathBuf::from("/flag/c"));
        assert_eq!(c.sources.cert_validity, Duration::from_secs(14 * 3600));
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
                .sources
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
        assert_eq!(c.sources.ca_cert, PathBuf::from("dev-pki/ca.crt"));

        let c = serve(&["--dev", "--dev-dir", "/d"], &[("TALOS_TOKEN", "real")]).unwrap();
        let plan = c.dev.unwrap();
        assert!(plan.make_ca && !plan.make_token);
        assert_eq!(c.sources.ca_key, PathBuf::from("/d/ca.key"));

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
        assert_eq!(c.sources.ca_cert, PathBuf::from("/m/tls.crt"));
        assert_eq!(c.sources.ca_key, PathBuf::from("/m/tls.key"));
        assert_eq!(
            c.sources.external_tls,
            Some((PathBuf::from("/s/tls.crt"), PathBuf::from("/s/tls.key")))
        );
        assert!(
            matches!(c.sources.token, TokenSource::Value(ref t, "--talos-token") if t == "abc.def")
        );
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
        assert_eq!(c.sources.ca_cert, PathBuf::from("/etc/talos-ca/ca.crt"));
        assert_eq!(c.sources.ca_key, PathBuf::from("/etc/talos-ca/ca.key"));
        assert_eq!(c.sources.external_tls, None);
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
        assert_eq!(c.sources.ca_cert, PathBuf::from("/etc/talos-ca/tls.crt"));
        assert_eq!(c.sources.ca_key, PathBuf::from("/etc/talos-ca/tls.key"));
        assert!(c.ca_origin.contains("cert-manager"), "{}", c.ca_origin);
        assert_eq!(
            c.sources.external_tls,
            Some((
                PathBuf::from("/etc/talos-server-crt/tls.crt"),
                PathBuf::from("/etc/talos-server-crt/tls.key")
            ))
        );
        // Half a serving pair is no serving certificate; nothing at all
        // names the first layout's files (their load error says where).
        let c = serve_with_files(&[], &tok, &["/etc/talos-server-crt/tls.crt"]).unwrap();
        assert_eq!(c.sources.external_tls, None);
        assert_eq!(c.sources.ca_cert, PathBuf::from("/etc/talos-ca/ca.crt"));
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
        assert_eq!(c.sources.external_tls, None);
    }
}
