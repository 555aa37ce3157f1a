//! What each call leaves behind: one log line, the metrics, one audit record.
//! Never the token (only its position), never a key.

use std::time::Duration;

use log::{info, warn};

use super::audit::{Audit, Record};
use super::call::{Call, Granted, Kind, Refusal};
use super::metrics::Metrics;
use crate::pki::csr::Csr;

pub(crate) fn report(
    call: &Call,
    outcome: &Result<Granted, Refusal>,
    metrics: &Metrics,
    audit: &Audit,
) {
    let took = call.started.elapsed();
    log_line(call, outcome, took);
    count(metrics, outcome, took);
    if audit.enabled() {
        audit.record(&record(call, outcome));
    }
}

fn log_line(call: &Call, outcome: &Result<Granted, Refusal>, took: Duration) {
    match outcome {
        Ok(Granted { issued, token }) => {
            let (csr, signed) = (&issued.csr, &issued.signed);
            let mut notes = String::new();
            if csr.stripped_orgs > 0 {
                notes.push_str(&format!(" removed_o={}", csr.stripped_orgs));
            }
            if csr.dropped > 0 {
                notes.push_str(&format!(" dropped={}", csr.dropped));
            }
            info!(
                "certificate peer={} code=OK {} serial={} token=token#{token}{notes} took={took:.1?}",
                call.peer,
                describe(csr),
                signed.serial_hex,
            );
        }
        Err(r) => {
            let asked = r
                .asked
                .as_ref()
                .map(|c| format!(" {}", describe(c)))
                .unwrap_or_default();
            warn!(
                "certificate peer={} code={} reason={:?}{asked} took={took:.1?}",
                call.peer,
                r.code.name(),
                r.reason,
            );
        }
    }
}

/// `cn="…" sans=[…]` for log lines.
fn describe(csr: &Csr) -> String {
    let sans: Vec<String> = csr.sans.iter().map(ToString::to_string).collect();
    format!("cn=\"{}\" sans=[{}]", csr.common_name, sans.join(","))
}

fn count(m: &Metrics, outcome: &Result<Granted, Refusal>, took: Duration) {
    m.duration.observe(took.as_secs_f64());
    let refusal = match outcome {
        Ok(_) => {
            m.requests.with_label_values(&["OK"]).inc();
            m.issued.inc();
            return;
        }
        Err(r) => r,
    };
    m.requests.with_label_values(&[refusal.code.name()]).inc();
    match refusal.kind {
        Kind::Auth => m.auth_failures.inc(),
        Kind::Throttled => m.throttled.inc(),
        Kind::Policy(rule) => m.policy_denials.with_label_values(&[rule]).inc(),
        Kind::Busy | Kind::Expired | Kind::Csr | Kind::Ca | Kind::Internal => {}
    }
}

fn record<'a>(call: &'a Call, outcome: &'a Result<Granted, Refusal>) -> Record<'a> {
    let mut r = Record {
        time_unix: crate::unix_now(),
        peer: &call.peer,
        outcome: "refused",
        code: "OK",
        reason: None,
        cn: None,
        sans: &[],
        key_type: None,
        serial: None,
        not_after_unix: None,
        token: None,
    };
    let asked = match outcome {
        Ok(g) => {
            r.outcome = "issued";
            r.serial = Some(&g.issued.signed.serial_hex);
            r.not_after_unix = Some(g.issued.signed.not_after_unix);
            r.token = Some(g.token);
            Some(&g.issued.csr)
        }
        Err(refusal) => {
            r.code = refusal.code.name();
            r.reason = Some(&refusal.reason);
            refusal.asked.as_deref()
        }
    };
    if let Some(csr) = asked {
        r.cn = Some(&csr.common_name);
        r.sans = &csr.sans;
        r.key_type = Some(csr.key.key_type.to_string());
    }
    r
}
