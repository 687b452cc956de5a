//! Helpers shared by the integration tests.
#![allow(dead_code)]

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
