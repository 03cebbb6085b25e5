//! The session's side effects that are not protocol: metrics, the transfer
//! log and the failed-login counter. The pure [`super::state::Machine`] calls
//! them through its [`Env`] trait; this is the one place that maps the
//! machine's words to the process's recorders. A new per-session metric or
//! log record is added here (and, if the machine must trigger it, to `Env`).

use std::net::IpAddr;
use std::sync::Arc;

use crate::listener::ListenerCtx;
use crate::metrics::{BackendErrorKind, LoginResult, PinholeRefusal};
use crate::shared::{LoginAttempt, Shared};
use crate::xferlog::TransferRecord;

use super::state::{Env, Finished};

/// Metrics, transfer log and the failed-login counter, for the machine.
pub(super) struct SessionEnv<'a> {
    pub ctx: &'a ListenerCtx,
    pub shared: &'a Arc<Shared>,
    pub client_ip: IpAddr,
    pub backend: &'a str,
    /// The session's `PASS` in flight, counted by the failed-login throttle
    /// (owned by the driver, so that it ends as a failure if the session does).
    pub attempt: &'a mut Option<LoginAttempt>,
}

impl Env for SessionEnv<'_> {
    fn command(&mut self, verb: &str) {
        self.ctx.metrics.command(verb);
    }

    fn pass_attempt(&mut self) -> bool {
        match self.shared.begin_login_attempt(self.client_ip) {
            Some(attempt) => {
                // A previous attempt still unanswered ends here as a failure.
                *self.attempt = Some(attempt);
                true
            }
            None => false,
        }
    }

    fn login_ok(&mut self, fresh: bool) {
        self.ctx.metrics.login(&self.ctx.cfg.name, LoginResult::Ok);
        if let Some(attempt) = self.attempt.take() {
            attempt.succeeded(fresh);
        }
    }

    fn login_failed(&mut self) -> bool {
        self.ctx
            .metrics
            .login(&self.ctx.cfg.name, LoginResult::Failed);
        match self.attempt.take() {
            Some(attempt) => attempt.failed(),
            None => self.shared.login_blocked(self.client_ip),
        }
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
