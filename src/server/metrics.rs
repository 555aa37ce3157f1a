//! `GET /metrics` on `--metrics-listen`: the signer's Prometheus metrics,
//! with the queue depth read at scrape time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use crate::signer::metrics::Metrics;
use crate::signer::pool::Pool;

/// Serves `GET /metrics` on one thread; anything else is 404.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>, pool: Pool) -> Result<SocketAddr, String> {
    let server = tiny_http::Server::http(addr).map_err(|e| {
        format!("cannot listen for metrics on {addr}: {e}; choose another --metrics-listen")
    })?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| "metrics listener has no IP address".to_string())?;
    thread::Builder::new()
        .name("metrics".to_string())
        .spawn(move || {
            for request in server.incoming_requests() {
                let response =
                    if request.url() == "/metrics" && *request.method() == tiny_http::Method::Get {
                        metrics.queue_depth.set(pool.pending() as i64);
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"text/plain; version=0.0.4; charset=utf-8"[..],
                        )
                        .expect("static header");
                        tiny_http::Response::from_data(metrics.render()).with_header(header)
                    } else {
                        tiny_http::Response::from_data(b"not found; try /metrics\n".to_vec())
                            .with_status_code(404)
                    };
                if let Err(e) = request.respond(response) {
                    log::debug!("metrics response: {e}");
                }
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(bound)
}
