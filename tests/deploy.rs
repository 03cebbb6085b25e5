//! The deployment files under `deploy/` checked with the real tools, offline:
//! `systemd-analyze verify` and `security --offline=yes` (exposure ≤ 2.0) on the
//! unit with and without its nftables drop-in, `haproxy -c`, `nft -c -f` (plus a
//! load into a private network namespace), `kubernetes-validate --strict` on every
//! manifest, and `ftpsgate check` on every example config shipped there (the
//! Kubernetes one rendered by its own `render.sh` for each replica). Consistency
//! between the files (drain grace vs. stop timeouts, per-pod ranges vs. Services,
//! kustomization resources, container ports) is asserted too.
//!
//! The tools come from `scripts/test` (apt: systemd, haproxy, nftables, openssl;
//! pip: kubernetes-validate).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;

use common::Certs;

const MAX_EXPOSURE: f64 = 2.0;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(rel: &str) -> PathBuf {
    root().join("deploy").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs a command; a missing program is a setup error with the hint how to get it.
fn run(cmd: &mut Command, hint: &str) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run {cmd:?}: {e} ({hint}; ./scripts/test installs it)"),
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn temp_dir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("ftpsgate-deploy-{prefix}-"))
        .tempdir()
        .unwrap()
}

// ---------------------------------------------------------------- systemd

/// A root directory for `systemd-analyze --root`: the distribution's units (for
/// sysinit.target & co.), the built binary at the unit's ExecStart path, and the
/// unit (plus drop-ins when asked) in /etc/systemd/system.
fn systemd_root(with_dropins: bool) -> tempfile::TempDir {
    let dir = temp_dir("systemd");
    let r = dir.path();
    let units = r.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    for lib in ["/usr/lib/systemd/system", "/lib/systemd/system"] {
        if let Ok(entries) = std::fs::read_dir(lib) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    let _ = std::fs::copy(e.path(), units.join(e.file_name()));
                }
            }
            break;
        }
    }
    std::fs::create_dir_all(r.join("usr/local/bin")).unwrap();
    std::fs::copy(
        env!("CARGO_BIN_EXE_ftpsgate"),
        r.join("usr/local/bin/ftpsgate"),
    )
    .unwrap();
    std::fs::create_dir_all(r.join("bin")).unwrap();
    std::fs::copy("/bin/kill", r.join("bin/kill")).expect("/bin/kill");
    let etc = r.join("etc/systemd/system");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(
        deploy("systemd/ftpsgate.service"),
        etc.join("ftpsgate.service"),
    )
    .unwrap();
    if with_dropins {
        let d = etc.join("ftpsgate.service.d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(
            deploy("systemd/ftpsgate.service.d/nftables.conf"),
            d.join("nftables.conf"),
        )
        .unwrap();
    }
    dir
}

/// `systemd-analyze` runs without a running systemd for `verify --root` and
/// `security --offline=yes`; only when it cannot run here at all is this skipped.
fn systemd_analyze_usable() -> bool {
    match Command::new("systemd-analyze").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "SKIP: systemd-analyze cannot run in this container: {}",
                text(&o)
            );
            false
        }
        Err(e) => {
            panic!("systemd-analyze: {e} (Debian package systemd; ./scripts/test installs it)")
        }
    }
}

fn verify_clean(with_dropins: bool) {
    let r = systemd_root(with_dropins);
    let o = run(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", r.path().display()))
            .arg("ftpsgate.service"),
        "systemd-analyze",
    );
    let out = text(&o);
    // verify exits 0 on unknown keys (it only warns): any output is a finding.
    assert!(
        o.status.success() && out.trim().is_empty(),
        "systemd-analyze verify (drop-ins: {with_dropins}) is not clean:\n{out}"
    );
}

fn exposure(args: &[&str]) -> f64 {
    let o = run(
        Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .args(args),
        "systemd-analyze",
    );
    let out = text(&o);
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    let after = line.rsplit_once(':').unwrap().1.trim();
    let score: f64 = after
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line:?}"));
    eprintln!("{line}");
    score
}

#[test]
fn systemd_unit_verifies_clean() {
    if !systemd_analyze_usable() {
        return;
    }
    verify_clean(false);
    verify_clean(true);
}

#[test]
fn systemd_unit_exposure_at_most_2() {
    if !systemd_analyze_usable() {
        return;
    }
    // The unit alone (analysed in place, the ftpsgate.service.d/ next to it would
    // be read as well).
    let dir = temp_dir("unit");
    let unit = dir.path().join("ftpsgate.service");
    std::fs::copy(deploy("systemd/ftpsgate.service"), &unit).unwrap();
    let alone = exposure(&[unit.to_str().unwrap()]);
    assert!(
        alone <= MAX_EXPOSURE,
        "unit exposure {alone} > {MAX_EXPOSURE}"
    );
    let r = systemd_root(true);
    let root_arg = format!("--root={}", r.path().display());
    let with_nft = exposure(&[&root_arg, "ftpsgate.service"]);
    assert!(
        with_nft <= MAX_EXPOSURE,
        "exposure with the nftables drop-in {with_nft} > {MAX_EXPOSURE}"
    );
    assert!(
        with_nft >= alone,
        "the drop-in must add, not remove, exposure"
    );
}

/// Values of `Key=` lines in a unit (comments skipped).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_owned)
        .collect()
}

/// `shutdown.grace` of a config, in seconds (`30s`, `2m`, bare seconds).
fn grace_secs(yaml: &str) -> u64 {
    let mut in_shutdown = false;
    for line in yaml.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        if t.starts_with("shutdown:") {
            in_shutdown = true;
            continue;
        }
        if in_shutdown {
            if let Some(v) = t.strip_prefix("grace:") {
                let v = v.trim().trim_matches('"');
                let (num, mult) = if let Some(n) = v.strip_suffix('m') {
                    (n, 60)
                } else if let Some(n) = v.strip_suffix('s') {
                    (n, 1)
                } else {
                    (v, 1)
                };
                return num.parse::<u64>().expect("grace") * mult;
            }
        }
    }
    30 // the default
}

#[test]
fn systemd_unit_settings() {
    let unit = read(&deploy("systemd/ftpsgate.service"));
    for (key, want) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        (
            "ExecStart",
            "/usr/local/bin/ftpsgate run --config /etc/ftpsgate/ftpsgate.yaml",
        ),
        (
            "ExecStartPre",
            "/usr/local/bin/ftpsgate check --config /etc/ftpsgate/ftpsgate.yaml",
        ),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("UMask", "0077"),
    ] {
        assert_eq!(unit_values(&unit, key), vec![want.to_owned()], "{key}=");
    }
    // Issue 15 item 3: check before signalling, so a broken config fails the
    // `systemctl reload` visibly instead of being refused silently.
    assert_eq!(
        unit_values(&unit, "ExecReload"),
        vec![
            "/usr/local/bin/ftpsgate check --config /etc/ftpsgate/ftpsgate.yaml".to_owned(),
            "/bin/kill -HUP $MAINPID".to_owned()
        ],
        "ExecReload="
    );
    assert!(
        unit_values(&unit, "PrivateUsers").is_empty(),
        "PrivateUsers breaks CAP_NET_BIND_SERVICE"
    );
    let stop: u64 = unit_values(&unit, "TimeoutStopSec")[0].parse().unwrap();
    let grace = grace_secs(&read(&deploy("systemd/ftpsgate.yaml")));
    assert!(
        stop > grace,
        "TimeoutStopSec={stop} must exceed shutdown.grace {grace}s"
    );
}

// ---------------------------------------------------------------- haproxy

#[test]
fn haproxy_configs_check() {
    for cfg in ["haproxy/haproxy.cfg", "haproxy/haproxy-transparent.cfg"] {
        let o = run(
            Command::new("haproxy").arg("-c").arg("-f").arg(deploy(cfg)),
            "Debian package haproxy",
        );
        let out = text(&o);
        assert!(o.status.success(), "haproxy -c {cfg}:\n{out}");
        assert!(!out.contains("[WARNING]"), "haproxy -c {cfg} warns:\n{out}");
    }
}

// ---------------------------------------------------------------- nftables

#[test]
fn nftables_ruleset_checks() {
    let file = deploy("nftables/ftpsgate.nft");
    let o = run(
        Command::new("nft").arg("-c").arg("-f").arg(&file),
        "Debian package nftables",
    );
    assert!(o.status.success(), "nft -c -f:\n{}", text(&o));
    // Only the passive range may be dropped (a bare `drop` would cut UDP, ICMP, …).
    for rule in read(&file).lines().map(str::trim) {
        if !rule.starts_with('#') && (rule.contains("drop") || rule.contains("reject")) {
            assert!(
                rule.starts_with("tcp dport $PASSIVE "),
                "unscoped rule: {rule}"
            );
        }
    }

    // Load it for real in a private network namespace, twice (the file is meant
    // to be reloadable), and add the elements ftpsgate adds: ip . port, timeout.
    let script = format!(
        "set -e
         nft -f {f}
         nft -f {f}
         nft add element inet ftpsgate pinholes '{{ 127.0.0.1 . 50000 timeout 30s }}'
         nft add element inet ftpsgate pinholes6 '{{ ::1 . 50001 timeout 30s }}'
         nft list table inet ftpsgate",
        f = file.display()
    );
    let o = run(
        Command::new("unshare").args(["--net", "sh", "-c", &script]),
        "util-linux unshare",
    );
    let out = text(&o);
    if !o.status.success() && out.contains("unshare failed") {
        eprintln!("SKIP (load test only): no private network namespace here: {out}");
        return;
    }
    assert!(o.status.success(), "loading into a private netns:\n{out}");
    assert!(out.contains("127.0.0.1 . 50000"), "{out}");
    assert!(out.contains("::1 . 50001"), "{out}");
    assert_eq!(
        out.matches("chain input").count(),
        1,
        "reload duplicated the chain:\n{out}"
    );

    // The systemd example with kernel pinholes switched on checks clean against
    // the loaded ruleset (`check` lists the sets with nft), and its passive
    // ranges lie inside the ruleset's PASSIVE range.
    let nft = read(&file);
    let passive = nft
        .lines()
        .find_map(|l| l.trim().strip_prefix("define PASSIVE = "))
        .expect("define PASSIVE");
    let (lo, hi) = range(passive);
    let dir = temp_dir("nftcfg");
    let cfg = prepare_config(dir.path(), "systemd/ftpsgate.yaml", |y| {
        y.replace("# nftables: {", "nftables: {")
    });
    assert!(read(&cfg).matches("\n      nftables: {").count() == 2);
    for ports in yaml_values(&read(&cfg), "ports:") {
        let (a, b) = range(&ports);
        assert!(
            lo <= a && b <= hi,
            "passive {ports} outside PASSIVE {passive}"
        );
    }
    let script = format!(
        "set -e; nft -f {f}; {bin} check --config {cfg}",
        f = file.display(),
        bin = env!("CARGO_BIN_EXE_ftpsgate"),
        cfg = cfg.display()
    );
    let o = run(
        Command::new("unshare").args(["--net", "sh", "-c", &script]),
        "util-linux unshare",
    );
    assert!(o.status.success(), "check with nftables:\n{}", text(&o));
}

fn range(s: &str) -> (u16, u16) {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    (a.trim().parse().unwrap(), b.trim().parse().unwrap())
}

// ---------------------------------------------------------------- kubernetes

fn k8s_manifests() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(deploy("kubernetes"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn kubernetes_manifests_validate() {
    let files = k8s_manifests();
    assert!(files.len() >= 9, "{files:?}");
    for f in &files {
        let o = run(
            Command::new("kubernetes-validate").arg("--strict").arg(f),
            "pip install kubernetes-validate",
        );
        let out = text(&o);
        assert!(
            o.status.success(),
            "kubernetes-validate {}:\n{out}",
            f.display()
        );
        // CRD kinds and the kustomization have no bundled schema: a warning is
        // expected there and only there.
        let name = f.file_name().unwrap().to_str().unwrap();
        if name == "servicemonitor.yaml" || name == "kustomization.yaml" {
            assert!(out.contains("Couldn't find schema"), "{name}: {out}");
        } else {
            assert!(out.contains("passed for resource"), "{name}: {out}");
            assert!(
                !out.contains("WARN") && !out.contains("ERROR"),
                "{name}: {out}"
            );
        }
    }
}

#[derive(Deserialize)]
struct Kustomization {
    resources: Vec<String>,
}

#[test]
fn kustomization_lists_every_manifest() {
    let k: Kustomization =
        serde_saphyr::from_str(&read(&deploy("kubernetes/kustomization.yaml"))).unwrap();
    let mut listed = k.resources.clone();
    listed.sort();
    let mut files: Vec<String> = k8s_manifests()
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .filter(|n| n != "kustomization.yaml")
        .collect();
    files.sort();
    assert_eq!(listed, files);
    // With kubectl around, the kustomize build must work and validate too.
    match Command::new("kubectl")
        .args(["kustomize"])
        .arg(deploy("kubernetes"))
        .output()
    {
        Ok(o) if o.status.success() => {
            let dir = temp_dir("kustomize");
            let all = dir.path().join("all.yaml");
            std::fs::write(&all, &o.stdout).unwrap();
            let v = run(
                Command::new("kubernetes-validate")
                    .arg("--strict")
                    .arg(&all),
                "pip install kubernetes-validate",
            );
            assert!(v.status.success(), "kustomize output:\n{}", text(&v));
        }
        Ok(o) => panic!("kubectl kustomize failed:\n{}", text(&o)),
        Err(_) => eprintln!("note: no kubectl, kustomize build not checked"),
    }
}

#[derive(Deserialize)]
struct ConfigMap {
    data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Service {
    metadata: Meta,
    spec: ServiceSpec,
}

#[derive(Deserialize)]
struct Meta {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSpec {
    selector: BTreeMap<String, String>,
    ports: Vec<ServicePort>,
    external_traffic_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    port: u16,
    target_port: IntOrString,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(u64),
    Str(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatefulSet {
    spec: StsSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StsSpec {
    replicas: u32,
    template: PodTemplate,
}

#[derive(Deserialize)]
struct PodTemplate {
    spec: PodSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    termination_grace_period_seconds: u64,
}

/// Renders the ConfigMap's template with its own render.sh for each replica and
/// runs `ftpsgate check` on the result; each per-pod Service must forward
/// exactly that replica's passive range, to that pod only.
#[test]
fn kubernetes_config_renders_and_checks_per_replica() {
    let cm: ConfigMap =
        serde_saphyr::from_str(&read(&deploy("kubernetes/configmap.yaml"))).unwrap();
    let sts: StatefulSet =
        serde_saphyr::from_str(&read(&deploy("kubernetes/statefulset.yaml"))).unwrap();
    let template = cm.data.get("ftpsgate.yaml.in").expect("ftpsgate.yaml.in");
    let grace = grace_secs(template);
    assert!(
        sts.spec.template.spec.termination_grace_period_seconds > grace,
        "terminationGracePeriodSeconds must exceed shutdown.grace {grace}s"
    );

    let dir = temp_dir("k8s");
    let tdir = dir.path().join("template");
    std::fs::create_dir_all(&tdir).unwrap();
    // The Secret's mount (/etc/ftpsgate/tls) replaced by a generated cert.
    let tls = dir.path().join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let certs = Certs::generate(&tls, "gw");
    std::fs::copy(&certs.cert_pem, tls.join("tls.crt")).unwrap();
    std::fs::copy(&certs.key_pem, tls.join("tls.key")).unwrap();
    for (k, v) in &cm.data {
        let v = v.replace("/etc/ftpsgate/tls/", &format!("{}/", tls.display()));
        std::fs::write(tdir.join(k), v).unwrap();
    }
    for n in 0..sts.spec.replicas {
        let out = dir.path().join(format!("ftpsgate-{n}.yaml"));
        let o = run(
            Command::new("sh")
                .arg(tdir.join("render.sh"))
                .arg(env!("CARGO_BIN_EXE_ftpsgate"))
                .args(["check", "--config"])
                .arg(&out)
                .env("POD_NAME", format!("ftpsgate-{n}"))
                .env("TEMPLATE_DIR", &tdir)
                .env("OUT", &out),
            "sh",
        );
        assert!(
            o.status.success(),
            "replica {n}: render + check:\n{}",
            text(&o)
        );
        let rendered = read(&out);
        let base = 50000 + 100 * n as u16;
        assert!(
            rendered.contains(&format!("\"{}-{}\"", base, base + 69)),
            "{rendered}"
        );
        assert!(
            rendered.contains(&format!("\"{}-{}\"", base + 70, base + 99)),
            "{rendered}"
        );
        assert!(!rendered.contains('@'), "placeholder left:\n{rendered}");

        let svc: Service =
            serde_saphyr::from_str(&read(&deploy(&format!("kubernetes/service-pod-{n}.yaml"))))
                .unwrap();
        assert_eq!(svc.metadata.name, format!("ftpsgate-{n}"));
        assert_eq!(
            svc.spec.selector.get("statefulset.kubernetes.io/pod-name"),
            Some(&format!("ftpsgate-{n}"))
        );
        assert_eq!(svc.spec.external_traffic_policy.as_deref(), Some("Local"));
        let mut ports: Vec<u16> = svc.spec.ports.iter().map(|p| p.port).collect();
        ports.sort();
        let mut want: Vec<u16> = vec![21, 990];
        want.extend(base..base + 100);
        assert_eq!(ports, want, "service-pod-{n}.yaml ports");
        for p in svc.spec.ports.iter().filter(|p| p.port >= 50000) {
            assert_eq!(
                p.target_port,
                IntOrString::Int(p.port as u64),
                "passive port {} must map to the same port",
                p.port
            );
        }
    }
    // No ordinal, or no advertise-N: render.sh refuses instead of guessing.
    for pod in ["ftpsgate", "ftpsgate-9"] {
        let o = run(
            Command::new("sh")
                .arg(tdir.join("render.sh"))
                .arg("true")
                .env("POD_NAME", pod)
                .env("TEMPLATE_DIR", &tdir)
                .env("OUT", dir.path().join("x.yaml")),
            "sh",
        );
        assert!(!o.status.success(), "render.sh accepted pod name {pod}");
    }
}

// ---------------------------------------------------------------- example configs

/// Every `ftpsgate.yaml` under deploy/ passes `ftpsgate check`, with absolute
/// /etc/ftpsgate and /var/log/ftpsgate paths moved into a temp dir and a
/// generated certificate wherever a `cert:`/`key:` points.
#[test]
fn deploy_example_configs_check() {
    let configs = [
        "systemd/ftpsgate.yaml",
        "container/ftpsgate.yaml",
        "haproxy/ftpsgate.yaml",
    ];
    for rel in configs {
        let dir = temp_dir("cfg");
        let cfg = prepare_config(dir.path(), rel, |y| y);
        let o = run(
            Command::new(env!("CARGO_BIN_EXE_ftpsgate"))
                .args(["check", "--config"])
                .arg(&cfg),
            "ftpsgate",
        );
        assert!(
            o.status.success(),
            "ftpsgate check deploy/{rel}:\n{}",
            text(&o)
        );
    }
}

/// Copies deploy/`rel` into `d` (through `edit`) with /etc/ftpsgate and
/// /var/log/ftpsgate moved under `d`, and a generated certificate/key at every
/// `cert:`/`key:` path. Returns the config's path.
fn prepare_config(d: &Path, rel: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let yaml = edit(read(&deploy(rel)))
        .replace("/etc/ftpsgate/", &format!("{}/etc/ftpsgate/", d.display()))
        .replace(
            "/var/log/ftpsgate/",
            &format!("{}/var/log/ftpsgate/", d.display()),
        );
    std::fs::create_dir_all(d.join("var/log/ftpsgate")).unwrap();
    let certs = Certs::generate(d, "gen");
    for (key, src) in [("cert:", &certs.cert_pem), ("key:", &certs.key_pem)] {
        for value in yaml_values(&yaml, key) {
            let target = d.join(&value);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(src, &target).unwrap();
        }
    }
    let cfg = d.join("ftpsgate.yaml");
    std::fs::write(&cfg, &yaml).unwrap();
    cfg
}

/// Values after `key` (e.g. `cert:`) in block or flow style, comments skipped.
fn yaml_values(yaml: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in yaml.lines() {
        let code = line.split(" #").next().unwrap();
        if code.trim_start().starts_with('#') {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find(key) {
            let before = rest[..i].chars().last();
            rest = &rest[i + key.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let v: String = rest
                .trim_start()
                .chars()
                .take_while(|c| !matches!(c, ',' | '}' | ' '))
                .collect();
            let v = v.trim_matches('"').to_owned();
            if !v.is_empty() {
                out.push(v);
            }
        }
    }
    out
}

// ---------------------------------------------------------------- container

/// No container engine runs here: the Containerfile is checked for what can be
/// checked offline (build inputs exist, ports agree with its example config).
#[test]
fn containerfile_consistent() {
    let cf = read(&deploy("container/Containerfile"));
    let froms: Vec<&str> = cf.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(cf.contains("cargo build --release --locked"));
    for line in cf
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(root().join(src).exists(), "COPY source {src} missing");
        }
    }
    assert!(cf
        .lines()
        .any(|l| l.starts_with("USER ") && !l.contains("root") && !l.contains(" 0")));
    assert!(cf.contains("STOPSIGNAL SIGTERM"));
    let expose: String = cf
        .lines()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .collect::<Vec<_>>()
        .join(" ");
    let cfg = read(&deploy("container/ftpsgate.yaml"));
    for bind in yaml_values(&cfg, "bind:") {
        let port = bind.rsplit(':').next().unwrap();
        assert!(
            expose.contains(&format!("{port}/tcp")),
            "EXPOSE lacks {port}: {expose}"
        );
        assert!(
            bind.starts_with("0.0.0.0:"),
            "{bind}: must listen on all container addresses"
        );
    }
    let metrics_port = yaml_values(&cfg, "bind:")
        .last()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        cf.contains(&format!("127.0.0.1:{metrics_port}/healthz")),
        "HEALTHCHECK port"
    );
    assert!(expose.contains("50000-50099/tcp"), "{expose}");
}
