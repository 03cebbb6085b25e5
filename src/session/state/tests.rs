//! The session machine without sockets: scripted dialogues, checked action
//! by action (the `session` fuzz target covers arbitrary interleavings).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

use super::*;

#[derive(Default)]
struct Rec {
    finished: Vec<Finished>,
    logins_ok: usize,
    failed: usize,
    cool_down: bool,
    refused_active: usize,
}

impl Env for Rec {
    fn command(&mut self, _verb: &str) {}
    fn login_ok(&mut self) {
        self.logins_ok += 1;
    }
    fn login_failed(&mut self) -> bool {
        self.failed += 1;
        self.cool_down
    }
    fn login_refused_no_tls(&mut self) {}
    fn active_refused(&mut self) {
        self.refused_active += 1;
    }
    fn transfer_finished(&mut self, done: &Finished) {
        self.finished.push(done.clone());
    }
}

fn settings() -> Settings {
    Settings {
        tls_mode: TlsMode::Explicit,
        tls_available: true,
        require_tls: false,
        allow_clear_data: true,
        allow_ccc: false,
        active_enabled: true,
        local_v4: true,
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        timeouts: Timeouts::default(),
    }
}

struct T {
    m: Machine,
    env: Rec,
    now: Instant,
}

impl T {
    fn new(s: Settings) -> T {
        let now = Instant::now();
        let (m, greeting) = Machine::new(s, false, now);
        assert_eq!(codes(&greeting), vec![220]);
        T {
            m,
            env: Rec::default(),
            now,
        }
    }

    fn input(&mut self, input: Input) -> Vec<Action> {
        self.m.handle(self.now, input, &mut self.env)
    }

    fn client(&mut self, line: &str) -> Vec<Action> {
        assert!(self.m.reads_client(), "machine not reading the client");
        self.input(Input::ClientLine(line.as_bytes().to_vec()))
    }

    fn backend(&mut self, code: u16, text: &str) -> Vec<Action> {
        assert!(self.m.reads_backend(), "machine not reading the backend");
        self.input(Input::BackendReply(Reply::new(code, text)))
    }

    /// USER/PASS through a fresh backend connection.
    fn login(&mut self) {
        let a = self.client("USER alice");
        assert_eq!(
            a,
            vec![Action::Route {
                user: "alice".into()
            }]
        );
        assert!(!self.m.reads_client());
        let a = self.input(Input::Routed(Ok(Routed {
            login: "alice".into(),
            commands: CommandPolicy::Deny(vec!["DELE".into()]),
            fresh: true,
            data_mode: DataMode::Passive,
            backend_v4: true,
            keepalive_noop: Some(Duration::from_secs(30)),
        })));
        assert_eq!(a, vec![Action::ToBackend(b"USER alice".to_vec())]);
        assert_eq!(codes(&self.backend(331, "Password")), vec![331]);
        assert_eq!(backend_lines(&self.client("PASS pw")), vec!["PASS pw"]);
        assert_eq!(codes(&self.backend(230, "Welcome")), vec![230]);
        assert!(self.m.logged_in());
        assert_eq!(self.env.logins_ok, 1);
    }

    /// PASV through to the client's 227; the pinhole is advertised as 192.0.2.1:40001.
    fn pasv(&mut self) {
        let a = self.client("PASV");
        assert_eq!(
            a,
            vec![
                Action::DropPending,
                Action::OpenPassive { protected: false }
            ]
        );
        let adv = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40001);
        let a = self.input(Input::PassiveOpened(Ok(adv)));
        assert_eq!(backend_lines(&a), vec!["PASV"]);
        let a = self.backend(227, "Entering Passive Mode (127,0,0,1,200,10)");
        assert_eq!(
            a,
            vec![Action::ToClient(Reply::new(
                227,
                "Entering Passive Mode (192,0,2,1,156,65)."
            ))]
        );
    }

    fn retr(&mut self) {
        let a = self.client("RETR file");
        assert_eq!(
            a,
            vec![
                Action::ToBackend(b"RETR file".to_vec()),
                Action::StartTransfer {
                    kind: TransferKind::Retr,
                    client: ClientSide::Pinhole,
                    backend: BackendSide::Passive(200 * 256 + 10),
                    protected: false,
                },
            ]
        );
        assert_eq!(codes(&self.backend(150, "Opening")), vec![150]);
    }
}

fn codes(actions: &[Action]) -> Vec<u16> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToClient(r) => Some(r.code),
            _ => None,
        })
        .collect()
}

fn backend_lines(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToBackend(l) => Some(String::from_utf8_lossy(l).into_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn commands_before_login_are_answered_without_a_backend() {
    let mut t = T::new(settings());
    assert_eq!(codes(&t.client("SYST")), vec![215]);
    assert_eq!(codes(&t.client("NOOP")), vec![200]);
    assert_eq!(codes(&t.client("CWD /")), vec![530]);
    assert_eq!(codes(&t.client("PASV")), vec![530]);
    assert_eq!(codes(&t.client("PBSZ 0")), vec![503]);
    assert_eq!(codes(&t.client("xyzzy!")), vec![500]);
    let feat = t.client("FEAT");
    assert_eq!(codes(&feat), vec![211]);
}

#[test]
fn tls_required_refuses_login_in_clear_and_sends_nothing_to_a_backend() {
    let mut t = T::new(Settings {
        require_tls: true,
        ..settings()
    });
    let a = t.client("USER alice");
    assert_eq!(codes(&a), vec![530]);
    assert!(a.iter().all(|a| !matches!(a, Action::Route { .. })));
    assert_eq!(codes(&t.client("PASS pw")), vec![530]);
}

#[test]
fn plaintext_pipelined_after_auth_tls_closes_the_session() {
    let mut t = T::new(settings());
    let a = t.client("AUTH TLS");
    assert_eq!(
        a,
        vec![
            Action::ToClient(Reply::new(234, "Proceed with negotiation.")),
            Action::StartTls
        ]
    );
    // The client did not wait for the handshake: never execute its plaintext.
    let a = t.input(Input::ClientLine(b"USER injected".to_vec()));
    assert_eq!(a, vec![Action::Close]);
    assert_eq!(t.m.outcome(), SessionOutcome::ClientError);
}

#[test]
fn auth_tls_then_prot_p_protects_the_pinhole() {
    let mut t = T::new(settings());
    t.client("AUTH TLS");
    assert!(t.input(Input::TlsEstablished).is_empty());
    assert_eq!(codes(&t.client("PBSZ 0")), vec![200]);
    assert_eq!(codes(&t.client("PROT P")), vec![200]);
    t.login();
    let a = t.client("EPSV");
    assert_eq!(
        a,
        vec![Action::DropPending, Action::OpenPassive { protected: true }]
    );
}

#[test]
fn replies_keep_command_order_when_the_client_pipelines() {
    let mut t = T::new(settings());
    t.login();
    assert_eq!(backend_lines(&t.client("CWD a")), vec!["CWD a"]);
    // Answered by the gateway itself, but only after CWD's reply.
    assert!(t.client("EPSV ALL").is_empty());
    assert!(!t.m.reads_client());
    let a = t.backend(250, "CWD ok");
    assert_eq!(codes(&a), vec![250, 200]);
    assert!(t.m.reads_client());
}

#[test]
fn a_download_is_reported_only_after_its_data_legs_finished() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    // The backend is done first: 226 is held.
    assert!(t.backend(226, "Transfer complete").is_empty());
    assert!(!t.m.reads_backend());
    let a = t.input(Input::TransferDone(Ok(1234)));
    assert_eq!(codes(&a), vec![226]);
    assert_eq!(t.env.finished.len(), 1);
    assert_eq!(t.env.finished[0].result, TransferResult::Ok);
    assert_eq!(t.env.finished[0].bytes, 1234);
    assert_eq!(t.env.finished[0].path, "file");
}

#[test]
fn a_failed_data_leg_is_never_reported_as_226() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    let failure = TransferFailure {
        reply: Reply::new(426, "Connection closed; transfer aborted"),
        aborted: false,
        error: "reset".into(),
    };
    assert!(t.input(Input::TransferDone(Err(failure))).is_empty());
    let a = t.backend(226, "Transfer complete");
    assert_eq!(codes(&a), vec![426]);
    assert_eq!(t.env.finished[0].result, TransferResult::Failed);
    assert!(!t.env.finished[0].complete);
}

#[test]
fn a_transfer_refused_by_the_backend_cuts_the_data_legs() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.client("RETR missing");
    let a = t.backend(550, "No such file");
    assert_eq!(
        a,
        vec![
            Action::AbortTransfer,
            Action::ToClient(Reply::new(550, "No such file"))
        ]
    );
    assert_eq!(t.env.finished[0].result, TransferResult::Refused);
}

#[test]
fn abor_cuts_the_transfer_and_forwards_both_backend_replies() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    let a = t.client("ABOR");
    assert_eq!(
        a,
        vec![Action::AbortTransfer, Action::ToBackend(b"ABOR".to_vec())]
    );
    assert_eq!(t.env.finished[0].result, TransferResult::Aborted);
    assert_eq!(codes(&t.backend(426, "Aborted")), vec![426]);
    assert_eq!(codes(&t.backend(226, "ABOR ok")), vec![226]);
    assert_eq!(t.m.replies_due(), 0);
}

#[test]
fn keepalive_noop_replies_are_swallowed() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    let at = t.m.keepalive_at().expect("keepalive during a transfer");
    t.now = at;
    let a = t.input(Input::KeepaliveDue);
    assert_eq!(a, vec![Action::ToBackend(b"NOOP".to_vec())]);
    assert!(t.backend(200, "NOOP ok").is_empty());
    assert!(t.backend(226, "done").is_empty());
    assert_eq!(codes(&t.input(Input::TransferDone(Ok(1)))), vec![226]);
}

#[test]
fn malformed_backend_227_is_a_425_and_releases_the_pinhole() {
    let mut t = T::new(settings());
    t.login();
    t.client("PASV");
    let adv = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40001);
    t.input(Input::PassiveOpened(Ok(adv)));
    let a = t.backend(227, "Entering Passive Mode (1,2,3)");
    assert_eq!(codes(&a), vec![425]);
    assert!(a.contains(&Action::DropPending));
    assert_eq!(codes(&t.client("RETR f")), vec![425]);
}

#[test]
fn pasv_falls_back_to_epsv_toward_the_backend() {
    let mut t = T::new(settings());
    t.login();
    t.client("EPSV");
    let adv = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40001);
    t.input(Input::PassiveOpened(Ok(adv)));
    let a = t.backend(502, "PASV not here");
    assert_eq!(backend_lines(&a), vec!["EPSV"]);
    let a = t.backend(229, "Entering Extended Passive Mode (|||4321|)");
    assert_eq!(codes(&a), vec![229]);
}

#[test]
fn port_to_a_third_host_is_refused() {
    let mut t = T::new(settings());
    t.login();
    let a = t.client("PORT 10,1,2,3,4,1");
    assert_eq!(a.len(), 1);
    assert!(codes(&a)[0] >= 500);
    assert_eq!(t.env.refused_active, 1);
}

#[test]
fn a_silent_backend_times_out_with_421() {
    let mut t = T::new(settings());
    t.login();
    assert_eq!(backend_lines(&t.client("FEAT")), vec!["FEAT"]);
    let due = t.m.deadline(t.now);
    assert_eq!(due, t.now + Timeouts::default().connect);
    t.now = due;
    let a = t.input(Input::Timeout);
    assert_eq!(codes(&a), vec![421]);
    assert_eq!(a.last(), Some(&Action::Close));
    assert_eq!(t.m.outcome(), SessionOutcome::BackendUnavailable);
}

#[test]
fn too_many_failed_logins_close_with_421() {
    let mut t = T::new(settings());
    t.env.cool_down = true;
    t.client("USER alice");
    t.input(Input::Routed(Ok(Routed {
        login: "alice".into(),
        commands: CommandPolicy::Any,
        fresh: true,
        data_mode: DataMode::Passive,
        backend_v4: true,
        keepalive_noop: None,
    })));
    t.backend(331, "Password");
    t.client("PASS wrong");
    let a = t.backend(530, "Login incorrect");
    assert_eq!(codes(&a), vec![530, 421]);
    assert_eq!(a.last(), Some(&Action::Close));
    assert_eq!(t.m.outcome(), SessionOutcome::RefusedPolicy);
}

#[test]
fn denied_commands_are_answered_550_and_not_forwarded() {
    let mut t = T::new(settings());
    t.login();
    let a = t.client("DELE x");
    assert_eq!(codes(&a), vec![550]);
    assert!(backend_lines(&a).is_empty());
}

/// Issue 15 item 4: the drain deadline cuts a running transfer; the session
/// ends as `Cut`, not `Ok`, and the transfer is aborted (never 226).
#[test]
fn drain_deadline_cuts_the_session_as_cut() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    assert!(t.input(Input::Shutdown).is_empty());
    let a = t.input(Input::Force);
    assert_eq!(codes(&a), vec![421]);
    assert!(a.contains(&Action::AbortTransfer), "{a:?}");
    assert_eq!(a.last(), Some(&Action::Close));
    assert_eq!(t.m.outcome(), SessionOutcome::Cut);
}

#[test]
fn drain_waits_for_the_running_transfer() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    assert!(t.input(Input::Shutdown).is_empty());
    t.backend(226, "done");
    let a = t.input(Input::TransferDone(Ok(5)));
    assert_eq!(codes(&a), vec![226, 421]);
    assert_eq!(a.last(), Some(&Action::Close));
}
