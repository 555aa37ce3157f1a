//! trustd's SecurityService: take what the call carries (token, peer, CSR
//! bytes) without parsing it, hand it to the signing pool, and complete the
//! call from the pool thread. Only two cheap refusals happen on gRPC core's
//! thread: a wrong token from a throttled address and a full queue, so
//! neither costs a queue place. The only module of `signer` that knows gRPC.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use grpcio::{Metadata, RpcContext, RpcStatus, RpcStatusCode, UnarySink};
use log::warn;

use super::audit::Audit;
use super::auth::Presented;
use super::call::{self, Call, Code, Granted, Kind, Refusal};
use super::metrics::Metrics;
use super::pool::Pool;
use super::report::report;
use super::sink;
use super::snapshot::Current;
use super::throttle::Throttle;
use crate::proto::security::{CertificateRequest, CertificateResponse};
use crate::proto::security_grpc::SecurityService;

#[derive(Clone)]
pub(crate) struct Signer {
    pub pool: Pool,
    pub current: Arc<Current>,
    pub throttle: Arc<Throttle>,
    pub audit: Arc<Audit>,
    pub metrics: Arc<Metrics>,
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
                let refusal = Refusal::new(Code::ResourceExhausted, Kind::Busy, reason);
                return self.refuse(&call, sink, refusal);
            }
        };
        // The call keeps the snapshot it started with, whatever a reload does.
        let snapshot = self.current.get();
        let deadline = ctx.deadline();
        let this = self.clone();
        slot.spawn(move || {
            // A worker whose attempt timed out (Talos: 10 s) has already
            // hung up and will retry on a new connection: signing for it now
            // would only delay the callers still waiting. This is what lets
            // the queue be deep enough that a reboot storm is queued rather
            // than refused (a refused worker backs off for a second or more).
            let outcome = if deadline.exceeded() {
                Err(expired())
            } else {
                call::decide(&snapshot, &call)
            };
            if matches!(&outcome, Err(r) if r.kind == Kind::Auth) {
                this.note_auth_failure(&call);
            }
            report(&call, &outcome, &this.metrics, &this.audit);
            sink::finish(match outcome {
                Ok(Granted { issued, .. }) => sink.success(CertificateResponse {
                    ca: snapshot.ca.bundle_pem().to_vec(),
                    crt: issued.pem,
                    ..Default::default()
                }),
                Err(r) => sink.fail(status(&r)),
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
            Code::ResourceExhausted,
            Kind::Throttled,
            reason,
        ))
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
        let status = status(&r);
        report(call, &Err(r), &self.metrics, &self.audit);
        sink::finish(sink.fail(status));
    }
}

fn expired() -> Refusal {
    let reason = "deadline passed while queued; nothing signed".to_string();
    Refusal::new(Code::DeadlineExceeded, Kind::Expired, reason)
}

fn status(r: &Refusal) -> RpcStatus {
    let code = match r.code {
        Code::InvalidArgument => RpcStatusCode::INVALID_ARGUMENT,
        Code::PermissionDenied => RpcStatusCode::PERMISSION_DENIED,
        Code::Unauthenticated => RpcStatusCode::UNAUTHENTICATED,
        Code::ResourceExhausted => RpcStatusCode::RESOURCE_EXHAUSTED,
        Code::DeadlineExceeded => RpcStatusCode::DEADLINE_EXCEEDED,
        Code::FailedPrecondition => RpcStatusCode::FAILED_PRECONDITION,
        Code::Internal => RpcStatusCode::INTERNAL,
    };
    RpcStatus::with_message(code, r.reason.clone())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn peers_as_grpc_core_names_them() {
        let ip = |p: &str| -> Option<IpAddr> {
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
