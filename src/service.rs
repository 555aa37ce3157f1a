//! trustd's SecurityService: take what the call carries (token, peer, CSR bytes)
//! without parsing it, hand it to the signing pool, and complete the call from
//! the pool thread. Only two cheap refusals happen on gRPC core's thread: a
//! wrong token from a throttled address and a full queue, so neither costs a
//! queue place.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grpcio::{Metadata, RpcContext, RpcStatus, RpcStatusCode, UnarySink};
use log::{info, warn};

use crate::auth::Presented;
use crate::ops::audit::{self, Audit};
use crate::ops::metrics::Metrics;
use crate::pki::issue::{self, Csr, IssueError, Issued};
use crate::pool::Pool;
use crate::proto::security::{CertificateRequest, CertificateResponse};
use crate::proto::security_grpc::SecurityService;
use crate::sink;
use crate::snapshot::{Current, Snapshot};
use crate::throttle::Throttle;

#[derive(Clone)]
pub struct Signer {
    pool: Pool,
    current: Arc<Current>,
    throttle: Arc<Throttle>,
    audit: Arc<Audit>,
    metrics: Arc<Metrics>,
}

impl Signer {
    pub fn new(
        pool: Pool,
        current: Arc<Current>,
        throttle: Arc<Throttle>,
        audit: Arc<Audit>,
        metrics: Arc<Metrics>,
    ) -> Signer {
        Signer {
            pool,
            current,
            throttle,
            audit,
            metrics,
        }
    }
}

/// One Certificate call as it travels to the pool.
struct Call {
    started: Instant,
    peer: String,
    peer_ip: Option<IpAddr>,
    token: Presented,
    csr: Vec<u8>,
}

/// A refused call: the status, its name for logs, and the one-line reason the
/// caller sees.
struct Refusal {
    code: RpcStatusCode,
    /// Which rule refused it, for metrics.
    kind: Kind,
    reason: String,
    /// What the CSR asked for, when it got that far (for the audit record).
    asked: Option<Box<Csr>>,
}

#[derive(Clone, Copy)]
enum Kind {
    Auth,
    Throttled,
    Busy,
    Csr,
    Policy(&'static str),
    Ca,
    Internal,
}

impl Refusal {
    fn new(code: RpcStatusCode, kind: Kind, reason: String) -> Refusal {
        Refusal {
            code,
            kind,
            reason,
            asked: None,
        }
    }
}

/// What the pool sends back: the certificate, what it certifies, and which
/// token authorised it.
struct Granted {
    csr: Csr,
    issued: Issued,
    token: usize,
}

impl SecurityService for Signer {
    fn certificate(
        &mut self,
        ctx: RpcContext,
        req: CertificateRequest,
        sink: UnarySink<CertificateResponse>,
    ) {
        let peer = peer_address(&ctx.peer());
        let call = Call {
            started: Instant::now(),
            peer_ip: peer
                .parse::<SocketAddr>()
                .ok()
                .map(|a| a.ip().to_canonical()),
            peer,
            token: token_metadata(ctx.request_headers()),
            csr: req.csr,
        };
        if let Some(refusal) = self.throttled(&call) {
            return self.refuse(&call, sink, refusal);
        }
        let slot = match self.pool.reserve() {
            Ok(slot) => slot,
            Err(full) => {
                let reason = format!("signer busy: {} calls queued; retry shortly", full.pending);
                return self.refuse(
                    &call,
                    sink,
                    Refusal::new(RpcStatusCode::RESOURCE_EXHAUSTED, Kind::Busy, reason),
                );
            }
        };
        let snapshot = self.current.get();
        let this = self.clone();
        slot.spawn(move || {
            let outcome = this.sign(&snapshot, &call);
            this.report(&call, &outcome);
            sink::finish(match outcome {
                Ok(granted) => sink.success(CertificateResponse {
                    ca: snapshot.ca.bundle_pem().to_vec(),
                    crt: granted.issued.pem,
                    ..Default::default()
                }),
                Err(r) => sink.fail(RpcStatus::with_message(r.code, r.reason)),
            });
        });
    }
}

impl Signer {
    /// A throttled address is refused here, before it costs a queue place,
    /// unless the call presents an accepted token: behind NAT (a
    /// LoadBalancer with `externalTrafficPolicy: Cluster`) one address
    /// carries a whole fleet, and a worker with the right token must never
    /// pay for a neighbour with a wrong one. Checking a token is a digest and
    /// a compare, cheap enough for gRPC core's thread; the CSR is not read.
    /// Guessing gains nothing from the exemption: a Talos token has ~113 bits.
    fn throttled(&self, call: &Call) -> Option<Refusal> {
        let wait = self.throttle.blocked(call.peer_ip?, call.started)?;
        if self.current.get().tokens.check(&call.token).is_ok() {
            return None;
        }
        let reason = format!(
            "too many failed token attempts from this address; retry in {}s",
            wait.as_secs().max(1)
        );
        Some(Refusal::new(
            RpcStatusCode::RESOURCE_EXHAUSTED,
            Kind::Throttled,
            reason,
        ))
    }

    /// Authenticate, then issue: the token is checked before the CSR is parsed.
    fn sign(&self, snapshot: &Snapshot, call: &Call) -> Result<Granted, Refusal> {
        let token = match snapshot.tokens.check(&call.token) {
            Ok(position) => position,
            Err(e) => {
                self.note_auth_failure(call);
                return Err(Refusal::new(
                    RpcStatusCode::UNAUTHENTICATED,
                    Kind::Auth,
                    e.reason().to_string(),
                ));
            }
        };
        let csr = issue::parse(&snapshot.policy, &call.csr).map_err(refusal)?;
        let issued = issue::issue(
            &snapshot.ca,
            &snapshot.policy,
            &csr,
            call.peer_ip,
            snapshot.cert_validity,
            crate::unix_now(),
        );
        match issued {
            Ok(issued) => Ok(Granted { csr, issued, token }),
            Err(e) => Err(Refusal {
                asked: Some(Box::new(csr)),
                ..refusal(e)
            }),
        }
    }

    /// Every failure counts, a missing token included: otherwise probing
    /// would be free.
    fn note_auth_failure(&self, call: &Call) {
        let Some(ip) = call.peer_ip else { return };
        if self.throttle.failed(ip, call.started) {
            let l = self.throttle.limits();
            warn!(
                "throttling {ip}: {} failed token attempts within {:?}; refusing it for {:?}",
                l.limit, l.window, l.cooldown
            );
        }
    }

    fn refuse(&self, call: &Call, sink: UnarySink<CertificateResponse>, r: Refusal) {
        let outcome = Err(r);
        self.report(call, &outcome);
        if let Err(r) = outcome {
            sink::finish(sink.fail(RpcStatus::with_message(r.code, r.reason)));
        }
    }

    /// One log line, one audit record and the metrics for each call; never the
    /// token, never keys.
    fn report(&self, call: &Call, outcome: &Result<Granted, Refusal>) {
        let took = call.started.elapsed();
        log_outcome(call, outcome, took);
        self.count(outcome, took);
        if self.audit.enabled() {
            self.audit.record(&audit_record(call, outcome));
        }
    }
}

impl Signer {
    fn count(&self, outcome: &Result<Granted, Refusal>, took: Duration) {
        let m = &self.metrics;
        m.duration.observe(took.as_secs_f64());
        let refusal = match outcome {
            Ok(_) => {
                m.requests.with_label_values(&["OK"]).inc();
                m.issued.inc();
                return;
            }
            Err(r) => r,
        };
        m.requests
            .with_label_values(&[code_name(refusal.code)])
            .inc();
        match refusal.kind {
            Kind::Auth => m.auth_failures.inc(),
            Kind::Throttled => m.throttled.inc(),
            Kind::Policy(reason) => m.policy_denials.with_label_values(&[reason]).inc(),
            Kind::Busy | Kind::Csr | Kind::Ca | Kind::Internal => {}
        }
    }
}

/// The status names used in logs, audit records and metric labels.
fn code_name(code: RpcStatusCode) -> &'static str {
    [
        (RpcStatusCode::OK, "OK"),
        (RpcStatusCode::INVALID_ARGUMENT, "INVALID_ARGUMENT"),
        (RpcStatusCode::PERMISSION_DENIED, "PERMISSION_DENIED"),
        (RpcStatusCode::UNAUTHENTICATED, "UNAUTHENTICATED"),
        (RpcStatusCode::RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED"),
        (RpcStatusCode::FAILED_PRECONDITION, "FAILED_PRECONDITION"),
        (RpcStatusCode::INTERNAL, "INTERNAL"),
    ]
    .iter()
    .find(|(c, _)| *c == code)
    .map_or("UNKNOWN", |(_, n)| n)
}

fn refusal(e: IssueError) -> Refusal {
    match e {
        IssueError::InvalidCsr(reason) => {
            Refusal::new(RpcStatusCode::INVALID_ARGUMENT, Kind::Csr, reason)
        }
        IssueError::Policy(d) => {
            let code = if d.forbidden {
                RpcStatusCode::PERMISSION_DENIED
            } else {
                RpcStatusCode::INVALID_ARGUMENT
            };
            Refusal::new(code, Kind::Policy(d.kind), d.reason)
        }
        IssueError::CaExpired => Refusal::new(
            RpcStatusCode::FAILED_PRECONDITION,
            Kind::Ca,
            "the machine CA has expired; the signer's operator must rotate it".to_string(),
        ),
        IssueError::Internal(detail) => Refusal::new(
            RpcStatusCode::INTERNAL,
            Kind::Internal,
            format!("signing failed: {detail}"),
        ),
    }
}

fn token_metadata(headers: &Metadata) -> Presented {
    let mut found = headers
        .iter()
        .filter(|(k, _)| *k == "token")
        .map(|(_, v)| v);
    match (found.next(), found.next()) {
        (None, _) => Presented::Missing,
        (Some(v), None) => Presented::One(v.to_vec()),
        (Some(_), Some(_)) => Presented::Several,
    }
}

/// gRPC core names peers as URIs: `ipv4:10.0.0.5:41234`,
/// `ipv6:%5B::1%5D:5000`. This gives `10.0.0.5:41234` / `[::1]:5000`.
fn peer_address(peer: &str) -> String {
    let addr = peer
        .strip_prefix("ipv4:")
        .or_else(|| peer.strip_prefix("ipv6:"))
        .unwrap_or(peer);
    addr.replace("%5B", "[")
        .replace("%5D", "]")
        .replace("%25", "%")
}

fn log_outcome(call: &Call, outcome: &Result<Granted, Refusal>, took: Duration) {
    match outcome {
        Ok(Granted { csr, issued, token }) => {
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
                issued.serial_hex,
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
                code_name(r.code),
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

fn audit_record<'a>(call: &'a Call, outcome: &'a Result<Granted, Refusal>) -> audit::Record<'a> {
    let mut r = audit::Record {
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
    match outcome {
        Ok(g) => {
            r.outcome = "issued";
            r.serial = Some(&g.issued.serial_hex);
            r.not_after_unix = Some(g.issued.not_after_unix);
            r.token = Some(g.token);
            asked(&mut r, &g.csr);
        }
        Err(refusal) => {
            r.code = code_name(refusal.code);
            r.reason = Some(&refusal.reason);
            if let Some(csr) = &refusal.asked {
                asked(&mut r, csr);
            }
        }
    }
    r
}

fn asked<'a>(r: &mut audit::Record<'a>, csr: &'a Csr) {
    r.cn = Some(&csr.common_name);
    r.sans = &csr.sans;
    r.key_type = Some(csr.key_type.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_as_grpc_core_names_them() {
        let ip = |p: &str| {
            peer_address(p)
                .parse::<SocketAddr>()
                .ok()
                .map(|a| a.ip().to_canonical())
        };
        assert_eq!(peer_address("ipv4:10.0.0.5:41234"), "10.0.0.5:41234");
        assert_eq!(peer_address("ipv6:%5B::1%5D:5000"), "[::1]:5000");
        assert_eq!(ip("ipv6:%5B::1%5D:5000"), Some("::1".parse().unwrap()));
        assert_eq!(
            ip("ipv6:%5B::ffff:10.0.0.5%5D:5000"),
            Some("10.0.0.5".parse().unwrap())
        );
        assert_eq!(ip("unix:/run/x.sock"), None);
    }
}
