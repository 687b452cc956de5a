//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod browser;
pub mod certs;
pub mod etcd;
pub mod live;
pub mod loadgen;
pub mod mariadb;
pub mod oracle;
pub mod receiver;
pub mod rowhook;
pub mod types;

use std::path::PathBuf;

/// The project root (where Cargo.toml is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A seeded xorshift walk: `next(n)` is in `0..n`, the same sequence every run.
pub fn seeded(mut state: u64) -> impl FnMut(u64) -> u64 {
    move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    }
}

/// HMAC-SHA256 of `msg` under `key`, base64: a Standard Webhooks signature
/// computed independently of rowhook's signer.
pub fn hmac_sha256_b64(key: &[u8], msg: &[u8]) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(msg);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}
