//! The session's side effects that are not protocol: metrics, the transfer
//! log and the failed-login counter. The pure [`super::state::Machine`] calls
//! them through its [`Env`] trait; this is the one place that maps the
//! machine's words to the process's recorders. A new per-session metric or
//! log record is added here (and, if the machine must trigger it, to `Env`).

use std::net::IpAddr;

use crate::listener::ListenerCtx;
use crate::metrics::{BackendErrorKind, LoginResult, PinholeRefusal};
use crate::shared::Shared;
use crate::xferlog::TransferRecord;

use super::state::{Env, Finished};

/// Metrics, transfer log and the failed-login counter, for the machine.
pub(super) struct SessionEnv<'a> {
    pub ctx: &'a ListenerCtx,
    pub shared: &'a Shared,
    pub client_ip: IpAddr,
    pub backend: &'a str,
}

impl Env for SessionEnv<'_> {
    fn command(&mut self, verb: &str) {
        self.ctx.metrics.command(verb);
    }

    fn login_ok(&mut self) {
        self.ctx.metrics.login(&self.ctx.cfg.name, LoginResult::Ok);
        self.shared.login_ok(self.client_ip);
    }

    fn login_failed(&mut self) -> bool {
        self.ctx
            .metrics
            .login(&self.ctx.cfg.name, LoginResult::Failed);
        self.shared.login_failed(self.client_ip)
    }

    fn login_refused_no_tls(&mut self) {
        self.ctx
            .metrics
            .login(&self.ctx.cfg.name, LoginResult::RefusedNoTls);
    }

    fn active_refused(&mut self) {
        self.ctx.metrics.pinhole_refused(PinholeRefusal::Bounce);
    }

    fn unsolicited_reply(&mut self) {
        self.ctx
            .metrics
            .backend_error(self.backend, BackendErrorKind::Unsolicited);
    }

    fn transfer_finished(&mut self, done: &Finished) {
        let dir = done.kind.direction();
        let secs = done.started.elapsed().as_secs_f64();
        let bytes = done.bytes;
        self.ctx.metrics.transfer_finished(
            &self.ctx.cfg.name,
            dir,
            done.result,
            bytes,
            bytes,
            secs,
        );
        self.ctx.xferlog.record(&TransferRecord {
            end: std::time::SystemTime::now(),
            secs,
            client_ip: self.client_ip,
            bytes,
            path: done.path.clone(),
            binary: done.binary,
            direction: dir,
            user: done.user.clone(),
            listener: self.ctx.cfg.name.clone(),
            backend: self.backend.to_string(),
            complete: done.complete,
        });
    }
}
