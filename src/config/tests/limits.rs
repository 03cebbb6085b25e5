//! `timeouts`, `limits` (bandwidth), `metrics`, `transfer_log`, `health_check`
//! (`build/limits.rs`, `build/backends.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

#[test]
fn timeout_defaults_are_the_documented_ones() {
    let t = Timeouts::default();
    assert_eq!(t.connect, Duration::from_secs(10));
    assert_eq!(t.login, Duration::from_secs(60));
    assert_eq!(t.idle, Duration::from_secs(600));
    assert_eq!(t.pinhole, Duration::from_secs(30));
    assert_eq!(t.data_idle, Duration::from_secs(300));
}

#[test]
fn durations_in_every_accepted_form() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "")
        + "timeouts:\n  connect: \"30s\"\n  login: 5m\n  idle: 1h\n  pinhole: 500ms\n  data_idle: 45\n";
    let t = parse_ok(&yaml, dir.path()).timeouts;
    assert_eq!(
        t,
        Timeouts {
            connect: Duration::from_secs(30),
            login: Duration::from_secs(300),
            idle: Duration::from_secs(3600),
            pinhole: Duration::from_millis(500),
            data_idle: Duration::from_secs(45),
            control_write: Duration::from_secs(30),
        }
    );
}

#[test]
fn partial_timeouts_keep_other_defaults() {
    let dir = dir_with(&[]);
    let t = parse_ok(&(minimal("", "") + "timeouts:\n  idle: 2m\n"), dir.path()).timeouts;
    assert_eq!(
        t,
        Timeouts {
            idle: Duration::from_secs(120),
            ..Timeouts::default()
        }
    );
}

#[test]
fn bad_durations_are_reported_per_key() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "") + "timeouts:\n  connect: 10x\n  login: 0s\n  idle: 1.5m\n";
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "timeouts.connect: \"10x\" is not a duration (expected e.g. \"500ms\", \"30s\", \"5m\", \"1h\" or a number of seconds)",
            "timeouts.login: \"0s\" must be greater than zero",
            "timeouts.idle: \"1.5m\" is not a duration (expected e.g. \"500ms\", \"30s\", \"5m\", \"1h\" or a number of seconds)",
        ]
    );
}

#[test]
fn bandwidth_forms() {
    let dir = dir_with(&[]);
    for (written, bytes) in [
        ("1048576", 1_048_576u64),
        ("500K", 500_000),
        ("10M", 10_000_000),
        ("1G", 1_000_000_000),
        ("64KiB", 65_536),
        ("10MiB", 10_485_760),
        ("2GiB", 2_147_483_648),
    ] {
        let yaml = minimal("", "").replace(
            "    backend: legacy\n",
            &format!("    backend: legacy\n    limits: {{ bandwidth: \"{written}\" }}\n"),
        );
        let config = parse_ok(&yaml, dir.path());
        assert_eq!(
            config.listeners[0].limits.bandwidth,
            Some(bytes),
            "{written}"
        );
    }
    for bad in [
        "0",
        "0K",
        "10kb",
        "K",
        "99999999999999999999",
        "20000000000GiB",
    ] {
        let yaml = minimal("", "").replace(
            "    backend: legacy\n",
            &format!("    backend: legacy\n    limits: {{ bandwidth: \"{bad}\" }}\n"),
        );
        assert_eq!(errors(&yaml, dir.path()).len(), 1, "{bad}");
    }
}

#[test]
fn observability_sections_are_optional_and_off_by_default() {
    let dir = dir_with(&[]);
    let config = parse_ok(&minimal("", ""), dir.path());
    assert_eq!(config.metrics, None);
    assert_eq!(config.transfer_log, None);
    assert_eq!(config.backends[0].health_check, None);
}

#[test]
fn metrics_transfer_log_and_health_check_parse() {
    let dir = dir_with(&["logs/keep"]);
    let yaml = format!(
        "{}    health_check: {{ interval: 30s, timeout: 2s }}
metrics:
  bind: \"127.0.0.1:9464\"
transfer_log:
  path: logs/xferlog
  format: json
",
        minimal("", "")
    );
    let config = parse_ok(&yaml, dir.path());
    assert_eq!(
        config.metrics,
        Some(MetricsConfig {
            bind: SocketAddr::new(LOCALHOST, 9464)
        })
    );
    assert_eq!(
        config.transfer_log,
        Some(TransferLogConfig {
            path: dir.path().join("logs/xferlog"),
            format: TransferLogFormat::Json,
            listings: ListingsPolicy::Omit,
            time: LogTime::Local,
        })
    );
    assert_eq!(
        config.backends[0].health_check,
        Some(HealthCheck {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
        })
    );
}

#[test]
fn observability_defaults() {
    let dir = dir_with(&[]);
    let yaml = format!(
        "{}    health_check: {{}}
transfer_log: {{ path: xferlog }}
",
        minimal("", "")
    );
    let config = parse_ok(&yaml, dir.path());
    assert_eq!(
        config.backends[0].health_check,
        Some(HealthCheck {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
        })
    );
    assert_eq!(
        HealthCheck::default(),
        config.backends[0].health_check.unwrap()
    );
    let log = config.transfer_log.expect("transfer_log");
    assert_eq!(log.format, TransferLogFormat::Xferlog);
    assert_eq!(log.path, dir.path().join("xferlog"));
}

#[test]
fn observability_errors_have_key_paths() {
    let dir = dir_with(&["adir/x"]);
    let yaml = format!(
        "{}    health_check: {{ interval: 5s, timeout: 10s }}
metrics: {{ bind: \"127.0.0.1:2021\" }}
transfer_log: {{ path: nowhere/xferlog, format: csv }}
",
        minimal("", "")
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "backends[0].health_check.timeout: \"10s\" is longer than interval \"5s\"",
            "metrics.bind: 127.0.0.1:2021 is already used by listeners[0]",
            "transfer_log.path: directory of nowhere/xferlog does not exist",
            "transfer_log.format: \"csv\" is not a transfer log format (expected xferlog or json)",
        ]
    );

    let yaml = format!(
        "{}    health_check: {{ timeout: 11s, interval: 0s }}
metrics: {{}}
transfer_log: {{ path: adir }}
",
        minimal("", "")
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "backends[0].health_check.interval: \"0s\" must be greater than zero",
            "metrics.bind: is required",
            "transfer_log.path: adir is a directory",
        ]
    );

    let yaml = format!(
        "{}    health_check: {{ timeout: 11s }}
metrics: {{ bind: \"localhost:9464\" }}
transfer_log: {{ format: json }}
",
        minimal("", "")
    );
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "backends[0].health_check.timeout: \"11s\" is longer than interval 10s (default)",
            "metrics.bind: \"localhost:9464\" is not an IP address and port (e.g. \"127.0.0.1:2021\" or \"[::1]:2021\")",
            "transfer_log.path: is required",
        ]
    );
}

#[test]
fn unknown_keys_in_observability_sections_are_refused() {
    let dir = dir_with(&[]);
    for extra in [
        "metrics: { bind: \"127.0.0.1:9464\", path: /m }\n",
        "transfer_log: { path: x, rotate: true }\n",
    ] {
        let yaml = format!("{}{extra}", minimal("", ""));
        let errs = errors(&yaml, dir.path());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("<yaml>:"), "{errs:?}");
    }
    let yaml = format!("{}    health_check: {{ every: 5s }}\n", minimal("", ""));
    let errs = errors(&yaml, dir.path());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("<yaml>:"), "{errs:?}");
}

#[test]
fn transfer_log_listings_and_time() {
    let dir = dir_with(&["logs/keep"]);
    let with = |extra: &str| {
        format!(
            "{}transfer_log:\n  path: logs/xferlog\n{extra}",
            minimal("", "")
        )
    };
    let config = parse_ok(&with("  listings: flag\n  time: utc\n"), dir.path());
    let log = config.transfer_log.expect("transfer_log");
    assert_eq!(
        (log.listings, log.time),
        (ListingsPolicy::Flag, LogTime::Utc)
    );
    let config = parse_ok(&with(""), dir.path());
    let log = config.transfer_log.expect("transfer_log");
    assert_eq!(
        (log.listings, log.time),
        (ListingsPolicy::Omit, LogTime::Local)
    );
    assert_eq!(
        errors(&with("  listings: yes\n  time: gmt\n"), dir.path()),
        [
            "transfer_log.listings: \"yes\" is not a listings policy (expected omit, flag or include)",
            "transfer_log.time: \"gmt\" is not a time zone choice (expected local or utc)",
        ]
    );
}

/// Issue 17 B6: one IPv6 prefix for session limits and the throttle.
#[test]
fn ipv6_prefix_defaults_to_64_and_takes_56() {
    let dir = dir_with(&[]);
    assert_eq!(
        parse_ok(&minimal("", ""), dir.path()).limits.ipv6_prefix,
        64
    );
    let yaml = minimal("", "") + "limits:\n  max_sessions: 10\n";
    assert_eq!(parse_ok(&yaml, dir.path()).limits.ipv6_prefix, 64);
    for (text, want) in [("56", 56), ("\"/56\"", 56), ("128", 128), ("32", 32)] {
        let yaml = minimal("", "") + &format!("limits:\n  ipv6_prefix: {text}\n");
        assert_eq!(
            parse_ok(&yaml, dir.path()).limits.ipv6_prefix,
            want,
            "{text}"
        );
    }
    let yaml = minimal("", "") + "limits:\n  ipv6_prefix: 16\n";
    assert_eq!(
        errors(&yaml, dir.path()),
        ["limits.ipv6_prefix: \"16\" is not an IPv6 prefix length from 32 to 128 (e.g. 64 or 56)"]
    );
}

#[test]
fn control_socket_resolves_its_path_and_defaults_mode_0660() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "") + "control:\n  socket: run/ctl.sock\n";
    let c = parse_ok(&yaml, dir.path()).control.expect("control");
    assert_eq!(
        c,
        ControlConfig {
            socket: dir.path().join("run/ctl.sock"),
            mode: 0o660,
            owner: None,
            group: None,
        }
    );
    let yaml = minimal("", "")
        + "control: { socket: /run/x.sock, mode: \"0600\", owner: root, group: \"4\" }\n";
    let c = parse_ok(&yaml, dir.path()).control.expect("control");
    assert_eq!((c.mode, c.owner, c.group), (0o600, Some(0), Some(4)));
    assert_eq!(parse_ok(&minimal("", ""), dir.path()).control, None);
}

#[test]
fn bad_control_keys_are_reported_with_their_lines() {
    let dir = dir_with(&[]);
    let base = minimal("", "");
    let first = base.lines().count() + 1;
    let yaml = base
        + "control:\n  mode: \"0999\"\n  owner: no-such-user-here\n  group: no-such-group-here\n  port: 9\n";
    let e = Config::from_yaml_str(&yaml, dir.path()).expect_err("invalid");
    let text = e.to_string();
    assert!(text.contains("port"), "unknown key refused: {text}");
    let yaml = minimal("", "")
        + "control:\n  mode: \"0999\"\n  owner: no-such-user-here\n  group: no-such-group-here\n";
    let e = Config::from_yaml_str(&yaml, dir.path()).expect_err("invalid");
    assert_eq!(
        e.to_string(),
        [
            // A missing key is reported where its section's keys start.
            format!("control.socket (line {}): is required", first + 1),
            format!(
                "control.mode (line {}): \"0999\" is not an octal file mode (e.g. \"0660\")",
                first + 1
            ),
            format!(
                "control.owner (line {}): no user named \"no-such-user-here\" in /etc/passwd",
                first + 2
            ),
            format!(
                "control.group (line {}): no group named \"no-such-group-here\" in /etc/group",
                first + 3
            ),
        ]
        .join("\n")
    );
}

#[test]
fn bounds_keys_parse() {
    let dir = dir_with(&[]);
    let yaml = minimal("", "").replace(
        "      ports: \"50000-50099\"\n",
        "      ports: \"50000-50009\"\n      max_per_client: \"30%\"\n",
    ) + "limits:\n  max_unauthenticated_per_ip: 4\n  connection_rate_per_ip: 20\n\
         timeouts:\n  control_write: 3s\n";
    let c = parse_ok(&yaml, dir.path());
    assert_eq!(c.limits.max_unauthenticated_per_ip, Some(4));
    assert_eq!(c.limits.connection_rate_per_ip, Some(20));
    assert_eq!(c.timeouts.control_write, Duration::from_secs(3));
    assert_eq!(
        c.listeners[0].passive.max_per_client,
        PortShare::Percent(30)
    );
    assert_eq!(c.listeners[0].passive.max_per_client.cap(10), 3);
    let unset = parse_ok(&minimal("", ""), dir.path());
    assert_eq!(
        unset.limits.max_unauthenticated_per_ip, None,
        "filled in by the gateway"
    );
    assert_eq!(
        unset.listeners[0].passive.max_per_client,
        PortShare::Default
    );
    let bad = minimal("", "").replace(
        "      ports: \"50000-50099\"\n",
        "      ports: \"50000-50099\"\n      max_per_client: \"0%\"\n",
    );
    let errors = Config::from_yaml_str(&bad, dir.path()).unwrap_err();
    assert!(
        errors.0[0].path.ends_with("passive.max_per_client"),
        "{errors}"
    );
}

#[test]
fn unsolicited_replies_limit() {
    let dir = dir_with(&[]);
    let l = parse_ok(
        &(minimal("", "") + "limits:\n  unsolicited_replies: 3\n"),
        dir.path(),
    )
    .limits;
    assert_eq!(l.unsolicited_replies, Some(3));
    let l = parse_ok(&minimal("", ""), dir.path()).limits;
    assert_eq!(l.unsolicited_replies, None);
    let e = errors(
        &(minimal("", "") + "limits:\n  unsolicited_replies: many\n"),
        dir.path(),
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("limits.unsolicited_replies")),
        "{e:?}"
    );
}
