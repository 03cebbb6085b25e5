//! suppaftp 12 (sync API, rustls with ring) helpers. Call them inside
//! `tokio::task::spawn_blocking` from async tests.
//!
//! suppaftp keeps the `RustlsConnector` given to `into_secure` and wraps every data
//! connection with it (same `Arc<ClientConfig>`, same server name), so data handshakes
//! resume the control session from the config's session store. Implicit FTPS needs the
//! crate's `deprecated` feature, which this crate does not enable: use `RawFtp` for that.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use suppaftp::types::FileType;
use suppaftp::{FtpResult, RustlsConnector, RustlsFtpStream};

/// A logged-in suppaftp session in binary mode.
pub struct Suppa {
    pub ftp: RustlsFtpStream,
}

impl Suppa {
    /// Plain FTP login.
    pub fn connect_plain(addr: SocketAddr) -> FtpResult<Suppa> {
        let (user, pass) = super::test_user();
        let mut ftp = RustlsFtpStream::connect_timeout(addr, Duration::from_secs(10))?;
        ftp.login(user, pass)?;
        ftp.transfer_type(FileType::Binary)?;
        Ok(Suppa { ftp })
    }

    /// Explicit FTPS (`AUTH TLS`, `PBSZ 0`, `PROT P`) with `tls` (server name `localhost`),
    /// login, `TYPE I`.
    pub fn connect_explicit(addr: SocketAddr, tls: Arc<rustls::ClientConfig>) -> FtpResult<Suppa> {
        let (user, pass) = super::test_user();
        let ftp = RustlsFtpStream::connect_timeout(addr, Duration::from_secs(10))?;
        let mut ftp = ftp.into_secure(RustlsConnector::from(tls), "localhost")?;
        ftp.login(user, pass)?;
        ftp.transfer_type(FileType::Binary)?;
        Ok(Suppa { ftp })
    }

    pub fn get(&mut self, name: &str) -> FtpResult<Vec<u8>> {
        self.ftp.retr_as_buffer(name).map(Cursor::into_inner)
    }

    pub fn put(&mut self, name: &str, data: &[u8]) -> FtpResult<u64> {
        self.ftp.put_file(name, &mut Cursor::new(data))
    }

    pub fn list(&mut self) -> FtpResult<Vec<String>> {
        self.ftp.list(None)
    }

    pub fn quit(mut self) {
        let _ = self.ftp.quit();
    }
}
