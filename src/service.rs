//! trustd's SecurityService: take what the call carries (token, peer, CSR bytes)
//! without parsing it, hand it to the signing pool, and complete the call from
//! the pool thread. Nothing else happens on gRPC core's thread.

use std::sync::Arc;
use std::time::Instant;

use grpcio::{Metadata, RpcContext, RpcStatus, RpcStatusCode, UnarySink};
use log::{info, warn};

use crate::auth::Presented;
use crate::pki::issue::{self, IssueError, Issued};
use crate::pool::Pool;
use crate::proto::security::{CertificateRequest, CertificateResponse};
use crate::proto::security_grpc::SecurityService;
use crate::snapshot::{Current, Snapshot};

#[derive(Clone)]
pub struct Signer {
    pool: Pool,
    current: Arc<Current>,
}

impl Signer {
    pub fn new(pool: Pool, current: Arc<Current>) -> Signer {
        Signer { pool, current }
    }
}

/// One Certificate call as it travels to the pool.
struct Call {
    started: Instant,
    peer: String,
    token: Presented,
    csr: Vec<u8>,
}

/// A refused call: the status code and the one-line reason the caller sees.
struct Refusal {
    code: RpcStatusCode,
    reason: String,
}

impl SecurityService for Signer {
    fn certificate(
        &mut self,
        ctx: RpcContext,
        req: CertificateRequest,
        sink: UnarySink<CertificateResponse>,
    ) {
        let call = Call {
            started: Instant::now(),
            peer: peer_address(&ctx.peer()),
            token: token_metadata(ctx.request_headers()),
            csr: req.csr,
        };
        let snapshot = self.current.get();
        self.pool.spawn(move || {
            let outcome = sign(&snapshot, &call);
            log_outcome(&call, &outcome);
            crate::sink::finish(match outcome {
                Ok(issued) => sink.success(CertificateResponse {
                    ca: snapshot.ca.bundle_pem().to_vec(),
                    crt: issued.pem,
                    ..Default::default()
                }),
                Err(r) => sink.fail(RpcStatus::with_message(r.code, r.reason)),
            });
        });
    }
}

/// Authenticate, then issue: the token is checked before the CSR is even parsed.
fn sign(snapshot: &Snapshot, call: &Call) -> Result<Issued, Refusal> {
    snapshot.tokens.check(&call.token).map_err(|e| Refusal {
        code: RpcStatusCode::UNAUTHENTICATED,
        reason: e.reason().to_string(),
    })?;
    issue::issue(
        &snapshot.ca,
        &call.csr,
        snapshot.cert_validity,
        crate::unix_now(),
    )
    .map_err(|e| match e {
        IssueError::InvalidCsr(reason) => Refusal {
            code: RpcStatusCode::INVALID_ARGUMENT,
            reason,
        },
        IssueError::CaExpired => Refusal {
            code: RpcStatusCode::FAILED_PRECONDITION,
            reason: "the machine CA has expired; the signer's operator must rotate it".to_string(),
        },
        IssueError::Internal(detail) => Refusal {
            code: RpcStatusCode::INTERNAL,
            reason: format!("signing failed: {detail}"),
        },
    })
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

/// `ipv4:10.0.0.5:41234` / `ipv6:[::1]:5000` → the address part.
fn peer_address(peer: &str) -> String {
    peer.strip_prefix("ipv4:")
        .or_else(|| peer.strip_prefix("ipv6:"))
        .unwrap_or(peer)
        .to_string()
}

/// One line per call; never the token, never key material.
fn log_outcome(call: &Call, outcome: &Result<Issued, Refusal>) {
    let took = call.started.elapsed();
    match outcome {
        Ok(i) => {
            let sans: Vec<String> = i.sans.iter().map(ToString::to_string).collect();
            let mut notes = String::new();
            if i.stripped_orgs > 0 {
                notes.push_str(&format!(" removed_o={}", i.stripped_orgs));
            }
            if i.dropped > 0 {
                notes.push_str(&format!(" dropped={}", i.dropped));
            }
            info!(
                "certificate peer={} code=OK cn=\"{}\" sans=[{}] serial={}{notes} took={took:.1?}",
                call.peer,
                i.common_name,
                sans.join(","),
                i.serial_hex,
            );
        }
        Err(r) => warn!(
            "certificate peer={} code={} reason={:?} took={took:.1?}",
            call.peer,
            code_name(r.code),
            r.reason,
        ),
    }
}

/// `16-UNAUTHENTICATED` → `UNAUTHENTICATED`.
fn code_name(code: RpcStatusCode) -> String {
    let full = code.to_string();
    full.split_once('-')
        .map_or(full.clone(), |(_, name)| name.to_string())
}
