//! `ftpsgate check --print`: the configuration as one YAML document that
//! `check` accepts again.
//!
//! Resolution is what a reader needs to see the policy in one place: the
//! `listeners`, `backends` and `access` of every included file are appended to
//! the top file's (in load order, as the build does), `include` is dropped, and
//! every relative file path (`cert`, `key`, `ca`, `sni[].cert/key`,
//! `client_auth.ca/crl`, a backend's `cert`/`key`, `transfer_log.path`, `auth`
//! files, `backend_login.password_file`) is made absolute against the directory
//! of the file that named it, so the output means the same wherever it is saved. Values stay as
//! written; defaults are not spelled out (policies/example.yaml lists them).
//!
//! Only called for a configuration that already loaded without errors.

use std::path::Path;

use super::include::{self, Part};
use super::raw::{RawBackend, RawConfig, RawListener};
use super::{syntax_error, ConfigError, ConfigErrors};

/// The resolved YAML of the configuration whose top file is `path`.
pub(crate) fn resolved(path: &Path) -> Result<String, ConfigErrors> {
    let source = path.display().to_string();
    let failed = |message: String| {
        ConfigErrors(vec![ConfigError {
            path: source.clone(),
            line: None,
            column: None,
            key: None,
            message,
        }])
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| failed(format!("cannot read config file: {e}")))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let base_dir = std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf());
    let raw: RawConfig = serde_saphyr::from_str_with_options(&text, super::read_options())
        .map_err(|e| ConfigErrors(vec![syntax_error(&e, &source)]))?;
    let tree = include::gather(raw, &text, &base_dir, Some(path)).map_err(ConfigErrors)?;
    let mut top = tree.top;
    let (mut listeners, mut backends, mut access) = (Vec::new(), Vec::new(), Vec::new());
    for part in tree.parts {
        let Part {
            base_dir,
            listeners: l,
            backends: b,
            access: a,
            ..
        } = part;
        listeners.extend(l.into_iter().map(|l| listener_paths(l, &base_dir)));
        backends.extend(b.into_iter().map(|b| backend_paths(b, &base_dir)));
        access.extend(a);
    }
    top.listeners = (!listeners.is_empty()).then_some(listeners);
    top.backends = (!backends.is_empty()).then_some(backends);
    top.access = (!access.is_empty()).then_some(access);
    top.include = None;
    if let Some(log) = top.transfer_log.as_mut() {
        absolute(&mut log.path, &base_dir);
    }
    for p in top
        .auth
        .iter_mut()
        .flat_map(|a| a.providers.iter_mut().flatten())
    {
        absolute(&mut p.passwd_file, &base_dir);
        if let Some(ldap) = p.ldap.as_mut() {
            absolute(&mut ldap.ca, &base_dir);
            if let Some(search) = ldap.search.as_mut() {
                absolute(&mut search.bind_password_file, &base_dir);
            }
        }
    }
    let tunnel_tls = top
        .tunnels
        .iter_mut()
        .flatten()
        .filter_map(|t| t.tls.as_mut());
    let connect_tls = top
        .connect
        .iter_mut()
        .flatten()
        .filter_map(|c| c.tls.as_mut());
    for tls in tunnel_tls.chain(connect_tls) {
        for p in [&mut tls.cert, &mut tls.key, &mut tls.client_ca, &mut tls.ca] {
            absolute(p, &base_dir);
        }
    }
    serde_saphyr::to_string(&top).map_err(|e| failed(format!("cannot render YAML: {e}")))
}

fn listener_paths(mut l: RawListener, dir: &Path) -> RawListener {
    if let Some(tls) = l.tls.as_mut() {
        absolute(&mut tls.cert, dir);
        absolute(&mut tls.key, dir);
        for sni in tls.sni.iter_mut().flatten() {
            absolute(&mut sni.cert, dir);
            absolute(&mut sni.key, dir);
        }
        if let Some(ca) = tls.client_auth.as_mut() {
            absolute(&mut ca.ca, dir);
            for crl in ca.crl.iter_mut().flatten() {
                let mut c = Some(std::mem::take(crl));
                absolute(&mut c, dir);
                *crl = c.unwrap_or_default();
            }
        }
    }
    for r in l.routes.iter_mut().flatten() {
        if let Some(login) = r.backend_login.as_mut() {
            absolute(&mut login.password_file, dir);
        }
    }
    l
}

fn backend_paths(mut b: RawBackend, dir: &Path) -> RawBackend {
    if let Some(tls) = b.tls.as_mut() {
        absolute(&mut tls.ca, dir);
        absolute(&mut tls.cert, dir);
        absolute(&mut tls.key, dir);
    }
    b
}

/// `written` (a relative path as the build resolves it) joined to `dir`.
fn absolute(written: &mut Option<String>, dir: &Path) {
    if let Some(w) = written.as_mut() {
        if !w.is_empty() && Path::new(w.as_str()).is_relative() {
            *w = dir.join(w.as_str()).display().to_string();
        }
    }
}
