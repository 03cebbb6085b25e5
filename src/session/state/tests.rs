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
    fresh_logins: usize,
    /// PASS lines counted by the throttle.
    attempts: usize,
    /// The throttle refuses every PASS (cool-down).
    blocked: bool,
    failed: usize,
    cool_down: bool,
    refused_active: usize,
    unsolicited: usize,
}

impl Env for Rec {
    fn command(&mut self, _verb: &str) {}
    fn pass_attempt(&mut self) -> bool {
        if self.blocked {
            return false;
        }
        self.attempts += 1;
        true
    }
    fn login_ok(&mut self, fresh: bool) {
        self.logins_ok += 1;
        if fresh {
            self.fresh_logins += 1;
        }
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
    fn unsolicited_reply(&mut self) {
        self.unsolicited += 1;
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
        banner: crate::config::DEFAULT_BANNER.into(),
        unavailable: crate::config::DEFAULT_UNAVAILABLE.into(),
        max_unsolicited: MAX_UNSOLICITED,
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
                user: "alice".into(),
                verified: false,
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
                Action::StartTransfer {
                    kind: TransferKind::Retr,
                    client: ClientSide::Pinhole,
                    backend: BackendSide::Passive(200 * 256 + 10),
                    protected: false,
                },
                Action::ToBackend(b"RETR file".to_vec()),
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
fn user_must_match_the_certificate_identity_when_asked() {
    let mut t = T::new(settings());
    t.m.set_cert_login(CertLogin {
        identity: Some("alice".into()),
        require_user_match: true,
    });
    let a = t.client("USER mallory");
    assert_eq!(codes(&a), vec![530]);
    assert!(a.iter().all(|a| !matches!(a, Action::Route { .. })));
    let a = t.client("USER alice");
    assert!(a
        .iter()
        .any(|a| matches!(a, Action::Route { user, .. } if user == "alice")));
    // No certificate (optional mode): no name matches.
    let mut t = T::new(settings());
    t.m.set_cert_login(CertLogin {
        identity: None,
        require_user_match: true,
    });
    assert_eq!(codes(&t.client("USER alice")), vec![530]);
    // Not asked: any name goes on.
    let mut t = T::new(settings());
    t.m.set_cert_login(CertLogin {
        identity: Some("alice".into()),
        require_user_match: false,
    });
    assert!(t
        .client("USER bob")
        .iter()
        .any(|a| matches!(a, Action::Route { .. })));
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

/// An upload whose client leg failed before the command was sent (issue 20 §3): the
/// driver withholds `STOR`, the client gets `425`, the backend owes nothing, and the
/// next command is paired with its own reply.
#[test]
fn a_withheld_upload_is_answered_425_and_owes_no_backend_reply() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    let a = t.client("STOR up.bin");
    assert!(matches!(a[0], Action::StartTransfer { .. }), "{a:?}");
    assert_eq!(backend_lines(&a), vec!["STOR up.bin"]);
    let a = t.input(Input::TransferWithheld);
    assert!(a.contains(&Action::AbortTransfer), "{a:?}");
    assert_eq!(codes(&a), vec![425]);
    assert_eq!(t.env.finished.len(), 1);
    assert_eq!(t.env.finished[0].result, TransferResult::Failed);
    assert_eq!(backend_lines(&t.client("PWD")), vec!["PWD"]);
    assert_eq!(codes(&t.backend(257, "\"/\"")), vec![257]);
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
    // The backend's side is aborted, with a NOOP to mark the end of its replies.
    let a = t.input(Input::TransferDone(Err(failure)));
    assert_eq!(backend_lines(&a), vec!["ABOR", "NOOP"]);
    assert!(codes(&a).is_empty());
    assert!(t.backend(226, "Transfer complete").is_empty());
    let a = t.backend(200, "NOOP ok");
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
fn abor_cuts_the_transfer_and_the_client_gets_426_then_226() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    let a = t.client("ABOR");
    assert_eq!(
        a,
        vec![
            Action::AbortTransfer,
            Action::ToBackend(b"ABOR".to_vec()),
            Action::ToBackend(b"NOOP".to_vec())
        ]
    );
    assert_eq!(t.env.finished[0].result, TransferResult::Aborted);
    // vsftpd: 426 for the transfer, 226 for ABOR; absorbed until the NOOP's 200.
    assert!(t.backend(426, "Aborted").is_empty());
    assert!(t.backend(226, "ABOR ok").is_empty());
    assert_eq!(codes(&t.backend(200, "NOOP ok")), vec![426, 226]);
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

#[test]
fn the_transfer_log_gets_the_path_the_backend_resolved() {
    let mut t = T::new(settings());
    t.login();
    assert_eq!(backend_lines(&t.client("PWD")), vec!["PWD"]);
    assert_eq!(codes(&t.backend(257, "\"/home/alice\" is cwd")), vec![257]);
    assert_eq!(backend_lines(&t.client("CWD pub")), vec!["CWD pub"]);
    assert_eq!(codes(&t.backend(250, "ok")), vec![250]);
    // Refused: the directory stays (state changes on evidence).
    assert_eq!(backend_lines(&t.client("CWD /secret")), vec!["CWD /secret"]);
    assert_eq!(codes(&t.backend(550, "no")), vec![550]);
    t.pasv();
    t.retr();
    assert!(t.backend(226, "Transfer complete").is_empty());
    assert_eq!(codes(&t.input(Input::TransferDone(Ok(1)))), vec![226]);
    assert_eq!(t.env.finished[0].path, "/home/alice/pub/file");
}

fn routed(login: &str, commands: CommandPolicy, fresh: bool) -> Input {
    Input::Routed(Ok(Routed {
        login: login.into(),
        commands,
        fresh,
        data_mode: DataMode::Passive,
        backend_v4: true,
        keepalive_noop: None,
    }))
}

/// Issue 17 A1: vsftpd answers a second USER with `530 Can't change to
/// another user` and keeps the first login; the gateway must keep its user,
/// filter and transfer-log name too.
#[test]
fn second_user_refused_by_the_backend_changes_nothing() {
    let mut t = T::new(settings());
    t.login();
    assert_eq!(t.m.user(), "alice");
    t.client("USER root");
    let a = t.input(routed("root", CommandPolicy::Any, false));
    assert_eq!(backend_lines(&a), vec!["USER root"]);
    assert_eq!(t.m.user(), "alice", "not before the backend's answer");
    let a = t.backend(530, "Can't change to another user.");
    assert_eq!(codes(&a), vec![530]);
    assert!(t.m.logged_in());
    assert_eq!(t.m.user(), "alice");
    // alice's filter (deny DELE) still holds.
    let a = t.client("DELE x");
    assert_eq!(codes(&a), vec![550]);
    assert!(backend_lines(&a).is_empty());
    // A PASS now is not a login: the gateway answers it, uncounted.
    let a = t.client("PASS x");
    assert_eq!(codes(&a), vec![230]);
    assert!(backend_lines(&a).is_empty());
    assert_eq!(t.env.attempts, 1, "only the first login's PASS was counted");
    t.pasv();
    t.retr();
    t.backend(226, "done");
    t.input(Input::TransferDone(Ok(5)));
    assert_eq!(t.env.finished[0].user, "alice");
}

/// A re-login the backend accepts switches user and filter on its 230, and
/// that 230 is not a fresh login for the throttle.
#[test]
fn second_user_accepted_by_the_backend_switches_on_its_230() {
    let mut t = T::new(settings());
    t.login();
    t.client("USER bob");
    t.input(routed(
        "bob",
        CommandPolicy::Deny(vec!["RETR".into()]),
        false,
    ));
    t.backend(331, "Password");
    // Before the 230 alice's filter is in force: DELE refused, RETR not.
    assert_eq!(codes(&t.client("DELE x")), vec![550]);
    assert_eq!(backend_lines(&t.client("PASS pw")), vec!["PASS pw"]);
    assert_eq!(t.m.user(), "alice");
    t.backend(230, "Welcome bob");
    assert_eq!(t.m.user(), "bob");
    assert_eq!(t.env.fresh_logins, 1, "only alice's login was fresh");
    assert_eq!(t.env.logins_ok, 2);
    let a = t.client("DELE x");
    assert_eq!(backend_lines(&a), vec!["DELE x"]);
    t.backend(250, "deleted");
    assert_eq!(codes(&t.client("RETR x")), vec![550]);
}

/// Issue 17 A2: REIN changes the login state only on the backend's 220.
#[test]
fn rein_changes_the_state_only_on_the_backends_220() {
    let mut t = T::new(settings());
    t.login();
    assert_eq!(backend_lines(&t.client("REIN")), vec!["REIN"]);
    assert!(t.m.logged_in(), "not before the backend's answer");
    assert_eq!(codes(&t.backend(502, "REIN not implemented.")), vec![502]);
    assert!(t.m.logged_in());
    assert_eq!(codes(&t.client("DELE x")), vec![550], "filter still on");

    assert_eq!(backend_lines(&t.client("REIN")), vec!["REIN"]);
    assert_eq!(codes(&t.backend(220, "Ready for new user")), vec![220]);
    assert!(!t.m.logged_in());
    assert_eq!(t.m.user(), "");
    let a = t.client("DELE x");
    assert_eq!(codes(&a), vec![530], "logged out: login-phase verbs only");
    assert!(backend_lines(&a).is_empty());
}

/// Issue 17 A3: between USER and a successful PASS only login-phase verbs
/// reach the backend.
#[test]
fn before_login_only_login_phase_verbs_reach_the_backend() {
    let mut t = T::new(settings());
    t.client("USER x");
    t.input(routed("x", CommandPolicy::Any, true));
    t.backend(331, "Password");
    for line in [
        "DELE secret",
        "SITE CPFR /etc/passwd",
        "CWD /",
        "RETR a",
        "STOR b",
        "MKD d",
        "TYPE I",
        "REIN",
        "PASV",
        "STAT",
    ] {
        let a = t.client(line);
        assert_eq!(codes(&a), vec![530], "{line}");
        assert!(backend_lines(&a).is_empty(), "{line} reached the backend");
    }
    for line in ["HELP", "NOOP", "SYST", "OPTS UTF8 ON"] {
        let a = t.client(line);
        assert_eq!(backend_lines(&a), vec![line], "{line}");
        t.backend(200, "ok");
    }
    let a = t.client("PASS pw");
    assert_eq!(backend_lines(&a), vec!["PASS pw"]);
    t.backend(530, "Login incorrect");
    let a = t.client("DELE secret");
    assert_eq!(codes(&a), vec![530], "a failed PASS logs nobody in");
    let a = t.client("PASS again");
    assert_eq!(codes(&a), vec![503], "PASS needs a USER first");
    assert!(backend_lines(&a).is_empty());
}

/// Issue 17 A4: the backend receives the checked command rebuilt, not the
/// client's bytes (a CR hidden behind IAC WILL is gone; the verb is upper case).
#[test]
fn forwarded_bytes_are_the_canonical_command() {
    let mut t = T::new(settings());
    t.login();
    let a = t.input(Input::ClientLine(
        b"site chmod 644 a\xff\xfb\rDELE x".to_vec(),
    ));
    assert_eq!(
        a,
        vec![Action::ToBackend(b"SITE chmod 644 aDELE x".to_vec())]
    );
    t.backend(200, "ok");
    let a = t.input(Input::ClientLine(b"mkd \xff\xffdir".to_vec()));
    assert_eq!(a, vec![Action::ToBackend(b"MKD \xff\xffdir".to_vec())]);
}

/// Issue 17 B5: during the cool-down a parked session's PASS is refused
/// before it reaches the backend.
#[test]
fn pass_refused_during_cool_down_never_reaches_the_backend() {
    let mut t = T::new(settings());
    t.client("USER alice");
    t.input(routed("alice", CommandPolicy::Any, true));
    t.backend(331, "Password");
    t.env.blocked = true;
    let a = t.client("PASS right");
    assert_eq!(codes(&a), vec![421]);
    assert!(backend_lines(&a).is_empty());
    assert_eq!(a.last(), Some(&Action::Close));
    assert_eq!(t.m.outcome(), SessionOutcome::RefusedPolicy);
}

/// The `forward` fuzz target's property over a fixed pseudo-random sample (so
/// `cargo test` checks it too): whatever the client line, each byte string
/// sent to the backend is the canonical form of the command the gateway
/// checked, holds no CR/LF/NUL, and is allowed by the filter in force.
#[test]
fn forwarded_bytes_are_canonical_for_generated_lines() {
    const VERBS: &[&[u8]] = &[
        b"DELE",
        b"dele",
        b"SITE",
        b"CWD",
        b"MKD",
        b"RETR",
        b"NOOP",
        b"TYPE",
        b"REST",
        b"OPTS",
        b"HELP",
        b"SIZE",
        b"XMKD",
        b"STAT",
        b"PASS",
        b"ACCT",
        b"D\xff\xfbELE",
    ];
    const BYTES: &[u8] = &[
        b' ', b' ', b'a', b'x', b'/', b'1', b'\r', 0, 0xff, 0xff, 0xfb, 0xfd, 0xf4, 0xf2, b'D',
        b'E', b'L',
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut t = T::new(settings());
    t.login();
    for _ in 0..20_000 {
        let mut line = VERBS[(next() % VERBS.len() as u64) as usize].to_vec();
        for _ in 0..next() % 12 {
            line.push(BYTES[(next() % BYTES.len() as u64) as usize]);
        }
        let checked = parse_command(&line);
        let filter = t.m.commands().clone();
        let actions = t.input(Input::ClientLine(line.clone()));
        let sent = backend_lines_bytes(&actions);
        match &checked {
            Err(_) => assert!(sent.is_empty(), "{line:?}"),
            Ok(cmd) => {
                for bytes in &sent {
                    assert_eq!(bytes, &cmd.canonical(), "{line:?}");
                    assert!(!bytes.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)));
                    assert!(policy::command_allowed(&filter, cmd.verb()));
                }
            }
        }
        for _ in 0..sent.len() {
            t.backend(200, "ok");
        }
        assert!(t.m.logged_in(), "{line:?}");
    }
}

fn backend_lines_bytes(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToBackend(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

// Reply pairing (issue 24 §2, issue 20 §3): a scripted backend that
// misbehaves at every point of the dialogue.

#[test]
fn an_extra_reply_after_230_is_dropped_and_pasv_still_gets_the_gateways_227() {
    let mut t = T::new(settings());
    t.login();
    // The example: one line more than asked, right after 230.
    assert!(t.backend(200, "extra").is_empty());
    assert_eq!(t.env.unsolicited, 1);
    t.pasv();
    let a = t.client("NOOP");
    assert_eq!(backend_lines(&a), vec!["NOOP"]);
    assert_eq!(codes(&t.backend(200, "NOOP ok")), vec![200]);
}

#[test]
fn a_backend_227_or_229_never_reaches_the_client() {
    let mut t = T::new(settings());
    t.login();
    // Unsolicited, with nothing outstanding.
    assert!(t
        .backend(227, "Entering Passive Mode (10,1,2,3,4,5)")
        .is_empty());
    // In place of the reply to a forwarded command: dropped, the real one follows.
    t.client("SIZE f");
    assert!(t
        .backend(229, "Entering Extended Passive Mode (|||70000|)")
        .is_empty());
    assert!(t
        .backend(227, "Entering Passive Mode (127,0,0,66,1,2)")
        .is_empty());
    assert_eq!(codes(&t.backend(213, "42")), vec![213]);
    assert_eq!(t.env.unsolicited, 3);
    assert_eq!(t.m.replies_due(), 0);
}

#[test]
fn a_preliminary_reply_to_a_command_that_is_no_transfer_is_dropped() {
    let mut t = T::new(settings());
    t.login();
    t.client("CWD /");
    assert!(t.backend(150, "Opening").is_empty());
    assert_eq!(codes(&t.backend(250, "ok")), vec![250]);
    assert_eq!(t.env.unsolicited, 1);
}

#[test]
fn a_reply_that_cannot_end_a_transfer_does_not_end_it() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    for (code, text) in [(200, "Type set"), (257, "\"/\""), (230, "again")] {
        assert!(
            t.backend(code, text).is_empty(),
            "{code} ended the transfer"
        );
    }
    assert!(t.env.finished.is_empty());
    assert!(t.backend(226, "done").is_empty());
    assert_eq!(codes(&t.input(Input::TransferDone(Ok(9)))), vec![226]);
    assert_eq!(t.env.finished[0].result, TransferResult::Ok);
    // A late duplicate of the transfer's reply is unsolicited too.
    assert!(t.backend(226, "done again").is_empty());
    assert_eq!(t.env.unsolicited, 4);
}

#[test]
fn a_command_answered_during_a_transfer_keeps_its_reply() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    t.client("STAT");
    // ProFTPD answers STAT before the transfer's 226.
    assert_eq!(codes(&t.backend(211, "status")), vec![211]);
    assert!(t.backend(226, "done").is_empty());
    assert_eq!(codes(&t.input(Input::TransferDone(Ok(1)))), vec![226]);
}

#[test]
fn an_unsolicited_230_does_not_log_in() {
    let mut t = T::new(settings());
    t.client("USER alice");
    t.input(Input::Routed(Ok(Routed {
        login: "alice".into(),
        commands: CommandPolicy::Any,
        fresh: true,
        data_mode: DataMode::Passive,
        backend_v4: true,
        keepalive_noop: None,
    })));
    assert_eq!(codes(&t.backend(331, "Password")), vec![331]);
    assert!(t.backend(230, "Logged in").is_empty());
    assert!(!t.m.logged_in());
    assert_eq!(t.env.logins_ok, 0);
    assert_eq!(codes(&t.client("PASV")), vec![530]);
}

#[test]
fn a_backend_that_keeps_talking_past_the_gateway_is_cut_with_421() {
    let mut t = T::new(settings());
    t.login();
    for _ in 0..MAX_UNSOLICITED {
        assert!(t.backend(200, "noise").is_empty());
    }
    assert!(!t.m.is_closed());
    let a = t.backend(200, "noise");
    assert_eq!(codes(&a), vec![421]);
    assert_eq!(a.last(), Some(&Action::Close));
    assert_eq!(t.m.outcome(), SessionOutcome::BackendUnavailable);
}

#[test]
fn abor_with_pure_ftpd_one_226_and_no_transfer_reply() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    t.client("ABOR");
    // pure-ftpd: nothing for the RETR, one 226 for the ABOR.
    assert!(t.backend(226, "ABOR ok").is_empty());
    assert_eq!(codes(&t.backend(200, "NOOP ok")), vec![426, 226]);
    // The next command pairs with its own reply.
    t.client("TYPE I");
    assert_eq!(
        codes(&t.backend(200, "TYPE is now 8-bit binary")),
        vec![200]
    );
    assert_eq!(t.m.replies_due(), 0);
    assert_eq!(t.env.unsolicited, 0);
}

#[test]
fn abor_with_proftpd_226_before_426() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    t.client("ABOR");
    assert!(t.backend(226, "Abort successful").is_empty());
    assert!(t.backend(426, "Transfer aborted").is_empty());
    assert_eq!(codes(&t.backend(200, "NOOP ok")), vec![426, 226]);
    t.client("PWD");
    assert_eq!(codes(&t.backend(257, "\"/\"")), vec![257]);
}

#[test]
fn a_failed_client_leg_aborts_a_backend_that_sends_no_final_reply() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    let failure = TransferFailure {
        reply: Reply::new(425, "Cannot open data connection"),
        aborted: false,
        error: "handshake refused".into(),
    };
    let a = t.input(Input::TransferDone(Err(failure)));
    assert_eq!(backend_lines(&a), vec!["ABOR", "NOOP"]);
    // pure-ftpd: no reply for the RETR; 225 for ABOR, then the NOOP's 200.
    assert!(t.backend(225, "No transfer to ABOR").is_empty());
    assert_eq!(codes(&t.backend(200, "NOOP ok")), vec![425]);
    assert_eq!(t.env.finished[0].result, TransferResult::Failed);
    t.client("TYPE I");
    assert_eq!(codes(&t.backend(200, "TYPE ok")), vec![200]);
}

#[test]
fn an_abort_the_backend_never_answers_ends_with_421() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    t.client("ABOR");
    t.now += Duration::from_secs(1);
    let at = t.m.deadline(t.now);
    assert!(at <= t.now + Timeouts::default().connect);
    t.now = at;
    let a = t.input(Input::Timeout);
    assert_eq!(codes(&a), vec![421]);
    assert!(t.m.is_closed());
}

#[test]
fn a_forwarded_command_has_a_deadline() {
    let mut t = T::new(settings());
    t.login();
    t.client("CWD /slow");
    let at = t.m.deadline(t.now);
    assert_eq!(at, t.now + Timeouts::default().data_idle);
    t.now = at;
    assert_eq!(codes(&t.input(Input::Timeout)), vec![421]);
    assert_eq!(t.m.outcome(), SessionOutcome::BackendUnavailable);
}

#[test]
fn abor_keeps_working_during_a_drain() {
    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    assert!(t.input(Input::Shutdown).is_empty());
    let a = t.client("ABOR");
    assert!(
        codes(&a).is_empty(),
        "ABOR answered before the backend: {a:?}"
    );
    assert!(!t.m.is_closed());
    t.backend(426, "aborted");
    t.backend(226, "ABOR ok");
    let a = t.backend(200, "NOOP ok");
    assert_eq!(codes(&a), vec![426, 226, 421]);
    assert_eq!(a.last(), Some(&Action::Close));
}

#[test]
fn eprt_with_the_unspecified_address_means_the_control_peer() {
    let mut s = settings();
    s.client_ip = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);
    s.local_v4 = false;
    let mut t = T::new(s);
    t.login();
    let a = t.client("EPRT |2|::|40000|");
    assert_eq!(backend_lines(&a), vec!["PASV"]);
    assert_eq!(t.env.refused_active, 0);
    t.backend(227, "Entering Passive Mode (127,0,0,1,200,10)");
    let a = t.client("RETR f");
    assert!(a.contains(&Action::StartTransfer {
        kind: TransferKind::Retr,
        client: ClientSide::Active("[::1]:40000".parse().unwrap()),
        backend: BackendSide::Passive(200 * 256 + 10),
        protected: false,
    }));
}

#[test]
fn a_close_between_commands_is_a_normal_end() {
    let mut t = T::new(settings());
    t.login();
    let a = t.input(Input::ClientClosed);
    assert_eq!(a, vec![Action::Close]);
    assert_eq!(t.m.outcome(), SessionOutcome::ClosedWithoutQuit);

    let mut t = T::new(settings());
    t.login();
    t.pasv();
    t.retr();
    t.input(Input::ClientClosed);
    assert_eq!(t.m.outcome(), SessionOutcome::ClientError);
}

#[test]
fn a_connection_that_never_sends_a_line_is_a_probe() {
    let mut t = T::new(settings());
    t.input(Input::ClientClosed);
    assert_eq!(t.m.outcome(), SessionOutcome::Probe);
    let mut t = T::new(settings());
    t.input(Input::ClientError("Connection reset by peer".into()));
    assert_eq!(t.m.outcome(), SessionOutcome::Probe);
}

#[test]
fn a_stray_200_is_not_taken_for_the_backends_pasv_reply() {
    let mut t = T::new(settings());
    t.login();
    t.client("PASV");
    let adv = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40001);
    let a = t.input(Input::PassiveOpened(Ok(adv)));
    assert_eq!(backend_lines(&a), vec!["PASV"]);
    // The extra line after 230 arrives once PASV has been sent.
    assert!(t.backend(200, "extra").is_empty());
    let a = t.backend(227, "Entering Passive Mode (10,1,2,3,4,5)");
    assert_eq!(
        a,
        vec![Action::ToClient(Reply::new(
            227,
            "Entering Passive Mode (192,0,2,1,156,65)."
        ))]
    );
    assert_eq!(t.env.unsolicited, 1);
}

/// `auth: gateway` up to the provider's answer: `331` from the gateway, the
/// `PASS` counted and handed to the provider, nothing to any backend.
fn gateway_pass(t: &mut T, user: &str, pass: &str) {
    let a = t.client(&format!("USER {user}"));
    assert_eq!(
        a,
        vec![Action::Route {
            user: user.into(),
            verified: false,
        }]
    );
    assert_eq!(codes(&t.input(Input::AuthRequired)), vec![331]);
    let a = t.client(&format!("PASS {pass}"));
    assert_eq!(
        a,
        vec![Action::Authenticate {
            user: user.into(),
            password: Secret(pass.as_bytes().to_vec()),
        }]
    );
    assert!(!t.m.reads_client(), "the client waits for the check");
    assert_eq!(t.env.attempts, 1, "the PASS is counted by the throttle");
}

#[test]
fn gateway_auth_connects_only_after_the_provider_said_yes() {
    let mut t = T::new(settings());
    gateway_pass(&mut t, "alice", "s3cret");
    // Only now a (verified) route: the driver connects the backend.
    let a = t.input(Input::Authenticated(Ok(None)));
    assert_eq!(
        a,
        vec![Action::Route {
            user: "alice".into(),
            verified: true,
        }]
    );
    let a = t.input(routed("alice", CommandPolicy::Any, true));
    assert_eq!(backend_lines(&a), vec!["USER alice"]);
    // The backend's 331 is the gateway's business: it sends the checked password.
    let a = t.backend(331, "Password");
    assert_eq!(backend_lines(&a), vec!["PASS s3cret"]);
    assert!(codes(&a).is_empty());
    assert_eq!(codes(&t.backend(230, "Welcome")), vec![230]);
    assert!(t.m.logged_in());
    assert_eq!((t.env.logins_ok, t.env.fresh_logins), (1, 1));
}

#[test]
fn gateway_auth_logs_in_as_the_mapped_service_account() {
    let mut t = T::new(settings());
    gateway_pass(&mut t, "alice", "users-pw");
    let mapped = BackendLogin {
        user: "svc".into(),
        password: Secret(b"svc-pw".to_vec()),
        password_file: "svc.secret".into(),
    };
    t.input(Input::Authenticated(Ok(Some(mapped))));
    let a = t.input(routed("alice", CommandPolicy::Any, true));
    assert_eq!(backend_lines(&a), vec!["USER svc"]);
    assert_eq!(
        backend_lines(&t.backend(331, "Password")),
        vec!["PASS svc-pw"]
    );
    assert_eq!(codes(&t.backend(230, "Welcome")), vec![230]);
    // Logs and the transfer log name the gateway user.
    assert_eq!(t.m.user(), "alice");
    // `ftpsgate ctl sessions` shows who checked the password.
    assert!(t.m.gateway_authenticated());
}

#[test]
fn gateway_authenticated_only_for_a_login_the_gateway_checked() {
    let mut t = T::new(settings());
    assert!(!t.m.gateway_authenticated());
    t.login();
    assert!(t.m.logged_in());
    assert!(!t.m.gateway_authenticated(), "the backend checked this one");
    assert_eq!(t.m.cert_identity(), None);
    t.m.set_cert_login(CertLogin {
        identity: Some("alice@example.org".into()),
        require_user_match: false,
    });
    assert_eq!(t.m.cert_identity(), Some("alice@example.org"));
}

#[test]
fn gateway_auth_failure_counts_as_a_failed_login() {
    let mut t = T::new(settings());
    gateway_pass(&mut t, "alice", "wrong");
    let a = t.input(Input::Authenticated(Err(AuthFailure::BadCredentials)));
    assert_eq!(codes(&a), vec![530]);
    assert!(backend_lines(&a).is_empty() && !t.m.is_closed());
    assert_eq!(t.env.failed, 1);
    // A PASS now has no USER before it.
    assert_eq!(codes(&t.client("PASS again")), vec![503]);

    // The failure that starts the cool-down ends the session.
    let mut t = T::new(settings());
    t.env.cool_down = true;
    gateway_pass(&mut t, "alice", "wrong");
    let a = t.input(Input::Authenticated(Err(AuthFailure::BadCredentials)));
    assert_eq!(codes(&a), vec![530, 421]);
    assert_eq!(a.last(), Some(&Action::Close));

    // Provider down: 421, no route, no backend.
    let mut t = T::new(settings());
    gateway_pass(&mut t, "alice", "right");
    let a = t.input(Input::Authenticated(Err(AuthFailure::Unavailable(
        "ldap down".into(),
    ))));
    assert_eq!(codes(&a), vec![421]);
    assert!(!a.iter().any(|a| matches!(a, Action::Route { .. })));
    assert_eq!(a.last(), Some(&Action::Close));

    // During a cool-down the PASS is refused before any check.
    let mut t = T::new(settings());
    t.client("USER alice");
    t.input(Input::AuthRequired);
    t.env.blocked = true;
    let a = t.client("PASS right");
    assert_eq!(codes(&a), vec![421]);
    assert!(!a.iter().any(|a| matches!(a, Action::Authenticate { .. })));
}
