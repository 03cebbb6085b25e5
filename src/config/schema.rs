//! Which keys each mapping of the YAML may hold, and the walk that reports every
//! key that is not one of them (and every repeated key) at once.
//!
//! serde's `deny_unknown_fields` stops at the first unknown key, so an operator
//! fixing a file would meet its mistakes one run at a time. Instead the located
//! [`Tree`] of each file is walked here before it is built: every unknown key comes
//! back with its position and, when a known key is close, "did you mean". The raw
//! mirror then ignores unknown keys, so semantic errors are still reported beside
//! them. [`KNOWN`] must list exactly the fields of `raw.rs`; a test checks each
//! entry against serde.
//!
//! Pure: no I/O.

use super::lines::{Node, Tree};
use super::ConfigError;

/// Mapping path (list indexes written `[]`) → the keys it may hold. A mapping whose
/// path is not listed holds no named keys at all (serde reports the wrong shape).
pub(crate) const KNOWN: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "listeners",
            "backends",
            "timeouts",
            "metrics",
            "transfer_log",
            "include",
            "access",
            "limits",
            "shutdown",
            "reload",
            "control",
            "auth",
            "tunnels",
            "connect",
        ],
    ),
    ("tunnels[]", &["name", "listen", "transport", "tls"]),
    ("tunnels[].tls", &["cert", "key", "client_ca"]),
    (
        "connect[]",
        &["edge", "server_name", "transport", "tls", "backends"],
    ),
    ("connect[].tls", &["cert", "key", "ca"]),
    ("connect[].backends[]", &["name", "address"]),
    ("control", &["socket", "mode", "owner", "group"]),
    ("auth", &["providers"]),
    ("auth.providers[]", &["name", "passwd_file", "ldap"]),
    (
        "auth.providers[].ldap",
        &["url", "ca", "user_dn", "search", "timeout"],
    ),
    (
        "auth.providers[].ldap.search",
        &["base", "filter", "bind_dn", "bind_password_file"],
    ),
    ("access[]", &["allow", "deny"]),
    (
        "limits",
        &[
            "max_sessions",
            "max_sessions_per_ip",
            "max_unauthenticated_per_ip",
            "connection_rate_per_ip",
            "failed_logins",
            "ipv6_prefix",
            "unsolicited_replies",
        ],
    ),
    ("limits.failed_logins", &["max", "window", "cooldown"]),
    ("shutdown", &["grace"]),
    ("reload", &["watch", "interval"]),
    ("metrics", &["bind"]),
    ("transfer_log", &["path", "format", "listings", "time"]),
    (
        "timeouts",
        &[
            "connect",
            "login",
            "idle",
            "pinhole",
            "data_idle",
            "control_write",
        ],
    ),
    (
        "listeners[]",
        &[
            "name",
            "bind",
            "tls",
            "passive",
            "active",
            "backend",
            "access",
            "limits",
            "user_at_backend",
            "routes",
            "proxy_protocol",
            "banner",
            "unavailable",
        ],
    ),
    (
        "listeners[].tls",
        &[
            "mode",
            "cert",
            "key",
            "require",
            "require_data_reuse",
            "min_version",
            "max_version",
            "allow_ccc",
            "allow_clear_data",
            "prefer_aes128",
            "sni",
            "data_reuse_scope",
            "client_auth",
        ],
    ),
    ("listeners[].tls.sni[]", &["names", "cert", "key"]),
    (
        "listeners[].tls.client_auth",
        &["ca", "mode", "crl", "identity", "require_user_match"],
    ),
    (
        "listeners[].passive",
        &["nftables", "ports", "bind", "advertise", "max_per_client"],
    ),
    (
        "listeners[].passive.nftables",
        &["table", "set", "set6", "on_error"],
    ),
    (
        "listeners[].passive.advertise[]",
        &["networks", "address", "ports"],
    ),
    ("listeners[].active", &["enabled", "ports"]),
    ("listeners[].access[]", &["allow", "deny"]),
    (
        "listeners[].limits",
        &["max_sessions", "max_sessions_per_ip", "bandwidth"],
    ),
    (
        "listeners[].routes[]",
        &[
            "user",
            "cert_identity",
            "backends",
            "balance",
            "commands",
            "auth",
            "provider",
            "backend_login",
        ],
    ),
    (
        "listeners[].routes[].backend_login",
        &["user", "password_file"],
    ),
    ("listeners[].routes[].commands", &["allow", "deny"]),
    ("listeners[].proxy_protocol", &["from", "timeout"]),
    (
        "backends[]",
        &[
            "name",
            "address",
            "tls",
            "health_check",
            "data_mode",
            "keepalive_noop",
            "send_proxy",
            "via",
        ],
    ),
    ("backends[].health_check", &["interval", "timeout"]),
    (
        "backends[].tls",
        &[
            "mode",
            "ca",
            "pin_sha256",
            "verify",
            "server_name",
            "min_version",
            "max_version",
            "data_protection",
            "cert",
            "key",
        ],
    ),
];

/// Every unknown and every repeated key of `tree`, in document order, located at
/// `SOURCE:LINE:COLUMN` of the key (`source` names the file as errors show it).
pub(crate) fn check(tree: &Tree, source: &str) -> Vec<ConfigError> {
    let mut out = Vec::new();
    walk(tree, "", "", source, &mut out);
    out
}

fn walk(node: &Tree, path: &str, shape: &str, source: &str, out: &mut Vec<ConfigError>) {
    match &node.value {
        Node::Scalar => {}
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(
                    item,
                    &format!("{path}[{i}]"),
                    &format!("{shape}[]"),
                    source,
                    out,
                );
            }
        }
        Node::Map(entries) => {
            let Some(known) = KNOWN.iter().find(|(s, _)| *s == shape).map(|(_, k)| *k) else {
                return;
            };
            let mut seen: Vec<(&str, u64)> = Vec::new();
            for (key, value) in entries {
                let name = key.value.as_str();
                let key_path = if path.is_empty() {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                };
                let at = |message: String| ConfigError {
                    path: format!(
                        "{source}:{}:{}",
                        key.referenced.line(),
                        key.referenced.column()
                    ),
                    line: None,
                    column: None,
                    key: Some(key_path.clone()),
                    message,
                };
                if let Some((_, first)) = seen.iter().find(|(k, _)| *k == name) {
                    out.push(at(format!(
                        "duplicate key `{name}` (first given on line {first}); a key may appear once"
                    )));
                    continue;
                }
                seen.push((name, key.referenced.line()));
                if !known.contains(&name) {
                    let hint = match suggestion(name, known) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!("expected one of {}", known.join(", ")),
                    };
                    out.push(at(format!("unknown field `{name}`, {hint}")));
                    continue;
                }
                let child_shape = if shape.is_empty() {
                    name.to_owned()
                } else {
                    format!("{shape}.{name}")
                };
                walk(value, &key_path, &child_shape, source, out);
            }
        }
    }
}

/// The known key closest to `name`, when it is close enough to be a typo: at most
/// a third of the longer name's characters differ (and at most 3).
fn suggestion<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let lowered = name.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .map(|k| (edit_distance(&lowered, k), *k))
        .filter(|(d, k)| {
            let longest = lowered.chars().count().max(k.chars().count());
            *d <= 3 && *d * 3 <= longest
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters (insert, delete, substitute).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A YAML document with `key: VALUE` in a mapping at `shape`
    /// (`listeners[].tls` → `listeners: [ { tls: { key: VALUE } } ]`).
    fn document_with(shape: &str, key: &str, value: &str) -> String {
        let mut doc = format!("{{ {key}: {value} }}");
        let mut rest = shape;
        while !rest.is_empty() {
            if let Some(stripped) = rest.strip_suffix("[]") {
                doc = format!("[ {doc} ]");
                rest = stripped;
                continue;
            }
            let (parent, last) = match rest.rfind('.') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => ("", rest),
            };
            doc = format!("{{ {last}: {doc} }}");
            rest = parent;
        }
        doc
    }

    #[test]
    fn every_known_key_is_a_field_of_the_raw_mirror() {
        // A value no raw field accepts: serde fails only if the key is a real
        // field (an ignored unknown key would parse), so each `KNOWN` entry is
        // proven to reach `raw.rs`. The other direction, a raw field missing
        // here, is caught by `example_lists_every_key` (the example uses every
        // key, and an unlisted one would be reported as unknown).
        for (shape, keys) in KNOWN {
            for key in *keys {
                let doc = document_with(shape, key, "[[[[{ x: 1 }]]]]");
                let parsed: Result<super::super::raw::RawConfig, _> = serde_saphyr::from_str(&doc);
                assert!(
                    parsed.is_err(),
                    "{shape}.{key} is not read by raw.rs: {doc}"
                );
            }
        }
    }

    #[test]
    fn example_lists_every_key() {
        let example = include_str!("../../policies/example.yaml");
        let mut missing = Vec::new();
        for (shape, keys) in KNOWN {
            for key in *keys {
                let written = example.lines().any(|l| {
                    let l = l.trim_start_matches([' ', '#', '-']).trim_start();
                    l.starts_with(&format!("{key}:"))
                        || l.contains(&format!("{{ {key}:"))
                        || l.contains(&format!(", {key}:"))
                });
                if !written {
                    missing.push(format!("{shape}.{key}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "policies/example.yaml lacks {missing:?}"
        );
    }

    #[test]
    fn unknown_and_repeated_keys_are_all_reported() {
        let yaml = "listeners:\n  - name: a\n    nme: b\n    name: c\nbakends: []\n";
        let Some(tree) = super::super::lines::tree(yaml) else {
            panic!("tree");
        };
        let found: Vec<String> = check(&tree, "f")
            .into_iter()
            .map(|e| format!("{} {}: {}", e.path, e.key.unwrap_or_default(), e.message))
            .collect();
        assert_eq!(
            found,
            [
                "f:3:5 listeners[0].nme: unknown field `nme`, did you mean `name`?",
                "f:4:5 listeners[0].name: duplicate key `name` (first given on line 2); a key may appear once",
                "f:5:1 bakends: unknown field `bakends`, did you mean `backends`?",
            ]
        );
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("advertize", "advertise"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("bakend", "backend"), 1);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggestion_only_for_typos() {
        let known = ["advertise", "ports", "bind", "nftables"];
        assert_eq!(suggestion("advertize", &known), Some("advertise"));
        assert_eq!(suggestion("port", &known), Some("ports"));
        assert_eq!(suggestion("colour", &known), None);
    }
}
