//! `include:` — gathering the files of one configuration before it is built.
//!
//! The top file may include others (paths relative to the including file), which may
//! include more. Each included file contributes `listeners`, `backends` and global
//! `access` rules, appended after those of the file that includes it, in `include`
//! order (depth first). Everything else (`timeouts`, `limits`, `metrics`, …) belongs
//! to the top file only, so a setting has exactly one place it can come from.
//!
//! Problems found here (missing file, cycle, syntax error, top-only section) stop the
//! load before the semantic build, so a missing file does not cascade into "backend
//! is not defined" errors.

use std::path::{Path, PathBuf};

use super::lines::LineMap;
use super::raw::{RawAccessRule, RawBackend, RawConfig, RawListener};
use super::{syntax_error, ConfigError};

/// One file's share of the configuration.
pub(crate) struct Part {
    /// `None` for the top file; else the file's path relative to the top file's
    /// directory, which prefixes the key paths of its errors.
    pub label: Option<String>,
    /// Directory relative paths in this file are resolved against.
    pub base_dir: PathBuf,
    /// Lines of this file's values, by key path (without the label).
    pub lines: LineMap,
    pub listeners: Vec<RawListener>,
    pub backends: Vec<RawBackend>,
    pub access: Vec<RawAccessRule>,
}

/// The configuration gathered from every file: the top file's sections, and the
/// lists of every file in order (`parts[0]` is the top file).
pub(crate) struct Tree {
    pub top: RawConfig,
    pub parts: Vec<Part>,
    /// Files read for `include`, in load order (the top file is added by the caller).
    pub sources: Vec<PathBuf>,
    /// Unknown and repeated keys of the included files; they do not stop the build.
    pub key_errors: Vec<ConfigError>,
}

/// Follows `top`'s includes. `top_file` is the top file's path when there is one
/// (for cycle detection); `base_dir` is absolute.
pub(crate) fn gather(
    mut top: RawConfig,
    yaml: &str,
    base_dir: &Path,
    top_file: Option<&Path>,
) -> Result<Tree, Vec<ConfigError>> {
    let includes = top.include.take().unwrap_or_default();
    let mut g = Gatherer {
        top_dir: base_dir.to_path_buf(),
        parts: vec![Part {
            label: None,
            base_dir: base_dir.to_path_buf(),
            lines: LineMap::of(yaml),
            listeners: top.listeners.take().unwrap_or_default(),
            backends: top.backends.take().unwrap_or_default(),
            access: top.access.take().unwrap_or_default(),
        }],
        sources: Vec::new(),
        errors: Vec::new(),
        key_errors: Vec::new(),
    };
    let top_name = top_file.map_or_else(
        || super::INLINE_SOURCE.to_owned(),
        |p| display_name(p, base_dir),
    );
    let chain: Vec<(PathBuf, String)> = top_file
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(|c| (c, top_name))
        .into_iter()
        .collect();
    g.follow(&includes, base_dir, "", &chain);
    if g.errors.is_empty() {
        Ok(Tree {
            top,
            parts: g.parts,
            sources: g.sources,
            key_errors: g.key_errors,
        })
    } else {
        let mut all = g.key_errors;
        all.extend(g.errors);
        Err(all)
    }
}

struct Gatherer {
    top_dir: PathBuf,
    parts: Vec<Part>,
    sources: Vec<PathBuf>,
    errors: Vec<ConfigError>,
    key_errors: Vec<ConfigError>,
}

impl Gatherer {
    /// Loads each of `includes` (written in a file living in `dir`, whose errors
    /// are prefixed by `prefix`); `chain` is the stack of files being included,
    /// canonical path and display name.
    fn follow(
        &mut self,
        includes: &[String],
        dir: &Path,
        prefix: &str,
        chain: &[(PathBuf, String)],
    ) {
        for (i, written) in includes.iter().enumerate() {
            let key = format!("{prefix}include[{i}]");
            let error = |message: String| ConfigError {
                path: key.clone(),
                line: None,
                column: None,
                key: None,
                message,
            };
            if written.is_empty() {
                self.errors.push(error("must not be empty".into()));
                continue;
            }
            let path = dir.join(written);
            let canonical = match std::fs::canonicalize(&path) {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.errors
                        .push(error(format!("included file {written} does not exist")));
                    continue;
                }
                Err(e) => {
                    self.errors
                        .push(error(format!("cannot access included file {written}: {e}")));
                    continue;
                }
            };
            // Only regular files: reading `/dev/zero` or `/dev/stdin` (or a FIFO)
            // would never end, so `check` and a reload would hang or run out of
            // memory instead of reporting the mistake.
            if !std::fs::metadata(&canonical).is_ok_and(|m| m.is_file()) {
                self.errors.push(error(format!(
                    "included file {written} is not a regular file"
                )));
                continue;
            }
            let name = display_name(&path, &self.top_dir);
            if let Some(start) = chain.iter().position(|(c, _)| *c == canonical) {
                let cycle: Vec<&str> = chain[start..]
                    .iter()
                    .map(|(_, n)| n.as_str())
                    .chain([name.as_str()])
                    .collect();
                self.errors
                    .push(error(format!("include cycle: {}", cycle.join(" -> "))));
                continue;
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    self.errors
                        .push(error(format!("cannot read included file {written}: {e}")));
                    continue;
                }
            };
            let name_for_keys = display_name(&path, &self.top_dir);
            if let Some(t) = super::lines::tree(&text) {
                self.key_errors
                    .extend(super::schema::check(&t, &name_for_keys));
            }
            let mut raw: RawConfig =
                match serde_saphyr::from_str_with_options(&text, super::read_options()) {
                    Ok(r) => r,
                    Err(e) => {
                        self.errors.push(syntax_error(&e, &name));
                        continue;
                    }
                };
            for (section, given) in [
                ("timeouts", raw.timeouts.is_some()),
                ("metrics", raw.metrics.is_some()),
                ("transfer_log", raw.transfer_log.is_some()),
                ("limits", raw.limits.is_some()),
                ("shutdown", raw.shutdown.is_some()),
                ("reload", raw.reload.is_some()),
                ("control", raw.control.is_some()),
                ("auth", raw.auth.is_some()),
                ("tunnels", raw.tunnels.is_some()),
                ("connect", raw.connect.is_some()),
            ] {
                if given {
                    self.errors.push(ConfigError {
                        path: format!("{name}: {section}"),
                        line: None,
                        column: None,
                        key: None,
                        message: "only allowed in the top file (included files may hold \
                                  listeners, backends, access and include)"
                            .into(),
                    });
                }
            }
            let file_dir = path.parent().unwrap_or(dir).to_path_buf();
            self.sources.push(path.clone());
            self.parts.push(Part {
                label: Some(name.clone()),
                base_dir: file_dir.clone(),
                lines: LineMap::of(&text),
                listeners: raw.listeners.take().unwrap_or_default(),
                backends: raw.backends.take().unwrap_or_default(),
                access: raw.access.take().unwrap_or_default(),
            });
            let mut inner = chain.to_vec();
            inner.push((canonical, name.clone()));
            let nested = raw.include.take().unwrap_or_default();
            self.follow(&nested, &file_dir, &format!("{name}: "), &inner);
        }
    }
}

/// `path` relative to the top file's directory when it lies below it, as operators
/// wrote it; else the whole path.
fn display_name(path: &Path, top_dir: &Path) -> String {
    let path = lexically_normal(path);
    path.strip_prefix(top_dir)
        .unwrap_or(&path)
        .display()
        .to_string()
}

/// `path` with `.` and `name/..` removed, for display only (symlinks are not
/// followed, so this is not used to compare files).
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
