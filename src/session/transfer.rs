//! One transfer of a session: the task that joins the client's pinhole
//! connection and the backend data connection and relays between them.
//!
//! The session machine keeps the backend's final reply until this task
//! reports, so the client sees `226` only after its data leg was fully
//! written and closed with `close_notify`.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::backend::{BackendError, BackendListener, DataTarget};
use crate::config::Timeouts;
use crate::control::{Direction, Reply, TransferKind};
use crate::data::active::{self, ActiveSpec};
use crate::data::relay::RelayOpts;
use crate::data::{relay, Pinhole, PinholeError, RelayError};
use crate::stream::{BackendDataStream, ClientDataStream};

/// How the client data connection is obtained.
pub(super) enum ClientLeg {
    /// The client connects to our pinhole (PASV/EPSV).
    Pinhole(Pinhole),
    /// We connect to the client (PORT/EPRT).
    Active(ActiveSpec),
}

impl ClientLeg {
    async fn open(self) -> Result<ClientDataStream, PinholeError> {
        match self {
            ClientLeg::Pinhole(mut p) => p.connection().await,
            ClientLeg::Active(spec) => active::connect(spec).await,
        }
    }
}

/// How the backend data connection is obtained.
pub(super) enum BackendLeg {
    /// We connect to the backend's passive port.
    Passive(DataTarget, u16),
    /// The backend connects to our listener (we sent PORT/EPRT).
    Active(DataTarget, BackendListener),
}

impl BackendLeg {
    async fn open(self, limit: Duration) -> Result<BackendDataStream, BackendError> {
        match self {
            BackendLeg::Passive(target, port) => target.connect(port, limit).await,
            BackendLeg::Active(target, listener) => target.accept(listener, limit).await,
        }
    }
}

pub(super) type TransferOutcome = Result<u64, TransferError>;

#[derive(Debug, thiserror::Error)]
pub(super) enum TransferError {
    #[error("client data connection: {0}")]
    Client(#[from] PinholeError),
    #[error("backend data connection: {0}")]
    Backend(#[from] BackendError),
    #[error("relay: {0}")]
    Relay(#[from] RelayError),
    #[error("aborted")]
    Aborted,
    #[error("transfer task failed")]
    Task,
}

impl TransferError {
    /// The reply the client gets for a transfer that failed on a data leg.
    pub(super) fn reply(&self) -> Reply {
        match self {
            TransferError::Client(PinholeError::ReuseRequired) => Reply::new(
                522,
                "Data connection refused: TLS session of the control connection must be resumed",
            ),
            // Error text (OS errors, backend addresses) goes to the log only; the
            // client gets fixed words (nothing internal goes out).
            TransferError::Client(e) => {
                Reply::new(425, &format!("Cannot open data connection ({})", e.kind()))
            }
            TransferError::Backend(_) => Reply::new(425, "Backend data connection failed"),
            TransferError::Relay(_) => Reply::new(426, "Connection closed; transfer aborted"),
            TransferError::Aborted => Reply::new(426, "Transfer aborted"),
            TransferError::Task => Reply::new(451, "Local error in processing"),
        }
    }
}

/// A running transfer task; dropping it aborts the task.
pub(super) struct Transfer {
    handle: JoinHandle<TransferOutcome>,
    /// Leaves [`Gate::Wait`] once the client may be told to start (`1xx`):
    /// at once, unless the client's data handshake came first and its held
    /// TLS 1.3 tickets are still being written (they must precede the `150`).
    ready: tokio::sync::watch::Receiver<Gate>,
    /// An upload whose command has not been sent yet (see [`Transfer::take_command_gate`]).
    command_gated: bool,
}

/// What is known about the client's data leg before the transfer command
/// reaches the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// The client connected first; its leg is still being opened.
    Wait,
    /// Go on: the client leg is open, or the client connects only later.
    Go,
    /// The client connected first and its leg failed (refused handshake,
    /// no resumption): the transfer cannot happen.
    Refused,
}

impl Transfer {
    pub(super) fn start(
        kind: TransferKind,
        client: ClientLeg,
        backend: BackendLeg,
        t: &Timeouts,
        rate: Option<u64>,
    ) -> Transfer {
        let (connect, idle) = (t.connect, t.data_idle);
        if let ClientLeg::Pinhole(p) = &client {
            p.set_direction(kind.direction());
        }
        let (ready_tx, ready) = tokio::sync::watch::channel(Gate::Wait);
        let handle = tokio::spawn(run(
            kind.direction(),
            client,
            backend,
            connect,
            idle,
            rate,
            ready_tx,
        ));
        Transfer {
            handle,
            ready,
            command_gated: kind.direction() == Direction::Upload,
        }
    }

    /// Wait (at most `limit`) until the client may read the transfer's
    /// preliminary reply: some servers send `150` before the gateway has
    /// even connected their data port, and a client that reads that `150`
    /// before its held tickets arrived uploads, closes with the tickets
    /// unread, and its kernel resets the connection.
    pub(super) async fn client_ready(&mut self, limit: Duration) -> Gate {
        let mut ready = self.ready.clone();
        let gate = match tokio::time::timeout(limit, ready.wait_for(|g| *g != Gate::Wait)).await {
            Ok(Ok(g)) => *g,
            // The task ended without a word (aborted) or took too long: the
            // transfer's own outcome tells the rest.
            Ok(Err(_)) | Err(_) => Gate::Go,
        };
        gate
    }

    /// True once, for an upload, when its transfer command is about to be
    /// sent: the driver then waits for [`Transfer::client_ready`] first.
    pub(super) fn take_command_gate(&mut self) -> bool {
        std::mem::take(&mut self.command_gated)
    }

    pub(super) fn abort(&mut self) {
        self.handle.abort();
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Await the transfer task (pending forever when there is none).
pub(super) async fn join(t: Option<&mut Transfer>) -> TransferOutcome {
    match t {
        Some(t) => match (&mut t.handle).await {
            Ok(o) => o,
            Err(e) if e.is_cancelled() => Err(TransferError::Aborted),
            Err(_) => Err(TransferError::Task),
        },
        None => std::future::pending().await,
    }
}

async fn run(
    direction: Direction,
    client: ClientLeg,
    backend: BackendLeg,
    connect: Duration,
    idle: Duration,
    rate: Option<u64>,
    ready: tokio::sync::watch::Sender<Gate>,
) -> TransferOutcome {
    // TLS 1.3 tickets held back by the pinhole (the handshake came before
    // the transfer command) go out as soon as the client leg is there,
    // whatever the direction, while the backend leg is still being set up:
    // the client starts its transfer only on the `150` that the backend
    // sends after that. A download reads them before its data. An upload
    // needs them too: an OpenSSL client (curl) uses each ticket once, never
    // reads while it uploads, and reads what has arrived just before it
    // closes the connection (an SSL_read ahead of its close_notify, there to
    // avoid a reset). Sent before the `150`, they have arrived by then, so
    // curl stores a fresh ticket for its next data connection and leaves
    // nothing unread behind; sent later, they could arrive after that read
    // and make its kernel reset the connection, cutting the upload (see
    // `stream::HoldIo`).
    let connected_first = matches!(&client, ClientLeg::Pinhole(p) if p.client_connected());
    if !connected_first {
        // Nothing held to wait for; the client may even connect only
        // after the `150`.
        let _ = ready.send(Gate::Go);
    }
    let client_ready = async {
        let res = async {
            let mut c = client.open().await?;
            c.release_held();
            let _ = tokio::time::timeout(connect, tokio::io::AsyncWriteExt::flush(&mut c)).await;
            Ok::<_, PinholeError>(c)
        }
        .await;
        let _ = ready.send(if res.is_ok() { Gate::Go } else { Gate::Refused });
        res
    };
    // Both legs are set up concurrently; when one fails the other is dropped
    // as soon as it is ready, so the backend sees its data connection close
    // and answers (426) instead of waiting for its own accept timeout.
    // A client whose handshake has begun (curl: handshake before the
    // command) gets its leg, and so its tickets, before the backend leg is
    // started: the backend's `150` cannot be on its way yet. Others connect
    // or handshake only after the `150` and know the direction (nothing
    // held): both legs at once, or that `150` would never come.
    let (client, backend) = if connected_first {
        let client = client_ready.await;
        (client, backend.open(connect).await)
    } else {
        tokio::join!(client_ready, backend.open(connect))
    };
    if direction == Direction::Upload {
        if let Ok(b) = &backend {
            // Until the upload has completed, any close of the backend leg —
            // the client leg failing, this task being aborted (ABOR, session
            // gone) — must read as a failure to the backend: a FIN (or TLS
            // dropped without close_notify, which lenient servers accept)
            // would store the partial file as complete. A reset cannot be
            // mistaken. Cleared once the upload is complete.
            b.io().arm_abort();
        }
    }
    let mut client = client?;
    let mut backend = backend?;
    match direction {
        Direction::Download => {
            let opts = RelayOpts {
                idle,
                strict_eof: false,
                rate,
            };
            Ok(relay::relay(&mut backend, "backend", &mut client, "client", opts).await?)
        }
        Direction::Upload => {
            let opts = RelayOpts {
                idle,
                strict_eof: client.is_tls(),
                rate,
            };
            let relayed = relay::relay(&mut client, "client", &mut backend, "backend", opts).await;
            // On error the backend leg is dropped with its reset armed.
            let n = relayed?;
            backend.io().disarm_abort();
            // Our close_notify on the client leg too (RFC 4217 §8: a TLS data
            // connection ends with close_notify from both sides).
            let _ = tokio::time::timeout(connect, tokio::io::AsyncWriteExt::shutdown(&mut client))
                .await;
            relay::drain(&mut backend, connect).await;
            Ok(n)
        }
    }
}
