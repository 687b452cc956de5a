//! The stateful part of decoding: remembers the format description (checksums,
//! post-header sizes) and the table maps, and turns each framed event into an
//! [`Event`]. Sans-I/O: bytes in, values out.

use std::collections::HashMap;

use super::cursor::Cursor;
use super::error::DecodeError;
use super::event::{frame, kind, EventHeader};
use super::fde::FormatDescription;
use super::rows::{RowsEvent, RowsKind};
use super::table_map::TableMap;

/// What one binlog event means to rowhook.
#[derive(Debug)]
pub enum Event<'a> {
    /// A new format description; later events follow it.
    FormatDescription,
    /// The stream continues in `file` at `pos`.
    Rotate {
        /// Next binlog file.
        file: String,
        /// Position in it.
        pos: u64,
    },
    /// A table map was stored under this table id.
    TableMap(u64),
    /// Row changes for the table mapped under `rows.table_id`.
    Rows(RowsEvent<'a>),
    /// Transaction commit with its XID.
    Xid(u64),
    /// The next transaction's GTID (`uuid:gno` for MySQL, `domain-server-seq` for MariaDB).
    Gtid(String),
    /// MySQL's PREVIOUS_GTIDS at the start of a file: every GTID before it.
    PreviousGtids(crate::binlog::gtid::GtidSet),
    /// A statement: BEGIN, COMMIT, DDL, or statement-based DML.
    Query {
        /// Default schema of the statement.
        schema: String,
        /// The statement text.
        sql: String,
    },
    /// A compressed transaction: its inner events are decoded with
    /// [`Decoder::decode_inner`] after inflating.
    Compressed(super::compressed::Payload<'a>),
    /// Replication heartbeat (no data).
    Heartbeat,
    /// Anything else; skipped by its length.
    Other(u8),
}

/// Decodes a sequence of events from one server.
#[derive(Debug)]
pub struct Decoder {
    fde: FormatDescription,
    tables: HashMap<u64, TableMap>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder expecting a FORMAT_DESCRIPTION before the first rows event.
    pub fn new() -> Self {
        Decoder {
            fde: FormatDescription::default_v4(false),
            tables: HashMap::new(),
        }
    }

    /// Whether events currently carry a CRC32 trailer.
    pub fn checksum(&self) -> bool {
        self.fde.checksum
    }

    /// Sets checksum use before any FDE is seen (negotiated on a replication link).
    pub fn set_checksum(&mut self, on: bool) {
        self.fde.checksum = on;
    }

    /// The current format description.
    pub fn format(&self) -> &FormatDescription {
        &self.fde
    }

    /// The table map for `table_id`, if one was seen.
    pub fn table(&self, table_id: u64) -> Option<&TableMap> {
        self.tables.get(&table_id)
    }

    /// Mutable access to a table map (to fill in names from information_schema).
    pub fn table_mut(&mut self, table_id: u64) -> Option<&mut TableMap> {
        self.tables.get_mut(&table_id)
    }

    /// Decodes one event from inside a compressed transaction (they carry no
    /// checksum, and may not nest).
    pub fn decode_inner<'a>(
        &mut self,
        bytes: &'a [u8],
    ) -> Result<(EventHeader, Event<'a>), DecodeError> {
        let inner_kind = EventHeader::parse(bytes)?.kind;
        let checksum = std::mem::replace(&mut self.fde.checksum, false);
        let decoded = match inner_kind {
            kind::FORMAT_DESCRIPTION | kind::TRANSACTION_PAYLOAD => Err(DecodeError::malformed(
                "transaction payload",
                "holds a format description or another payload",
            )),
            _ => self.decode(bytes),
        };
        self.fde.checksum = checksum;
        decoded
    }

    /// Decodes one whole event (header through checksum).
    pub fn decode<'a>(&mut self, bytes: &'a [u8]) -> Result<(EventHeader, Event<'a>), DecodeError> {
        let header = EventHeader::parse(bytes)?;
        self.decode_after(header, bytes)
    }

    /// Decodes the rest of `bytes` (one whole event) whose `header` the caller
    /// has already parsed.
    pub fn decode_after<'a>(
        &mut self,
        header: EventHeader,
        bytes: &'a [u8],
    ) -> Result<(EventHeader, Event<'a>), DecodeError> {
        if header.kind == kind::FORMAT_DESCRIPTION {
            if header.event_size as usize != bytes.len() {
                return Err(DecodeError::malformed(
                    "event",
                    "size does not match the header",
                ));
            }
            self.fde = FormatDescription::parse(bytes)?;
            // A new FDE means a new file or a server restart: table ids start over.
            self.tables.clear();
            return Ok((header, Event::FormatDescription));
        }
        let raw = frame(bytes, self.fde.checksum)?;
        let body = raw.body;
        let post = self.fde.post_header_len(header.kind);
        let event = match header.kind {
            kind::ROTATE => {
                let mut c = Cursor::new(body);
                let pos = if post >= 8 || post == 0 {
                    c.u64("rotate position")?
                } else {
                    4
                };
                let name = c.rest();
                Event::Rotate {
                    file: String::from_utf8_lossy(name).into_owned(),
                    pos,
                }
            }
            kind::TABLE_MAP => {
                let map = TableMap::parse(body, self.fde.table_id_len(kind::TABLE_MAP))?;
                let id = map.table_id;
                self.tables.insert(id, map);
                Event::TableMap(id)
            }
            kind::XID => Event::Xid(Cursor::new(body).u64("xid")?),
            kind::QUERY => {
                let (schema, sql) = query_statement(body, post)?;
                Event::Query { schema, sql }
            }
            kind::GTID => {
                let mut c = Cursor::new(body);
                c.skip(1, "gtid flags")?;
                let sid = c.take(16, "gtid uuid")?;
                let gno = c.u64("gtid number")?;
                Event::Gtid(format!("{}:{gno}", crate::binlog::gtid::uuid_text(sid)))
            }
            kind::MARIA_GTID => {
                let mut c = Cursor::new(body);
                let seq = c.u64("mariadb gtid sequence")?;
                let domain = c.u32("mariadb gtid domain")?;
                Event::Gtid(format!("{domain}-{}-{seq}", header.server_id))
            }
            kind::PREVIOUS_GTIDS => match crate::binlog::gtid::GtidSet::from_previous_gtids(body) {
                Some(set) => Event::PreviousGtids(set),
                // Tagged (MySQL 8.4) or unreadable: the set stays unknown.
                None => Event::Other(kind::PREVIOUS_GTIDS),
            },
            kind::HEARTBEAT | kind::HEARTBEAT_V2 => Event::Heartbeat,
            kind::PARTIAL_UPDATE_ROWS => {
                let mut rows = RowsEvent::parse(
                    body,
                    RowsKind::Update,
                    true,
                    self.fde.table_id_len(header.kind),
                )?;
                rows.partial = true;
                if !self.tables.contains_key(&rows.table_id) {
                    return Err(DecodeError::UnknownTable(rows.table_id));
                }
                Event::Rows(rows)
            }
            kind::TRANSACTION_PAYLOAD => {
                Event::Compressed(super::compressed::Payload::parse(body)?)
            }
            kind::MARIA_QUERY_COMPRESSED..=kind::MARIA_DELETE_ROWS_COMPRESSED => {
                return Err(DecodeError::UnsupportedEvent(format!(
                    "MariaDB compressed event type {} (log_bin_compress=ON) is not decoded yet",
                    header.kind
                )))
            }
            other => match RowsKind::from_event(other) {
                Some((rows_kind, v2)) => {
                    let rows = RowsEvent::parse(body, rows_kind, v2, self.fde.table_id_len(other))?;
                    if !self.tables.contains_key(&rows.table_id) {
                        return Err(DecodeError::UnknownTable(rows.table_id));
                    }
                    Event::Rows(rows)
                }
                None => Event::Other(other),
            },
        };
        Ok((header, event))
    }
}

/// The default schema and statement text of a QUERY event body (checksum removed);
/// `post` is the QUERY post-header length from the format description (13 in v4).
fn query_statement(body: &[u8], post: usize) -> Result<(String, String), DecodeError> {
    let mut c = Cursor::new(body);
    c.skip(8, "query thread id and time")?;
    let schema_len = usize::from(c.u8("query schema length")?);
    c.skip(2, "query error code")?;
    let status_len = if post >= 13 {
        usize::from(c.u16("query status length")?)
    } else {
        0
    };
    c.skip(post.saturating_sub(13), "query post-header")?;
    c.skip(status_len, "query status variables")?;
    let schema = c.take(schema_len, "query schema")?;
    c.skip(1, "query schema terminator")?;
    Ok((
        String::from_utf8_lossy(schema).into_owned(),
        String::from_utf8_lossy(c.rest()).into_owned(),
    ))
}
