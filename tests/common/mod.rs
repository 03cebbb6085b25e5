//! Integration-test harness: real vsftpd, curl, lftp and suppaftp around ftpsgate.
//!
//! Every test gets its own temp dirs, free ports and passive port ranges; every daemon is
//! started in the foreground, recorded by PID and killed (with its process group) on drop.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod clients;
pub mod faultproxy;
pub mod gateway;
pub mod harness;
pub mod interop;
pub mod misbehaving;
pub mod netns;
pub mod process;
pub mod proftpd;
pub mod pureftpd;
pub mod raw;
pub mod scripted;
pub mod slapd;
pub mod suppa;
pub mod vsftpd;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;

pub use certs::Certs;
pub use clients::{Curl, Lftp, Output, Security};
pub use gateway::{start_gateway, Backend, BackendAuth, Frontend, GwEnv};
pub use raw::{RawFtp, Reply, Transfer};
pub use vsftpd::{Vsftpd, VsftpdMode};

/// The local account vsftpd logs the test clients in as.
pub const TEST_USER: &str = "ftpsgatetest";
/// Its password.
pub const TEST_PASS: &str = "ftpsgate-pass";
/// Its home directory (vsftpd's `local_root` is a per-test dir, not this one).
pub const TEST_HOME: &str = "/tmp/ftpsgate-test-home";

const TOOLS: &[&str] = &[
    "/usr/sbin/vsftpd",
    "curl",
    "lftp",
    "openssl",
    "flock",
    "useradd",
    "chpasswd",
    "id",
];

/// Fails with a clear message when a binary the harness needs is missing.
pub fn ensure_tools() {
    let mut missing = Vec::new();
    for tool in TOOLS {
        let found = if tool.starts_with('/') {
            Path::new(tool).is_file()
        } else {
            std::env::var_os("PATH")
                .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
                .unwrap_or(false)
        };
        if !found {
            missing.push(*tool);
        }
    }
    assert!(
        missing.is_empty(),
        "missing test tools {missing:?}: run .ci/run (or ./scripts/test) or `apt-get install vsftpd curl lftp openssl`"
    );
}

/// Creates (once, race-safe across parallel tests and test binaries) the local user vsftpd
/// authenticates, and returns `(user, pass)`.
///
/// The creation runs under `flock` on a lock file, so concurrent callers in other processes
/// wait for each other; within one process a `OnceLock` avoids repeating the work.
pub fn test_user() -> (&'static str, &'static str) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        ensure_tools();
        let script = format!(
            "set -e
             if ! id -u {u} >/dev/null 2>&1; then
               useradd --no-create-home --home-dir {h} --shell /bin/bash {u}
             fi
             mkdir -p {h}
             chown {u}: {h}
             echo '{u}:{p}' | chpasswd",
            u = TEST_USER,
            h = TEST_HOME,
            p = TEST_PASS
        );
        let out = Command::new("flock")
            .args(["/tmp/ftpsgate-test-user.lock", "sh", "-c", &script])
            .output()
            .expect("run flock/useradd");
        assert!(
            out.status.success(),
            "creating test user {TEST_USER} failed (are we root?): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
    (TEST_USER, TEST_PASS)
}

/// uid and gid of the test user.
pub fn test_user_ids() -> (u32, u32) {
    test_user();
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, TEST_USER])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    (id("-u"), id("-g"))
}

/// Makes `path` owned by the test user (files put into a vsftpd root must be readable by it).
pub fn chown_to_test_user(path: &Path) {
    let (uid, gid) = test_user_ids();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to test user");
}

/// Writes `data` to `root/name`, owned by the test user (what every server
/// fixture's `put_file` does); returns the path.
pub fn put_owned_file(root: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = root.join(name);
    std::fs::write(&path, data).unwrap();
    chown_to_test_user(&path);
    path
}

/// A deterministic pseudo-random file of `size` bytes at `root/name`, owned by
/// the test user (every server fixture's `make_file`); returns its SHA-256 hex.
pub fn make_owned_file(root: &Path, name: &str, size: usize) -> String {
    let path = root.join(name);
    let sha = make_file(&path, size);
    chown_to_test_user(&path);
    sha
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
/// Below the passive ranges [`pasv_range`] hands out (41000 and up): Linux's
/// ephemeral range (32768–60999) overlaps them, and a control port inside a
/// listener's own passive range is refused by the config check.
pub fn free_port() -> u16 {
    // Held until the loop ends so the kernel does not offer the same port again.
    let mut rejected = Vec::new();
    for _ in 0..2000 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < 41000 {
            return port;
        }
        rejected.push(l);
    }
    panic!("no free port below 41000 on 127.0.0.1");
}

/// An address on 127.0.0.1 where nothing listens (for "backend down" tests).
pub fn dead_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Width of each passive port range handed out by [`pasv_range`].
pub const PASV_RANGE_WIDTH: u16 = 50;
static NEXT_PASV: AtomicU16 = AtomicU16::new(41000);

/// A private passive port range `(first, last)` of 50 ports, unique within this test binary.
pub fn pasv_range() -> (u16, u16) {
    let first = NEXT_PASV.fetch_add(PASV_RANGE_WIDTH, Ordering::SeqCst);
    assert!(
        first < 65000 - PASV_RANGE_WIDTH,
        "passive port ranges exhausted"
    );
    (first, first + PASV_RANGE_WIDTH - 1)
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_bytes(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// Lower-case hex SHA-256 of a file's content (streamed, fine for big files).
pub fn sha256_file(path: &Path) -> String {
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("open {} for hashing: {e}", path.display()));
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).expect("read for hashing");
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    hex::encode(ctx.finish())
}

/// Deterministic pseudo-random bytes (xorshift64*, seeded by `seed` and `size`).
pub fn pseudo_random(size: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ (size as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// Writes `size` deterministic pseudo-random bytes to `path` and returns their SHA-256 hex.
pub fn make_file(path: &Path, size: usize) -> String {
    let seed = path
        .file_name()
        .map(|n| {
            n.as_encoded_bytes()
                .iter()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(*b as u64))
        })
        .unwrap_or(7);
    let data = pseudo_random(size, seed);
    let mut file =
        std::fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(&data).expect("write test file");
    sha256_bytes(&data)
}

/// A fresh temp dir that the unprivileged test user can traverse (mode 0755).
pub fn temp_dir(prefix: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(&format!("ftpsgate-{prefix}-"))
        .tempdir()
        .expect("create temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

pub const KIB: usize = 1024;
pub const MIB: usize = 1024 * 1024;
