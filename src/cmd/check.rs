//! `check`: load the configuration exactly as `serve` would, report what it
//! found and what looks risky, and exit without serving.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use std::process::ExitCode;

use serde_json::{Map, Value};

use super::{env_var, out};
use crate::cli::args::ServeArgs;

use crate::pki::{self, serving, San};
use crate::server::config::{format_duration, ServeConfig};
use crate::server::describe;
use crate::signer::auth::TokenSource;
use crate::signer::snapshot::Snapshot;

/// A CA this close to its end deserves a warning.
const CA_WARN_DAYS: i64 = 30;

/// What `check` found: labelled lines, then warnings.
pub struct Report {
    pub facts: Vec<(&'static str, String)>,
    pub lists: Vec<(&'static str, Vec<String>)>,
    pub warnings: Vec<String>,
}

/// `check`: exit 0 with a report when the configuration loads, 1 otherwise
/// (with `--json`, the failure as JSON on stdout too).
pub fn run(args: ServeArgs) -> Result<ExitCode, String> {
    let json = args.json;
    let loaded = args.resolve(&env_var).and_then(|cfg| {
        crate::pki::fips::setup(cfg.fips, cfg.sources.fips_allow_ed25519)?;
        report(&cfg)
    });
    let (text, code) = match loaded {
        Ok(report) if json => (report.json(), ExitCode::SUCCESS),
        Ok(report) => (report.text(), ExitCode::SUCCESS),
        Err(e) if json => (json_error(&e), ExitCode::FAILURE),
        Err(e) => return Err(e),
    };
    out(format_args!("{text}"))?;
    Ok(code)
}

/// Loads everything as `serve` would and describes it.
pub fn report(cfg: &ServeConfig) -> Result<Report, String> {
    let snap = Snapshot::load(&cfg.sources)?;
    let now = crate::unix_now();
    let ca = &snap.ca;
    let days_left = (ca.not_after_unix() - now) / 86_400;
    let mut facts = vec![
        ("listen", cfg.listen.to_string()),
        ("ca_subject", ca.subject()),
        ("ca_key_type", ca.key_type().to_string()),
        ("ca_not_after", crate::rfc3339(ca.not_after_unix())),
        ("ca_days_left", days_left.to_string()),
        ("tokens", snap.tokens.len().to_string()),
        ("cert_validity", format_duration(snap.cert_validity)),
        ("workers", cfg.workers.to_string()),
        ("max_queue", cfg.max_queue.to_string()),
        ("reload", describe::reload(cfg)),
        (
            "health_listen",
            cfg.health_listen
                .map_or("off".to_string(), |a| a.to_string()),
        ),
        (
            "metrics_listen",
            cfg.metrics_listen
                .map_or("off".to_string(), |a| a.to_string()),
        ),
        ("audit", describe::audit(&cfg.audit)),
        ("policy", snap.policy.describe()),
        ("fips", describe::fips_mode()),
    ];
    let serving_sans: Vec<San> = match &snap.external_tls {
        Some(ext) => {
            facts.push(("serving_cert", "external (--tls-cert)".to_string()));
            let leaf = pki::pem::parse_certificates(&ext.cert_pem)?.remove(0);
            pki::cert_sans(&leaf)
        }
        None => {
            facts.push((
                "serving_cert",
                format!(
                    "generated P-256, {}",
                    format_duration(cfg.serving_cert_validity)
                ),
            ));
            serving::serving_sans(&cfg.server_sans)
        }
    };
    let bundle = ca
        .bundle()
        .iter()
        .map(|c| pki::name_to_string(c.subject_name()))
        .collect();
    let lists = vec![
        ("bundle", bundle),
        (
            "serving_sans",
            serving_sans.iter().map(ToString::to_string).collect(),
        ),
    ];
    Ok(Report {
        facts,
        lists,
        warnings: warnings(cfg, &snap, days_left),
    })
}

fn warnings(cfg: &ServeConfig, snap: &Snapshot, days_left: i64) -> Vec<String> {
    let mut w = Vec::new();
    if days_left < CA_WARN_DAYS {
        w.push(format!(
            "the machine CA expires in {days_left} day(s); plan its rotation (--accepted-ca keeps old and new valid together)"
        ));
    }
    let src = &cfg.sources;
    let mut private = vec![&src.ca_key];
    if let TokenSource::File(p) = &src.token {
        private.push(p);
    }
    if let Some((_, key)) = &src.external_tls {
        private.push(key);
    }
    for path in private {
        if let Some(mode) = loose_mode(path) {
            w.push(format!(
                "{} is readable by group or others (mode {mode:04o}); chmod 600 it",
                path.display()
            ));
        }
    }
    for pos in snap.tokens.unusual() {
        w.push(format!(
            "token#{pos} is not in Talos's format (6 + 16 lowercase letters and digits, like \
             abcdef.0123456789abcdef); workers send machine.token exactly"
        ));
    }
    if cfg.server_sans.is_empty() && snap.external_tls.is_none() {
        w.push(
            "no SERVER_IPS / SERVER_DNS_NAMES: the serving certificate names only loopback, so \
             workers dialing the VIP or a hostname will reject it"
                .to_string(),
        );
    }
    w
}

fn loose_mode(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

impl Report {
    pub fn text(&self) -> String {
        let mut out = String::from("configuration ok\n");
        for (k, v) in &self.facts {
            out.push_str(&format!("  {k:<15} {v}\n"));
        }
        for (k, items) in &self.lists {
            out.push_str(&format!("  {k:<15} {}\n", items.join("; ")));
        }
        if self.warnings.is_empty() {
            out.push_str("no warnings\n");
        } else {
            for w in &self.warnings {
                out.push_str(&format!("warning: {w}\n"));
            }
        }
        out
    }

    pub fn json(&self) -> String {
        let mut j = Map::new();
        j.insert("ok".into(), Value::Bool(true));
        for (k, v) in &self.facts {
            let value = v
                .parse::<i64>()
                .map_or_else(|_| Value::from(v.as_str()), Value::from);
            j.insert((*k).into(), value);
        }
        for (k, items) in &self.lists {
            j.insert((*k).into(), Value::from(items.clone()));
        }
        j.insert("warnings".into(), Value::from(self.warnings.clone()));
        format!("{}\n", Value::Object(j))
    }
}

/// `{"ok":false,"error":"…"}` for `check --json` when loading failed.
fn json_error(e: &str) -> String {
    format!("{}\n", serde_json::json!({ "ok": false, "error": e }))
}
