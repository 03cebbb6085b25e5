//! Serde mirror of the YAML file, with no meaning attached yet.
//!
//! Every scalar is kept as the text written (`Option<String>`; serde-saphyr hands a
//! plain `45`, `1.2` or `true` over as its source text), so that a bad value is not a
//! deserialisation error that hides the others: [`super::build`] converts each one
//! and reports all failures with their key paths. Unknown keys are not refused by
//! serde here (`deny_unknown_fields` stops at the first one): [`super::schema`]
//! reports every one of them before the build, because a misspelt security knob
//! must not be ignored. A new field here needs its key in `schema::KNOWN` too.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The whole file. Every key is optional here; `build` says which are required.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Vec<RawListener>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<RawBackend>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<RawTimeouts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<RawMetrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer_log: Option<RawTransferLog>,
    /// Further files whose `listeners`, `backends` and `access` are appended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    /// Global client access rules, after each listener's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Vec<RawAccessRule>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<RawLimits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<RawShutdown>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload: Option<RawReload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<RawControl>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<RawAuth>,
    /// DMZ edge: tunnels connectors dial into.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnels: Option<Vec<RawTunnel>>,
    /// DMZ connector: edges to dial out to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<Vec<RawConnect>>,
}

/// `auth`: password providers for routes with `auth: gateway`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawAuth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<RawAuthProvider>>,
}

/// `auth.providers[i]`: a `name` and exactly one of `passwd_file` or `ldap`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawAuthProvider {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passwd_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ldap: Option<RawLdap>,
}

/// `auth.providers[i].ldap`: `url`, `ca`, and one of `user_dn` or `search`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawLdap {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_dn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<RawLdapSearch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// `auth.providers[i].ldap.search`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawLdapSearch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_dn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_password_file: Option<String>,
}

/// `tunnels[i]`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawTunnel {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTunnelTls>,
}

/// `tunnels[i].tls` and `connect[i].tls` (each uses its own keys).
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawTunnelTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

/// `connect[i]`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawConnect {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawTunnelTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<RawConnectBackend>>,
}

/// `connect[i].backends[j]`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawConnectBackend {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `control`: the local control socket for `ftpsgate ctl`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawControl {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// One access rule: exactly one of `allow` or `deny`, each a list of CIDRs.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawAccessRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<String>>,
}

/// Global `limits`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions_per_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_unauthenticated_per_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_rate_per_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_logins: Option<RawFailedLogins>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv6_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsolicited_replies: Option<String>,
}

/// `limits.failed_logins`: login throttling per client address.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawFailedLogins {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
}

/// `shutdown`: how a SIGTERM/SIGINT drain ends.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawShutdown {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace: Option<String>,
}

/// `reload`: watching the config files.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawReload {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// `listeners[i].limits`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawListenerLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions_per_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<String>,
}

/// `listeners[i].routes[j]`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawRoute {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Pattern the client certificate's identity must match too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balance: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<RawCommands>,
    /// `gateway` or `backend` (default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// The `auth.providers` name (optional when exactly one is defined).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_login: Option<RawBackendLogin>,
}

/// `routes[j].backend_login`: the backend account for gateway-authenticated users.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawBackendLogin {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

/// `routes[j].commands`: exactly one of `allow` or `deny`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawCommands {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<Vec<String>>,
}

/// `listeners[i].tls.sni[j]`: a certificate for some server names.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawSniCert {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub names: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `metrics`: the HTTP endpoint serving `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawMetrics {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
}

/// `transfer_log`: one line per finished transfer.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawTransferLog {
    /// `omit`, `flag` or `include` directory listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listings: Option<String>,
    /// `local` or `utc` timestamps in xferlog lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// `listeners[i]`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawListener {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawListenerTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passive: Option<RawPassive>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<RawActive>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Vec<RawAccessRule>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<RawListenerLimits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_at_backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<RawRoute>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<RawProxyProtocol>,
    /// Text of the `220` greeting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    /// Text of the `421` a client gets when no backend can serve it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

/// `listeners[i].passive.nftables`: kernel pinholes.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawNftables {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set6: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
}

/// `listeners[i].proxy_protocol`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawProxyProtocol {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// `listeners[i].tls`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawListenerTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_data_reuse: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_reuse_scope: Option<String>,
    pub min_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_ccc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_clear_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefer_aes128: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<Vec<RawSniCert>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<RawClientAuth>,
}

/// `listeners[i].tls.client_auth`: client certificates (mutual TLS).
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawClientAuth {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    /// `required` or `optional`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl: Option<Vec<String>>,
    /// `cn`, `san_email` or `san_dns`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_user_match: Option<String>,
}

/// `listeners[i].passive`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawPassive {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nftables: Option<RawNftables>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<RawAdvertise>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_per_client: Option<String>,
}

/// `listeners[i].active`: client active mode (`PORT`/`EPRT`).
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawActive {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
}

/// `passive.advertise`: one address, or a list of per-network rules.
#[derive(Debug)]
pub(crate) enum RawAdvertise {
    One(String),
    Rules(Vec<RawAdvertiseRule>),
}

/// One rule of `passive.advertise`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawAdvertiseRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<String>,
}

impl Serialize for RawAdvertise {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RawAdvertise::One(ip) => serializer.serialize_str(ip),
            RawAdvertise::Rules(rules) => rules.serialize(serializer),
        }
    }
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
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawBackend {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawBackendTls>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<RawHealthCheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keepalive_noop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_proxy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// `backends[i].health_check`; each value is a duration like `timeouts`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawHealthCheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// `backends[i].tls`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawBackendTls {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_sha256: Option<RawPins>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_protection: Option<String>,
    /// Client certificate presented to the backend (with `key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `timeouts`; each value is a duration string or a bare number of seconds.
#[derive(Debug, Default, Deserialize, Serialize)]
pub(crate) struct RawTimeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pinhole: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_idle: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_write: Option<String>,
}

/// `pin_sha256`: one fingerprint or a list of them (several pins allow a
/// certificate rollover without a window where the gateway refuses the backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RawPins {
    One(String),
    Many(Vec<String>),
}

impl Serialize for RawPins {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RawPins::One(pin) => serializer.serialize_str(pin),
            RawPins::Many(pins) => pins.serialize(serializer),
        }
    }
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
