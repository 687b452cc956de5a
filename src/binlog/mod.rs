//! Binlog events -> row changes -> JSON (DESIGN.md data path steps 2-5).
//! Everything here is sans-I/O except `file`, which reads a binlog from disk.

pub mod compressed;
pub(crate) mod cursor;
mod decimal;
pub mod error;
pub mod event;
pub mod fde;
pub mod file;
pub mod gtid;
mod json;
mod json_diff;
mod jsonb;
pub mod rows;
pub mod stream;
pub mod table_map;
pub(crate) mod temporal;
mod value;

pub use error::{DecodeError, PositionedError};
pub use rows::{KeyValues, RowChange, RowImage, RowsEvent, RowsKind};
pub use stream::{Decoder, Event};
pub use table_map::{Column, ColumnType, TableMap};

/// JSON writing helpers shared with payload building.
pub mod write {
    pub use super::json::{base64, double, escaped, float, int, string, uint};
    pub use super::temporal::rfc3339;
}
