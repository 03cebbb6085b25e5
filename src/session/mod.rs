//! One client session: the task that owns a client control connection, the
//! backend control connection behind it, and at most one transfer at a time.
//!
//! Flow: greet → (AUTH TLS) → USER opens the backend leg → commands pass
//! through; the gateway answers itself what concerns the client leg (AUTH,
//! PBSZ, PROT, FEAT, EPSV ALL) and rewrites what carries addresses
//! (PASV/EPSV → its own pinhole). Transfer replies are ordered: the backend's
//! final reply (226) reaches the client only after the client data leg has
//! been completely written and closed.
//!
//! Parsing and rewriting live in `control` (pure); this module does the I/O.

mod shared;
mod transfer;

pub use shared::Shared;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use crate::backend::{self, Backend, BackendListener, BackendSession};
use crate::channel::{Channel, ReplyReadError};
use crate::config::{self, DataMode, TlsMode};
use crate::control::{
    self, parse_command, render_227, render_229, Command, CommandError, EpsvArg, FeatOptions,
    Framed, ProtLevel, Reply,
};
use crate::data::active::ActiveSpec;
use crate::data::pinhole::DataTls;
use crate::data::{Pinhole, PinholeSpec};
use crate::metrics::{
    Dir, LoginResult, Metrics, PinholeRefusal, SessionOutcome, Side, TransferResult,
};
use crate::policy;
use crate::stream::{ClientStream, MaybeTls};
use crate::tls::{ServerTls, SessionAcceptors};
use crate::xferlog::TransferLog;
use crate::xferlog::TransferRecord;

use transfer::{Transfer, TransferError, TransferOutcome};

/// What a session needs from its listener; shared by all its sessions.
pub struct ListenerCtx {
    pub cfg: config::Listener,
    pub tls: Option<ServerTls>,
    /// The listener's default backend (`backend:`).
    pub backend: Arc<Backend>,
    /// Every configured backend by name (routes, `user@backend`).
    pub backends: Arc<HashMap<String, Arc<Backend>>>,
    /// One round-robin cursor per route of `cfg.routes`.
    pub round_robin: Vec<AtomicUsize>,
    pub global_access: Vec<config::AccessRule>,
    pub global_limits: config::Limits,
    /// Kernel pinholes (`passive.nftables`), when enabled and usable.
    pub kernel: Option<Arc<crate::data::nft::KernelPinholes>>,
    pub timeouts: config::Timeouts,
    pub metrics: Arc<Metrics>,
    pub xferlog: Arc<TransferLog>,
}

/// What the loop does after handling one event.
enum Flow {
    Continue,
    Close,
    StartTls,
    /// `CCC` accepted: end TLS on the client control connection.
    ClearControl,
}

/// One event of the session loop.
enum Event {
    Client(std::io::Result<Option<Framed>>),
    Backend(Result<Reply, ReplyReadError>),
    TransferDone(TransferOutcome),
    /// The backend control leg has been idle during a transfer for `keepalive_noop`.
    KeepaliveNoop,
    Timeout,
    /// The gateway drains: close when idle.
    Shutdown,
    /// The drain deadline passed: close now.
    Force,
}

/// The data connection set up by the last PASV/EPSV/PORT/EPRT, waiting for
/// its transfer command.
struct PendingData {
    client: ClientLeg,
    backend: BackendLeg,
}

enum ClientLeg {
    /// Passive: the client connects to this pinhole.
    Pinhole(Pinhole),
    /// Active: the gateway connects to the client's (checked) address.
    Active(SocketAddr),
}

enum BackendLeg {
    /// The backend listens on this port of its control peer IP.
    Passive(u16),
    /// The backend connects to this listener (we sent it PORT/EPRT).
    Active(BackendListener),
}

struct Session {
    ctx: Arc<ListenerCtx>,
    client_ip: IpAddr,
    local_addr: SocketAddr,
    /// Per-session TLS acceptor (own session cache): used for the control
    /// upgrade and every data connection, so data can only resume this session.
    acceptor: Option<SessionAcceptors>,
    client_tls: bool,
    prot: ProtLevel,
    backend: Option<BackendSession>,
    logged_in: bool,
    epsv_all: bool,
    /// Forwarded commands whose final reply is still due (replies come in order).
    outstanding: usize,
    pending_data: Option<PendingData>,
    transfer: Option<Transfer>,
    last_activity: Instant,
    started: Instant,
    /// How the session ends unless something worse happens.
    outcome: SessionOutcome,
    /// Login name, for logs and the transfer log (never a metric label).
    user: String,
    /// `TYPE I` in effect (for the transfer log).
    binary: bool,
    /// Last write to or reply from the backend control leg (keepalive NOOP timer).
    last_backend_activity: Instant,
    /// Keepalive NOOPs sent whose `200` replies must not reach the client.
    swallow_noops: usize,
    shared: Arc<Shared>,
    /// The gateway drains: close as soon as no transfer runs.
    draining: bool,
    /// Command filter of the route chosen at login.
    commands: config::CommandPolicy,
    /// The backend chosen at `USER` (counted for least-connections).
    chosen: Option<BackendUse>,
}

/// A session's use of a backend, counted while it lasts (least-connections).
struct BackendUse {
    backend: Arc<Backend>,
}

impl BackendUse {
    fn new(backend: Arc<Backend>) -> BackendUse {
        backend.active.fetch_add(1, Ordering::SeqCst);
        BackendUse { backend }
    }
}

impl Drop for BackendUse {
    fn drop(&mut self) {
        self.backend.active.fetch_sub(1, Ordering::SeqCst);
    }
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Run one session to its end. Never panics on peer input; every exit path is logged.
pub async fn run(mut tcp: TcpStream, peer: SocketAddr, ctx: Arc<ListenerCtx>, shared: Arc<Shared>) {
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let span = tracing::info_span!(
        "session",
        id,
        client = tracing::field::Empty,
        via = tracing::field::Empty,
        listener = %ctx.cfg.name
    );
    async move {
        let started = Instant::now();
        let metrics = ctx.metrics.clone();
        let listener = ctx.cfg.name.clone();
        metrics.session_started(&listener);
        let _active = shared.session_started();
        // Behind a load balancer the PROXY header names the real client,
        // which is then the client for policy, pinholes, logs and metrics.
        let peer = match &ctx.cfg.proxy_protocol {
            None => peer,
            Some(pp) => {
                tracing::Span::current().record("via", tracing::field::display(peer));
                match proxied_client(&mut tcp, peer, pp).await {
                    Ok(client) => client,
                    Err(why) => {
                        tracing::Span::current().record("client", tracing::field::display(peer));
                        warn!(error = %why, reason = "proxy_protocol", "connection refused");
                        metrics.session_ended(&listener, SessionOutcome::RefusedPolicy);
                        return;
                    }
                }
            }
        };
        tracing::Span::current().record("client", tracing::field::display(peer));
        info!("accepted");
        let res = match admit(&tcp, peer, &ctx, &shared).await {
            Ok(guard) => run_inner(tcp, peer, ctx, shared, guard).await,
            Err(why) => Err(End(SessionOutcome::RefusedPolicy, why)),
        };
        let (outcome, why) = match res {
            Ok(outcome) => (outcome, None),
            Err(End(outcome, why)) => (outcome, Some(why)),
        };
        metrics.session_ended(&listener, outcome);
        let secs = started.elapsed().as_secs_f64();
        match why {
            None => info!(secs, ?outcome, "closed"),
            Some(e) => info!(secs, ?outcome, error = %e, "closed"),
        }
    }
    .instrument(span)
    .await
}

/// The client address from a PROXY header; only allowed sources may send one,
/// and from them a header is mandatory.
async fn proxied_client(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    pp: &config::ProxyProtocol,
) -> Result<SocketAddr, String> {
    let ip = peer.ip().to_canonical();
    if !pp.from.iter().any(|n| n.contains(&ip)) {
        return Err(format!("{peer} is not an allowed PROXY protocol source"));
    }
    match crate::proxy::read_header(tcp, pp.timeout).await {
        // LOCAL/UNKNOWN: the balancer's own connection (health check).
        Ok(p) => Ok(p.source.unwrap_or(peer)),
        Err(e) => Err(e.to_string()),
    }
}

/// Policy checks before anything is said: client access (CIDR rules),
/// failed-login cool-down, session limits. A refused client gets `421` and
/// the connection is closed (on implicit-TLS listeners, just closed: a clear
/// reply would be garbage to a TLS client).
async fn admit(
    tcp: &TcpStream,
    peer: SocketAddr,
    ctx: &ListenerCtx,
    shared: &Arc<Shared>,
) -> Result<shared::ConnGuard, String> {
    let ip = peer.ip();
    let refusal = if let policy::AccessDecision::Deny { rule } =
        policy::check_access(&ctx.cfg.access, &ctx.global_access, ip)
    {
        warn!(rule = ?rule, reason = "access", "client refused by access policy");
        (
            "421 Access denied for your address\r\n",
            "refused by access policy".to_string(),
        )
    } else if shared.login_blocked(ip) {
        warn!(
            reason = "failed_logins",
            "client refused: cooling down after failed logins"
        );
        (
            "421 Too many failed logins from your address; try again later\r\n",
            "failed-login cool-down".to_string(),
        )
    } else {
        match shared.admit(&ctx.cfg.name, ip, &ctx.global_limits, &ctx.cfg.limits) {
            Ok(guard) => return Ok(guard),
            Err(r) => {
                warn!(
                    limit = r.as_str(),
                    reason = "limit",
                    "client refused: session limit reached"
                );
                (
                    "421 Too many connections; try again later\r\n",
                    format!("limit {}", r.as_str()),
                )
            }
        }
    };
    if ctx.cfg.tls.mode != TlsMode::Implicit {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = tcp.writable().await;
            let _ = tcp.try_write(refusal.0.as_bytes());
        })
        .await;
    }
    Err(refusal.1)
}

async fn run_inner(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ListenerCtx>,
    shared: Arc<Shared>,
    _conn: shared::ConnGuard,
) -> Result<SessionOutcome, End> {
    let mut drain = shared.drain_signal();
    let mut force = shared.force_signal();
    use SessionOutcome as O;
    crate::net::tune(&tcp);
    crate::net::urgent_inline(&tcp);
    let local_addr = tcp
        .local_addr()
        .map_err(|e| End(O::ClientError, e.to_string()))?;
    let acceptor = match ctx.tls.as_ref().map(|t| t.session_acceptors()).transpose() {
        Ok(a) => a,
        Err(e) => return Err(End(O::TlsFailed, format!("cannot set up session TLS: {e}"))),
    };
    let login_limit = ctx.timeouts.login;

    let stream: ClientStream = match (ctx.cfg.tls.mode, &acceptor) {
        (TlsMode::Implicit, Some(acc)) => {
            match tokio::time::timeout(login_limit, acc.control.accept(tcp)).await {
                Ok(Ok(t)) => {
                    let version = crate::tls::version_name(t.get_ref().1.protocol_version());
                    ctx.metrics
                        .tls_handshake(Side::Client, version, true, false);
                    MaybeTls::Tls(Box::new(t))
                }
                Ok(Err(e)) => {
                    ctx.metrics
                        .tls_handshake(Side::Client, "none", false, false);
                    return Err(End(
                        O::TlsFailed,
                        format!("implicit TLS handshake failed: {e}"),
                    ));
                }
                Err(_) => return Err(End(O::Timeout, "implicit TLS handshake timed out".into())),
            }
        }
        _ => MaybeTls::Plain(tcp),
    };
    let client_tls = stream.is_tls();
    let mut client = Channel::new(stream);
    let now = Instant::now();
    let mut s = Session {
        ctx,
        client_ip: peer.ip(),
        local_addr,
        acceptor,
        client_tls,
        prot: ProtLevel::Clear,
        backend: None,
        logged_in: false,
        epsv_all: false,
        outstanding: 0,
        pending_data: None,
        transfer: None,
        last_activity: now,
        started: now,
        outcome: O::Ok,
        user: String::new(),
        binary: false,
        last_backend_activity: now,
        swallow_noops: 0,
        shared,
        draining: false,
        commands: config::CommandPolicy::Any,
        chosen: None,
    };
    client
        .send_reply(&Reply::new(220, "ftpsgate ready"))
        .await
        .map_err(|e| End(O::ClientError, e.to_string()))?;

    loop {
        let deadline = s.deadline();
        let waiting_backend = s.backend.is_some() && !s.holding_final();
        if s.draining && s.transfer.is_none() {
            let _ = client
                .send_reply(&Reply::new(421, "Gateway shutting down"))
                .await;
            break;
        }
        let noop_at = s
            .chosen
            .as_ref()
            .and_then(|b| b.backend.cfg.keepalive_noop)
            .filter(|_| s.transfer_running() && s.backend.is_some())
            .map(|every| s.last_backend_activity + every);
        let ev = tokio::select! {
            r = client.read_line() => Event::Client(r),
            r = read_backend(s.backend.as_mut()), if waiting_backend => Event::Backend(r),
            o = transfer::join(s.transfer.as_mut()), if s.transfer_running() => Event::TransferDone(o),
                        _ = tokio::time::sleep_until(noop_at.unwrap_or(deadline)), if noop_at.is_some() => Event::KeepaliveNoop,
            _ = tokio::time::sleep_until(deadline) => Event::Timeout,
                        _ = drain.changed(), if !s.draining => Event::Shutdown,
            _ = force.changed() => Event::Force,
        };
        let flow = match ev {
            Event::Client(Ok(None)) => {
                // A client that leaves without QUIT is common and harmless.
                debug!("client closed the connection");
                Flow::Close
            }
            Event::Client(Err(e)) => {
                s.outcome = O::ClientError;
                info!(error = %e, "client control read failed");
                Flow::Close
            }
            Event::Client(Ok(Some(Framed::TooLong))) => {
                warn!("client sent an overlong command line");
                s.reply(&mut client, 500, "Command line too long").await
            }
            Event::Client(Ok(Some(Framed::Line(line)))) => {
                s.last_activity = Instant::now();
                s.handle_line(&mut client, &line).await
            }
            Event::Backend(r) => s.handle_backend(&mut client, r).await,
            Event::TransferDone(o) => s.transfer_done(&mut client, o).await,
            Event::KeepaliveNoop => s.keepalive_noop(&mut client).await,
            Event::Timeout => {
                let what = if s.logged_in { "idle" } else { "login" };
                info!(what, "timeout");
                s.outcome = O::Timeout;
                let _ = client
                    .send_reply(&Reply::new(
                        421,
                        &format!("Timeout ({what}); closing control connection"),
                    ))
                    .await;
                Flow::Close
            }
            Event::Shutdown => {
                // Idle sessions close at the top of the loop; a running
                // transfer finishes first.
                s.draining = true;
                Flow::Continue
            }
            Event::Force => {
                warn!("closing: drain deadline passed");
                let _ = client
                    .send_reply(&Reply::new(421, "Gateway shutting down"))
                    .await;
                Flow::Close
            }
        };
        match flow {
            Flow::Continue => {}
            Flow::Close => break,
            Flow::StartTls => {
                client = match s.start_tls(client).await {
                    Ok(c) => c,
                    Err(e) => return Err(End(O::TlsFailed, e)),
                };
            }
            Flow::ClearControl => {
                client = match clear_control(client).await {
                    Ok(c) => c,
                    Err(e) => return Err(End(O::ClientError, e)),
                };
                info!("control channel cleared (CCC)");
            }
        }
    }
    // Best effort: say goodbye to the backend so it logs a clean end.
    if let Some(b) = s.backend.as_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(1), b.chan.send_line(b"QUIT")).await;
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::io::AsyncWriteExt::shutdown(&mut client.stream),
    )
    .await;
    Ok(s.outcome)
}

/// Why a session ended early: its outcome class and a message for the log.
struct End(SessionOutcome, String);

/// `CCC` (RFC 4217 §6): exchange `close_notify` on the control connection and
/// carry on over the bare TCP stream.
async fn clear_control(client: Channel<ClientStream>) -> Result<Channel<ClientStream>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let MaybeTls::Tls(mut t) = client.into_stream() else {
        return Err("CCC on a clear control channel".into());
    };
    t.get_mut().1.send_close_notify();
    t.flush().await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 512];
    let wait = async {
        loop {
            match t.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), wait).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("CCC: {e}")),
        Err(_) => return Err("CCC: client did not send close_notify".into()),
    }
    let (tcp, _) = t.into_inner();
    Ok(Channel::new(MaybeTls::Plain(tcp)))
}

async fn read_backend(b: Option<&mut BackendSession>) -> Result<Reply, ReplyReadError> {
    match b {
        Some(b) => b.chan.read_reply().await,
        None => std::future::pending().await,
    }
}

impl Session {
    fn deadline(&self) -> Instant {
        let t = &self.ctx.timeouts;
        if let Some(tr) = &self.transfer {
            if let Some(at) = tr.outcome_at {
                // The data legs are done; the backend owes its final reply.
                return at + t.data_idle;
            }
            // A running relay enforces its own data idle timeout.
            return Instant::now() + t.data_idle + t.idle;
        }
        if !self.logged_in {
            return self.started + t.login;
        }
        self.last_activity + t.idle
    }

    fn transfer_running(&self) -> bool {
        self.transfer.as_ref().is_some_and(|t| t.outcome.is_none())
    }

    /// The transfer's final reply is being held until its data legs finish;
    /// later backend replies wait behind it (order must be kept).
    fn holding_final(&self) -> bool {
        self.transfer
            .as_ref()
            .is_some_and(|t| t.final_reply.is_some())
    }

    async fn reply(&self, client: &mut Channel<ClientStream>, code: u16, text: &str) -> Flow {
        send_or_close(client, &Reply::new(code, text)).await
    }

    async fn handle_line(&mut self, client: &mut Channel<ClientStream>, line: &[u8]) -> Flow {
        let cmd = match parse_command(line) {
            Ok(c) => c,
            Err(e) => {
                info!(error = %e, "bad command");
                let code = match e {
                    CommandError::Empty | CommandError::BadVerb(_) => 500,
                    CommandError::BadArgument { .. } | CommandError::MissingArgument(_) => 501,
                };
                return self.reply(client, code, &format!("{e}")).await;
            }
        };
        debug!(cmd = %cmd.log_line(), "client command");
        self.ctx.metrics.command(cmd.verb());
        if let Command::Type(arg) = &cmd {
            self.binary = matches!(arg.first(), Some(b'I' | b'i' | b'L' | b'l'));
        }
        let hints_download = match &cmd {
            Command::Type(arg) => matches!(arg.first(), Some(b'A' | b'a')),
            Command::Other { verb, .. } => matches!(verb.as_str(), "SIZE" | "MDTM"),
            _ => false,
        };
        if hints_download {
            if let Some(PendingData {
                client: ClientLeg::Pinhole(p),
                ..
            }) = &self.pending_data
            {
                p.hint_download();
            }
        }
        let busy = self.transfer.is_some();
        if self.logged_in && !policy::command_allowed(&self.commands, cmd.verb()) {
            info!(verb = cmd.verb(), "command refused by policy");
            return self
                .reply(client, 550, "Command not allowed by gateway policy")
                .await;
        }
        match cmd {
            Command::Auth(mech) => self.cmd_auth(client, &mech).await,
            Command::Pbsz(_) => {
                if self.client_tls {
                    self.reply(client, 200, "PBSZ=0").await
                } else {
                    self.reply(client, 503, "PBSZ requires AUTH TLS first")
                        .await
                }
            }
            Command::Prot(level) => {
                if !self.client_tls {
                    return self
                        .reply(client, 503, "PROT requires AUTH TLS first")
                        .await;
                }
                if level == ProtLevel::Clear && !self.ctx.cfg.tls.allow_clear_data {
                    // RFC 2228 §5: 534 = request denied for policy reasons.
                    return self
                        .reply(
                            client,
                            534,
                            "Clear data connections are not allowed by policy",
                        )
                        .await;
                }
                self.prot = level;
                let text = match level {
                    ProtLevel::Private => "Protection level set to Private",
                    ProtLevel::Clear => "Protection level set to Clear",
                };
                self.reply(client, 200, text).await
            }
            Command::Ccc => self.cmd_ccc(client, busy).await,
            Command::Port(_) | Command::Eprt(_) if busy => {
                self.reply(client, 503, "Transfer in progress").await
            }
            Command::Port(v4) => self.cmd_active(client, SocketAddr::V4(v4)).await,
            Command::Eprt(a) => self.cmd_active(client, a).await,
            Command::Rein => self.cmd_rein(client, busy).await,
            Command::Feat => self.cmd_feat(client, busy).await,
            Command::Quit => {
                let _ = self.reply(client, 221, "Goodbye").await;
                Flow::Close
            }
            Command::User(_) | Command::Pass(_) | Command::Acct(_) => {
                if busy {
                    return self.reply(client, 503, "Transfer in progress").await;
                }
                self.cmd_login(client, &cmd, line).await
            }
            Command::Epsv(EpsvArg::All) => {
                // RFC 2428 §4: after EPSV ALL only EPSV may set up data connections.
                self.epsv_all = true;
                self.reply(client, 200, "EPSV ALL ok").await
            }
            Command::Pasv | Command::Epsv(_) => {
                if busy {
                    return self.reply(client, 503, "Transfer in progress").await;
                }
                self.cmd_passive(client, &cmd).await
            }
            Command::Transfer { kind, .. } => {
                if busy {
                    return self.reply(client, 503, "Transfer in progress").await;
                }
                self.cmd_transfer(client, kind, line).await
            }
            Command::Abor if busy => self.cmd_abort(client).await,
            Command::Syst if self.backend.is_none() => {
                self.reply(client, 215, "UNIX Type: L8").await
            }
            Command::Noop if self.backend.is_none() => self.reply(client, 200, "NOOP ok").await,
            Command::Opts(_) if self.backend.is_none() => self.reply(client, 200, "OPTS ok").await,
            // Before USER there is no backend: `forward` answers 530.
            _ => self.forward(client, line).await,
        }
    }

    /// Forward a client line as-is; its replies come back through the loop.
    async fn forward(&mut self, client: &mut Channel<ClientStream>, line: &[u8]) -> Flow {
        let Some(b) = self.backend.as_mut() else {
            return self
                .reply(client, 530, "Please login with USER and PASS")
                .await;
        };
        if let Err(e) = b.chan.send_line(line).await {
            return self.backend_lost(client, &format!("write: {e}")).await;
        }
        self.outstanding += 1;
        Flow::Continue
    }

    async fn backend_lost(&mut self, client: &mut Channel<ClientStream>, why: &str) -> Flow {
        warn!(error = why, "backend control connection lost");
        self.outcome = SessionOutcome::BackendUnavailable;
        let _ = client
            .send_reply(&Reply::new(
                421,
                "Backend connection lost; closing control connection",
            ))
            .await;
        Flow::Close
    }

    /// Forward replies still owed for pipelined commands, so that a
    /// synchronous request that follows reads its own reply.
    async fn drain_outstanding(&mut self, client: &mut Channel<ClientStream>) -> Result<(), Flow> {
        while self.outstanding > 0 || self.swallow_noops > 0 {
            let limit = self.ctx.timeouts.connect;
            let Some(b) = self.backend.as_mut() else {
                return Ok(());
            };
            match b.chan.read_reply_timeout(limit).await {
                Ok(r) if self.swallow_noops > 0 && r.code == 200 => {
                    self.swallow_noops -= 1;
                }
                Ok(r) => {
                    if r.is_final() {
                        self.outstanding = self.outstanding.saturating_sub(1);
                    }
                    if let Flow::Close = send_or_close(client, &r).await {
                        return Err(Flow::Close);
                    }
                }
                Err(e) => return Err(self.backend_lost(client, &e.to_string()).await),
            }
        }
        Ok(())
    }

    /// Send one command to the backend and read its final reply (1xx are skipped).
    async fn request(
        &mut self,
        client: &mut Channel<ClientStream>,
        line: &[u8],
        limit: Duration,
    ) -> Result<Reply, Flow> {
        self.drain_outstanding(client).await?;
        let Some(b) = self.backend.as_mut() else {
            return Err(self
                .reply(client, 530, "Please login with USER and PASS")
                .await);
        };
        let res = async {
            b.chan.send_line(line).await?;
            loop {
                let r = b.chan.read_reply_timeout(limit).await?;
                if r.is_final() {
                    return Ok::<Reply, ReplyReadError>(r);
                }
            }
        }
        .await;
        match res {
            Ok(r) => Ok(r),
            Err(e) => Err(self.backend_lost(client, &e.to_string()).await),
        }
    }

    async fn cmd_auth(&mut self, client: &mut Channel<ClientStream>, mech: &str) -> Flow {
        if self.client_tls {
            return self.reply(client, 503, "Already using TLS").await;
        }
        if self.ctx.cfg.tls.mode != TlsMode::Explicit || self.acceptor.is_none() {
            return self
                .reply(client, 502, "AUTH not available on this listener")
                .await;
        }
        if !matches!(mech, "TLS" | "SSL" | "TLS-C" | "TLS-P") {
            return self
                .reply(client, 504, "Unsupported AUTH mechanism; use AUTH TLS")
                .await;
        }
        if self.backend.is_some() {
            // RFC 4217 §4: AUTH is expected before login; after USER the
            // backend leg already carries the session, keep it simple and strict.
            return self
                .reply(client, 503, "AUTH TLS must come before USER")
                .await;
        }
        match self.reply(client, 234, "Proceed with negotiation.").await {
            Flow::Continue => Flow::StartTls,
            other => other,
        }
    }

    async fn start_tls(
        &mut self,
        client: Channel<ClientStream>,
    ) -> Result<Channel<ClientStream>, String> {
        if client.buffered() > 0 {
            // Bytes sent after AUTH TLS but before the handshake were never
            // protected; executing them later would be STARTTLS command injection.
            warn!(
                bytes = client.buffered(),
                "plaintext pipelined after AUTH TLS; closing"
            );
            self.outcome = SessionOutcome::ClientError;
            return Err("plaintext after AUTH TLS".into());
        }
        let Some(acceptor) = self.acceptor.as_ref().map(|a| a.control.clone()) else {
            return Err("no TLS acceptor".into());
        };
        let MaybeTls::Plain(tcp) = client.into_stream() else {
            return Err("already TLS".into());
        };
        match tokio::time::timeout(self.ctx.timeouts.login, acceptor.accept(tcp)).await {
            Ok(Ok(t)) => {
                let version = crate::tls::version_name(t.get_ref().1.protocol_version());
                info!(version, "client TLS established");
                self.ctx
                    .metrics
                    .tls_handshake(Side::Client, version, true, false);
                self.client_tls = true;
                Ok(Channel::new(MaybeTls::Tls(Box::new(t))))
            }
            Ok(Err(e)) => {
                self.ctx
                    .metrics
                    .tls_handshake(Side::Client, "none", false, false);
                Err(format!("client TLS handshake failed: {e}"))
            }
            Err(_) => Err("client TLS handshake timed out".into()),
        }
    }

    async fn cmd_ccc(&mut self, client: &mut Channel<ClientStream>, busy: bool) -> Flow {
        if !self.client_tls || !client.stream.is_tls() {
            return self
                .reply(client, 533, "Control channel is not protected")
                .await;
        }
        if !self.ctx.cfg.tls.allow_ccc {
            return self
                .reply(client, 534, "CCC is not allowed by policy")
                .await;
        }
        if busy {
            return self.reply(client, 503, "Transfer in progress").await;
        }
        match self
            .reply(client, 200, "CCC ok; control channel continues in clear")
            .await
        {
            Flow::Continue => Flow::ClearControl,
            other => other,
        }
    }

    /// RFC 959 `REIN`: the backend forgets the login; the client leg keeps its
    /// TLS (RFC 4217 leaves that to the server) and must log in again.
    async fn cmd_rein(&mut self, client: &mut Channel<ClientStream>, busy: bool) -> Flow {
        if busy {
            return self.reply(client, 503, "Transfer in progress").await;
        }
        self.pending_data = None;
        self.logged_in = false;
        self.user.clear();
        self.started = Instant::now();
        if self.backend.is_none() {
            return self.reply(client, 220, "Service ready for new user").await;
        }
        match self
            .request(client, b"REIN", self.ctx.timeouts.connect)
            .await
        {
            Ok(r) => send_or_close(client, &r).await,
            Err(flow) => flow,
        }
    }

    async fn cmd_feat(&mut self, client: &mut Channel<ClientStream>, busy: bool) -> Flow {
        let opts = FeatOptions {
            tls_offered: self.ctx.cfg.tls.mode != TlsMode::None,
            epsv: true,
            active: self.ctx.cfg.active.enabled,
        };
        let backend_feat = if self.backend.is_some() && !busy {
            match self
                .request(client, b"FEAT", self.ctx.timeouts.connect)
                .await
            {
                Ok(r) => Some(r),
                Err(flow) => return flow,
            }
        } else {
            None
        };
        send_or_close(client, &control::gateway_feat(backend_feat.as_ref(), &opts)).await
    }

    async fn cmd_login(
        &mut self,
        client: &mut Channel<ClientStream>,
        cmd: &Command,
        line: &[u8],
    ) -> Flow {
        let tls_cfg = &self.ctx.cfg.tls;
        if tls_cfg.require && !self.client_tls {
            // RFC 4217 §11: refuse before the password crosses in clear.
            info!("login refused: TLS required");
            self.ctx
                .metrics
                .login(&self.ctx.cfg.name, LoginResult::RefusedNoTls);
            return self
                .reply(
                    client,
                    530,
                    "TLS required on this server: use AUTH TLS before USER",
                )
                .await;
        }
        let mut to_backend = line.to_vec();
        if let Command::User(name) = cmd {
            let login = String::from_utf8_lossy(name).into_owned();
            self.user = login.clone();
            info!(user = %self.user, "login attempt");
            let ctx = self.ctx.clone();
            let choice = match policy::route(&ctx.cfg, &login) {
                Ok(c) => c,
                Err(e) => {
                    info!(error = ?e, "login refused: unknown backend in user@backend");
                    return self.reply(client, 530, "Login incorrect").await;
                }
            };
            self.commands = choice
                .route
                .map(|r| r.commands.clone())
                .unwrap_or(config::CommandPolicy::Any);
            to_backend = format!("USER {}", choice.login).into_bytes();
            let same = self
                .chosen
                .as_ref()
                .is_some_and(|c| choice.backends.contains(&c.backend.cfg.name));
            if self.backend.is_none() || !same {
                self.backend = None;
                self.chosen = None;
                self.logged_in = false;
                let candidates = self.candidates(&choice);
                if let Err(flow) = self.connect_backend(client, candidates).await {
                    return flow;
                }
            }
        }
        if self.backend.is_none() {
            return self.reply(client, 503, "Login with USER first").await;
        }
        let r = match self
            .request(client, &to_backend, self.ctx.timeouts.login)
            .await
        {
            Ok(r) => r,
            Err(flow) => return flow,
        };
        if r.code == 230 {
            self.logged_in = true;
            info!("logged in");
            self.ctx.metrics.login(&self.ctx.cfg.name, LoginResult::Ok);
            self.shared.login_ok(self.client_ip);
        } else if matches!(cmd, Command::Pass(_)) && r.class() >= 4 {
            info!(code = r.code, "login failed");
            self.ctx
                .metrics
                .login(&self.ctx.cfg.name, LoginResult::Failed);
            if self.shared.login_failed(self.client_ip) {
                // RFC 2577 §4: limit password guessing.
                warn!(
                    reason = "failed_logins",
                    "too many failed logins; cooling down"
                );
                let _ = send_or_close(client, &r).await;
                let _ = self
                    .reply(client, 421, "Too many failed logins; try again later")
                    .await;
                self.outcome = SessionOutcome::RefusedPolicy;
                return Flow::Close;
            }
        }
        send_or_close(client, &r).await
    }

    /// Backends to try for a route choice, in order: the balancing policy's
    /// pick first, the others as fallback; unhealthy ones last.
    fn candidates(&self, choice: &policy::RouteChoice<'_>) -> Vec<Arc<Backend>> {
        let mut list: Vec<Arc<Backend>> = choice
            .backends
            .iter()
            .filter_map(|n| self.ctx.backends.get(n).cloned())
            .collect();
        if list.len() > 1 {
            match choice.balance {
                config::Balance::RoundRobin => {
                    let idx = choice
                        .route
                        .and_then(|r| self.ctx.cfg.routes.iter().position(|x| std::ptr::eq(x, r)));
                    let start = idx
                        .and_then(|i| self.ctx.round_robin.get(i))
                        .map(|c| c.fetch_add(1, Ordering::Relaxed))
                        .unwrap_or(0);
                    let n = list.len();
                    list.rotate_left(start % n);
                }
                config::Balance::LeastConnections => {
                    list.sort_by_key(|b| b.active.load(Ordering::Relaxed));
                }
            }
        }
        // Stable: keeps the balancing order among healthy and among unhealthy.
        list.sort_by_key(|b| self.shared.health.backend_healthy(&b.cfg.name) == Some(false));
        list
    }

    /// Connect to the first candidate that answers; `421` and close when none does.
    async fn connect_backend(
        &mut self,
        client: &mut Channel<ClientStream>,
        candidates: Vec<Arc<Backend>>,
    ) -> Result<(), Flow> {
        let mut last = String::from("no backend configured");
        for backend in candidates {
            match backend::connect(&backend, self.ctx.timeouts.connect).await {
                Ok((b, _greeting)) => {
                    info!(
                        backend = %backend.cfg.name,
                        peer = %b.peer,
                        tls = b.tls_version,
                        ms = b.connect_latency.as_millis() as u64,
                        "backend connected"
                    );
                    self.backend = Some(b);
                    self.chosen = Some(BackendUse::new(backend));
                    return Ok(());
                }
                Err(e) => {
                    warn!(backend = %backend.cfg.name, error = %e, "backend unavailable");
                    last = format!("Backend {} unavailable: {e}", backend.cfg.name);
                }
            }
        }
        self.outcome = SessionOutcome::BackendUnavailable;
        let _ = self.reply(client, 421, &last).await;
        Err(Flow::Close)
    }

    /// Gate shared by PASV/EPSV/PORT/EPRT: logged in, and data protection
    /// allowed by policy.
    async fn data_setup_allowed(&mut self, client: &mut Channel<ClientStream>) -> Result<(), Flow> {
        if self.backend.is_none() || !self.logged_in {
            return Err(self
                .reply(client, 530, "Please login with USER and PASS")
                .await);
        }
        if self.client_tls && self.prot == ProtLevel::Clear && !self.ctx.cfg.tls.allow_clear_data {
            return Err(self
                .reply(
                    client,
                    534,
                    "Data connections must be protected: use PROT P",
                )
                .await);
        }
        Ok(())
    }

    /// TLS for the client data leg: the session's acceptors under `PROT P`.
    fn client_data_tls(&self) -> Option<DataTls> {
        match self.prot {
            ProtLevel::Private => self.acceptor.as_ref().map(|a| DataTls {
                acceptors: a.clone(),
                require_reuse: self.ctx.cfg.tls.require_data_reuse,
            }),
            ProtLevel::Clear => None,
        }
    }

    async fn cmd_passive(&mut self, client: &mut Channel<ClientStream>, cmd: &Command) -> Flow {
        if self.epsv_all && matches!(cmd, Command::Pasv) {
            return self
                .reply(client, 503, "Only EPSV allowed after EPSV ALL")
                .await;
        }
        if let Command::Epsv(EpsvArg::Protocol(p)) = cmd {
            // RFC 2428 §3: the client's network protocol must be the one we serve it on.
            let ours = if self.local_addr.ip().to_canonical().is_ipv4() {
                1
            } else {
                2
            };
            if *p != ours {
                return self
                    .reply(
                        client,
                        522,
                        &format!("Network protocol not supported, use ({ours})"),
                    )
                    .await;
            }
        }
        if let Err(flow) = self.data_setup_allowed(client).await {
            return flow;
        }
        // Drop an earlier unused pinhole: one pinhole per PASV.
        self.pending_data = None;

        let passive = &self.ctx.cfg.passive;
        let spec = PinholeSpec {
            bind_ip: passive.bind,
            ports: passive.ports,
            client_ip: self.client_ip,
            tls: self.client_data_tls(),
            lifetime: self.ctx.timeouts.pinhole,
            metrics: self.ctx.metrics.clone(),
            kernel: self.ctx.kernel.clone(),
        };
        // Bind first: an exhausted range is answered without bothering the backend.
        let pinhole = match Pinhole::open(spec) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, reason = e.kind(), "pinhole refused");
                return self
                    .reply(client, 425, &format!("Cannot open data port: {e}"))
                    .await;
            }
        };
        if let Some(k) = &self.ctx.kernel {
            // Before the reply: the client may connect as soon as it reads it.
            if let Err(e) = k
                .add(
                    self.client_ip,
                    pinhole.local.port(),
                    self.ctx.timeouts.pinhole,
                )
                .await
            {
                warn!(error = %e, "cannot open kernel pinhole");
                return self.reply(client, 425, "Cannot open data port").await;
            }
        }
        let (adv_ip, adv_port) =
            passive.advertised(self.client_ip, self.local_addr.ip(), pinhole.local.port());
        let reply = match (cmd, adv_ip.to_canonical()) {
            (Command::Pasv, IpAddr::V4(v4)) => {
                render_227(std::net::SocketAddrV4::new(v4, adv_port))
            }
            (Command::Pasv, IpAddr::V6(_)) => {
                return self
                    .reply(client, 425, "PASV needs an IPv4 address; use EPSV")
                    .await;
            }
            _ => render_229(adv_port),
        };
        let backend = match self.backend_leg(client, false).await {
            Ok(Some(b)) => b,
            Ok(None) => return Flow::Continue,
            Err(flow) => return flow,
        };
        debug!(port = pinhole.local.port(), adv = %adv_ip, adv_port, "pinhole open");
        self.pending_data = Some(PendingData {
            client: ClientLeg::Pinhole(pinhole),
            backend,
        });
        send_or_close(client, &reply).await
    }

    /// `PORT`/`EPRT`: the client listens; the gateway will connect to it.
    async fn cmd_active(&mut self, client: &mut Channel<ClientStream>, target: SocketAddr) -> Flow {
        if !self.ctx.cfg.active.enabled {
            return self
                .reply(
                    client,
                    502,
                    "Active mode is disabled here; use PASV or EPSV",
                )
                .await;
        }
        if self.epsv_all {
            return self
                .reply(client, 503, "Only EPSV allowed after EPSV ALL")
                .await;
        }
        if let Err(flow) = self.data_setup_allowed(client).await {
            return flow;
        }
        if let Err(refusal) = control::check_active_target(self.client_ip, target) {
            warn!(target = %target, reason = refusal.as_str(), "active-mode target refused");
            self.ctx.metrics.pinhole_refused(PinholeRefusal::Bounce);
            let (code, text) = refusal.reply();
            return self.reply(client, code, text).await;
        }
        self.pending_data = None;
        let backend = match self.backend_leg(client, true).await {
            Ok(Some(b)) => b,
            Ok(None) => return Flow::Continue,
            Err(flow) => return flow,
        };
        self.pending_data = Some(PendingData {
            client: ClientLeg::Active(target),
            backend,
        });
        self.reply(client, 200, "PORT command successful").await
    }

    /// Set up the backend side of the next transfer per the backend's
    /// `data_mode`. `Ok(None)`: the backend refused and the client has had
    /// its reply.
    async fn backend_leg(
        &mut self,
        client: &mut Channel<ClientStream>,
        client_active: bool,
    ) -> Result<Option<BackendLeg>, Flow> {
        let mode = self
            .chosen
            .as_ref()
            .map_or(self.ctx.backend.cfg.data_mode, |c| c.backend.cfg.data_mode);
        let active = match mode {
            DataMode::Passive => false,
            DataMode::Active => true,
            DataMode::SameAsClient => client_active,
        };
        if !active {
            return Ok(self.backend_passive(client).await?.map(BackendLeg::Passive));
        }
        let Some(b) = self.backend.as_ref() else {
            return Err(Flow::Close);
        };
        let listener = match b.data.listen(b.local.ip()) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot listen for the backend's data connection");
                return Err(self
                    .reply(client, 425, "Cannot open data port toward the backend")
                    .await);
            }
        };
        let line = match listener.local {
            SocketAddr::V4(v4) => format!("PORT {}", control::render_port_arg(v4)),
            v6 => format!("EPRT {}", control::render_eprt_arg(v6)),
        };
        let r = self
            .request(client, line.as_bytes(), self.ctx.timeouts.connect)
            .await?;
        if !r.is_success() {
            return Err(send_or_close(client, &r).await);
        }
        Ok(Some(BackendLeg::Active(listener)))
    }

    /// Ask the backend for passive mode; returns its data port (the address
    /// it prints is ignored: we connect to its control peer IP).
    async fn backend_passive(
        &mut self,
        client: &mut Channel<ClientStream>,
    ) -> Result<Option<u16>, Flow> {
        let v4 = self.backend.as_ref().is_some_and(|b| b.peer.is_ipv4());
        let limit = self.ctx.timeouts.connect;
        if v4 {
            let r = self.request(client, b"PASV", limit).await?;
            if r.code == 227 {
                return match control::parse_227(&r) {
                    Ok(a) => Ok(Some(a.port())),
                    Err(e) => {
                        warn!(error = %e, reply = %r.text(), "backend sent a malformed 227");
                        Err(self
                            .reply(client, 425, "Backend sent a malformed passive reply")
                            .await)
                    }
                };
            }
            if r.class() != 5 {
                return Err(send_or_close(client, &r).await);
            }
        }
        let r = self.request(client, b"EPSV", limit).await?;
        if r.code != 229 {
            return Err(send_or_close(client, &r).await);
        }
        match control::parse_229(&r) {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                warn!(error = %e, reply = %r.text(), "backend sent a malformed 229");
                Err(self
                    .reply(client, 425, "Backend sent a malformed passive reply")
                    .await)
            }
        }
    }

    async fn cmd_transfer(
        &mut self,
        client: &mut Channel<ClientStream>,
        kind: control::TransferKind,
        line: &[u8],
    ) -> Flow {
        if self.backend.is_none() || !self.logged_in {
            return self
                .reply(client, 530, "Please login with USER and PASS")
                .await;
        }
        let Some(pending) = self.pending_data.take() else {
            return self.reply(client, 425, "Use PASV or EPSV first").await;
        };
        if let Err(flow) = self.drain_outstanding(client).await {
            return flow;
        }
        let client_leg = match pending.client {
            ClientLeg::Pinhole(p) => transfer::ClientLeg::Pinhole(p),
            ClientLeg::Active(target) => transfer::ClientLeg::Active(ActiveSpec {
                target,
                source_ip: self.local_addr.ip(),
                source_ports: self.ctx.cfg.active.ports,
                tls: self.client_data_tls(),
                download: kind.direction() == control::Direction::Download,
                limit: self.ctx.timeouts.connect,
                metrics: self.ctx.metrics.clone(),
            }),
        };
        let Some(b) = self.backend.as_mut() else {
            return Flow::Close;
        };
        if let Err(e) = b.chan.send_line(line).await {
            return self.backend_lost(client, &format!("write: {e}")).await;
        }
        let backend_leg = match pending.backend {
            BackendLeg::Passive(port) => transfer::BackendLeg::Passive(b.data.clone(), port),
            BackendLeg::Active(l) => transfer::BackendLeg::Active(b.data.clone(), l),
        };
        self.last_backend_activity = Instant::now();
        self.transfer = Some(Transfer::start(
            kind,
            transfer_path(line),
            client_leg,
            backend_leg,
            &self.ctx.timeouts,
            self.ctx.cfg.limits.bandwidth,
        ));
        Flow::Continue
    }

    async fn cmd_abort(&mut self, client: &mut Channel<ClientStream>) -> Flow {
        let Some(mut t) = self.transfer.take() else {
            return Flow::Continue;
        };
        t.abort();
        info!(kind = t.kind.verb(), "transfer aborted by client");
        self.account(&t, TransferResult::Aborted, 0, false);
        if t.final_reply.is_some() {
            // The backend already finished; tell the client its transfer was cut.
            if let Flow::Close = self.reply(client, 426, "Transfer aborted").await {
                return Flow::Close;
            }
        } else {
            // The backend still owes the transfer's final reply (426/226).
            self.outstanding += 1;
        }
        self.forward(client, b"ABOR").await
    }

    /// Keep the backend control leg alive through NATs during a long transfer;
    /// the reply is swallowed in `handle_backend`.
    async fn keepalive_noop(&mut self, client: &mut Channel<ClientStream>) -> Flow {
        self.last_backend_activity = Instant::now();
        let Some(b) = self.backend.as_mut() else {
            return Flow::Continue;
        };
        if let Err(e) = b.chan.send_line(b"NOOP").await {
            return self.backend_lost(client, &format!("write: {e}")).await;
        }
        debug!("keepalive NOOP sent to backend");
        self.swallow_noops += 1;
        Flow::Continue
    }

    async fn handle_backend(
        &mut self,
        client: &mut Channel<ClientStream>,
        r: Result<Reply, ReplyReadError>,
    ) -> Flow {
        let reply = match r {
            Ok(r) => r,
            Err(e) => return self.backend_lost(client, &e.to_string()).await,
        };
        self.last_backend_activity = Instant::now();
        if self.swallow_noops > 0 && reply.code == 200 {
            // The answer to our own keepalive NOOP; transfer replies are never 200.
            self.swallow_noops -= 1;
            return Flow::Continue;
        }
        if let Some(t) = self.transfer.as_mut() {
            if reply.is_preliminary() {
                return send_or_close(client, &reply).await;
            }
            if reply.is_success() && t.outcome.is_none() {
                // Hold 226 until the client's data leg is completely written.
                t.final_reply = Some(reply);
                return Flow::Continue;
            }
            let t = match self.transfer.take() {
                Some(t) => t,
                None => return Flow::Continue,
            };
            return self.finish_transfer(client, t, reply).await;
        }
        if reply.is_final() {
            self.outstanding = self.outstanding.saturating_sub(1);
        }
        if reply.code == 421 {
            let _ = send_or_close(client, &reply).await;
            return Flow::Close;
        }
        send_or_close(client, &reply).await
    }

    async fn transfer_done(
        &mut self,
        client: &mut Channel<ClientStream>,
        outcome: TransferOutcome,
    ) -> Flow {
        let Some(t) = self.transfer.as_mut() else {
            return Flow::Continue;
        };
        t.set_outcome(outcome);
        if let Some(reply) = t.final_reply.take() {
            if let Some(t) = self.transfer.take() {
                return self.finish_transfer(client, t, reply).await;
            }
        }
        Flow::Continue
    }

    /// Both the data legs and the backend's final reply are in: tell the client.
    /// A transfer that failed on either data leg is never reported as 226.
    async fn finish_transfer(
        &mut self,
        client: &mut Channel<ClientStream>,
        mut t: Transfer,
        backend_reply: Reply,
    ) -> Flow {
        t.abort();
        // The control connection was busy until now, not idle: the idle
        // timer restarts when the transfer's reply goes out.
        self.last_activity = Instant::now();
        let outcome = t.outcome.take();
        let kind = t.kind.verb();
        let secs = t.started.elapsed().as_secs_f64();
        let to_client = match (&outcome, backend_reply.is_success()) {
            (Some(Ok(bytes)), true) => {
                info!(kind, bytes, secs, "transfer complete");
                self.account(&t, TransferResult::Ok, *bytes, true);
                backend_reply
            }
            (Some(Err(e)), _) => {
                warn!(kind, error = %e, backend = %backend_reply.text(), "transfer failed");
                let result = match e {
                    TransferError::Aborted => TransferResult::Aborted,
                    _ => TransferResult::Failed,
                };
                self.account(&t, result, 0, false);
                e.reply()
            }
            (_, false) | (None, true) => {
                info!(
                    kind,
                    code = backend_reply.code,
                    "transfer refused or failed by backend"
                );
                self.account(&t, TransferResult::Refused, 0, false);
                if let Some(Err(TransferError::Aborted)) = outcome {
                    Reply::new(426, "Transfer aborted")
                } else {
                    backend_reply
                }
            }
        };
        send_or_close(client, &to_client).await
    }
}

impl Session {
    /// Metrics and transfer log for one finished transfer.
    fn account(&self, t: &Transfer, result: TransferResult, bytes: u64, complete: bool) {
        let dir = match t.kind.direction() {
            control::Direction::Download => Dir::Download,
            control::Direction::Upload => Dir::Upload,
        };
        let secs = t.started.elapsed().as_secs_f64();
        let m = &self.ctx.metrics;
        m.transfer_finished(&self.ctx.cfg.name, dir, result, bytes, bytes, secs);
        self.ctx.xferlog.record(&TransferRecord {
            end: std::time::SystemTime::now(),
            secs,
            client_ip: self.client_ip,
            bytes,
            path: t.path.clone(),
            binary: self.binary,
            direction: dir,
            user: self.user.clone(),
            listener: self.ctx.cfg.name.clone(),
            backend: self.chosen.as_ref().map_or_else(
                || self.ctx.backend.cfg.name.clone(),
                |c| c.backend.cfg.name.clone(),
            ),
            complete,
        });
    }
}

/// The path argument of a transfer command line, for the transfer log.
fn transfer_path(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    match text.split_once(' ') {
        Some((_, arg)) => arg.trim().to_string(),
        None => String::new(),
    }
}

async fn send_or_close(client: &mut Channel<ClientStream>, r: &Reply) -> Flow {
    match client.send_reply(r).await {
        Ok(()) => Flow::Continue,
        Err(e) => {
            debug!(error = %e, "client control write failed");
            Flow::Close
        }
    }
}
