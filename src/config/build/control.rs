//! `control`: the local control socket for `ftpsgate ctl` — its path, file
//! mode, owner and group. Owner and group names are looked up here, once, so
//! `check` reports an unknown one with its line; the runtime gets numeric ids.

use super::{Builder, Reported};
use crate::config::raw::RawControl;
use crate::config::typed::ControlConfig;

/// Default of `control.mode`: owner and group may read and write.
const DEFAULT_MODE: u32 = 0o660;

impl<'a> Builder<'a> {
    /// `control`: `socket` is required; `mode` octal; `owner`/`group` a name
    /// (from /etc/passwd, /etc/group) or a number.
    pub(super) fn control(&mut self, raw: &RawControl) -> Result<ControlConfig, Reported> {
        let base = self.base_dir;
        let socket = self.required("control.socket", raw.socket.as_deref(), |s| {
            if s.is_empty() {
                Err("must not be empty".to_string())
            } else {
                Ok(base.join(s))
            }
        });
        let mode = self.optional("control.mode", raw.mode.as_deref(), parse_mode);
        let owner = self.optional("control.owner", raw.owner.as_deref(), |s| {
            lookup_id(s, "/etc/passwd", "user")
        });
        let group = self.optional("control.group", raw.group.as_deref(), |s| {
            lookup_id(s, "/etc/group", "group")
        });
        Ok(ControlConfig {
            socket: socket?,
            mode: mode?.unwrap_or(DEFAULT_MODE),
            owner: owner?,
            group: group?,
        })
    }
}

/// `"0660"` or `"660"`: octal permission bits, at most `0777`.
pub(super) fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(format!("{s:?} is not an octal file mode (e.g. \"0660\")")),
    }
}

/// A numeric id, or a name looked up in `db` (`/etc/passwd` or `/etc/group`:
/// `name:x:id:…`).
fn lookup_id(s: &str, db: &str, kind: &str) -> Result<u32, String> {
    if let Ok(id) = s.parse::<u32>() {
        return Ok(id);
    }
    let text = std::fs::read_to_string(db).map_err(|e| format!("cannot read {db}: {e}"))?;
    find_id(&text, s).ok_or_else(|| format!("no {kind} named {s:?} in {db}"))
}

fn find_id(db: &str, name: &str) -> Option<u32> {
    db.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next() == Some(name))
            .then(|| f.nth(1).and_then(|id| id.parse().ok()))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_up_to_0777() {
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert!(parse_mode("0888").is_err());
        assert!(parse_mode("01777").is_err());
        assert!(parse_mode("rw").is_err());
    }

    #[test]
    fn ids_are_found_by_name() {
        let db = "root:x:0:0:root:/root:/bin/sh\nftpsgate:x:998:997::/:/usr/sbin/nologin\n";
        assert_eq!(find_id(db, "ftpsgate"), Some(998));
        assert_eq!(find_id(db, "root"), Some(0));
        assert_eq!(find_id(db, "nobody"), None);
        assert_eq!(find_id("adm:x:4:syslog\n", "adm"), Some(4));
    }
}
