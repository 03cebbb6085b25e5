//! Kernel pinholes (opt-in, `passive.nftables`): every pinhole is mirrored as
//! an element `client address . port` (with a timeout) of an nftables set, so
//! a host firewall that drops the passive range except for that set lets
//! exactly the announced client through — everything else is dropped by the
//! kernel before it reaches the gateway. The element is deleted when the data
//! connection arrives or the pinhole expires (and times out by itself if the
//! gateway dies). Uses the `nft` command; a ready ruleset is in `deploy/nftables/`.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::Nftables;

#[derive(Debug, Clone)]
pub struct KernelPinholes {
    family: String,
    table: String,
    set: String,
    set6: Option<String>,
}

impl KernelPinholes {
    /// Check that the sets exist and can be listed (startup, `check`).
    pub fn open(cfg: &Nftables) -> Result<KernelPinholes, String> {
        let mut parts = cfg.table.split_whitespace();
        let (family, table) = match (parts.next(), parts.next(), parts.next()) {
            (Some(f), Some(t), None) => (f.to_owned(), t.to_owned()),
            (Some(t), None, None) => ("inet".to_owned(), t.to_owned()),
            _ => return Err(format!("table {:?} is not \"FAMILY NAME\"", cfg.table)),
        };
        let k = KernelPinholes {
            family,
            table,
            set: cfg.set.clone(),
            set6: cfg.set6.clone(),
        };
        for set in std::iter::once(&k.set).chain(k.set6.iter()) {
            let out = std::process::Command::new("nft")
                .args(["list", "set", &k.family, &k.table, set])
                .output()
                .map_err(|e| format!("cannot run nft: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "nft list set {} {} {set}: {}",
                    k.family,
                    k.table,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        Ok(k)
    }

    fn set_for(&self, ip: IpAddr) -> Option<&str> {
        match ip.to_canonical() {
            IpAddr::V4(_) => Some(&self.set),
            IpAddr::V6(_) => self.set6.as_deref(),
        }
    }

    async fn nft(&self, verb: &str, set: &str, element: String) -> Result<(), String> {
        let out = tokio::process::Command::new("nft")
            .args([verb, "element", &self.family, &self.table, set, &element])
            .output()
            .await
            .map_err(|e| format!("cannot run nft: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Open the kernel side of a pinhole for `lifetime`.
    pub async fn add(&self, ip: IpAddr, port: u16, lifetime: Duration) -> Result<(), String> {
        let Some(set) = self.set_for(ip) else {
            return Err("no set6 configured for IPv6 clients".into());
        };
        let secs = lifetime.as_secs().max(1);
        let ip = ip.to_canonical();
        self.nft("add", set, format!("{{ {ip} . {port} timeout {secs}s }}"))
            .await
    }

    /// Close it again (used, or expired). Errors are ignored: the element may
    /// already have timed out.
    pub async fn remove(&self, ip: IpAddr, port: u16) {
        if let Some(set) = self.set_for(ip) {
            let ip = ip.to_canonical();
            if let Err(e) = self
                .nft("delete", set, format!("{{ {ip} . {port} }}"))
                .await
            {
                tracing::debug!(error = %e, "nft delete element");
            }
        }
    }
}
