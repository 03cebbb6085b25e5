//! Kernel pinholes (opt-in, `passive.nftables`): every pinhole is mirrored as
//! an element `client address . port` (with a timeout) of an nftables set, so
//! a host firewall that drops the passive range except for that set lets
//! exactly the announced client through — everything else is dropped by the
//! kernel before it reaches the gateway. The element is deleted when the data
//! connection arrives or the pinhole expires or is dropped (and times out by
//! itself if the gateway dies). A ready ruleset is in `deploy/nftables/`.
//!
//! The gateway talks nf_tables' netlink protocol itself (one `NETLINK_NETFILTER`
//! socket per listener, one batch `BEGIN, NEWSETELEM|DELSETELEM, END` per
//! element, answered by the kernel before `send` returns): about 4 µs of CPU
//! per pinhole (add + delete) instead of about 5 ms for two `nft` processes
//! (bench/README.md, "Kernel pinholes"). Only the few messages needed
//! are built here (see [`msg`]); the layout is the one `nft --debug=mnl add
//! element` prints, and the unit tests pin it byte for byte.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Nftables;

/// How long to wait for the kernel's answer. nfnetlink handles a batch inside
/// the `send` call and queues its acknowledgement before `send` returns, so the
/// read finds it at once; this only bounds a kernel that never answers. The
/// calls are made on a runtime worker (they take microseconds), so the bound is
/// kept short: a silent kernel stalls that worker for at most this long per
/// pinhole, and the pinhole is refused (`PinholeError::Kernel`) or its element
/// left to expire by its own timeout.
const REPLY_TIMEOUT: Duration = Duration::from_millis(250);

/// Kernel pinholes of one listener: its set(s) and a netlink socket.
#[derive(Debug)]
pub struct KernelPinholes {
    family_name: String,
    family: u8,
    table: String,
    set: String,
    set6: Option<String>,
    conn: Mutex<Conn>,
    seq: AtomicU32,
}

#[derive(Debug)]
struct Conn {
    sock: Socket,
    buf: Vec<u8>,
}

/// nftables family name → `NFPROTO_*`.
fn family_number(name: &str) -> Option<u8> {
    Some(match name {
        "inet" => msg::NFPROTO_INET,
        "ip" => msg::NFPROTO_IPV4,
        "ip6" => msg::NFPROTO_IPV6,
        "arp" => 3,
        "netdev" => 5,
        "bridge" => 7,
        _ => return None,
    })
}

impl KernelPinholes {
    /// Open the netlink socket and check that the sets exist, have the
    /// `ADDR . inet_service` key and `flags timeout` (startup, `check`).
    pub fn open(cfg: &Nftables) -> Result<KernelPinholes, String> {
        let mut parts = cfg.table.split_whitespace();
        let (family_name, table) = match (parts.next(), parts.next(), parts.next()) {
            (Some(f), Some(t), None) => (f.to_owned(), t.to_owned()),
            (Some(t), None, None) => ("inet".to_owned(), t.to_owned()),
            _ => return Err(format!("table {:?} is not \"FAMILY NAME\"", cfg.table)),
        };
        let family = family_number(&family_name)
            .ok_or_else(|| format!("table {:?}: unknown nftables family", cfg.table))?;
        let sock = Socket::new(
            Domain::from(msg::AF_NETLINK),
            Type::RAW,
            Some(Protocol::from(msg::NETLINK_NETFILTER)),
        )
        .map_err(|e| format!("cannot open a netfilter netlink socket: {e}"))?;
        sock.set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(|e| format!("netlink socket: {e}"))?;
        let k = KernelPinholes {
            family_name,
            family,
            table,
            set: cfg.set.clone(),
            set6: cfg.set6.clone(),
            conn: Mutex::new(Conn {
                sock,
                buf: vec![0; 64 * 1024],
            }),
            seq: AtomicU32::new(1),
        };
        let sets = std::iter::once((&k.set, msg::KEY_LEN_V4))
            .chain(k.set6.iter().map(|s| (s, msg::KEY_LEN_V6)));
        for (set, key_len) in sets {
            let what = format!("nftables set {} {} {set}", k.family_name, k.table);
            let info = k.get_set(set).map_err(|e| format!("{what}: {e}"))?;
            if info.key_len != Some(key_len) {
                return Err(format!(
                    "{what}: key is {} bytes, not {key_len} (type {} . inet_service)",
                    info.key_len.map_or("?".into(), |l| l.to_string()),
                    if key_len == msg::KEY_LEN_V4 {
                        "ipv4_addr"
                    } else {
                        "ipv6_addr"
                    }
                ));
            }
            if info.flags.unwrap_or(0) & msg::NFT_SET_TIMEOUT == 0 {
                return Err(format!("{what}: has no \"flags timeout\""));
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

    /// Next `n` sequence numbers (the first is returned).
    fn seqs(&self, n: u32) -> u32 {
        self.seq.fetch_add(n, Ordering::Relaxed)
    }

    /// Send `req` (messages numbered `first ..= first + span`) and wait for
    /// the kernel's answer to any of them; `Ok(())` on the acknowledgement of
    /// `acked`, the first error otherwise. Replies of other types are passed
    /// to `on_reply`.
    fn transact(
        &self,
        req: &[u8],
        first: u32,
        span: u32,
        acked: u32,
        mut on_reply: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let Conn { sock, buf } = &mut *conn;
        let sent = (&*sock).write(req)?;
        if sent != req.len() {
            return Err(io::Error::other("short netlink send"));
        }
        loop {
            let n = match (&*sock).read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            for m in msg::Messages::new(&buf[..n]) {
                let m = m.map_err(io::Error::other)?;
                if m.seq.wrapping_sub(first) > span {
                    continue; // A late answer to an earlier, timed-out request.
                }
                match m.kind {
                    msg::NLMSG_ERROR => {
                        let code = msg::error_code(m.payload).map_err(io::Error::other)?;
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        if m.seq == acked {
                            return Ok(());
                        }
                    }
                    msg::NLMSG_DONE => {}
                    kind => on_reply(kind, m.payload),
                }
            }
        }
    }

    fn get_set(&self, set: &str) -> io::Result<msg::SetInfo> {
        let seq = self.seqs(1);
        let req = msg::get_set(seq, self.family, &self.table, set);
        let mut info = None;
        self.transact(&req, seq, 0, seq, |kind, payload| {
            if kind == msg::NFT_NEWSET {
                info = Some(msg::parse_set(payload));
            }
        })?;
        info.ok_or_else(|| io::Error::other("no answer to GETSET"))
    }

    /// One element added (`Some(timeout)`) or deleted, in its own batch.
    fn element(&self, ip: IpAddr, port: u16, timeout: Option<Duration>) -> Result<(), String> {
        let Some(set) = self.set_for(ip) else {
            return Err("no set6 configured for IPv6 clients".into());
        };
        let seq = self.seqs(3);
        let req = msg::element_batch(seq, self.family, &self.table, set, ip, port, timeout);
        self.transact(&req, seq, 2, seq.wrapping_add(1), |_, _| {})
            .map_err(|e| {
                format!(
                    "{} element {} {} {set} {{ {} . {port} }}: {e}",
                    if timeout.is_some() { "add" } else { "delete" },
                    self.family_name,
                    self.table,
                    ip.to_canonical()
                )
            })
    }

    /// Open the kernel side of a pinhole for `lifetime` (at least 1 s).
    pub fn add(&self, ip: IpAddr, port: u16, lifetime: Duration) -> Result<(), String> {
        self.element(ip, port, Some(lifetime.max(Duration::from_secs(1))))
    }

    /// Close it again (used, expired or dropped). Errors are only logged at
    /// debug level: the element may already have timed out.
    pub fn remove(&self, ip: IpAddr, port: u16) {
        if let Err(e) = self.element(ip, port, None) {
            tracing::debug!(error = %e, "nftables delete element");
        }
    }
}

/// nfnetlink / nf_tables message building and parsing (the subset used here;
/// constants from `linux/netlink.h`, `linux/netfilter/nfnetlink.h` and
/// `linux/netfilter/nf_tables.h`).
mod msg {
    use std::net::IpAddr;
    use std::time::Duration;

    pub const AF_NETLINK: i32 = 16;
    pub const NETLINK_NETFILTER: i32 = 12;

    pub const NLMSG_ERROR: u16 = 2;
    pub const NLMSG_DONE: u16 = 3;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_ACK: u16 = 0x4;
    const NLM_F_CREATE: u16 = 0x400;
    const NLA_F_NESTED: u16 = 0x8000;
    const NLA_TYPE_MASK: u16 = 0x3fff;

    const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
    const NFNL_MSG_BATCH_END: u16 = 0x11;
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFNETLINK_V0: u8 = 0;
    pub const NFPROTO_INET: u8 = 1;
    pub const NFPROTO_IPV4: u8 = 2;
    pub const NFPROTO_IPV6: u8 = 10;

    const fn nft(msg: u16) -> u16 {
        (NFNL_SUBSYS_NFTABLES << 8) | msg
    }
    pub const NFT_NEWSET: u16 = nft(9);
    const NFT_GETSET: u16 = nft(10);
    const NFT_NEWSETELEM: u16 = nft(12);
    const NFT_DELSETELEM: u16 = nft(14);

    const NFTA_SET_TABLE: u16 = 1;
    const NFTA_SET_NAME: u16 = 2;
    const NFTA_SET_FLAGS: u16 = 3;
    const NFTA_SET_KEY_LEN: u16 = 5;
    pub const NFT_SET_TIMEOUT: u32 = 0x10;

    const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
    const NFTA_SET_ELEM_LIST_SET: u16 = 2;
    const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
    const NFTA_LIST_ELEM: u16 = 1;
    const NFTA_SET_ELEM_KEY: u16 = 1;
    const NFTA_SET_ELEM_TIMEOUT: u16 = 4;
    const NFTA_DATA_VALUE: u16 = 1;

    /// `ipv4_addr . inet_service`: each part in a 4-byte register.
    pub const KEY_LEN_V4: u32 = 8;
    /// `ipv6_addr . inet_service`.
    pub const KEY_LEN_V6: u32 = 20;

    /// A netlink message under construction (appended to a batch buffer).
    struct Builder<'a> {
        buf: &'a mut Vec<u8>,
        start: usize,
        nests: Vec<usize>,
    }

    impl<'a> Builder<'a> {
        /// `nlmsghdr` + `nfgenmsg`.
        fn new(
            buf: &'a mut Vec<u8>,
            kind: u16,
            flags: u16,
            seq: u32,
            family: u8,
            res_id: u16,
        ) -> Self {
            let start = buf.len();
            buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
            buf.extend_from_slice(&kind.to_ne_bytes());
            buf.extend_from_slice(&flags.to_ne_bytes());
            buf.extend_from_slice(&seq.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
            buf.push(family);
            buf.push(NFNETLINK_V0);
            buf.extend_from_slice(&res_id.to_be_bytes());
            Builder {
                buf,
                start,
                nests: Vec::new(),
            }
        }

        fn pad(&mut self) {
            while self.buf.len() % 4 != 0 {
                self.buf.push(0);
            }
        }

        fn attr(&mut self, kind: u16, data: &[u8]) {
            let len = 4 + data.len() as u16;
            self.buf.extend_from_slice(&len.to_ne_bytes());
            self.buf.extend_from_slice(&kind.to_ne_bytes());
            self.buf.extend_from_slice(data);
            self.pad();
        }

        fn attr_str(&mut self, kind: u16, s: &str) {
            let mut data = Vec::with_capacity(s.len() + 1);
            data.extend_from_slice(s.as_bytes());
            data.push(0);
            self.attr(kind, &data);
        }

        fn nest(&mut self, kind: u16) {
            self.nests.push(self.buf.len());
            self.buf.extend_from_slice(&0u16.to_ne_bytes());
            self.buf
                .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        }

        fn end_nest(&mut self) {
            if let Some(at) = self.nests.pop() {
                let len = (self.buf.len() - at) as u16;
                self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
            }
        }

        fn finish(self) {
            let len = (self.buf.len() - self.start) as u32;
            self.buf[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
        }
    }

    /// The set key of `ip . port`: the address, then the port in network
    /// order padded to 4 bytes.
    pub fn key(ip: IpAddr, port: u16) -> Vec<u8> {
        let mut k = match ip.to_canonical() {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        k.extend_from_slice(&port.to_be_bytes());
        k.extend_from_slice(&[0, 0]);
        k
    }

    /// `GETSET family table set` with an acknowledgement.
    pub fn get_set(seq: u32, family: u8, table: &str, set: &str) -> Vec<u8> {
        let mut buf = Vec::with_capacity(64);
        let mut b = Builder::new(
            &mut buf,
            NFT_GETSET,
            NLM_F_REQUEST | NLM_F_ACK,
            seq,
            family,
            0,
        );
        b.attr_str(NFTA_SET_TABLE, table);
        b.attr_str(NFTA_SET_NAME, set);
        b.finish();
        buf
    }

    /// One batch (sequence numbers `seq`, `seq + 1`, `seq + 2`): begin,
    /// `NEWSETELEM` of `ip . port` with `timeout` (or `DELSETELEM` without
    /// one, acknowledged), end.
    pub fn element_batch(
        seq: u32,
        family: u8,
        table: &str,
        set: &str,
        ip: IpAddr,
        port: u16,
        timeout: Option<Duration>,
    ) -> Vec<u8> {
        let mut buf = Vec::with_capacity(160);
        Builder::new(
            &mut buf,
            NFNL_MSG_BATCH_BEGIN,
            NLM_F_REQUEST,
            seq,
            0,
            NFNL_SUBSYS_NFTABLES,
        )
        .finish();
        let (kind, flags) = match timeout {
            Some(_) => (NFT_NEWSETELEM, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK),
            None => (NFT_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK),
        };
        let mut b = Builder::new(&mut buf, kind, flags, seq.wrapping_add(1), family, 0);
        b.attr_str(NFTA_SET_ELEM_LIST_TABLE, table);
        b.attr_str(NFTA_SET_ELEM_LIST_SET, set);
        b.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
        b.nest(NFTA_LIST_ELEM);
        if let Some(t) = timeout {
            let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
            b.attr(NFTA_SET_ELEM_TIMEOUT, &ms.to_be_bytes());
        }
        b.nest(NFTA_SET_ELEM_KEY);
        b.attr(NFTA_DATA_VALUE, &key(ip, port));
        b.end_nest();
        b.end_nest();
        b.end_nest();
        b.finish();
        Builder::new(
            &mut buf,
            NFNL_MSG_BATCH_END,
            NLM_F_REQUEST,
            seq.wrapping_add(2),
            0,
            NFNL_SUBSYS_NFTABLES,
        )
        .finish();
        buf
    }

    /// One received netlink message.
    pub struct Message<'a> {
        pub kind: u16,
        pub seq: u32,
        /// After the `nlmsghdr`.
        pub payload: &'a [u8],
    }

    /// The messages of one datagram.
    pub struct Messages<'a> {
        rest: &'a [u8],
    }

    impl<'a> Messages<'a> {
        pub fn new(buf: &'a [u8]) -> Self {
            Messages { rest: buf }
        }
    }

    fn u16_at(b: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
    }

    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }

    impl<'a> Iterator for Messages<'a> {
        type Item = Result<Message<'a>, &'static str>;
        fn next(&mut self) -> Option<Self::Item> {
            if self.rest.is_empty() {
                return None;
            }
            let b = self.rest;
            let (Some(len), Some(kind), Some(seq)) = (u32_at(b, 0), u16_at(b, 4), u32_at(b, 8))
            else {
                self.rest = &[];
                return Some(Err("truncated netlink header"));
            };
            let len = len as usize;
            if len < 16 || len > b.len() {
                self.rest = &[];
                return Some(Err("bad netlink message length"));
            }
            let aligned = len.div_ceil(4) * 4;
            self.rest = b.get(aligned..).unwrap_or(&[]);
            Some(Ok(Message {
                kind,
                seq,
                payload: &b[16..len],
            }))
        }
    }

    /// The (negative errno or 0) code of an `NLMSG_ERROR`.
    pub fn error_code(payload: &[u8]) -> Result<i32, &'static str> {
        payload
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_ne_bytes)
            .ok_or("truncated netlink error")
    }

    /// What `open` checks of a set.
    #[derive(Debug, Default, PartialEq, Eq)]
    pub struct SetInfo {
        pub flags: Option<u32>,
        pub key_len: Option<u32>,
    }

    /// Flags and key length of a `NEWSET` message (payload after `nlmsghdr`).
    pub fn parse_set(payload: &[u8]) -> SetInfo {
        let mut info = SetInfo::default();
        let mut at = 4; // nfgenmsg
        while let (Some(len), Some(kind)) = (u16_at(payload, at), u16_at(payload, at + 2)) {
            let len = len as usize;
            let Some(data) = payload.get(at + 4..at + len.max(4)) else {
                break;
            };
            let be32 = || Some(u32::from_be_bytes(data.try_into().ok()?));
            match kind & NLA_TYPE_MASK {
                NFTA_SET_FLAGS => info.flags = be32(),
                NFTA_SET_KEY_LEN => info.key_len = be32(),
                _ => {}
            }
            if len < 4 {
                break;
            }
            at += len.div_ceil(4) * 4;
        }
        info
    }
}

#[cfg(test)]
mod tests {
    use super::msg;
    use std::net::IpAddr;
    use std::time::Duration;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Header fields are native-endian: build the expected bytes the same way.
    fn hdr(len: u32, kind: u16, flags: u16, seq: u32) -> String {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        hex(&v)
    }

    fn attr(len: u16, kind: u16) -> String {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        hex(&v)
    }

    /// The add of `nft --debug=mnl add element inet ftpsgate pinholes
    /// "{ 192.0.2.1 . 50001 timeout 2s }"` (nftables 1.0.6), without the
    /// `NFTA_SET_ELEM_LIST_SET_ID` nft adds for sets of the same batch.
    #[test]
    fn add_element_batch_matches_nft() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let b = msg::element_batch(
            7,
            msg::NFPROTO_INET,
            "ftpsgate",
            "pinholes",
            ip,
            50001,
            Some(Duration::from_secs(2)),
        );
        let expected = [
            hdr(20, 0x10, 0x1, 7),
            "0000000a".into(), // AF_UNSPEC, v0, res_id NFNL_SUBSYS_NFTABLES
            hdr(88, 0x0a0c, 0x1 | 0x4 | 0x400, 8),
            "01000000".into(), // NFPROTO_INET
            attr(13, 1),
            hex(b"ftpsgate\0\0\0\0"),
            attr(13, 2),
            hex(b"pinholes\0\0\0\0"),
            attr(36, 0x8003),
            attr(32, 0x8001),
            attr(12, 4),
            "00000000000007d0".into(), // 2000 ms, big-endian
            attr(16, 0x8001),
            attr(12, 1),
            "c0000201c3510000".into(), // 192.0.2.1 . 50001 (0xc351) padded
            hdr(20, 0x11, 0x1, 9),
            "0000000a".into(),
        ]
        .concat();
        assert_eq!(hex(&b), expected);
    }

    #[test]
    fn delete_element_batch_and_v6_key() {
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let b = msg::element_batch(1, msg::NFPROTO_INET, "t", "s6", ip, 80, None);
        let key = "20010db8000000000000000000000001" // address
            .to_owned()
            + "00500000"; // port 80, padded
        let expected = [
            hdr(20, 0x10, 0x1, 1),
            "0000000a".into(),
            hdr(16 + 4 + 8 + 8 + 4 + 4 + 4 + 4 + 20, 0x0a0e, 0x1 | 0x4, 2),
            "01000000".into(),
            attr(6, 1),
            hex(b"t\0\0\0"),
            attr(7, 2),
            hex(b"s6\0\0"),
            attr(36, 0x8003),
            attr(32, 0x8001),
            attr(28, 0x8001),
            attr(24, 1),
            key,
            hdr(20, 0x11, 0x1, 3),
            "0000000a".into(),
        ]
        .concat();
        assert_eq!(hex(&b), expected);
        // IPv4-mapped addresses use the IPv4 key.
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(msg::key(mapped, 50001).len(), msg::KEY_LEN_V4 as usize);
        assert_eq!(msg::key(ip, 1).len(), msg::KEY_LEN_V6 as usize);
    }

    #[test]
    fn replies_are_parsed() {
        // An NLMSG_ERROR (ENOENT) for seq 5, then a NEWSET with flags and key length.
        let mut buf = Vec::new();
        buf.extend_from_slice(&36u32.to_ne_bytes());
        buf.extend_from_slice(&msg::NLMSG_ERROR.to_ne_bytes());
        buf.extend_from_slice(&0u16.to_ne_bytes());
        buf.extend_from_slice(&5u32.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&(-2i32).to_ne_bytes());
        buf.extend_from_slice(&[0; 16]); // the original header
        let set_start = buf.len();
        buf.extend_from_slice(&[0; 16]);
        buf.extend_from_slice(&[1, 0, 0, 0]);
        for (kind, v) in [(3u16, 0x10u32 | 0x80), (5, 8)] {
            buf.extend_from_slice(&8u16.to_ne_bytes());
            buf.extend_from_slice(&kind.to_ne_bytes());
            buf.extend_from_slice(&v.to_be_bytes());
        }
        let len = (buf.len() - set_start) as u32;
        buf[set_start..set_start + 4].copy_from_slice(&len.to_ne_bytes());
        buf[set_start + 4..set_start + 6].copy_from_slice(&msg::NFT_NEWSET.to_ne_bytes());
        buf[set_start + 8..set_start + 12].copy_from_slice(&6u32.to_ne_bytes());

        let msgs: Vec<_> = msg::Messages::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].kind, msgs[0].seq), (msg::NLMSG_ERROR, 5));
        assert_eq!(msg::error_code(msgs[0].payload), Ok(-2));
        assert_eq!((msgs[1].kind, msgs[1].seq), (msg::NFT_NEWSET, 6));
        let info = msg::parse_set(msgs[1].payload);
        assert_eq!(info.flags, Some(0x90));
        assert_eq!(info.key_len, Some(8));

        // Garbage does not panic.
        assert!(msg::Messages::new(&buf[..10]).next().unwrap().is_err());
        let _ = msg::parse_set(&[1, 2, 3, 4, 0xff, 0xff, 1, 0]);
        let _ = msg::parse_set(&[0, 0, 0, 0, 2, 0, 1, 0]);
    }
}
