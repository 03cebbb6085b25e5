//! Authentication at the gateway (`auth.providers`, routes with
//! `auth: gateway`): checking a client's `USER`/`PASS` before any backend
//! connection exists.
//!
//! What goes here: the providers themselves — [`passwd`] (a password file of
//! argon2id/bcrypt hashes, and the edit behind `ftpsgate passwd`) and [`ldap`]
//! (simple bind over TLS) — and [`authenticate`], the one entry point the
//! session driver calls with a deadline. What does not: the protocol (the
//! pure `session::state` machine asks with `Action::Authenticate` and gets
//! `Input::Authenticated` back), the throttle (`policy`), the YAML (`config`).
//!
//! Passwords are [`Secret`]s: never logged, never in a `Debug`.

pub mod ldap;
pub mod passwd;

/// Passwords: `Debug` prints stars (the same type a parsed `PASS` carries).
pub use crate::control::Secret;

use std::time::Duration;

use crate::config::{AuthKind, AuthProvider};

/// Why a login was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// Unknown user or wrong password (the two are not told apart).
    #[error("bad credentials")]
    BadCredentials,
    /// The provider could not answer (LDAP down, TLS failure, timeout); the
    /// text is for the log only.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
}

/// Checks `user`'s `password` with `provider`, giving up after `limit`
/// (then [`AuthFailure::Unavailable`]). Password hashing runs on a blocking
/// thread; an empty password is refused by every provider.
pub async fn authenticate(
    provider: &AuthProvider,
    user: &str,
    password: &Secret,
    limit: Duration,
) -> Result<(), AuthFailure> {
    let work = async {
        match &provider.kind {
            AuthKind::PasswdFile { users, .. } => {
                let (users, user, password) = (users.clone(), user.to_owned(), password.clone());
                let ok = tokio::task::spawn_blocking(move || {
                    !password.0.is_empty() && passwd::verify(&users, &user, &password)
                })
                .await
                .map_err(|e| AuthFailure::Unavailable(format!("verifier task: {e}")))?;
                if ok {
                    Ok(())
                } else {
                    Err(AuthFailure::BadCredentials)
                }
            }
            AuthKind::Ldap(cfg) => ldap::authenticate(cfg, user, password).await,
        }
    };
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(AuthFailure::Unavailable(format!(
            "no answer within {limit:?}"
        ))),
    }
}
