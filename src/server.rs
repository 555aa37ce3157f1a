//! gRPC server wiring: environment, TLS credentials that renew themselves,
//! listening, and an orderly shutdown.

use std::error::Error;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use grpcio::{
    CertificateRequestType, ChannelBuilder, EnvBuilder, ServerBuilder, ServerCredentials,
    ServerCredentialsBuilder, ServerCredentialsFetcher,
};
use log::{info, warn};

use crate::config::{format_duration, ServeConfig};
use crate::ops::audit::Audit;
use crate::ops::signals::{Signal, Signals};
use crate::pki::serving::{self, ServingCert};
use crate::pki::San;
use crate::policy::Policy;
use crate::pool::Pool;
use crate::proto::security_grpc::create_security_service;
use crate::service::Signer;
use crate::snapshot::{Current, Snapshot};
use crate::throttle::Throttle;

/// Requests are < 2 KiB; anything near this is not a CSR.
pub const MAX_MESSAGE_BYTES: i32 = 64 * 1024;

/// How long calls in flight may take to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What `run` reports once it accepts connections.
pub struct Started {
    pub addr: SocketAddr,
}

/// Limits that keep idle or slow connections from piling up. Workers open one
/// connection per request and use one stream on it.
const MAX_STREAMS_PER_CONNECTION: i32 = 16;
const MAX_CONNECTION_IDLE: Duration = Duration::from_secs(60);
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);
const MAX_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(30);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads everything, listens, calls `on_ready`, serves until SIGTERM/SIGINT,
/// then lets calls in flight finish.
pub fn run(cfg: &ServeConfig, on_ready: impl FnOnce(&Started)) -> Result<(), String> {
    let current = Arc::new(Current::new(Snapshot::load(cfg)?));
    let sans = serving::serving_sans(&cfg.server_sans);
    let credentials =
        ServingCredentials::new(Arc::clone(&current), sans, cfg.serving_cert_validity)?;
    let audit = Arc::new(Audit::open(cfg.audit.clone())?);
    let open_files = crate::ops::limits::raise_open_files_limit();
    let mut signals = Signals::install()?;

    // One completion queue: its thread only accepts and decodes calls, the
    // signing pool does the work.
    let env = Arc::new(EnvBuilder::new().cq_count(1).name_prefix("grpc-cq").build());
    let pool = Pool::new(cfg.workers, cfg.max_queue)?;
    let throttle = Arc::new(Throttle::new(cfg.throttle));
    let signer = Signer::new(
        pool.clone(),
        Arc::clone(&current),
        throttle,
        Arc::clone(&audit),
    );
    let mut server = server_builder(env)
        .register_service(create_security_service(signer))
        .build()
        .map_err(|e| format!("cannot create the gRPC server: {e}"))?;
    let creds = ServerCredentials::with_fetcher(
        Box::new(credentials),
        CertificateRequestType::DontRequestClientCertificate,
    );
    check_listen(cfg.listen)?;
    let port = server
        .add_listening_port(cfg.listen.to_string(), creds)
        .map_err(|_| listen_error(cfg.listen, "gRPC core could not bind it"))?;
    server.start();

    let started = Started {
        addr: SocketAddr::new(cfg.listen.ip(), port),
    };
    log_startup(cfg, &current.get(), &started, &pool);
    info!("open files limit: {open_files}");
    on_ready(&started);

    let name = loop {
        match signals.wait() {
            Signal::Hangup => audit.reopen(),
            Signal::Shutdown(name) => break name,
        }
    };
    info!("received {name}: refusing new calls, finishing calls in flight");
    shutdown(server);
    info!("stopped");
    Ok(())
}

fn server_builder(env: Arc<grpcio::Environment>) -> ServerBuilder {
    let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
    let arg = |name: &str| std::ffi::CString::new(name).expect("no NUL in arg names");
    let args = ChannelBuilder::new(Arc::clone(&env))
        .max_receive_message_len(MAX_MESSAGE_BYTES)
        .max_concurrent_stream(MAX_STREAMS_PER_CONNECTION)
        // gRPC core sets SO_REUSEPORT by default: a second instance would then
        // share the port silently instead of failing to start.
        .reuse_port(false)
        .raw_cfg_int(arg("grpc.max_connection_idle_ms"), ms(MAX_CONNECTION_IDLE))
        .raw_cfg_int(arg("grpc.max_connection_age_ms"), ms(MAX_CONNECTION_AGE))
        .raw_cfg_int(
            arg("grpc.max_connection_age_grace_ms"),
            ms(MAX_CONNECTION_AGE_GRACE),
        )
        .raw_cfg_int(
            arg("grpc.server_handshake_timeout_ms"),
            ms(HANDSHAKE_TIMEOUT),
        )
        .build_args();
    ServerBuilder::new(env).channel_args(args)
}

/// Stops accepting calls and waits for those in flight; after the grace
/// period the stragglers are cancelled.
fn shutdown(mut server: grpcio::Server) {
    let (done_tx, done_rx) = mpsc::channel();
    let pending = server.shutdown();
    thread::spawn(move || {
        let _ = futures_executor::block_on(pending);
        let _ = done_tx.send(());
    });
    if done_rx.recv_timeout(SHUTDOWN_GRACE).is_err() {
        warn!("calls still open after {SHUTDOWN_GRACE:?}; cancelling them");
        server.cancel_all_calls();
        let _ = done_rx.recv_timeout(SHUTDOWN_GRACE);
    }
}

/// Binding once ourselves first turns gRPC core's multi-line bind failure into
/// the operating system's one-line reason.
fn check_listen(addr: SocketAddr) -> Result<(), String> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| listen_error(addr, &e.to_string()))
}

fn listen_error(addr: SocketAddr, why: &str) -> String {
    format!("cannot listen on {addr}: {why}; choose another address with --listen or PORT")
}

fn log_startup(cfg: &ServeConfig, snapshot: &Snapshot, started: &Started, pool: &Pool) {
    let ca = &snapshot.ca;
    info!("listening on {} (gRPC over TLS, ALPN h2)", started.addr);
    info!(
        "machine CA: subject=\"{}\" key={} notAfter={} bundle={} cert(s)",
        ca.subject(),
        ca.key_type(),
        ca.cert().not_after(),
        ca.bundle_len()
    );
    let sans: Vec<String> = serving::serving_sans(&cfg.server_sans)
        .iter()
        .map(ToString::to_string)
        .collect();
    info!(
        "serving certificate SANs=[{}] validity={} (renewed at half); issued cert validity={}; \
         workers={} queue={}",
        sans.join(","),
        format_duration(cfg.serving_cert_validity),
        format_duration(snapshot.cert_validity),
        pool.threads(),
        pool.max_pending(),
    );
    info!(
        "policy: {}; tokens={}",
        describe_policy(&snapshot.policy),
        snapshot.tokens.len()
    );
}

fn describe_policy(p: &Policy) -> String {
    let list = |v: Option<Vec<String>>| v.map_or("any".to_string(), |v| v.join(","));
    format!(
        "ip_sans={} dns_sans={} peer_ip_must_match={} max_sans={} max_csr_bytes={} key_types={}",
        list(
            p.allowed_ip_sans
                .as_ref()
                .map(|n| n.iter().map(ToString::to_string).collect())
        ),
        list(
            p.allowed_dns_sans
                .as_ref()
                .map(|n| n.iter().map(ToString::to_string).collect())
        ),
        p.peer_ip_must_match,
        p.max_sans,
        p.max_csr_bytes,
        p.key_types
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Hands gRPC core our serving certificate, and a new one once the current one
/// is half way through its life. gRPC core asks before every new handshake, so
/// the common path is a clock read under an uncontended lock.
struct ServingCredentials {
    current: Arc<Current>,
    sans: Vec<San>,
    lifetime: Duration,
    state: Mutex<ServingState>,
}

struct ServingState {
    /// Generated but not yet handed to gRPC core.
    pending: Option<ServingCert>,
    renew_at_unix: i64,
}

impl ServingCredentials {
    fn new(current: Arc<Current>, sans: Vec<San>, lifetime: Duration) -> Result<Self, String> {
        let first = serving::generate(&current.get().ca, &sans, lifetime, crate::unix_now())
            .map_err(|e| format!("cannot create the serving certificate: {e}"))?;
        Ok(ServingCredentials {
            current,
            sans,
            lifetime,
            state: Mutex::new(ServingState {
                renew_at_unix: first.renew_at_unix,
                pending: Some(first),
            }),
        })
    }
}

impl ServerCredentialsFetcher for ServingCredentials {
    fn fetch(&self) -> Result<Option<ServerCredentialsBuilder>, Box<dyn Error>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let now = crate::unix_now();
        if state.pending.is_none() && now >= state.renew_at_unix {
            // Whatever happens, do not retry on every handshake.
            state.renew_at_unix = now + 60;
            let cert = serving::generate(&self.current.get().ca, &self.sans, self.lifetime, now)?;
            info!(
                "serving certificate renewed: serial={} notAfter(unix)={}",
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
