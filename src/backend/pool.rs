//! Backends at run time, as one listener's sessions see them: the configured
//! backends by name, the listener's default, one round-robin cursor per
//! route, the in-use count of each backend, and connecting with fallback.
//!
//! The order in which candidates are tried is decided by the pure
//! [`policy::balance::order`]; this module only gathers the facts it needs
//! (cursor, sessions in use, health) and does the connecting. A new balancing
//! algorithm goes into `policy::balance`; a new run-time fact about backends
//! goes here and into [`policy::balance::Candidate`] (the operator's
//! disable/drain switch from [`Shared`] is one).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::config;
use crate::policy::{self, balance};
use crate::shared::Shared;

use super::{Backend, BackendSession};

/// One listener's view of the backends (rebuilt with its policy on reload;
/// the backends themselves are shared by all listeners of a generation).
pub struct Pool {
    /// The listener's default backend (`backend:`).
    default: Arc<Backend>,
    /// Every configured backend by name (routes, `user@backend`).
    by_name: Arc<HashMap<String, Arc<Backend>>>,
    /// One round-robin cursor per route of the listener, by route index.
    cursors: Vec<AtomicUsize>,
}

/// A session's use of a backend, counted while it lasts (least connections).
pub struct InUse {
    backend: Arc<Backend>,
}

impl InUse {
    fn new(backend: Arc<Backend>) -> InUse {
        backend.active.fetch_add(1, Ordering::SeqCst);
        InUse { backend }
    }

    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.backend.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Pool {
    /// `routes`: how many routes the listener has (one cursor each).
    pub fn new(
        default: Arc<Backend>,
        by_name: Arc<HashMap<String, Arc<Backend>>>,
        routes: usize,
    ) -> Pool {
        Pool {
            default,
            by_name,
            cursors: (0..routes).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    pub fn default_backend(&self) -> &Arc<Backend> {
        &self.default
    }

    /// Backends to try for a route choice, in order: the balancing policy's
    /// pick first, the others as fallback, unhealthy ones last; disabled and
    /// draining ones not at all.
    /// `route_index`: the position of `choice.route` among the listener's routes.
    pub fn candidates(
        &self,
        choice: &policy::RouteChoice<'_>,
        route_index: Option<usize>,
        shared: &Shared,
    ) -> Vec<Arc<Backend>> {
        let list: Vec<Arc<Backend>> = choice
            .backends
            .iter()
            .filter_map(|n| self.by_name.get(n).cloned())
            .collect();
        let facts: Vec<balance::Candidate> = list
            .iter()
            .map(|b| balance::Candidate {
                in_use: b.active.load(Ordering::Relaxed),
                healthy: shared.health.backend_healthy(&b.cfg.name),
                accepting: shared.backend_accepting(&b.cfg.name),
            })
            .collect();
        // Only a route with more than one candidate turns its cursor, so that
        // single-backend routes do not disturb the counting.
        let cursor = match (choice.balance, list.len() > 1) {
            (config::Balance::RoundRobin, true) => route_index
                .and_then(|i| self.cursors.get(i))
                .map(|c| c.fetch_add(1, Ordering::Relaxed))
                .unwrap_or(0),
            _ => 0,
        };
        balance::order(choice.balance, &facts, cursor)
            .into_iter()
            .filter_map(|i| list.get(i).cloned())
            .collect()
    }

    /// Connect to the first candidate that answers. `client` is (real client,
    /// gateway address it reached) for a backend's PROXY header. The error
    /// names the last failure, for the log (never for the client).
    pub async fn connect(
        candidates: Vec<Arc<Backend>>,
        limit: Duration,
        client: (SocketAddr, SocketAddr),
    ) -> Result<(BackendSession, InUse), String> {
        let mut last = String::from("no backend configured or accepting sessions");
        for backend in candidates {
            match super::connect(&backend, limit, Some(client)).await {
                Ok((b, _greeting)) => {
                    info!(
                        backend = %backend.cfg.name,
                        peer = %b.peer,
                        tls = b.tls_version,
                        ms = b.connect_latency.as_millis() as u64,
                        "backend connected"
                    );
                    return Ok((b, InUse::new(backend)));
                }
                Err(e) => {
                    warn!(backend = %backend.cfg.name, error = %e, "backend unavailable");
                    last = format!("Backend {} unavailable: {e}", backend.cfg.name);
                }
            }
        }
        Err(last)
    }
}
