//! Serde mirror of the YAML file, with no meaning attached yet.
//!
//! Every scalar is kept as the text written (`Option<String>`; serde-saphyr hands a
//! plain `45`, `1.2` or `true` over as its source text), so that a bad value is not a
//! deserialisation error that hides the others: [`super::build`] converts each one
//! and reports all failures with their key paths. Unknown keys are refused here
//! (`deny_unknown_fields`) because a misspelt security knob must not be ignored.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::Deserialize;

/// The whole file. Every key is optional here; `build` says which are required.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub listeners: Option<Vec<RawListener>>,
    pub backends: Option<Vec<RawBackend>>,
    pub timeouts: Option<RawTimeouts>,
    pub metrics: Option<RawMetrics>,
    pub transfer_log: Option<RawTransferLog>,
    /// Further files whose `listeners`, `backends` and `access` are appended.
    pub include: Option<Vec<String>>,
    /// Global client access rules, after each listener's own.
    pub access: Option<Vec<RawAccessRule>>,
    pub limits: Option<RawLimits>,
    pub shutdown: Option<RawShutdown>,
    pub reload: Option<RawReload>,
    pub control: Option<RawControl>,
}

/// `control`: the local control socket for `ftpsgate ctl`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawControl {
    pub socket: Option<String>,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

/// One access rule: exactly one of `allow` or `deny`, each a list of CIDRs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccessRule {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

/// Global `limits`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_sessions: Option<String>,
    pub max_sessions_per_ip: Option<String>,
    pub max_unauthenticated_per_ip: Option<String>,
    pub connection_rate_per_ip: Option<String>,
    pub failed_logins: Option<RawFailedLogins>,
    pub ipv6_prefix: Option<String>,
    pub unsolicited_replies: Option<String>,
}

/// `limits.failed_logins`: login throttling per client address.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFailedLogins {
    pub max: Option<String>,
    pub window: Option<String>,
    pub cooldown: Option<String>,
}

/// `shutdown`: how a SIGTERM/SIGINT drain ends.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShutdown {
    pub grace: Option<String>,
}

/// `reload`: watching the config files.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReload {
    pub watch: Option<String>,
    pub interval: Option<String>,
}

/// `listeners[i].limits`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListenerLimits {
    pub max_sessions: Option<String>,
    pub max_sessions_per_ip: Option<String>,
    pub bandwidth: Option<String>,
}

/// `listeners[i].routes[j]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub user: Option<String>,
    pub backends: Option<Vec<String>>,
    pub balance: Option<String>,
    pub commands: Option<RawCommands>,
}

/// `routes[j].commands`: exactly one of `allow` or `deny`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCommands {
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
}

/// `listeners[i].tls.sni[j]`: a certificate for some server names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSniCert {
    pub names: Option<Vec<String>>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// `metrics`: the HTTP endpoint serving `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    pub bind: Option<String>,
}

/// `transfer_log`: one line per finished transfer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTransferLog {
    pub path: Option<String>,
    pub format: Option<String>,
}

/// `listeners[i]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub name: Option<String>,
    pub bind: Option<String>,
    pub tls: Option<RawListenerTls>,
    pub passive: Option<RawPassive>,
    pub active: Option<RawActive>,
    pub backend: Option<String>,
    pub access: Option<Vec<RawAccessRule>>,
    pub limits: Option<RawListenerLimits>,
    pub user_at_backend: Option<String>,
    pub routes: Option<Vec<RawRoute>>,
    pub proxy_protocol: Option<RawProxyProtocol>,
}

/// `listeners[i].passive.nftables`: kernel pinholes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNftables {
    pub table: Option<String>,
    pub set: Option<String>,
    pub set6: Option<String>,
    pub on_error: Option<String>,
}

/// `listeners[i].proxy_protocol`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxyProtocol {
    pub from: Option<Vec<String>>,
    pub timeout: Option<String>,
}

/// `listeners[i].tls`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListenerTls {
    pub mode: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub require: Option<String>,
    pub require_data_reuse: Option<String>,
    pub data_reuse_scope: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub allow_ccc: Option<String>,
    pub allow_clear_data: Option<String>,
    pub sni: Option<Vec<RawSniCert>>,
}

/// `listeners[i].passive`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPassive {
    pub nftables: Option<RawNftables>,
    pub ports: Option<String>,
    pub bind: Option<String>,
    pub advertise: Option<RawAdvertise>,
    pub max_per_client: Option<String>,
}

/// `listeners[i].active`: client active mode (`PORT`/`EPRT`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawActive {
    pub enabled: Option<String>,
    pub ports: Option<String>,
}

/// `passive.advertise`: one address, or a list of per-network rules.
#[derive(Debug)]
pub(crate) enum RawAdvertise {
    One(String),
    Rules(Vec<RawAdvertiseRule>),
}

/// One rule of `passive.advertise`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdvertiseRule {
    pub networks: Option<Vec<String>>,
    pub address: Option<String>,
    pub ports: Option<String>,
}

impl<'de> Deserialize<'de> for RawAdvertise {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AdvertiseVisitor)
    }
}

struct AdvertiseVisitor;

impl<'de> Visitor<'de> for AdvertiseVisitor {
    type Value = RawAdvertise;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an IP address or a list of { networks, address, ports } rules")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAdvertise, E> {
        Ok(RawAdvertise::One(v.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawAdvertise, A::Error> {
        let mut rules = Vec::new();
        while let Some(rule) = seq.next_element::<RawAdvertiseRule>()? {
            rules.push(rule);
        }
        Ok(RawAdvertise::Rules(rules))
    }
}

/// `backends[i]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackend {
    pub name: Option<String>,
    pub address: Option<String>,
    pub tls: Option<RawBackendTls>,
    pub health_check: Option<RawHealthCheck>,
    pub data_mode: Option<String>,
    pub keepalive_noop: Option<String>,
    pub send_proxy: Option<String>,
}

/// `backends[i].health_check`; each value is a duration like `timeouts`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    pub interval: Option<String>,
    pub timeout: Option<String>,
}

/// `backends[i].tls`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackendTls {
    pub mode: Option<String>,
    pub ca: Option<String>,
    pub pin_sha256: Option<RawPins>,
    pub verify: Option<String>,
    pub server_name: Option<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    pub data_protection: Option<String>,
}

/// `timeouts`; each value is a duration string or a bare number of seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimeouts {
    pub connect: Option<String>,
    pub login: Option<String>,
    pub idle: Option<String>,
    pub pinhole: Option<String>,
    pub data_idle: Option<String>,
    pub control_write: Option<String>,
}

/// `pin_sha256`: one fingerprint or a list of them (several pins allow a
/// certificate rollover without a window where the gateway refuses the backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawPins {
    One(String),
    Many(Vec<String>),
}

impl<'de> Deserialize<'de> for RawPins {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PinsVisitor)
    }
}

struct PinsVisitor;

impl<'de> Visitor<'de> for PinsVisitor {
    type Value = RawPins;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quoted string of 64 hex digits or a list of them")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPins, E> {
        Ok(RawPins::One(v.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawPins, A::Error> {
        let mut pins = Vec::new();
        // Elements go through `String`, which keeps an unquoted all-digit pin as text.
        while let Some(pin) = seq.next_element::<String>()? {
            pins.push(pin);
        }
        Ok(RawPins::Many(pins))
    }
}
