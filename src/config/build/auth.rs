//! `auth.providers` (password file, LDAP) and the per-route `auth`,
//! `provider` and `backend_login` keys.
//!
//! Files are read here, once per build (so `check` proves them and a reload
//! picks up changes): the password file is parsed (every bad line reported
//! with its number), and secrets files (`backend_login.password_file`,
//! `ldap.search.bind_password_file`) are read only when neither group nor
//! others may read them. Their content never reaches an error message.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::values::{existing_file, parse_name};
use super::{Builder, Reported};
use crate::auth::{passwd, Secret};
use crate::config::duration;
use crate::config::raw::{RawAuth, RawAuthProvider, RawBackendLogin, RawLdap, RawRoute};
use crate::config::typed::{AuthKind, AuthProvider, BackendLogin, LdapAuth, LdapLookup, RouteAuth};

/// Default of `auth.providers[].ldap.timeout`.
const DEFAULT_LDAP_TIMEOUT: Duration = Duration::from_secs(5);

impl<'a> Builder<'a> {
    /// `auth.providers`: each with a unique `name` and exactly one of
    /// `passwd_file` or `ldap`. Returns the providers that built; `names`
    /// gets every name as written (routes are checked against those, so a
    /// provider with another error does not cascade).
    pub(super) fn auth(
        &mut self,
        raw: Option<&RawAuth>,
        names: &mut HashSet<String>,
    ) -> Result<Vec<Arc<AuthProvider>>, Reported> {
        let Some(list) = raw.and_then(|a| a.providers.as_deref()) else {
            return Ok(Vec::new());
        };
        let mut seen = std::collections::HashMap::new();
        let built: Vec<Result<Arc<AuthProvider>, Reported>> = list
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let p = format!("auth.providers[{i}]");
                if let Some(n) = r.name.as_deref() {
                    names.insert(n.to_owned());
                }
                self.provider(&p, r, &mut seen).map(Arc::new)
            })
            .collect();
        built.into_iter().collect()
    }

    fn provider(
        &mut self,
        p: &str,
        raw: &RawAuthProvider,
        seen: &mut std::collections::HashMap<String, Option<&'a str>>,
    ) -> Result<AuthProvider, Reported> {
        let name = self.unique_name(&format!("{p}.name"), raw.name.as_deref(), "provider", seen);
        let kind = match (&raw.passwd_file, &raw.ldap) {
            (Some(file), None) => {
                let fp = format!("{p}.passwd_file");
                self.passwd_file(&fp, file)
            }
            (None, Some(ldap)) => self.ldap(&format!("{p}.ldap"), ldap).map(AuthKind::Ldap),
            (Some(_), Some(_)) => {
                self.error(p, "a provider has passwd_file or ldap, not both");
                Err(Reported)
            }
            (None, None) => {
                self.error(p, "a provider needs passwd_file or ldap");
                Err(Reported)
            }
        };
        Ok(AuthProvider {
            name: name?,
            kind: kind?,
        })
    }

    /// Reads and parses the password file; each bad line is its own error.
    fn passwd_file(&mut self, p: &str, written: &str) -> Result<AuthKind, Reported> {
        let base = self.base_dir;
        let path = self.required(p, Some(written), |s| existing_file(base, s))?;
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                self.error(p, format!("cannot read {written}: {e}"));
                return Err(Reported);
            }
        };
        match passwd::parse(&text) {
            Ok(users) => {
                // Computed now, not on the first unknown user (equal timing).
                let _ = passwd::dummy_hash();
                Ok(AuthKind::PasswdFile { path, users })
            }
            Err(errors) => {
                for e in errors {
                    self.error(p, format!("{written} {e}"));
                }
                Err(Reported)
            }
        }
    }

    fn ldap(&mut self, p: &str, raw: &RawLdap) -> Result<LdapAuth, Reported> {
        let base = self.base_dir;
        let url = self.required(&format!("{p}.url"), raw.url.as_deref(), parse_ldap_url);
        let ca = self.required(&format!("{p}.ca"), raw.ca.as_deref(), |s| {
            existing_file(base, s)
        });
        let timeout = self
            .optional(
                &format!("{p}.timeout"),
                raw.timeout.as_deref(),
                duration::parse,
            )
            .map(|d| d.unwrap_or(DEFAULT_LDAP_TIMEOUT));
        let lookup = match (&raw.user_dn, &raw.search) {
            (Some(t), None) => self.required(&format!("{p}.user_dn"), Some(t.as_str()), |s| {
                with_placeholder(s, "a DN template").map(LdapLookup::UserDn)
            }),
            (None, Some(s)) => {
                let sp = format!("{p}.search");
                let base_dn = self.required(&format!("{sp}.base"), s.base.as_deref(), parse_name);
                let filter = self.required(&format!("{sp}.filter"), s.filter.as_deref(), |f| {
                    let f = with_placeholder(f, "a filter")?;
                    if f.starts_with('(') && f.ends_with(')') {
                        Ok(f)
                    } else {
                        Err(format!("{f:?} is not an LDAP filter in parentheses"))
                    }
                });
                let bind_dn =
                    self.required(&format!("{sp}.bind_dn"), s.bind_dn.as_deref(), parse_name);
                let bind_password = self.required(
                    &format!("{sp}.bind_password_file"),
                    s.bind_password_file.as_deref(),
                    |w| read_secret(base, w),
                );
                let (bind_password_file, bind_password) = bind_password?;
                Ok(LdapLookup::Search {
                    base: base_dn?,
                    filter: filter?,
                    bind_dn: bind_dn?,
                    bind_password,
                    bind_password_file,
                })
            }
            (Some(_), Some(_)) => {
                self.error(p, "user_dn and search cannot both be set; keep one");
                Err(Reported)
            }
            (None, None) => {
                self.error(p, "needs user_dn or search");
                Err(Reported)
            }
        };
        Ok(LdapAuth {
            url: url?,
            ca: ca?,
            lookup: lookup?,
            timeout: timeout?,
        })
    }

    /// `routes[j].auth`, `provider` and `backend_login`.
    pub(super) fn route_auth(&mut self, p: &str, raw: &RawRoute) -> Result<RouteAuth, Reported> {
        let gateway = match raw.auth.as_deref() {
            None | Some("backend") => false,
            Some("gateway") => true,
            Some(other) => {
                self.error(
                    &format!("{p}.auth"),
                    format!("\"{other}\" is not gateway or backend"),
                );
                return Err(Reported);
            }
        };
        if !gateway {
            for (key, given) in [
                ("provider", raw.provider.is_some()),
                ("backend_login", raw.backend_login.is_some()),
            ] {
                if given {
                    self.error(
                        &format!("{p}.{key}"),
                        "only used with auth: gateway (the backend checks this route's logins)",
                    );
                    return Err(Reported);
                }
            }
            return Ok(RouteAuth::Backend);
        }
        let provider = self.route_provider(p, raw.provider.as_deref());
        let backend_login = match raw.backend_login.as_ref() {
            None => Ok(None),
            Some(b) => self
                .backend_login(&format!("{p}.backend_login"), b)
                .map(Some),
        };
        Ok(RouteAuth::Gateway {
            provider: provider?,
            backend_login: backend_login?,
        })
    }

    fn route_provider(
        &mut self,
        p: &str,
        written: Option<&str>,
    ) -> Result<Arc<AuthProvider>, Reported> {
        let name = match written {
            Some(n) => n.to_owned(),
            None => match self.auth_names.len() {
                0 => {
                    self.error(
                        &format!("{p}.auth"),
                        "auth: gateway needs a provider in auth.providers",
                    );
                    return Err(Reported);
                }
                1 => self.auth_names.iter().next().cloned().unwrap_or_default(),
                _ => {
                    self.error(
                        &format!("{p}.provider"),
                        "is required: several auth.providers are defined",
                    );
                    return Err(Reported);
                }
            },
        };
        if let Some(found) = self.auth.iter().find(|a| a.name == name) {
            return Ok(found.clone());
        }
        if !self.auth_names.contains(&name) {
            self.error(
                &format!("{p}.provider"),
                format!("auth provider \"{name}\" is not defined"),
            );
        }
        // Defined but broken: its own error is already recorded.
        Err(Reported)
    }

    fn backend_login(&mut self, p: &str, raw: &RawBackendLogin) -> Result<BackendLogin, Reported> {
        let base = self.base_dir;
        let user = self.required(&format!("{p}.user"), raw.user.as_deref(), |s| {
            if s.is_empty() || s.chars().any(|c| c.is_control()) {
                Err("must be a non-empty name without control characters".to_string())
            } else {
                Ok(s.to_owned())
            }
        });
        let password = self.required(
            &format!("{p}.password_file"),
            raw.password_file.as_deref(),
            |w| read_secret(base, w),
        );
        let (password_file, password) = password?;
        Ok(BackendLogin {
            user: user?,
            password,
            password_file,
        })
    }
}

/// `ldaps://HOST[:PORT]` or `ldap://HOST[:PORT]` (StartTLS), nothing after.
fn parse_ldap_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("ldaps://")
        .or_else(|| s.strip_prefix("ldap://"))
        .ok_or_else(|| {
            format!(
                "\"{s}\" is not an ldaps:// or ldap:// URL (ldap:// always upgrades with StartTLS)"
            )
        })?;
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains('?') || host.contains('@') {
        return Err(format!("\"{s}\" must name a host and port only"));
    }
    Ok(format!("{}{host}", &s[..s.len() - rest.len()]))
}

/// `s` with a `{user}` placeholder.
fn with_placeholder(s: &str, what: &str) -> Result<String, String> {
    if s.contains("{user}") {
        Ok(s.to_owned())
    } else {
        Err(format!("{what} needs a {{user}} placeholder"))
    }
}

/// The resolved path and first line of a secrets file that only its owner
/// may read. The file's content never appears in an error.
fn read_secret(base: &Path, written: &str) -> Result<(PathBuf, Secret), String> {
    let path: PathBuf = existing_file(base, written)?;
    if let Some(mode) = crate::config::key_exposed(&path) {
        return Err(format!(
            "secrets file {written} is readable by group or others (mode {mode:03o}); chmod 600 it"
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {written}: {e}"))?;
    let line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(format!("secrets file {written} is empty"));
    }
    Ok((path, Secret(line.to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldap_urls_are_tls_only() {
        assert_eq!(
            parse_ldap_url("ldaps://ldap.example.org:636/"),
            Ok("ldaps://ldap.example.org:636".into())
        );
        assert!(parse_ldap_url("ldap://127.0.0.1:389").is_ok());
        assert!(parse_ldap_url("ldapi:///run/slapd.sock").is_err());
        assert!(parse_ldap_url("ldaps://h/dc=x?uid").is_err());
        assert!(parse_ldap_url("ldaps://").is_err());
    }
}
