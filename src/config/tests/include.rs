//! `include:` files (`include.rs`): lists appended, paths per file, errors naming
//! their file, refused includes.

use std::path::Path;

use super::*;

/// Writes `files` (relative path → text) under a fresh directory with dummy certs.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = certs();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    dir
}

fn load_errors(path: &Path) -> Vec<String> {
    match Config::load(path) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(ConfigErrors(list)) => list.iter().map(ToString::to_string).collect(),
    }
}

const TEAM_A: &str = "listeners:
  - name: team-a
    bind: \"127.0.0.1:2031\"
    tls: { mode: explicit, cert: ../certs/gateway.pem, key: ../certs/gateway.key }
    passive: { ports: \"51000-51009\" }
    backend: srv-a
access:
  - deny: [\"10.9.0.0/16\"]
";

const BACKENDS: &str = "backends:
  - { name: srv-a, address: \"127.0.0.1:2130\" }
";

#[test]
fn includes_append_lists_and_resolve_paths_per_file() {
    let dir = tree(&[
        (
            "main.yaml",
            &format!(
                "include: [teams/a.yaml, backends.yaml]\naccess: [ {{ allow: [\"10.0.0.0/8\"] }} ]\n{}",
                minimal("", "")
            ),
        ),
        ("teams/a.yaml", TEAM_A),
        ("backends.yaml", BACKENDS),
    ]);
    let config = match Config::load(&dir.path().join("main.yaml")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["edge", "team-a"]);
    let backends: Vec<&str> = config.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(backends, ["legacy", "srv-a"]);
    assert_eq!(config.access.len(), 2);
    assert_eq!(config.access[0].action, Action::Allow);
    assert_eq!(config.access[1].action, Action::Deny);
    // ../certs is relative to teams/, i.e. the certs/ next to main.yaml.
    assert_eq!(
        config.listeners[1].tls.cert,
        Some(dir.path().join("teams/../certs/gateway.pem"))
    );
    assert_eq!(
        config.sources,
        [
            dir.path().join("main.yaml"),
            dir.path().join("teams/a.yaml"),
            dir.path().join("backends.yaml"),
        ]
    );
}

#[test]
fn errors_in_included_files_name_the_file() {
    let dir = tree(&[
        (
            "main.yaml",
            &format!("include: [teams/a.yaml]\n{}", minimal("", "")),
        ),
        (
            "teams/a.yaml",
            &TEAM_A.replace("team-a", "edge").replace(
                "    backend: srv-a\n",
                "    backend: srv-a\n    routes: [ { user: x, backends: [legacy, nope] } ]\n",
            ),
        ),
    ]);
    assert_eq!(
        load_errors(&dir.path().join("main.yaml")),
        [
            "teams/a.yaml: listeners[0].name (line 2): duplicate listener name \"edge\" (first defined in the top file)",
            "teams/a.yaml: listeners[0].backend (line 6): backend \"srv-a\" is not defined",
            "teams/a.yaml: listeners[0].routes[0].backends[1] (line 7): backend \"nope\" is not defined",
        ]
    );
}

#[test]
fn include_problems_stop_the_load() {
    let dir = tree(&[
        (
            "main.yaml",
            &format!(
                "include: [missing.yaml, a.yaml, top-only.yaml, bad.yaml]\n{}",
                minimal("", "")
            ),
        ),
        ("a.yaml", "include: [sub/b.yaml]\n"),
        ("sub/b.yaml", "include: [../a.yaml, ../main.yaml]\n"),
        ("top-only.yaml", "timeouts: { idle: 5s }\nlimits: {}\n"),
        ("bad.yaml", "listeners: [\n"),
    ]);
    let errors = load_errors(&dir.path().join("main.yaml"));
    assert_eq!(
        errors[0],
        "include[0]: included file missing.yaml does not exist"
    );
    assert_eq!(
        errors[1],
        "sub/b.yaml: include[0]: include cycle: a.yaml -> sub/b.yaml -> a.yaml"
    );
    assert_eq!(
        errors[2],
        "sub/b.yaml: include[1]: include cycle: main.yaml -> a.yaml -> sub/b.yaml -> main.yaml"
    );
    assert_eq!(
        errors[3],
        "top-only.yaml: timeouts: only allowed in the top file (included files may hold listeners, backends, access and include)"
    );
    assert!(
        errors[4].starts_with("top-only.yaml: limits: "),
        "{errors:?}"
    );
    assert!(errors[5].starts_with("bad.yaml:"), "{errors:?}");
    assert_eq!(errors.len(), 6, "{errors:?}");
}

#[test]
fn duplicate_backends_across_files() {
    let dir = tree(&[
        (
            "main.yaml",
            &format!("include: [b1.yaml, b2.yaml]\n{}", minimal("", "")),
        ),
        ("b1.yaml", BACKENDS),
        ("b2.yaml", BACKENDS),
    ]);
    assert_eq!(
        load_errors(&dir.path().join("main.yaml")),
        ["b2.yaml: backends[0].name (line 2): duplicate backend name \"srv-a\" (first defined in b1.yaml)"]
    );
}

// Found while writing the `config` fuzz target (`fuzz/`) and reproduced with it:
// `include: [/dev/zero]` was read until memory ran out (libFuzzer: out-of-memory),
// and `/dev/stdin` or a FIFO hung `check`.
#[test]
fn include_of_a_device_or_directory_is_refused_without_reading_it() {
    let dir = dir_with(&["sub/x.yaml"]);
    let yaml = format!("include: [/dev/zero, sub]\n{}", minimal("", ""));
    assert_eq!(
        errors(&yaml, dir.path()),
        [
            "include[0]: included file /dev/zero is not a regular file",
            "include[1]: included file sub is not a regular file",
        ]
    );
}
