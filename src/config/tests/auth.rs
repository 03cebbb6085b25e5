//! `auth.providers` and the routes' `auth`, `provider`, `backend_login`.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::auth::passwd;
use crate::control::Secret;

/// A config dir with a password file (one argon2id user) and two secrets
/// files, `svc.secret` (0600) and `open.secret` (0644).
fn auth_dir() -> tempfile::TempDir {
    let dir = dir_with(&["ldap-ca.pem"]);
    let hash = passwd::hash(&Secret(b"pw".to_vec())).unwrap();
    std::fs::write(dir.path().join("passwd"), format!("alice:{hash}\n")).unwrap();
    for (name, mode) in [("svc.secret", 0o600), ("open.secret", 0o644)] {
        let p = dir.path().join(name);
        std::fs::write(&p, "svc-Pw\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    dir
}

fn with_routes(routes: &str, auth: &str) -> String {
    format!("{}{auth}", minimal(&format!("    routes:\n{routes}"), ""))
}

const PROVIDERS: &str = "auth:
  providers:
    - { name: local, passwd_file: passwd }
    - name: corp
      ldap: { url: \"ldaps://ldap.example.org\", ca: ldap-ca.pem, user_dn: \"uid={user},dc=example,dc=org\", timeout: 3s }
";

#[test]
fn gateway_routes_take_providers_and_mapped_logins() {
    let dir = auth_dir();
    let yaml = with_routes(
        "      - { user: alice, backends: [legacy], auth: gateway, provider: local, backend_login: { user: svc, password_file: svc.secret } }
      - { user: \"*\", backends: [legacy], auth: gateway, provider: corp }
      - { user: old, backends: [legacy], auth: backend }
",
        PROVIDERS,
    );
    let c = parse_ok(&yaml, dir.path());
    assert_eq!(c.auth.len(), 2);
    let routes = &c.listeners[0].routes;
    let RouteAuth::Gateway {
        provider,
        backend_login,
    } = &routes[0].auth
    else {
        panic!("route 0: {:?}", routes[0].auth);
    };
    assert_eq!(provider.name, "local");
    let login = backend_login.as_ref().unwrap();
    assert_eq!(
        (login.user.as_str(), login.password.0.as_slice()),
        ("svc", &b"svc-Pw"[..])
    );
    // Secrets never show in a Debug of the config.
    assert!(!format!("{c:?}").contains("svc-Pw"));
    match &routes[1].auth {
        RouteAuth::Gateway {
            provider,
            backend_login: None,
        } => match &provider.kind {
            AuthKind::Ldap(l) => {
                assert_eq!(l.url, "ldaps://ldap.example.org");
                assert_eq!(l.timeout, std::time::Duration::from_secs(3));
                assert!(matches!(&l.lookup, LdapLookup::UserDn(t) if t.contains("{user}")));
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(routes[2].auth, RouteAuth::Backend);
}

#[test]
fn one_provider_needs_no_name_on_the_route() {
    let dir = auth_dir();
    let yaml = with_routes(
        "      - { user: \"*\", backends: [legacy], auth: gateway }\n",
        "auth:\n  providers:\n    - { name: local, passwd_file: passwd }\n",
    );
    let c = parse_ok(&yaml, dir.path());
    assert!(
        matches!(&c.listeners[0].routes[0].auth, RouteAuth::Gateway { provider, .. } if provider.name == "local")
    );
}

#[test]
fn auth_errors_have_key_paths_and_lines() {
    let dir = auth_dir();
    std::fs::write(dir.path().join("bad-passwd"), "alice:plain\nbob\n").unwrap();
    let yaml = with_routes(
        "      - { user: a, backends: [legacy], auth: gateway, provider: nope }
      - { user: b, backends: [legacy], auth: maybe }
      - { user: c, backends: [legacy], provider: local }
      - { user: d, backends: [legacy], auth: gateway }
      - { user: e, backends: [legacy], auth: gateway, provider: local, backend_login: { user: svc, password_file: open.secret } }
",
        "auth:
  providers:
    - { name: local, passwd_file: bad-passwd }
    - { name: both, passwd_file: passwd, ldap: { url: \"ldaps://x\", ca: ldap-ca.pem, user_dn: \"uid={user}\" } }
    - name: clear
      ldap: { url: \"ldapi:///run/x\", ca: ldap-ca.pem, user_dn: \"uid=fixed\" }
    - name: srch
      ldap: { url: \"ldap://x:389\", ca: ldap-ca.pem, search: { base: \"dc=x\", filter: \"uid={user}\", bind_dn: \"cn=a\", bind_password_file: open.secret } }
",
    );
    let errs = errors(&yaml, dir.path());
    let expect = [
        "auth.providers[0].passwd_file: bad-passwd line 1: user \"alice\": unknown hash",
        "auth.providers[0].passwd_file: bad-passwd line 2: expected USER:HASH",
        "auth.providers[1]: a provider has passwd_file or ldap, not both",
        "auth.providers[2].ldap.url: \"ldapi:///run/x\" is not an ldaps:// or ldap:// URL",
        "auth.providers[2].ldap.user_dn: a DN template needs a {user} placeholder",
        "auth.providers[3].ldap.search.filter: \"uid={user}\" is not an LDAP filter in parentheses",
        "auth.providers[3].ldap.search.bind_password_file: secrets file open.secret is readable by group or others (mode 644); chmod 600 it",
        "listeners[0].routes[0].provider: auth provider \"nope\" is not defined",
        "listeners[0].routes[1].auth: \"maybe\" is not gateway or backend",
        "listeners[0].routes[2].provider: only used with auth: gateway",
        "listeners[0].routes[3].provider: is required: several auth.providers are defined",
        "listeners[0].routes[4].backend_login.password_file: secrets file open.secret is readable by group or others (mode 644); chmod 600 it",
    ];
    for e in expect {
        assert!(
            errs.iter().any(|got| got.starts_with(e)),
            "missing {e:?} in:\n{}",
            errs.join("\n")
        );
    }
    // Every error is located on its line.
    let located = Config::from_yaml_str(&yaml, dir.path()).unwrap_err();
    assert!(located.0.iter().all(|e| e.line.is_some()), "{located:?}");
    // No secret in any message.
    assert!(!errs.iter().any(|e| e.contains("svc-Pw")));
}

#[test]
fn gateway_auth_without_providers_is_refused() {
    let dir = auth_dir();
    let yaml = with_routes(
        "      - { user: a, backends: [legacy], auth: gateway }\n",
        "",
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        vec!["listeners[0].routes[0].auth: auth: gateway needs a provider in auth.providers"]
    );
}

#[test]
fn auth_files_name_every_file_gateway_auth_reads() {
    let dir = auth_dir();
    let yaml = with_routes(
        "      - { user: alice, backends: [legacy], auth: gateway, provider: local, backend_login: { user: svc, password_file: svc.secret } }
      - { user: bob, backends: [legacy], auth: gateway, provider: local, backend_login: { user: svc, password_file: svc.secret } }
      - { user: \"*\", backends: [legacy], auth: gateway, provider: corp }
",
        "auth:
  providers:
    - { name: local, passwd_file: passwd }
    - name: corp
      ldap: { url: \"ldaps://x\", ca: ldap-ca.pem, search: { base: \"dc=x\", filter: \"(uid={user})\", bind_dn: \"cn=a\", bind_password_file: svc.secret } }
",
    );
    let c = parse_ok(&yaml, dir.path());
    let names: Vec<_> = c
        .auth_files()
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
        .collect();
    // Each once, in config order.
    assert_eq!(names, ["passwd", "ldap-ca.pem", "svc.secret"]);
    assert!(c.auth_files().iter().all(|p| p.is_absolute()));
    // A password file group or others may read is a warning (not an error).
    let passwd = dir.path().join("passwd");
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o640)).unwrap();
    let w = c.key_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("auth.providers[0].passwd_file: password file ")
            && w[0].contains("readable by group or others (mode 640)"),
        "{w:?}"
    );
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(c.key_warnings().is_empty());
}
