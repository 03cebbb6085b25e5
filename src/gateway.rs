//! The gateway: builds every runtime object from a validated `Config`
//! (certificates and keys included) *before* binding anything, binds the
//! listeners, and runs one accept loop per listener, one task per session.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::backend::Backend;
use crate::config::{Config, TlsMode};
use crate::health::{self, Health};
use crate::http;
use crate::metrics::Metrics;
use crate::session::{self, ListenerCtx};
use crate::tls::ServerTls;
use crate::xferlog::TransferLog;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("listeners[{index}] ({name}): cannot bind {addr}: {source}")]
    Bind {
        index: usize,
        name: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("metrics.bind: cannot bind {addr}: {source}")]
    MetricsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Everything built from the config, ready to serve; `check` stops here.
pub struct Prepared {
    listeners: Vec<Arc<ListenerCtx>>,
    pub metrics: Arc<Metrics>,
    pub xferlog: Arc<TransferLog>,
    /// `metrics.bind`: where `/metrics`, `/healthz`, `/readyz` are served.
    metrics_bind: Option<SocketAddr>,
}

impl Prepared {
    /// Build TLS configs and backends; reports every problem found.
    pub fn build(config: &Config) -> Result<Prepared, Vec<StartError>> {
        let mut errors = Vec::new();
        let metrics = Metrics::new();
        let xferlog = match &config.transfer_log {
            None => TransferLog::disabled(),
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
        for (i, b) in config.backends.iter().enumerate() {
            match Backend::new(b.clone(), metrics.clone()) {
                Ok(rt) => {
                    backends.insert(b.name.clone(), Arc::new(rt));
                }
                Err(e) => errors.push(StartError::Invalid {
                    path: format!("backends[{i}].tls"),
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
                if !errors.iter().any(|e| matches!(e, StartError::Invalid { path, .. } if path.starts_with("backends"))) {
                    errors.push(StartError::Invalid {
                        path: format!("listeners[{i}].backend"),
                        message: format!("backend {:?} is not defined", l.backend),
                    });
                }
                continue;
            };
            listeners.push(Arc::new(ListenerCtx {
                cfg: l.clone(),
                tls,
                backend,
                timeouts: config.timeouts,
                metrics: metrics.clone(),
                xferlog: xferlog.clone(),
            }));
        }
        if errors.is_empty() {
            Ok(Prepared {
                listeners,
                metrics,
                xferlog,
                metrics_bind: config.metrics.as_ref().map(|m| m.bind),
            })
        } else {
            Err(errors)
        }
    }
}

/// A running gateway.
pub struct Gateway {
    addrs: Vec<(String, SocketAddr)>,
    /// Where the metrics endpoint listens, when configured.
    metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Gateway {
    /// Build TLS configs, bind every listener (port 0 allowed), spawn the accept loops.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        for w in config.warnings() {
            warn!("{w}");
        }
        let prepared = Prepared::build(&config).map_err(|mut e| e.remove(0))?;
        Self::start_prepared(prepared).await
    }

    pub async fn start_prepared(prepared: Prepared) -> Result<Gateway, StartError> {
        let mut bound = Vec::new();
        for (index, ctx) in prepared.listeners.into_iter().enumerate() {
            let addr = ctx.cfg.bind;
            let l = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind {
                    index,
                    name: ctx.cfg.name.clone(),
                    addr,
                    source,
                })?;
            bound.push((l, ctx));
        }
        let metrics_listener = match prepared.metrics_bind {
            None => None,
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::MetricsBind { addr, source })?,
            ),
        };
        let metrics = prepared.metrics;
        // Health covers the backends sessions can reach, each once, in config order.
        let mut checked: Vec<Arc<Backend>> = Vec::new();
        for (_, ctx) in &bound {
            if !checked.iter().any(|b| b.cfg.name == ctx.backend.cfg.name) {
                checked.push(ctx.backend.clone());
            }
            metrics.listener_configured(&ctx.cfg.name);
        }
        let health = Health::new(
            checked
                .iter()
                .map(|b| (b.cfg.name.as_str(), b.cfg.health_check.is_some())),
        );
        metrics.config_loaded();
        let (tx, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let mut addrs = Vec::new();
        for (l, ctx) in bound {
            let local = l.local_addr().unwrap_or(ctx.cfg.bind);
            info!(
                listener = %ctx.cfg.name,
                addr = %local,
                tls = ?ctx.cfg.tls.mode,
                backend = %ctx.backend.cfg.name,
                "listening"
            );
            addrs.push((ctx.cfg.name.clone(), local));
            tasks.spawn(accept_loop(l, ctx, rx.clone()));
        }
        health.set_listeners_bound(true);
        health::spawn_checks(
            &mut tasks,
            checked,
            health.clone(),
            metrics.clone(),
            rx.clone(),
        );
        let mut metrics_addr = None;
        if let Some(l) = metrics_listener {
            let local = l.local_addr().ok();
            info!(addr = ?local, "metrics endpoint listening (/metrics, /healthz, /readyz)");
            metrics_addr = local;
            tasks.spawn(http::serve(l, metrics, health, rx.clone()));
        }
        Ok(Gateway {
            addrs,
            metrics_addr,
            shutdown: tx,
            tasks,
        })
    }

    pub fn local_addr(&self, listener: &str) -> Option<SocketAddr> {
        self.addrs
            .iter()
            .find(|(n, _)| n == listener)
            .map(|(_, a)| *a)
    }

    pub fn addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served (`metrics.bind`,
    /// with the OS-chosen port when it was 0); `None` when not configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stop accepting and close every session (idle ones get `421`).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn accept_loop(l: TcpListener, ctx: Arc<ListenerCtx>, mut shutdown: watch::Receiver<bool>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((tcp, peer)) => {
                    sessions.spawn(session::run(tcp, peer, ctx.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    error!(listener = %ctx.cfg.name, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(l);
    let grace = tokio::time::sleep(std::time::Duration::from_secs(5));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            r = sessions.join_next() => if r.is_none() { break },
            _ = &mut grace => { sessions.abort_all(); }
        }
    }
}
