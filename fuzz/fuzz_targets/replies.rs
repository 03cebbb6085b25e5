//! Reply pairing under any backend byte stream (issue 24 §2): the session
//! machine, logged in, is fed client commands and whatever bytes a hostile
//! backend sends — framed by the production `LineFramer` and
//! `ReplyAssembler`, at any point of the dialogue (after the greeting and
//! `230`, during and after transfers, during an abort).
//!
//! It asserts: no backend `227`/`229` reaches the client — the only ones it
//! gets are exactly the gateway's own answer to the `PASV`/`EPSV` it sent,
//! for the pinhole the harness opened — and no line of any reply to the
//! client starts like a `227`/`229` reply line (inner lines are padded);
//! every reply re-parses to itself; the client never gets more final
//! replies than it sent commands (plus the `421` that ends a session).
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use arbitrary::{Result, Unstructured};
use ftpsgate::config::{CommandPolicy, DataMode, Timeouts, TlsMode};
use ftpsgate::control::{
    render_227, render_229, Framed, LineFramer, Reply, ReplyAssembler, MAX_LINE,
};
use ftpsgate::session::state::{
    Action, Env, Finished, Input, Machine, Routed, Settings, TransferFailure,
};
use ftpsgate_fuzz::assert_reparses;
use libfuzzer_sys::fuzz_target;
use tokio::time::Instant;

const CLIENT: &[&str] = &[
    "PASV",
    "EPSV",
    "NOOP",
    "SIZE f",
    "CWD /",
    "STAT",
    "FEAT",
    "TYPE I",
    "RETR f",
    "STOR f",
    "LIST",
    "ABOR",
    "PWD",
    "PORT 127,0,0,1,4,1",
    "REIN",
    "USER alice",
    "PASS pw",
];

/// Backend lines worth splicing into the arbitrary stream.
const BACKEND: &[&str] = &[
    "227 Entering Passive Mode (10,1,2,3,4,5)\r\n",
    "227 Entering Passive Mode (127,0,0,66,1,2)\r\n",
    "229 Entering Extended Passive Mode (|||70000|)\r\n",
    "229 (|||2121|)\r\n",
    "200 extra\r\n",
    "150 Opening\r\n",
    "226 Transfer complete\r\n",
    "230 Logged in\r\n",
    "331 Password\r\n",
    "211-Status\r\n227 Entering Passive Mode (10,1,2,3,4,5)\r\n211 End\r\n",
    "211-Features:\r\n EPSV\r\n211 End\r\n",
    "425 no\r\n",
    "421 bye\r\n",
];

struct Quiet;

impl Env for Quiet {
    fn command(&mut self, _verb: &str) {}
    fn pass_attempt(&mut self) -> bool {
        true
    }
    fn login_ok(&mut self, _fresh: bool) {}
    fn login_failed(&mut self) -> bool {
        false
    }
    fn login_refused_no_tls(&mut self) {}
    fn active_refused(&mut self) {}
    fn transfer_finished(&mut self, _done: &Finished) {}
    fn unsolicited_reply(&mut self) {}
}

struct Harness {
    m: Machine,
    now: Instant,
    framer: LineFramer,
    assembler: ReplyAssembler,
    /// What the gateway answers to the pending PASV/EPSV, if one was asked.
    passive: Option<Reply>,
    /// Final replies the client may still get (one per command sent).
    owed: usize,
    transfer_running: bool,
    closed: bool,
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let s = Settings {
        tls_mode: TlsMode::None,
        tls_available: false,
        require_tls: false,
        allow_clear_data: true,
        allow_ccc: false,
        active_enabled: true,
        local_v4: true,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        timeouts: Timeouts::default(),
        banner: ftpsgate::config::DEFAULT_BANNER.to_string(),
        unavailable: ftpsgate::config::DEFAULT_UNAVAILABLE.to_string(),
        max_unsolicited: u.int_in_range(0..=10)?,
    };
    let now = Instant::now();
    let (m, _greeting) = Machine::new(s, false, now);
    let mut h = Harness {
        m,
        now,
        framer: LineFramer::new(MAX_LINE),
        assembler: ReplyAssembler::new(),
        passive: None,
        owed: 0,
        transfer_running: false,
        closed: false,
    };
    // Log in through the backend, as a real session does.
    h.client("USER alice");
    h.backend_bytes(b"331 Password\r\n");
    h.client("PASS pw");
    h.backend_bytes(b"230 Logged in\r\n");
    let mut steps = 0;
    while !u.is_empty() && !h.closed && steps < 300 {
        steps += 1;
        match u.int_in_range(0..=9)? {
            0..=2 if h.m.reads_client() => {
                let line = *u.choose(CLIENT)?;
                h.client(line);
            }
            3..=5 => {
                let bytes: Vec<u8> = u.arbitrary()?;
                h.backend_bytes(&bytes);
            }
            6 | 7 => {
                let line = *u.choose(BACKEND)?;
                h.backend_bytes(line.as_bytes());
            }
            8 if h.transfer_running => {
                h.transfer_running = false;
                let outcome = if u.arbitrary()? {
                    Ok(7)
                } else {
                    Err(TransferFailure {
                        reply: Reply::new(425, "Cannot open data connection"),
                        aborted: false,
                        error: "refused".into(),
                    })
                };
                h.feed(Input::TransferDone(outcome));
            }
            9 => {
                h.now += Duration::from_secs(u.int_in_range(0..=700)?);
                if h.now >= h.m.deadline(h.now) {
                    h.feed(Input::Timeout);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl Harness {
    fn client(&mut self, line: &str) {
        self.owed += 1;
        self.feed(Input::ClientLine(line.as_bytes().to_vec()));
    }

    fn backend_bytes(&mut self, bytes: &[u8]) {
        self.framer.push(bytes);
        while let Some(item) = self.framer.next_line() {
            if self.closed {
                return;
            }
            let Framed::Line(line) = item else {
                continue;
            };
            let Ok(Some(reply)) = self.assembler.push_line(line) else {
                continue;
            };
            if self.m.reads_backend() {
                self.feed(Input::BackendReply(reply));
            }
        }
    }

    fn feed(&mut self, input: Input) {
        let actions = self.m.handle(self.now, input, &mut Quiet);
        let mut queue: Vec<Action> = actions;
        while !queue.is_empty() {
            let mut next = Vec::new();
            for a in queue {
                assert!(!self.closed, "action after Close: {a:?}");
                match a {
                    Action::ToClient(r) => self.to_client(&r),
                    Action::OpenPassive { .. } => {
                        let adv = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 40001);
                        // The harness cannot tell PASV from EPSV here: either
                        // rendering of this pinhole is the gateway's own.
                        self.passive = Some(render_227(adv));
                        next.extend(self.m.handle(
                            self.now,
                            Input::PassiveOpened(Ok(SocketAddr::V4(adv))),
                            &mut Quiet,
                        ));
                    }
                    Action::ListenBackend => next.extend(self.m.handle(
                        self.now,
                        Input::BackendListening(Ok("127.0.0.1:50000".parse().expect("addr"))),
                        &mut Quiet,
                    )),
                    Action::Route { .. } => next.extend(self.m.handle(
                        self.now,
                        Input::Routed(Ok(Routed {
                            login: "alice".into(),
                            commands: CommandPolicy::Any,
                            fresh: false,
                            data_mode: DataMode::Passive,
                            backend_v4: true,
                            keepalive_noop: None,
                        })),
                        &mut Quiet,
                    )),
                    Action::StartTransfer { .. } => self.transfer_running = true,
                    Action::AbortTransfer => self.transfer_running = false,
                    Action::Close => self.closed = true,
                    Action::ToBackend(_)
                    | Action::StartTls
                    | Action::ClearControl
                    | Action::DropPending
                    | Action::Authenticate { .. } => {}
                }
            }
            queue = next;
        }
    }

    fn to_client(&mut self, r: &Reply) {
        assert_reparses(r);
        if matches!(r.code, 227 | 229) {
            let own = self.passive.take().expect("227/229 without a PASV/EPSV");
            let epsv = render_229(40001);
            assert!(
                *r == own || *r == epsv,
                "a backend passive reply reached the client: {r:?}"
            );
        }
        for line in r.lines.iter().skip(1) {
            assert!(
                !(line.starts_with(b"227") || line.starts_with(b"229")),
                "a line that reads as a passive reply reached the client: {r:?}"
            );
        }
        if r.code != 421 && r.code >= 200 {
            // 1xx are preliminary; the closing 421 may come unasked.
            assert!(self.owed > 0, "more final replies than commands: {r:?}");
            self.owed -= 1;
        }
    }
}
