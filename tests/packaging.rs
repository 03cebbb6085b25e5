//! The Debian package as an admin gets it: `scripts/package` builds it once per
//! test run (profile `package-test`: the release profile without LTO, same
//! contents, a fraction of the build time; own target dir `target/packaging`, so
//! the nested cargo does not wait for the lock the running `cargo test` holds).
//! Then: `dpkg-deb -c`/`-I`, extraction into a scratch root (`dpkg-deb -x`),
//! sysusers/tmpfiles applied to that root, the postinst's first certificate,
//! `ftpsgate check` on the installed config, `systemd-analyze verify` and
//! `security --offline=yes` (≤ 2.0) on the installed unit, man pages rendered,
//! completions, and the production binary without the demo.
//!
//! The container image is built only when podman or buildah is installed
//! (skipped with the reason printed otherwise).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let what = format!("{cmd:?}");
    cmd.output()
        .unwrap_or_else(|e| panic!("{what}: {e} (./scripts/test installs the tools)"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let o = run(cmd);
    assert!(o.status.success(), "{what} failed:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Builds the package once (all tests of this file share it).
fn deb() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let target = root().join("target/packaging");
        let started = std::time::Instant::now();
        let o = run(Command::new(root().join("scripts/package"))
            .env("CARGO_TARGET_DIR", &target)
            .env("FTPSGATE_PROFILE", "package-test")
            .current_dir(root()));
        assert!(o.status.success(), "scripts/package failed:\n{}", text(&o));
        eprintln!("package built in {:.0?}", started.elapsed());
        let dir = target.join("debian");
        let version = env!("CARGO_PKG_VERSION");
        let found = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(&format!("ftpsgate_{version}-")) && n.ends_with(".deb")
                })
            });
        found.unwrap_or_else(|| panic!("no ftpsgate_{version}-*.deb in {}", dir.display()))
    })
}

/// The package extracted into a scratch root, with what postinst does applied:
/// the user (sysusers.d), the directories (tmpfiles.d) and the first certificate.
struct Installed {
    dir: tempfile::TempDir,
}

impl Installed {
    fn new() -> Installed {
        let dir = tempfile::Builder::new()
            .prefix("ftpsgate-pkg-")
            .tempdir()
            .expect("temp dir");
        ok(Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb())
            .arg(dir.path()));
        Installed { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn bin(&self) -> Command {
        Command::new(self.path("usr/bin/ftpsgate"))
    }
}

const PAYLOAD: &[&str] = &[
    "./usr/bin/ftpsgate",
    "./usr/lib/systemd/system/ftpsgate.service",
    "./usr/lib/sysusers.d/ftpsgate.conf",
    "./usr/lib/tmpfiles.d/ftpsgate.conf",
    "./etc/logrotate.d/ftpsgate",
    "./etc/ftpsgate/ftpsgate.yaml",
    "./usr/share/man/man1/ftpsgate.1.gz",
    "./usr/share/man/man5/ftpsgate.yaml.5.gz",
    "./usr/share/bash-completion/completions/ftpsgate",
    "./usr/share/zsh/vendor-completions/_ftpsgate",
    "./usr/share/fish/vendor_completions.d/ftpsgate.fish",
    "./usr/share/doc/ftpsgate/copyright",
    "./usr/share/doc/ftpsgate/examples/example.yaml",
];

#[test]
fn package_lists_its_files_and_control_data() {
    let listing = ok(Command::new("dpkg-deb").arg("-c").arg(deb()));
    for path in PAYLOAD {
        assert!(
            listing.lines().any(|l| l.ends_with(path)),
            "{path} not in the package:\n{listing}"
        );
    }
    let info = ok(Command::new("dpkg-deb").arg("-I").arg(deb()));
    eprintln!("{info}");
    assert!(info.contains("Package: ftpsgate"), "{info}");
    assert!(
        info.contains(&format!("Version: {}-", env!("CARGO_PKG_VERSION"))),
        "{info}"
    );
    for script in ["postinst", "prerm", "postrm", "conffiles"] {
        assert!(info.contains(script), "no {script}:\n{info}");
    }
    let ctrl = tempfile::tempdir().expect("temp dir");
    ok(Command::new("dpkg-deb")
        .arg("-e")
        .arg(deb())
        .arg(ctrl.path()));
    let conffiles = std::fs::read_to_string(ctrl.path().join("conffiles")).expect("conffiles");
    for f in ["/etc/ftpsgate/ftpsgate.yaml", "/etc/logrotate.d/ftpsgate"] {
        assert!(
            conffiles.lines().any(|l| l == f),
            "{f} not a conffile: {conffiles}"
        );
    }
    ok(Command::new("sh")
        .arg("-n")
        .arg(ctrl.path().join("postinst")));
    let size = std::fs::metadata(deb()).map(|m| m.len()).unwrap_or(0);
    eprintln!("{}: {} KiB", deb().display(), size / 1024);
}

#[test]
fn installed_config_checks_with_the_postinst_certificate() {
    let inst = Installed::new();
    // What postinst does, against the scratch root instead of /.
    let r = inst.dir.path();
    let root_arg = format!("--root={}", r.display());
    if Command::new("systemd-sysusers")
        .arg("--version")
        .output()
        .is_ok()
    {
        ok(Command::new("systemd-sysusers").arg(&root_arg));
        let passwd = std::fs::read_to_string(inst.path("etc/passwd")).unwrap_or_default();
        assert!(
            passwd.starts_with("ftpsgate:") || passwd.contains("\nftpsgate:"),
            "{passwd}"
        );
        ok(Command::new("systemd-tmpfiles")
            .arg(&root_arg)
            .arg("--create"));
        assert!(
            inst.path("var/log/ftpsgate").is_dir(),
            "tmpfiles.d made no log directory"
        );
    } else {
        eprintln!("SKIP sysusers/tmpfiles: systemd-sysusers not installed");
    }
    let tls = inst.path("etc/ftpsgate/tls");
    ok(inst
        .bin()
        .arg("self-signed")
        .arg("--dir")
        .arg(&tls)
        .args(["--name", "ftp.example.test"]));
    // A second run (package upgrade) must not replace the admin's certificate.
    let again = run(inst.bin().arg("self-signed").arg("--dir").arg(&tls));
    assert!(
        !again.status.success(),
        "self-signed replaced existing files"
    );
    let config = inst.path("etc/ftpsgate/ftpsgate.yaml");
    let out = ok(inst.bin().arg("check").arg("--config").arg(&config));
    assert!(out.contains(": ok"), "{out}");
    // The layout postinst leaves (key 0600, the service user's) draws no warning.
    let o = run(inst.bin().arg("check").arg("--config").arg(&config));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("warning:"), "{stderr}");
    let postinst = std::fs::read_to_string(root().join("deploy/debian/postinst")).unwrap();
    assert!(
        postinst.contains("chmod 0600 /etc/ftpsgate/tls/gateway.key"),
        "postinst leaves the key readable by others than its owner"
    );
}

#[test]
fn installed_binary_is_the_stripped_production_build() {
    let inst = Installed::new();
    let version = ok(inst.bin().arg("--version"));
    eprintln!("{version}");
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    assert!(
        version.contains("rustls") && version.contains("ring"),
        "{version}"
    );
    assert!(version.contains("features: none"), "{version}");
    let in_checkout = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root())
        .output()
        .is_ok_and(|o| o.status.success());
    if in_checkout {
        assert!(version.contains("git "), "built in a checkout: {version}");
    }
    // --no-default-features: no demo subcommand, no FTP server linked in.
    let demo = run(inst.bin().arg("demo"));
    assert!(!demo.status.success(), "demo exists in the package");
    let help = ok(inst.bin().arg("--help"));
    assert!(!help.contains("demo"), "{help}");
    let bytes = std::fs::read(inst.path("usr/bin/ftpsgate")).expect("binary");
    for marker in [&b"unftp_sbe_fs"[..], b"libunftp::server"] {
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "{} linked into the package binary",
            String::from_utf8_lossy(marker)
        );
    }
    // Stripped: no symbol table, no DWARF (section headers, not strings: std's
    // backtrace code contains the names ".debug_info" etc. as literals).
    let sections = elf_section_names(&bytes);
    assert!(
        sections.iter().any(|s| s == ".text"),
        "not an ELF binary? {sections:?}"
    );
    for section in [".symtab", ".debug_info", ".debug_line"] {
        assert!(
            !sections.iter().any(|s| s == section),
            "{section} present: not stripped ({sections:?})"
        );
    }
    eprintln!("binary: {} KiB (profile package-test)", bytes.len() / 1024);
}

/// Section names of a little-endian ELF64 file (enough for x86_64/aarch64).
fn elf_section_names(elf: &[u8]) -> Vec<String> {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a) as usize
        })
    };
    assert!(
        elf.starts_with(b"\x7fELF") && elf.get(4) == Some(&2),
        "not ELF64"
    );
    let (Some(shoff), Some(shentsize), Some(shnum), Some(shstrndx)) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e))
    else {
        panic!("truncated ELF header");
    };
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(shstrndx) + 0x18).expect("shstrtab offset");
    (0..shnum)
        .filter_map(|i| {
            let name = strtab + u32_at(header(i))?;
            let end = elf.get(name..)?.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&elf[name..name + end]).into_owned())
        })
        .collect()
}

#[test]
fn installed_unit_verifies_and_exposure_at_most_2() {
    let inst = Installed::new();
    let r = inst.dir.path();
    // systemd-analyze needs the distribution's units (sysinit.target & co.) and
    // the ExecReload binary inside the root.
    let units = inst.path("usr/lib/systemd/system");
    for lib in ["/usr/lib/systemd/system", "/lib/systemd/system"] {
        if let Ok(entries) = std::fs::read_dir(lib) {
            for e in entries.flatten() {
                let dest = units.join(e.file_name());
                if e.file_type().is_ok_and(|t| t.is_file()) && !dest.exists() {
                    let _ = std::fs::copy(e.path(), dest);
                }
            }
            break;
        }
    }
    std::fs::create_dir_all(inst.path("bin")).expect("bin");
    std::fs::copy("/bin/kill", inst.path("bin/kill")).expect("/bin/kill");
    let unit = std::fs::read_to_string(units.join("ftpsgate.service")).expect("unit");
    assert!(
        unit.contains("ExecStart=/usr/bin/ftpsgate run --config /etc/ftpsgate/ftpsgate.yaml"),
        "{unit}"
    );
    let root_arg = format!("--root={}", r.display());
    let o = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&root_arg)
        .arg("ftpsgate.service"));
    let out = text(&o);
    assert!(
        o.status.success() && out.trim().is_empty(),
        "systemd-analyze verify is not clean:\n{out}"
    );
    let o = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&root_arg)
        .arg("ftpsgate.service"));
    let out = text(&o);
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{out}"));
    eprintln!("{line}");
    let score: f64 = line
        .rsplit_once(':')
        .and_then(|(_, s)| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line:?}"));
    assert!(score <= 2.0, "exposure {score} > 2.0");
}

#[test]
fn installed_man_pages_render() {
    let inst = Installed::new();
    for (page, expect) in [
        ("usr/share/man/man1/ftpsgate.1.gz", "self-signed"),
        (
            "usr/share/man/man5/ftpsgate.yaml.5.gz",
            "require_data_reuse",
        ),
    ] {
        let o = run(Command::new("man")
            .args(["--warnings", "-E", "ascii", "-l"])
            .arg(inst.path(page))
            .env("MANWIDTH", "100")
            .env("MAN_KEEP_FORMATTING", "0"));
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "man -l {page}: {stderr}");
        assert!(
            stderr.trim().is_empty(),
            "{page}: groff warnings:\n{stderr}"
        );
        let plain: String = stdout.replace("\u{8}", "");
        assert!(
            plain.contains(expect) || stdout.contains(expect),
            "{page} lacks {expect}:\n{stdout}"
        );
    }
    // The policy page is the example, line by line (no drift possible).
    let o = run(Command::new("sh").arg("-c").arg(format!(
        "zcat {} | groff -man -Tascii -P-cbou",
        inst.path("usr/share/man/man5/ftpsgate.yaml.5.gz").display()
    )));
    let page = String::from_utf8_lossy(&o.stdout).into_owned();
    let example =
        std::fs::read_to_string(root().join("policies/example.yaml")).expect("example.yaml");
    let page_lines: Vec<&str> = page.lines().map(str::trim).collect();
    for line in example.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let bare = line.trim_start_matches('#').trim();
        assert!(
            page_lines.iter().any(|p| *p == line || *p == bare),
            "ftpsgate.yaml(5) lacks the example's line {line:?}"
        );
    }
}

#[test]
fn installed_completions_for_three_shells() {
    let inst = Installed::new();
    let bash = inst.path("usr/share/bash-completion/completions/ftpsgate");
    ok(Command::new("bash").arg("-n").arg(&bash));
    let script = std::fs::read_to_string(&bash).expect("bash completion");
    assert!(script.contains("self-signed") && script.contains("completions"));
    for (rel, shell) in [
        ("usr/share/zsh/vendor-completions/_ftpsgate", "zsh"),
        ("usr/share/fish/vendor_completions.d/ftpsgate.fish", "fish"),
    ] {
        let t = std::fs::read_to_string(inst.path(rel)).expect(rel);
        assert!(t.contains("check") && t.contains("config"), "{rel}");
        match Command::new(shell).arg("-n").arg(inst.path(rel)).output() {
            Ok(o) => assert!(o.status.success(), "{shell} -n {rel}: {}", text(&o)),
            Err(_) => {
                eprintln!("SKIP {shell} -n: {shell} not installed (file checked for content)")
            }
        }
    }
}

/// logrotate reopens the transfer log the way the README documents: a reload
/// (SIGHUP), no copytruncate. Parsed by logrotate itself when installed (with
/// the service user replaced by root: it does not exist on a test machine).
#[test]
fn installed_logrotate_reloads_and_parses() {
    let inst = Installed::new();
    let conf = std::fs::read_to_string(inst.path("etc/logrotate.d/ftpsgate")).expect("logrotate");
    assert!(conf.contains("/var/log/ftpsgate/xferlog"), "{conf}");
    assert!(conf.contains("systemctl reload ftpsgate"), "{conf}");
    assert!(!conf.contains("\tcopytruncate"), "{conf}");
    if Command::new("logrotate").arg("--version").output().is_err() {
        eprintln!("SKIP logrotate --debug: logrotate not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("ftpsgate");
    std::fs::write(&copy, conf.replace("ftpsgate ftpsgate", "root root")).expect("write");
    let o = run(Command::new("logrotate")
        .arg("--debug")
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg(&copy));
    let out = text(&o);
    assert!(
        o.status.success() && !out.contains("error:"),
        "logrotate rejects the file:\n{out}"
    );
}

/// The image, when a container tool exists. Not on this project's machines: no
/// podman/buildah there, and base images cannot be pulled.
#[test]
fn container_image_builds_when_a_tool_exists() {
    let tool = ["podman", "buildah"].into_iter().find(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(tool) = tool else {
        eprintln!("SKIP container image: neither podman nor buildah is installed");
        return;
    };
    let tag = "localhost/ftpsgate:packaging-test";
    let mut build = Command::new(tool);
    if tool == "buildah" {
        build.arg("bud");
    } else {
        build.arg("build");
    }
    let o = run(build
        .args(["-f", "deploy/container/Containerfile", "-t", tag, "."])
        .current_dir(root()));
    assert!(o.status.success(), "{tool} build failed:\n{}", text(&o));
    let size = ok(Command::new(tool).args(["image", "inspect", "--format", "{{.Size}}", tag]));
    eprintln!("image {tag}: {} bytes", size.trim());
    let user =
        ok(Command::new(tool).args(["image", "inspect", "--format", "{{.Config.User}}", tag]));
    assert!(!user.trim().is_empty() && user.trim() != "root" && !user.trim().starts_with("0"));
}
