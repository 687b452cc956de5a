//! How `loadgen master --flavor mysql8` logs replicas in, as MySQL 8.0 does with
//! caching_sha2_password: a password in the server's cache passes with the scramble
//! alone (fast path); otherwise full authentication, with the password sent over
//! TLS, or encrypted with the server's RSA public key the client asks for. Also the
//! TLS upgrade itself and the COM_BINLOG_DUMP_GTID request parser.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use sha2::{Digest, Sha256};

/// CLIENT_SSL capability.
pub const CLIENT_SSL: u32 = 0x800;
const CLIENT_CONNECT_WITH_DB: u32 = 0x8;
const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
const CLIENT_PLUGIN_AUTH_LENENC: u32 = 0x20_0000;
/// ER_ACCESS_DENIED_ERROR.
const ACCESS_DENIED: u16 = 1045;

/// A replica connection, plain or TLS.
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// After the SSLRequest.
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
    /// Only while upgrading.
    Gone,
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Gone => Ok(()),
        }
    }
}

/// What a login exchange needs from the connection.
pub trait Packets {
    /// Reads one packet payload.
    fn read(&mut self) -> std::io::Result<Vec<u8>>;
    /// Writes one packet payload.
    fn write(&mut self, payload: &[u8]) -> std::io::Result<()>;
    /// Whether the connection is encrypted.
    fn is_tls(&self) -> bool;
}

/// The server's side of caching_sha2_password.
pub struct Auth {
    password: String,
    /// Users whose password the server has seen since start (MySQL's cache).
    cached: Mutex<HashSet<String>>,
    /// Every user counts as cached (`--auth-cache warm`).
    warm: bool,
    key: rsa::RsaPrivateKey,
    public_pem: String,
    /// TLS, when `--tls-cert` / `--tls-key` are given.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The login outcome: how it passed, or the error code and message.
pub type Outcome = Result<String, (u16, String)>;

impl Auth {
    /// Sets up with the accounts' one `password`, an RSA key (read from `rsa_key`,
    /// else generated) and optional TLS.
    pub fn new(
        password: &str,
        warm: bool,
        rsa_key: Option<&Path>,
        tls: Option<(&Path, &Path)>,
    ) -> Result<Self, String> {
        let key = match rsa_key {
            Some(p) => {
                let pem = std::fs::read_to_string(p)
                    .map_err(|e| format!("--rsa-key {}: {e}", p.display()))?;
                rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
                    .or_else(|_| {
                        use rsa::pkcs1::DecodeRsaPrivateKey;
                        rsa::RsaPrivateKey::from_pkcs1_pem(&pem)
                    })
                    .map_err(|e| {
                        format!("--rsa-key {}: not an RSA private key: {e}", p.display())
                    })?
            }
            None => rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(|e| format!("cannot generate an RSA key: {e}"))?,
        };
        let public_pem = key
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .map_err(|e| format!("cannot encode the RSA public key: {e}"))?;
        let tls = match tls {
            None => None,
            Some((cert, key)) => Some(Arc::new(tls_config(cert, key)?)),
        };
        Ok(Auth {
            password: password.to_owned(),
            cached: Mutex::new(HashSet::new()),
            warm,
            key,
            public_pem,
            tls,
        })
    }

    /// Completes the TLS handshake on `tcp` (after an SSLRequest).
    pub fn accept_tls(&self, mut tcp: TcpStream) -> std::io::Result<Stream> {
        let config = self
            .tls
            .clone()
            .ok_or_else(|| std::io::Error::other("SSLRequest, but no TLS configured"))?;
        let mut conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
    }

    fn is_cached(&self, user: &str) -> bool {
        self.warm || self.lock().contains(user)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the caching_sha2_password exchange for HandshakeResponse `login`.
    pub fn login(
        &self,
        conn: &mut dyn Packets,
        login: &[u8],
        nonce: &[u8],
    ) -> std::io::Result<Outcome> {
        let Some((user, scramble)) = parse_response(login) else {
            return Ok(Err((1043, "Bad handshake".into())));
        };
        let denied = |with: bool| {
            Err((
                ACCESS_DENIED,
                format!(
                    "Access denied for user '{user}'@'localhost' (using password: {})",
                    if with { "YES" } else { "NO" }
                ),
            ))
        };
        if scramble.is_empty() {
            return Ok(denied(false));
        }
        if self.is_cached(&user) {
            if scramble != expected_scramble(&self.password, nonce) {
                return Ok(denied(true));
            }
            conn.write(&[0x01, 0x03])?; // fast_auth_success
            return Ok(Ok(format!(
                "user {user} logged in (caching_sha2_password fast path)"
            )));
        }
        conn.write(&[0x01, 0x04])?; // perform_full_authentication
        let reply = conn.read()?;
        let (clear, how) = if conn.is_tls() {
            (reply, "full authentication over TLS")
        } else if reply == [0x02] {
            let mut key = vec![0x01];
            key.extend_from_slice(self.public_pem.as_bytes());
            conn.write(&key)?;
            let sealed = conn.read()?;
            let Ok(mut clear) = self.key.decrypt(rsa::Oaep::new::<sha1::Sha1>(), &sealed) else {
                return Ok(denied(true));
            };
            for (i, b) in clear.iter_mut().enumerate() {
                *b ^= nonce[i % nonce.len()];
            }
            (clear, "full authentication with the RSA public key")
        } else {
            // A clear-text password over an unencrypted link is refused.
            return Ok(denied(true));
        };
        if clear.strip_suffix(&[0]).unwrap_or(&clear) != self.password.as_bytes() {
            return Ok(denied(true));
        }
        self.lock().insert(user.clone());
        Ok(Ok(format!(
            "user {user} logged in (caching_sha2_password {how})"
        )))
    }
}

/// SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce): what a client sends.
fn expected_scramble(password: &str, nonce: &[u8]) -> Vec<u8> {
    let h1 = Sha256::digest(password.as_bytes());
    let h2 = Sha256::digest(h1);
    let h3 = Sha256::new()
        .chain_update(h2)
        .chain_update(nonce)
        .finalize();
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

/// A 20-byte nonce of printable bytes, different per connection.
pub fn nonce(id: u32) -> Vec<u8> {
    let mut x = u64::from(id) ^ crate::unix_nanos() | 1;
    (0..20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            0x21 + (x % 0x5e) as u8
        })
        .collect()
}

/// Whether `login` is an SSLRequest (the 32-byte head with CLIENT_SSL).
pub fn is_ssl_request(login: &[u8]) -> bool {
    login.len() == 32
        && login
            .get(..4)
            .is_some_and(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) & CLIENT_SSL != 0)
}

/// User and auth data of a HandshakeResponse41.
fn parse_response(p: &[u8]) -> Option<(String, Vec<u8>)> {
    let caps = u32::from_le_bytes(p.get(..4)?.try_into().ok()?);
    let rest = p.get(32..)?;
    let end = rest.iter().position(|&b| b == 0)?;
    let user = String::from_utf8_lossy(&rest[..end]).into_owned();
    let rest = &rest[end + 1..];
    let auth = if caps & CLIENT_PLUGIN_AUTH_LENENC != 0 {
        let (&len, rest) = rest.split_first()?;
        // Scrambles are 32 bytes: a one-byte length always.
        rest.get(..usize::from(len))?
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        let (&len, rest) = rest.split_first()?;
        rest.get(..usize::from(len))?
    } else {
        let end = rest.iter().position(|&b| b == 0)?;
        &rest[..end]
    };
    let _ = caps & CLIENT_CONNECT_WITH_DB;
    Some((user, auth.to_vec()))
}

fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key: {e}"))
}

/// A source UUID and its [start, end) intervals of transaction numbers.
pub type Sid = ([u8; 16], Vec<(u64, u64)>);

/// The sids of a COM_BINLOG_DUMP_GTID body (after the command byte); `None` when
/// it does not parse.
pub fn parse_dump_gtid(args: &[u8]) -> Option<Vec<Sid>> {
    let mut c = args;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, rest) = (c.get(..n)?, c.get(n..)?);
        c = rest;
        Some(head)
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    take(2 + 4)?; // flags, server id
    let name_len = u32_at(take(4)?) as usize;
    take(name_len)?;
    take(8)?; // position
    let size = u32_at(take(4)?) as usize;
    let mut block = take(size)?;
    let mut next = |n: usize| -> Option<&[u8]> {
        let (head, rest) = (block.get(..n)?, block.get(n..)?);
        block = rest;
        Some(head)
    };
    let raw = u64_at(next(8)?);
    if raw >> 56 != 0 {
        return None; // tagged GTIDs (MySQL 8.4): not written by this primary
    }
    let mut sids = Vec::new();
    for _ in 0..raw {
        let uuid: [u8; 16] = next(16)?.try_into().ok()?;
        let n = u64_at(next(8)?);
        let mut intervals = Vec::new();
        for _ in 0..n {
            intervals.push((u64_at(next(8)?), u64_at(next(8)?)));
        }
        sids.push((uuid, intervals));
    }
    Some(sids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scramble_matches_rowhooks_client() {
        let nonce = nonce(3);
        let theirs =
            rowhook::mysql::handshake::scramble("caching_sha2_password", "s3cret", &nonce).unwrap();
        assert_eq!(expected_scramble("s3cret", &nonce), theirs);
        assert_ne!(expected_scramble("other", &nonce), theirs);
    }

    #[test]
    fn dump_gtid_request_parses_and_bad_ones_do_not() {
        let mut p = vec![4, 0, 9, 0, 0, 0];
        p.extend_from_slice(&0u32.to_le_bytes());
        p.extend_from_slice(&4u64.to_le_bytes());
        let mut block = 1u64.to_le_bytes().to_vec();
        block.extend_from_slice(&[7; 16]);
        block.extend_from_slice(&1u64.to_le_bytes());
        block.extend_from_slice(&1u64.to_le_bytes());
        block.extend_from_slice(&11u64.to_le_bytes());
        p.extend_from_slice(&(block.len() as u32).to_le_bytes());
        p.extend_from_slice(&block);
        assert_eq!(parse_dump_gtid(&p), Some(vec![([7; 16], vec![(1, 11)])]));
        assert_eq!(parse_dump_gtid(&p[..p.len() - 3]), None);
        let mut huge = p.clone();
        huge[22..30].copy_from_slice(&u64::MAX.to_le_bytes()[..8]);
        assert_eq!(parse_dump_gtid(&huge), None);
    }
}
