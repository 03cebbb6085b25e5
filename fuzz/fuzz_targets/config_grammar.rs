//! Structure-aware `Config::from_yaml_str`: the fuzzer's bytes choose a document
//! from a small grammar of the real keys (listeners, backends, passive,
//! advertise, routes, access, limits, …) with values drawn from per-key lists of
//! good, borderline and bad scalars (or any short string), written as block or
//! flow YAML. Most documents get past serde's syntax and unknown-key layer, so
//! the semantic build (`build.rs`), the include walker and the line map are
//! what is exercised. Same invariants as the `config` target.
#![no_main]

use arbitrary::{Result, Unstructured};
use ftpsgate::config::Config;
use ftpsgate_fuzz::{check_config, config_dir};
use libfuzzer_sys::fuzz_target;

/// The shape of a value in the config file.
enum Kind {
    Map(&'static [(&'static str, Kind)]),
    List(&'static Kind),
    /// One of several shapes (a scalar or a list, `advertise` and `pin_sha256`).
    Either(&'static [Kind]),
    Scalar(&'static [&'static str]),
}

use Kind::{Either, List, Map, Scalar};

const NAME: Kind = Scalar(&["edge", "legacy", "b2", "inc", "srv-b", "", " ", "edge2"]);
const BIND: Kind = Scalar(&[
    "127.0.0.1:2021",
    "127.0.0.1:2022",
    "0.0.0.0:21",
    "[::1]:2021",
    "[::]:21",
    "127.0.0.1:0",
    "127.0.0.1:50000",
    "127.0.0.1:9464",
    "127.0.0.1",
    "1.2.3.4:65536",
    ":21",
]);
const IP: Kind = Scalar(&[
    "127.0.0.1",
    "0.0.0.0",
    "::",
    "::1",
    "203.0.113.10",
    "10.0.0.1",
    "fe80::1%eth0",
    "256.0.0.1",
]);
const CIDR: Kind = Scalar(&[
    "10.0.0.0/8",
    "127.0.0.1/32",
    "::1/128",
    "0.0.0.0/0",
    "::/0",
    "10.1.2.3/8",
    "192.168.0.1",
    "::ffff:10.0.0.0/104",
    "10.0.0.0/33",
    "garbage",
]);
const PORTS: Kind = Scalar(&[
    "50000-50099",
    "50050-50150",
    "1",
    "65535",
    "0",
    "5000-400",
    "1-65535",
    "2021",
    "2021-2021",
    "50000-",
    "-1",
    "9464",
    "70000",
]);
const DURATION: Kind = Scalar(&[
    "30s",
    "500ms",
    "5m",
    "1h",
    "0",
    "0s",
    "10",
    "1.5s",
    "99999999999999999999h",
    "18446744073709551615s",
    "1d",
    "-1s",
    "s",
    "1000000h",
]);
const BOOL: Kind = Scalar(&["true", "false", "yes", "TRUE", "1", ""]);
const COUNT: Kind = Scalar(&["1", "5", "0", "10000", "18446744073709551616", "-3", "1e3"]);
const MODE: Kind = Scalar(&["explicit", "implicit", "none", "Explicit", "tls"]);
const VERSION: Kind = Scalar(&["1.2", "1.3", "1.1", "1.20", "2"]);
const FILE: Kind = Scalar(&[
    "cert.pem",
    "key.pem",
    "ca.pem",
    "missing.pem",
    "logs",
    "",
    "/nonexistent/x.pem",
    "./cert.pem",
    "logs/../cert.pem",
]);
const LOG_PATH: Kind = Scalar(&["logs/xferlog", "xferlog", "logs", "missing/xferlog", ""]);
const INCLUDE: Kind = Scalar(&[
    "inc.yaml",
    "nested.yaml",
    "self.yaml",
    "missing.yaml",
    "",
    "logs",
    "cert.pem",
]);
const HOST_PORT: Kind = Scalar(&[
    "127.0.0.1:2120",
    "[::1]:2120",
    "ftp.example.com:21",
    "ftp_internal:21",
    "300.1.1.1:21",
    "host:0",
    "host",
    "[::1:21",
    "-bad-:21",
    "a..b:21",
]);
const SERVER_NAME: Kind = Scalar(&["127.0.0.1", "ftp.example.com", "bad name", "", "a.-b"]);
const PIN: Kind = Scalar(&[
    "0000000000000000000000000000000000000000000000000000000000000000",
    "ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89",
    "abc", "zz00000000000000000000000000000000000000000000000000000000000000",
    "ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé",
]);
const PROTECTION: Kind = Scalar(&["private", "clear", "safe"]);
const BALANCE: Kind = Scalar(&["round-robin", "least-connections", "random"]);
const VERB: Kind = Scalar(&[
    "STOR", "stor", "MKD", "XMKD", "USER", "RETR", "ST", "STORE", "S1OR", "DELE",
]);
const USER: Kind = Scalar(&[
    "ro-*", "alice", "*", "?", "a*b?c", "", "al\tice", "**", "é*",
]);
const SNI_NAME: Kind = Scalar(&[
    "ftp.example.com",
    "FTP.example.com.",
    "*.example.com",
    "10.0.0.1",
    "",
]);
const BANDWIDTH: Kind = Scalar(&[
    "10MiB",
    "500K",
    "1048576",
    "0",
    "1G",
    "18446744073709551615GiB",
    "10 MiB",
    "K",
]);
const LOG_FORMAT: Kind = Scalar(&["xferlog", "json", "csv"]);
const ON_ERROR: Kind = Scalar(&["fail", "warn", "ignore", "log"]);
const TABLE: Kind = Scalar(&["ftpsgate", "inet ftpsgate", "", "a b"]);
const DATA_MODE: Kind = Scalar(&["passive", "active", "auto", "extended"]);
const PROXY_VERSION: Kind = Scalar(&["v1", "v2", "v3", "2", "V2"]);

const ACCESS_RULE: Kind = Map(&[("allow", List(&CIDR)), ("deny", List(&CIDR))]);
const SNI: Kind = Map(&[("names", List(&SNI_NAME)), ("cert", FILE), ("key", FILE)]);
const LISTENER_TLS: Kind = Map(&[
    ("mode", MODE),
    ("cert", FILE),
    ("key", FILE),
    ("require", BOOL),
    ("require_data_reuse", BOOL),
    ("min_version", VERSION),
    ("allow_ccc", BOOL),
    ("allow_clear_data", BOOL),
    ("sni", List(&SNI)),
]);
const ADVERTISE_RULE: Kind = Map(&[("networks", List(&CIDR)), ("address", IP), ("ports", PORTS)]);
const NFTABLES: Kind = Map(&[
    ("table", TABLE),
    ("set", TABLE),
    ("set6", TABLE),
    ("on_error", ON_ERROR),
]);
const PASSIVE: Kind = Map(&[
    ("nftables", NFTABLES),
    ("ports", PORTS),
    ("bind", IP),
    ("advertise", Either(&[IP, List(&ADVERTISE_RULE)])),
]);
const ACTIVE: Kind = Map(&[("enabled", BOOL), ("ports", PORTS)]);
const LISTENER_LIMITS: Kind = Map(&[
    ("max_sessions", COUNT),
    ("max_sessions_per_ip", COUNT),
    ("bandwidth", BANDWIDTH),
]);
const COMMANDS: Kind = Map(&[("allow", List(&VERB)), ("deny", List(&VERB))]);
const ROUTE: Kind = Map(&[
    ("user", USER),
    ("backends", List(&NAME)),
    ("balance", BALANCE),
    ("commands", COMMANDS),
]);
const PROXY_PROTOCOL: Kind = Map(&[("from", List(&CIDR)), ("timeout", DURATION)]);
const LISTENER: Kind = Map(&[
    ("name", NAME),
    ("bind", BIND),
    ("tls", LISTENER_TLS),
    ("passive", PASSIVE),
    ("active", ACTIVE),
    ("backend", NAME),
    ("access", List(&ACCESS_RULE)),
    ("limits", LISTENER_LIMITS),
    ("user_at_backend", BOOL),
    ("routes", List(&ROUTE)),
    ("proxy_protocol", PROXY_PROTOCOL),
]);
const BACKEND_TLS: Kind = Map(&[
    ("mode", MODE),
    ("ca", FILE),
    ("pin_sha256", Either(&[PIN, List(&PIN)])),
    ("verify", BOOL),
    ("server_name", SERVER_NAME),
    ("min_version", VERSION),
    ("max_version", VERSION),
    ("data_protection", PROTECTION),
]);
const HEALTH_CHECK: Kind = Map(&[("interval", DURATION), ("timeout", DURATION)]);
const BACKEND: Kind = Map(&[
    ("name", NAME),
    ("address", HOST_PORT),
    ("tls", BACKEND_TLS),
    ("health_check", HEALTH_CHECK),
    ("data_mode", DATA_MODE),
    ("keepalive_noop", DURATION),
    ("send_proxy", PROXY_VERSION),
]);
const TIMEOUTS: Kind = Map(&[
    ("connect", DURATION),
    ("login", DURATION),
    ("idle", DURATION),
    ("pinhole", DURATION),
    ("data_idle", DURATION),
]);
const FAILED_LOGINS: Kind = Map(&[("max", COUNT), ("window", DURATION), ("cooldown", DURATION)]);
const LIMITS: Kind = Map(&[
    ("max_sessions", COUNT),
    ("max_sessions_per_ip", COUNT),
    ("failed_logins", FAILED_LOGINS),
]);
const TOP: Kind = Map(&[
    ("listeners", List(&LISTENER)),
    ("backends", List(&BACKEND)),
    ("timeouts", TIMEOUTS),
    ("metrics", Map(&[("bind", BIND)])),
    (
        "transfer_log",
        Map(&[("path", LOG_PATH), ("format", LOG_FORMAT)]),
    ),
    ("include", List(&INCLUDE)),
    ("access", List(&ACCESS_RULE)),
    ("limits", LIMITS),
    ("shutdown", Map(&[("grace", DURATION)])),
    ("reload", Map(&[("watch", BOOL), ("interval", DURATION)])),
]);

/// A generated document, before it is written as text.
enum Value {
    Map(Vec<(String, Value)>),
    List(Vec<Value>),
    Scalar(String),
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(doc) = generate(&mut u, &TOP, 0) else {
        return;
    };
    let flow_depth = u.int_in_range(0..=4u8).unwrap_or(4);
    let mut yaml = String::new();
    write_block(&doc, 0, flow_depth, &mut yaml);
    check_config(&Config::from_yaml_str(&yaml, config_dir()));
});

fn generate(u: &mut Unstructured<'_>, kind: &Kind, depth: usize) -> Result<Value> {
    Ok(match kind {
        Map(keys) => {
            let mut entries = Vec::new();
            for (key, child) in keys.iter() {
                // About half the keys, more of them near the top.
                if u.ratio(if depth < 2 { 3u8 } else { 1 }, 4)? {
                    entries.push((key.to_string(), generate(u, child, depth + 1)?));
                }
            }
            // Now and then a duplicate or unknown key, or a different order.
            match u.int_in_range(0..=15u8)? {
                0 if !entries.is_empty() => {
                    let i = u.choose_index(entries.len())?;
                    let key = entries[i].0.clone();
                    entries.push((key, Value::Scalar("dup".into())));
                }
                1 => entries.push(("unknown_key".into(), Value::Scalar("x".into()))),
                2 if entries.len() > 1 => entries.reverse(),
                _ => {}
            }
            Value::Map(entries)
        }
        List(item) => {
            let n = u.int_in_range(0..=if depth < 2 { 3u8 } else { 2 })?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(generate(u, item, depth + 1)?);
            }
            Value::List(items)
        }
        Either(kinds) => {
            let i = u.choose_index(kinds.len())?;
            generate(u, &kinds[i], depth)?
        }
        Scalar(choices) => {
            if u.ratio(1u8, 8)? {
                // Any short string, for values no list foresaw.
                let len = u.int_in_range(0..=12u8)?;
                let mut s = String::new();
                for _ in 0..len {
                    s.push(char::from(u.int_in_range(0x20..=0x7eu8)?));
                }
                if u.ratio(1u8, 4)? {
                    s.push(u.arbitrary::<char>()?);
                }
                Value::Scalar(s)
            } else {
                Value::Scalar(choices[u.choose_index(choices.len())?].to_string())
            }
        }
    })
}

/// Block style down to `flow_depth` levels, flow style (`{…}`, `[…]`) below.
/// Scalars are double-quoted with YAML escapes, except plain-safe ones, which
/// are sometimes written bare to exercise serde-saphyr's scalar handling.
fn write_block(v: &Value, indent: usize, flow_depth: u8, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Map(entries) if entries.is_empty() => out.push_str("{}\n"),
        Value::List(items) if items.is_empty() => out.push_str("[]\n"),
        Value::Scalar(s) => {
            write_scalar(s, out);
            out.push('\n');
        }
        _ if flow_depth == 0 => {
            write_flow(v, out);
            out.push('\n');
        }
        Value::Map(entries) => {
            for (i, (k, child)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&pad);
                }
                out.push_str(k);
                out.push(':');
                match child {
                    Value::Map(e) if !e.is_empty() && flow_depth > 1 => {
                        out.push('\n');
                        out.push_str(&" ".repeat(indent + 2));
                        write_block(child, indent + 2, flow_depth - 1, out);
                    }
                    Value::List(l) if !l.is_empty() && flow_depth > 1 => {
                        out.push('\n');
                        out.push_str(&" ".repeat(indent + 2));
                        write_block(child, indent + 2, flow_depth - 1, out);
                    }
                    _ => {
                        out.push(' ');
                        write_block(child, indent + 2, flow_depth.saturating_sub(1), out);
                    }
                }
            }
        }
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&pad);
                }
                out.push_str("- ");
                write_block(item, indent + 2, flow_depth.saturating_sub(1), out);
            }
        }
    }
}

fn write_flow(v: &Value, out: &mut String) {
    match v {
        Value::Scalar(s) => write_scalar(s, out),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_flow(item, out);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, child)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push_str(": ");
                write_flow(child, out);
            }
            out.push('}');
        }
    }
}

fn write_scalar(s: &str, out: &mut String) {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        && s.len() % 2 == 0;
    if plain {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
}
