//! A real OpenLDAP `slapd` (Debian package) for the gateway authentication
//! tests: a private `slapd.conf` and mdb database in a temp dir, LDAPS on a
//! free loopback port with an rcgen certificate (and `ldap://` on another,
//! for StartTLS), users added with `ldapadd`, stopped by PID on drop.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, harness::kill_group, temp_dir, Certs};

/// The directory's suffix.
pub const SUFFIX: &str = "dc=example,dc=org";
/// The administrator (the service account of `search` lookups).
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PW: &str = "slapd-admin-pw";

/// A running slapd.
pub struct Slapd {
    /// `ldaps://` (TLS from the first byte).
    pub addr: SocketAddr,
    /// `ldap://` (clients upgrade with StartTLS).
    pub starttls_addr: SocketAddr,
    /// The CA its certificate chains to (what the gateway's `ldap.ca` names).
    pub certs: Certs,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Slapd {
    /// Starts slapd on `ldaps://127.0.0.1:PORT` and adds `uid=USER,ou=people`
    /// with `password` for each of `users`.
    pub fn start(users: &[(&str, &str)]) -> Slapd {
        let dir = temp_dir("slapd");
        let d = dir.path();
        std::fs::create_dir_all(d.join("db")).unwrap();
        let certs = Certs::generate(d, "ldap");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let starttls_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        std::fs::write(d.join("slapd.conf"), config(d, &certs)).unwrap();
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!("ldaps://{addr}/ ldap://{starttls_addr}/"))
            .args(["-d", "0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("slapd.log")).unwrap())
            .process_group(0)
            .spawn()
            .expect("start slapd (apt-get install slapd ldap-utils)");
        let mut s = Slapd {
            addr,
            starttls_addr,
            certs,
            dir,
            child: Some(child),
        };
        s.wait_ready();
        s.add(&entries(users));
        s
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldaps://{}", self.addr)
    }

    /// `ldap://127.0.0.1:PORT` (StartTLS).
    pub fn starttls_url(&self) -> String {
        format!("ldap://{}", self.starttls_addr)
    }

    /// slapd's own log (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// Stops slapd now (the "LDAP down" case).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(child.id(), Some(&mut child));
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.addr).is_ok()
                && std::net::TcpStream::connect(self.starttls_addr).is_ok()
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("slapd exited ({status}):\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("slapd did not listen on {}:\n{}", self.addr, self.log());
    }

    fn add(&self, ldif: &str) {
        let file = self.dir.path().join("add.ldif");
        std::fs::write(&file, ldif).unwrap();
        let out = Command::new("ldapadd")
            .env("LDAPTLS_CACERT", &self.certs.ca_pem)
            .args([
                "-x",
                "-H",
                &self.url(),
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PW,
                "-f",
            ])
            .arg(&file)
            .output()
            .expect("run ldapadd");
        assert!(
            out.status.success(),
            "ldapadd failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(d: &Path, certs: &Certs) -> String {
    let p = |f: &PathBuf| f.display().to_string();
    format!(
        "include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         pidfile {dir}/slapd.pid\n\
         modulepath /usr/lib/ldap\n\
         moduleload back_mdb\n\
         TLSCertificateFile {cert}\n\
         TLSCertificateKeyFile {key}\n\
         database mdb\n\
         maxsize 10485760\n\
         suffix \"{SUFFIX}\"\n\
         rootdn \"{ADMIN_DN}\"\n\
         rootpw {ADMIN_PW}\n\
         directory {dir}/db\n",
        dir = d.display(),
        cert = p(&certs.cert_pem),
        key = p(&certs.key_pem),
    )
}

fn entries(users: &[(&str, &str)]) -> String {
    let mut ldif = format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: example\ndc: example\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n"
    );
    for (user, password) in users {
        ldif.push_str(&format!(
            "\ndn: uid={user},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {user}\n\
             cn: {user}\nsn: {user}\nuserPassword: {password}\n"
        ));
    }
    ldif
}
