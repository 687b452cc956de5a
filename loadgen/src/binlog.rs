//! Writing a MySQL 8 row-based binlog: FORMAT_DESCRIPTION (CRC32), QUERY(BEGIN),
//! TABLE_MAP with FULL optional metadata, WRITE/UPDATE/DELETE_ROWS v2, XID, ROTATE
//! at a size limit; and the HEARTBEAT / fake ROTATE events a dump sends.
//!
//! Each table is `loadgen.t{i}`: `id BIGINT PRIMARY KEY, seq BIGINT, sent_ns BIGINT,
//! payload VARCHAR(row_bytes)`, plus `doc JSON` with [`Mysql8`] features, which also
//! add GTID / PREVIOUS_GTIDS events and optionally compress each transaction into a
//! TRANSACTION_PAYLOAD event (zstd), as MySQL 8 does.

use rowhook::mysql::handshake::put_lenenc as lenenc;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::traffic::{Change, Kind};

/// The server version the binlog claims.
pub const SERVER_VERSION: &str = "8.0.36-loadgen";
/// The binlog file name prefix.
pub const BASENAME: &str = "binlog";
/// Magic at the start of every binlog file.
pub const MAGIC: &[u8; 4] = b"\xfebin";
/// The schema the tables live in.
pub const SCHEMA: &str = "loadgen";

/// Event type codes.
pub mod kind {
    #![allow(missing_docs)]
    pub const QUERY: u8 = 2;
    pub const ROTATE: u8 = 4;
    pub const FORMAT_DESCRIPTION: u8 = 15;
    pub const XID: u8 = 16;
    pub const TABLE_MAP: u8 = 19;
    pub const HEARTBEAT: u8 = 27;
    pub const WRITE_ROWS: u8 = 30;
    pub const UPDATE_ROWS: u8 = 31;
    pub const DELETE_ROWS: u8 = 32;
    pub const GTID: u8 = 33;
    pub const PARTIAL_UPDATE_ROWS: u8 = 39;
    pub const PREVIOUS_GTIDS: u8 = 35;
    pub const TRANSACTION_PAYLOAD: u8 = 40;
}

const HEADER_LEN: usize = 19;
/// LOG_EVENT_ARTIFICIAL_F: the event is not in any file (fake ROTATE).
const ARTIFICIAL: u16 = 0x20;
/// STMT_END_F on the last rows event of a statement.
const STMT_END: u16 = 0x1;
/// MySQL 8.0.36 as `immediate_server_version`.
const SERVER_VERSION_ID: u32 = 80036;
/// A GTID event with a 9-byte transaction length: 19 header + 42 post-header +
/// 7 commit timestamp + 9 length + 4 server version + 4 CRC.
const GTID_EVENT_LEN: u64 = 85;
/// utf8mb4_0900_ai_ci.
const UTF8MB4: u64 = 255;

/// MySQL 8.0's post-header lengths for event types 1..=41.
const POST_HEADER_LENS: [u8; 41] = [
    56, 13, 0, 8, 0, 0, 0, 0, 4, 0, 4, 0, 0, 0, 98, 0, 4, 26, 8, 0, 0, 0, 8, 8, 8, 2, 0, 0, 0, 10,
    10, 10, 42, 42, 0, 18, 52, 0, 10, 40, 0,
];

/// Builds events with one server id and CRC32 checksums.
#[derive(Debug, Clone)]
pub struct Encoder {
    /// The primary's server id.
    pub server_id: u32,
    /// Bytes of the payload column.
    pub row_bytes: usize,
    /// MySQL 8 features; `None` is the plain stream (no GTIDs, no JSON).
    pub mysql8: Option<Mysql8>,
}

/// What `--flavor mysql8` adds to the stream.
#[derive(Debug, Clone)]
pub struct Mysql8 {
    /// The UUID of the GTIDs written (`source_uuid:1`, `:2`, ...).
    pub source: [u8; 16],
    /// Compress each transaction into a TRANSACTION_PAYLOAD event.
    pub compress: bool,
    /// Log updates as PARTIAL_UPDATE_ROWS with JSON diffs
    /// (`binlog_row_value_options=PARTIAL_JSON`, FULL before images).
    pub partial_json: bool,
}

pub use rowhook::binlog::gtid::{parse_uuid, uuid_text};

/// Table id of table `t`.
pub fn table_id(t: u32) -> u64 {
    100 + u64::from(t)
}

/// Name of table `t`.
pub fn table_name(t: u32) -> String {
    format!("t{t}")
}

impl Encoder {
    /// Appends one event whose first byte is at `at`: header, `body`, CRC32.
    /// Returns the position after it.
    pub fn event(
        &self,
        out: &mut Vec<u8>,
        kind: u8,
        timestamp: u32,
        at: Option<u64>,
        flags: u16,
        body: &[u8],
    ) -> u64 {
        let size = HEADER_LEN + body.len() + 4;
        let start = out.len();
        // log_pos = where the next event starts; 0 for events outside any file.
        let end = at.map_or(0, |a| a + size as u64);
        out.extend_from_slice(&timestamp.to_le_bytes());
        out.push(kind);
        out.extend_from_slice(&self.server_id.to_le_bytes());
        out.extend_from_slice(&(size as u32).to_le_bytes());
        out.extend_from_slice(&(end as u32).to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(body);
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
        end
    }

    /// FORMAT_DESCRIPTION with CRC32 announced.
    pub fn format_description(&self, out: &mut Vec<u8>, timestamp: u32, at: Option<u64>) -> u64 {
        let mut body = Vec::with_capacity(100);
        body.extend_from_slice(&4u16.to_le_bytes());
        let mut version = [0u8; 50];
        version[..SERVER_VERSION.len()].copy_from_slice(SERVER_VERSION.as_bytes());
        body.extend_from_slice(&version);
        body.extend_from_slice(&timestamp.to_le_bytes());
        body.push(HEADER_LEN as u8);
        body.extend_from_slice(&POST_HEADER_LENS);
        body.push(1); // CRC32
        self.event(out, kind::FORMAT_DESCRIPTION, timestamp, at, 0, &body)
    }

    /// ROTATE to `file` at `pos`.
    pub fn rotate(&self, out: &mut Vec<u8>, at: Option<u64>, file: &str, pos: u64) -> u64 {
        let mut body = Vec::with_capacity(8 + file.len());
        body.extend_from_slice(&pos.to_le_bytes());
        body.extend_from_slice(file.as_bytes());
        let flags = if at.is_none() { ARTIFICIAL } else { 0 };
        self.event(out, kind::ROTATE, 0, at, flags, &body)
    }

    /// HEARTBEAT for a dump idle at `pos` of `file`.
    pub fn heartbeat(&self, out: &mut Vec<u8>, file: &str, pos: u64) {
        let size = (HEADER_LEN + file.len() + 4) as u64;
        // A heartbeat's log_pos is the position the dump stands at.
        self.event(
            out,
            kind::HEARTBEAT,
            0,
            Some(pos.saturating_sub(size)),
            0,
            file.as_bytes(),
        );
    }

    fn query(&self, out: &mut Vec<u8>, timestamp: u32, at: u64, sql: &str) -> u64 {
        let mut body = Vec::with_capacity(16 + sql.len());
        body.extend_from_slice(&1u32.to_le_bytes()); // thread id
        body.extend_from_slice(&0u32.to_le_bytes()); // exec time
        body.push(SCHEMA.len() as u8);
        body.extend_from_slice(&0u16.to_le_bytes()); // error code
        body.extend_from_slice(&0u16.to_le_bytes()); // status vars length
        body.extend_from_slice(SCHEMA.as_bytes());
        body.push(0);
        body.extend_from_slice(sql.as_bytes());
        self.event(out, kind::QUERY, timestamp, Some(at), 0, &body)
    }

    fn table_map(&self, out: &mut Vec<u8>, timestamp: u32, at: u64, table: u32) -> u64 {
        let name = table_name(table);
        let mut b = Vec::with_capacity(96);
        b.extend_from_slice(&table_id(table).to_le_bytes()[..6]);
        b.extend_from_slice(&1u16.to_le_bytes());
        b.push(SCHEMA.len() as u8);
        b.extend_from_slice(SCHEMA.as_bytes());
        b.push(0);
        b.push(name.len() as u8);
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        let json = self.mysql8.is_some();
        lenenc(&mut b, self.columns() as u64);
        b.extend_from_slice(&[8, 8, 8, 15]); // LONGLONG x3, VARCHAR
        if json {
            b.push(245); // JSON
        }
        let max_bytes = (self.row_bytes * 4).min(65_535) as u16;
        lenenc(&mut b, if json { 3 } else { 2 });
        b.extend_from_slice(&max_bytes.to_le_bytes());
        if json {
            b.push(4); // the JSON value's length takes 4 bytes
        }
        b.push(0b0001_1110); // nullable: all but id
                             // Optional metadata (binlog_row_metadata=FULL).
        let tlv = |b: &mut Vec<u8>, t: u8, v: &[u8]| {
            b.push(t);
            lenenc(b, v.len() as u64);
            b.extend_from_slice(v);
        };
        tlv(&mut b, 1, &[0]); // SIGNEDNESS: the three integers are signed
        let mut charset = Vec::new();
        lenenc(&mut charset, UTF8MB4);
        tlv(&mut b, 2, &charset); // DEFAULT_CHARSET, no exceptions
        let mut names = Vec::new();
        for n in ["id", "seq", "sent_ns", "payload", "doc"]
            .into_iter()
            .take(self.columns())
        {
            lenenc(&mut names, n.len() as u64);
            names.extend_from_slice(n.as_bytes());
        }
        tlv(&mut b, 4, &names); // COLUMN_NAME
        tlv(&mut b, 8, &[0]); // SIMPLE_PRIMARY_KEY: column 0
        self.event(out, kind::TABLE_MAP, timestamp, Some(at), 0, &b)
    }

    /// A whole row image; with `diffs`, the JSON column holds the diffs that turn
    /// the before image's document into this row's (a partial update).
    fn row_image(&self, b: &mut Vec<u8>, key: u64, seq: u64, sent_ns: u64, diffs: bool) {
        b.push(0); // null bitmap: nothing null
        b.extend_from_slice(&key.to_le_bytes());
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&sent_ns.to_le_bytes());
        let len = self.row_bytes.min(65_535);
        if self.row_bytes * 4 > 255 {
            b.extend_from_slice(&(len as u16).to_le_bytes());
        } else {
            b.push(len as u8);
        }
        b.extend(std::iter::repeat_n(b'p', len));
        if self.mysql8.is_some() {
            let doc = if diffs {
                crate::jsonb::seq_diffs(seq)
            } else {
                crate::jsonb::encode(&crate::jsonb::row_document(key, seq))
            };
            b.extend_from_slice(&(doc.len() as u32).to_le_bytes());
            b.extend_from_slice(&doc);
        }
    }

    /// Columns of every table.
    fn columns(&self) -> usize {
        if self.mysql8.is_some() {
            5
        } else {
            4
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn rows(
        &self,
        out: &mut Vec<u8>,
        timestamp: u32,
        at: u64,
        table: u32,
        kind: Kind,
        changes: &[Change],
        sent_ns: u64,
        last: bool,
    ) -> u64 {
        let mut b = Vec::with_capacity(32 + changes.len() * (40 + self.row_bytes));
        b.extend_from_slice(&table_id(table).to_le_bytes()[..6]);
        b.extend_from_slice(&(if last { STMT_END } else { 0 }).to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes()); // extra data: none
        lenenc(&mut b, self.columns() as u64);
        let present = (1u8 << self.columns()) - 1; // every column
        b.push(present);
        if kind == Kind::Update {
            b.push(present);
        }
        let partial = kind == Kind::Update && self.mysql8.as_ref().is_some_and(|m| m.partial_json);
        for c in changes {
            if kind == Kind::Update {
                // The before image: an older version of the row.
                self.row_image(&mut b, c.key, 0, 0, false);
            }
            if partial {
                // Shared image: PARTIAL_JSON_UPDATES, and the one JSON column has diffs.
                b.extend_from_slice(&[1, 0b1]);
            }
            self.row_image(&mut b, c.key, c.seq, sent_ns, partial);
        }
        let code = match kind {
            Kind::Insert => kind::WRITE_ROWS,
            Kind::Update if partial => kind::PARTIAL_UPDATE_ROWS,
            Kind::Update => kind::UPDATE_ROWS,
            Kind::Delete => kind::DELETE_ROWS,
        };
        self.event(out, code, timestamp, Some(at), 0, &b)
    }

    /// One transaction at `at`: with MySQL 8 features a GTID event (number `xid`)
    /// first; then BEGIN, a TABLE_MAP per table used, rows events (consecutive
    /// changes of one table and kind share one), XID — or all of those compressed
    /// into one TRANSACTION_PAYLOAD. Returns the end.
    pub fn transaction(
        &self,
        out: &mut Vec<u8>,
        at: u64,
        changes: &[Change],
        sent_ns: u64,
        xid: u64,
    ) -> u64 {
        let Some(m) = &self.mysql8 else {
            return self.body(out, at, changes, sent_ns, xid);
        };
        let start = out.len();
        let timestamp = (sent_ns / 1_000_000_000) as u32;
        let gtid_end = self.gtid(out, timestamp, at, &m.source, xid, sent_ns / 1000, 0);
        let end = if m.compress {
            let mut inner = Vec::with_capacity(256 + changes.len() * (64 + self.row_bytes));
            self.body(&mut inner, 0, changes, sent_ns, xid);
            let inner = strip_for_payload(&inner);
            let packed = zstd::bulk::compress(&inner, 3).unwrap_or_else(|_| inner.clone());
            let algorithm = if packed.len() < inner.len() { 0 } else { 255 };
            let data = if algorithm == 0 { &packed } else { &inner };
            let mut b = Vec::with_capacity(data.len() + 32);
            let mut field = |t: u64, v: u64| {
                let mut value = Vec::new();
                lenenc(&mut value, v);
                lenenc(&mut b, t);
                lenenc(&mut b, value.len() as u64);
                b.extend_from_slice(&value);
            };
            field(1, data.len() as u64);
            field(2, algorithm);
            field(3, inner.len() as u64);
            b.push(0);
            b.extend_from_slice(data);
            self.event(
                out,
                kind::TRANSACTION_PAYLOAD,
                timestamp,
                Some(gtid_end),
                0,
                &b,
            )
        } else {
            self.body(out, gtid_end, changes, sent_ns, xid)
        };
        // Now that the transaction's length is known, put it in the GTID event.
        let gtid = &mut out[start..start + GTID_EVENT_LEN as usize];
        gtid[HEADER_LEN + 42 + 7 + 1..HEADER_LEN + 42 + 7 + 9]
            .copy_from_slice(&(end - at).to_le_bytes());
        let crc = crc32fast::hash(&gtid[..GTID_EVENT_LEN as usize - 4]);
        gtid[GTID_EVENT_LEN as usize - 4..].copy_from_slice(&crc.to_le_bytes());
        end
    }

    /// GTID_LOG_EVENT for `source:gno`, committed at `commit_us`, with a
    /// transaction length to be filled in.
    #[allow(clippy::too_many_arguments)]
    fn gtid(
        &self,
        out: &mut Vec<u8>,
        timestamp: u32,
        at: u64,
        source: &[u8; 16],
        gno: u64,
        commit_us: u64,
        length: u64,
    ) -> u64 {
        let mut b = Vec::with_capacity(66);
        b.push(0); // flags: row-based only
        b.extend_from_slice(source);
        b.extend_from_slice(&gno.to_le_bytes());
        b.push(2); // logical timestamps follow
        b.extend_from_slice(&gno.saturating_sub(1).to_le_bytes()); // last_committed
        b.extend_from_slice(&gno.to_le_bytes()); // sequence_number
                                                 // immediate_commit_timestamp, 56 bits; the top bit clear says the original
                                                 // commit timestamp is the same.
        b.extend_from_slice(&(commit_us & 0x7f_ffff_ffff_ffff).to_le_bytes()[..7]);
        b.push(0xfe); // transaction length as a 9-byte packed integer
        b.extend_from_slice(&length.to_le_bytes());
        b.extend_from_slice(&SERVER_VERSION_ID.to_le_bytes());
        self.event(out, kind::GTID, timestamp, Some(at), 0, &b)
    }

    /// PREVIOUS_GTIDS: `source:1-upto` (empty when nothing was written yet).
    pub fn previous_gtids(&self, out: &mut Vec<u8>, timestamp: u32, at: u64, upto: u64) -> u64 {
        let mut b = Vec::with_capacity(48);
        match &self.mysql8 {
            Some(m) if upto > 0 => {
                b.extend_from_slice(&1u64.to_le_bytes());
                b.extend_from_slice(&m.source);
                b.extend_from_slice(&1u64.to_le_bytes());
                b.extend_from_slice(&1u64.to_le_bytes());
                b.extend_from_slice(&(upto + 1).to_le_bytes()); // end is exclusive
            }
            _ => b.extend_from_slice(&0u64.to_le_bytes()),
        }
        self.event(out, kind::PREVIOUS_GTIDS, timestamp, Some(at), 0, &b)
    }

    fn body(&self, out: &mut Vec<u8>, at: u64, changes: &[Change], sent_ns: u64, xid: u64) -> u64 {
        let timestamp = (sent_ns / 1_000_000_000) as u32;
        let mut pos = self.query(out, timestamp, at, "BEGIN");
        let mut mapped: Vec<u32> = Vec::new();
        for c in changes {
            if !mapped.contains(&c.table) {
                mapped.push(c.table);
                pos = self.table_map(out, timestamp, pos, c.table);
            }
        }
        let mut start = 0;
        while start < changes.len() {
            let (table, kind) = (changes[start].table, changes[start].kind);
            let end = changes[start..]
                .iter()
                .position(|c| c.table != table || c.kind != kind)
                .map_or(changes.len(), |n| start + n);
            let last = end == changes.len();
            pos = self.rows(
                out,
                timestamp,
                pos,
                table,
                kind,
                &changes[start..end],
                sent_ns,
                last,
            );
            start = end;
        }
        self.event(out, kind::XID, timestamp, Some(pos), 0, &xid.to_le_bytes())
    }
}

/// The events of a transaction as they sit inside a TRANSACTION_PAYLOAD: no CRC32,
/// and log_pos 0 (they have no position of their own).
fn strip_for_payload(events: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len());
    let mut at = 0;
    while let Some(size) = events
        .get(at + 9..at + 13)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    {
        let event = &events[at..at + size];
        let start = out.len();
        out.extend_from_slice(&event[..size - 4]);
        out[start + 9..start + 13].copy_from_slice(&((size - 4) as u32).to_le_bytes());
        out[start + 13..start + 17].copy_from_slice(&0u32.to_le_bytes());
        at += size;
    }
    out
}

/// Appends transactions to binlog files in a directory, rotating at a size limit.
pub struct Writer {
    dir: PathBuf,
    enc: Encoder,
    max_size: u64,
    index: u32,
    file: File,
    /// Current file's length.
    pos: u64,
    buf: Vec<u8>,
    xid: u64,
}

/// Name of binlog file number `index`.
pub fn file_name(index: u32) -> String {
    format!("{BASENAME}.{index:06}")
}

impl Writer {
    /// Starts `binlog.000001` in `dir`.
    pub fn create(dir: &Path, enc: Encoder, max_size: u64) -> std::io::Result<Writer> {
        std::fs::create_dir_all(dir)?;
        let (file, pos) = Self::open(dir, &enc, 1, 0)?;
        Ok(Writer {
            dir: dir.to_owned(),
            enc,
            max_size,
            index: 1,
            file,
            pos,
            buf: Vec::with_capacity(1 << 16),
            xid: 0,
        })
    }

    /// Starts file `index`: magic, FDE and (MySQL 8) the GTIDs before it.
    fn open(dir: &Path, enc: &Encoder, index: u32, gtids: u64) -> std::io::Result<(File, u64)> {
        let mut file = File::create(dir.join(file_name(index)))?;
        let mut head = MAGIC.to_vec();
        let now = (crate::unix_nanos() / 1_000_000_000) as u32;
        let mut end = enc.format_description(&mut head, now, Some(4));
        if enc.mysql8.is_some() {
            end = enc.previous_gtids(&mut head, now, end, gtids);
        }
        file.write_all(&head)?;
        Ok((file, end))
    }

    /// Transactions written so far (the last GTID number).
    pub fn transactions(&self) -> u64 {
        self.xid
    }

    /// The current file and its length.
    pub fn position(&self) -> (String, u64) {
        (file_name(self.index), self.pos)
    }

    /// Appends one transaction (one write), rotating afterwards when the file is
    /// over the limit. Returns the bytes written.
    pub fn append(&mut self, changes: &[Change], sent_ns: u64) -> std::io::Result<usize> {
        self.buf.clear();
        self.xid += 1;
        self.pos = self
            .enc
            .transaction(&mut self.buf, self.pos, changes, sent_ns, self.xid);
        if self.pos >= self.max_size {
            let next = file_name(self.index + 1);
            self.enc.rotate(&mut self.buf, Some(self.pos), &next, 4);
            self.file.write_all(&self.buf)?;
            self.index += 1;
            let (file, pos) = Self::open(&self.dir, &self.enc, self.index, self.xid)?;
            self.file = file;
            self.pos = pos;
        } else {
            self.file.write_all(&self.buf)?;
        }
        Ok(self.buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_end_position_and_a_valid_crc() {
        let enc = Encoder {
            server_id: 7,
            row_bytes: 100,
            mysql8: None,
        };
        let mut out = MAGIC.to_vec();
        let end = enc.format_description(&mut out, 1, Some(4));
        assert_eq!(end as usize, out.len());
        let changes = [
            Change {
                table: 0,
                kind: Kind::Insert,
                key: 5,
                seq: 1,
            },
            Change {
                table: 0,
                kind: Kind::Update,
                key: 5,
                seq: 2,
            },
        ];
        let end = enc.transaction(&mut out, end, &changes, 1_700_000_000_000_000_000, 1);
        assert_eq!(end as usize, out.len());
        // Walk the events: sizes chain, log_pos matches, CRC verifies.
        let mut at = 4;
        let mut kinds = Vec::new();
        while at < out.len() {
            let size = u32::from_le_bytes(out[at + 9..at + 13].try_into().unwrap()) as usize;
            let log_pos = u32::from_le_bytes(out[at + 13..at + 17].try_into().unwrap()) as usize;
            assert_eq!(log_pos, at + size);
            let crc = u32::from_le_bytes(out[at + size - 4..at + size].try_into().unwrap());
            assert_eq!(crc, crc32fast::hash(&out[at..at + size - 4]));
            kinds.push(out[at + 4]);
            at += size;
        }
        assert_eq!(
            kinds,
            [
                kind::FORMAT_DESCRIPTION,
                kind::QUERY,
                kind::TABLE_MAP,
                kind::WRITE_ROWS,
                kind::UPDATE_ROWS,
                kind::XID
            ]
        );
    }
}
