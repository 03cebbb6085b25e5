//! The words the session machine speaks about how things ended: how a client
//! session closed ([`SessionOutcome`]) and how one transfer finished
//! ([`TransferResult`]).
//!
//! They are decided by [`super::state::Machine`] (and by the driver for what
//! happens before the machine runs: admission, the implicit TLS handshake) and
//! read by whoever records them. They carry no label strings: `metrics` maps
//! them to label values, the transfer log to its own fields. A new way for a
//! session or transfer to end is added here, then mapped there.

/// How a client session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionOutcome {
    /// A normal end (`QUIT`).
    Ok,
    /// Refused by policy (access, TLS required, command filter).
    RefusedPolicy,
    /// The client's TLS handshake failed.
    TlsFailed,
    /// No backend could serve the session.
    BackendUnavailable,
    /// An idle or command deadline passed.
    Timeout,
    /// The client broke the protocol or its connection failed.
    ClientError,
    /// Ended by an operator (`ftpsgate ctl kill`).
    Killed,
    /// The client closed between commands, no transfer running, without
    /// `QUIT` (wget, gftp, rclone): a normal end, counted apart.
    ClosedWithoutQuit,
    /// The connection closed before the client sent anything (a
    /// load-balancer or port probe): not a session.
    Probe,
    /// Closed by the gateway at the drain deadline (`shutdown.grace`), or
    /// by a second termination signal.
    Cut,
}

/// How one data transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferResult {
    /// The whole file went through.
    Ok,
    /// A data leg failed (client or backend side).
    Failed,
    /// Aborted by the client (`ABOR`) or by session end.
    Aborted,
    /// The backend refused the transfer command (e.g. `550`).
    Refused,
}
