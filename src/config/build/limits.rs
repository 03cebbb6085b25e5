//! Process-wide and per-listener knobs: `limits` (sessions, bandwidth,
//! `failed_logins`), `timeouts`, `shutdown`, `reload`, `metrics` and
//! `transfer_log`.
//!
//! A new top-level section (one that exists in the top file only) or a new limit
//! or timeout goes here; its default lives beside its conversion.

use std::time::Duration;

use super::values::{
    log_file, parse_bandwidth, parse_bind, parse_bool, parse_count, parse_ipv6_prefix,
    parse_log_format,
};
use super::{Builder, Reported};
use crate::config::duration;
use crate::config::raw::{
    RawFailedLogins, RawLimits, RawListenerLimits, RawMetrics, RawReload, RawShutdown, RawTimeouts,
    RawTransferLog,
};
use crate::config::typed::{
    FailedLogins, Limits, Listener, ListenerLimits, MetricsConfig, Reload, Timeouts,
    TransferLogConfig, TransferLogFormat, DEFAULT_IPV6_PREFIX,
};

/// Default of `shutdown.grace`.
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

impl<'a> Builder<'a> {
    /// `listeners[i].limits`: every key optional.
    pub(super) fn listener_limits(
        &mut self,
        p: &str,
        raw: Option<&RawListenerLimits>,
    ) -> Result<ListenerLimits, Reported> {
        let Some(raw) = raw else {
            return Ok(ListenerLimits::default());
        };
        let max_sessions = self.optional(
            &format!("{p}.max_sessions"),
            raw.max_sessions.as_deref(),
            parse_count,
        );
        let per_ip = self.optional(
            &format!("{p}.max_sessions_per_ip"),
            raw.max_sessions_per_ip.as_deref(),
            parse_count,
        );
        let bandwidth = self.optional(
            &format!("{p}.bandwidth"),
            raw.bandwidth.as_deref(),
            parse_bandwidth,
        );
        Ok(ListenerLimits {
            max_sessions: max_sessions?,
            max_sessions_per_ip: per_ip?,
            bandwidth: bandwidth?,
        })
    }

    /// Global `limits`: every key optional; `failed_logins` keys default to 5 in
    /// 60 s, 300 s cool-down.
    pub(super) fn limits(&mut self, raw: Option<&RawLimits>) -> Result<Limits, Reported> {
        let Some(raw) = raw else {
            return Ok(Limits::default());
        };
        let max_sessions = self.optional(
            "limits.max_sessions",
            raw.max_sessions.as_deref(),
            parse_count,
        );
        let per_ip = self.optional(
            "limits.max_sessions_per_ip",
            raw.max_sessions_per_ip.as_deref(),
            parse_count,
        );
        let unauthenticated = self.optional(
            "limits.max_unauthenticated_per_ip",
            raw.max_unauthenticated_per_ip.as_deref(),
            parse_count,
        );
        let rate = self.optional(
            "limits.connection_rate_per_ip",
            raw.connection_rate_per_ip.as_deref(),
            |s| match parse_count(s)? {
                n if n > u32::MAX as usize => Err(format!("\"{s}\" is too large")),
                n => Ok(n as u32),
            },
        );
        let failed_logins = match raw.failed_logins.as_ref() {
            None => Ok(None),
            Some(f) => self.failed_logins("limits.failed_logins", f).map(Some),
        };
        let ipv6_prefix = self.optional(
            "limits.ipv6_prefix",
            raw.ipv6_prefix.as_deref(),
            parse_ipv6_prefix,
        );
        let unsolicited = self.optional(
            "limits.unsolicited_replies",
            raw.unsolicited_replies.as_deref(),
            |s| match parse_count(s)? {
                n if n > u32::MAX as usize => Err(format!("\"{s}\" is too large")),
                n => Ok(n as u32),
            },
        );
        Ok(Limits {
            max_sessions: max_sessions?,
            max_sessions_per_ip: per_ip?,
            max_unauthenticated_per_ip: unauthenticated?,
            connection_rate_per_ip: rate?,
            failed_logins: failed_logins?,
            ipv6_prefix: ipv6_prefix?.unwrap_or(DEFAULT_IPV6_PREFIX),
            unsolicited_replies: unsolicited?,
        })
    }

    pub(super) fn failed_logins(
        &mut self,
        p: &str,
        raw: &RawFailedLogins,
    ) -> Result<FailedLogins, Reported> {
        let default = FailedLogins::default();
        let max = self.optional(
            &format!("{p}.max"),
            raw.max.as_deref(),
            |s| match parse_count(s)? {
                n if n > u32::MAX as usize => Err(format!("\"{s}\" is too large")),
                n => Ok(n as u32),
            },
        );
        let window = self.optional(
            &format!("{p}.window"),
            raw.window.as_deref(),
            duration::parse,
        );
        let cooldown = self.optional(
            &format!("{p}.cooldown"),
            raw.cooldown.as_deref(),
            duration::parse,
        );
        Ok(FailedLogins {
            max: max?.unwrap_or(default.max),
            window: window?.unwrap_or(default.window),
            cooldown: cooldown?.unwrap_or(default.cooldown),
        })
    }

    pub(super) fn shutdown(&mut self, raw: Option<&RawShutdown>) -> Result<Duration, Reported> {
        let grace = raw.and_then(|r| r.grace.as_deref());
        self.optional("shutdown.grace", grace, duration::parse)
            .map(|d| d.unwrap_or(DEFAULT_SHUTDOWN_GRACE))
    }

    pub(super) fn reload(&mut self, raw: Option<&RawReload>) -> Result<Reload, Reported> {
        let Some(raw) = raw else {
            return Ok(Reload::default());
        };
        let default = Reload::default();
        let watch = self.optional("reload.watch", raw.watch.as_deref(), parse_bool);
        let interval = self.optional("reload.interval", raw.interval.as_deref(), duration::parse);
        Ok(Reload {
            watch: watch?.unwrap_or(default.watch),
            interval: interval?.unwrap_or(default.interval),
        })
    }

    /// `metrics`: `bind` is required and must not take a listener's control address.
    pub(super) fn metrics(
        &mut self,
        raw: &RawMetrics,
        listeners: &[(String, Result<Listener, Reported>)],
    ) -> Result<MetricsConfig, Reported> {
        let bind = self.required("metrics.bind", raw.bind.as_deref(), parse_bind)?;
        if bind.port() != 0 {
            let taken = listeners
                .iter()
                .find(|(_, l)| matches!(l, Ok(l) if l.bind == bind));
            if let Some((i, _)) = taken {
                self.error("metrics.bind", format!("{bind} is already used by {i}"));
                return Err(Reported);
            }
        }
        Ok(MetricsConfig { bind })
    }

    /// `transfer_log`: the file may be missing (it is created at start), but its
    /// directory must exist.
    pub(super) fn transfer_log(
        &mut self,
        raw: &RawTransferLog,
    ) -> Result<TransferLogConfig, Reported> {
        let base = self.base_dir;
        let path = self.required("transfer_log.path", raw.path.as_deref(), |s| {
            log_file(base, s)
        });
        let format = self
            .optional(
                "transfer_log.format",
                raw.format.as_deref(),
                parse_log_format,
            )
            .map(|f| f.unwrap_or(TransferLogFormat::Xferlog));
        Ok(TransferLogConfig {
            path: path?,
            format: format?,
        })
    }

    pub(super) fn timeouts(&mut self, raw: Option<&RawTimeouts>) -> Result<Timeouts, Reported> {
        let empty = RawTimeouts::default();
        let raw = raw.unwrap_or(&empty);
        let default = Timeouts::default();
        let mut get = |key: &str, value: &Option<String>, fallback| {
            self.optional(
                &format!("timeouts.{key}"),
                value.as_deref(),
                duration::parse,
            )
            .map(|d| d.unwrap_or(fallback))
        };
        let connect = get("connect", &raw.connect, default.connect);
        let login = get("login", &raw.login, default.login);
        let idle = get("idle", &raw.idle, default.idle);
        let pinhole = get("pinhole", &raw.pinhole, default.pinhole);
        let data_idle = get("data_idle", &raw.data_idle, default.data_idle);
        let control_write = get("control_write", &raw.control_write, default.control_write);
        Ok(Timeouts {
            control_write: control_write?,
            connect: connect?,
            login: login?,
            idle: idle?,
            pinhole: pinhole?,
            data_idle: data_idle?,
        })
    }
}
