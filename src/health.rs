//! Health state for `/healthz` and `/readyz`, and the active backend checks.
//!
//! [`Health`] is shared state: the gateway sets "listeners bound" once every
//! listener is bound, and each backend's checker task flips that backend's flag.
//! A backend without `health_check` counts as healthy. Ready means: listeners
//! bound and at least one backend healthy.
//!
//! A check speaks FTP as a session would (`backend::connect`: TCP, `220`, and for
//! TLS backends `AUTH TLS` + handshake with certificate verification, `PBSZ`,
//! `PROT`), then sends `QUIT` and drops the connection. It never logs in.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::backend::{self, Backend};
use crate::config::HealthCheck;
use crate::metrics::Metrics;

/// Readiness state shared by the gateway, the checkers and the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Health {
    /// Set by `Gateway::start` once every listener is bound.
    listeners_bound: AtomicBool,
    /// One entry per configured backend, in config order (replaced on reload).
    backends: RwLock<Vec<BackendHealth>>,
    /// DMZ edge tunnels, listed with their connectors in the report.
    tunnels: RwLock<Vec<Arc<crate::tunnel::edge::Edge>>>,
}

#[derive(Debug)]
struct BackendHealth {
    name: String,
    /// `false` only while a configured check fails (and before its first success).
    healthy: AtomicBool,
}

impl Health {
    /// `backends`: each name with whether it has an active check. Checked
    /// backends start unhealthy until their first check passes; unchecked ones
    /// are healthy for good.
    pub fn new<'a>(backends: impl IntoIterator<Item = (&'a str, bool)>) -> Arc<Health> {
        let health = Health::default();
        health.set_backends(backends);
        Arc::new(health)
    }

    /// The backend set after a reload: a backend that stays keeps its state
    /// (while it keeps a check), a new checked one is unhealthy until its first
    /// check passes, an unchecked one is healthy, a removed one is forgotten.
    pub fn set_backends<'a>(&self, backends: impl IntoIterator<Item = (&'a str, bool)>) {
        let mut list = self.backends.write().unwrap_or_else(|p| p.into_inner());
        let next = backends
            .into_iter()
            .map(|(name, checked)| {
                let was = list
                    .iter()
                    .find(|b| b.name == name)
                    .map(|b| b.healthy.load(Ordering::SeqCst));
                BackendHealth {
                    name: name.to_owned(),
                    healthy: AtomicBool::new(!checked || was == Some(true)),
                }
            })
            .collect();
        *list = next;
    }

    fn list(&self) -> RwLockReadGuard<'_, Vec<BackendHealth>> {
        self.backends.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The tunnels `/readyz` lists (set once at start).
    pub fn set_tunnels(&self, tunnels: Vec<Arc<crate::tunnel::edge::Edge>>) {
        *self.tunnels.write().unwrap_or_else(|p| p.into_inner()) = tunnels;
    }

    pub fn set_listeners_bound(&self, bound: bool) {
        self.listeners_bound.store(bound, Ordering::SeqCst);
    }

    pub fn listeners_bound(&self) -> bool {
        self.listeners_bound.load(Ordering::SeqCst)
    }

    /// Records a backend's state; unknown names are ignored.
    pub fn set_backend(&self, name: &str, healthy: bool) {
        if let Some(b) = self.list().iter().find(|b| b.name == name) {
            b.healthy.store(healthy, Ordering::SeqCst);
        }
    }

    /// `None` for a backend no listener uses.
    pub fn backend_healthy(&self, name: &str) -> Option<bool> {
        self.list()
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.healthy.load(Ordering::SeqCst))
    }

    /// Listeners bound and at least one backend healthy.
    pub fn is_ready(&self) -> bool {
        self.listeners_bound() && self.list().iter().any(|b| b.healthy.load(Ordering::SeqCst))
    }

    /// A human-readable status, one line per item, for the `/readyz` body.
    pub fn report(&self) -> String {
        let mut out = String::new();
        out.push_str(if self.is_ready() {
            "ready\n"
        } else {
            "not ready\n"
        });
        out.push_str(if self.listeners_bound() {
            "listeners: bound\n"
        } else {
            "listeners: not bound\n"
        });
        for b in self.list().iter() {
            let state = if b.healthy.load(Ordering::SeqCst) {
                "up"
            } else {
                "down"
            };
            out.push_str(&format!("backend {}: {state}\n", b.name));
        }
        for t in self
            .tunnels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let connectors = t.connectors();
            out.push_str(&format!(
                "tunnel {}: {} connector(s)\n",
                t.name,
                connectors.len()
            ));
            for (peer, streams) in connectors {
                out.push_str(&format!(
                    "tunnel {} connector {peer}: {streams} stream(s)\n",
                    t.name
                ));
            }
        }
        out
    }
}

/// Spawns one checker per backend that has `health_check` configured, into
/// `tasks`; each stops when `shutdown` turns true. Backends without a check are
/// reported healthy in `metrics` at once.
pub(crate) fn spawn_checks(
    tasks: &mut JoinSet<()>,
    backends: Vec<Arc<Backend>>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) {
    for b in backends {
        match b.cfg.health_check {
            None => metrics.backend_health(&b.cfg.name, true),
            Some(check) => {
                metrics.backend_health(&b.cfg.name, false);
                tasks.spawn(check_loop(
                    b,
                    check,
                    health.clone(),
                    metrics.clone(),
                    shutdown.clone(),
                ));
            }
        }
    }
}

async fn check_loop(
    backend: Arc<Backend>,
    check: HealthCheck,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = backend.cfg.name.clone();
    // `None` until the first result, so the first one is always logged.
    let mut last: Option<bool> = None;
    let mut next = tokio::time::Instant::now();
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = check_once(&backend, check.timeout) => r,
            _ = shutdown.changed() => return,
        };
        let ok = result.is_ok();
        health.set_backend(&name, ok);
        metrics.backend_health(&name, ok);
        metrics.health_check(&name, ok);
        if let Err(e) = &result {
            // Counted here, not in backend_errors_total (sessions only).
            metrics.health_check_failed(&name, e.kind());
        }
        match (&result, last) {
            (Ok(()), Some(true)) => {
                debug!(backend = %name, elapsed = ?started.elapsed(), "health check ok")
            }
            (Ok(()), _) => info!(backend = %name, "backend healthy"),
            (Err(e), Some(false)) => debug!(backend = %name, error = %e, "health check failed"),
            (Err(e), _) => warn!(backend = %name, error = %e, "backend unhealthy"),
        }
        last = Some(ok);
        // Fixed rate, not fixed delay: a slow check does not stretch the interval.
        next += check.interval;
        let now = tokio::time::Instant::now();
        if next < now {
            next = now;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One check: connect as a session would, then `QUIT`. The whole exchange is
/// bounded by `limit`.
async fn check_once(backend: &Backend, limit: Duration) -> Result<(), backend::BackendError> {
    let deadline = Instant::now() + limit;
    let (mut session, _greeting) = backend::connect(backend, limit, None).await?;
    // QUIT is a courtesy so the backend logs a clean disconnect; its reply does
    // not decide health (the backend already proved it serves FTP).
    let left = deadline.saturating_duration_since(Instant::now());
    if !left.is_zero() {
        let _ = tokio::time::timeout(left, async {
            if session.chan.send_line(b"QUIT").await.is_ok() {
                let _ = session.chan.read_reply_timeout(left).await;
            }
        })
        .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_listeners_and_one_healthy_backend() {
        let h = Health::new([("a", true), ("b", true)]);
        assert!(!h.is_ready());
        h.set_listeners_bound(true);
        assert!(!h.is_ready(), "checked backends start unhealthy");
        h.set_backend("b", true);
        assert!(h.is_ready());
        assert_eq!(h.backend_healthy("a"), Some(false));
        assert_eq!(h.backend_healthy("zzz"), None);
        assert!(h.report().contains("backend a: down\nbackend b: up\n"));
        h.set_backend("b", false);
        assert!(!h.is_ready());
        assert!(h.report().starts_with("not ready\n"));
    }

    #[test]
    fn unchecked_backends_are_healthy() {
        let h = Health::new([("plain", false)]);
        h.set_listeners_bound(true);
        assert!(h.is_ready());
        assert!(!Health::new([("plain", false)]).is_ready(), "not bound yet");
    }

    /// Reload: kept backends keep their state, new checked ones start down,
    /// removed ones disappear from `/readyz`.
    #[test]
    fn reload_adds_keeps_and_forgets_backends() {
        let h = Health::new([("a", true), ("gone", true)]);
        h.set_backend("a", true);
        h.set_backend("gone", true);
        h.set_backends([("a", true), ("new", true), ("plain", false)]);
        assert_eq!(h.backend_healthy("a"), Some(true));
        assert_eq!(h.backend_healthy("new"), Some(false));
        assert_eq!(h.backend_healthy("plain"), Some(true));
        assert_eq!(h.backend_healthy("gone"), None);
        h.set_backend("new", true);
        assert_eq!(
            h.backend_healthy("new"),
            Some(true),
            "checks of a new backend count"
        );
        assert!(h
            .report()
            .contains("backend a: up\nbackend new: up\nbackend plain: up\n"));
    }
}
