//! TLS for both legs of the gateway: the acceptor that terminates client TLS
//! (control and data) and the connector that speaks TLS to the backend.
//!
//! Session reuse is the point of this module. Strict FTP servers (vsftpd
//! `require_ssl_reuse=YES`) refuse a data connection whose TLS handshake does not
//! resume the control connection's session, and the gateway enforces the same
//! rule toward its own clients to stop port stealing. Both are done by giving
//! every FTP session its *own* rustls config (cloned from a shared base, with a
//! fresh session cache): a data handshake can only resume if it carries state
//! that was handed out on that session's control connection.
//!
//! Client certificates (`tls.client_auth`) are verified by the listener's
//! config (`client_auth`); each session remembers its control connection's
//! certificate so its data connections must present the same one.
//!
//! This module does no FTP and knows nothing about sessions beyond
//! "one cache per session".

pub(crate) mod client_auth;
mod identity;
pub(crate) mod material;
mod pem;
mod resume;
mod reuse;
#[cfg(test)]
mod tests;
mod verify;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::{ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, HandshakeKind, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::ServerName;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::{self, BackendVerify, ReuseScope, TlsVersion};

use reuse::{ReuseGroups, SessionTicketer};

pub(crate) use pem::{load_certs, load_key};
pub(crate) use resume::SessionStore;
pub(crate) use verify::OnLeaf;

/// Loads the certificates, keys and CA files of every `tls` section that
/// converted cleanly, as [`ServerTls::from_config`] and
/// [`BackendTls::from_config`] do at start, and reports each failure at its
/// section: `check` shows these beside errors in other keys of the file.
pub fn check_sections(sections: &config::TlsSections) -> Vec<config::ConfigError> {
    let mut out = check_client_auth_files(sections);
    for (path, at, tls) in &sections.listeners {
        if tls.mode == config::TlsMode::None {
            continue;
        }
        match ServerTls::from_config(tls) {
            // Reported above at the file's own key.
            Err(TlsError::ClientAuth(_)) | Ok(_) => {}
            Err(e) => out.push(located(path, *at, e)),
        }
    }
    for (path, at, tls) in &sections.backends {
        if tls.mode == config::TlsMode::None {
            continue;
        }
        if let Err(e) = BackendTls::from_config(tls) {
            out.push(located(path, *at, e));
        }
    }
    out
}

/// The `client_auth` CA and CRL files that cannot be used, each at its own
/// key (`listeners[i].tls.client_auth.ca`, `….crl[j]`), as loading the
/// listener would refuse them (there, the error names only `listeners[i].tls`).
pub fn check_client_auth_files(sections: &config::TlsSections) -> Vec<config::ConfigError> {
    sections
        .client_auth
        .iter()
        .filter_map(|(path, at, file)| {
            let e = client_auth::check_file(file).err()?;
            Some(located(path, *at, e))
        })
        .collect()
}

fn located(path: &str, at: Option<(u64, u64)>, e: TlsError) -> config::ConfigError {
    config::ConfigError {
        path: path.to_owned(),
        line: at.map(|(line, _)| line),
        column: at.map(|(_, column)| column),
        key: None,
        message: e.to_string(),
    }
}

/// TLS setup errors, raised at startup or `check` time (never mid-session).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid server name {0:?}")]
    ServerName(String),
    /// A `client_auth` CA or CRL file that cannot be used.
    #[error("{0}")]
    ClientAuth(String),
    #[error("{0}")]
    Other(String),
}

/// The one crypto provider: ring. Configs are always built with
/// `builder_with_provider` so that a second provider compiled in by some
/// dependency can never make rustls pick implicitly (it would panic).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring_provider())
}

/// Key exchange groups in our order, not the provider's default: X25519 first
/// (one X25519 agreement costs a small fraction of a P-384 one), then P-256,
/// then P-384. rustls's ring defaults are not stable across patch releases
/// (0.23.48 puts P-384 first), and a server picks by its own order: left to
/// the default, a `cargo update` would add about 2 ms of CPU to every short
/// session (six handshakes). Nothing is added or removed, only the order fixed.
const KX_ORDER: [&dyn rustls::crypto::SupportedKxGroup; 3] = [
    rustls::crypto::ring::kx_group::X25519,
    rustls::crypto::ring::kx_group::SECP256R1,
    rustls::crypto::ring::kx_group::SECP384R1,
];

/// ring's default provider with [`KX_ORDER`].
fn ring_provider() -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    p.kx_groups = KX_ORDER.to_vec();
    p
}

/// The provider for backend connections: ring's suites with AES-128-GCM
/// offered before AES-256-GCM in each TLS version (servers that honour the
/// client's order, as OpenSSL and vsftpd do by default, then pick it). On the
/// gateway both legs are one AES-GCM decrypt plus one encrypt per byte, and
/// AES-128 has 10 rounds to AES-256's 14: `openssl speed -evp` on the
/// benchmark machine gives it about 1.3× the throughput (bench/README.md).
/// Nothing weaker is added and nothing removed; only the order changes.
pub(crate) fn backend_provider() -> Arc<CryptoProvider> {
    aes128_first()
}

/// ring's suites, AES-128-GCM first within each TLS version (TLS 1.3 first):
/// the order offered to backends, and the order a listener with
/// `tls.prefer_aes128` chooses by. AES-128-GCM costs less per byte than
/// AES-256-GCM (10 rounds, not 14; ~15 % on a CPU with VAES, `bench/run.sh`
/// prints both from `openssl speed`), and TLS 1.3's AES-128 suite hashes with
/// SHA-256, not SHA-384.
fn aes128_first() -> Arc<CryptoProvider> {
    let mut p = ring_provider();
    p.cipher_suites.sort_by_key(|s| {
        let aes128 = s
            .suite()
            .as_str()
            .is_some_and(|name| name.contains("AES_128_GCM"));
        (s.tls13().is_none(), !aes128)
    });
    Arc::new(p)
}

fn versions(min: TlsVersion, max: TlsVersion) -> Vec<&'static SupportedProtocolVersion> {
    let mut v = Vec::new();
    if min <= TlsVersion::Tls12 && max >= TlsVersion::Tls12 {
        v.push(&rustls::version::TLS12);
    }
    if max >= TlsVersion::Tls13 {
        v.push(&rustls::version::TLS13);
    }
    v
}

/// TLS 1.3 tickets handed to a client per handshake. Tickets are single-use
/// (RFC 8446 §C.4), and clients that upload never read the tickets sent on a
/// data connection, so the control handshake hands out enough for a burst of
/// transfers; each resumed data handshake hands out fresh ones too.
const TLS13_TICKETS_PER_HANDSHAKE: usize = 4;
/// Entries in one session's server-side cache (TLS 1.2 session ids and TLS 1.3
/// stateful tickets of that one session).
const SESSION_CACHE_ENTRIES: usize = 32;

/// The client-facing TLS of one listener: certificate, versions, policy.
#[derive(Clone)]
pub struct ServerTls {
    base: Arc<ServerConfig>,
    /// The listener's login groups in `data_reuse_scope: user`, else `None`.
    groups: Option<Arc<ReuseGroups>>,
    /// `client_auth.identity` when client certificates are asked for.
    client_identity: Option<config::CertIdentity>,
}

impl ServerTls {
    pub fn from_config(tls: &config::ListenerTls) -> Result<Self, TlsError> {
        let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
            return Err(TlsError::Other("cert and key are required".into()));
        };
        // `prefer_aes128`: the server's order (AES-128-GCM first) instead of
        // the client's.
        let provider = if tls.prefer_aes128 {
            aes128_first()
        } else {
            provider()
        };
        let certified = |cert: &std::path::Path,
                         key_path: &std::path::Path|
         -> Result<Arc<CertifiedKey>, TlsError> {
            let chain = load_certs(cert)?;
            let key = load_key(key_path)?;
            CertifiedKey::from_der(chain, key, &provider)
                .map(Arc::new)
                .map_err(|e| {
                    let why = match e {
                        rustls::Error::InconsistentKeys(_) => {
                            "the private key does not belong to the certificate (its public \
                             key differs); use the key the certificate was issued for"
                                .to_string()
                        }
                        e => e.to_string(),
                    };
                    TlsError::Other(format!(
                        "{} / {}: {why}",
                        cert.display(),
                        key_path.display()
                    ))
                })
        };
        let default = certified(cert, key)?;
        let mut by_name = HashMap::new();
        for sni in &tls.sni {
            let ck = certified(&sni.cert, &sni.key)?;
            for name in &sni.names {
                by_name.insert(name.to_ascii_lowercase(), ck.clone());
            }
        }
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(tls.min_version, tls.max_version))?;
        let builder = match &tls.client_auth {
            Some(ca) => builder.with_client_cert_verifier(client_auth::verifier(ca)?),
            None => builder.with_no_client_auth(),
        };
        let mut cfg = builder.with_cert_resolver(Arc::new(SniResolver { by_name, default }));
        cfg.ignore_client_order = tls.prefer_aes128;
        // Data connections (`stream::utls`) seal their records themselves
        // once rustls has done the handshake; control connections ignore it.
        cfg.enable_secret_extraction = true;
        let groups = match tls.data_reuse_scope {
            ReuseScope::User => Some(Arc::new(ReuseGroups::default())),
            ReuseScope::Session => None,
        };
        Ok(ServerTls {
            base: Arc::new(cfg),
            groups,
            client_identity: tls.client_auth.as_ref().map(|c| c.identity),
        })
    }

    /// An acceptor for one FTP session: control and all of its data
    /// connections use it, and nothing else can resume its sessions.
    ///
    /// Resumption state lives in two per-session places: the session-id
    /// cache (TLS 1.2) and a per-session ticket key (TLS 1.2 tickets and
    /// TLS 1.3). Stateless tickets are used rather than rustls' single-use
    /// stateful ones because GnuTLS clients (lftp) resume every data
    /// connection from the *same* control-connection ticket, as OpenSSL
    /// servers allow; the per-session key still confines them to this session.
    ///
    /// Data connections share that state. A data handshake whose direction
    /// is known (the transfer command came first) gets fresh TLS 1.3 tickets
    /// for a download and none for an upload (an uploading client that never
    /// reads would close with them unread, and its kernel's reset can cut the
    /// end of the upload — the vsftpd truncation of real-servers.md). A
    /// handshake that comes before the command (curl) gets tickets held back
    /// by `stream::HoldIo` until the transfer starts, in both directions:
    /// curl uses each ticket once and reads the tickets of an upload
    /// connection just before its close_notify.
    pub fn session_acceptors(&self, client_ip: IpAddr) -> Result<SessionAcceptors, TlsError> {
        let mut cfg = (*self.base).clone();
        cfg.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
        let ticketer = SessionTicketer::new(
            rustls::crypto::ring::Ticketer::new()?,
            self.groups.clone(),
            client_ip,
        );
        cfg.ticketer = ticketer.clone();
        cfg.send_tls13_tickets = TLS13_TICKETS_PER_HANDSHAKE;
        let download = Arc::new(cfg.clone());
        let mut upload = cfg.clone();
        upload.send_tls13_tickets = 0;
        Ok(SessionAcceptors {
            control: TlsAcceptor::from(Arc::new(cfg)),
            download,
            upload: Arc::new(upload),
            ticketer,
            peer: self.client_identity.map(client_auth::SessionPeer::new),
        })
    }
}

/// Picks the certificate by SNI among `tls.sni`, else the listener's default.
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let named = hello
            .server_name()
            .and_then(|n| self.by_name.get(&n.to_ascii_lowercase()));
        Some(named.unwrap_or(&self.default).clone())
    }
}

/// The TLS configs of one client session (same resumption state).
#[derive(Clone)]
pub struct SessionAcceptors {
    pub control: TlsAcceptor,
    /// Data connections carrying a download (fresh tickets sent).
    pub download: Arc<ServerConfig>,
    /// Data connections carrying an upload, or of unknown direction (no tickets).
    pub upload: Arc<ServerConfig>,
    /// The session's ticket key (and, in scope `user`, its login group).
    ticketer: Arc<SessionTicketer>,
    /// With `client_auth`: the control connection's certificate.
    peer: Option<Arc<client_auth::SessionPeer>>,
}

impl SessionAcceptors {
    /// The session's login: `Some(user)` once logged in, `None` otherwise. In
    /// `data_reuse_scope: user` its data connections may then resume tickets
    /// of that user's other sessions from the same client address.
    pub fn bind_login(&self, user: Option<&str>) {
        self.ticketer.bind(user);
    }

    /// Before a data handshake: wait (up to `limit`) if the offered ticket
    /// belongs to a session from the same address that is still logging in
    /// (see `reuse::SessionTicketer::await_ticket_owner`).
    pub async fn await_ticket_owner(&self, client_hello: &[u8], limit: Duration) {
        self.ticketer.await_ticket_owner(client_hello, limit).await;
    }

    /// After the control connection's handshake: with `client_auth`, remember
    /// its certificate and return the identity it gives (else `None`).
    pub fn bind_client_cert(&self, conn: &rustls::ServerConnection) -> Option<String> {
        self.peer.as_ref().and_then(|p| p.bind_control(conn))
    }

    /// The identity of the control connection's client certificate, if any.
    pub fn client_identity(&self) -> Option<String> {
        self.peer.as_ref().and_then(|p| p.identity())
    }

    /// After a data connection's handshake: with `client_auth`, it must carry
    /// the control connection's certificate (a resumed session carries it).
    /// Refusals are logged and counted here; the caller closes the connection.
    pub(crate) fn check_data_cert(
        &self,
        peer_certs: Option<&[rustls::pki_types::CertificateDer<'_>]>,
        metrics: &crate::metrics::Metrics,
    ) -> Result<(), crate::metrics::ClientCertRefusal> {
        let Some(peer) = &self.peer else {
            return Ok(());
        };
        peer.check_data(peer_certs).inspect_err(|reason| {
            tracing::warn!(
                leg = "data",
                reason = reason.as_str(),
                "client certificate refused: data connection does not present the control connection's certificate"
            );
            metrics.client_cert_refused(*reason);
        })
    }

    /// The config for a data connection carrying a transfer in `direction`.
    pub fn data(&self, direction: crate::control::Direction) -> Arc<ServerConfig> {
        match direction {
            crate::control::Direction::Download => self.download.clone(),
            crate::control::Direction::Upload => self.upload.clone(),
        }
    }
}

/// The backend-facing TLS of one backend: verifier, versions and name.
///
/// Which version a backend session uses is chosen for resumption (see
/// [`resume`] for the measurements): when data connections are TLS and both
/// versions are allowed, sessions offer TLS 1.2 only, whose session id every
/// measured server lets data connections resume for the whole session; TLS
/// 1.3 tickets are single-use and ProFTPD issues none on uploads, so a 1.3
/// session toward it runs out after two uploads. A backend that refuses TLS
/// 1.2 is remembered and gets the full range from then on.
#[derive(Clone)]
pub struct BackendTls {
    /// All configured versions.
    base: Arc<ClientConfig>,
    /// TLS 1.2 only; `Some` when it is preferred (see above).
    tls12: Option<Arc<ClientConfig>>,
    /// Set once this backend refused a TLS 1.2-only handshake; shared by the
    /// backend's sessions, reset when the config is reloaded.
    tls12_refused: Arc<AtomicBool>,
    server_name: ServerName<'static>,
}

impl BackendTls {
    pub fn from_config(tls: &config::BackendTls) -> Result<Self, TlsError> {
        Self::from_config_observed(tls, None)
    }

    /// As [`Self::from_config`]; `on_leaf` hears the not-after of every
    /// backend certificate accepted (the expiry metric).
    pub fn from_config_observed(
        tls: &config::BackendTls,
        on_leaf: Option<verify::OnLeaf>,
    ) -> Result<Self, TlsError> {
        let provider = backend_provider();
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match &tls.verify {
            BackendVerify::Ca(path) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in load_certs(path)? {
                    roots.add(cert)?;
                }
                rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| TlsError::Other(format!("CA {}: {e}", path.display())))?
            }
            BackendVerify::Pin(pins) => {
                Arc::new(verify::PinnedVerifier::new(pins.clone(), provider.clone()))
            }
            BackendVerify::Dangerous | BackendVerify::NotApplicable => {
                Arc::new(verify::PinnedVerifier::dangerous_any(provider.clone()))
            }
        };
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match on_leaf {
            Some(on_leaf) => Arc::new(verify::LeafExpiry {
                inner: verifier,
                on_leaf,
            }),
            None => verifier,
        };
        // `cert`/`key`: the client certificate presented to the backend.
        let client_cert = match &tls.client_cert {
            Some(c) => Some((load_certs(&c.cert)?, load_key(&c.key)?)),
            None => None,
        };
        let build = |versions: &[&'static SupportedProtocolVersion]| {
            let b = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)?
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone());
            let mut cfg = match &client_cert {
                Some((chain, key)) => b.with_client_auth_cert(chain.clone(), key.clone_key())?,
                None => b.with_no_client_auth(),
            };
            // Data connections (`stream::utls`) seal their records themselves
            // once rustls has done the handshake; control connections ignore it.
            cfg.enable_secret_extraction = true;
            Ok::<_, rustls::Error>(Arc::new(cfg))
        };
        let all = versions(tls.min_version, tls.max_version);
        let prefer_tls12 = tls.data_protection == config::DataProtection::Private
            && all.len() > 1
            && all.contains(&&rustls::version::TLS12);
        let tls12 = if prefer_tls12 {
            Some(build(&[&rustls::version::TLS12])?)
        } else {
            None
        };
        let server_name = ServerName::try_from(tls.server_name.clone())
            .map_err(|_| TlsError::ServerName(tls.server_name.clone()))?;
        Ok(BackendTls {
            base: build(&all)?,
            tls12,
            tls12_refused: Arc::new(AtomicBool::new(false)),
            server_name,
        })
    }

    /// A connector for one FTP session: its session store only ever holds the
    /// backend control session's tickets and session id, which the data
    /// connections resume.
    pub fn session_connector(&self) -> SessionConnector {
        let tls12_only = self.tls12.is_some() && !self.tls12_refused.load(Ordering::Relaxed);
        let base = match (&self.tls12, tls12_only) {
            (Some(c), true) => c,
            _ => &self.base,
        };
        let store = Arc::new(SessionStore::new());
        let mut cfg = (**base).clone();
        cfg.resumption = Resumption::store(store.clone());
        SessionConnector {
            connector: TlsConnector::from(Arc::new(cfg)),
            server_name: self.server_name.clone(),
            store,
            tls12_only,
        }
    }

    /// After a TLS 1.2-only control handshake failed: remember that this
    /// backend wants TLS 1.3 and return a connector with every configured
    /// version (`None` when the failed one already had them all).
    pub fn fallback_connector(&self, failed: &SessionConnector) -> Option<SessionConnector> {
        if !failed.tls12_only {
            return None;
        }
        self.tls12_refused.store(true, Ordering::Relaxed);
        Some(self.session_connector())
    }
}

/// Backend TLS for one session (control + data).
#[derive(Clone)]
pub struct SessionConnector {
    /// Control connections connect through it; data connections handshake
    /// with its config (`connector.config()`) on rustls's unbuffered API
    /// (`stream::utls`).
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
    /// What data connections offer to resume (shared with `connector`).
    pub store: Arc<SessionStore>,
    /// Only TLS 1.2 was offered (preferred for resumption).
    pub tls12_only: bool,
}

/// True when a failed client handshake reads as "the server does not speak
/// the versions offered" (a TLS 1.3-only server answering a TLS 1.2-only
/// hello), as opposed to a certificate or network failure.
pub(crate) fn is_version_refusal(e: &std::io::Error) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        Some(
            rustls::Error::AlertReceived(A::ProtocolVersion | A::HandshakeFailure)
                | rustls::Error::PeerIncompatible(_)
        )
    )
}

/// True when a finished handshake resumed an earlier session.
pub(crate) fn was_resumed(kind: Option<HandshakeKind>) -> bool {
    matches!(kind, Some(HandshakeKind::Resumed))
}

/// Protocol version name for logs.
pub(crate) fn version_name(v: Option<rustls::ProtocolVersion>) -> &'static str {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(_) => "other",
        None => "none",
    }
}
