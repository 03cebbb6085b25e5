//! Which earlier TLS sessions a client data connection may resume: the ticket
//! keys of one FTP session, and — in `data_reuse_scope: user` — those of the
//! listener's other live sessions logged in as the same user from the same
//! client address.
//!
//! Every FTP session encrypts its tickets (TLS 1.3, and TLS 1.2 tickets) with
//! its own key. A data connection resumes only if the ticket it offers decrypts
//! under a key it may use: its own session's always; with scope `user`, also
//! the keys of the sessions in its *group* — same listener, same login name,
//! same client IP — which a session joins only once its login has succeeded.
//! Clients with one TLS session cache for all their connections (rclone and
//! other Go clients) offer one session's ticket on another session's data
//! connection; strict servers such as vsftpd accept any ticket they issued.
//!
//! Why this keeps the stealing protections (SECURITY.md, "Data connection
//! binding"): a ticket is only ever sent inside the TLS connection of the
//! session that issued it, so whoever offers it is that session's TLS peer —
//! the party that logged in as that user from that address. A neighbour behind
//! the same address holds tickets of its own sessions only, and those sessions
//! are in its own user's group, never in another's. Sessions that have not
//! (or no longer) logged in belong to no group. TLS 1.2 session ids stay
//! per-session (only tickets are shared).
//!
//! This module knows nothing of FTP; the session tells it the login.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rustls::server::ProducesTickets;
use tokio::sync::Notify;

/// A group is (login name, client IP).
type GroupKey = (String, IpAddr);

/// At most this many other sessions' keys are tried per offered ticket
/// (bounds the work an attacker-chosen ticket can cause).
const MAX_PEERS: usize = 64;

/// One session in a group. The key outlives the session while the group has
/// a live member: a client with one shared cache may still offer a ticket of
/// a session it has closed, and that ticket went to someone logged in as
/// the group's user from its address.
struct Member {
    id: u64,
    live: Weak<SessionTicketer>,
    key: Arc<dyn ProducesTickets>,
}

#[derive(Default)]
struct State {
    groups: HashMap<GroupKey, Vec<Member>>,
    /// Sessions not logged in, by id: (client IP, key). Their tickets are
    /// accepted by no one until they log in (see `await_ticket_owner`).
    pending: HashMap<u64, (IpAddr, Arc<dyn ProducesTickets>)>,
}

/// The groups of one listener: which sessions' keys a login may use.
#[derive(Default)]
pub struct ReuseGroups {
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Woken whenever a session logs in.
    changed: Notify,
}

impl fmt::Debug for ReuseGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReuseGroups")
    }
}

impl ReuseGroups {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves a usable map behind.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    /// Remove `id` from `key`'s group (its key too, unless `keep_key`); a
    /// group without live members is forgotten with every key in it.
    fn leave(&mut self, key: &GroupKey, id: u64, keep_key: bool) {
        if let Some(members) = self.groups.get_mut(key) {
            if !keep_key {
                members.retain(|m| m.id != id);
            }
            if !members
                .iter()
                .any(|m| m.id != id && m.live.strong_count() > 0)
            {
                self.groups.remove(key);
            }
        }
    }

    /// The keys of the group's other members (live or ended).
    fn peer_keys(&self, key: &GroupKey, id: u64) -> Vec<Arc<dyn ProducesTickets>> {
        self.groups
            .get(key)
            .map(|members| {
                members
                    .iter()
                    .filter(|m| m.id != id)
                    .map(|m| m.key.clone())
                    .take(MAX_PEERS)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The ticket key of one FTP session, able to accept its group's tickets.
pub struct SessionTicketer {
    own: Arc<dyn ProducesTickets>,
    id: u64,
    client_ip: IpAddr,
    /// `None` in scope `session`.
    groups: Option<Arc<ReuseGroups>>,
    /// The group joined at login (`None` before login, after REIN).
    login: Mutex<Option<GroupKey>>,
    me: Weak<SessionTicketer>,
}

impl fmt::Debug for SessionTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTicketer")
            .field("id", &self.id)
            .finish()
    }
}

/// Whose key an offered ticket decrypts under.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    /// This session or its group: the handshake may resume.
    Usable,
    /// A session from the same address that has not logged in yet.
    Pending,
    /// Nobody's we may use.
    Unknown,
}

impl SessionTicketer {
    /// A fresh key for a session from `client_ip`; `groups` is the
    /// listener's in scope `user`, else `None`.
    pub fn new(
        own: Arc<dyn ProducesTickets>,
        groups: Option<Arc<ReuseGroups>>,
        client_ip: IpAddr,
    ) -> Arc<SessionTicketer> {
        let client_ip = client_ip.to_canonical();
        let id = groups
            .as_ref()
            .map_or(0, |g| g.next_id.fetch_add(1, Ordering::Relaxed));
        if let Some(g) = &groups {
            g.lock().pending.insert(id, (client_ip, own.clone()));
        }
        Arc::new_cyclic(|me| SessionTicketer {
            own,
            id,
            client_ip,
            groups,
            login: Mutex::new(None),
            me: me.clone(),
        })
    }

    fn login(&self) -> std::sync::MutexGuard<'_, Option<GroupKey>> {
        self.login
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The session's login changed: `Some(user)` after a successful login,
    /// `None` when it is no longer logged in.
    pub fn bind(&self, user: Option<&str>) {
        let Some(groups) = &self.groups else {
            return;
        };
        let want = user.map(|u| (u.to_string(), self.client_ip));
        let mut current = self.login();
        if *current == want {
            return;
        }
        let mut state = groups.lock();
        if let Some(old) = current.take() {
            state.leave(&old, self.id, false);
        }
        match want {
            Some(key) => {
                state.pending.remove(&self.id);
                state.groups.entry(key.clone()).or_default().push(Member {
                    id: self.id,
                    live: self.me.clone(),
                    key: self.own.clone(),
                });
                *current = Some(key);
            }
            None => {
                state
                    .pending
                    .insert(self.id, (self.client_ip, self.own.clone()));
            }
        }
        drop(state);
        groups.changed.notify_waiters();
    }

    fn owner(&self, tickets: &[&[u8]]) -> Owner {
        if tickets.iter().any(|t| self.own.decrypt(t).is_some()) {
            return Owner::Usable;
        }
        let Some(groups) = &self.groups else {
            return Owner::Unknown;
        };
        let (peers, pending) = {
            let state = groups.lock();
            let peers = match &*self.login() {
                Some(key) => state.peer_keys(key, self.id),
                None => Vec::new(),
            };
            let pending: Vec<_> = state
                .pending
                .iter()
                .filter(|(id, (ip, _))| **id != self.id && *ip == self.client_ip)
                .map(|(_, (_, k))| k.clone())
                .take(MAX_PEERS)
                .collect();
            (peers, pending)
        };
        let opens = |keys: &[Arc<dyn ProducesTickets>]| {
            keys.iter()
                .any(|k| tickets.iter().any(|t| k.decrypt(t).is_some()))
        };
        if opens(&peers) {
            Owner::Usable
        } else if opens(&pending) {
            Owner::Pending
        } else {
            Owner::Unknown
        }
    }

    /// Before a data handshake: if the ticket offered in `client_hello` is
    /// one of a session from the same address that is still logging in,
    /// wait (up to `limit`) for that login. A client with one shared cache
    /// (rclone) opens its connections in parallel, and one of them may offer
    /// the ticket another got a moment ago, before that one's `PASS` is
    /// answered. Nothing is accepted that would not be without the wait.
    pub async fn await_ticket_owner(&self, client_hello: &[u8], limit: Duration) {
        let Some(groups) = &self.groups else {
            return;
        };
        let tickets = offered_tickets(client_hello);
        if tickets.is_empty() {
            return;
        }
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = groups.changed.notified();
            if self.owner(&tickets) != Owner::Pending {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for SessionTicketer {
    fn drop(&mut self) {
        let Some(groups) = &self.groups else {
            return;
        };
        let login = self.login().take();
        let mut state = groups.lock();
        state.pending.remove(&self.id);
        if let Some(key) = login {
            state.leave(&key, self.id, true);
        }
    }
}

impl ProducesTickets for SessionTicketer {
    fn enabled(&self) -> bool {
        self.own.enabled()
    }

    fn lifetime(&self) -> u32 {
        self.own.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.own.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if let Some(plain) = self.own.decrypt(cipher) {
            return Some(plain);
        }
        let groups = self.groups.as_ref()?;
        let key = self.login().clone()?;
        let peers = groups.lock().peer_keys(&key, self.id);
        peers.iter().find_map(|k| k.decrypt(cipher))
    }
}

/// The tickets a ClientHello offers: TLS 1.3 `pre_shared_key` identities and
/// a TLS 1.2 `session_ticket`. Reads only the first record; anything
/// malformed or cut short yields what was found so far (this is client
/// input: never panics).
fn offered_tickets(bytes: &[u8]) -> Vec<&[u8]> {
    const HANDSHAKE: u8 = 0x16;
    const CLIENT_HELLO: u8 = 1;
    const SESSION_TICKET: u16 = 0x0023;
    const PRE_SHARED_KEY: u16 = 0x0029;
    let mut found = Vec::new();
    let mut r = Reader(bytes);
    let Some(record) = (|| {
        if r.u8()? != HANDSHAKE {
            return None;
        }
        r.take(2)?;
        let len = r.u16()?;
        r.take(usize::from(len))
    })() else {
        return found;
    };
    let mut r = Reader(record);
    let _ = (|| {
        if r.u8()? != CLIENT_HELLO {
            return None;
        }
        r.take(3)?; // length (the record may cut the message short)
        r.take(2 + 32)?; // version, random
        let sid = r.u8()?;
        r.take(usize::from(sid))?;
        let suites = r.u16()?;
        r.take(usize::from(suites))?;
        let compression = r.u8()?;
        r.take(usize::from(compression))?;
        let ext_len = r.u16()?;
        let mut exts = Reader(r.take(usize::from(ext_len))?);
        while let (Some(kind), Some(len)) = (exts.u16(), exts.u16()) {
            let body = exts.take(usize::from(len))?;
            match kind {
                SESSION_TICKET if !body.is_empty() => found.push(body),
                PRE_SHARED_KEY => {
                    let mut b = Reader(body);
                    let ids_len = b.u16()?;
                    let mut ids = Reader(b.take(usize::from(ids_len))?);
                    while let Some(len) = ids.u16() {
                        found.push(ids.take(usize::from(len))?);
                        ids.take(4)?; // obfuscated_ticket_age
                    }
                }
                _ => {}
            }
        }
        Some(())
    })();
    found
}

/// A bounds-checked cursor over client bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn key() -> Arc<dyn ProducesTickets> {
        rustls::crypto::ring::Ticketer::new().expect("ticketer")
    }

    fn session(groups: &Option<Arc<ReuseGroups>>, ip: IpAddr) -> Arc<SessionTicketer> {
        SessionTicketer::new(key(), groups.clone(), ip)
    }

    #[test]
    fn own_tickets_always_decrypt() {
        let one = session(&None, A);
        let t = one.encrypt(b"state").expect("encrypt");
        assert_eq!(one.decrypt(&t).as_deref(), Some(&b"state"[..]));
    }

    #[test]
    fn same_user_same_address_accepts_each_others_tickets() {
        let g = Some(Arc::default());
        let (one, two) = (session(&g, A), session(&g, A));
        one.bind(Some("alice"));
        two.bind(Some("alice"));
        let t = one.encrypt(b"state").expect("encrypt");
        assert_eq!(two.decrypt(&t).as_deref(), Some(&b"state"[..]));
    }

    #[test]
    fn other_user_other_address_or_no_login_is_refused() {
        let g = Some(Arc::default());
        let (one, two, far) = (session(&g, A), session(&g, A), session(&g, B));
        one.bind(Some("alice"));
        let t = one.encrypt(b"state").expect("encrypt");
        assert_eq!(two.decrypt(&t), None, "not logged in");
        two.bind(Some("bob"));
        assert_eq!(
            two.decrypt(&t),
            None,
            "another user behind the same address"
        );
        far.bind(Some("alice"));
        assert_eq!(far.decrypt(&t), None, "same user, another address");
        two.bind(Some("alice"));
        assert!(two.decrypt(&t).is_some());
        one.bind(None);
        assert_eq!(two.decrypt(&t), None, "issuer no longer logged in");
    }

    #[test]
    fn strict_scope_never_shares() {
        let (one, two) = (session(&None, A), session(&None, A));
        one.bind(Some("alice"));
        two.bind(Some("alice"));
        let t = one.encrypt(b"state").expect("encrypt");
        assert_eq!(two.decrypt(&t), None);
    }

    #[test]
    fn ended_sessions_keys_last_while_the_group_lives() {
        let groups: Arc<ReuseGroups> = Arc::default();
        let g = Some(groups.clone());
        let (one, two) = (session(&g, A), session(&g, A));
        one.bind(Some("alice"));
        two.bind(Some("alice"));
        let t = one.encrypt(b"state").expect("encrypt");
        drop(one);
        assert!(
            two.decrypt(&t).is_some(),
            "closed by the client, same login"
        );
        drop(two);
        let state = groups.lock();
        assert!(state.groups.is_empty() && state.pending.is_empty());
    }

    /// A ClientHello record with the given extensions (type, body).
    fn hello(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut ext = Vec::new();
        for (kind, body) in exts {
            ext.extend_from_slice(&kind.to_be_bytes());
            ext.extend_from_slice(&(body.len() as u16).to_be_bytes());
            ext.extend_from_slice(body);
        }
        let mut msg = vec![3, 3];
        msg.extend_from_slice(&[7; 32]);
        msg.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        msg.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        msg.extend_from_slice(&ext);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        hs.extend_from_slice(&msg);
        let mut rec = vec![0x16, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    fn psk(ids: &[&[u8]]) -> Vec<u8> {
        let mut list = Vec::new();
        for id in ids {
            list.extend_from_slice(&(id.len() as u16).to_be_bytes());
            list.extend_from_slice(id);
            list.extend_from_slice(&[0; 4]);
        }
        let mut body = (list.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(&list);
        body.extend_from_slice(&[0, 33, 32]);
        body.extend_from_slice(&[0; 32]);
        body
    }

    #[test]
    fn finds_psk_identities_and_tls12_tickets() {
        let h = hello(&[
            (0x0a, vec![0, 2, 0, 29]),
            (0x23, b"t12".to_vec()),
            (0x29, psk(&[b"one", b"two"])),
        ]);
        assert_eq!(offered_tickets(&h), vec![&b"t12"[..], b"one", b"two"]);
        assert!(offered_tickets(&hello(&[(0x23, Vec::new())])).is_empty());
    }

    #[test]
    fn malformed_hellos_never_panic() {
        let h = hello(&[(0x29, psk(&[b"identity"]))]);
        for cut in 0..h.len() {
            let _ = offered_tickets(&h[..cut]);
        }
        let mut bad = h.clone();
        for i in 0..bad.len() {
            bad[i] ^= 0xff;
            let _ = offered_tickets(&bad);
            bad[i] ^= 0xff;
        }
    }

    #[tokio::test]
    async fn a_pending_owners_login_is_awaited() {
        let g = Some(Arc::default());
        let (early, waiting) = (session(&g, A), session(&g, A));
        waiting.bind(Some("alice"));
        let t = early.encrypt(b"state").expect("encrypt");
        let h = hello(&[(0x29, psk(&[&t]))]);
        let login = {
            let early = early.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                early.bind(Some("alice"));
            })
        };
        let started = tokio::time::Instant::now();
        waiting.await_ticket_owner(&h, Duration::from_secs(5)).await;
        assert!(started.elapsed() < Duration::from_secs(4));
        assert!(waiting.decrypt(&t).is_some());
        login.await.expect("login task");
    }

    #[tokio::test]
    async fn a_pending_owner_of_another_user_gives_nothing_after_the_wait() {
        let g = Some(Arc::default());
        let (early, waiting) = (session(&g, A), session(&g, A));
        waiting.bind(Some("alice"));
        let t = early.encrypt(b"state").expect("encrypt");
        early.bind(Some("mallory"));
        let h = hello(&[(0x29, psk(&[&t]))]);
        waiting
            .await_ticket_owner(&h, Duration::from_millis(100))
            .await;
        assert_eq!(waiting.decrypt(&t), None);
    }
}
