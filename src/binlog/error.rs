//! Why a binlog event could not be decoded. Every variant is a value, never a panic:
//! the bytes come from the network or a file and may be anything.

/// A decoding failure inside one event (the caller adds the binlog position).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the structure does.
    #[error("truncated: needed {needed} more byte(s) for {what}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A value that the format does not allow.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The CRC32 trailer does not match the event bytes.
    #[error("checksum mismatch: event says {expected:#010x}, bytes give {actual:#010x}")]
    Checksum {
        /// CRC stored in the event.
        expected: u32,
        /// CRC computed over the event.
        actual: u32,
    },
    /// A rows event refers to a table id with no TABLE_MAP before it.
    #[error("rows event for table id {0} without a preceding TABLE_MAP")]
    UnknownTable(u64),
    /// A column type rowhook does not decode (yet); the event is not skipped.
    #[error("unsupported column type {type_code} in column {column} of {table}")]
    UnsupportedType {
        /// Raw MySQL type code.
        type_code: u8,
        /// Column index.
        column: usize,
        /// `schema.table`.
        table: String,
    },
    /// An event kind whose rows rowhook cannot read (yet); refusing beats skipping.
    #[error("unsupported event: {0}")]
    UnsupportedEvent(String),
}

impl DecodeError {
    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        DecodeError::Malformed {
            what,
            detail: detail.into(),
        }
    }
}

/// A decoding failure located in the binlog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{pos}: {source}")]
pub struct PositionedError {
    /// Binlog file name (or the path of a local file).
    pub file: String,
    /// Byte offset of the event start.
    pub pos: u64,
    /// What went wrong.
    pub source: DecodeError,
}
