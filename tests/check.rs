//! `ftpsgate check` as an operator meets it: every shipped policy passes as
//! checked out (with `ftpsgate lab-certs` for the certificates they name), every
//! error of a broken file comes in one run as `FILE:LINE:COL: key.path: message`,
//! `--print` output checks again to the same text, and `| head` never panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ftpsgate");

fn ftpsgate(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .expect("run ftpsgate")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

fn lab_certs(dir: &Path) {
    let out = ftpsgate(&["lab-certs", dir.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "lab-certs: {:?}", text(&out));
}

/// `policies/*.yaml` and every `deploy/**/*.yaml` whose top level has
/// `listeners:` (an ftpsgate policy, not a Kubernetes or Prometheus file).
fn shipped_policies(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&p).expect("read yaml");
                if text.lines().any(|l| l.starts_with("listeners:")) {
                    out.push(p);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&root.join("policies"), &mut out);
    walk(&root.join("deploy"), &mut out);
    out
}

#[test]
fn every_shipped_policy_passes_check() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    copy_dir(&repo.join("policies"), &root.join("policies"));
    copy_dir(&repo.join("deploy"), &root.join("deploy"));
    // The recipe README.md and certs/README.md give: lab certificates where the
    // policies expect them (`certs/` for policies/, `tls/` beside a deploy file).
    lab_certs(&root.join("certs"));
    let logs = root.join("log");
    std::fs::create_dir_all(&logs).expect("log dir");
    let files = shipped_policies(root);
    assert!(files.len() >= 4, "found only {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let dir = file.parent().expect("file has a directory");
        let mut yaml = std::fs::read_to_string(file).expect("read policy");
        if dir.starts_with(root.join("deploy")) {
            lab_certs(&dir.join("tls"));
            if dir.ends_with("deploy/dmz") {
                // The tunnel's own PKI (deploy/dmz/README.md), from the lab certificates.
                for (to, from) in [
                    ("edge.pem", "gateway.pem"),
                    ("edge.key", "gateway.key"),
                    ("connectors-ca.pem", "backend-ca.pem"),
                ] {
                    std::fs::copy(dir.join("tls").join(from), dir.join("tls").join(to))
                        .expect("tunnel lab certificate");
                }
            }
            // Installed layout: the log directory exists on the target host.
            yaml = yaml.replace("/var/log/ftpsgate/", &format!("{}/", logs.display()));
            std::fs::write(file, yaml).expect("write policy");
        }
        let out = ftpsgate(&["check", "--config", file.to_str().expect("utf-8")]);
        if !out.status.success() {
            failures.push(format!("{}:\n{:?}", file.display(), text(&out)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_error_comes_at_once_in_one_format() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("bad.yaml");
    std::fs::write(
        &file,
        r#"listeners:
  - name: edge
    bind: "127.0.0.1:2021"
    tls: { mode: none }
    passive: { ports: "5000-400", advertize: "127.0.0.1" }
    backend: legacy
    backend: legacy
    colour: blue
backends:
  - name: legacy
    adress: "127.0.0.1:2120"
timeouts: { conect: 5s, idle: soon }
"#,
    )
    .expect("write config");
    let f = file.display().to_string();
    let out = ftpsgate(&["check", "--config", &f]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let expected = [
        format!("error: {f}:5:35: listeners[0].passive.advertize: unknown field `advertize`, did you mean `advertise`?"),
        format!("error: {f}:7:5: listeners[0].backend: duplicate key `backend` (first given on line 6); a key may appear once"),
        format!("error: {f}:8:5: listeners[0].colour: unknown field `colour`, expected one of name, bind, tls, passive, active, backend, access, limits, user_at_backend, routes, proxy_protocol, banner, unavailable"),
        format!("error: {f}:11:5: backends[0].adress: unknown field `adress`, did you mean `address`?"),
        format!("error: {f}:12:13: timeouts.conect: unknown field `conect`, did you mean `connect`?"),
        format!("error: {f}:5:23: listeners[0].passive.ports: \"5000-400\" is not a range"),
        format!("error: {f}:10:5: backends[0].address: is required"),
        format!("error: {f}:12:31: timeouts.idle: \"soon\" is not a duration (expected e.g. \"500ms\", \"30s\", \"5m\", \"1h\" or a number of seconds)"),
    ];
    // Errors go to stderr (stdout is for `ok` and `--print`).
    assert_eq!(stderr.lines().collect::<Vec<_>>(), expected, "{stderr}");
    assert!(!stderr.contains("DuplicateKeyPolicy"), "{stderr}");
}

#[test]
fn tls_material_errors_are_located_and_in_words() {
    let tmp = tempfile::tempdir().expect("temp dir");
    lab_certs(tmp.path());
    let file = tmp.path().join("gw.yaml");
    std::fs::write(
        &file,
        r#"listeners:
  - name: edge
    bind: "127.0.0.1:2021"
    tls: { mode: explicit, cert: gateway.pem, key: backend.key }
    passive: { ports: "50000-50010" }
    backend: legacy
backends:
  - name: legacy
    address: "127.0.0.1:2120"
"#,
    )
    .expect("write config");
    let f = file.display().to_string();
    let out = ftpsgate(&["check", "--config", &f]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let line = stderr.lines().next().unwrap_or_default();
    assert!(
        line.starts_with(&format!("error: {f}:4:10: listeners[0].tls: ")),
        "{stderr}"
    );
    assert!(
        line.contains("the private key does not belong to the certificate"),
        "{stderr}"
    );
    assert!(!line.contains("KeyMismatch"), "{stderr}");
}

#[test]
fn print_output_checks_again_to_the_same_text() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_dir(&repo.join("policies"), &tmp.path().join("policies"));
    lab_certs(&tmp.path().join("certs"));
    for name in [
        "example.yaml",
        "routing.yaml",
        "access.yaml",
        "edge-nat.yaml",
    ] {
        let file = tmp.path().join("policies").join(name);
        let first = ftpsgate(&[
            "check",
            "--print",
            "--config",
            file.to_str().expect("utf-8"),
        ]);
        let (printed, stderr) = text(&first);
        assert!(first.status.success(), "{name}: {printed}\n{stderr}");
        // Saved elsewhere: paths in it are absolute, so it means the same there.
        let saved = tmp.path().join(format!("printed-{name}"));
        std::fs::write(&saved, &printed).expect("save printed");
        let again = ftpsgate(&[
            "check",
            "--print",
            "--config",
            saved.to_str().expect("utf-8"),
        ]);
        let (reprinted, stderr) = text(&again);
        assert!(
            again.status.success(),
            "{name} printed:\n{printed}\n{stderr}"
        );
        assert_eq!(reprinted, printed, "{name}");
    }
}

#[test]
fn output_into_a_closed_pipe_is_a_quiet_exit() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_dir(&repo.join("policies"), &tmp.path().join("policies"));
    lab_certs(&tmp.path().join("certs"));
    let file = tmp.path().join("policies/example.yaml");
    for args in [
        format!("check --print --config {}", file.display()),
        format!("check --config {}", file.display()),
        "--help".to_string(),
    ] {
        // `true` exits without reading: every write of ftpsgate meets a closed pipe.
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "'{BIN}' {args} | true; echo \"status=${{PIPESTATUS[0]}}\" >&2"
            ))
            .output()
            .expect("run bash");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args}: {stderr}");
        assert!(
            stderr.contains("status=0") || stderr.contains("status=1"),
            "{args}: {stderr}"
        );
    }
}

#[test]
fn tls_material_errors_come_with_the_other_errors() {
    let tmp = tempfile::tempdir().expect("temp dir");
    lab_certs(tmp.path());
    let file = tmp.path().join("gw.yaml");
    std::fs::write(
        &file,
        r#"listeners:
  - name: edge
    bind: "127.0.0.1:2021"
    tls: { mode: explicit, cert: gateway.pem, key: backend.key }
    passive: { ports: "50000-50010" }
    backend: legacy
backends:
  - name: legacy
    address: "127.0.0.1:2120"
    tls: { mode: explicit, ca: gateway.key }
    data_mode: sideways
"#,
    )
    .expect("write config");
    let f = file.display().to_string();
    let out = ftpsgate(&["check", "--config", &f]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].starts_with(&format!("error: {f}:11:16: backends[0].data_mode: ")),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!("error: {f}:4:10: listeners[0].tls: "))
            && lines[1].contains("does not belong to the certificate"),
        "{stderr}"
    );
    assert!(
        lines[2].starts_with(&format!("error: {f}:10:10: backends[0].tls: ")),
        "{stderr}"
    );
}

/// Sets `path`'s permission bits.
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn readable_password_files_are_warned_about_and_readable_secrets_refused() {
    use std::io::Write;
    let tmp = tempfile::tempdir().expect("temp dir");
    lab_certs(tmp.path());
    // A real password file, written by `ftpsgate passwd` (new files: 0600).
    let passwd = tmp.path().join("passwd");
    let mut child = Command::new(BIN)
        .args(["passwd", "--file"])
        .arg(&passwd)
        .arg("alice")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ftpsgate passwd");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "alice-Pw-check-1").expect("write password");
    drop(stdin);
    let out = child.wait_with_output().expect("ftpsgate passwd");
    assert!(out.status.success(), "passwd: {:?}", out);
    let secret = tmp.path().join("svc.secret");
    std::fs::write(&secret, "svc-Pw-check-2\n").expect("write secret");
    chmod(&secret, 0o600);
    let file = tmp.path().join("gw.yaml");
    std::fs::write(
        &file,
        r#"auth:
  providers:
    - { name: local, passwd_file: passwd }
listeners:
  - name: edge
    bind: "127.0.0.1:2021"
    tls: { mode: explicit, cert: gateway.pem, key: gateway.key }
    passive: { ports: "50000-50010" }
    backend: legacy
    routes:
      - { user: "*", backends: [legacy], auth: gateway, backend_login: { user: svc, password_file: svc.secret } }
backends:
  - name: legacy
    address: "127.0.0.1:2120"
"#,
    )
    .expect("write config");
    chmod(&tmp.path().join("gateway.key"), 0o600);
    let f = file.display().to_string();
    let warning = format!("warning: {f}: auth.providers[0].passwd_file: password file ");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&passwd).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "ftpsgate passwd creates the file for its owner alone"
        );
    }

    for mode in [0o640, 0o604] {
        chmod(&passwd, mode);
        let out = ftpsgate(&["check", "--config", &f]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with(&warning))
            .unwrap_or_else(|| panic!("mode {mode:o}: no warning in:\n{stderr}"));
        assert!(
            line.contains(&format!("is readable by group or others (mode {mode:03o})")),
            "{line}"
        );
        assert!(line.contains("chmod 600"), "{line}");
        // Neither the hash nor the secret is shown.
        assert!(!stderr.contains("$argon2id$"), "{stderr}");
        assert!(!stderr.contains("svc-Pw-check-2"), "{stderr}");
    }

    chmod(&passwd, 0o600);
    let out = ftpsgate(&["check", "--config", &f]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("warning:"), "{stderr}");

    // A secrets file others can read is not a warning but an error.
    chmod(&secret, 0o644);
    let out = ftpsgate(&["check", "--config", &f]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "listeners[0].routes[0].backend_login.password_file: secrets file svc.secret \
             is readable by group or others (mode 644)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("svc-Pw-check-2"), "{stderr}");
}
