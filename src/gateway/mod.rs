//! The gateway: builds every runtime object from a validated `Config`
//! (certificates and keys included) *before* binding anything, binds the
//! listeners, and runs one accept loop per listener, one task per session.
//!
//! Lifecycle:
//! - **reload** builds a new generation from a new config; if anything
//!   fails the old one stays. Listeners with the same name and address get the
//!   new policy for *new* sessions (sessions in flight keep the `Arc` of the
//!   policy they started with); new listeners are bound, removed ones stop
//!   accepting while their sessions run on.
//! - **control**: with `control.socket`, a Unix socket for `ftpsgate ctl`
//!   is bound at start (like `metrics.bind`, not moved by a reload); reloads
//!   asked for there come out of [`Gateway::control_reload`].
//! - **drain** stops accepting, tells idle sessions `421`, lets transfers
//!   finish up to a grace period, then cuts what is left.

pub mod accept;
pub mod admit;
pub mod fds;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::backend::pool::Pool;
use crate::backend::Backend;
use crate::config::{Config, TlsMode};
use crate::health::{self, Health};
use crate::http;
use crate::listener::ListenerCtx;
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::tls::ServerTls;
use crate::tunnel::connector::Connector;
use crate::tunnel::edge::Edge;
use crate::xferlog::TransferLog;

/// For `ftpsgate check`: `client_auth` CA and CRL files, located at their keys.
pub use crate::tls::check_client_auth_files;
/// For `ftpsgate check`: TLS material of a configuration that did not build.
pub use crate::tls::check_sections as check_tls_sections;

use accept::{bind_now, spawn_listener, Running};

#[derive(Debug, thiserror::Error)]
/// Why the gateway could not start: each names the config key at fault.
pub enum StartError {
    #[error("{path}: {message}")]
    /// The configuration is invalid.
    Invalid {
        /// The key at fault.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    #[error("listeners[{index}] ({name}): cannot bind {addr}: {source}")]
    /// A listener's address cannot be bound.
    Bind {
        /// The listener's position in `listeners`.
        index: usize,
        /// The listener's name.
        name: String,
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    #[error("control.socket: cannot bind {path}: {source}")]
    /// The control socket cannot be bound.
    ControlBind {
        /// The socket path.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A tunnel's UDP address cannot be bound (DMZ edge).
    #[error("tunnels[{index}] ({name}): cannot bind {addr}: {source}")]
    TunnelBind {
        /// Its index in `tunnels`.
        index: usize,
        /// Its name.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// What failed.
        source: crate::tunnel::TunnelError,
    },
    #[error("metrics.bind: cannot bind {addr}: {source}")]
    /// The metrics address cannot be bound.
    MetricsBind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// Every problem found while starting, in config order (as `check` reports them).
#[derive(Debug)]
pub struct StartErrors(pub Vec<StartError>);

impl std::fmt::Display for StartErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StartErrors {}

/// Everything built from the config, ready to serve; `check` stops here.
pub struct Prepared {
    listeners: Vec<Arc<ListenerCtx>>,
    backends: Vec<Arc<Backend>>,
    /// The metric families of this process (kept across reloads).
    pub metrics: Arc<Metrics>,
    /// The transfer log (kept across reloads).
    pub xferlog: Arc<TransferLog>,
    /// `metrics.bind`: where `/metrics`, `/healthz`, `/readyz` are served.
    metrics_bind: Option<SocketAddr>,
    config: Arc<Config>,
    /// DMZ edge: the tunnels (not bound yet).
    edges: Vec<Arc<Edge>>,
    /// DMZ connector: the edges to dial (not started yet).
    connectors: Vec<Connector>,
}

impl Prepared {
    /// Build TLS configs and backends; reports every problem found.
    pub fn build(config: &Config) -> Result<Prepared, Vec<StartError>> {
        Self::build_with(config, Metrics::new())
    }

    /// What `ftpsgate check` runs: everything [`Self::build`] checks, but the
    /// transfer log is only checked for writability, never created.
    pub fn check(config: &Config) -> Result<(), Vec<StartError>> {
        Self::build_inner(config, Metrics::new(), false).map(|_| ())
    }

    /// As [`Self::build`], recording into an existing metrics registry (reload).
    /// Session caps the config leaves out are derived from the descriptor
    /// limit in force ([`fds::with_default_limits`]).
    pub fn build_with(config: &Config, metrics: Arc<Metrics>) -> Result<Prepared, Vec<StartError>> {
        Self::build_inner(config, metrics, true)
    }

    fn build_inner(
        config: &Config,
        metrics: Arc<Metrics>,
        open_log: bool,
    ) -> Result<Prepared, Vec<StartError>> {
        let config = &fds::with_default_limits(config, fds::soft_nofile());
        let mut errors = Vec::new();
        let xferlog = match &config.transfer_log {
            None => TransferLog::disabled(),
            Some(t) if !open_log => {
                if let Err(e) = TransferLog::check_writable(t) {
                    errors.push(StartError::Invalid {
                        path: "transfer_log.path".into(),
                        message: e.to_string(),
                    });
                }
                TransferLog::disabled()
            }
            Some(t) => TransferLog::open(t).unwrap_or_else(|e| {
                errors.push(StartError::Invalid {
                    path: "transfer_log.path".into(),
                    message: e.to_string(),
                });
                TransferLog::disabled()
            }),
        };
        let xferlog = Arc::new(xferlog);
        let mut backends = HashMap::new();
        let mut all_backends = Vec::new();
        for (i, b) in config.backends.iter().enumerate() {
            match Backend::new(b.clone(), metrics.clone()) {
                Ok(rt) => {
                    let rt = Arc::new(rt);
                    backends.insert(b.name.clone(), rt.clone());
                    all_backends.push(rt);
                }
                Err(e) => errors.push(StartError::Invalid {
                    path: format!("backends[{i}].tls"),
                    message: e.to_string(),
                }),
            }
        }
        let backends = Arc::new(backends);
        let mut edges = Vec::new();
        for (i, t) in config.tunnels.iter().enumerate() {
            match Edge::new(t, metrics.clone()) {
                Ok(e) => edges.push(e),
                Err(e) => errors.push(StartError::Invalid {
                    path: format!("tunnels[{i}].tls"),
                    message: e.to_string(),
                }),
            }
        }
        let mut connectors = Vec::new();
        for (i, c) in config.connect.iter().enumerate() {
            match Connector::new(c, metrics.clone()) {
                Ok(c) => connectors.push(c),
                Err(e) => errors.push(StartError::Invalid {
                    path: format!("connect[{i}].tls"),
                    message: e.to_string(),
                }),
            }
        }
        let mut listeners = Vec::new();
        for (i, l) in config.listeners.iter().enumerate() {
            let tls = match l.tls.mode {
                TlsMode::None => None,
                _ => match ServerTls::from_config(&l.tls) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        errors.push(StartError::Invalid {
                            path: format!("listeners[{i}].tls"),
                            message: e.to_string(),
                        });
                        None
                    }
                },
            };
            let Some(backend) = backends.get(&l.backend).cloned() else {
                if !errors.iter().any(
                    |e| matches!(e, StartError::Invalid { path, .. } if path.starts_with("backends")),
                ) {
                    errors.push(StartError::Invalid {
                        path: format!("listeners[{i}].backend"),
                        message: format!("backend {:?} is not defined", l.backend),
                    });
                }
                continue;
            };
            let kernel = match &l.passive.nftables {
                None => None,
                Some(n) => match crate::data::nft::KernelPinholes::open(n) {
                    Ok(k) => Some(Arc::new(k)),
                    Err(e) if n.fail_on_error => {
                        errors.push(StartError::Invalid {
                            path: format!("listeners[{i}].passive.nftables"),
                            message: e,
                        });
                        None
                    }
                    Err(e) => {
                        warn!(listener = %l.name, error = %e, "kernel pinholes unavailable; using user-space pinholes only");
                        None
                    }
                },
            };
            listeners.push(Arc::new(ListenerCtx {
                kernel,
                cfg: l.clone(),
                tls,
                pool: Pool::new(backend, backends.clone(), l.routes.len()),
                global_access: config.access.clone(),
                global_limits: config.limits,
                timeouts: config.timeouts,
                metrics: metrics.clone(),
                xferlog: xferlog.clone(),
            }));
        }
        if errors.is_empty() {
            Ok(Prepared {
                listeners,
                backends: all_backends,
                metrics,
                xferlog,
                metrics_bind: config.metrics.as_ref().map(|m| m.bind),
                config: Arc::new(config.clone()),
                edges,
                connectors,
            })
        } else {
            Err(errors)
        }
    }
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    drain: watch::Sender<bool>,
    force: watch::Sender<bool>,
    /// Stops the metrics endpoint (after the drain).
    stop_http: watch::Sender<bool>,
    /// Stops the current generation's health checks (replaced on reload).
    stop_checks: Mutex<watch::Sender<bool>>,
    listeners: Mutex<HashMap<String, Running>>,
    metrics: Arc<Metrics>,
    metrics_addr: Option<SocketAddr>,
    tasks: Mutex<JoinSet<()>>,
    config: Arc<Mutex<Arc<Config>>>,
    /// Reloads asked for over the control socket (never sent without one).
    control_reloads: tokio::sync::Mutex<mpsc::Receiver<crate::ctl::ReloadRequest>>,
    /// DMZ edge tunnels by name; bound once at start, kept across reloads.
    edges: HashMap<String, Arc<Edge>>,
}

impl Gateway {
    /// Build TLS configs, bind every listener (port 0 allowed), spawn the
    /// accept loops. Reports every problem found, not only the first.
    pub async fn start(config: Config) -> Result<Gateway, StartErrors> {
        for w in config.warnings().into_iter().chain(config.key_warnings()) {
            warn!("{w}");
        }
        let prepared = Prepared::build(&config).map_err(StartErrors)?;
        Self::start_prepared(prepared).await
    }

    /// Bind and start what [`Prepared::build`] built; every bind failure is reported.
    pub async fn start_prepared(prepared: Prepared) -> Result<Gateway, StartErrors> {
        let mut bound = Vec::new();
        let mut errors = Vec::new();
        for (index, ctx) in prepared.listeners.into_iter().enumerate() {
            let addr = ctx.cfg.bind;
            match bind_now(addr) {
                Ok(l) => bound.push((l, ctx)),
                Err(source) => errors.push(StartError::Bind {
                    index,
                    name: ctx.cfg.name.clone(),
                    addr,
                    source,
                }),
            }
        }
        let mut edges = Vec::new();
        for (index, edge) in prepared.edges.iter().enumerate() {
            match edge.bind() {
                Ok(endpoint) => edges.push((edge.clone(), endpoint)),
                Err(source) => errors.push(StartError::TunnelBind {
                    index,
                    name: edge.name.to_string(),
                    addr: prepared.config.tunnels[index].listen,
                    source,
                }),
            }
        }
        let metrics_listener = match prepared.metrics_bind {
            None => None,
            Some(addr) => match TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(source) => {
                    errors.push(StartError::MetricsBind { addr, source });
                    None
                }
            },
        };
        let control_listener = match &prepared.config.control {
            None => None,
            Some(c) => match crate::ctl::bind(c) {
                Ok(l) => Some((l, c.socket.clone())),
                Err(source) => {
                    errors.push(StartError::ControlBind {
                        path: c.socket.display().to_string(),
                        source,
                    });
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(StartErrors(errors));
        }
        let metrics = prepared.metrics;
        let edges_by_name: HashMap<String, Arc<Edge>> = edges
            .iter()
            .map(|(e, _)| (e.name.to_string(), e.clone()))
            .collect();
        wire_tunnels(&prepared.backends, &edges_by_name);
        let health = Health::new(
            prepared
                .backends
                .iter()
                .map(|b| (b.cfg.name.as_str(), b.cfg.health_check.is_some())),
        );
        metrics.config_loaded();
        metrics.certificates_loaded(&crate::tls::material::expiry(&prepared.config));
        let (drain_tx, drain_rx) = watch::channel(false);
        let (force_tx, force_rx) = watch::channel(false);
        let (stop_http, stop_http_rx) = watch::channel(false);
        let (stop_checks, stop_checks_rx) = watch::channel(false);
        let shared = Shared::new(health.clone(), drain_rx, force_rx, &prepared.config.limits);
        shared.set_connection_rate(prepared.config.limits.connection_rate_per_ip);
        let mut listeners = HashMap::new();
        for (l, ctx) in bound {
            metrics.listener_configured(&ctx.cfg.name);
            metrics.passive_range(&ctx.cfg.name, ctx.cfg.passive.ports.len());
            let running = spawn_listener(l, ctx, shared.clone());
            listeners.insert(running.0, running.1);
        }
        health.set_listeners_bound(true);
        let mut tasks = JoinSet::new();
        health.set_tunnels(edges.iter().map(|(e, _)| e.clone()).collect());
        for (edge, endpoint) in edges {
            tasks.spawn(edge.serve(endpoint, stop_http_rx.clone()));
        }
        for c in prepared.connectors {
            tasks.spawn(c.run(stop_http_rx.clone()));
        }
        health::spawn_checks(
            &mut tasks,
            prepared.backends.clone(),
            health.clone(),
            metrics.clone(),
            stop_checks_rx,
        );
        let mut metrics_addr = None;
        if let Some(l) = metrics_listener {
            let local = l.local_addr().ok();
            let shown = local.map_or_else(|| "?".to_string(), |a| a.to_string());
            info!(addr = %shown, "metrics endpoint listening (/metrics, /healthz, /readyz)");
            metrics_addr = local;
            tasks.spawn(http::serve(
                l,
                metrics.clone(),
                health,
                stop_http_rx.clone(),
            ));
        }
        let config = Arc::new(Mutex::new(prepared.config));
        let (reload_tx, control_reloads) = mpsc::channel(1);
        if let Some((l, path)) = control_listener {
            let server = Arc::new(crate::ctl::Server {
                shared: shared.clone(),
                metrics: metrics.clone(),
                config: config.clone(),
                reload: reload_tx,
            });
            tasks.spawn(crate::ctl::serve(l, path, server, stop_http_rx));
        }
        Ok(Gateway {
            shared,
            drain: drain_tx,
            force: force_tx,
            stop_http,
            stop_checks: Mutex::new(stop_checks),
            listeners: Mutex::new(listeners),
            metrics,
            metrics_addr,
            tasks: Mutex::new(tasks),
            config,
            control_reloads: tokio::sync::Mutex::new(control_reloads),
            edges: edges_by_name,
        })
    }

    /// The bound address of the listener named `listener` (the OS-chosen port when it was 0).
    pub fn local_addr(&self, listener: &str) -> Option<SocketAddr> {
        lock(&self.listeners).get(listener).map(|r| r.local)
    }

    /// Every listener's name and bound address.
    pub fn addrs(&self) -> Vec<(String, SocketAddr)> {
        let mut v: Vec<_> = lock(&self.listeners)
            .iter()
            .map(|(n, r)| (n.clone(), r.local))
            .collect();
        v.sort();
        v
    }

    /// The UDP address the tunnel `name` listens on (DMZ edge).
    pub fn tunnel_addr(&self, name: &str) -> Option<SocketAddr> {
        self.edges.get(name).and_then(|e| e.local_addr())
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served (`metrics.bind`,
    /// with the OS-chosen port when it was 0); `None` when not configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The metric families (shared by every generation).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Sessions currently running (all listeners).
    pub fn active_sessions(&self) -> usize {
        self.shared.active()
    }

    /// A counter of running sessions that outlives a `shutdown` in progress
    /// (for the log line of a second termination signal).
    pub fn session_counter(&self) -> impl Fn() -> usize + Send + 'static {
        let shared = self.shared.clone();
        move || shared.active()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        lock(&self.config).clone()
    }

    /// The next reload asked for over the control socket; `None` when there
    /// is no control socket (then it never resolves to `Some`). The caller
    /// reloads as for `SIGHUP` and answers the request.
    pub async fn control_reload(&self) -> Option<crate::ctl::ReloadRequest> {
        self.control_reloads.lock().await.recv().await
    }

    /// What `reload.watch` polls: the config files, every certificate, key,
    /// CA, CRL and SNI file they name (a renewed certificate is a change),
    /// and the files gateway authentication reads ([`Config::auth_files`]:
    /// password files, LDAP CAs, secrets files).
    pub fn watched_files(&self) -> Vec<std::path::PathBuf> {
        let config = self.config();
        let mut files = config.sources.clone();
        for f in crate::tls::material::files(&config)
            .into_iter()
            .chain(config.auth_files())
        {
            if !files.contains(&f) {
                files.push(f);
            }
        }
        files
    }

    /// Apply a new configuration without dropping sessions. On any error the
    /// running configuration stays as it was and the errors are returned.
    pub fn reload(&self, config: Config) -> Result<(), Vec<StartError>> {
        let res = self.reload_inner(config);
        self.metrics.config_reload(res.is_ok());
        match &res {
            Ok(()) => {
                self.metrics.config_loaded();
                info!("configuration reloaded");
            }
            Err(errors) => {
                for e in errors {
                    error!(error = %e, "reload refused; keeping the running configuration");
                }
            }
        }
        res
    }

    fn reload_inner(&self, config: Config) -> Result<(), Vec<StartError>> {
        for w in config.warnings().into_iter().chain(config.key_warnings()) {
            warn!("{w}");
        }
        let prepared = Prepared::build_with(&config, self.metrics.clone())?;
        if prepared.config.tunnels != lock(&self.config).tunnels
            || prepared.config.connect != lock(&self.config).connect
        {
            warn!("tunnels and connect take effect at restart only; the running ones are kept");
        }
        wire_tunnels(&prepared.backends, &self.edges);
        let mut running = lock(&self.listeners);
        // Bind every new address first, so a failure changes nothing.
        let mut fresh = Vec::new();
        for (index, ctx) in prepared.listeners.iter().enumerate() {
            let keep = running
                .get(&ctx.cfg.name)
                .is_some_and(|r| r.bind == ctx.cfg.bind);
            if keep {
                continue;
            }
            // An address another running listener holds moves with its name.
            // (Port 0 asks the OS for a fresh port: never "held".)
            let held_by_other =
                ctx.cfg.bind.port() != 0 && running.values().any(|r| r.bind == ctx.cfg.bind);
            if held_by_other {
                return Err(vec![StartError::Invalid {
                    path: format!("listeners[{index}].bind"),
                    message: format!(
                        "{} is held by another running listener; rename or move in two reloads",
                        ctx.cfg.bind
                    ),
                }]);
            }
            match bind_now(ctx.cfg.bind) {
                Ok(l) => fresh.push((ctx.cfg.name.clone(), l)),
                Err(source) => {
                    return Err(vec![StartError::Bind {
                        index,
                        name: ctx.cfg.name.clone(),
                        addr: ctx.cfg.bind,
                        source,
                    }])
                }
            }
        }
        let names: Vec<String> = prepared
            .listeners
            .iter()
            .map(|c| c.cfg.name.clone())
            .collect();
        // Removed or moved listeners stop accepting; their sessions go on.
        let gone: Vec<String> = running
            .iter()
            .filter(|(n, r)| {
                !prepared
                    .listeners
                    .iter()
                    .any(|c| &c.cfg.name == *n && c.cfg.bind == r.bind)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            if let Some(r) = running.remove(&n) {
                let _ = r.stop.send(true);
                info!(listener = %n, addr = %r.local, "listener stopped accepting (reload)");
            }
        }
        for ctx in &prepared.listeners {
            self.metrics.listener_configured(&ctx.cfg.name);
            self.metrics
                .passive_range(&ctx.cfg.name, ctx.cfg.passive.ports.len());
            if let Some(r) = running.get(&ctx.cfg.name) {
                let _ = r.ctx.send(ctx.clone());
                continue;
            }
            if let Some(pos) = fresh.iter().position(|(n, _)| n == &ctx.cfg.name) {
                let (_, l) = fresh.swap_remove(pos);
                let (name, r) = spawn_listener(l, ctx.clone(), self.shared.clone());
                running.insert(name, r);
            }
        }
        debug_assert!(names.iter().all(|n| running.contains_key(n)));
        drop(running);
        self.shared.set_failed_logins(&prepared.config.limits);
        self.shared
            .set_connection_rate(prepared.config.limits.connection_rate_per_ip);
        // Health checks restart with the new backends (renewed CA, new timers);
        // added backends appear in /readyz and in routing's health order.
        self.shared.health.set_backends(
            prepared
                .backends
                .iter()
                .map(|b| (b.cfg.name.as_str(), b.cfg.health_check.is_some())),
        );
        let (stop_checks, stop_rx) = watch::channel(false);
        let old = std::mem::replace(&mut *lock(&self.stop_checks), stop_checks);
        let _ = old.send(true);
        health::spawn_checks(
            &mut lock(&self.tasks),
            prepared.backends.clone(),
            self.shared.health.clone(),
            self.metrics.clone(),
            stop_rx,
        );
        self.metrics
            .certificates_loaded(&crate::tls::material::expiry(&prepared.config));
        *lock(&self.config) = prepared.config;
        Ok(())
    }

    /// Graceful drain: stop accepting, `421` to idle sessions, let transfers
    /// finish for up to `grace`, then close what is left. Returns the number
    /// of sessions that had to be cut.
    pub async fn drain(&self, grace: Duration) -> usize {
        for (name, r) in lock(&self.listeners).iter() {
            let _ = r.stop.send(true);
            info!(listener = %name, "stopped accepting (drain)");
        }
        // Load balancers and Kubernetes stop sending new clients here.
        self.shared.health.set_listeners_bound(false);
        let _ = self.drain.send(true);
        let before = self.shared.active();
        info!(sessions = before, grace = ?grace, "draining");
        if tokio::time::timeout(grace, self.shared.idle())
            .await
            .is_ok()
        {
            info!("drained: all sessions finished");
            return 0;
        }
        let cut = self.shared.active();
        warn!(
            sessions = cut,
            "drain deadline passed; closing remaining sessions"
        );
        let _ = self.force.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.shared.idle()).await;
        cut
    }

    /// Drain with the configured grace period, then stop everything.
    pub async fn shutdown(self) {
        let grace = self.config().shutdown_grace;
        self.shutdown_with(grace).await;
    }

    /// Drain with `grace` instead of `shutdown.grace`, then stop.
    pub async fn shutdown_with(self, grace: Duration) {
        self.drain(grace).await;
        let _ = self.stop_http.send(true);
        let _ = lock(&self.stop_checks).send(true);
        let listeners: Vec<Running> = lock(&self.listeners).drain().map(|(_, r)| r).collect();
        for r in listeners {
            let _ = r.task.await;
        }
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        while tasks.join_next().await.is_some() {}
    }
}

/// Points each backend with `via` at its running tunnel.
fn wire_tunnels(backends: &[Arc<Backend>], edges: &HashMap<String, Arc<Edge>>) {
    for b in backends {
        if let Some(edge) = b.cfg.via.as_ref().and_then(|v| edges.get(v)) {
            let _ = b.tunnel.set(edge.clone());
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind;
    // carrying on is better than taking the whole gateway down.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
