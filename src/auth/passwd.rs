//! The password file of a `passwd_file` provider: one `USER:HASH` line per
//! user, `#` comments and blank lines ignored. HASH is an argon2 PHC string
//! (`$argon2id$v=19$m=…`, what `ftpsgate passwd` writes) or a bcrypt hash
//! (`$2b$`, `$2a$`, `$2y$`, e.g. from `htpasswd -B`).
//!
//! Parsing is pure and reports every bad line with its number (`check` shows
//! them); [`verify`] is CPU-bound (run it on a blocking thread) and spends the
//! same work on an unknown user as on a wrong password: it verifies against
//! [`dummy_hash`] then (equal timing, so answers do not reveal which names
//! exist). [`update`] is the file edit behind `ftpsgate passwd`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::Secret;

/// The users of one password file, by name: their hash strings. `Debug`
/// shows only how many (hashes stay out of logs).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Users(Arc<BTreeMap<String, String>>);

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Users({} entries)", self.0.len())
    }
}

impl Users {
    /// How many users the file names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The file names no user.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The file has a line for `user`.
    pub fn contains(&self, user: &str) -> bool {
        self.0.contains_key(user)
    }
}

/// Every entry of `text`, or every problem as `line N: …`.
pub fn parse(text: &str) -> Result<Users, Vec<String>> {
    let mut users = BTreeMap::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            errors.push(format!("line {n}: expected USER:HASH"));
            continue;
        };
        if let Err(e) = check_user(user) {
            errors.push(format!("line {n}: {e}"));
            continue;
        }
        if let Err(e) = check_hash(hash) {
            errors.push(format!("line {n}: user {user:?}: {e}"));
            continue;
        }
        if users.insert(user.to_owned(), hash.to_owned()).is_some() {
            errors.push(format!("line {n}: user {user:?} is listed twice"));
        }
    }
    if errors.is_empty() {
        Ok(Users(Arc::new(users)))
    } else {
        Err(errors)
    }
}

/// A name a password file can hold: non-empty, no `:`, no whitespace or
/// control characters.
pub fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("empty user name".into());
    }
    if user
        .chars()
        .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "user name {user:?} has ':', whitespace or a control character"
        ));
    }
    Ok(())
}

/// A hash this module can verify: argon2 (PHC string) or bcrypt.
pub fn check_hash(hash: &str) -> Result<(), String> {
    if hash.starts_with("$argon2") {
        let parsed = PasswordHash::new(hash).map_err(|e| format!("bad argon2 hash: {e}"))?;
        if !matches!(
            parsed.algorithm.as_str(),
            "argon2id" | "argon2i" | "argon2d"
        ) {
            return Err(format!("unknown argon2 variant {}", parsed.algorithm));
        }
        if parsed.hash.is_none() || parsed.salt.is_none() {
            return Err("argon2 hash without salt or output".into());
        }
        Ok(())
    } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        hash.parse::<bcrypt::HashParts>()
            .map(|_| ())
            .map_err(|e| format!("bad bcrypt hash: {e}"))
    } else {
        Err(
            "unknown hash: expected argon2id ($argon2id$…, `ftpsgate passwd`) or bcrypt ($2b$…)"
                .into(),
        )
    }
}

/// Whether `password` is `user`'s. CPU-bound (tens of milliseconds). An
/// unknown user costs one argon2id verification as well (of [`dummy_hash`]).
pub fn verify(users: &Users, user: &str, password: &Secret) -> bool {
    match users.0.get(user) {
        Some(hash) => verify_hash(hash, password),
        None => {
            let _ = verify_hash(dummy_hash(), password);
            false
        }
    }
}

fn verify_hash(hash: &str, password: &Secret) -> bool {
    if hash.starts_with("$argon2") {
        match PasswordHash::new(hash) {
            Ok(parsed) => Argon2::default()
                .verify_password(&password.0, &parsed)
                .is_ok(),
            Err(_) => false,
        }
    } else {
        bcrypt::verify(&password.0, hash).unwrap_or(false)
    }
}

/// An argon2id hash with the default parameters (what [`hash`] writes), for
/// unknown users. Computed once; the config build calls this so that the
/// first unknown user is not slower than the others.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        // A fixed salt is fine: nothing verifies true against it on purpose.
        SaltString::from_b64("ZnRwc2dhdGVkdW1teXNhbHQ")
            .ok()
            .and_then(|salt| {
                Argon2::default()
                    .hash_password(b"ftpsgate-unknown-user", &salt)
                    .ok()
                    .map(|h| h.to_string())
            })
            .unwrap_or_default()
    })
}

/// Errors of [`hash`] and [`update`].
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    /// The OS gave no random bytes for the salt.
    #[error("cannot get random bytes for the salt")]
    Random,
    /// argon2 refused the input.
    #[error("cannot hash: {0}")]
    Hash(String),
    /// The user name cannot go in the file (empty, `:` or control characters).
    #[error("{0}")]
    User(String),
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not in the `USER:HASH` format.
    #[error("{path}: {message}")]
    Bad {
        /// The file.
        path: String,
        /// What is wrong, with the line number.
        message: String,
    },
}

/// A new argon2id hash of `password` (default parameters, 16 random bytes of
/// salt from the OS).
pub fn hash(password: &Secret) -> Result<String, PasswdError> {
    use ring::rand::SecureRandom;
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswdError::Random)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswdError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(&password.0, &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswdError::Hash(e.to_string()))
}

/// `text` with `user`'s line set to `hash` (replaced in place, or appended);
/// comments and other lines are kept as they are.
pub fn with_entry(text: &str, user: &str, hash: &str) -> String {
    let mut out = String::with_capacity(text.len() + hash.len() + user.len() + 2);
    let mut replaced = false;
    for line in text.lines() {
        if line.split_once(':').is_some_and(|(u, _)| u == user) && !replaced {
            out.push_str(&format!("{user}:{hash}\n"));
            replaced = true;
        } else if !line.split_once(':').is_some_and(|(u, _)| u == user) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&format!("{user}:{hash}\n"));
    }
    out
}

/// Sets `user`'s password in the file at `path` (created with mode 0600 if
/// missing; otherwise its mode and owner are kept). Written to a temporary
/// file beside it and renamed over it, so a reader never sees half a file.
/// Returns whether the user was new.
pub fn update(path: &Path, user: &str, password: &Secret) -> Result<bool, PasswdError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    check_user(user).map_err(PasswdError::User)?;
    if password.0.is_empty() {
        return Err(PasswdError::User("empty password".into()));
    }
    let shown = path.display().to_string();
    let io = |source| PasswdError::Io {
        path: shown.clone(),
        source,
    };
    let (text, meta) = match std::fs::read_to_string(path) {
        Ok(t) => (t, Some(std::fs::metadata(path).map_err(io)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), None),
        Err(e) => return Err(io(e)),
    };
    let users = parse(&text).map_err(|errors| PasswdError::Bad {
        path: shown.clone(),
        message: errors.join("; "),
    })?;
    let new = !users.contains(user);
    let text = with_entry(&text, user, &hash(password)?);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("passwd");
    let tmp = dir.join(format!(".{name}.ftpsgate-new"));
    let mode = meta
        .as_ref()
        .map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    let written = (|| {
        f.write_all(text.as_bytes())?;
        if let Some(m) = &meta {
            // Best effort: only root may give the file back to another owner.
            let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
        }
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_hashes_verify_and_parse() {
        let h = hash(&Secret("s3cret".into())).unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        let users = parse(&format!("# comment\n\nalice:{h}\n")).unwrap();
        assert!(verify(&users, "alice", &Secret("s3cret".into())));
        assert!(!verify(&users, "alice", &Secret("wrong".into())));
        assert!(!verify(&users, "bob", &Secret("s3cret".into())));
        // Two hashes of one password differ (random salt).
        assert_ne!(h, hash(&Secret("s3cret".into())).unwrap());
    }

    #[test]
    fn bcrypt_entries_verify() {
        let h = bcrypt::hash("pw", 4).unwrap();
        let users = parse(&format!("carol:{h}\n")).unwrap();
        assert!(verify(&users, "carol", &Secret("pw".into())));
        assert!(!verify(&users, "carol", &Secret("px".into())));
    }

    #[test]
    fn bad_lines_are_reported_with_numbers() {
        let h = hash(&Secret("x".into())).unwrap();
        let text = format!("a:{h}\nnocolon\nb:$1$md5$abc\na:{h}\n:{h}\n");
        let errors = parse(&text).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("line 2:"), "{errors:?}");
        assert!(errors[1].starts_with("line 3:") && errors[1].contains("unknown hash"));
        assert!(errors[2].starts_with("line 4:") && errors[2].contains("twice"));
        assert!(errors[3].starts_with("line 5:") && errors[3].contains("empty"));
    }

    #[test]
    fn entries_are_replaced_in_place_or_appended() {
        let text = "# users\nalice:OLD\nbob:B\n";
        assert_eq!(
            with_entry(text, "alice", "NEW"),
            "# users\nalice:NEW\nbob:B\n"
        );
        assert_eq!(
            with_entry(text, "carol", "C"),
            "# users\nalice:OLD\nbob:B\ncarol:C\n"
        );
    }

    #[test]
    fn update_creates_then_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        assert!(update(&path, "alice", &Secret("one".into())).unwrap());
        assert!(!update(&path, "alice", &Secret("two".into())).unwrap());
        assert!(update(&path, "bob", &Secret("three".into())).unwrap());
        let users = parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(users.len(), 2);
        assert!(verify(&users, "alice", &Secret("two".into())));
        assert!(update(&path, "bad:name", &Secret("x".into())).is_err());
        assert!(update(&path, "carol", &Secret("".into())).is_err());
    }
}
