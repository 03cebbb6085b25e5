//! The whole control session (`session::state::Machine`, sans I/O) driven by
//! an arbitrary interleaving of client lines, backend replies, results of the
//! operations it asks for (route/connect, pinhole, backend listener, TLS),
//! transfer outcomes, timers, drain and force.
//!
//! The harness plays the driver and keeps to its contract (it reads the
//! client and the backend only when the machine says so, answers each
//! operation at once, ends a transfer only while one runs). It asserts:
//! no panic; every reply to the client re-parses to itself; every line to
//! the backend is one non-empty line; nothing after `Close`; a transfer is
//! started only with the pinhole / backend listener the machine set up; a
//! transfer is accounted once, as `Ok` only when its data legs succeeded, and
//! a failed one reaches the client as its failure reply, never as `226`;
//! plaintext pipelined after `AUTH TLS` closes the session with nothing sent
//! to the backend; with `require_tls`, nothing reaches the backend before
//! TLS; a denied verb is never forwarded while logged in (the filter being
//! the confirmed login's); before login only login-phase verbs reach the
//! backend; no backend line holds CR or NUL; replies due to the backend stay
//! bounded.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use ftpsgate::config::{CommandPolicy, DataMode, Timeouts, TlsMode};
use ftpsgate::control::{Framed, LineFramer, Reply, MAX_LINE};
use ftpsgate::session::outcome::TransferResult;
use ftpsgate::session::state::{
    Action, BackendSide, ClientSide, Env, Finished, Input, Machine, RouteFailure, Routed, Settings,
    TransferFailure, MAX_PIPELINE,
};
use ftpsgate_fuzz::{assert_reparses, replies};
use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;

/// Client lines worth trying: every verb the gateway treats specially, and
/// some it forwards.
const CLIENT: &[&str] = &[
    "USER alice",
    "USER bob@other",
    "PASS secret",
    "ACCT x",
    "AUTH TLS",
    "AUTH SSL",
    "AUTH KERBEROS",
    "PBSZ 0",
    "PROT P",
    "PROT C",
    "PROT E",
    "CCC",
    "PASV",
    "EPSV",
    "EPSV 1",
    "EPSV 2",
    "EPSV ALL",
    "PORT 127,0,0,1,4,1",
    "PORT 10,9,8,7,0,21",
    "EPRT |1|127.0.0.1|2000|",
    "EPRT |2|::1|2000|",
    "FEAT",
    "SYST",
    "NOOP",
    "QUIT",
    "REIN",
    "ABOR",
    "\u{ff}\u{f4}\u{ff}\u{f2}ABOR",
    "OPTS UTF8 ON",
    "REST 100",
    "TYPE A",
    "TYPE I",
    "RETR f",
    "STOR f",
    "LIST",
    "NLST",
    "MLSD",
    "APPE f",
    "STOU",
    "SIZE f",
    "MDTM f",
    "DELE f",
    "SITE CHMOD 777 f",
    "CWD /",
    "STAT",
    "HELP",
    "",
    "X",
    "RETR",
];

/// Verbs the harness's route policy denies; the gateway never sends them itself.
const DENIED: &[&str] = &["DELE", "SITE"];

#[derive(Default)]
struct Record {
    finished: Vec<Finished>,
    login_failures: u32,
    cool_down_after: u32,
}

impl Env for Record {
    fn command(&mut self, verb: &str) {
        assert!(!verb.is_empty() && verb.len() <= 4, "verb {verb:?}");
    }
    fn pass_attempt(&mut self) -> bool {
        true
    }
    fn login_ok(&mut self, _fresh: bool) {}
    fn login_failed(&mut self) -> bool {
        self.login_failures += 1;
        self.cool_down_after > 0 && self.login_failures >= self.cool_down_after
    }
    fn login_refused_no_tls(&mut self) {}
    fn active_refused(&mut self) {}
    fn transfer_finished(&mut self, done: &Finished) {
        self.finished.push(done.clone());
    }
    fn unsolicited_reply(&mut self) {}
}

/// What the harness (as driver) holds and knows.
struct Driver {
    m: Machine,
    env: Record,
    now: Instant,
    require_tls: bool,
    tls_up: bool,
    /// `StartTls` was performed and the handshake has not been reported.
    handshaking: bool,
    has_backend: bool,
    pinhole: bool,
    listener: bool,
    /// A transfer task runs: `Some(expected failure reply text)` once ended.
    transfer: Option<TransferRun>,
    transfers_started: usize,
    policy_active: bool,
    closed: bool,
}

struct TransferRun {
    /// The outcome fed: `None` while the data legs run.
    fed: Option<std::result::Result<u64, Reply>>,
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let tls_mode = *u.choose(&[TlsMode::None, TlsMode::Explicit, TlsMode::Implicit])?;
    let tls_available = tls_mode != TlsMode::None && u.arbitrary()?;
    let client_ip = *u.choose(&[
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(Ipv4Addr::new(10, 9, 8, 7)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ])?;
    let s = Settings {
        tls_mode,
        tls_available,
        require_tls: u.arbitrary()?,
        allow_clear_data: u.arbitrary()?,
        allow_ccc: u.arbitrary()?,
        active_enabled: u.arbitrary()?,
        local_v4: client_ip.is_ipv4(),
        client_ip,
        timeouts: Timeouts {
            connect: Duration::from_secs(10),
            login: Duration::from_secs(60),
            idle: Duration::from_secs(600),
            pinhole: Duration::from_secs(30),
            data_idle: Duration::from_secs(300),
            control_write: Duration::from_secs(30),
        },
        banner: ftpsgate::config::DEFAULT_BANNER.to_string(),
        unavailable: ftpsgate::config::DEFAULT_UNAVAILABLE.to_string(),
        max_unsolicited: u.int_in_range(0..=10)?,
    };
    let implicit = tls_mode == TlsMode::Implicit && tls_available;
    let now = Instant::now();
    let require_tls = s.require_tls;
    let (m, greeting) = Machine::new(s, implicit, now);
    let mut d = Driver {
        m,
        env: Record {
            cool_down_after: u.int_in_range(0..=3)?,
            ..Record::default()
        },
        now,
        require_tls,
        tls_up: implicit,
        handshaking: false,
        has_backend: false,
        pinhole: false,
        listener: false,
        transfer: None,
        transfers_started: 0,
        policy_active: false,
        closed: false,
    };
    d.perform(u, greeting)?;
    let mut steps = 0;
    while !u.is_empty() && !d.closed && steps < 400 {
        steps += 1;
        d.event(u)?;
        assert!(
            d.m.replies_due() <= MAX_PIPELINE + 8,
            "{} replies due",
            d.m.replies_due()
        );
    }
    Ok(())
}

impl Driver {
    fn feed(&mut self, u: &mut Unstructured<'_>, input: Input) -> Result<()> {
        let client_line = matches!(input, Input::ClientLine(_));
        let logged_in_before = self.m.logged_in();
        // The filter in force is the confirmed login's, not the one routed
        // for a USER the backend has not accepted (issue 17 A1).
        self.policy_active = matches!(self.m.commands(), CommandPolicy::Deny(_));
        let finished_before = self.env.finished.len();
        let failure_fed = match (&input, &self.transfer) {
            (Input::TransferDone(Err(f)), Some(_)) => Some(f.reply.clone()),
            _ => None,
        };
        let actions = self.m.handle(self.now, input, &mut self.env);
        assert!(!self.closed || actions.is_empty(), "actions after Close");
        // Accounting: each finished transfer matches what its legs did.
        let new: Vec<Finished> = self.env.finished[finished_before..].to_vec();
        assert!(new.len() <= 1, "two transfers finished at once");
        for f in &new {
            let run = self
                .transfer
                .take()
                .expect("finished a transfer never started");
            match f.result {
                TransferResult::Ok => {
                    assert!(matches!(run.fed, Some(Ok(_))), "Ok without data legs done");
                    assert!(f.complete);
                }
                _ => assert!(!f.complete),
            }
            if let Some(Err(reply)) = &run.fed {
                if !matches!(f.result, TransferResult::Aborted) || failure_fed.is_some() {
                    assert!(
                        actions.contains(&Action::ToClient(reply.clone())),
                        "failed transfer not reported with its failure reply"
                    );
                }
                for a in &actions {
                    if let Action::ToClient(r) = a {
                        assert!(r.code != 226 && r.code != 250, "226 for a failed transfer");
                    }
                }
            }
        }
        if self.handshaking && client_line {
            // STARTTLS injection: plaintext before the handshake.
            assert!(
                actions.iter().all(|a| !matches!(a, Action::ToBackend(_))),
                "plaintext after AUTH TLS reached the backend"
            );
            assert!(actions.contains(&Action::Close), "injection did not close");
        }
        if !logged_in_before && !self.m.logged_in() {
            // Issue 17 A3: before a login only login-phase verbs go out.
            for a in &actions {
                if let Action::ToBackend(line) = a {
                    let verb = String::from_utf8_lossy(
                        line.split(|&b| b == b' ').next().unwrap_or_default(),
                    )
                    .to_ascii_uppercase();
                    assert!(
                        ftpsgate::policy::allowed_before_login(&verb),
                        "{verb} reached the backend before login"
                    );
                }
            }
        }
        if self.policy_active && logged_in_before && self.m.logged_in() {
            for a in &actions {
                if let Action::ToBackend(line) = a {
                    let verb = String::from_utf8_lossy(line).to_ascii_uppercase();
                    assert!(
                        !DENIED.iter().any(|v| verb.starts_with(v)),
                        "denied verb forwarded: {verb}"
                    );
                }
            }
        }
        self.perform(u, actions)
    }

    fn perform(&mut self, u: &mut Unstructured<'_>, actions: Vec<Action>) -> Result<()> {
        for a in actions {
            assert!(!self.closed, "action after Close: {a:?}");
            match a {
                Action::ToClient(r) => {
                    assert!((100..=599).contains(&r.code));
                    assert_reparses(&r);
                }
                Action::ToBackend(line) => {
                    assert!(!line.is_empty());
                    assert!(!line.contains(&b'\n'), "LF in a backend line");
                    assert!(
                        !line.contains(&b'\r') && !line.contains(&0),
                        "CR/NUL in a backend line"
                    );
                    assert!(line.len() <= MAX_LINE + 16);
                    assert!(self.has_backend, "line to a backend never connected");
                    assert!(!self.handshaking, "backend line during the handshake");
                    if self.require_tls {
                        assert!(
                            self.tls_up,
                            "backend reached before TLS on a TLS-only listener"
                        );
                    }
                }
                Action::StartTls => {
                    assert!(!self.tls_up, "StartTls twice");
                    self.handshaking = true;
                    // Sometimes the client pipelines plaintext before the handshake.
                    if u.ratio(1, 8)? {
                        self.feed(u, Input::ClientLine(b"USER injected".to_vec()))?;
                        assert!(self.closed, "STARTTLS injection did not close");
                        return Ok(());
                    }
                    self.handshaking = false;
                    self.tls_up = true;
                    self.feed(u, Input::TlsEstablished)?;
                }
                Action::ClearControl => {}
                Action::Route { .. } => {
                    let r = match u.int_in_range(0..=5)? {
                        0 => Err(RouteFailure::UnknownBackend),
                        1 => Err(RouteFailure::Unavailable("Backend b unavailable".into())),
                        _ => {
                            let fresh = !self.has_backend || u.arbitrary()?;
                            let deny = u.ratio(1, 2)?;
                            Ok(Routed {
                                login: "alice".into(),
                                commands: if deny {
                                    CommandPolicy::Deny(
                                        DENIED.iter().map(|v| v.to_string()).collect(),
                                    )
                                } else {
                                    CommandPolicy::Any
                                },
                                fresh,
                                data_mode: *u.choose(&[
                                    DataMode::Passive,
                                    DataMode::Active,
                                    DataMode::SameAsClient,
                                ])?,
                                backend_v4: u.arbitrary()?,
                                keepalive_noop: u
                                    .arbitrary::<bool>()?
                                    .then_some(Duration::from_secs(30)),
                            })
                        }
                    };
                    match &r {
                        Ok(route) => {
                            if route.fresh {
                                self.pinhole = false;
                                self.listener = false;
                            }
                            self.has_backend = true;
                        }
                        Err(RouteFailure::Unavailable(_)) => self.has_backend = false,
                        Err(RouteFailure::UnknownBackend) => {}
                    }
                    self.feed(u, Input::Routed(r))?;
                }
                Action::OpenPassive { .. } => {
                    let r = if u.ratio(1, 6)? {
                        self.pinhole = false;
                        Err("port range exhausted".to_string())
                    } else {
                        self.pinhole = true;
                        let port = u.int_in_range(1024..=65535)?;
                        Ok(if u.ratio(1, 4)? {
                            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)
                        } else {
                            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), port)
                        })
                    };
                    self.feed(u, Input::PassiveOpened(r))?;
                }
                Action::ListenBackend => {
                    let r = if u.ratio(1, 6)? {
                        Err("no port".to_string())
                    } else {
                        self.listener = true;
                        Ok(SocketAddr::new(
                            *u.choose(&[
                                IpAddr::V4(Ipv4Addr::LOCALHOST),
                                IpAddr::V6(Ipv6Addr::LOCALHOST),
                            ])?,
                            u.int_in_range(1024..=65535)?,
                        ))
                    };
                    self.feed(u, Input::BackendListening(r))?;
                }
                Action::DropPending => {
                    self.pinhole = false;
                    self.listener = false;
                }
                Action::StartTransfer {
                    client, backend, ..
                } => {
                    assert!(self.transfer.is_none(), "second transfer while one runs");
                    if client == ClientSide::Pinhole {
                        assert!(self.pinhole, "transfer without its pinhole");
                        self.pinhole = false;
                    }
                    if backend == BackendSide::Active {
                        assert!(self.listener, "transfer without its backend listener");
                        self.listener = false;
                    }
                    if let BackendSide::Passive(p) = backend {
                        assert_ne!(p, 0, "backend data port 0");
                    }
                    self.transfers_started += 1;
                    self.transfer = Some(TransferRun { fed: None });
                }
                Action::AbortTransfer => {
                    if let Some(t) = self.transfer.as_mut() {
                        if t.fed.is_none() {
                            t.fed = Some(Err(Reply::new(426, "Transfer aborted")));
                        }
                    }
                }
                Action::Close => self.closed = true,
                // Only after `Input::AuthRequired`, which this target never feeds
                // (its routes authenticate at the backend).
                Action::Authenticate { .. } => {}
            }
        }
        Ok(())
    }

    fn event(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        match u.int_in_range(0..=13)? {
            0..=4 if self.m.reads_client() => {
                let line = if u.ratio(1, 6)? {
                    // Raw bytes through the production framer.
                    let raw: Vec<u8> = u.arbitrary()?;
                    let mut framer = LineFramer::new(MAX_LINE);
                    framer.push(&raw);
                    framer.push(b"\r\n");
                    match framer.next_line() {
                        Some(Framed::Line(line)) => line,
                        Some(Framed::TooLong) => return self.feed(u, Input::ClientTooLong),
                        None => return Ok(()),
                    }
                } else {
                    u.choose(CLIENT)?.as_bytes().to_vec()
                };
                self.feed(u, Input::ClientLine(line))
            }
            5..=9 if self.m.reads_backend() => {
                let reply = self.backend_reply(u)?;
                self.feed(u, Input::BackendReply(reply))
            }
            10 if self.m.transfer_running()
                && self.transfer.as_ref().is_some_and(|t| t.fed.is_none()) =>
            {
                let outcome = if u.arbitrary()? {
                    Ok(u.arbitrary::<u32>()? as u64)
                } else {
                    let (code, text) = *u.choose(&[
                        (425u16, "Cannot open data connection: FAILMARK"),
                        (426, "Connection closed; transfer aborted (FAILMARK)"),
                        (522, "Data connection refused: FAILMARK"),
                        (451, "Local error FAILMARK"),
                    ])?;
                    Err(Reply::new(code, text))
                };
                if let Some(t) = self.transfer.as_mut() {
                    t.fed = Some(outcome.clone());
                }
                let input = Input::TransferDone(outcome.map_err(|reply| TransferFailure {
                    aborted: false,
                    error: reply.text(),
                    reply,
                }));
                self.now += Duration::from_millis(u.int_in_range(0..=5000)?);
                self.feed(u, input)
            }
            11 => {
                // Time passes; a timer fires when due.
                self.now += Duration::from_secs(u.int_in_range(0..=900)?);
                if let Some(at) = self.m.keepalive_at() {
                    if self.now >= at && self.m.reads_backend() {
                        return self.feed(u, Input::KeepaliveDue);
                    }
                }
                if self.now >= self.m.deadline(self.now) {
                    return self.feed(u, Input::Timeout);
                }
                Ok(())
            }
            12 => {
                let input = *u.choose(&[0u8, 1, 2, 3, 4])?;
                let input = match input {
                    0 => Input::Shutdown,
                    1 => Input::Force,
                    2 if self.m.reads_client() => Input::ClientClosed,
                    3 if self.has_backend && self.m.reads_backend() => {
                        Input::BackendLost("connection reset".into())
                    }
                    _ => Input::ClientTooLong,
                };
                self.feed(u, input)
            }
            _ => Ok(()),
        }
    }

    fn backend_reply(&mut self, u: &mut Unstructured<'_>) -> Result<Reply> {
        let r = match u.int_in_range(0..=20)? {
            0 => {
                let raw: Vec<u8> = u.arbitrary()?;
                match replies(&raw).into_iter().next() {
                    Some(r) => r,
                    None => Reply::new(500, "?"),
                }
            }
            1 => Reply::new(
                227,
                &format!(
                    "Entering Passive Mode ({},{},{},{},{},{})",
                    u.arbitrary::<u8>()?,
                    u.arbitrary::<u8>()?,
                    u.arbitrary::<u8>()?,
                    u.arbitrary::<u8>()?,
                    u.arbitrary::<u8>()?,
                    u.arbitrary::<u8>()?
                ),
            ),
            2 => Reply::new(
                229,
                &format!(
                    "Entering Extended Passive Mode (|||{}|)",
                    u.arbitrary::<u16>()?
                ),
            ),
            3 => Reply::multi(
                211,
                &["Features:", "MDTM", "AUTH TLS", "EPSV", "UTF8", "End"],
            ),
            _ => {
                let code = *u.choose(&[
                    110u16, 125, 150, 200, 202, 211, 220, 221, 226, 230, 250, 331, 332, 350, 421,
                    425, 426, 450, 500, 501, 502, 503, 530, 550,
                ])?;
                Reply::new(code, "backend says so")
            }
        };
        Ok(r)
    }
}
