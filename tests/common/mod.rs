//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod certs;
pub mod loadgen;
pub mod mariadb;
pub mod oracle;
pub mod receiver;
pub mod rowhook;

use std::path::PathBuf;

/// The project root (where Cargo.toml is).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
