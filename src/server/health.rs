//! grpc.health.v1: SERVING while the machine CA can sign, NOT_SERVING once it
//! expired or shutdown began. Served on the TLS port and, for Kubernetes
//! `grpc:` probes (which cannot do TLS), optionally on a plaintext port that
//! carries nothing else.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_util::{FutureExt, SinkExt};
use grpcio::{RpcContext, RpcStatus, RpcStatusCode, ServerStreamingSink, UnarySink, WriteFlags};

use crate::proto::health::health_check_response::ServingStatus;
use crate::proto::health::{HealthCheckRequest, HealthCheckResponse};
use crate::proto::health_grpc::Health;
use crate::signer::snapshot::Current;

/// The service names we answer for; anything else is unknown.
const SERVICES: [&str; 2] = ["", "securityapi.SecurityService"];

/// Open Watch streams are futures on gRPC core's thread; cap them so
/// abandoned ones cannot pile up.
const MAX_WATCHERS: usize = 64;

pub struct HealthState {
    current: Arc<Current>,
    inner: Mutex<Inner>,
}

struct Inner {
    stopping: bool,
    /// Moves whenever the status may have changed.
    version: u64,
    wakers: Vec<Waker>,
    watchers: usize,
}

impl HealthState {
    pub fn new(current: Arc<Current>) -> Arc<HealthState> {
        Arc::new(HealthState {
            current,
            inner: Mutex::new(Inner {
                stopping: false,
                version: 0,
                wakers: Vec::new(),
                watchers: 0,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes watchers so they re-read the status (after a reload, on a tick
    /// that may have crossed the CA's notAfter).
    pub fn poke(&self) {
        self.advance(false);
    }

    /// Moves the version (and sets `stopping` if asked) under one lock, so
    /// a watcher never sees a new version without the matching flag.
    fn advance(&self, stop: bool) {
        let wakers = {
            let mut inner = self.lock();
            inner.stopping |= stop;
            inner.version += 1;
            std::mem::take(&mut inner.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    /// NOT_SERVING from now on; Watch streams send it and end. Waits (up to
    /// `within`) until they have, so stopping the servers cannot cut one short.
    pub fn begin_shutdown(&self, within: std::time::Duration) {
        self.advance(true);
        let deadline = std::time::Instant::now() + within;
        while self.lock().watchers > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Version, status and whether to end, read together: a watcher that
    /// checked `stopping` after reading the status could see shutdown begin
    /// in between and close without ever sending NOT_SERVING.
    fn snapshot(&self, known: bool) -> Snapshot {
        let (version, stopping) = {
            let inner = self.lock();
            (inner.version, inner.stopping)
        };
        let status = if !known {
            ServingStatus::SERVICE_UNKNOWN
        } else if !stopping && self.current.get().ca.not_after_unix() > crate::unix_now() {
            ServingStatus::SERVING
        } else {
            ServingStatus::NOT_SERVING
        };
        Snapshot {
            version,
            status,
            stopping,
        }
    }

    fn status(&self) -> ServingStatus {
        self.snapshot(true).status
    }
}

struct Snapshot {
    version: u64,
    status: ServingStatus,
    stopping: bool,
}

/// Resolves once the state's version moves past `seen`.
struct Changed {
    state: Arc<HealthState>,
    seen: u64,
}

impl Future for Changed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.state.lock();
        if inner.version != self.seen {
            return Poll::Ready(());
        }
        inner.wakers.push(cx.waker().clone());
        Poll::Pending
    }
}

#[derive(Clone)]
pub struct HealthService {
    state: Arc<HealthState>,
}

impl HealthService {
    pub fn new(state: Arc<HealthState>) -> HealthService {
        HealthService { state }
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status.into(),
        ..Default::default()
    }
}

impl Health for HealthService {
    fn check(
        &mut self,
        ctx: RpcContext,
        req: HealthCheckRequest,
        sink: UnarySink<HealthCheckResponse>,
    ) {
        let reply = if SERVICES.contains(&req.service.as_str()) {
            sink.success(response(self.state.status()))
        } else {
            sink.fail(RpcStatus::with_message(
                RpcStatusCode::NOT_FOUND,
                format!("unknown service {:?}", req.service),
            ))
        };
        ctx.spawn(reply.map(|_| ()));
    }

    fn watch(
        &mut self,
        ctx: RpcContext,
        req: HealthCheckRequest,
        mut sink: ServerStreamingSink<HealthCheckResponse>,
    ) {
        let state = Arc::clone(&self.state);
        let known = SERVICES.contains(&req.service.as_str());
        {
            let mut inner = state.lock();
            if inner.watchers >= MAX_WATCHERS {
                drop(inner);
                let status = RpcStatus::with_message(
                    RpcStatusCode::RESOURCE_EXHAUSTED,
                    "too many health watchers".to_string(),
                );
                ctx.spawn(sink.fail(status).map(|_| ()));
                return;
            }
            inner.watchers += 1;
        }
        ctx.spawn(async move {
            let mut last = None;
            loop {
                let now = state.snapshot(known);
                if last != Some(now.status) {
                    if sink
                        .send((response(now.status), WriteFlags::default()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    last = Some(now.status);
                }
                if now.stopping {
                    let _ = sink.close().await;
                    break;
                }
                Changed {
                    state: Arc::clone(&state),
                    seen: now.version,
                }
                .await;
            }
            state.lock().watchers -= 1;
        });
    }
}
