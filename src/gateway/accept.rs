//! Accepting: bind a listener's socket, run its accept loop, and give every
//! connection a task of its own that admits it ([`super::admit`]) and runs
//! its session ([`crate::session::run`]). The loop itself does nothing that
//! can wait on a peer: it spawns and goes back to `accept`.
//!
//! The connection task is also where a session's life is counted and logged
//! (started, ended with its outcome), whether it was admitted or not.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, error, info, warn, Instrument};

use crate::listener::ListenerCtx;
use crate::session::{self, SessionOutcome};
use crate::shared::Shared;

/// One bound listener and its accept loop.
pub(super) struct Running {
    /// The configured address (a reload keeps the socket when it is unchanged).
    pub bind: SocketAddr,
    /// The bound address (port 0 resolved).
    pub local: SocketAddr,
    /// New sessions read the current policy from here.
    pub ctx: watch::Sender<Arc<ListenerCtx>>,
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<()>,
}

pub(super) fn bind_now(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

pub(super) fn spawn_listener(
    l: TcpListener,
    ctx: Arc<ListenerCtx>,
    shared: Arc<Shared>,
) -> (String, Running) {
    let local = l.local_addr().unwrap_or(ctx.cfg.bind);
    info!(
        listener = %ctx.cfg.name,
        addr = %local,
        tls = match ctx.cfg.tls.mode {
            crate::config::TlsMode::None => "none",
            crate::config::TlsMode::Explicit => "explicit",
            crate::config::TlsMode::Implicit => "implicit",
        },
        backend = %ctx.pool.default_backend().cfg.name,
        "listening"
    );
    let name = ctx.cfg.name.clone();
    let bind = ctx.cfg.bind;
    let (ctx_tx, ctx_rx) = watch::channel(ctx);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(accept_loop(l, ctx_rx, stop_rx, shared));
    (
        name,
        Running {
            bind,
            local,
            ctx: ctx_tx,
            stop,
            task,
        },
    )
}

async fn accept_loop(
    l: TcpListener,
    ctx: watch::Receiver<Arc<ListenerCtx>>,
    mut stop: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    loop {
        tokio::select! {
            r = l.accept() => match r {
                Ok((tcp, peer)) => {
                    let ctx = ctx.borrow().clone();
                    tokio::spawn(connection(tcp, peer, ctx, shared.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One accepted connection, from admission to the end of its session.
/// Never panics on peer input; every exit path is logged.
async fn connection(tcp: TcpStream, peer: SocketAddr, ctx: Arc<ListenerCtx>, shared: Arc<Shared>) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        "session",
        id,
        client = tracing::field::Empty,
        via = tracing::field::Empty,
        listener = %ctx.cfg.name,
        user = tracing::field::Empty,
        backend = tracing::field::Empty
    );
    async move {
        let started = Instant::now();
        // Admission and the session's rare, large steps (TLS handshakes, the
        // backend connection, authentication, pinholes) are boxed while they
        // run, so the task an idle session keeps is small (8632 -> 4072 bytes).
        let metrics = ctx.metrics.clone();
        metrics.session_started(&ctx.cfg.name);
        let _active = shared.session_started();
        let (outcome, why) = match Box::pin(super::admit::admit(tcp, peer, &ctx, &shared)).await {
            Ok(admitted) => session::run(admitted, ctx.clone(), shared.clone()).await,
            Err(refused) => (SessionOutcome::RefusedPolicy, Some(refused.0)),
        };
        metrics.session_ended(&ctx.cfg.name, outcome);
        // The words of `ftpsgate_sessions_total{outcome}`, not Rust's.
        let probe = outcome == SessionOutcome::Probe;
        let outcome = crate::metrics::outcome_label(outcome);
        let secs = format!("{:.3}", started.elapsed().as_secs_f64());
        // What an operator must act on is a warning (`journalctl -p warning`);
        // clients that time out or misbehave are not.
        let serious = matches!(outcome, "backend_unavailable" | "cut");
        match (why, serious) {
            // A load-balancer or port probe: connected, sent nothing, left.
            _ if probe => debug!(secs = %secs, "probe closed"),
            (None, false) => info!(outcome = %outcome, secs = %secs, "closed"),
            (None, true) => warn!(outcome = %outcome, secs = %secs, "closed"),
            (Some(e), false) => info!(outcome = %outcome, secs = %secs, error = %e, "closed"),
            (Some(e), true) => warn!(outcome = %outcome, secs = %secs, error = %e, "closed"),
        }
    }
    .instrument(span)
    .await
}
