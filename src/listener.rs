//! What a listener's sessions share: its policy (`config::Listener`), TLS
//! material, the backends as it sees them ([`Pool`]), kernel pinholes and the
//! process-wide recorders. One `ListenerCtx` per listener and config
//! generation: a reload builds new ones for new sessions, running sessions
//! keep the `Arc` they started with.

use std::sync::Arc;

use crate::backend::pool::Pool;
use crate::config;
use crate::data::nft::KernelPinholes;
use crate::metrics::Metrics;
use crate::tls::ServerTls;
use crate::xferlog::TransferLog;

/// What a session needs from its listener; shared by all its sessions.
pub struct ListenerCtx {
    pub cfg: config::Listener,
    pub tls: Option<ServerTls>,
    /// The backends, the default one, per-route cursors.
    pub pool: Pool,
    pub global_access: Vec<config::AccessRule>,
    pub global_limits: config::Limits,
    /// Kernel pinholes (`passive.nftables`), when enabled and usable.
    pub kernel: Option<Arc<KernelPinholes>>,
    pub timeouts: config::Timeouts,
    pub metrics: Arc<Metrics>,
    pub xferlog: Arc<TransferLog>,
}

impl ListenerCtx {
    /// The position of `route` among this listener's routes (its cursor).
    pub fn route_index(&self, route: &config::Route) -> Option<usize> {
        self.cfg.routes.iter().position(|r| std::ptr::eq(r, route))
    }
}
