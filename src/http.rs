//! The observability HTTP endpoint (hyper 1, HTTP/1.1 only): `GET /metrics`,
//! `/healthz`, `/readyz`.
//!
//! It sits beside the FTP data flow, never in it: it reads [`Metrics`] and
//! [`Health`] and changes nothing. Bind it to a management address; it has no
//! authentication (like every Prometheus exporter) and serves nothing secret —
//! labels are listener/backend names and closed enums only.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use tracing::{debug, error};

use crate::health::Health;
use crate::metrics::Metrics;

/// Prometheus text format 0.0.4 (the default answer).
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// OpenMetrics text, served when the scraper's `Accept` asks for it.
const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Scrapers and probes are few; at this many connections the oldest is closed
/// to make room for the new one (a pile of idle keep-alives must not lock out
/// the liveness probe, or Kubernetes restarts a healthy gateway).
pub const MAX_CONNECTIONS: usize = 64;
/// A client that has not sent its request headers by then is disconnected.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves until `shutdown` turns true, then closes every connection.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    // Running connections, oldest first (finished ones are skipped lazily).
    let mut order: VecDeque<AbortHandle> = VecDeque::new();
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, peer)) => {
                    if conns.len() >= MAX_CONNECTIONS {
                        while let Some(oldest) = order.pop_front() {
                            if !oldest.is_finished() {
                                debug!(%peer, "metrics endpoint full; closing its oldest connection");
                                oldest.abort();
                                break;
                            }
                        }
                    }
                    if order.len() > 2 * MAX_CONNECTIONS {
                        order.retain(|h| !h.is_finished());
                    }
                    let metrics = metrics.clone();
                    let health = health.clone();
                    let handle = conns.spawn(async move {
                        let service = service_fn(move |req| {
                            let response = respond(&req, &metrics, &health);
                            async move { Ok::<_, Infallible>(response) }
                        });
                        let result = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                        if let Err(e) = result {
                            debug!(%peer, error = %e, "metrics connection ended with an error");
                        }
                    });
                    order.push_back(handle);
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    error!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    conns.abort_all();
    while conns.join_next().await.is_some() {}
}

/// The whole routing table; pure apart from reading the shared state.
fn respond(req: &Request<Incoming>, metrics: &Metrics, health: &Health) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => {
            let openmetrics = req
                .headers()
                .get_all(ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.contains("application/openmetrics-text"));
            let (body, content_type) = if openmetrics {
                (metrics.encode_openmetrics(), OPENMETRICS_FORMAT)
            } else {
                (metrics.encode(), TEXT_FORMAT)
            };
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        _ => {
            let status = if health.is_ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            text(status, health.report())
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.into())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
