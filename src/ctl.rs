//! The runtime control socket (`control.socket`) and its protocol, for
//! `ftpsgate ctl`: list and kill sessions, take backends out of rotation,
//! list pinholes, reload.
//!
//! A Unix socket only, never a network port: who may connect is decided by
//! the socket file's mode, owner and group. The protocol is JSON lines: one
//! [`Request`] object per line, answered by one [`Response`] line. Every
//! request that changes something is logged with the caller's uid and pid
//! (`SO_PEERCRED`) and every request is counted
//! (`ftpsgate_control_requests_total{command,result}`).
//!
//! This module answers from the process state in [`Shared`] (the session
//! registry, the backend switches); it does not reach into sessions itself: a
//! kill only signals the session, which says `421` and ends. A reload is
//! handed to whoever runs the gateway ([`ReloadRequest`], `main.rs`), which
//! does the same check-then-swap as `SIGHUP` and answers with its errors.
//! Rendering answers as tables for people is here too ([`render_table`]).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::config::{Config, ControlConfig};
use crate::metrics::{ControlCommand, Metrics};
use crate::shared::{BackendAdmin, Shared};

/// Longest request line accepted (a request is a few dozen bytes).
const MAX_LINE: u64 = 4096;
/// A client that sends nothing for this long is disconnected.
const IDLE: Duration = Duration::from_secs(30);
/// How long a `reload` may take before the caller is told it is still running.
const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// List running sessions.
    Sessions,
    /// End a session with `421`.
    Kill {
        /// The session's id.
        id: u64,
    },
    /// Take a backend out of rotation, or put it back.
    Backend {
        /// What to do.
        action: BackendAction,
        /// The backend's name.
        name: String,
    },
    /// List pinholes waiting for their data connection.
    Pinholes,
    /// Check the configuration file and swap it in (as `SIGHUP`).
    Reload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
/// What `ftpsgate ctl backend ACTION NAME` does to a backend.
pub enum BackendAction {
    /// No new sessions choose it; running ones go on.
    Disable,
    /// Back into rotation.
    Enable,
    /// No new sessions choose it; running ones finish.
    Drain,
}

/// One answer line. `ok: false` carries `error` (and, for a refused reload,
/// every config error in `errors`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The request was carried out.
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// What was done, for people.
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Why the request failed.
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    /// Every configuration error of a refused reload.
    pub errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Answer to [`Request::Sessions`].
    pub sessions: Option<Vec<SessionRow>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Answer to [`Request::Pinholes`].
    pub pinholes: Option<Vec<PinholeRow>>,
}

/// One running session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    /// The session id (as in logs and `kill`).
    pub id: u64,
    /// The login name once a login succeeded.
    pub user: Option<String>,
    /// The client certificate's identity (`tls.client_auth.identity`);
    /// `None` without a certificate (or on a listener without `client_auth`).
    #[serde(default)]
    pub identity: Option<String>,
    /// Who checked the logged-in user's password: `gateway` (`auth: gateway`)
    /// or `backend`; `None` before a login.
    #[serde(default)]
    pub auth: Option<String>,
    /// The client address (from the PROXY header when behind a balancer).
    pub client: String,
    /// The listener's name.
    pub listener: String,
    /// The backend's name once routed.
    pub backend: Option<String>,
    /// `login`, `idle` or `transfer`.
    pub state: String,
    /// Data bytes of the session's finished transfers.
    pub bytes: u64,
    /// Unix time the session started.
    pub started: u64,
    /// Seconds since the session started.
    pub age_seconds: u64,
}

/// One pinhole waiting for its data connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinholeRow {
    /// The id of the session that opened it.
    pub session: u64,
    /// The listener's name.
    pub listener: String,
    /// The gateway's address the data connection must reach.
    pub local: String,
    /// The only client address it accepts.
    pub client_ip: String,
}

impl Response {
    fn ok(message: impl Into<String>) -> Response {
        Response {
            ok: true,
            message: Some(message.into()),
            ..Response::default()
        }
    }

    fn failed(error: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(error.into()),
            ..Response::default()
        }
    }
}

/// A `reload` asked for over the socket, for whoever runs the gateway.
pub struct ReloadRequest {
    reply: oneshot::Sender<Result<(), Vec<String>>>,
}

impl ReloadRequest {
    /// Tell the caller how the reload went (every error, in order).
    pub fn answer(self, result: Result<(), Vec<String>>) {
        let _ = self.reply.send(result);
    }
}

/// What the server answers from.
pub(crate) struct Server {
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    /// The configuration in force (for backend names).
    pub config: Arc<Mutex<Arc<Config>>>,
    pub reload: mpsc::Sender<ReloadRequest>,
}

/// Create the socket: a stale socket file (nobody answers) is replaced; a live
/// one or anything else at the path is an error; then mode, owner and group
/// are applied. (Until `chmod`, the socket has the umask's mode, and connecting
/// needs write permission on it.)
pub(crate) fn bind(cfg: &ControlConfig) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(&cfg.socket) {
        Ok(m) if m.file_type().is_socket() => {
            // Someone answers there: another gateway runs on this socket.
            if std::os::unix::net::UnixStream::connect(&cfg.socket).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "a running process listens there",
                ));
            }
            std::fs::remove_file(&cfg.socket)?
        }
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(&cfg.socket)?;
    std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(cfg.mode))?;
    if cfg.owner.is_some() || cfg.group.is_some() {
        std::os::unix::fs::chown(&cfg.socket, cfg.owner, cfg.group)?;
    }
    Ok(listener)
}

/// Accept control connections until `stop` turns true; then remove the socket file.
pub(crate) async fn serve(
    listener: UnixListener,
    path: std::path::PathBuf,
    server: Arc<Server>,
    mut stop: watch::Receiver<bool>,
) {
    info!(socket = %path.display(), "control socket listening");
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, server.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// Who is calling: uid and pid from `SO_PEERCRED`.
#[derive(Debug, Clone, Copy)]
struct Caller {
    uid: Option<u32>,
    pid: Option<i32>,
}

async fn connection(stream: UnixStream, server: Arc<Server>) {
    let caller = match stream.peer_cred() {
        Ok(c) => Caller {
            uid: Some(c.uid()),
            pid: c.pid(),
        },
        Err(e) => {
            debug!(error = %e, "control socket: no peer credentials");
            Caller {
                uid: None,
                pid: None,
            }
        }
    };
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let n = match tokio::time::timeout(
            IDLE,
            (&mut read).take(MAX_LINE).read_until(b'\n', &mut line),
        )
        .await
        {
            Ok(Ok(n)) => n,
            Ok(Err(_)) | Err(_) => return,
        };
        if n == 0 {
            return;
        }
        let too_long = !line.ends_with(b"\n") && n as u64 >= MAX_LINE;
        let response = if too_long {
            server
                .metrics
                .control_request(ControlCommand::Invalid, false);
            Response::failed("request line too long")
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(req) => server.handle(req, caller).await,
                Err(e) => {
                    server
                        .metrics
                        .control_request(ControlCommand::Invalid, false);
                    Response::failed(format!("bad request: {e}"))
                }
            }
        };
        let mut out = match serde_json::to_vec(&response) {
            Ok(v) => v,
            // Plain data of strings and numbers always serialises.
            Err(_) => br#"{"ok":false,"error":"internal error"}"#.to_vec(),
        };
        out.push(b'\n');
        if write.write_all(&out).await.is_err() || too_long {
            return;
        }
    }
}

impl Server {
    async fn handle(&self, req: Request, caller: Caller) -> Response {
        let (command, response) = match req {
            Request::Sessions => (ControlCommand::Sessions, self.sessions()),
            Request::Pinholes => (ControlCommand::Pinholes, self.pinholes()),
            Request::Kill { id } => (ControlCommand::Kill, self.kill(id, caller)),
            Request::Backend { action, name } => {
                let command = match action {
                    BackendAction::Disable => ControlCommand::BackendDisable,
                    BackendAction::Enable => ControlCommand::BackendEnable,
                    BackendAction::Drain => ControlCommand::BackendDrain,
                };
                (command, self.backend(action, &name, caller))
            }
            Request::Reload => (ControlCommand::Reload, self.reload(caller).await),
        };
        self.metrics.control_request(command, response.ok);
        response
    }

    fn sessions(&self) -> Response {
        let now = SystemTime::now();
        let rows = self
            .shared
            .sessions()
            .into_iter()
            .map(|s| SessionRow {
                id: s.id,
                auth: s
                    .user
                    .is_some()
                    .then(|| if s.gateway_auth { "gateway" } else { "backend" }.to_owned()),
                user: s.user,
                identity: s.identity,
                client: s.client.to_string(),
                listener: s.listener,
                backend: s.backend,
                state: s.state.as_str().to_owned(),
                bytes: s.bytes,
                started: s
                    .started
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                age_seconds: now
                    .duration_since(s.started)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            })
            .collect();
        Response {
            ok: true,
            sessions: Some(rows),
            ..Response::default()
        }
    }

    fn pinholes(&self) -> Response {
        let rows = self
            .shared
            .sessions()
            .into_iter()
            .filter_map(|s| {
                s.pinhole.map(|local| PinholeRow {
                    session: s.id,
                    listener: s.listener,
                    local: local.to_string(),
                    client_ip: s.client.ip().to_canonical().to_string(),
                })
            })
            .collect();
        Response {
            ok: true,
            pinholes: Some(rows),
            ..Response::default()
        }
    }

    fn kill(&self, id: u64, caller: Caller) -> Response {
        if self.shared.kill(id) {
            info!(uid = ?caller.uid, pid = ?caller.pid, session = id, "control: session killed");
            Response::ok(format!("session {id} killed"))
        } else {
            info!(uid = ?caller.uid, pid = ?caller.pid, session = id, "control: kill of an unknown session");
            Response::failed(format!("no session {id}"))
        }
    }

    fn backend(&self, action: BackendAction, name: &str, caller: Caller) -> Response {
        let known = crate::gateway::lock(&self.config)
            .backends
            .iter()
            .any(|b| b.name == name);
        if !known {
            return Response::failed(format!("no backend named {name:?}"));
        }
        let (admin, verb) = match action {
            BackendAction::Disable => (Some(BackendAdmin::Disabled), "disabled"),
            BackendAction::Enable => (None, "enabled"),
            BackendAction::Drain => (Some(BackendAdmin::Draining), "draining"),
        };
        self.shared.set_backend_admin(name, admin);
        let running = self
            .shared
            .sessions()
            .iter()
            .filter(|s| s.backend.as_deref() == Some(name))
            .count();
        info!(uid = ?caller.uid, pid = ?caller.pid, backend = %name, running, "control: backend {verb}");
        Response::ok(format!(
            "backend {name} {verb} ({running} running sessions)"
        ))
    }

    async fn reload(&self, caller: Caller) -> Response {
        info!(uid = ?caller.uid, pid = ?caller.pid, "control: reload requested");
        let (tx, rx) = oneshot::channel();
        match self.reload.try_send(ReloadRequest { reply: tx }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Response::failed("another reload is pending")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Response::failed("reload is not available in this process")
            }
        }
        match tokio::time::timeout(RELOAD_WAIT, rx).await {
            Ok(Ok(Ok(()))) => Response::ok("configuration reloaded"),
            Ok(Ok(Err(errors))) => Response {
                ok: false,
                error: Some("reload refused; the running configuration stays".into()),
                errors,
                ..Response::default()
            },
            Ok(Err(_)) => Response::failed("reload was dropped"),
            Err(_) => Response::failed("reload still running"),
        }
    }
}

/// Send one request to the control socket at `path` and read its answer.
pub async fn request(path: &Path, req: &Request) -> std::io::Result<Response> {
    let stream = UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut answer = String::new();
    BufReader::new(read).read_line(&mut answer).await?;
    serde_json::from_str(&answer).map_err(std::io::Error::other)
}

/// The answer for people: a table for lists, else the message or errors.
pub fn render_table(r: &Response) -> String {
    let mut out = String::new();
    if let Some(rows) = &r.sessions {
        let mut t = vec![[
            "ID", "USER", "IDENTITY", "AUTH", "CLIENT", "LISTENER", "BACKEND", "STATE", "BYTES",
            "AGE",
        ]
        .map(String::from)
        .to_vec()];
        for s in rows {
            t.push(vec![
                s.id.to_string(),
                s.user.clone().unwrap_or_else(|| "-".into()),
                s.identity.clone().unwrap_or_else(|| "-".into()),
                s.auth.clone().unwrap_or_else(|| "-".into()),
                s.client.clone(),
                s.listener.clone(),
                s.backend.clone().unwrap_or_else(|| "-".into()),
                s.state.clone(),
                s.bytes.to_string(),
                format!("{}s", s.age_seconds),
            ]);
        }
        out.push_str(&columns(&t));
    }
    if let Some(rows) = &r.pinholes {
        let mut t = vec![["SESSION", "LISTENER", "LOCAL", "CLIENT_IP"]
            .map(String::from)
            .to_vec()];
        for p in rows {
            t.push(vec![
                p.session.to_string(),
                p.listener.clone(),
                p.local.clone(),
                p.client_ip.clone(),
            ]);
        }
        out.push_str(&columns(&t));
    }
    if let Some(m) = &r.message {
        out.push_str(m);
        out.push('\n');
    }
    if let Some(e) = &r.error {
        out.push_str(&format!("error: {e}\n"));
    }
    for e in &r.errors {
        out.push_str(&format!("error: {e}\n"));
    }
    out
}

/// Left-aligned columns, two spaces apart.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_json_lines_with_a_cmd_tag() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"backend","action":"drain","name":"vs"}"#).unwrap();
        assert_eq!(
            r,
            Request::Backend {
                action: BackendAction::Drain,
                name: "vs".into()
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::Kill { id: 7 }).unwrap(),
            r#"{"cmd":"kill","id":7}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"kill"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"rm -rf"}"#).is_err());
    }

    #[test]
    fn tables_align_columns_and_show_errors() {
        let r = Response {
            ok: true,
            sessions: Some(vec![SessionRow {
                id: 12,
                user: Some("alice".into()),
                identity: Some("alice@example.org".into()),
                auth: Some("gateway".into()),
                client: "127.0.0.1:5000".into(),
                listener: "edge".into(),
                backend: None,
                state: "idle".into(),
                bytes: 1024,
                started: 0,
                age_seconds: 3,
            }]),
            ..Response::default()
        };
        let t = render_table(&r);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2, "{t}");
        assert!(
            lines[0].starts_with("ID  USER   IDENTITY           AUTH     CLIENT"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("12  alice  alice@example.org  gateway  127.0.0.1:5000"),
            "{t}"
        );
        assert!(
            lines[1].contains("  -  ") && lines[1].ends_with("3s"),
            "{t}"
        );
        let f = Response {
            errors: vec!["listeners[0].bind: bad".into()],
            ..Response::failed("reload refused")
        };
        assert_eq!(
            render_table(&f),
            "error: reload refused\nerror: listeners[0].bind: bad\n"
        );
    }
}
