//! The `ldap` provider: a simple bind over TLS with the user's password.
//!
//! `ldaps://` URLs speak TLS from the first byte, `ldap://` URLs always
//! upgrade with StartTLS before the bind: a password never crosses in clear.
//! The server certificate is checked against `ca` (required) with
//! the gateway's own rustls + ring stack (ldap3's `tls-rustls-ring`).
//!
//! Two ways to find the user's entry: a DN template (`user_dn`, `{user}`
//! replaced by the DN-escaped name), or a search (`search.filter`, `{user}`
//! replaced by the filter-escaped name) under `search.base` after a bind as
//! the service account `bind_dn`. An unknown user found by no search still
//! costs a bind (to a DN that does not exist) so that the answer takes as
//! long as a wrong password's.
//!
//! Result codes: `invalidCredentials` (49) or no entry → bad credentials;
//! anything else (connection, TLS, a refused service bind, more than one
//! entry) → unavailable.

use std::sync::Arc;

use ldap3::{LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::{AuthFailure, Secret};
use crate::config::{LdapAuth, LdapLookup};

/// LDAP result code `invalidCredentials`.
const INVALID_CREDENTIALS: u32 = 49;

/// Binds as `user` with `password`; `Ok` on success.
pub(super) async fn authenticate(
    cfg: &LdapAuth,
    user: &str,
    password: &Secret,
) -> Result<(), AuthFailure> {
    // An empty password is an unauthenticated bind (RFC 4513 §5.1.2), which
    // servers answer with success: never send one.
    let Some(pw) = std::str::from_utf8(&password.0)
        .ok()
        .filter(|p| !p.is_empty())
    else {
        return Err(AuthFailure::BadCredentials);
    };
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        AuthFailure::Unavailable(format!("ldap {}: {what}: {e}", cfg.url))
    };
    let tls = client_config(cfg).map_err(|e| unavailable("tls", &e))?;
    let settings = LdapConnSettings::new()
        .set_conn_timeout(cfg.timeout)
        .set_starttls(cfg.url.starts_with("ldap://"))
        .set_config(tls);
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &cfg.url)
        .await
        .map_err(|e| unavailable("connect", &e))?;
    ldap3::drive!(conn);
    ldap.with_timeout(cfg.timeout);
    let dn = match &cfg.lookup {
        LdapLookup::UserDn(template) => template.replace("{user}", &ldap3::dn_escape(user)),
        LdapLookup::Search {
            base,
            filter,
            bind_dn,
            bind_password,
            ..
        } => {
            let service_pw = std::str::from_utf8(&bind_password.0).unwrap_or_default();
            let r = ldap
                .simple_bind(bind_dn, service_pw)
                .await
                .map_err(|e| unavailable("service bind", &e))?;
            if r.rc != 0 {
                return Err(unavailable("service bind", &r));
            }
            let filter = filter.replace("{user}", &ldap3::ldap_escape(user));
            ldap.with_timeout(cfg.timeout);
            let (entries, _) = ldap
                .search(base, Scope::Subtree, &filter, vec!["1.1"])
                .await
                .and_then(|r| r.success())
                .map_err(|e| unavailable("search", &e))?;
            match entries.len() {
                1 => entries
                    .into_iter()
                    .next()
                    .map(|e| SearchEntry::construct(e).dn)
                    .unwrap_or_default(),
                // No such user: bind anyway (equal timing), to a DN no
                // entry has, and answer as for a wrong password.
                0 => format!("cn=ftpsgate-no-such-user,{base}"),
                n => {
                    return Err(AuthFailure::Unavailable(format!(
                        "ldap {}: the search for one user found {n} entries",
                        cfg.url
                    )))
                }
            }
        }
    };
    ldap.with_timeout(cfg.timeout);
    let r = ldap
        .simple_bind(&dn, pw)
        .await
        .map_err(|e| unavailable("bind", &e))?;
    let _ = ldap.unbind().await;
    match r.rc {
        0 if !dn.starts_with("cn=ftpsgate-no-such-user,") => Ok(()),
        0 | INVALID_CREDENTIALS => Err(AuthFailure::BadCredentials),
        _ => Err(unavailable("bind", &r)),
    }
}

/// rustls client config trusting the CAs in `ca` only.
fn client_config(cfg: &LdapAuth) -> Result<Arc<rustls::ClientConfig>, String> {
    let ca = &cfg.ca;
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", ca.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("{}: no usable CA certificate", ca.display()));
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
