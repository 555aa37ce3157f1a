//! gRPC server wiring: environment, listeners (TLS; plaintext health;
//! metrics), the signal/reload loop, and an orderly shutdown. Around it, the
//! process's life: signals, reload, health, sd_notify and journald, limits
//! and scheduling.

pub mod config;
pub(crate) mod credentials;
pub(crate) mod describe;
pub(crate) mod health;
pub(crate) mod journal;
pub mod limits;
pub(crate) mod metrics;
pub(crate) mod notify;
pub(crate) mod reload;
pub(crate) mod sched;
pub(crate) mod signals;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use grpcio::{
    CertificateRequestType, ChannelBuilder, EnvBuilder, ServerBuilder, ServerCredentials,
};
use log::{info, warn};

use self::config::ServeConfig;
use self::credentials::ServingCredentials;
use self::health::{HealthService, HealthState};
use self::reload::Reloader;
use self::signals::Signal;
use crate::pki::{fips, serving};
use crate::proto::health_grpc::create_health;
use crate::proto::security_grpc::create_security_service;
use crate::signer::audit::Audit;
use crate::signer::metrics::Metrics;
use crate::signer::pool::Pool;
use crate::signer::service::Signer;
use crate::signer::snapshot::{Current, Snapshot};
use crate::signer::throttle::Throttle;

/// Requests are < 2 KiB; anything near this is not a CSR.
pub const MAX_MESSAGE_BYTES: i32 = 64 * 1024;

/// How long calls in flight may take to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What `run` reports once it accepts connections.
pub struct Started {
    pub addr: SocketAddr,
    pub health_addr: Option<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
}

/// How often health watchers re-check the CA when nothing else happens.
const HEALTH_TICK: Duration = Duration::from_secs(30);

/// Limits that keep idle or slow connections from piling up. Workers open one
/// connection per request and use one stream on it.
const MAX_STREAMS_PER_CONNECTION: i32 = 16;
const MAX_CONNECTION_IDLE: Duration = Duration::from_secs(60);
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);
const MAX_CONNECTION_AGE_GRACE: Duration = Duration::from_secs(30);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const TSI_FRAME_BYTES: i32 = 4096;
const MAX_METADATA_BYTES: i32 = 8192;
const READ_CHUNK_BYTES: i32 = 4096;
/// Calls gRPC core may hand over at once. grpcio pre-allocates 1024 (~300
/// KB of heap at idle, a fifth of what an idle instance owns); a slot is
/// re-armed as soon as its call's message has arrived and gone to the pool,
/// so it is held for less than a network round, and a call that finds none
/// free waits in gRPC core until one is (scripts/BENCHMARKS.md).
const REQUEST_SLOTS: usize = 64;
/// The plaintext health port serves probes only.
const HEALTH_REQUEST_SLOTS: usize = 4;

/// Why serving could not begin.
pub enum Failure {
    /// The operator's files or settings: fixing them is the only cure, so
    /// the process exits with EX_CONFIG and systemd does not restart it.
    Config(String),
    /// The machine (port taken, threads, gRPC core): a restart may help.
    Runtime(String),
}

/// Loads everything, listens, calls `on_ready`, serves (reloading on SIGHUP
/// and file changes) until SIGTERM/SIGINT, then lets calls in flight finish.
pub fn run(cfg: &ServeConfig, on_ready: impl FnOnce(&Started)) -> Result<(), Failure> {
    let current = Arc::new(Current::new(
        Snapshot::load(&cfg.sources).map_err(Failure::Config)?,
    ));
    let metrics = Metrics::new();
    metrics.ca_not_after.set(current.get().ca.not_after_unix());
    metrics.fips_mode.set(i64::from(fips::enabled()));
    let credentials = ServingCredentials::new(
        Arc::clone(&current),
        serving::serving_sans(&cfg.server_sans),
        cfg.serving_cert_validity,
        metrics.serving_not_after.clone(),
    )
    .map_err(Failure::Config)?;
    let audit = Arc::new(Audit::open(cfg.audit.clone()).map_err(Failure::Config)?);
    serve(cfg, current, metrics, credentials, audit, on_ready).map_err(Failure::Runtime)
}

/// `run` once the configuration has loaded: everything that can still fail
/// is the machine's doing.
fn serve(
    cfg: &ServeConfig,
    current: Arc<Current>,
    metrics: Arc<Metrics>,
    credentials: ServingCredentials,
    audit: Arc<Audit>,
    on_ready: impl FnOnce(&Started),
) -> Result<(), String> {
    let health = HealthState::new(Arc::clone(&current));
    let signals = signals::listen()?;
    let open_files = limits::raise_open_files_limit();

    // One completion queue is enough (measured, scripts/BENCHMARKS.md): its
    // thread only accepts and decodes calls, the signing pool does the work.
    let env = Arc::new(
        EnvBuilder::new()
            .cq_count(cfg.cq_count)
            .name_prefix("grpc-cq")
            .after_start(sched::batch_this_thread)
            .build(),
    );
    let pool = Pool::new(cfg.workers, cfg.max_queue, sched::short_slice_this_thread)?;
    let signer = Signer {
        pool: pool.clone(),
        current: Arc::clone(&current),
        throttle: Arc::new(Throttle::new(cfg.throttle)),
        audit: Arc::clone(&audit),
        metrics: Arc::clone(&metrics),
    };
    let mut server = server_builder(Arc::clone(&env), REQUEST_SLOTS)
        .register_service(create_security_service(signer))
        .register_service(create_health(HealthService::new(Arc::clone(&health))))
        .build()
        .map_err(|e| format!("cannot create the gRPC server: {e}"))?;
    let creds = ServerCredentials::with_fetcher(
        Box::new(credentials),
        CertificateRequestType::DontRequestClientCertificate,
    );
    let port = bind(&mut server, cfg.listen, creds, "--listen or PORT")?;
    let plain_health = cfg
        .health_listen
        .map(|addr| health_server(env, addr, Arc::clone(&health)))
        .transpose()?;
    let metrics_addr = cfg
        .metrics_listen
        .map(|addr| metrics::serve(addr, Arc::clone(&metrics), pool.clone()))
        .transpose()?;
    server.start();

    let started = Started {
        addr: SocketAddr::new(cfg.listen.ip(), port),
        health_addr: plain_health.as_ref().map(|(_, a)| *a),
        metrics_addr,
    };
    describe::log_startup(cfg, &current.get(), &started, &pool, open_files);
    notify::ready();
    on_ready(&started);

    let mut reloader = Reloader::new(cfg, current, metrics);
    let name = serve_until_shutdown(cfg, &signals, &mut reloader, &audit, &health);
    info!("received {name}: refusing new calls, finishing calls in flight");
    health.begin_shutdown(Duration::from_secs(1));
    notify::stopping();
    shutdown(server);
    if let Some((plain, _)) = plain_health {
        shutdown(plain);
    }
    info!("stopped");
    Ok(())
}

/// Waits for signals; reloads on SIGHUP and, every `--reload-interval`, when
/// an input file changed. Returns the name of the shutdown signal.
fn serve_until_shutdown(
    cfg: &ServeConfig,
    signals: &signals::Signals,
    reloader: &mut Reloader<'_>,
    audit: &Audit,
    health: &HealthState,
) -> &'static str {
    let tick = if cfg.reload_interval.is_zero() {
        HEALTH_TICK
    } else {
        cfg.reload_interval.min(HEALTH_TICK)
    };
    let reload = |reloader: &mut Reloader<'_>, why: &str| {
        notify::reloading();
        reloader.reload(why);
        notify::ready();
        health.poke();
    };
    loop {
        match signals.recv_timeout(tick) {
            Ok(Signal::Hangup) => {
                reload(reloader, "SIGHUP");
                audit.reopen();
            }
            Ok(Signal::Shutdown(name)) => return name,
            Err(RecvTimeoutError::Timeout) => {
                if !cfg.reload_interval.is_zero() && reloader.changed() {
                    reload(reloader, "input files changed");
                }
                // The CA may have expired since the last look.
                health.poke();
            }
            Err(RecvTimeoutError::Disconnected) => return "the end of signal handling",
        }
    }
}

/// The health service alone, in plaintext, for Kubernetes `grpc:` probes.
fn health_server(
    env: Arc<grpcio::Environment>,
    addr: SocketAddr,
    health: Arc<HealthState>,
) -> Result<(grpcio::Server, SocketAddr), String> {
    let mut server = server_builder(env, HEALTH_REQUEST_SLOTS)
        .register_service(create_health(HealthService::new(health)))
        .build()
        .map_err(|e| format!("cannot create the health server: {e}"))?;
    let port = bind(
        &mut server,
        addr,
        ServerCredentials::insecure(),
        "--health-listen",
    )?;
    server.start();
    Ok((server, SocketAddr::new(addr.ip(), port)))
}

/// Binds `addr`, first once ourselves: that turns gRPC core's multi-line bind
/// failure into the operating system's one-line reason.
fn bind(
    server: &mut grpcio::Server,
    addr: SocketAddr,
    creds: ServerCredentials,
    setting: &str,
) -> Result<u16, String> {
    let error = |why: &str| {
        format!("cannot listen on {addr}: {why}; choose another address with {setting}")
    };
    std::net::TcpListener::bind(addr).map_err(|e| error(&e.to_string()))?;
    server
        .add_listening_port(addr.to_string(), creds)
        .map_err(|_| error("gRPC core could not bind it"))
}

fn server_builder(env: Arc<grpcio::Environment>, slots: usize) -> ServerBuilder {
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
        // Per-connection buffers sized for < 2 KiB requests instead of gRPC's
        // 16 KiB TLS frames and 8 KiB reads (idle connections cost less).
        .raw_cfg_int(arg("grpc.tsi.max_frame_size"), TSI_FRAME_BYTES)
        // One hard limit for request metadata (a worker sends ~0.5 KiB): gRPC
        // core would otherwise refuse 8-16 KiB at random.
        .raw_cfg_int(arg("grpc.max_metadata_size"), MAX_METADATA_BYTES)
        .raw_cfg_int(arg("grpc.absolute_max_metadata_size"), MAX_METADATA_BYTES)
        .tcp_read_chunk_size(READ_CHUNK_BYTES)
        .tcp_min_read_chunk_size(READ_CHUNK_BYTES)
        .tcp_max_read_chunk_size(4 * READ_CHUNK_BYTES)
        .build_args();
    ServerBuilder::new(env)
        .channel_args(args)
        .requests_slot_per_cq(slots)
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
