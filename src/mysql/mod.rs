//! The replication client: packet framing, login, text queries, and the binlog
//! dump (DESIGN.md "src/mysql"). Sans-I/O protocol pieces plus one glommio shell.

pub mod conn;
pub mod error;
pub mod handshake;
pub mod packet;
pub mod replica;
pub mod result;
pub mod tls;

pub use conn::Connection;
pub use error::MysqlError;
