//! The control session as a pure state machine (sans I/O).
//!
//! [`Machine::handle`] takes one [`Input`] — a client line, a backend reply,
//! the result of an operation the machine asked for, a timer — and returns
//! the [`Action`]s the driver (`session::run`) must perform, in order. The
//! machine owns every protocol decision: what the gateway answers itself,
//! what is forwarded, how replies are matched to the commands that caused
//! them, when `226` may reach the client. The driver owns sockets, TLS,
//! pinholes and tasks, and feeds their results back as inputs.
//!
//! Replies come back in command order (RFC 959), so every command sent to
//! the backend leaves an [`Expect`] in a queue that says what its final
//! reply is for. A command the gateway must answer from the backend's reply
//! (login, FEAT, data setup, a transfer) waits until earlier forwarded
//! commands have had their replies, so a pipelining client still gets every
//! reply in order.
//!
//! Pairing follows the protocol's rules, never line counting alone (issue
//! 24): a command has exactly one final reply; `1xx` is taken only before a
//! transfer's final reply; a reply that cannot end a transfer (`200`, `257`,
//! `227`…) never ends one; a `227`/`229` is taken only as the answer to the
//! gateway's own `PASV`/`EPSV`. Anything else is *unsolicited*: dropped,
//! logged and counted without touching the session state, and a backend that
//! keeps doing it (`limits.unsolicited_replies`, default [`MAX_UNSOLICITED`])
//! ends the session with `421`. `ABOR`
//! (the client's, or the gateway's after a failed data leg) is followed by
//! an internal `NOOP`: every reply before its `200` belongs to the abort,
//! whatever the server sends for it (vsftpd `426`+`226`, pure-ftpd one
//! `226`, ProFTPD `226` before `426`).
//!
//! Synchronous side effects that are not protocol (metrics, the transfer
//! log, the failed-login counter) go through [`Env`]; the fuzz target
//! `session` drives this machine with arbitrary interleavings.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::auth::AuthFailure;
use crate::config::{BackendLogin, CommandPolicy, DataMode, Timeouts, TlsMode};
use crate::control::{
    self, parse_command, render_227, render_229, Command, CommandError, EpsvArg, FeatOptions,
    ProtLevel, Reply, Secret, TransferKind,
};
use crate::metrics::result_label;
use crate::policy;

use super::outcome::{SessionOutcome, TransferResult};

/// Commands forwarded whose replies are still due, beyond which the client
/// is not read until the backend catches up (backpressure on pipelining).
pub const MAX_PIPELINE: usize = 64;

/// Unsolicited backend replies tolerated in one session by default
/// (`limits.unsolicited_replies`); the next one ends it with `421` (a backend
/// talking past the gateway is broken or hostile).
pub const MAX_UNSOLICITED: u32 = 8;

/// Keepalive NOOPs left unanswered beyond which no more are sent (servers
/// that answer only after the transfer would otherwise queue one per period).
const MAX_NOOPS: usize = 4;

/// What the machine needs to know about its listener; fixed for a session.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Explicit, implicit or no TLS on the listener.
    pub tls_mode: TlsMode,
    /// The listener has a certificate (AUTH TLS possible).
    pub tls_available: bool,
    /// `tls.require`: no login in clear.
    pub require_tls: bool,
    /// `tls.allow_clear_data`: `PROT C` allowed.
    pub allow_clear_data: bool,
    /// `tls.allow_ccc`: `CCC` allowed.
    pub allow_ccc: bool,
    /// `active.enabled`: `PORT`/`EPRT` allowed.
    pub active_enabled: bool,
    /// The client reached us over IPv4 (EPSV network protocol 1).
    pub local_v4: bool,
    /// The client's address (PORT/EPRT targets must match it).
    pub client_ip: IpAddr,
    /// The listener's timeouts.
    pub timeouts: Timeouts,
    /// `listeners[].banner`: text of the `220` greeting.
    pub banner: String,
    /// `listeners[].unavailable`: text of the `421` when no backend serves the
    /// login; the backend's name and error go to the log only.
    pub unavailable: String,
    /// Unsolicited backend replies tolerated before `421` (`limits.unsolicited_replies`).
    pub max_unsolicited: u32,
}

/// What the driver learned routing a `USER` to a backend.
#[derive(Debug, Clone)]
pub struct Routed {
    /// The login name to send to the backend (`user@backend` stripped).
    pub login: String,
    /// The route's command filter.
    pub commands: CommandPolicy,
    /// A new backend connection was made (the old one, if any, is gone).
    pub fresh: bool,
    /// How the gateway reaches the backend's data port.
    pub data_mode: DataMode,
    /// The backend control peer is IPv4 (PASV) rather than IPv6 (EPSV).
    pub backend_v4: bool,
    /// `backends[].keepalive_noop`: NOOP period toward the backend during transfers.
    pub keepalive_noop: Option<Duration>,
}

#[derive(Debug, Clone)]
/// Why a `USER` could not be routed.
pub enum RouteFailure {
    /// `user@backend` named a backend that does not exist.
    UnknownBackend,
    /// No candidate backend answered; the text is for the client.
    Unavailable(String),
}

/// A transfer whose data legs failed.
#[derive(Debug, Clone)]
pub struct TransferFailure {
    /// What the client is told (425/426/451/522).
    pub reply: Reply,
    /// Cut by `ABOR` or by the session ending, not by a fault.
    pub aborted: bool,
    /// What went wrong, for the log.
    pub error: String,
}

/// Everything that can happen to a session.
#[derive(Debug, Clone)]
pub enum Input {
    /// One framed client line (without CRLF).
    ClientLine(Vec<u8>),
    /// A client line longer than the framer's limit.
    ClientTooLong,
    /// The client closed the connection (EOF).
    ClientClosed,
    /// The client connection failed (read or TLS error).
    ClientError(String),
    /// One complete backend reply.
    BackendReply(Reply),
    /// The backend control connection failed (read, write, malformed reply).
    BackendLost(String),
    /// The TLS handshake asked for by [`Action::StartTls`] succeeded.
    TlsEstablished,
    /// Answer to [`Action::Route`].
    Routed(Result<Routed, RouteFailure>),
    /// Answer to [`Action::Route`] (not `verified`) for a route with
    /// `auth: gateway`: no backend was connected; the gateway asks for the
    /// password itself.
    AuthRequired,
    /// Answer to [`Action::Authenticate`]: on success the backend account to
    /// log in as (`backend_login`), or `None` for the client's own credentials.
    Authenticated(Result<Option<BackendLogin>, AuthFailure>),
    /// Answer to [`Action::OpenPassive`]: the address and port to advertise.
    PassiveOpened(Result<SocketAddr, String>),
    /// Answer to [`Action::ListenBackend`]: our listener for the backend.
    BackendListening(Result<SocketAddr, String>),
    /// The transfer started by [`Action::StartTransfer`] finished its data legs.
    TransferDone(Result<u64, TransferFailure>),
    /// The upload command after [`Action::StartTransfer`] was not sent: the
    /// client had connected first and its data leg failed (refused handshake),
    /// so the backend must not create a file that would stay empty.
    TransferWithheld,
    /// `keepalive_noop` elapsed on the backend leg during a transfer.
    KeepaliveDue,
    /// [`Machine::deadline`] passed.
    Timeout,
    /// The gateway drains: close once no transfer runs.
    Shutdown,
    /// The drain deadline passed: close now.
    Force,
}

/// How the client side of the next transfer connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientSide {
    /// To the pinhole opened by [`Action::OpenPassive`].
    Pinhole,
    /// We connect to this (checked) client address.
    Active(SocketAddr),
}

/// How the backend side of the next transfer connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendSide {
    /// We connect to this port on the backend's control peer address.
    Passive(u16),
    /// The backend connects to the listener from [`Action::ListenBackend`].
    Active,
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send one reply to the client.
    ToClient(Reply),
    /// One command line to the backend (CRLF added by the driver).
    ToBackend(Vec<u8>),
    /// `234` has been sent: handshake TLS on the client control connection,
    /// then feed [`Input::TlsEstablished`]. Bytes the client sent after
    /// `AUTH TLS` and before the handshake must not be executed.
    StartTls,
    /// `CCC` accepted: end TLS on the client control connection.
    ClearControl,
    /// Choose (and if needed connect) the backend for this login, then feed
    /// [`Input::Routed`].
    Route {
        /// The login name as the client sent it.
        user: String,
        /// The gateway has checked this user's password (`auth: gateway`);
        /// without it such a route answers [`Input::AuthRequired`] and no
        /// backend is connected.
        verified: bool,
    },
    /// Check `user`'s `password` with the route's provider (before any
    /// backend connection), then feed [`Input::Authenticated`].
    Authenticate {
        /// The name from `USER`.
        user: String,
        /// The password from `PASS`.
        password: Secret,
    },
    /// Open a pinhole for the client (TLS on it when `protected`: PROT P),
    /// then feed [`Input::PassiveOpened`].
    OpenPassive {
        /// TLS on the pinhole (PROT P).
        protected: bool,
    },
    /// Listen for the backend's data connection, then feed
    /// [`Input::BackendListening`].
    ListenBackend,
    /// Release the pinhole and backend listener of the pending data setup.
    DropPending,
    /// The transfer command has been sent: connect both data legs and relay.
    StartTransfer {
        /// Which transfer command.
        kind: TransferKind,
        /// The client's data leg (pinhole or active target).
        client: ClientSide,
        /// The backend's data leg.
        backend: BackendSide,
        /// TLS on the client data leg (PROT P).
        protected: bool,
    },
    /// Cut the running transfer's data legs.
    AbortTransfer,
    /// End the session (after the replies before it have been sent).
    Close,
}

/// One finished transfer, for metrics and the transfer log.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Which transfer command.
    pub kind: TransferKind,
    /// The path as the client named it.
    pub path: String,
    /// When the transfer command was sent.
    pub started: Instant,
    /// How it ended.
    pub result: TransferResult,
    /// Data bytes relayed.
    pub bytes: u64,
    /// The backend confirmed it with `226`/`250`.
    pub complete: bool,
    /// The login name.
    pub user: String,
    /// `TYPE I` (else ASCII).
    pub binary: bool,
}

/// Synchronous side effects and shared-state questions.
pub trait Env {
    /// A command was received (metrics).
    fn command(&mut self, verb: &str);
    /// A `PASS` is about to be forwarded: count the attempt (failed-login
    /// throttle). `false` while the client's address cools down or has its
    /// whole budget of attempts in flight: the `PASS` must not be sent.
    fn pass_attempt(&mut self) -> bool;
    /// The backend answered `230` to a login; `fresh` when the session was
    /// not logged in before (only a fresh login may reset the throttle).
    fn login_ok(&mut self, fresh: bool);
    /// The backend refused a password; `true` when the client must now cool down.
    fn login_failed(&mut self) -> bool;
    /// The client tried to log in before TLS on a listener that requires it.
    fn login_refused_no_tls(&mut self);
    /// A PORT/EPRT target was refused (bounce protection).
    fn active_refused(&mut self);
    /// A transfer ended (metrics, transfer log).
    fn transfer_finished(&mut self, done: &Finished);
    /// A backend reply no command asked for was dropped (metrics).
    fn unsolicited_reply(&mut self);
}

/// What a backend reply at the head of the queue answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A client command: its replies go to the client.
    Forward,
    /// The running transfer's command: preliminary replies go through, the
    /// final one is held until the data legs are done.
    Transfer,
    /// Our keepalive NOOP: swallowed.
    Noop,
    /// A command of the gateway's own; the client waits for its outcome.
    Internal(Purpose),
    /// A client `PWD`/`CWD`/`CDUP`: forwarded like `Forward`; its final reply
    /// also moves the tracked directory (the front of `Machine::dir_commands`).
    Directory,
    /// An aborted transfer, its `ABOR`, or a command caught between them:
    /// whatever the backend sends for these is absorbed until the `200` to
    /// the [`Purpose::AbortSync`] NOOP behind them.
    Aborting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    User,
    Pass,
    Feat,
    Rein,
    /// PASV toward the backend (falls back to EPSV on 5xx).
    BackendPasv,
    BackendEpsv,
    /// PORT/EPRT toward the backend.
    BackendPort,
    /// The NOOP after an `ABOR`: its `200` closes the abort.
    AbortSync,
}

/// An operation the driver performs for us; the client is not read meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Tls,
    Route,
    /// The gateway's own password check ([`Action::Authenticate`]).
    Auth,
    /// The client asked with PASV (227) rather than EPSV (229).
    Passive {
        pasv: bool,
    },
    Listen,
}

/// A data connection being set up (between PASV/PORT and the client's reply).
#[derive(Debug, Clone)]
struct Setup {
    client: ClientSide,
    /// The reply the client gets when the backend side is ready.
    reply: Reply,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    client: ClientSide,
    backend: BackendSide,
}

/// A login under way: who the client asked to be, and the filter of that
/// name's route. It becomes the session's user and filter only on the
/// backend's `230` ("state changes on evidence"): until then the old login,
/// if any, keeps its user, route filter and transfer-log name.
#[derive(Debug, Clone)]
struct Candidate {
    user: String,
    commands: CommandPolicy,
    /// The backend answered `USER` with `331`/`332`: `PASS`/`ACCT` go on.
    password_due: bool,
    /// `auth: gateway`: the gateway answered `USER` with `331`; the `PASS`
    /// goes to its provider, not to a backend.
    gateway_pass_due: bool,
    /// The password under check by the gateway.
    password: Option<Secret>,
    /// After the gateway's check: the backend login name (`backend_login`),
    /// instead of the routed name.
    backend_user: Option<String>,
    /// After the gateway's check: sent as `PASS` when the backend asks.
    backend_password: Option<Secret>,
    /// The gateway's provider accepted this login's password (`auth: gateway`).
    gateway_auth: bool,
}

impl Candidate {
    fn new(user: String) -> Candidate {
        Candidate {
            user,
            commands: CommandPolicy::Any,
            password_due: false,
            gateway_pass_due: false,
            password: None,
            backend_user: None,
            backend_password: None,
            gateway_auth: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct BackendInfo {
    data_mode: DataMode,
    v4: bool,
    keepalive_noop: Option<Duration>,
}

#[derive(Debug, Clone)]
struct TransferState {
    kind: TransferKind,
    /// The path as the client wrote it (log lines).
    path: String,
    /// The path as the backend resolved it, when the directory is known (the
    /// transfer log; see `cwd`).
    resolved: String,
    started: Instant,
    /// The backend's final success reply, held until `outcome` is known.
    final_reply: Option<Reply>,
    outcome: Option<Result<u64, TransferFailure>>,
    outcome_at: Option<Instant>,
}

/// A backend transfer being aborted: what the client gets once the backend's
/// replies to it are all in.
#[derive(Debug, Clone)]
struct Abort {
    /// A failed transfer accounted when the abort completes (with its reply).
    failed: Option<TransferState>,
    /// Replies for the client, in its command order.
    replies: Vec<Reply>,
}

/// One control session's protocol state.
pub struct Machine {
    s: Settings,
    client_tls: bool,
    /// TLS on the control connection right now (false again after CCC).
    control_tls: bool,
    prot: ProtLevel,
    backend: Option<BackendInfo>,
    logged_in: bool,
    epsv_all: bool,
    expects: VecDeque<Expect>,
    /// When the internal request at the back of `expects` times out.
    internal_deadline: Option<Instant>,
    /// A command that must wait until `expects` is empty.
    deferred: Option<Vec<u8>>,
    wait: Option<Wait>,
    setup: Option<Setup>,
    pending: Option<Pending>,
    transfer: Option<TransferState>,
    /// The confirmed login's filter (`Any` until a login succeeded; before
    /// that only [`policy::LOGIN_PHASE`] verbs reach the backend anyway).
    commands: CommandPolicy,
    /// The confirmed login's name (empty before); the transfer log's user.
    user: String,
    /// A login the backend has not confirmed yet.
    candidate: Option<Candidate>,
    binary: bool,
    started: Instant,
    last_activity: Instant,
    last_backend_activity: Instant,
    draining: bool,
    closed: bool,
    outcome: SessionOutcome,
    /// The backend's working directory once a `PWD` reply or an absolute `CWD`
    /// showed it; `None` while unknown (see `cwd`).
    cwd: Option<String>,
    /// Directory commands in flight, one per `Expect::Directory`, in order.
    dir_commands: VecDeque<cwd::DirCommand>,
    /// The backend transfer being aborted (see [`Expect::Aborting`]).
    abort: Option<Abort>,
    /// Backend replies dropped as unsolicited so far.
    unsolicited: u32,
    /// The client has sent at least one line (a connection that closes
    /// before is a probe, not a session).
    client_spoke: bool,
    /// What the client certificate says about logins (`tls.client_auth`).
    cert: CertLogin,
    /// The confirmed login was checked by the gateway (`auth: gateway`).
    gateway_auth: bool,
    out: Vec<Action>,
}

/// The client certificate's part in logins, given by the driver
/// ([`Machine::set_cert_login`]) after each control-connection handshake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertLogin {
    /// The certificate's identity (`client_auth.identity`), if any.
    pub identity: Option<String>,
    /// `client_auth.require_user_match`: `USER` must equal `identity`.
    pub require_user_match: bool,
}

impl Machine {
    /// The client certificate's identity and whether `USER` must match it.
    pub fn set_cert_login(&mut self, cert: CertLogin) {
        self.cert = cert;
    }

    /// A new session; `client_tls` is true on implicit-TLS listeners.
    /// The greeting is the first action.
    pub fn new(s: Settings, client_tls: bool, now: Instant) -> (Machine, Vec<Action>) {
        let m = Machine {
            s,
            client_tls,
            control_tls: client_tls,
            prot: ProtLevel::Clear,
            backend: None,
            logged_in: false,
            epsv_all: false,
            expects: VecDeque::new(),
            internal_deadline: None,
            deferred: None,
            wait: None,
            setup: None,
            pending: None,
            transfer: None,
            commands: CommandPolicy::Any,
            user: String::new(),
            candidate: None,
            binary: false,
            started: now,
            last_activity: now,
            last_backend_activity: now,
            draining: false,
            closed: false,
            outcome: SessionOutcome::Ok,
            cwd: None,
            dir_commands: VecDeque::new(),
            abort: None,
            unsolicited: 0,
            client_spoke: false,
            cert: CertLogin::default(),
            gateway_auth: false,
            out: Vec::new(),
        };
        let greeting = Reply::new(220, &m.s.banner);
        (m, vec![Action::ToClient(greeting)])
    }

    /// How the session ends (meaningful once [`Action::Close`] was returned).
    pub fn outcome(&self) -> SessionOutcome {
        match self.outcome {
            // A connection that closed before sending a line (a load-balancer
            // or port probe) is not a session that failed or ended normally.
            SessionOutcome::Ok
            | SessionOutcome::ClosedWithoutQuit
            | SessionOutcome::ClientError
                if !self.client_spoke =>
            {
                SessionOutcome::Probe
            }
            o => o,
        }
    }

    /// No line from the client yet (a close now is a probe: log at debug).
    pub fn silent_client(&self) -> bool {
        !self.client_spoke
    }

    /// The session is over; no more input is accepted.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Login name, for logs (never a metric label).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// A login has succeeded (and the backend confirmed no REIN since).
    pub fn logged_in(&self) -> bool {
        self.logged_in
    }

    /// The confirmed login's password was checked by the gateway's provider
    /// (`auth: gateway`), not only by the backend; false before a login.
    pub fn gateway_authenticated(&self) -> bool {
        self.logged_in && self.gateway_auth
    }

    /// The client certificate's identity on the control connection
    /// (`tls.client_auth.identity`), if one was presented and mapped.
    pub fn cert_identity(&self) -> Option<&str> {
        self.cert.identity.as_deref()
    }

    /// The confirmed login's command filter (`Any` before a login).
    pub fn commands(&self) -> &CommandPolicy {
        &self.commands
    }

    /// Backend replies still due (forwarded, internal, keepalive).
    pub fn replies_due(&self) -> usize {
        self.expects.len()
    }

    /// The driver may read (and feed) the next client line.
    pub fn reads_client(&self) -> bool {
        !self.closed
            && self.wait.is_none()
            && self.deferred.is_none()
            && self.internal_deadline.is_none()
            && self.expects.len() < MAX_PIPELINE
    }

    /// The driver may read (and feed) the next backend reply.
    pub fn reads_backend(&self) -> bool {
        !self.closed
            && self.backend.is_some()
            && !self
                .transfer
                .as_ref()
                .is_some_and(|t| t.final_reply.is_some())
    }

    /// Data legs of a transfer are running (the driver awaits them).
    pub fn transfer_running(&self) -> bool {
        self.transfer.as_ref().is_some_and(|t| t.outcome.is_none())
    }

    /// When [`Input::Timeout`] is due.
    pub fn deadline(&self, now: Instant) -> Instant {
        let t = &self.s.timeouts;
        let base = if let Some(tr) = &self.transfer {
            match tr.outcome_at {
                // The data legs are done; the backend owes its final reply.
                Some(at) => at + t.data_idle,
                // A running relay enforces its own data idle timeout.
                None => now + t.data_idle + t.idle,
            }
        } else if !self.logged_in {
            self.started + t.login
        } else {
            self.last_activity + t.idle
        };
        let base = match self.forward_deadline() {
            Some(at) => at.min(base),
            None => base,
        };
        match self.internal_deadline {
            Some(at) => at.min(base),
            None => base,
        }
    }

    /// A forwarded client command at the head of the queue must be answered
    /// by then (the backend is otherwise silent for `data_idle`); commands
    /// queued behind a running transfer wait for it (vsftpd answers them
    /// only afterwards).
    fn forward_deadline(&self) -> Option<Instant> {
        matches!(
            self.expects.front(),
            Some(Expect::Forward | Expect::Directory)
        )
        .then_some(self.last_backend_activity + self.s.timeouts.data_idle)
    }

    /// When [`Input::KeepaliveDue`] is due, if ever.
    pub fn keepalive_at(&self) -> Option<Instant> {
        let every = self.backend.as_ref()?.keepalive_noop?;
        self.transfer_running()
            .then_some(self.last_backend_activity + every)
    }

    /// Handle one input; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, input: Input, env: &mut dyn Env) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        self.step(now, input, env);
        self.settle(now, env);
        std::mem::take(&mut self.out)
    }

    fn step(&mut self, now: Instant, input: Input, env: &mut dyn Env) {
        match input {
            Input::ClientLine(line) => {
                if self.wait == Some(Wait::Tls) {
                    // Plaintext after AUTH TLS, before the handshake: never
                    // execute it (STARTTLS command injection).
                    warn!("plaintext pipelined after AUTH TLS; closing");
                    self.close(SessionOutcome::ClientError);
                    return;
                }
                self.last_activity = now;
                self.client_spoke = true;
                if !self.reads_client() {
                    // The driver should not have read it; keep order anyway.
                    if self.deferred.is_none() {
                        self.deferred = Some(line);
                    } else {
                        warn!("client line while another waits; closing");
                        self.close(SessionOutcome::ClientError);
                    }
                    return;
                }
                self.client_line(now, line, env);
            }
            Input::ClientTooLong => {
                warn!("client sent an overlong command line");
                self.reply(500, "Command line too long");
            }
            Input::ClientClosed => {
                if self.transfer_running() {
                    info!("client closed the control connection during a transfer");
                    self.close(SessionOutcome::ClientError);
                } else {
                    // wget, gftp and rclone leave without QUIT (and without
                    // close_notify): a normal end, counted apart.
                    debug!("client closed the connection without QUIT");
                    self.close(SessionOutcome::ClosedWithoutQuit);
                }
            }
            Input::ClientError(e) => {
                info!(error = %e, "client control read failed");
                self.close(SessionOutcome::ClientError);
            }
            Input::BackendReply(r) => self.backend_reply(now, r, env),
            Input::BackendLost(why) => self.backend_lost(&why),
            Input::TlsEstablished => {
                if self.wait == Some(Wait::Tls) {
                    self.wait = None;
                    self.client_tls = true;
                    self.control_tls = true;
                }
            }
            Input::Routed(r) => self.routed(now, r),
            Input::AuthRequired => self.auth_required(),
            Input::Authenticated(r) => self.authenticated(r, env),
            Input::PassiveOpened(r) => self.passive_opened(now, r),
            Input::BackendListening(r) => self.backend_listening(now, r),
            Input::TransferDone(o) => self.transfer_done(now, o, env),
            Input::TransferWithheld => self.transfer_withheld(env),
            Input::KeepaliveDue => {
                let noops = self.expects.iter().filter(|e| **e == Expect::Noop).count();
                if self.transfer_running() && self.backend.is_some() {
                    self.last_backend_activity = now;
                    if noops >= MAX_NOOPS {
                        return;
                    }
                    debug!("keepalive NOOP sent to backend");
                    self.out.push(Action::ToBackend(b"NOOP".to_vec()));
                    self.expects.push_back(Expect::Noop);
                }
            }
            Input::Timeout => self.timeout(now),
            Input::Shutdown => self.draining = true,
            Input::Force => {
                warn!(
                    outcome = %"cut",
                    transfer = self.transfer_running(),
                    "closing: drain deadline passed"
                );
                self.reply(421, "Gateway shutting down");
                self.close(SessionOutcome::Cut);
            }
        }
    }

    /// After every input: run a deferred command once its turn has come,
    /// and close a draining session once it is idle.
    fn settle(&mut self, now: Instant, env: &mut dyn Env) {
        while !self.closed
            && self.expects.is_empty()
            && self.wait.is_none()
            && self.internal_deadline.is_none()
        {
            let Some(line) = self.deferred.take() else {
                break;
            };
            self.client_line(now, line, env);
        }
        // An ABOR or a transfer's final reply still due keeps the session
        // until it is answered (a range download's ABOR during a drain).
        if self.draining
            && self.transfer.is_none()
            && self.abort.is_none()
            && self.expects.is_empty()
            && self.deferred.is_none()
            && !self.closed
            && self.wait.is_none()
        {
            self.reply(421, "Gateway shutting down");
            self.close_keep_outcome();
        }
    }

    fn reply(&mut self, code: u16, text: &str) {
        self.out.push(Action::ToClient(Reply::new(code, text)));
    }

    fn send(&mut self, r: Reply) {
        self.out.push(Action::ToClient(r.padded()));
    }

    fn close(&mut self, outcome: SessionOutcome) {
        self.outcome = outcome;
        self.close_keep_outcome();
    }

    fn close_keep_outcome(&mut self) {
        if !self.closed {
            self.closed = true;
            if let Some(t) = self.transfer.as_ref() {
                if t.outcome.is_none() {
                    self.out.push(Action::AbortTransfer);
                }
            }
            self.out.push(Action::Close);
        }
    }

    fn backend_lost(&mut self, why: &str) {
        warn!(error = why, "backend control connection lost");
        self.reply(421, "Backend connection lost; closing control connection");
        self.close(SessionOutcome::BackendUnavailable);
    }

    fn timeout(&mut self, now: Instant) {
        if self.internal_deadline.is_some_and(|at| now >= at)
            || self.forward_deadline().is_some_and(|at| now >= at)
        {
            self.backend_lost("timed out waiting for the backend's reply");
            return;
        }
        let what = if self.logged_in { "idle" } else { "login" };
        info!(what, "timeout");
        self.reply(
            421,
            &format!("Timeout ({what}); closing control connection"),
        );
        self.close(SessionOutcome::Timeout);
    }

    /// Send a command of our own; its final reply comes to `internal`.
    fn request(&mut self, now: Instant, line: Vec<u8>, purpose: Purpose, limit: Duration) {
        self.out.push(Action::ToBackend(line));
        self.expects.push_back(Expect::Internal(purpose));
        self.internal_deadline = Some(now + limit);
    }

    /// Forward a client command; its replies come back in order. `line` is
    /// the command's canonical form ([`Command::canonical`]), never the
    /// client's bytes. Before a login succeeded only login-phase verbs pass.
    fn forward(&mut self, now: Instant, verb: &str, line: Vec<u8>) {
        if self.backend.is_none() || !(self.logged_in || policy::allowed_before_login(verb)) {
            info!(verb, "command before login refused");
            self.reply(530, "Please login with USER and PASS");
            return;
        }
        self.out.push(Action::ToBackend(line));
        if self.expects.is_empty() {
            // The reply deadline runs from here.
            self.last_backend_activity = now;
        }
        self.expects.push_back(Expect::Forward);
    }

    /// Like [`Self::forward`], remembering a directory command for its reply.
    fn forward_dir(&mut self, now: Instant, verb: &str, line: Vec<u8>, command: cwd::DirCommand) {
        if self.backend.is_none() || !self.logged_in {
            return self.forward(now, verb, line);
        }
        self.out.push(Action::ToBackend(line));
        if self.expects.is_empty() {
            // The reply deadline runs from here (as in `forward`).
            self.last_backend_activity = now;
        }
        self.expects.push_back(Expect::Directory);
        self.dir_commands.push_back(command);
    }

    fn client_line(&mut self, now: Instant, line: Vec<u8>, env: &mut dyn Env) {
        if self.transfer.is_none() && !self.expects.is_empty() {
            // Replies go out in command order: this command waits until the
            // backend has answered the earlier ones. (During a transfer the
            // transfer's reply is pending for long; commands are handled at
            // once then, so that ABOR, STAT and NOOP work.)
            self.deferred = Some(line);
            return;
        }
        let cmd = match parse_command(&line) {
            Ok(c) => c,
            Err(e) => {
                info!(error = %e, "bad command");
                let code = match e {
                    CommandError::Empty | CommandError::BadVerb(_) => 500,
                    CommandError::BadArgument { .. } | CommandError::MissingArgument(_) => 501,
                };
                self.reply(code, &e.to_string());
                return;
            }
        };
        debug!(cmd = %cmd.log_line(), "client command");
        // From here on only the checked command exists: what reaches the
        // backend is rebuilt from it, never the client's bytes (issue 17 A4).
        let line = cmd.canonical();
        env.command(cmd.verb());
        if let Command::Type(arg) = &cmd {
            self.binary = matches!(arg.first(), Some(b'I' | b'i' | b'L' | b'l'));
        }
        let busy = self.transfer.is_some();
        if self.logged_in && !policy::command_allowed(&self.commands, cmd.verb()) {
            info!(verb = cmd.verb(), "command refused by policy");
            self.reply(550, "Command not allowed by gateway policy");
            return;
        }
        match cmd {
            Command::Auth(mech) => self.cmd_auth(&mech),
            Command::Pbsz(_) => {
                if self.client_tls {
                    self.reply(200, "PBSZ=0");
                } else {
                    self.reply(503, "PBSZ requires AUTH TLS first");
                }
            }
            Command::Prot(level) => self.cmd_prot(level),
            Command::Ccc => self.cmd_ccc(busy),
            Command::Port(_) | Command::Eprt(_) if busy => {
                self.reply(503, "Transfer in progress");
            }
            Command::Port(v4) => self.cmd_active(now, SocketAddr::V4(v4), env),
            Command::Eprt(a) => self.cmd_active(now, a, env),
            Command::Rein => self.cmd_rein(now, busy),
            Command::Feat => self.cmd_feat(now, busy),
            Command::Quit => {
                self.reply(221, "Goodbye");
                self.close_keep_outcome();
            }
            Command::User(_) | Command::Pass(_) | Command::Acct(_) if busy => {
                self.reply(503, "Transfer in progress");
            }
            Command::User(name) => self.cmd_user(&name, env),
            Command::Pass(_) | Command::Acct(_) => self.cmd_pass(now, line, env, &cmd),
            Command::Epsv(EpsvArg::All) => {
                // RFC 2428 §4: after EPSV ALL only EPSV may set up data connections.
                self.epsv_all = true;
                self.reply(200, "EPSV ALL ok");
            }
            Command::Pasv | Command::Epsv(_) if busy => self.reply(503, "Transfer in progress"),
            Command::Pasv | Command::Epsv(_) => self.cmd_passive(&cmd),
            Command::Transfer { .. } if busy => self.reply(503, "Transfer in progress"),
            Command::Transfer { kind, .. } => self.cmd_transfer(now, kind, line),
            Command::Abor if busy => self.cmd_abort(now, env),
            Command::Syst if self.backend.is_none() => self.reply(215, "UNIX Type: L8"),
            Command::Noop if self.backend.is_none() => self.reply(200, "NOOP ok"),
            Command::Opts(_) if self.backend.is_none() => self.reply(200, "OPTS ok"),
            Command::Other { ref verb, ref raw } => match cwd::dir_command(verb, raw) {
                Some(dir) => self.forward_dir(now, verb, line, dir),
                None => self.forward(now, verb, line),
            },
            // Before USER there is no backend: `forward` answers 530.
            _ => self.forward(now, cmd.verb(), line),
        }
    }

    fn cmd_auth(&mut self, mech: &str) {
        if self.client_tls {
            return self.reply(503, "Already using TLS");
        }
        if self.s.tls_mode != TlsMode::Explicit || !self.s.tls_available {
            return self.reply(502, "AUTH not available on this listener");
        }
        if !matches!(mech, "TLS" | "SSL" | "TLS-C" | "TLS-P") {
            return self.reply(504, "Unsupported AUTH mechanism; use AUTH TLS");
        }
        if self.backend.is_some() {
            // RFC 4217 §4: AUTH is expected before login; after USER the
            // backend leg already carries the session, keep it simple and strict.
            return self.reply(503, "AUTH TLS must come before USER");
        }
        self.reply(234, "Proceed with negotiation.");
        self.out.push(Action::StartTls);
        self.wait = Some(Wait::Tls);
    }

    fn cmd_prot(&mut self, level: ProtLevel) {
        if !self.client_tls {
            return self.reply(503, "PROT requires AUTH TLS first");
        }
        if level == ProtLevel::Clear && !self.s.allow_clear_data {
            // RFC 2228 §5: 534 = request denied for policy reasons.
            return self.reply(534, "Clear data connections are not allowed by policy");
        }
        self.prot = level;
        self.reply(
            200,
            match level {
                ProtLevel::Private => "Protection level set to Private",
                ProtLevel::Clear => "Protection level set to Clear",
            },
        );
    }

    fn cmd_ccc(&mut self, busy: bool) {
        if !self.control_tls {
            return self.reply(533, "Control channel is not protected");
        }
        if !self.s.allow_ccc {
            return self.reply(534, "CCC is not allowed by policy");
        }
        if busy {
            return self.reply(503, "Transfer in progress");
        }
        self.reply(200, "CCC ok; control channel continues in clear");
        self.out.push(Action::ClearControl);
        self.control_tls = false;
    }

    /// RFC 959 `REIN`: the backend forgets the login; the client leg keeps its
    /// TLS (RFC 4217 leaves that to the server) and must log in again. The
    /// gateway forgets the login only on the backend's `220` (vsftpd answers
    /// `502` and keeps the login: then nothing changes here either).
    fn cmd_rein(&mut self, now: Instant, busy: bool) {
        if busy {
            return self.reply(503, "Transfer in progress");
        }
        if self.backend.is_none() {
            self.candidate = None;
            return self.reply(220, "Service ready for new user");
        }
        if !self.logged_in {
            // Not a login-phase verb (policy::LOGIN_PHASE).
            return self.reply(530, "Please login with USER and PASS");
        }
        self.drop_pending();
        self.request(
            now,
            b"REIN".to_vec(),
            Purpose::Rein,
            self.s.timeouts.connect,
        );
    }

    /// The backend's final reply to `REIN`.
    fn rein_reply(&mut self, now: Instant, r: Reply) {
        if r.code == 220 {
            info!(user = %self.user, "logged out by REIN");
            self.logged_in = false;
            self.gateway_auth = false;
            self.user.clear();
            self.commands = CommandPolicy::Any;
            self.candidate = None;
            self.started = now;
        }
        self.send(r);
    }

    fn cmd_feat(&mut self, now: Instant, busy: bool) {
        if self.backend.is_some() && !busy {
            self.request(
                now,
                b"FEAT".to_vec(),
                Purpose::Feat,
                self.s.timeouts.connect,
            );
        } else {
            let feat = control::gateway_feat(None, &self.feat_options());
            self.send(feat);
        }
    }

    fn feat_options(&self) -> FeatOptions {
        FeatOptions {
            tls_offered: self.s.tls_mode != TlsMode::None,
            epsv: true,
            active: self.s.active_enabled,
        }
    }

    /// Login must not cross in clear where TLS is required (RFC 4217 §11).
    fn login_refused_clear(&mut self, env: &mut dyn Env) -> bool {
        if self.s.require_tls && !self.client_tls {
            info!("login refused: TLS required");
            env.login_refused_no_tls();
            self.reply(530, "TLS required on this server: use AUTH TLS before USER");
            return true;
        }
        false
    }

    fn cmd_user(&mut self, name: &[u8], env: &mut dyn Env) {
        if self.login_refused_clear(env) {
            return;
        }
        let user = String::from_utf8_lossy(name).into_owned();
        let identity = self.cert.identity.as_deref();
        if !policy::cert_user_allowed(self.cert.require_user_match, identity, &user) {
            info!(
                user = %user,
                identity = identity.unwrap_or("-"),
                reason = "cert_identity",
                "login refused: USER does not match the client certificate"
            );
            return self.reply(530, "Login incorrect");
        }
        // A new login may land in another directory (or on another backend).
        self.cwd = None;
        info!(user = %user, "login attempt");
        self.out.push(Action::Route {
            user: user.clone(),
            verified: false,
        });
        self.candidate = Some(Candidate::new(user));
        self.wait = Some(Wait::Route);
    }

    fn routed(&mut self, now: Instant, r: Result<Routed, RouteFailure>) {
        if self.wait != Some(Wait::Route) {
            return;
        }
        self.wait = None;
        match r {
            Err(RouteFailure::UnknownBackend) => {
                info!("login refused: unknown backend in user@backend");
                self.candidate = None;
                self.reply(530, "Login incorrect");
            }
            Err(RouteFailure::Unavailable(why)) => {
                // The old backend connection (if any) is gone too. The reason names
                // backends and OS errors: the log keeps it, the client gets the
                // configured text (nothing internal goes out).
                warn!(error = %why, "login refused: no backend available");
                self.backend = None;
                let text = self.s.unavailable.clone();
                self.reply(421, &text);
                self.close(SessionOutcome::BackendUnavailable);
            }
            Ok(route) => {
                // The route's filter waits for the backend's 230 with the name.
                if let Some(c) = self.candidate.as_mut() {
                    c.commands = route.commands;
                }
                if route.fresh || self.backend.is_none() {
                    // A new backend connection knows no login: nor do we.
                    self.expects.clear();
                    self.dir_commands.clear();
                    self.internal_deadline = None;
                    self.logged_in = false;
                    self.gateway_auth = false;
                    self.user.clear();
                    self.commands = CommandPolicy::Any;
                    if self.pending.is_some() || self.setup.is_some() {
                        self.drop_pending();
                    }
                }
                self.backend = Some(BackendInfo {
                    data_mode: route.data_mode,
                    v4: route.backend_v4,
                    keepalive_noop: route.keepalive_noop,
                });
                let login = self
                    .candidate
                    .as_mut()
                    .and_then(|c| c.backend_user.take())
                    .unwrap_or(route.login);
                let line = Command::User(login.into_bytes()).canonical();
                self.request(now, line, Purpose::User, self.s.timeouts.login);
            }
        }
    }

    /// `auth: gateway` (the route said so, no backend was connected): the
    /// gateway asks for the password itself.
    fn auth_required(&mut self) {
        if self.wait != Some(Wait::Route) {
            return;
        }
        self.wait = None;
        if let Some(c) = self.candidate.as_mut() {
            c.gateway_pass_due = true;
            self.reply(331, "Password required");
        }
    }

    /// The `PASS` after the gateway's own `331`: counted by the throttle, then
    /// checked by the provider; no backend connection before it succeeds.
    fn gateway_pass(&mut self, cmd: &Command, env: &mut dyn Env) {
        let Command::Pass(password) = cmd else {
            return self.reply(503, "Login with USER and PASS");
        };
        if !env.pass_attempt() {
            warn!(
                reason = "failed_logins",
                "PASS refused: cooling down after failed logins"
            );
            self.reply(421, "Too many failed logins; try again later");
            self.close(SessionOutcome::RefusedPolicy);
            return;
        }
        let Some(c) = self.candidate.as_mut() else {
            return;
        };
        c.gateway_pass_due = false;
        c.password = Some(password.clone());
        self.out.push(Action::Authenticate {
            user: c.user.clone(),
            password: password.clone(),
        });
        self.wait = Some(Wait::Auth);
    }

    /// The provider's answer: on success route (and connect) as a verified
    /// login; a bad password is a failed login like a backend's `530`.
    fn authenticated(&mut self, r: Result<Option<BackendLogin>, AuthFailure>, env: &mut dyn Env) {
        if self.wait != Some(Wait::Auth) {
            return;
        }
        self.wait = None;
        let Some(c) = self.candidate.as_mut() else {
            return;
        };
        match r {
            Ok(mapped) => {
                let password = c.password.take();
                c.gateway_auth = true;
                match mapped {
                    Some(login) => {
                        c.backend_user = Some(login.user);
                        c.backend_password = Some(login.password);
                    }
                    None => c.backend_password = password,
                }
                info!("gateway authentication succeeded");
                self.out.push(Action::Route {
                    user: c.user.clone(),
                    verified: true,
                });
                self.wait = Some(Wait::Route);
            }
            Err(AuthFailure::BadCredentials) => {
                self.candidate = None;
                info!("login failed: bad credentials (gateway)");
                if env.login_failed() {
                    warn!(
                        reason = "failed_logins",
                        "too many failed logins; cooling down"
                    );
                    self.reply(530, "Login incorrect");
                    self.reply(421, "Too many failed logins; try again later");
                    self.close(SessionOutcome::RefusedPolicy);
                    return;
                }
                self.reply(530, "Login incorrect");
            }
            Err(AuthFailure::Unavailable(why)) => {
                self.candidate = None;
                warn!(error = %why, "login refused: authentication provider unavailable");
                self.reply(421, "Authentication service unavailable; try again later");
                self.close(SessionOutcome::BackendUnavailable);
            }
        }
    }

    /// `PASS`/`ACCT`: forwarded only right after the backend asked for them
    /// (`331`/`332` to this login's `USER`). On a logged-in session the
    /// gateway answers `PASS` itself: never forwarded, never counted (pure-ftpd
    /// would call it a failed login, vsftpd a success; issue 23 item 4).
    fn cmd_pass(&mut self, now: Instant, line: Vec<u8>, env: &mut dyn Env, cmd: &Command) {
        if self.login_refused_clear(env) {
            return;
        }
        if self.candidate.as_ref().is_some_and(|c| c.gateway_pass_due) {
            return self.gateway_pass(cmd, env);
        }
        let due = self.candidate.as_ref().is_some_and(|c| c.password_due);
        let is_pass = matches!(cmd, Command::Pass(_));
        if self.backend.is_none() || !due {
            if self.logged_in && is_pass {
                return self.reply(230, "Already logged in");
            }
            if !self.logged_in {
                return self.reply(503, "Login with USER first");
            }
            // ACCT on a logged-in session (RFC 959: a server may ask for it
            // later) goes to the backend; it changes no user or filter here.
        } else if is_pass && !env.pass_attempt() {
            // RFC 2577 §4: the throttle holds for every session of the address,
            // also one that was parked after USER before the cool-down began.
            warn!(
                reason = "failed_logins",
                "PASS refused: cooling down after failed logins"
            );
            self.reply(421, "Too many failed logins; try again later");
            self.close(SessionOutcome::RefusedPolicy);
            return;
        }
        let purpose = if is_pass {
            Purpose::Pass
        } else {
            Purpose::User
        };
        self.request(now, line, purpose, self.s.timeouts.login);
    }

    /// The final reply to USER, PASS or ACCT. Only `230` changes who is
    /// logged in, and to the name the backend has just accepted.
    fn login_reply(&mut self, now: Instant, purpose: Purpose, r: Reply, env: &mut dyn Env) {
        let verified_password = match self.candidate.as_mut() {
            Some(c) if r.class() == 3 && purpose == Purpose::User => c.backend_password.take(),
            _ => None,
        };
        if let Some(pw) = verified_password {
            // `auth: gateway`: the client's PASS was answered by the gateway's
            // check; the backend gets the verified (or mapped) password now.
            let line = Command::Pass(pw).canonical();
            self.request(now, line, Purpose::Pass, self.s.timeouts.login);
            return;
        }
        if r.code == 230 {
            let fresh = !self.logged_in;
            if let Some(c) = self.candidate.take() {
                self.user = c.user;
                self.commands = c.commands;
                self.gateway_auth = c.gateway_auth;
                self.logged_in = true;
                info!(user = %self.user, fresh, "logged in");
                env.login_ok(fresh);
            } else if self.logged_in {
                // ACCT on a logged-in session: nothing new.
                env.login_ok(false);
            } else {
                // A 230 to nothing we asked for: believe nothing.
                warn!("backend said 230 without a login under way; ignored");
            }
        } else if r.class() == 3 {
            if let Some(c) = self.candidate.as_mut() {
                c.password_due = true;
            }
        } else {
            // The attempt is over; an earlier login (if any) stays as it was.
            self.candidate = None;
            if purpose == Purpose::Pass && r.class() >= 4 {
                info!(code = r.code, "login failed");
                if env.login_failed() {
                    // RFC 2577 §4: limit password guessing.
                    warn!(
                        reason = "failed_logins",
                        "too many failed logins; cooling down"
                    );
                    self.send(r);
                    self.reply(421, "Too many failed logins; try again later");
                    self.close(SessionOutcome::RefusedPolicy);
                    return;
                }
            }
        }
        self.send(r);
    }

    /// Gate shared by PASV/EPSV/PORT/EPRT: logged in, and data protection
    /// allowed by policy.
    fn data_setup_allowed(&mut self) -> bool {
        if self.backend.is_none() || !self.logged_in {
            self.reply(530, "Please login with USER and PASS");
            return false;
        }
        if self.client_tls && self.prot == ProtLevel::Clear && !self.s.allow_clear_data {
            self.reply(534, "Data connections must be protected: use PROT P");
            return false;
        }
        true
    }

    fn cmd_passive(&mut self, cmd: &Command) {
        let pasv = matches!(cmd, Command::Pasv);
        if self.epsv_all && pasv {
            return self.reply(503, "Only EPSV allowed after EPSV ALL");
        }
        if let Command::Epsv(EpsvArg::Protocol(p)) = cmd {
            // RFC 2428 §3: the client's network protocol must be the one we serve it on.
            let ours = if self.s.local_v4 { 1 } else { 2 };
            if *p != ours {
                return self.reply(
                    522,
                    &format!("Network protocol not supported, use ({ours})"),
                );
            }
        }
        if !self.data_setup_allowed() {
            return;
        }
        // One pinhole per PASV: an earlier unused one is dropped.
        self.drop_pending();
        self.out.push(Action::OpenPassive {
            protected: self.prot == ProtLevel::Private,
        });
        self.wait = Some(Wait::Passive { pasv });
    }

    fn passive_opened(&mut self, now: Instant, r: Result<SocketAddr, String>) {
        let Some(Wait::Passive { pasv }) = self.wait else {
            return;
        };
        self.wait = None;
        let adv = match r {
            Ok(adv) => adv,
            Err(e) => {
                self.drop_pending();
                return self.reply(425, &format!("Cannot open data port: {e}"));
            }
        };
        let reply = match (pasv, adv.ip().to_canonical()) {
            (true, IpAddr::V4(v4)) => render_227(std::net::SocketAddrV4::new(v4, adv.port())),
            (true, IpAddr::V6(_)) => {
                self.drop_pending();
                return self.reply(425, "PASV needs an IPv4 address; use EPSV");
            }
            (false, _) => render_229(adv.port()),
        };
        debug!(adv = %adv, "pinhole open");
        self.setup = Some(Setup {
            client: ClientSide::Pinhole,
            reply,
        });
        self.backend_leg(now, false);
    }

    /// `PORT`/`EPRT`: the client listens; the gateway will connect to it.
    fn cmd_active(&mut self, now: Instant, target: SocketAddr, env: &mut dyn Env) {
        if !self.s.active_enabled {
            return self.reply(502, "Active mode is disabled here; use PASV or EPSV");
        }
        if self.epsv_all {
            return self.reply(503, "Only EPSV allowed after EPSV ALL");
        }
        if !self.data_setup_allowed() {
            return;
        }
        // lftp's active mode over IPv6 sends `EPRT |2|::|port|`: the
        // unspecified address means the control peer's, as vsftpd takes it.
        let target = if target.ip().is_unspecified() {
            SocketAddr::new(self.s.client_ip, target.port())
        } else {
            target
        };
        if let Err(refusal) = control::check_active_target(self.s.client_ip, target) {
            warn!(target = %target, reason = refusal.as_str(), "active-mode target refused");
            env.active_refused();
            let (code, text) = refusal.reply();
            return self.reply(code, text);
        }
        self.drop_pending();
        self.setup = Some(Setup {
            client: ClientSide::Active(target),
            reply: Reply::new(200, "PORT command successful"),
        });
        self.backend_leg(now, true);
    }

    /// Set up the backend side of the next transfer per the backend's `data_mode`.
    fn backend_leg(&mut self, now: Instant, client_active: bool) {
        let Some(b) = self.backend else {
            self.setup = None;
            self.drop_pending();
            return self.reply(530, "Please login with USER and PASS");
        };
        let active = match b.data_mode {
            DataMode::Passive => false,
            DataMode::Active => true,
            DataMode::SameAsClient => client_active,
        };
        let limit = self.s.timeouts.connect;
        if active {
            self.out.push(Action::ListenBackend);
            self.wait = Some(Wait::Listen);
        } else if b.v4 {
            self.request(now, b"PASV".to_vec(), Purpose::BackendPasv, limit);
        } else {
            self.request(now, b"EPSV".to_vec(), Purpose::BackendEpsv, limit);
        }
    }

    fn backend_listening(&mut self, now: Instant, r: Result<SocketAddr, String>) {
        if self.wait != Some(Wait::Listen) {
            return;
        }
        self.wait = None;
        match r {
            Ok(local) => {
                let line = match local {
                    SocketAddr::V4(v4) => format!("PORT {}", control::render_port_arg(v4)),
                    v6 => format!("EPRT {}", control::render_eprt_arg(v6)),
                };
                let limit = self.s.timeouts.connect;
                self.request(now, line.into_bytes(), Purpose::BackendPort, limit);
            }
            Err(e) => {
                warn!(error = %e, "cannot listen for the backend's data connection");
                self.abandon_setup(Reply::new(425, "Cannot open data port toward the backend"));
            }
        }
    }

    /// The backend side is ready: the client gets its 227/229/200.
    fn setup_ready(&mut self, backend: BackendSide) {
        let Some(setup) = self.setup.take() else {
            return;
        };
        self.pending = Some(Pending {
            client: setup.client,
            backend,
        });
        self.send(setup.reply);
    }

    fn abandon_setup(&mut self, to_client: Reply) {
        self.setup = None;
        self.drop_pending();
        self.send(to_client);
    }

    fn drop_pending(&mut self) {
        self.pending = None;
        self.out.push(Action::DropPending);
    }

    /// The reply to the gateway's own PASV/EPSV/PORT toward the backend.
    fn data_reply(&mut self, now: Instant, purpose: Purpose, r: Reply) {
        match purpose {
            Purpose::BackendPasv if r.code == 227 => match control::parse_227(&r) {
                // Its address is ignored: we connect to its control peer IP.
                Ok(a) => self.setup_ready(BackendSide::Passive(a.port())),
                Err(e) => {
                    warn!(error = %e, reply = %r.text(), "backend sent a malformed 227");
                    self.abandon_setup(Reply::new(425, "Backend sent a malformed passive reply"));
                }
            },
            Purpose::BackendPasv if r.class() == 5 => {
                let limit = self.s.timeouts.connect;
                self.request(now, b"EPSV".to_vec(), Purpose::BackendEpsv, limit);
            }
            Purpose::BackendEpsv if r.code == 229 => match control::parse_229(&r) {
                Ok(p) => self.setup_ready(BackendSide::Passive(p)),
                Err(e) => {
                    warn!(error = %e, reply = %r.text(), "backend sent a malformed 229");
                    self.abandon_setup(Reply::new(425, "Backend sent a malformed passive reply"));
                }
            },
            Purpose::BackendPort if r.is_success() => self.setup_ready(BackendSide::Active),
            _ => self.abandon_setup(r),
        }
    }

    fn cmd_transfer(&mut self, now: Instant, kind: TransferKind, line: Vec<u8>) {
        if self.backend.is_none() || !self.logged_in {
            return self.reply(530, "Please login with USER and PASS");
        }
        let Some(pending) = self.pending.take() else {
            return self.reply(425, "Use PASV or EPSV first");
        };
        let path = transfer_path(kind, &control::strip_telnet(&line));
        let resolved = cwd::resolve(self.cwd.as_deref(), &path);
        // The data legs first: for an upload whose client connected first,
        // the driver holds the command until the client leg is open and
        // answers `TransferWithheld` instead when it failed.
        self.out.push(Action::StartTransfer {
            kind,
            client: pending.client,
            backend: pending.backend,
            protected: self.prot == ProtLevel::Private,
        });
        self.out.push(Action::ToBackend(line));
        self.expects.push_back(Expect::Transfer);
        self.last_backend_activity = now;
        self.transfer = Some(TransferState {
            kind,
            path,
            resolved,
            started: now,
            final_reply: None,
            outcome: None,
            outcome_at: None,
        });
    }

    fn cmd_abort(&mut self, now: Instant, env: &mut dyn Env) {
        let Some(t) = self.transfer.take() else {
            return;
        };
        if t.outcome.is_none() {
            self.out.push(Action::AbortTransfer);
        }
        info!(
            kind = t.kind.verb(),
            file = %t.path,
            result = %result_label(TransferResult::Aborted),
            "transfer aborted by client"
        );
        self.account(&t, TransferResult::Aborted, 0, false, env);
        // RFC 959 §4.1.3: 426 for the aborted transfer, then 226 for ABOR.
        // Whatever the backend answers (or omits) is absorbed by the abort.
        self.abort_backend(
            now,
            None,
            vec![
                Reply::new(426, "Transfer aborted"),
                Reply::new(226, "ABOR command successful"),
            ],
        );
    }

    /// Abort the backend's side of the transfer: `ABOR`, then a `NOOP`
    /// whose `200` marks the end of everything the backend sends for the
    /// transfer and the `ABOR` (issue 20 §3: pure-ftpd sends no final reply
    /// for an aborted `RETR`, ProFTPD `226` before `426`). The client gets
    /// `replies` then; a forwarded command caught between the transfer and
    /// the ABOR gets a `451` in its place. Bounded by `timeouts.connect`.
    fn abort_backend(&mut self, now: Instant, failed: Option<TransferState>, replies: Vec<Reply>) {
        let mut caught = 0;
        for e in self.expects.iter_mut() {
            match *e {
                Expect::Transfer => *e = Expect::Aborting,
                Expect::Forward | Expect::Directory => {
                    *e = Expect::Aborting;
                    caught += 1;
                }
                _ => {}
            }
        }
        // Directory commands caught here get a 451, not their reply: the
        // tracked directory stays unknown-safe by forgetting them (and it).
        if !self.dir_commands.is_empty() {
            self.dir_commands.clear();
            self.cwd = None;
        }
        let mut replies = replies;
        if caught > 0 {
            // After the transfer's reply, before the ABOR's.
            let at = if failed.is_some() {
                replies.len()
            } else {
                1.min(replies.len())
            };
            for _ in 0..caught {
                replies.insert(at, Reply::new(451, "Command aborted with the transfer"));
            }
        }
        self.abort = Some(Abort { failed, replies });
        self.out.push(Action::ToBackend(b"ABOR".to_vec()));
        self.expects.push_back(Expect::Aborting);
        self.request(
            now,
            b"NOOP".to_vec(),
            Purpose::AbortSync,
            self.s.timeouts.connect,
        );
    }

    /// The backend has answered everything sent before the abort's NOOP.
    fn abort_done(&mut self, now: Instant, env: &mut dyn Env) {
        while self.expects.front() == Some(&Expect::Aborting) {
            self.expects.pop_front();
        }
        let Some(abort) = self.abort.take() else {
            return;
        };
        self.last_activity = now;
        if let Some(t) = abort.failed {
            let result = match &t.outcome {
                Some(Err(e)) if e.aborted => TransferResult::Aborted,
                _ => TransferResult::Failed,
            };
            self.account(&t, result, 0, false, env);
        }
        for r in abort.replies {
            self.send(r);
        }
    }

    /// Drop a reply no outstanding command can take (issue 24): it must not
    /// reach the client nor change the session; too many end the session.
    fn unsolicited(&mut self, r: Reply, why: &'static str, env: &mut dyn Env) {
        self.unsolicited += 1;
        env.unsolicited_reply();
        warn!(
            code = r.code,
            reply = %excerpt(&r),
            why,
            count = self.unsolicited,
            "unsolicited backend reply dropped"
        );
        if self.unsolicited > self.s.max_unsolicited {
            warn!(
                reason = "unsolicited_replies",
                "backend keeps sending unsolicited replies; closing"
            );
            self.reply(421, "Backend protocol error; closing control connection");
            self.close(SessionOutcome::BackendUnavailable);
        }
    }

    fn backend_reply(&mut self, now: Instant, r: Reply, env: &mut dyn Env) {
        if self.backend.is_none() {
            return;
        }
        self.last_backend_activity = now;
        if r.code == 200 {
            if let Some(at) = self.expects.iter().position(|e| *e == Expect::Noop) {
                // The answer to our keepalive NOOP (transfer replies are
                // never 200, and servers may answer it mid-transfer).
                self.expects.remove(at);
                return;
            }
        }
        let Some(head) = self.expects.front().copied() else {
            if r.code == 421 {
                // RFC 959: 421 may come at any time; the backend is going away.
                self.send(r);
                return self.close_keep_outcome();
            }
            return self.unsolicited(r, "no command outstanding", env);
        };
        if matches!(r.code, 227 | 229)
            && !matches!(
                head,
                Expect::Internal(Purpose::BackendPasv | Purpose::BackendEpsv)
            )
        {
            // The gateway answers PASV/EPSV itself: a backend passive reply
            // it did not ask for would send the client to the backend's
            // (internal) address.
            return self.unsolicited(r, "passive reply the gateway did not ask for", env);
        }
        match head {
            Expect::Forward | Expect::Directory => {
                if r.is_preliminary() {
                    return self.unsolicited(
                        r,
                        "preliminary reply to a command that is not a transfer",
                        env,
                    );
                }
                self.expects.pop_front();
                if head == Expect::Directory {
                    if let Some(command) = self.dir_commands.pop_front() {
                        cwd::apply(&mut self.cwd, &command, &r);
                    }
                }
                let closing = r.code == 421;
                self.send(r);
                if closing {
                    self.close_keep_outcome();
                }
            }
            Expect::Noop => {
                if r.class() >= 4 {
                    self.expects.pop_front();
                } else {
                    self.unsolicited(r, "not an answer to NOOP", env);
                }
            }
            Expect::Transfer => {
                if r.is_preliminary() {
                    return self.send(r);
                }
                if !ends_transfer(&r) {
                    // Servers that answer a command sent during the transfer
                    // (STAT, NOOP) before the transfer's own final reply.
                    if let Some(at) = self
                        .expects
                        .iter()
                        .position(|e| matches!(e, Expect::Forward | Expect::Directory))
                    {
                        if self.expects.remove(at) == Some(Expect::Directory) {
                            // Directory commands are answered in order too.
                            if let Some(command) = self.dir_commands.pop_front() {
                                cwd::apply(&mut self.cwd, &command, &r);
                            }
                        }
                        return self.send(r);
                    }
                    return self.unsolicited(r, "reply that cannot end a transfer", env);
                }
                self.expects.pop_front();
                self.transfer_reply(now, r, env);
            }
            Expect::Aborting => {
                if r.code == 421 {
                    self.send(r);
                    return self.close_keep_outcome();
                }
                if r.code == 200 {
                    // The NOOP's answer (ABOR and transfers are never
                    // answered 200): everything before it was the abort's.
                    while self.expects.front() == Some(&Expect::Aborting) {
                        self.expects.pop_front();
                    }
                    if self.expects.front() == Some(&Expect::Internal(Purpose::AbortSync)) {
                        self.expects.pop_front();
                        self.internal_deadline = None;
                    }
                    return self.abort_done(now, env);
                }
                debug!(code = r.code, "reply to the aborted transfer absorbed");
            }
            Expect::Internal(purpose) => {
                if !r.is_final() {
                    // Preliminary replies to our own commands are not the client's.
                    return;
                }
                if !answers(purpose, &r) {
                    // E.g. a stray `200` taken for PASV's reply would reach
                    // the client and shift every later pairing.
                    return self.unsolicited(r, "not a reply the command can get", env);
                }
                self.expects.pop_front();
                self.internal_deadline = None;
                match purpose {
                    Purpose::User | Purpose::Pass => self.login_reply(now, purpose, r, env),
                    Purpose::Feat => {
                        let feat = control::gateway_feat(Some(&r), &self.feat_options());
                        self.send(feat);
                    }
                    Purpose::Rein => self.rein_reply(now, r),
                    Purpose::BackendPasv | Purpose::BackendEpsv | Purpose::BackendPort => {
                        self.data_reply(now, purpose, r)
                    }
                    Purpose::AbortSync => self.abort_done(now, env),
                }
            }
        }
    }

    fn transfer_reply(&mut self, now: Instant, r: Reply, env: &mut dyn Env) {
        if r.is_preliminary() {
            return self.send(r);
        }
        let Some(t) = self.transfer.as_mut() else {
            return self.send(r);
        };
        if r.is_success() && t.outcome.is_none() {
            // Hold 226 until the client's data leg is completely written.
            t.final_reply = Some(r);
            return;
        }
        if let Some(t) = self.transfer.take() {
            self.finish_transfer(now, t, r, env);
        }
    }

    /// The driver did not send the upload command (see [`Input::TransferWithheld`]):
    /// the backend owes nothing for it.
    fn transfer_withheld(&mut self, env: &mut dyn Env) {
        let Some(t) = self.transfer.take() else {
            return;
        };
        if let Some(at) = self.expects.iter().rposition(|e| *e == Expect::Transfer) {
            self.expects.remove(at);
        }
        self.out.push(Action::AbortTransfer);
        warn!(
            kind = t.kind.verb(),
            file = %t.path,
            result = %result_label(TransferResult::Failed),
            "client data connection refused before the upload: command not forwarded"
        );
        self.account(&t, TransferResult::Failed, 0, false, env);
        self.reply(425, "Can't open data connection");
    }

    fn transfer_done(&mut self, now: Instant, o: Result<u64, TransferFailure>, env: &mut dyn Env) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if t.outcome.is_some() {
            return;
        }
        let failed = o.is_err();
        t.outcome = Some(o);
        t.outcome_at = Some(now);
        if failed && t.final_reply.is_none() {
            // The backend still owes the transfer's final reply, and may never
            // send it once its data connection is gone (pure-ftpd): abort it
            // so that no later reply can be taken for the transfer's.
            if let Some(t) = self.transfer.take() {
                let reply = match &t.outcome {
                    Some(Err(e)) => e.reply.clone(),
                    _ => Reply::new(426, "Transfer aborted"),
                };
                self.abort_backend(now, Some(t), vec![reply]);
            }
            return;
        }
        if t.final_reply.is_some() {
            if let Some(mut t) = self.transfer.take() {
                if let Some(r) = t.final_reply.take() {
                    self.finish_transfer(now, t, r, env);
                }
            }
        }
    }

    /// Both the data legs and the backend's final reply are in: tell the client.
    /// A transfer that failed on either data leg is never reported as 226.
    fn finish_transfer(&mut self, now: Instant, t: TransferState, r: Reply, env: &mut dyn Env) {
        if t.outcome.is_none() {
            // The backend failed it before the data legs finished: cut them.
            self.out.push(Action::AbortTransfer);
        }
        // The control connection was busy until now, not idle.
        self.last_activity = now;
        let kind = t.kind.verb();
        let secs = format!(
            "{:.3}",
            now.saturating_duration_since(t.started).as_secs_f64()
        );
        let to_client = match (&t.outcome, r.is_success()) {
            (Some(Ok(bytes)), true) => {
                info!(
                    kind,
                    file = %t.path,
                    bytes,
                    secs = %secs,
                    result = %result_label(TransferResult::Ok),
                    "transfer complete"
                );
                self.account(&t, TransferResult::Ok, *bytes, true, env);
                r
            }
            (Some(Err(e)), _) => {
                let result = if e.aborted {
                    TransferResult::Aborted
                } else {
                    TransferResult::Failed
                };
                warn!(
                    kind,
                    file = %t.path,
                    secs = %secs,
                    result = %result_label(result),
                    error = %e.error,
                    backend_reply = %r.text(),
                    "transfer failed"
                );
                self.account(&t, result, 0, false, env);
                e.reply.clone()
            }
            (_, false) | (None, true) => {
                info!(
                    kind,
                    file = %t.path,
                    code = r.code,
                    result = %result_label(TransferResult::Refused),
                    "transfer refused or failed by backend"
                );
                self.account(&t, TransferResult::Refused, 0, false, env);
                r
            }
        };
        self.send(to_client);
    }

    fn account(
        &self,
        t: &TransferState,
        result: TransferResult,
        bytes: u64,
        complete: bool,
        env: &mut dyn Env,
    ) {
        env.transfer_finished(&Finished {
            kind: t.kind,
            path: t.resolved.clone(),
            started: t.started,
            result,
            bytes,
            complete,
            user: self.user.clone(),
            binary: self.binary,
        });
    }
}

/// A final reply that can answer the gateway's own command (RFC 959 §5.4,
/// RFC 2428, RFC 2389); errors always can.
fn answers(purpose: Purpose, r: &Reply) -> bool {
    if r.class() >= 4 {
        return true;
    }
    match purpose {
        Purpose::User | Purpose::Pass => matches!(r.code, 202 | 230 | 331 | 332),
        Purpose::Feat => r.code == 211,
        Purpose::Rein => r.code == 220,
        Purpose::BackendPasv => r.code == 227,
        Purpose::BackendEpsv => r.code == 229,
        Purpose::BackendPort => r.code == 200,
        Purpose::AbortSync => r.code == 200,
    }
}

/// A final reply that can end a transfer (RFC 959 §5.4: 226/250 or an
/// error); `200`, `257`, `227`… cannot.
fn ends_transfer(r: &Reply) -> bool {
    matches!(r.code, 226 | 250) || r.class() >= 4
}

/// The start of a reply's text, for a log line.
fn excerpt(r: &Reply) -> String {
    r.text().chars().take(80).collect()
}

/// The path argument of a transfer command line, for the transfer log; a
/// listing's `ls`-style options (`LIST -la`) are not a path.
pub fn transfer_path(kind: TransferKind, line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let arg = match text.split_once(' ') {
        Some((_, arg)) => arg.trim(),
        None => "",
    };
    let listing = matches!(kind, TransferKind::List | TransferKind::Nlst);
    if listing && arg.starts_with('-') {
        // `-la dir`: the path, if any, follows the options.
        return arg
            .split_once(' ')
            .map(|(_, p)| p.trim().to_string())
            .unwrap_or_default();
    }
    arg.to_string()
}

mod cwd;

#[cfg(test)]
mod tests;
