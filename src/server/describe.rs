//! The configuration in words, once: the startup log and `check` print the
//! same descriptions of reload, FIPS mode, the audit trail and the policy.

use log::info;

use super::config::{format_duration, ServeConfig};
use super::Started;
use crate::pki::{fips, serving};
use crate::signer::audit::Destination;
use crate::signer::pool::Pool;
use crate::signer::snapshot::Snapshot;

pub(crate) fn reload(cfg: &ServeConfig) -> String {
    if cfg.reload_interval.is_zero() {
        "on SIGHUP only".to_string()
    } else {
        format!(
            "on SIGHUP and file changes (checked every {})",
            format_duration(cfg.reload_interval)
        )
    }
}

pub(crate) fn fips_mode() -> String {
    let f = fips::state();
    if f.enabled {
        format!(
            "on via {} (provider {}; fips=yes for TLS and signing)",
            f.source, f.provider
        )
    } else {
        format!("off (provider {})", f.provider)
    }
}

pub(crate) fn audit(d: &Destination) -> String {
    match d {
        Destination::Off => "off".to_string(),
        Destination::Stderr => "stderr".to_string(),
        Destination::File(p) => p.display().to_string(),
    }
}

pub(crate) fn log_startup(
    cfg: &ServeConfig,
    snapshot: &Snapshot,
    started: &Started,
    pool: &Pool,
    open_files: u64,
) {
    let ca = &snapshot.ca;
    let src = &cfg.sources;
    info!("listening on {} (gRPC over TLS, ALPN h2)", started.addr);
    if let Some(addr) = started.health_addr {
        info!("health listening on {addr} (plaintext gRPC, health service only)");
    }
    if let Some(addr) = started.metrics_addr {
        info!("metrics listening on http://{addr}/metrics");
    }
    info!(
        "machine CA: subject=\"{}\" key={} notAfter={} bundle={} cert(s); files {} and {}, \
         chosen by {}",
        ca.subject(),
        ca.key_type(),
        ca.cert().not_after(),
        ca.bundle().len(),
        src.ca_cert.display(),
        src.ca_key.display(),
        cfg.ca_origin
    );
    match (&snapshot.external_tls, &src.external_tls) {
        (Some(tls), Some((cert, key))) => info!(
            "serving certificate: files {} and {}, chosen by {}; serial={} (replaced when the \
             files change)",
            cert.display(),
            key.display(),
            cfg.serving_origin,
            tls.serial_hex
        ),
        _ => {
            let sans: Vec<String> = serving::serving_sans(&cfg.server_sans)
                .iter()
                .map(ToString::to_string)
                .collect();
            info!(
                "serving certificate: {}; SANs=[{}] validity={}",
                cfg.serving_origin,
                sans.join(","),
                format_duration(cfg.serving_cert_validity),
            );
        }
    }
    info!(
        "issued cert validity={}; workers={} queue={}",
        format_duration(snapshot.cert_validity),
        pool.threads(),
        pool.max_pending(),
    );
    info!(
        "policy: {}; tokens={}",
        snapshot.policy.describe(),
        snapshot.tokens.len()
    );
    info!("reload {}; open files limit {open_files}", reload(cfg));
    info!("FIPS mode: {}", fips_mode());
}
