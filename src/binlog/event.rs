//! One binlog event on the wire: the 19-byte v4 header, the body, and the optional
//! CRC32 trailer. Framing only; the body is interpreted elsewhere.

use super::cursor::Cursor;
use super::error::DecodeError;

/// Size of a v4 event header.
pub const HEADER_LEN: usize = 19;

/// Raw event type codes (MySQL `Log_event_type`, MariaDB additions from 160).
pub mod kind {
    #![allow(missing_docs)]
    pub const START_V3: u8 = 1;
    pub const QUERY: u8 = 2;
    pub const STOP: u8 = 3;
    pub const ROTATE: u8 = 4;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const TABLE_MAP: u8 = 19;
    pub const WRITE_ROWS_V1: u8 = 23;
    pub const UPDATE_ROWS_V1: u8 = 24;
    pub const DELETE_ROWS_V1: u8 = 25;
    pub const INCIDENT: u8 = 26;
    pub const HEARTBEAT: u8 = 27;
    pub const ROWS_QUERY: u8 = 29;
    pub const WRITE_ROWS: u8 = 30;
    pub const UPDATE_ROWS: u8 = 31;
    pub const DELETE_ROWS: u8 = 32;
    pub const GTID: u8 = 33;
    pub const ANONYMOUS_GTID: u8 = 34;
    pub const PREVIOUS_GTIDS: u8 = 35;
    pub const PARTIAL_UPDATE_ROWS: u8 = 39;
    pub const TRANSACTION_PAYLOAD: u8 = 40;
    pub const HEARTBEAT_V2: u8 = 41;
    pub const GTID_TAGGED: u8 = 42;
    pub const MARIA_ANNOTATE_ROWS: u8 = 160;
    pub const MARIA_BINLOG_CHECKPOINT: u8 = 161;
    pub const MARIA_GTID: u8 = 162;
    pub const MARIA_GTID_LIST: u8 = 163;
    pub const MARIA_START_ENCRYPTION: u8 = 164;
    pub const MARIA_QUERY_COMPRESSED: u8 = 165;
    pub const MARIA_WRITE_ROWS_COMPRESSED_V1: u8 = 166;
    pub const MARIA_DELETE_ROWS_COMPRESSED: u8 = 171;
}

/// The fixed header of every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    /// Seconds since the epoch when the statement began on the source.
    pub timestamp: u32,
    /// Raw type code, see [`kind`].
    pub kind: u8,
    /// Server id of the server that wrote it.
    pub server_id: u32,
    /// Size of the whole event including header and checksum.
    pub event_size: u32,
    /// Position of the next event in the binlog file (0 inside compressed payloads
    /// and for some artificial events).
    pub log_pos: u32,
    /// Event flags.
    pub flags: u16,
}

/// `LOG_EVENT_ARTIFICIAL_F`: the server made this event up (e.g. the fake ROTATE
/// at the start of a dump); it is not in the file.
pub const FLAG_ARTIFICIAL: u16 = 0x20;

impl EventHeader {
    /// Reads the header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(bytes);
        let header = EventHeader {
            timestamp: c.u32("event header")?,
            kind: c.u8("event header")?,
            server_id: c.u32("event header")?,
            event_size: c.u32("event header")?,
            log_pos: c.u32("event header")?,
            flags: c.u16("event header")?,
        };
        if (header.event_size as usize) < HEADER_LEN {
            return Err(DecodeError::malformed(
                "event header",
                format!(
                    "event size {} is smaller than the header",
                    header.event_size
                ),
            ));
        }
        Ok(header)
    }
}

/// A framed event: header plus body with the checksum (if any) removed and verified.
#[derive(Debug, Clone, Copy)]
pub struct RawEvent<'a> {
    /// The header.
    pub header: EventHeader,
    /// Bytes after the header, without the CRC32 trailer.
    pub body: &'a [u8],
}

/// Frames one whole event (`bytes.len()` must equal the header's `event_size`),
/// verifying and stripping the CRC32 trailer when `checksum` is on.
pub fn frame(bytes: &[u8], checksum: bool) -> Result<RawEvent<'_>, DecodeError> {
    let header = EventHeader::parse(bytes)?;
    if header.event_size as usize != bytes.len() {
        return Err(DecodeError::malformed(
            "event",
            format!(
                "header says {} bytes, {} were given",
                header.event_size,
                bytes.len()
            ),
        ));
    }
    let end = if checksum {
        if bytes.len() < HEADER_LEN + 4 {
            return Err(DecodeError::Truncated {
                what: "event checksum",
                needed: HEADER_LEN + 4 - bytes.len(),
            });
        }
        let split = bytes.len() - 4;
        verify_crc(&bytes[..split], &bytes[split..])?;
        split
    } else {
        bytes.len()
    };
    Ok(RawEvent {
        header,
        body: &bytes[HEADER_LEN..end],
    })
}

/// Checks `stored` (4 bytes, little-endian) against the CRC32 of `data`.
pub fn verify_crc(data: &[u8], stored: &[u8]) -> Result<(), DecodeError> {
    let expected = super::cursor::le(stored) as u32;
    let actual = crc32fast::hash(data);
    if expected != actual {
        return Err(DecodeError::Checksum { expected, actual });
    }
    Ok(())
}
