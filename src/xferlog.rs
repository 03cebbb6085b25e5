//! The transfer log: one line per finished transfer, in the classic
//! wu-ftpd/vsftpd `xferlog` format (or JSON), appended to a configured file.
//!
//! STUB: the API is fixed; the implementation comes with the observability work.

use std::net::IpAddr;
use std::time::SystemTime;

use crate::metrics::Dir;

/// One finished transfer, as the session saw it.
#[derive(Debug, Clone)]
pub struct TransferRecord {
    /// When the transfer ended.
    pub end: SystemTime,
    pub secs: f64,
    pub client_ip: IpAddr,
    /// Bytes relayed on the client leg.
    pub bytes: u64,
    /// The path argument of the transfer command, as sent by the client (lossy UTF-8).
    pub path: String,
    /// `TYPE I` (true) or `TYPE A` (false).
    pub binary: bool,
    pub direction: Dir,
    /// Login name (never the password).
    pub user: String,
    pub listener: String,
    pub backend: String,
    /// `true` when the client got a 2xx final reply.
    pub complete: bool,
}

/// Where transfer records go. `None`-like when not configured.
#[derive(Debug, Default)]
pub struct TransferLog {}

impl TransferLog {
    /// A log that drops every record.
    pub fn disabled() -> TransferLog {
        TransferLog::default()
    }

    /// Append one record. Never fails the transfer: I/O errors are logged.
    pub fn record(&self, _rec: &TransferRecord) {}
}
