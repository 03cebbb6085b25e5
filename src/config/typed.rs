//! The typed configuration the runtime consumes, built by [`super::build`] only.
//!
//! Everything here is already checked: addresses are parsed, port ranges are
//! non-empty, files existed at load time, every `Listener::backend` names a
//! [`Backend`], and TLS settings are consistent with their mode. The runtime reads
//! these values; it does not re-validate them. No I/O happens in this file.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::passwd::Users;
use crate::auth::Secret;

/// The whole gateway configuration, loaded once at startup (and by `check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// At least one; names are unique and control `bind` addresses are distinct.
    pub listeners: Vec<Listener>,
    /// Names are unique; may include backends no listener uses (a warning).
    pub backends: Vec<Backend>,
    /// Defaults apply to every key not given.
    pub timeouts: Timeouts,
    /// The HTTP endpoint for `/metrics`, `/healthz`, `/readyz`; `None`: not served.
    pub metrics: Option<MetricsConfig>,
    /// Where finished transfers are logged; `None`: no transfer log.
    pub transfer_log: Option<TransferLogConfig>,
    /// Global client access rules, checked after each listener's own
    /// (`policy::check_access`). Empty: every client is allowed.
    pub access: Vec<AccessRule>,
    /// Global session and login limits; all off by default.
    pub limits: Limits,
    /// How long a SIGTERM/SIGINT drain waits for running transfers before cutting
    /// them. Default 30 s.
    pub shutdown_grace: Duration,
    /// Whether and how often the config files are polled for changes.
    pub reload: Reload,
    /// The local control socket (`ftpsgate ctl`); `None`: none is created.
    pub control: Option<ControlConfig>,
    /// `auth.providers`: names are unique; routes refer to them.
    pub auth: Vec<Arc<AuthProvider>>,
    /// DMZ edge role: tunnels that connectors dial into (`tunnels`).
    pub tunnels: Vec<Tunnel>,
    /// DMZ connector role: edges this process dials out to (`connect`).
    pub connect: Vec<Connect>,
    /// Every file this config was loaded from, the top file first, then included
    /// files in load order (absolute paths); empty for [`Config::from_yaml_str`].
    /// What `reload.watch` polls.
    pub sources: Vec<PathBuf>,
}

/// `reload`: opt-in polling of [`Config::sources`]' modification times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reload {
    /// Reload when a source file changes. Default false.
    pub watch: bool,
    /// Time between two polls. Default 2 s.
    pub interval: Duration,
}

impl Default for Reload {
    fn default() -> Self {
        Reload {
            watch: false,
            interval: Duration::from_secs(2),
        }
    }
}

/// Whether an [`AccessRule`] lets matching clients in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Let matching clients in.
    Allow,
    /// Refuse matching clients.
    Deny,
}

/// One entry of an `access` list: clients inside any of `networks` get `action`.
/// Networks are truncated to their prefix (`10.1.2.3/8` is `10.0.0.0/8`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessRule {
    /// What happens to matching clients.
    pub action: Action,
    /// Never empty.
    pub networks: Vec<ipnet::IpNet>,
}

/// Global `limits`; `None` means unlimited / off. Default: all `None` as
/// parsed, IPv6 clients counted by their /64; the gateway fills the three
/// session caps from the process's file descriptor limit when they are not
/// given (`policy::bounds::fill_default_limits`), so a running gateway always
/// has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Concurrent client sessions over all listeners (at least 1).
    pub max_sessions: Option<usize>,
    /// Concurrent sessions from one client IP over all listeners (at least 1).
    pub max_sessions_per_ip: Option<usize>,
    /// Concurrent sessions from one client IP that have not logged in yet
    /// (at least 1).
    pub max_unauthenticated_per_ip: Option<usize>,
    /// New connections per second from one client IP (token bucket, burst of
    /// one second's worth); `None`: no rate limit (default).
    pub connection_rate_per_ip: Option<u32>,
    /// Cool-down for client IPs that fail to log in too often.
    pub failed_logins: Option<FailedLogins>,
    /// `limits.ipv6_prefix`: an IPv6 client is counted by this many leading bits
    /// of its address, for session limits (global and per listener) and the
    /// failed-login throttle alike (`policy::address_key`). 32..=128, default 64.
    pub ipv6_prefix: u8,
    /// Unsolicited backend replies (no command outstanding, a passive reply
    /// the gateway did not ask for…) dropped in one session before it is
    /// ended with `421`. `None`: the default, 8 (`session::state::MAX_UNSOLICITED`).
    pub unsolicited_replies: Option<u32>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_sessions: None,
            max_sessions_per_ip: None,
            max_unauthenticated_per_ip: None,
            connection_rate_per_ip: None,
            failed_logins: None,
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            unsolicited_replies: None,
        }
    }
}

/// Default of `limits.ipv6_prefix`: a subscriber usually owns a whole /64.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// `limits.failed_logins`: `max` failed logins from one client address within
/// `window` block that address for `cooldown` (`policy::LoginThrottle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailedLogins {
    /// At least 1. Default 5.
    pub max: u32,
    /// Default 60 s.
    pub window: Duration,
    /// Default 300 s.
    pub cooldown: Duration,
}

impl Default for FailedLogins {
    fn default() -> Self {
        FailedLogins {
            max: 5,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(300),
        }
    }
}

/// `listeners[i].limits`; `None` means unlimited. Default: all `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ListenerLimits {
    /// Concurrent sessions on this listener (at least 1).
    pub max_sessions: Option<usize>,
    /// Concurrent sessions on this listener from one client IP (at least 1).
    pub max_sessions_per_ip: Option<usize>,
    /// Data bytes per second per session, each direction (at least 1).
    pub bandwidth: Option<u64>,
}

/// How a [`Route`] with several backends picks one for a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Balance {
    /// In turn (default).
    #[default]
    RoundRobin,
    /// The backend with the fewest sessions of this route's candidates.
    LeastConnections,
}

/// Commands a [`CommandPolicy`] never filters (`policy::command_allowed`): login,
/// TLS and session management, data connection setup. Filtering them would break
/// sessions, not protect files.
pub const NEVER_FILTERED: &[&str] = &[
    "USER", "PASS", "ACCT", "AUTH", "PBSZ", "PROT", "CCC", "QUIT", "FEAT", "NOOP", "SYST", "OPTS",
    "HELP", "TYPE", "MODE", "STRU", "PASV", "EPSV", "PORT", "EPRT", "ABOR", "REIN",
];

/// Which FTP commands a routed session may send. Session-management commands
/// ([`NEVER_FILTERED`]) are never filtered (`policy::command_allowed`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum CommandPolicy {
    /// No filter (default).
    #[default]
    Any,
    /// Only these verbs (upper case, 3–4 letters).
    Allow(Vec<String>),
    /// Everything but these verbs (upper case, 3–4 letters).
    Deny(Vec<String>),
}

/// `listeners[i].routes[j]`: sessions whose login name matches `user` go to one
/// of `backends`, under `commands`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// Exact name or glob with `*` and `?` (case-sensitive).
    pub user: String,
    /// `cert_identity`: the client certificate's identity must match this
    /// pattern too (same syntax as `user`). `None` (default): any session,
    /// with or without a certificate. Only on listeners with `tls.client_auth`.
    pub cert_identity: Option<String>,
    /// Non-empty, distinct, each a defined [`Backend`].
    pub backends: Vec<String>,
    /// `routes[].balance`: which of `backends` a session tries first.
    pub balance: Balance,
    /// `routes[].commands`: verbs allowed or denied on this route.
    pub commands: CommandPolicy,
    /// Who checks the password: the backend (default) or the gateway first.
    pub auth: RouteAuth,
}

/// `routes[j].auth`: where a login of this route is authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum RouteAuth {
    /// The backend checks `USER`/`PASS` (the gateway relays them).
    #[default]
    Backend,
    /// The gateway answers `USER` itself and checks `PASS` with `provider`
    /// before any backend connection exists; then it logs in to the backend
    /// with the same credentials, or with `backend_login`.
    Gateway {
        /// `routes[j].provider`: who checks the password.
        provider: Arc<AuthProvider>,
        /// `routes[j].backend_login`: the service account, or `None` to
        /// pass the user's own credentials on.
        backend_login: Option<BackendLogin>,
    },
}

/// `routes[j].backend_login`: the service account the gateway logs in to
/// the backend as, after the user passed the gateway's check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BackendLogin {
    /// The backend user name.
    pub user: String,
    /// From `password_file` (read at build; never in the policy file).
    pub password: Secret,
    /// `password_file` itself, resolved (watched by `reload.watch`).
    pub password_file: PathBuf,
}

/// `auth.providers[i]`: a named way of checking passwords.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuthProvider {
    /// Unique; the `provider` label of `ftpsgate_gateway_auth_total`.
    pub name: String,
    /// How it checks.
    pub kind: AuthKind,
}

/// `auth.providers[i]`: the kind of check.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuthKind {
    /// `passwd_file`: `USER:HASH` lines, read at build (and at every reload).
    PasswdFile {
        /// The file (watched by reload).
        path: PathBuf,
        /// Its entries.
        users: Users,
    },
    /// `ldap`: a simple bind over TLS.
    Ldap(LdapAuth),
}

/// `auth.providers[i].ldap`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LdapAuth {
    /// `ldaps://HOST[:PORT]` (TLS) or `ldap://HOST[:PORT]` (always StartTLS).
    pub url: String,
    /// PEM CA certificates the server's certificate must chain to.
    pub ca: PathBuf,
    /// How the user's DN is found.
    pub lookup: LdapLookup,
    /// Connect, bind and search each within this. Default 5 s.
    pub timeout: Duration,
}

/// How the user's DN is found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LdapLookup {
    /// `user_dn`: a template with `{user}` (DN-escaped).
    UserDn(String),
    /// `search`: bind as `bind_dn`, find exactly one entry under `base` with
    /// `filter` (`{user}` filter-escaped), bind as it.
    Search {
        /// The subtree searched.
        base: String,
        /// The filter, with `{user}`.
        filter: String,
        /// The search account.
        bind_dn: String,
        /// Its password (from `bind_password_file`).
        bind_password: Secret,
        /// `bind_password_file` itself, resolved (watched by `reload.watch`).
        bind_password_file: PathBuf,
    },
}

/// `listeners[i].tls.sni[j]`: the certificate for clients asking for `names`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SniCert {
    /// Non-empty DNS names, lower case, unique within the listener.
    pub names: Vec<String>,
    /// PEM certificate chain, resolved against the config file's directory.
    pub cert: PathBuf,
    /// PEM private key, resolved against the config file's directory.
    pub key: PathBuf,
}

/// `control`: a Unix socket for `ftpsgate ctl` (never a network port). Read at
/// start only, like `metrics.bind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// Resolved against the config file's directory; a stale socket file there
    /// is replaced at start.
    pub socket: PathBuf,
    /// Permission bits of the socket file. Default 0o660.
    pub mode: u32,
    /// Numeric owner uid; `None`: the process's.
    pub owner: Option<u32>,
    /// Numeric group gid; `None`: the process's.
    pub group: Option<u32>,
}

/// `metrics`: where the HTTP endpoint listens (bound at start, like the listeners).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Never equal to a listener's control address (port 0 lets the OS pick).
    pub bind: SocketAddr,
}

/// `transfer_log`: one line per finished transfer, appended to `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferLogConfig {
    /// Resolved against the config file's directory; created at start if missing.
    pub path: PathBuf,
    /// Default `Xferlog`.
    pub format: TransferLogFormat,
    /// What becomes of `LIST`/`NLST`/`MLSD`. Default: left out (a listing is not
    /// a file transfer, and xferlog(5) has no field that says "listing").
    pub listings: ListingsPolicy,
    /// Time zone of xferlog timestamps. Default local time, as xferlog(5) says
    /// (JSON lines are always UTC, marked `Z`).
    pub time: LogTime,
}

/// `transfer_log.listings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ListingsPolicy {
    /// Not logged (default).
    #[default]
    Omit,
    /// Logged and marked: the xferlog path is the listed directory with a
    /// trailing `/`, JSON has `"listing":true`.
    Flag,
    /// Logged like a download.
    Include,
}

impl ListingsPolicy {
    /// The word written in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            ListingsPolicy::Omit => "omit",
            ListingsPolicy::Flag => "flag",
            ListingsPolicy::Include => "include",
        }
    }
}

/// `transfer_log.time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogTime {
    /// The host's local time (default; what xferlog(5) specifies).
    #[default]
    Local,
    /// UTC, for hosts whose logs are compared across time zones.
    Utc,
}

/// Line format of the transfer log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferLogFormat {
    /// The classic wu-ftpd/vsftpd `xferlog` line (local time unless
    /// `transfer_log.time: utc`).
    Xferlog,
    /// One JSON object per line.
    Json,
}

/// One client-facing FTP(S) endpoint; bound before any session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Unique; used in logs and metric labels.
    pub name: String,
    /// Control connection address (IPv4 or IPv6; port 0 lets the OS pick).
    pub bind: SocketAddr,
    /// TLS toward the client.
    pub tls: ListenerTls,
    /// Where and on which ports the gateway opens client-facing data pinholes.
    pub passive: Passive,
    /// Client active mode.
    pub active: Active,
    /// Name of the [`Backend`] sessions are relayed to when no route matches;
    /// always defined in `Config`.
    pub backend: String,
    /// Client access rules checked before the global ones. Default empty.
    pub access: Vec<AccessRule>,
    /// Per-listener limits; all off by default.
    pub limits: ListenerLimits,
    /// Per-user routes, first match on the login name wins. Default empty.
    pub routes: Vec<Route>,
    /// Whether a login `user@backend` picks a backend this listener can route to
    /// (`policy::route`). Default false.
    pub user_at_backend: bool,
    /// Accept a PROXY protocol v1/v2 header from these sources (and only
    /// from them: anyone else is refused). `None`: no PROXY protocol.
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Text of the `220` greeting. Default [`DEFAULT_BANNER`] (no product or
    /// version: nothing for a scanner to match).
    pub banner: String,
    /// Text of the `421` a client gets when no backend can serve it (the reason
    /// goes to the log only). Default [`DEFAULT_UNAVAILABLE`].
    pub unavailable: String,
}

/// Default `listeners[].banner`.
pub const DEFAULT_BANNER: &str = "Service ready";
/// Default `listeners[].unavailable` (RFC 959's wording for 421).
pub const DEFAULT_UNAVAILABLE: &str = "Service not available, closing control connection";

impl Listener {
    /// Whether `name` is this listener's default backend or in any of its routes:
    /// the backends a session on it can reach.
    pub fn routes_to(&self, name: &str) -> bool {
        self.backend == name
            || self
                .routes
                .iter()
                .any(|r| r.backends.iter().any(|b| b == name))
    }
}

/// Client-side TLS of a listener.
///
/// Invariant: `cert` and `key` are `Some` exactly when `mode` is not `None`; with
/// `mode: None`, `require` and `require_data_reuse` are `false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// `explicit` = AUTH TLS on the control port (RFC 4217), `implicit` = TLS from the
    /// first byte, `none` = cleartext.
    pub mode: TlsMode,
    /// PEM certificate chain, resolved against the config file's directory.
    pub cert: Option<PathBuf>,
    /// PEM private key, resolved against the config file's directory.
    pub key: Option<PathBuf>,
    /// Refuse USER/PASS before AUTH TLS (explicit mode). Default true; false for none.
    pub require: bool,
    /// Data-connection TLS must resume the control session, so a third party cannot
    /// take over a pinhole. Default true; false for none.
    pub require_data_reuse: bool,
    /// Whose TLS sessions a data connection may resume (with `require_data_reuse`).
    /// Default `user`; irrelevant with mode none.
    pub data_reuse_scope: ReuseScope,
    /// Lowest TLS version offered to clients. Default 1.2.
    pub min_version: TlsVersion,
    /// Highest TLS version offered to clients. Default 1.3. `"1.2"` avoids
    /// TLS 1.3 tickets on data connections (see `tls::ServerTls`).
    pub max_version: TlsVersion,
    /// Whether `CCC` may turn the client control channel back to clear (default false).
    pub allow_ccc: bool,
    /// Whether `PROT C` (clear data on the client leg) is allowed (default
    /// false with TLS: a clear data connection can be taken by any process
    /// behind the client's address; always true with `mode: none`).
    pub allow_clear_data: bool,
    /// `tls.prefer_aes128`: choose AES-128-GCM whenever the client offers it,
    /// whatever the client's order (default false: the client's order wins,
    /// and most clients put AES-256-GCM first). Always false with `mode: none`.
    pub prefer_aes128: bool,
    /// Extra certificates chosen by the client's SNI; `cert`/`key` serve every
    /// other name and clients without SNI. Always empty with `mode: none`.
    pub sni: Vec<SniCert>,
    /// `tls.client_auth`: client certificates (mutual TLS). `None` (default):
    /// none asked for. Always `None` with `mode: none`.
    pub client_auth: Option<ClientAuth>,
}

/// `listeners[].tls.client_auth`: which client certificates a listener accepts
/// and what a session learns from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM bundle of the CAs a client certificate must chain to (resolved path).
    pub ca: PathBuf,
    /// Whether a client without a certificate gets a session.
    pub mode: ClientAuthMode,
    /// CRL files (PEM or DER) checked for the client's certificate. Default empty.
    pub crl: Vec<PathBuf>,
    /// Which name of the certificate is the session's identity. Default `cn`.
    pub identity: CertIdentity,
    /// `USER` must equal the identity, else `530`. Default false.
    pub require_user_match: bool,
}

/// `client_auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAuthMode {
    /// No valid certificate, no session (the handshake fails).
    Required,
    /// A client may present no certificate; one it presents must be valid.
    Optional,
}

/// `client_auth.identity`: the certificate name that identifies the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertIdentity {
    /// The subject's first common name (ProFTPD's `TLSUserName CommonName`).
    Cn,
    /// The first `rfc822Name` subject alternative name.
    SanEmail,
    /// The first `dNSName` subject alternative name.
    SanDns,
}

/// How a connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    /// Cleartext FTP.
    None,
    /// Cleartext greeting, then `AUTH TLS` upgrades the control connection.
    Explicit,
    /// TLS handshake before the first FTP byte.
    Implicit,
}

/// Which earlier TLS sessions a client data connection may resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReuseScope {
    /// Only its own control session's (one ticket key per FTP session).
    Session,
    /// Any live session of this listener logged in as the same user from the same
    /// client address (clients with one TLS session cache for all their
    /// connections: rclone, Go). See SECURITY.md, "Data connection binding".
    User,
}

/// A TLS protocol version; ordered so that `Tls12 < Tls13`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.2 (written `"1.2"`).
    Tls12,
    /// TLS 1.3 (written `"1.3"`).
    Tls13,
}

/// Client-facing passive data settings of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passive {
    /// Ports pinholes are bound in; never overlaps another listener's range on a
    /// conflicting bind address.
    pub ports: PortRange,
    /// Address pinholes are bound to. Default: the IP of the listener's `bind`.
    pub bind: IpAddr,
    /// What is written into 227/229 replies (NAT), first matching rule wins.
    /// Empty: the local address of the client's control connection and the
    /// bound port.
    pub advertise: Vec<AdvertiseRule>,
    /// Kernel pinholes (opt-in).
    pub nftables: Option<Nftables>,
    /// How many ports of `ports` one client address (and one user) may hold
    /// at once. Default [`PortShare::DEFAULT`].
    pub max_per_client: PortShare,
}

/// `passive.max_per_client`: a fixed number of ports, or a percentage of the
/// range (never less than 1 port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortShare {
    /// At most this many ports per client.
    Ports(usize),
    /// At most this percentage of the range per client.
    Percent(u8),
    /// 10 % of the range or 16 ports, whichever is larger.
    Default,
}

impl PortShare {
    /// The default share (see [`PortShare::Default`]).
    pub const DEFAULT: PortShare = PortShare::Default;

    /// The cap for a range of `range_len` ports (at least 1, at most the range).
    pub fn cap(self, range_len: usize) -> usize {
        let n = match self {
            PortShare::Ports(n) => n,
            PortShare::Percent(p) => (range_len * usize::from(p)).div_ceil(100),
            PortShare::Default => range_len.div_ceil(10).max(16),
        };
        n.clamp(1, range_len.max(1))
    }
}

impl Default for PortShare {
    fn default() -> Self {
        PortShare::DEFAULT
    }
}

/// One `passive.advertise` rule: clients in `networks` (any client when empty)
/// are told `address`, and, when `ports` is set, the port of that range at the
/// same offset as the bound port in `passive.ports` (a port-forwarding firewall
/// maps the two ranges one to one; same size, checked at load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertiseRule {
    /// Clients this rule applies to (any client when empty).
    pub networks: Vec<ipnet::IpNet>,
    /// The address put into `227`/`229` replies.
    pub address: IpAddr,
    /// The advertised port range, mapped one to one onto `passive.ports`.
    pub ports: Option<PortRange>,
}

impl Passive {
    /// The address and port to announce to `client` for a pinhole bound on
    /// `bound_port`, given the control connection's local address `local`.
    pub fn advertised(&self, client: IpAddr, local: IpAddr, bound_port: u16) -> (IpAddr, u16) {
        let client = client.to_canonical();
        let rule = self
            .advertise
            .iter()
            .find(|r| r.networks.is_empty() || r.networks.iter().any(|n| n.contains(&client)));
        match rule {
            None => (local.to_canonical(), bound_port),
            Some(r) => {
                let port = match r.ports {
                    Some(public) => {
                        let offset = bound_port.saturating_sub(self.ports.first);
                        public.first.saturating_add(offset)
                    }
                    None => bound_port,
                };
                (r.address, port)
            }
        }
    }
}

/// `listeners[].proxy_protocol`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// Load balancers allowed to send a header; every connection must come
    /// from one of them and start with a header.
    pub from: Vec<ipnet::IpNet>,
    /// Time allowed for the header. Default 5 s.
    pub timeout: Duration,
}

/// `passive.nftables`: mirror every pinhole into an nftables set (kernel
/// filtering of the passive range).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nftables {
    /// Family and table, e.g. `inet ftpsgate`.
    pub table: String,
    /// Set of `ipv4_addr . inet_service` elements with timeouts.
    pub set: String,
    /// Set of `ipv6_addr . inet_service` elements (IPv6 clients).
    pub set6: Option<String>,
    /// At startup, an unusable set is an error (`fail`, default) or a warning
    /// and user-space-only pinholes (`warn`).
    pub fail_on_error: bool,
}

/// Client active mode (`PORT`/`EPRT`) on a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    /// Whether `PORT`/`EPRT` are accepted (default true).
    pub enabled: bool,
    /// Source ports for the gateway's connections to clients; `None` = ephemeral.
    pub ports: Option<PortRange>,
}

impl Default for Active {
    fn default() -> Self {
        Active {
            enabled: true,
            ports: None,
        }
    }
}

/// How the gateway opens data connections toward a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataMode {
    /// `PASV`/`EPSV` toward the backend whatever the client does (default).
    Passive,
    /// `PORT`/`EPRT` toward the backend: the backend connects to the gateway.
    Active,
    /// Mirror the client: passive for `PASV`/`EPSV`, active for `PORT`/`EPRT`.
    SameAsClient,
}

/// An inclusive, non-empty range of ports `first..=last`, written `"A-B"` or `"A"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// First port, at least 1.
    pub first: u16,
    /// Last port, at least `first`.
    pub last: u16,
}

impl PortRange {
    /// Number of ports in the range (0 only for a hand-built `first > last`).
    pub fn len(&self) -> usize {
        if self.last < self.first {
            0
        } else {
            usize::from(self.last - self.first) + 1
        }
    }

    /// True only for a hand-built `first > last`; parsed ranges are never empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `port` lies in `first..=last`.
    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    /// Whether the two ranges share a port.
    pub(crate) fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl FromStr for PortRange {
    type Err = PortRangeError;

    /// Accepts `"A-B"` with `1 <= A <= B <= 65535`, or a single port `"A"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (first, last) = s.split_once('-').unwrap_or((s, s));
        match (parse_port(first), parse_port(last)) {
            (Some(first), Some(last)) if first <= last => Ok(PortRange { first, last }),
            _ => Err(PortRangeError {
                input: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// A non-zero port written as plain decimal digits (`u16::from_str` alone would also
/// take `+5`).
fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok().filter(|p| *p != 0)
}

/// Why a string is not a [`PortRange`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("\"{input}\" is not a range")]
pub struct PortRangeError {
    /// The text that was refused.
    pub input: String,
}

/// One FTP server the gateway relays to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Unique; what `Listener::backend` refers to.
    pub name: String,
    /// IPv4 or IPv6 literal (without brackets) or DNS name, resolved at connect time.
    pub host: String,
    /// Control port, never 0.
    pub port: u16,
    /// TLS toward the backend.
    pub tls: BackendTls,
    /// Active FTP health check; `None`: the backend always counts as healthy.
    pub health_check: Option<HealthCheck>,
    /// Passive (default), active or same-as-client toward this backend.
    pub data_mode: DataMode,
    /// While a transfer runs, send `NOOP` on the backend control connection
    /// after this much idle time (replies swallowed) so NATs and load
    /// balancers in between keep it open. `None`: off.
    pub keepalive_noop: Option<Duration>,
    /// Send a PROXY protocol header first on each control connection, so the
    /// backend sees (and logs, and applies its own rules to) the real client
    /// address. `None` (default): no header.
    pub send_proxy: Option<ProxyVersion>,
    /// `via`: the tunnel whose connectors reach this backend (DMZ mode); the
    /// edge then never connects to `host`/`port` itself. `None`: direct.
    pub via: Option<String>,
}

/// PROXY protocol version sent to a backend (`backends[i].send_proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyVersion {
    /// Text header (`PROXY TCP4 …`).
    V1,
    /// Binary header.
    V2,
}

/// `backends[i].health_check`: connect, read `220`, complete TLS as configured, `QUIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HealthCheck {
    /// Time between the starts of two checks. Default 10 s.
    pub interval: Duration,
    /// Limit for one whole check. Default 5 s; never longer than `interval`.
    pub timeout: Duration,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Backend-side TLS.
///
/// Invariant: `verify` is `NotApplicable` exactly when `mode` is `None`, and then
/// `data_protection` is `Clear`; `min_version <= max_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTls {
    /// Default `None`.
    pub mode: TlsMode,
    /// How the backend certificate is checked.
    pub verify: BackendVerify,
    /// SNI and the name the certificate is checked against. Default: the address host.
    pub server_name: String,
    /// Default 1.2.
    pub min_version: TlsVersion,
    /// Default 1.3.
    pub max_version: TlsVersion,
    /// PROT level used toward the backend. Default `Private` with TLS.
    pub data_protection: DataProtection,
    /// `tls.cert`/`tls.key`: the client certificate the gateway presents to
    /// this backend. `None` (default): none. Always `None` with `mode: none`.
    pub client_cert: Option<ClientCert>,
}

/// A certificate chain and its key, as PEM files (resolved paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key of the leaf.
    pub key: PathBuf,
}

/// How the gateway authenticates the backend's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendVerify {
    /// Chain must verify against this PEM CA bundle (resolved path).
    Ca(PathBuf),
    /// The end-entity certificate's SHA-256 must equal one of these.
    Pin(Vec<[u8; 32]>),
    /// `verify: false`: any certificate is accepted. Lab use only; see `warnings()`.
    Dangerous,
    /// Backend `mode: none`: there is no certificate to check.
    NotApplicable,
}

/// The PROT level the gateway asks of the backend (RFC 4217 section 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataProtection {
    /// `PROT P`: data connections use TLS.
    Private,
    /// `PROT C`: data connections are cleartext.
    Clear,
}

/// Timeouts, each a positive [`Duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// Backend TCP connect plus its greeting (and TLS for implicit). Default 10 s.
    pub connect: Duration,
    /// From accept until a successful login. Default 60 s.
    pub login: Duration,
    /// Control connection without traffic. Default 600 s.
    pub idle: Duration,
    /// A pinhole nobody connected to is closed after this. Default 30 s.
    pub pinhole: Duration,
    /// Data connection without a byte in either direction. Default 300 s.
    pub data_idle: Duration,
    /// One write of replies to the client control connection (a client that
    /// does not read its replies is closed after this). Default 30 s.
    pub control_write: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            login: Duration::from_secs(60),
            idle: Duration::from_secs(600),
            pinhole: Duration::from_secs(30),
            data_idle: Duration::from_secs(300),
            control_write: Duration::from_secs(30),
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::None => "none",
            TlsMode::Explicit => "explicit",
            TlsMode::Implicit => "implicit",
        })
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        })
    }
}

impl fmt::Display for TransferLogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransferLogFormat::Xferlog => "xferlog",
            TransferLogFormat::Json => "json",
        })
    }
}

impl fmt::Display for DataProtection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataProtection::Private => "private",
            DataProtection::Clear => "clear",
        })
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Balance::RoundRobin => "round-robin",
            Balance::LeastConnections => "least-connections",
        })
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        })
    }
}

/// `tunnels[].transport`, `connect[].transport`: what carries the streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// One QUIC stream per relayed connection (UDP).
    Quic,
    /// One HTTP/2 stream per relayed connection, over TLS 1.3 over TCP; the
    /// default (less CPU per byte, fair under load, passes TCP-only firewalls:
    /// bench/README.md, DMZ mode).
    #[default]
    H2,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Quic => "quic",
            Transport::H2 => "h2",
        })
    }
}

/// `tunnels[]`: an endpoint in the DMZ that connectors dial into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// Unique; what `backends[].via` refers to.
    pub name: String,
    /// Address the edge listens on (UDP for QUIC, TCP for HTTP/2).
    pub listen: SocketAddr,
    /// QUIC or HTTP/2; must match the connectors'.
    pub transport: Transport,
    /// Its certificate and the connectors' CA.
    pub tls: TunnelServerTls,
}

/// `tunnels[].tls`: the edge's certificate and the CA its connectors' client
/// certificates must chain to (mutual TLS 1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelServerTls {
    /// The edge's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA connectors' certificates must chain to.
    pub client_ca: PathBuf,
}

/// `connect[]`: an edge this process (the connector) dials out to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Edge host (IP literal or DNS name).
    pub edge_host: String,
    /// Edge port (UDP for QUIC, TCP for HTTP/2).
    pub edge_port: u16,
    /// The name the edge certificate must carry; default: `edge_host`.
    pub server_name: String,
    /// QUIC or HTTP/2; must match the edge's.
    pub transport: Transport,
    /// The connector's certificate and the edge's CA.
    pub tls: TunnelClientTls,
    /// The only places the edge may make this connector connect to.
    pub backends: Vec<ConnectBackend>,
}

/// `connect[].tls`: the connector's client certificate and the CA the edge's
/// certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelClientTls {
    /// The connector's client certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The CA the edge's certificate must chain to.
    pub ca: PathBuf,
}

/// `connect[].backends[]`: a backend the edge may ask for by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectBackend {
    /// What the edge's `backends[].name` asks for.
    pub name: String,
    /// Host (IP literal or DNS name), resolved at connect time.
    pub host: String,
    /// TCP port of its control connection.
    pub port: u16,
}
