//! What one Certificate call decides, without gRPC: the token first, then
//! the CSR and the operator's policy, then the signature. Each refusal says
//! which rule refused it and why, in one line the caller sees.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::auth::Presented;
use super::policy::{Denial, Policy};
use super::snapshot::Snapshot;
use crate::pki::ca::MachineCa;
use crate::pki::cert::{CertError, Signed};
use crate::pki::csr::{Csr, CsrError, Unverified};
use crate::pki::keys::CsrKeyError;

/// One Certificate call as it travels to the pool.
pub struct Call {
    pub started: Instant,
    /// `10.0.0.5:41234`, for logs.
    pub peer: String,
    pub peer_ip: Option<IpAddr>,
    pub token: Presented,
    pub csr: Vec<u8>,
}

/// The status a refusal carries (the service maps it to gRPC's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    ResourceExhausted,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
}

impl Code {
    /// The name used in logs, audit records and metric labels (gRPC's).
    pub fn name(self) -> &'static str {
        match self {
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Internal => "INTERNAL",
        }
    }
}

/// Which rule refused a call, for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Auth,
    Throttled,
    Busy,
    /// The caller's deadline passed while the call waited for a signing
    /// thread.
    Expired,
    Csr,
    Policy(&'static str),
    Ca,
    Internal,
}

/// A refused call: its status, the rule, the one-line reason the caller
/// sees, and what the CSR asked for when it got that far (audit record).
pub struct Refusal {
    pub code: Code,
    pub kind: Kind,
    pub reason: String,
    pub asked: Option<Box<Csr>>,
}

impl Refusal {
    pub fn new(code: Code, kind: Kind, reason: String) -> Refusal {
        Refusal {
            code,
            kind,
            reason,
            asked: None,
        }
    }
}

/// A granted call: the certificate and which token authorised it (its
/// 1-based position).
pub(crate) struct Granted {
    pub issued: Issued,
    pub token: usize,
}

/// What was issued for a CSR: what it certifies, the certificate (and its
/// PEM, the response's `crt`).
pub struct Issued {
    pub csr: Csr,
    pub signed: Signed,
    pub pem: Vec<u8>,
}

/// Authenticate, then issue. The token is checked before the CSR is read.
pub(crate) fn decide(snapshot: &Snapshot, call: &Call) -> Result<Granted, Refusal> {
    let token = snapshot
        .tokens
        .check(&call.token)
        .map_err(|e| Refusal::new(Code::Unauthenticated, Kind::Auth, e.reason().to_string()))?;
    let issued = issue(
        &snapshot.ca,
        &snapshot.policy,
        &call.csr,
        call.peer_ip,
        snapshot.cert_validity,
        crate::unix_now(),
    )?;
    Ok(Granted { issued, token })
}

/// A CSR's way to a certificate, rule by rule: its size, its encoding and
/// key, the key type before the CSR's signature costs a verification, the
/// names (and the caller's address, `peer`) before anything is signed.
pub fn issue(
    ca: &MachineCa,
    policy: &Policy,
    csr_pem: &[u8],
    peer: Option<IpAddr>,
    validity: Duration,
    now: i64,
) -> Result<Issued, Refusal> {
    policy.check_csr_size(csr_pem.len()).map_err(denied)?;
    let unverified = Unverified::read(csr_pem).map_err(|e| csr_refusal(policy, e))?;
    policy.check_key(unverified.key_type()).map_err(denied)?;
    let csr = unverified.verify().map_err(|e| csr_refusal(policy, e))?;
    if let Err(d) = policy.check_sans(&csr.sans, peer) {
        return Err(Refusal {
            asked: Some(Box::new(csr)),
            ..denied(d)
        });
    }
    let signed = ca.sign_csr(&csr, validity, now).and_then(|signed| {
        let pem = signed.cert.to_pem().map_err(|e| {
            CertError::Crypto(crate::pki::CryptoError::new("encoding the certificate", &e))
        })?;
        Ok((signed, pem))
    });
    match signed {
        Ok((signed, pem)) => Ok(Issued { csr, signed, pem }),
        Err(e) => Err(Refusal {
            asked: Some(Box::new(csr)),
            ..cert_refusal(e)
        }),
    }
}

/// INVALID_ARGUMENT for requests no signer should accept, PERMISSION_DENIED
/// for requests this operator has chosen not to allow.
fn denied(d: Denial) -> Refusal {
    let code = if d.forbidden {
        Code::PermissionDenied
    } else {
        Code::InvalidArgument
    };
    Refusal::new(code, Kind::Policy(d.kind), d.reason)
}

fn csr_refusal(policy: &Policy, e: CsrError) -> Refusal {
    match e {
        CsrError::Invalid(reason) => Refusal::new(Code::InvalidArgument, Kind::Csr, reason),
        CsrError::Key(CsrKeyError::Malformed(why)) => Refusal::new(
            Code::InvalidArgument,
            Kind::Csr,
            format!("CSR public key is refused: {why}"),
        ),
        // Named as the key-type rule names every other refused type.
        CsrError::Key(CsrKeyError::Unsupported(what)) => denied(policy.refuse_key(&what)),
        CsrError::Crypto(e) => internal(e.to_string()),
    }
}

fn cert_refusal(e: CertError) -> Refusal {
    match e {
        CertError::IssuerExpired => Refusal::new(
            Code::FailedPrecondition,
            Kind::Ca,
            "the machine CA has expired; the signer's operator must rotate it".to_string(),
        ),
        CertError::Crypto(e) => internal(e.to_string()),
    }
}

fn internal(detail: String) -> Refusal {
    Refusal::new(
        Code::Internal,
        Kind::Internal,
        format!("signing failed: {detail}"),
    )
}
