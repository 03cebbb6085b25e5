//! One client session: the task that owns a client control connection, the
//! backend control connection behind it, and at most one transfer at a time.
//!
//! Flow: greet → (AUTH TLS) → USER opens the backend leg (on an
//! `auth: gateway` route only after `PASS` passed the gateway's own check,
//! [`crate::auth`]) → commands pass
//! through; the gateway answers itself what concerns the client leg (AUTH,
//! PBSZ, PROT, FEAT, EPSV ALL) and rewrites what carries addresses
//! (PASV/EPSV → its own pinhole). Transfer replies are ordered: the backend's
//! final reply (226) reaches the client only after the client data leg has
//! been completely written and closed.
//!
//! Every protocol decision is made by the pure [`state::Machine`]; this
//! module is its driver: it owns the sockets, TLS, pinholes and the transfer
//! task, performs the machine's actions and feeds their results back.
//! Parsing and rewriting live in `control` (pure).

mod env;
pub mod outcome;
pub mod state;
mod transfer;

pub use outcome::{SessionOutcome, TransferResult};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::auth::AuthFailure;
use crate::backend::pool::{InUse, Pool};
use crate::backend::{BackendListener, BackendSession};
use crate::channel::{Channel, ReplyReadError};
use crate::config::{self, TlsMode};
use crate::control::{self, Framed, Reply};
use crate::data::active::ActiveSpec;
use crate::data::pinhole::DataTls;
use crate::data::{Pinhole, PinholeSpec};
use crate::gateway::admit::Admitted;
use crate::listener::ListenerCtx;
use crate::metrics::{AuthResult, Handshake, PinholeRefusal, Resumption, Side};
use crate::policy;
use crate::shared::{PortHolder, SessionState, SessionUpdate, Shared};
use crate::stream::{ClientStream, HoldIo, MaybeTls};
use crate::tls::SessionAcceptors;

use env::SessionEnv;
use state::{
    Action, BackendSide, CertLogin, ClientSide, Input, Machine, RouteFailure, Routed, Settings,
    TransferFailure,
};
use transfer::{Transfer, TransferError};

/// Run one admitted session to its end; returns its outcome and, when it
/// ended on an error, what went wrong (for the closing log line). Never
/// panics on peer input.
pub async fn run(
    admitted: Admitted,
    ctx: Arc<ListenerCtx>,
    shared: Arc<Shared>,
) -> (SessionOutcome, Option<String>) {
    let Admitted { tcp, client, conn } = admitted;
    match run_inner(tcp, client, ctx, shared, conn).await {
        Ok(outcome) => (outcome, None),
        Err(End(outcome, why)) => (outcome, Some(why)),
    }
}

async fn run_inner(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ListenerCtx>,
    shared: Arc<Shared>,
    mut conn: crate::shared::ConnGuard,
) -> Result<SessionOutcome, End> {
    use SessionOutcome as O;
    let accepted = Instant::now();
    // Absolute: neither REIN nor a new USER moves it (it only starts again
    // when a session that had logged in is logged out).
    let mut login_deadline = accepted + ctx.timeouts.login;
    let mut was_logged_in = false;
    let mut drain = shared.drain_signal();
    let mut force = shared.force_signal();
    crate::net::tune(&tcp);
    crate::net::urgent_inline(&tcp);
    // Bounds what a client that never reads its replies can make the kernel
    // queue for it; the write timeout (`timeouts.control_write`) then ends it.
    let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(CONTROL_SNDBUF);
    let local_addr = tcp
        .local_addr()
        .map_err(|e| End(O::ClientError, e.to_string()))?;
    let acceptor = match ctx
        .tls
        .as_ref()
        .map(|t| t.session_acceptors(peer.ip()))
        .transpose()
    {
        Ok(a) => a,
        Err(e) => return Err(End(O::TlsFailed, format!("cannot set up session TLS: {e}"))),
    };
    let mut cert_identity = None;
    let stream: ClientStream = match (ctx.cfg.tls.mode, &acceptor) {
        (TlsMode::Implicit, Some(acc)) => {
            match tokio::time::timeout_at(
                login_deadline,
                Box::pin(acc.control.accept(HoldIo::pass(tcp))),
            )
            .await
            {
                Ok(Ok(t)) => {
                    cert_identity = client_cert_identity(acc, t.get_ref().1);
                    let version = crate::tls::version_name(t.get_ref().1.protocol_version());
                    ctx.metrics.tls_handshake(
                        Side::Client,
                        version,
                        Handshake::Ok,
                        Resumption::Full,
                    );
                    MaybeTls::Tls(Box::new(t))
                }
                Ok(Err(e)) if closed_early(&e) => {
                    // Closed before a ClientHello: a probe, not a TLS failure.
                    return Err(End(O::Probe, format!("closed before TLS: {e}")));
                }
                Ok(Err(e)) => {
                    ctx.metrics.tls_handshake(
                        Side::Client,
                        "none",
                        Handshake::Failed,
                        Resumption::Full,
                    );
                    crate::tls::client_auth::note_failed_handshake(&e, "control", &ctx.metrics);
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
    let settings = Settings {
        tls_mode: ctx.cfg.tls.mode,
        tls_available: acceptor.is_some(),
        require_tls: ctx.cfg.tls.require,
        allow_clear_data: ctx.cfg.tls.allow_clear_data,
        allow_ccc: ctx.cfg.tls.allow_ccc,
        active_enabled: ctx.cfg.active.enabled,
        local_v4: local_addr.ip().to_canonical().is_ipv4(),
        client_ip: peer.ip(),
        timeouts: ctx.timeouts,
        banner: ctx.cfg.banner.clone(),
        unavailable: ctx.cfg.unavailable.clone(),
        max_unsolicited: ctx
            .global_limits
            .unsolicited_replies
            .unwrap_or(state::MAX_UNSOLICITED),
    };
    let (mut machine, greeting) = Machine::new(settings, stream.is_tls(), Instant::now());
    let require_user_match = ctx
        .cfg
        .tls
        .client_auth
        .as_ref()
        .is_some_and(|c| c.require_user_match);
    machine.set_cert_login(CertLogin {
        identity: cert_identity,
        require_user_match,
    });
    let mut d = Driver {
        ctx,
        shared,
        client_addr: peer,
        local_addr,
        acceptor,
        backend: None,
        chosen: None,
        pinhole: None,
        listener: None,
        transfer: None,
        login_deadline,
        user: None,
        attempt: None,
    };
    let mut client = Channel::new(stream);
    let mut actions: VecDeque<Action> = greeting.into();
    let mut draining = false;
    // In the registry (`ftpsgate ctl sessions`) until the session ends.
    let mut reg = d.shared.register(&d.ctx.cfg.name, peer);
    let mut killed = false;
    // The client sent EOF while its commands waited (lines may remain buffered).
    let mut client_eof = false;
    // The session's two timers live as long as the session, and are moved only
    // when a deadline comes earlier than they are set for. A deadline that moved
    // later (every command and reply moves the idle deadline) is checked when
    // the timer fires, which then sets it anew. A timer made per loop turn was
    // registered and removed twice per command, and registering one earlier than
    // the runtime's next timer woke its driver (an eventfd write and a wasted
    // epoll_wait per reply, measured with strace).
    let mut timer = Lazy::new();
    let mut keepalive_timer = Lazy::new();
    'session: loop {
        while let Some(action) = actions.pop_front() {
            match d.perform(&mut client, action).await {
                Step::Done => {}
                Step::Feed(input) => actions.extend(d.feed(&mut machine, input)),
                Step::StartTls => {
                    let (upgraded, identity) = Box::pin(d.start_tls(client)).await?;
                    client = upgraded;
                    machine.set_cert_login(CertLogin {
                        identity,
                        require_user_match,
                    });
                    actions.extend(d.feed(&mut machine, Input::TlsEstablished));
                }
                Step::ClearControl => {
                    client = Box::pin(clear_control(client))
                        .await
                        .map_err(|e| End(O::ClientError, e))?;
                    info!("control channel cleared (CCC)");
                }
                Step::Close => break 'session,
                Step::End(end) => return Err(end),
            }
        }
        if machine.is_closed() {
            break;
        }
        let now = Instant::now();
        match (was_logged_in, machine.logged_in()) {
            (false, true) => conn.logged_in(),
            (true, false) => {
                // Logged out by the backend's REIN: a new budget for a new login.
                login_deadline = now + d.ctx.timeouts.login;
                d.login_deadline = login_deadline;
            }
            _ => {}
        }
        was_logged_in = machine.logged_in();
        let deadline = if was_logged_in {
            machine.deadline(now)
        } else {
            machine.deadline(now).min(login_deadline)
        };
        let keepalive = machine.keepalive_at();
        timer.due_by(deadline);
        if let Some(at) = keepalive {
            keepalive_timer.due_by(at);
        }
        let transfer_running = machine.transfer_running() && d.transfer.is_some();
        reg.update(d.registry_update(&machine, transfer_running));
        // While commands wait for the backend the client is not read for
        // lines, but a client that gives up must not sit in CLOSE-WAIT until
        // a timeout: keep reading (bounded) to see its EOF.
        let watch_client =
            !machine.reads_client() && !client_eof && client.buffered() < WATCH_BUFFER;
        let input = tokio::select! {
            // Backend replies already received are paired before the next
            // client command goes out: a stray line that came with the
            // previous reply must not be taken for the next command's.
            biased;
            r = read_backend(d.backend.as_mut()), if machine.reads_backend() => match r {
                Ok(reply) => Input::BackendReply(reply),
                Err(e) => Input::BackendLost(e.to_string()),
            },
            ev = client_event(&mut client, machine.reads_client()),
                if machine.reads_client() || watch_client => match ev {
                ClientEvent::Line(Ok(None)) => Input::ClientClosed,
                // No close_notify (rustls: UnexpectedEof) or a reset between
                // commands: how wget, gftp and rclone leave; the machine
                // tells a normal end from one during a transfer.
                ClientEvent::Line(Err(e)) | ClientEvent::Filled(Err(e)) if closed_early(&e) => {
                    Input::ClientClosed
                }
                ClientEvent::Line(Err(e)) | ClientEvent::Filled(Err(e)) => {
                    Input::ClientError(e.to_string())
                }
                ClientEvent::Line(Ok(Some(Framed::TooLong))) => Input::ClientTooLong,
                ClientEvent::Line(Ok(Some(Framed::Line(line)))) => Input::ClientLine(line),
                ClientEvent::Filled(Ok(true)) => continue,
                ClientEvent::Filled(Ok(false)) if client.buffered() == 0 => Input::ClientClosed,
                ClientEvent::Filled(Ok(false)) => {
                    client_eof = true;
                    continue;
                }
            },
            o = transfer::join(d.transfer.as_mut()), if transfer_running => {
                d.transfer = None;
                if let Ok(n) = &o {
                    reg.add_bytes(*n);
                }
                Input::TransferDone(o.map_err(|e| TransferFailure {
                    reply: e.reply(),
                    aborted: matches!(e, TransferError::Aborted),
                    error: e.to_string(),
                }))
            }
            () = keepalive_timer.fired(), if keepalive.is_some() => {
                match keepalive {
                    Some(at) if keepalive_timer.reached(at) => Input::KeepaliveDue,
                    _ => continue,
                }
            }
            () = timer.fired() => {
                if !timer.reached(deadline) {
                    continue;
                }
                Input::Timeout
            }
            _ = drain.changed(), if !draining => {
                draining = true;
                Input::Shutdown
            }
            _ = force.changed() => Input::Force,
            _ = reg.killed() => {
                info!(session = reg.id(), "killed by the operator");
                let bye = Reply::new(421, "Session terminated by the administrator");
                let _ = tokio::time::timeout(Duration::from_secs(1), client.send_reply(&bye)).await;
                killed = true;
                break 'session;
            }
        };
        actions.extend(d.feed(&mut machine, input));
    }
    // Best effort: say goodbye to the backend so it logs a clean end.
    if let Some(b) = d.backend.as_mut() {
        let _ = tokio::time::timeout(Duration::from_secs(1), b.chan.send_line(b"QUIT")).await;
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::io::AsyncWriteExt::shutdown(&mut client.stream),
    )
    .await;
    Ok(if killed { O::Killed } else { machine.outcome() })
}

/// A timer set for a deadline that may move later without it being touched
/// (see the session loop): [`Lazy::due_by`] moves it only to an earlier
/// instant, and when it fires [`Lazy::reached`] tells whether the deadline
/// really passed or the timer must wait on until the later one.
struct Lazy {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Lazy {
    fn new() -> Self {
        // Far off and never polled before `due_by` sets it.
        let far = Instant::now() + Duration::from_secs(86_400 * 365);
        Lazy {
            sleep: Box::pin(tokio::time::sleep_until(far)),
        }
    }

    /// Make sure the timer fires no later than `deadline`.
    fn due_by(&mut self, deadline: Instant) {
        if deadline < self.sleep.deadline() {
            self.sleep.as_mut().reset(deadline);
        }
    }

    /// Completes when the timer fires (cancel-safe; the timer stays set).
    async fn fired(&mut self) {
        self.sleep.as_mut().await;
    }

    /// After [`Lazy::fired`]: `true` if `deadline` has passed; otherwise the
    /// timer is set for `deadline` and the caller waits again.
    fn reached(&mut self, deadline: Instant) -> bool {
        if Instant::now() >= deadline {
            return true;
        }
        self.sleep.as_mut().reset(deadline);
        false
    }
}

/// The I/O half of a session: sockets, TLS, pinholes and the transfer task,
/// operated on behalf of the [`Machine`].
struct Driver {
    ctx: Arc<ListenerCtx>,
    shared: Arc<Shared>,
    /// The client's address and port (from the PROXY header when behind a balancer).
    client_addr: SocketAddr,
    local_addr: SocketAddr,
    /// Per-session TLS acceptor (own session cache): used for the control
    /// upgrade and every data connection, so data can only resume this session.
    acceptor: Option<SessionAcceptors>,
    backend: Option<BackendSession>,
    /// The backend chosen at `USER` (counted for least-connections).
    chosen: Option<InUse>,
    /// The pinhole of the pending data setup (PASV/EPSV).
    pinhole: Option<Pinhole>,
    /// Our listener for the backend's data connection (PORT toward it).
    listener: Option<BackendListener>,
    transfer: Option<Transfer>,
    /// Until when the client may take to log in (TLS handshakes included).
    login_deadline: Instant,
    /// The name last sent with `USER` (for the user's share of the passive range).
    user: Option<String>,
    /// The `PASS` in flight, counted by the failed-login throttle; dropped
    /// with the session, it ends as a failure.
    attempt: Option<crate::shared::LoginAttempt>,
}

/// The kernel send buffer of a client control connection (Linux doubles it).
const CONTROL_SNDBUF: usize = 64 * 1024;

/// What performing one action leads to.
enum Step {
    Done,
    /// Its result, for the machine.
    Feed(Input),
    /// Handshake TLS on the client control connection.
    StartTls,
    /// End TLS on the client control connection (CCC).
    ClearControl,
    /// The session ends now.
    Close,
    /// The session ends now, on this error.
    End(End),
}

impl Driver {
    /// What the registry shows for this session now.
    fn registry_update<'a>(
        &'a self,
        machine: &'a Machine,
        transfer_running: bool,
    ) -> SessionUpdate<'a> {
        let state = match (machine.logged_in(), transfer_running) {
            (false, _) => SessionState::Login,
            (true, true) => SessionState::Transfer,
            (true, false) => SessionState::Idle,
        };
        SessionUpdate {
            user: machine.logged_in().then(|| machine.user()),
            backend: self.chosen.as_ref().map(|c| c.backend().cfg.name.as_str()),
            state,
            pinhole: self.pinhole.as_ref().map(|p| p.local),
            identity: machine.cert_identity(),
            gateway_auth: machine.gateway_authenticated(),
        }
    }

    fn feed(&mut self, machine: &mut Machine, input: Input) -> Vec<Action> {
        let backend = self.chosen.as_ref().map_or_else(
            || self.ctx.pool.default_backend().cfg.name.as_str(),
            |c| c.backend().cfg.name.as_str(),
        );
        let mut env = SessionEnv {
            ctx: &self.ctx,
            shared: &self.shared,
            client_ip: self.client_addr.ip(),
            backend,
            attempt: &mut self.attempt,
        };
        let actions = machine.handle(Instant::now(), input, &mut env);
        if actions.iter().any(|a| matches!(a, Action::Close)) {
            // A `PASS` still unanswered ends as a failure now, before the last
            // reply goes out: a client reconnecting on that reply finds the
            // failed-login count already raised.
            self.attempt = None;
        }
        if let Some(a) = &self.acceptor {
            // Which other sessions' TLS tickets this one's data connections
            // may resume (`tls::SessionAcceptors::bind_login`).
            a.bind_login(machine.logged_in().then(|| machine.user()));
        }
        actions
    }

    async fn perform(&mut self, client: &mut Channel<ClientStream>, action: Action) -> Step {
        match action {
            Action::ToClient(reply) => {
                let limit = self.ctx.timeouts.control_write;
                if reply.is_preliminary() {
                    if let Some(t) = self.transfer.as_mut() {
                        t.client_ready(self.ctx.timeouts.connect).await;
                    }
                }
                match tokio::time::timeout(limit, client.send_reply(&reply)).await {
                    Ok(Ok(())) => Step::Done,
                    Ok(Err(e)) => {
                        debug!(error = %e, "client control write failed");
                        Step::Close
                    }
                    Err(_) => {
                        warn!(
                            limit = ?limit,
                            reason = "control_write",
                            "client does not read its replies; closing"
                        );
                        Step::End(End(
                            SessionOutcome::Timeout,
                            format!("control write timed out after {limit:?}: client not reading"),
                        ))
                    }
                }
            }
            Action::ToBackend(line) => {
                if let Some(t) = self.transfer.as_mut() {
                    // An upload command waits for the client leg of a client
                    // that connected first: refused there, it is not sent, and
                    // the backend creates no file that would stay empty.
                    if t.take_command_gate()
                        && t.client_ready(self.ctx.timeouts.connect).await
                            == transfer::Gate::Refused
                    {
                        return Step::Feed(Input::TransferWithheld);
                    }
                }
                let Some(b) = self.backend.as_mut() else {
                    return Step::Feed(Input::BackendLost("no backend connection".into()));
                };
                match b.chan.send_line(&line).await {
                    Ok(()) => Step::Done,
                    Err(e) => Step::Feed(Input::BackendLost(format!("write: {e}"))),
                }
            }
            Action::StartTls => Step::StartTls,
            Action::ClearControl => Step::ClearControl,
            Action::Route { user, verified } => {
                Step::Feed(Box::pin(self.route_or_ask(&user, verified)).await)
            }
            Action::Authenticate { user, password } => Step::Feed(Input::Authenticated(
                Box::pin(self.authenticate(&user, &password)).await,
            )),
            Action::OpenPassive { protected } => Step::Feed(Input::PassiveOpened(
                Box::pin(self.open_pinhole(protected)).await,
            )),
            Action::ListenBackend => {
                let res = match self.backend.as_ref() {
                    None => Err("no backend connection".to_string()),
                    Some(b) => b.data.listen(b.local.ip()).map_err(|e| e.to_string()),
                };
                Step::Feed(Input::BackendListening(res.map(|l| {
                    let local = l.local;
                    self.listener = Some(l);
                    local
                })))
            }
            Action::DropPending => {
                self.pinhole = None;
                self.listener = None;
                Step::Done
            }
            Action::StartTransfer {
                kind,
                client,
                backend,
                protected,
            } => match self.start_transfer(kind, client, backend, protected) {
                Ok(t) => {
                    self.transfer = Some(t);
                    Step::Done
                }
                Err(failure) => Step::Feed(Input::TransferDone(Err(failure))),
            },
            Action::AbortTransfer => {
                if let Some(mut t) = self.transfer.take() {
                    t.abort();
                }
                Step::Done
            }
            Action::Close => Step::Close,
        }
    }

    /// `AUTH TLS` answered with 234: handshake on the control connection.
    /// Returns the upgraded channel and the client certificate's identity.
    async fn start_tls(
        &mut self,
        client: Channel<ClientStream>,
    ) -> Result<(Channel<ClientStream>, Option<String>), End> {
        use SessionOutcome as O;
        if client.buffered() > 0 {
            // Bytes sent after AUTH TLS but before the handshake were never
            // protected; executing them later would be STARTTLS command injection.
            warn!(
                bytes = client.buffered(),
                "plaintext pipelined after AUTH TLS; closing"
            );
            return Err(End(O::ClientError, "plaintext after AUTH TLS".into()));
        }
        let Some(session_acceptors) = self.acceptor.clone() else {
            return Err(End(O::TlsFailed, "no TLS acceptor".into()));
        };
        let acceptor = session_acceptors.control.clone();
        let MaybeTls::Plain(tcp) = client.into_stream() else {
            return Err(End(O::TlsFailed, "already TLS".into()));
        };
        match tokio::time::timeout_at(self.login_deadline, acceptor.accept(HoldIo::pass(tcp))).await
        {
            Ok(Ok(t)) => {
                let identity = client_cert_identity(&session_acceptors, t.get_ref().1);
                let version = crate::tls::version_name(t.get_ref().1.protocol_version());
                info!(version, "client TLS established");
                self.ctx.metrics.tls_handshake(
                    Side::Client,
                    version,
                    Handshake::Ok,
                    Resumption::Full,
                );
                Ok((Channel::new(MaybeTls::Tls(Box::new(t))), identity))
            }
            Ok(Err(e)) => {
                self.ctx.metrics.tls_handshake(
                    Side::Client,
                    "none",
                    Handshake::Failed,
                    Resumption::Full,
                );
                crate::tls::client_auth::note_failed_handshake(&e, "control", &self.ctx.metrics);
                Err(End(
                    O::TlsFailed,
                    format!("client TLS handshake failed: {e}"),
                ))
            }
            Err(_) => Err(End(O::TlsFailed, "client TLS handshake timed out".into())),
        }
    }

    /// A route with `auth: gateway` connects nothing until the gateway has
    /// checked the password (`verified`): the machine is told to ask for it.
    async fn route_or_ask(&mut self, user: &str, verified: bool) -> Input {
        if !verified {
            let gateway = policy::route(&self.ctx.cfg, user).is_ok_and(|c| {
                c.route
                    .is_some_and(|r| matches!(r.auth, config::RouteAuth::Gateway { .. }))
            });
            if gateway {
                self.user = Some(user.to_string());
                tracing::Span::current().record("user", tracing::field::display(user));
                return Input::AuthRequired;
            }
        }
        Input::Routed(self.route(user).await)
    }

    /// Check a password with the provider of `user`'s route (`auth: gateway`)
    /// within the login deadline; on success the backend account to use
    /// (`backend_login`), if the route maps one. No backend is contacted.
    async fn authenticate(
        &mut self,
        user: &str,
        password: &control::Secret,
    ) -> Result<Option<config::BackendLogin>, AuthFailure> {
        let ctx = self.ctx.clone();
        let choice = policy::route(&ctx.cfg, user).map_err(|_| AuthFailure::BadCredentials)?;
        let Some(config::RouteAuth::Gateway {
            provider,
            backend_login,
        }) = choice.route.map(|r| &r.auth)
        else {
            return Err(AuthFailure::Unavailable(
                "the route does not authenticate at the gateway".into(),
            ));
        };
        let limit = self
            .login_deadline
            .saturating_duration_since(Instant::now());
        let result = crate::auth::authenticate(provider, &choice.login, password, limit).await;
        let label = match &result {
            Ok(()) => AuthResult::Ok,
            Err(AuthFailure::BadCredentials) => AuthResult::BadCredentials,
            Err(AuthFailure::Unavailable(_)) => AuthResult::Unavailable,
        };
        ctx.metrics.gateway_auth(&provider.name, label);
        info!(
            provider = %provider.name,
            result = label.as_str(),
            "gateway authentication"
        );
        result.map(|()| backend_login.clone())
    }

    /// Route a login to a backend; reconnect when the route leads elsewhere.
    async fn route(&mut self, user: &str) -> Result<Routed, RouteFailure> {
        let ctx = self.ctx.clone();
        let identity = self.acceptor.as_ref().and_then(|a| a.client_identity());
        let choice = match policy::route_for(&ctx.cfg, user, identity.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                info!(error = %e, "unknown backend in user@backend");
                return Err(RouteFailure::UnknownBackend);
            }
        };
        self.user = Some(user.to_string());
        // The name last given with USER, on every line of the session from now on.
        tracing::Span::current().record("user", tracing::field::display(user));
        let same = self
            .chosen
            .as_ref()
            .is_some_and(|c| choice.backends.contains(&c.backend().cfg.name));
        let fresh = self.backend.is_none() || !same;
        if fresh {
            // The machine drops the pending data setup (`DropPending`) on a fresh route.
            self.backend = None;
            self.chosen = None;
            let route_index = choice.route.and_then(|r| ctx.route_index(r));
            let candidates = ctx.pool.candidates(&choice, route_index, &self.shared);
            let (session, in_use) = Pool::connect(
                candidates,
                ctx.timeouts.connect,
                (self.client_addr, self.local_addr),
            )
            .await
            .map_err(RouteFailure::Unavailable)?;
            tracing::Span::current().record(
                "backend",
                tracing::field::display(&in_use.backend().cfg.name),
            );
            self.backend = Some(session);
            self.chosen = Some(in_use);
        }
        let (Some(b), Some(chosen)) = (self.backend.as_ref(), self.chosen.as_ref()) else {
            return Err(RouteFailure::Unavailable("no backend connection".into()));
        };
        Ok(Routed {
            login: choice.login.to_string(),
            commands: choice
                .route
                .map(|r| r.commands.clone())
                .unwrap_or(config::CommandPolicy::Any),
            fresh,
            data_mode: chosen.backend().cfg.data_mode,
            backend_v4: b.peer.is_ipv4(),
            keepalive_noop: chosen.backend().cfg.keepalive_noop,
        })
    }

    /// TLS for the client data leg: the session's acceptors under `PROT P`.
    fn client_data_tls(&self, protected: bool) -> Option<DataTls> {
        if !protected {
            return None;
        }
        self.acceptor.as_ref().map(|a| DataTls {
            acceptors: a.clone(),
            require_reuse: self.ctx.cfg.tls.require_data_reuse,
        })
    }

    /// Open a pinhole for this client (with its kernel rule); returns the
    /// address and port to advertise to it.
    async fn open_pinhole(&mut self, protected: bool) -> Result<SocketAddr, String> {
        let passive = &self.ctx.cfg.passive;
        // One address (and one user) may hold only its share of the range, so
        // one source cannot make everybody else get `425`.
        let cap = passive.max_per_client.cap(passive.ports.len());
        let mut holders = vec![PortHolder::Address(self.client_addr.ip().to_canonical())];
        if let Some(user) = &self.user {
            holders.push(PortHolder::User(user.clone()));
        }
        let share = self
            .shared
            .take_port(&self.ctx.cfg.name, holders, cap)
            .map_err(|holder| {
                let holder = match holder {
                    PortHolder::Address(_) => "address",
                    PortHolder::User(_) => "user",
                };
                warn!(
                    cap,
                    holder,
                    reason = "share",
                    "pinhole refused: share of the passive range in use"
                );
                self.ctx.metrics.pinhole_refused(PinholeRefusal::Share);
                format!("too many data connections pending for this {holder}")
            })?;
        let spec = PinholeSpec {
            share: Some(share),
            bind_ip: passive.bind,
            ports: passive.ports,
            client_ip: self.client_addr.ip(),
            tls: self.client_data_tls(protected),
            lifetime: self.ctx.timeouts.pinhole,
            metrics: self.ctx.metrics.clone(),
            listener: self.ctx.cfg.name.clone(),
            kernel: self.ctx.kernel.clone(),
        };
        let pinhole = Pinhole::open(spec).await.map_err(|e| {
            warn!(error = %e, reason = e.kind(), "pinhole refused");
            // The client reads this after `425 Cannot open data port: `; OS error
            // text and addresses are for the log only.
            match e {
                crate::data::PinholeError::Exhausted(_) => "no free port".to_string(),
                _ => "internal error".to_string(),
            }
        })?;
        let port = pinhole.local.port();
        let (ip, adv_port) = passive.advertised(self.client_addr.ip(), self.local_addr.ip(), port);
        debug!(port, "pinhole bound");
        self.pinhole = Some(pinhole);
        Ok(SocketAddr::new(ip, adv_port))
    }

    fn start_transfer(
        &mut self,
        kind: control::TransferKind,
        client: ClientSide,
        backend: BackendSide,
        protected: bool,
    ) -> Result<Transfer, TransferFailure> {
        let missing = |what: &str| TransferFailure {
            reply: Reply::new(425, "Use PASV or EPSV first"),
            aborted: false,
            error: format!("no {what} for the transfer"),
        };
        let client_leg = match client {
            ClientSide::Pinhole => {
                transfer::ClientLeg::Pinhole(self.pinhole.take().ok_or_else(|| missing("pinhole"))?)
            }
            ClientSide::Active(target) => transfer::ClientLeg::Active(ActiveSpec {
                target,
                source_ip: self.local_addr.ip(),
                source_ports: self.ctx.cfg.active.ports,
                tls: self.client_data_tls(protected),
                direction: kind.direction(),
                limit: self.ctx.timeouts.connect,
                metrics: self.ctx.metrics.clone(),
            }),
        };
        let b = self.backend.as_ref().ok_or_else(|| missing("backend"))?;
        let backend_leg = match backend {
            BackendSide::Passive(port) => transfer::BackendLeg::Passive(b.data.clone(), port),
            BackendSide::Active => transfer::BackendLeg::Active(
                b.data.clone(),
                self.listener
                    .take()
                    .ok_or_else(|| missing("backend listener"))?,
            ),
        };
        Ok(Transfer::start(
            kind,
            client_leg,
            backend_leg,
            &self.ctx.timeouts,
            self.ctx.cfg.limits.bandwidth,
        ))
    }
}

struct End(SessionOutcome, String);

/// After a client control handshake: the client certificate's identity (with
/// `tls.client_auth`), remembered for the session's data connections and logged.
fn client_cert_identity(
    acceptors: &SessionAcceptors,
    conn: &rustls::ServerConnection,
) -> Option<String> {
    let identity = acceptors.bind_client_cert(conn);
    if let Some(id) = &identity {
        info!(identity = %id, "client certificate accepted");
    }
    identity
}

/// `CCC` (RFC 4217 §6): exchange `close_notify` on the control connection and
/// carry on over the bare TCP stream.
///
/// Both orders work (issue 23 item 1): curl's "active" CCC sends its
/// `close_notify` first, its "passive" one waits for ours (and may then go on
/// in clear without sending one). We send ours at once, then read the
/// client's TLS records one at a time — header, then exactly its body — so
/// the plaintext command that follows is never swallowed into the TLS layer;
/// a first byte that cannot start a TLS record means the client went on in
/// clear.
async fn clear_control(client: Channel<ClientStream>) -> Result<Channel<ClientStream>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let MaybeTls::Tls(t) = client.into_stream() else {
        return Err("CCC on a clear control channel".into());
    };
    let (io, mut conn) = t.into_inner();
    let mut tcp = io.into_inner();
    conn.send_close_notify();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).map_err(|e| format!("CCC: {e}"))?;
    }
    tcp.write_all(&out).await.map_err(|e| format!("CCC: {e}"))?;
    let wait = async {
        loop {
            let mut header = [0u8; 5];
            let n = tcp
                .peek(&mut header[..1])
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("client closed during CCC".to_string());
            }
            // TLS content types 20..=24; anything else is the next command.
            if !(20..=24).contains(&header[0]) {
                return Ok(());
            }
            tcp.read_exact(&mut header)
                .await
                .map_err(|e| e.to_string())?;
            let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if len > 18 * 1024 {
                return Err(format!("oversized TLS record ({len} bytes) during CCC"));
            }
            let mut record = vec![0u8; 5 + len];
            record[..5].copy_from_slice(&header);
            tcp.read_exact(&mut record[5..])
                .await
                .map_err(|e| e.to_string())?;
            conn.read_tls(&mut &record[..]).map_err(|e| e.to_string())?;
            let state = conn.process_new_packets().map_err(|e| e.to_string())?;
            if state.peer_has_closed() {
                return Ok(());
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), wait).await {
        Ok(Ok(())) => Ok(Channel::new(MaybeTls::Plain(tcp))),
        Ok(Err(e)) => Err(format!("CCC: {e}")),
        Err(_) => Err("CCC: client sent neither close_notify nor a command".into()),
    }
}

/// What the client leg produced: a line (the machine reads), or bytes read
/// ahead while its commands wait (to notice EOF).
enum ClientEvent {
    Line(std::io::Result<Option<Framed>>),
    Filled(std::io::Result<bool>),
}

async fn client_event(client: &mut Channel<ClientStream>, lines: bool) -> ClientEvent {
    if lines {
        ClientEvent::Line(client.read_line().await)
    } else {
        ClientEvent::Filled(client.fill().await)
    }
}

/// Client bytes read ahead while its commands wait, beyond which the client
/// is not read until the machine takes lines again.
const WATCH_BUFFER: usize = 16 * 1024;

/// A read error that only says the peer went away (no `close_notify`, reset).
fn closed_early(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted
    )
}

async fn read_backend(b: Option<&mut BackendSession>) -> Result<Reply, ReplyReadError> {
    match b {
        Some(b) => b.chan.read_reply().await,
        None => std::future::pending().await,
    }
}
