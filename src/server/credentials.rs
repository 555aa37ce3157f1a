//! Hands gRPC core our serving certificate: generated (P-256, signed by the
//! machine CA, replaced half way through its life) or the operator's
//! `--tls-cert`. A new one is made when the snapshot changes (CA rotation,
//! new TLS files). gRPC core asks before every new handshake, so the common
//! path is a clock read and a counter compare under an uncontended lock.

use std::error::Error;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use grpcio::{ServerCredentialsBuilder, ServerCredentialsFetcher};
use log::info;
use prometheus::IntGauge;

use crate::pki::serving::{self, ServingCert};
use crate::pki::San;
use crate::signer::snapshot::{Current, Snapshot};

pub struct ServingCredentials {
    current: Arc<Current>,
    sans: Vec<San>,
    lifetime: Duration,
    not_after: IntGauge,
    state: Mutex<State>,
}

struct State {
    /// Made but not yet handed to gRPC core.
    pending: Option<ServingCert>,
    renew_at_unix: i64,
    generation: u64,
}

impl ServingCredentials {
    /// Makes the first certificate now, so a failure stops startup.
    pub fn new(
        current: Arc<Current>,
        sans: Vec<San>,
        lifetime: Duration,
        not_after: IntGauge,
    ) -> Result<Self, String> {
        let generation = current.generation();
        let creds = ServingCredentials {
            current,
            sans,
            lifetime,
            not_after,
            state: Mutex::new(State {
                pending: None,
                renew_at_unix: 0,
                generation,
            }),
        };
        let first = creds
            .make(&creds.current.get(), crate::unix_now())
            .map_err(|e| format!("cannot create the serving certificate: {e}"))?;
        let mut state = creds.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.renew_at_unix = first.renew_at_unix;
        state.pending = Some(first);
        drop(state);
        Ok(creds)
    }

    fn make(&self, snapshot: &Snapshot, now: i64) -> Result<ServingCert, Box<dyn Error>> {
        let cert = match &snapshot.external_tls {
            Some(external) => external.clone(),
            None => serving::generate(&snapshot.ca, &self.sans, self.lifetime, now)?,
        };
        self.not_after.set(cert.not_after_unix);
        Ok(cert)
    }
}

impl ServerCredentialsFetcher for ServingCredentials {
    fn fetch(&self) -> Result<Option<ServerCredentialsBuilder>, Box<dyn Error>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = crate::unix_now();
        let generation = self.current.generation();
        if state.pending.is_none() && (now >= state.renew_at_unix || generation != state.generation)
        {
            // Whatever happens, do not retry on every handshake.
            state.renew_at_unix = now + 60;
            state.generation = generation;
            let cert = self.make(&self.current.get(), now)?;
            info!(
                "serving certificate replaced: serial={} notAfter(unix)={}",
                cert.serial_hex, cert.not_after_unix
            );
            state.renew_at_unix = cert.renew_at_unix;
            state.pending = Some(cert);
        }
        Ok(state
            .pending
            .take()
            .map(|c| ServerCredentialsBuilder::new().add_cert(c.cert_pem, c.key_pem)))
    }
}
