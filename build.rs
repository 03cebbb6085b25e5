//! Build script: records the git commit for `ftpsgate --version`.
//!
//! Sets `FTPSGATE_GIT_COMMIT` to the short commit hash when built from a git
//! checkout, and to an empty string
//! otherwise (a source tarball, a container build without `.git`, no `git`
//! installed): the build never fails for want of git.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=FTPSGATE_GIT_COMMIT");
    let commit = match std::env::var("FTPSGATE_GIT_COMMIT") {
        // Packagers building outside a checkout may pass the commit in.
        Ok(c) => c,
        Err(_) => git_commit().unwrap_or_default(),
    };
    println!("cargo:rustc-env=FTPSGATE_GIT_COMMIT={commit}");
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    Some(s.trim().to_owned())
}

fn git_commit() -> Option<String> {
    // No `-dirty` mark: it would need the index watched, and then every
    // `git add` would rebuild the crate.
    let hash = git(&["rev-parse", "--short=12", "HEAD"])?;
    watch_head();
    Some(hash)
}

/// Re-run when HEAD moves. Only existing files are named: cargo re-runs the
/// script on every build for a path that does not exist.
fn watch_head() {
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        files.push(Path::new(&dir).join("HEAD"));
    }
    if let (Some(common), Some(head_ref)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        files.push(Path::new(&common).join(&head_ref));
        files.push(Path::new(&common).join("packed-refs"));
    }
    for f in files.iter().filter(|f| f.exists()) {
        println!("cargo:rerun-if-changed={}", f.display());
    }
}
