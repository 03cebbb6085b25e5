//! The backend's working directory as the session sees it, so the transfer log
//! names files by the absolute path the backend resolved (`RETR a.txt` after
//! `CWD /pub` is `/pub/a.txt`).
//!
//! Evidence only: the directory changes when the backend confirms a `CWD`/`CDUP`
//! (`250`/`200`), and is taken as given from a `257` to `PWD` (RFC 959 §4.1.3:
//! the name in double quotes, `""` for a quote inside it). Until a `PWD` or an
//! absolute `CWD` was confirmed the directory is unknown and relative paths stay
//! relative. The gateway sends no command of its own for this.
//!
//! Pure: no I/O, no clock.

use crate::control::Reply;

/// A forwarded command that moves the working directory once the backend agrees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DirCommand {
    Pwd,
    Cwd(String),
    Cdup,
}

/// The directory effect of a client command, if any (`XPWD`/`XCWD`/`XCUP` too).
pub(crate) fn dir_command(verb: &str, raw: &[u8]) -> Option<DirCommand> {
    let text = String::from_utf8_lossy(raw);
    let arg = text.split_once(' ').map(|(_, a)| a.to_string());
    match verb {
        "PWD" | "XPWD" => Some(DirCommand::Pwd),
        "CDUP" | "XCUP" => Some(DirCommand::Cdup),
        "CWD" | "XCWD" => arg.filter(|a| !a.is_empty()).map(DirCommand::Cwd),
        _ => None,
    }
}

/// Applies `command` to `cwd` given the backend's final `reply`.
pub(crate) fn apply(cwd: &mut Option<String>, command: &DirCommand, reply: &Reply) {
    if !(200..300).contains(&reply.code) {
        return;
    }
    match command {
        DirCommand::Pwd if reply.code == 257 => {
            if let Some(dir) = quoted(&reply.text()) {
                if dir.starts_with('/') {
                    *cwd = Some(normalize(&dir));
                }
            }
        }
        DirCommand::Pwd => {}
        DirCommand::Cwd(arg) => *cwd = resolve_dir(cwd.as_deref(), arg),
        DirCommand::Cdup => *cwd = resolve_dir(cwd.as_deref(), ".."),
    }
}

/// `arg` as the backend resolves it against `cwd`: absolute when it is, or
/// when the directory is known; otherwise as written.
pub(crate) fn resolve(cwd: Option<&str>, arg: &str) -> String {
    if arg.starts_with('/') {
        return normalize(arg);
    }
    match cwd {
        Some(dir) if arg.is_empty() => dir.to_string(),
        Some(dir) => normalize(&format!("{dir}/{arg}")),
        None => arg.to_string(),
    }
}

fn resolve_dir(cwd: Option<&str>, arg: &str) -> Option<String> {
    let resolved = resolve(cwd, arg);
    resolved.starts_with('/').then_some(resolved)
}

/// The first double-quoted name of a `257` text, `""` read as one `"`.
fn quoted(text: &str) -> Option<String> {
    let start = text.find('"')? + 1;
    let mut out = String::new();
    let mut chars = text[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                chars.next();
                out.push('"');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// `/a/./b/../c` → `/a/c`; never above `/`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> Reply {
        Reply::new(code, text)
    }

    #[test]
    fn pwd_then_cwd_then_relative_file() {
        let mut cwd = None;
        assert_eq!(resolve(cwd.as_deref(), "a.txt"), "a.txt");
        apply(
            &mut cwd,
            &DirCommand::Pwd,
            &reply(257, "\"/home/al\"\"ice\" is the current directory"),
        );
        assert_eq!(cwd.as_deref(), Some("/home/al\"ice"));
        apply(
            &mut cwd,
            &DirCommand::Cwd("../pub/./x".into()),
            &reply(250, "ok"),
        );
        assert_eq!(cwd.as_deref(), Some("/home/pub/x"));
        // Refused: nothing changes (state changes on evidence).
        apply(
            &mut cwd,
            &DirCommand::Cwd("/secret".into()),
            &reply(550, "no"),
        );
        assert_eq!(cwd.as_deref(), Some("/home/pub/x"));
        apply(&mut cwd, &DirCommand::Cdup, &reply(200, "ok"));
        assert_eq!(resolve(cwd.as_deref(), "a.txt"), "/home/pub/a.txt");
        assert_eq!(resolve(cwd.as_deref(), ""), "/home/pub");
        assert_eq!(resolve(cwd.as_deref(), "/../etc//x"), "/etc/x");
    }

    #[test]
    fn absolute_cwd_makes_the_directory_known() {
        let mut cwd = None;
        apply(&mut cwd, &DirCommand::Cwd("sub".into()), &reply(250, "ok"));
        assert_eq!(cwd, None);
        apply(&mut cwd, &DirCommand::Cwd("/pub".into()), &reply(250, "ok"));
        assert_eq!(cwd.as_deref(), Some("/pub"));
    }

    #[test]
    fn commands_are_recognised() {
        assert_eq!(dir_command("XPWD", b"XPWD"), Some(DirCommand::Pwd));
        assert_eq!(
            dir_command("CWD", b"CWD my dir"),
            Some(DirCommand::Cwd("my dir".into()))
        );
        assert_eq!(dir_command("CWD", b"CWD"), None);
        assert_eq!(dir_command("MKD", b"MKD x"), None);
    }
}
