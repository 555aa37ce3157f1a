//! `check`: load the configuration exactly as `serve` would, report what it
//! found and what looks risky, and exit without serving.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::config::{format_duration, ServeConfig, TokenSource};
use crate::json::Json;
use crate::ops::audit::{rfc3339, Destination};
use crate::pki::{self, serving, San};
use crate::snapshot::Snapshot;

/// A CA this close to its end deserves a warning.
const CA_WARN_DAYS: i64 = 30;

/// What `check` found: labelled lines, then warnings.
pub struct Report {
    pub facts: Vec<(&'static str, String)>,
    pub lists: Vec<(&'static str, Vec<String>)>,
    pub warnings: Vec<String>,
}

pub fn run(cfg: &ServeConfig) -> Result<Report, String> {
    let snap = Snapshot::load(cfg)?;
    let now = crate::unix_now();
    let ca = &snap.ca;
    let days_left = (ca.not_after_unix() - now) / 86_400;
    let mut facts = vec![
        ("listen", cfg.listen.to_string()),
        ("ca_subject", ca.subject()),
        ("ca_key_type", ca.key_type().to_string()),
        ("ca_not_after", rfc3339(ca.not_after_unix())),
        ("ca_days_left", days_left.to_string()),
        ("tokens", snap.tokens.len().to_string()),
        ("cert_validity", format_duration(snap.cert_validity)),
        ("workers", cfg.workers.to_string()),
        ("max_queue", cfg.max_queue.to_string()),
        ("reload", reload_text(cfg)),
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
        ("audit", audit_text(&cfg.audit)),
        ("policy", crate::server::describe_policy(&snap.policy)),
        ("fips", fips_text()),
    ];
    let serving_sans: Vec<San> = match &snap.external_tls {
        Some(ext) => {
            facts.push(("serving_cert", "external (--tls-cert)".to_string()));
            let leaf = pki::keys::parse_certificates(&ext.cert_pem)?.remove(0);
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
    let mut private = vec![&cfg.ca_key];
    if let TokenSource::File(p) = &cfg.token {
        private.push(p);
    }
    if let Some((_, key)) = &cfg.external_tls {
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

fn fips_text() -> String {
    let f = crate::fips::state();
    if f.enabled {
        format!("on via {} (provider {})", f.source, f.provider)
    } else {
        format!("off (provider {})", f.provider)
    }
}

fn loose_mode(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

fn reload_text(cfg: &ServeConfig) -> String {
    if cfg.reload_interval.is_zero() {
        "on SIGHUP only".to_string()
    } else {
        format!(
            "on SIGHUP and every {}",
            format_duration(cfg.reload_interval)
        )
    }
}

fn audit_text(d: &Destination) -> String {
    match d {
        Destination::Off => "off".to_string(),
        Destination::Stderr => "stderr".to_string(),
        Destination::File(p) => p.display().to_string(),
    }
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
        let mut j = Json::new();
        j.bool("ok", true);
        for (k, v) in &self.facts {
            match v.parse::<i64>() {
                Ok(n) => j.num(k, n),
                Err(_) => j.str(k, v),
            }
        }
        for (k, items) in &self.lists {
            j.list(k, items);
        }
        j.list("warnings", &self.warnings);
        j.finish()
    }
}

/// `{"ok":false,"error":"…"}` for `check --json` when loading failed.
pub fn json_error(e: &str) -> String {
    let mut j = Json::new();
    j.bool("ok", false);
    j.str("error", e);
    j.finish()
}
