//! One row change -> the webhook body of SPEC section 5 (`pikachu` or `envelope`).
//! Images are written first (collecting primary-key values), then the object is
//! assembled around them. Hot path (bench: decode throughput).

use crate::binlog::rows::write_image;
use crate::binlog::write::{escaped, rfc3339, string, uint};
use crate::binlog::{DecodeError, KeyValues, PositionedError, RowChange, RowsKind, TableMap};
use crate::config::PayloadShape;

/// Where a row change sits in the binlog; makes its stable id.
#[derive(Debug, Clone, Copy)]
pub struct RowPosition<'a> {
    /// Binlog file name.
    pub file: &'a str,
    /// Start position of the rows event.
    pub pos: u64,
    /// Index of the row within the event.
    pub index: u32,
    /// Event time, seconds since the epoch.
    pub timestamp: u32,
    /// GTID of the transaction, when the server uses GTIDs.
    pub gtid: Option<&'a str>,
}

/// One changed row with everything its payload needs.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// Where it is in the binlog.
    pub at: RowPosition<'a>,
    /// Insert, update or delete.
    pub kind: RowsKind,
    /// The table's map.
    pub table: &'a TableMap,
    /// The row images.
    pub change: RowChange<'a>,
    /// The source transaction's id and this row's number (from 1) among the
    /// task's rows in it: the envelope's `transaction`.
    pub transaction: Option<(&'a str, u32)>,
}

/// Reusable buffers for building payloads.
#[derive(Debug, Default)]
pub struct PayloadWriter {
    before: Vec<u8>,
    after: Vec<u8>,
    before_keys: KeyValues,
    after_keys: KeyValues,
    key_from_after: bool,
}

impl PayloadWriter {
    /// Appends the payload for `change` to `out`; returns the length of the (escaped)
    /// id, which starts 7 bytes into the payload (`{"id":"`). Errors name the row's
    /// binlog position.
    pub fn write(
        &mut self,
        out: &mut Vec<u8>,
        shape: PayloadShape,
        row: &Row<'_>,
        keep: Option<&[bool]>,
    ) -> Result<usize, PositionedError> {
        self.write_inner(out, shape, row, keep)
            .map_err(|source| PositionedError {
                file: row.at.file.to_owned(),
                pos: row.at.pos,
                source,
            })
    }

    fn write_inner(
        &mut self,
        out: &mut Vec<u8>,
        shape: PayloadShape,
        row: &Row<'_>,
        keep: Option<&[bool]>,
    ) -> Result<usize, DecodeError> {
        let Row {
            at,
            kind,
            table,
            change,
            transaction,
        } = *row;
        let keep_fn = |i: usize| keep.is_none_or(|k| k.get(i).copied().unwrap_or(false));
        self.before.clear();
        self.after.clear();
        self.before_keys.clear();
        self.after_keys.clear();
        if let Some(b) = change.before {
            write_image(
                &mut self.before,
                table,
                b,
                None,
                &keep_fn,
                &mut self.before_keys,
            )?;
        }
        if let Some(a) = change.after {
            write_image(
                &mut self.after,
                table,
                a,
                change.before,
                &keep_fn,
                &mut self.after_keys,
            )?;
        }
        self.key_from_after = change.after.is_some();
        let keys = if self.key_from_after {
            &self.after_keys
        } else {
            &self.before_keys
        };

        let id_len = open_with_id(out, &at, b":");
        out.extend_from_slice(b"\",\"primary_id\":");
        write_primary_id(out, table, keys);
        out.extend_from_slice(b",\"event\":\"");
        out.extend_from_slice(kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"database\":");
        string(out, &table.schema);
        out.extend_from_slice(b",\"table\":");
        string(out, &table.table);
        match kind {
            RowsKind::Insert => {
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(&self.after);
            }
            RowsKind::Delete => {
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(&self.before);
            }
            RowsKind::Update => {
                out.extend_from_slice(b",\"old_data\":");
                out.extend_from_slice(&self.before);
                out.extend_from_slice(b",\"new_data\":");
                out.extend_from_slice(&self.after);
            }
        }
        // No `xid`: the XID event follows the rows, and holding every row of a
        // transaction for it would make memory grow with the transaction.
        // `position.gtid` names the transaction where the server has GTIDs.
        write_tail(out, shape, at.timestamp, at.file, at.pos, at.gtid);
        if let (PayloadShape::Envelope, Some((id, seq))) = (shape, transaction) {
            out.extend_from_slice(b",\"transaction\":{\"id\":");
            string(out, id);
            out.extend_from_slice(b",\"seq\":");
            uint(out, u64::from(seq));
            out.push(b'}');
        }
        out.push(b'}');
        Ok(id_len)
    }

    /// Whether the last row written was an update that changed its primary key
    /// (its before and after images carry different key values).
    pub fn key_changed(&self) -> bool {
        self.key_from_after
            && !self.before_keys.spans.is_empty()
            && self.before_keys.text != self.after_keys.text
    }

    /// The key values (JSON text) the last row had before an update, when it
    /// had a before image with a key.
    pub fn old_key(&self) -> Option<&[u8]> {
        (self.key_from_after && !self.before_keys.spans.is_empty())
            .then_some(self.before_keys.text.as_slice())
    }

    /// The primary-key values (JSON text) of the last row written: its routing key.
    /// Empty for a table without a key.
    pub fn key(&self) -> &[u8] {
        if self.key_from_after {
            &self.after_keys.text
        } else {
            &self.before_keys.text
        }
    }
}

/// Opens a payload with its position-derived id `<file>:<pos><sep><index>`
/// (`{"id":"…`, left open); returns the escaped id's length.
fn open_with_id(out: &mut Vec<u8>, at: &RowPosition<'_>, sep: &[u8]) -> usize {
    out.extend_from_slice(b"{\"id\":\"");
    let id_start = out.len();
    escaped(out, at.file.as_bytes());
    out.push(b':');
    uint(out, at.pos);
    out.extend_from_slice(sep);
    uint(out, u64::from(at.index));
    out.len() - id_start
}

/// `timestamp`, and with the envelope `position` and `ts_ms`.
fn write_tail(
    out: &mut Vec<u8>,
    shape: PayloadShape,
    timestamp: u32,
    file: &str,
    pos: u64,
    gtid: Option<&str>,
) {
    out.extend_from_slice(b",\"timestamp\":");
    rfc3339(out, timestamp);
    if shape == PayloadShape::Envelope {
        out.extend_from_slice(b",\"position\":{\"file\":");
        string(out, file);
        out.extend_from_slice(b",\"pos\":");
        uint(out, pos);
        out.extend_from_slice(b",\"gtid\":");
        match gtid {
            Some(g) => string(out, g),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"},\"ts_ms\":");
        uint(out, u64::from(timestamp) * 1000);
    }
}

/// `null` without a key, the value for a one-column key, an object for a composite one.
fn write_primary_id(out: &mut Vec<u8>, table: &TableMap, keys: &KeyValues) {
    match keys.spans.as_slice() {
        [] => out.extend_from_slice(b"null"),
        [(_, range)] => out.extend_from_slice(&keys.text[range.clone()]),
        spans => {
            out.push(b'{');
            for (n, (i, range)) in spans.iter().enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                crate::binlog::rows::write_name(out, table.columns[*i].name.as_deref(), *i);
                out.extend_from_slice(&keys.text[range.clone()]);
            }
            out.push(b'}');
        }
    }
}

/// A sample row for a task's test webhook.
#[derive(Debug, Clone, Copy)]
pub struct SampleRow<'a> {
    /// The payload's id (`test:<task>:<unix time>`).
    pub id: &'a str,
    /// Schema of the table.
    pub schema: &'a str,
    /// The table.
    pub table: &'a str,
    /// The `data` object (JSON).
    pub data: &'a [u8],
    /// The `primary_id` value (JSON).
    pub primary_id: &'a [u8],
    /// Seconds since the epoch.
    pub timestamp: u32,
}

/// Appends a test payload: an `insert` of `row` in `shape`, with `"test": true`;
/// returns the id's length.
pub fn write_sample(out: &mut Vec<u8>, shape: PayloadShape, row: &SampleRow<'_>) -> usize {
    out.extend_from_slice(b"{\"id\":\"");
    let id_start = out.len();
    escaped(out, row.id.as_bytes());
    let id_len = out.len() - id_start;
    out.extend_from_slice(b"\",\"primary_id\":");
    out.extend_from_slice(row.primary_id);
    out.extend_from_slice(b",\"event\":\"insert\",\"database\":");
    string(out, row.schema);
    out.extend_from_slice(b",\"table\":");
    string(out, row.table);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(row.data);
    write_tail(out, shape, row.timestamp, "", 0, None);
    out.extend_from_slice(b",\"test\":true}");
    id_len
}

/// One row a snapshot read, rendered, ready to be wrapped in its task's shape.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotRow<'a> {
    /// The snapshot run's id.
    pub snapshot: &'a str,
    /// Schema of the table.
    pub schema: &'a str,
    /// The table.
    pub table: &'a str,
    /// The `data` object (JSON).
    pub data: &'a [u8],
    /// The `primary_id` value (JSON).
    pub primary_id: &'a [u8],
    /// The key values (JSON text, column order): also the routing key.
    pub key: &'a [u8],
    /// What the row is called: `snapshot` or `insert`.
    pub event: &'a str,
    /// The binlog position the chunk's read is consistent with.
    pub file: &'a str,
    /// Its offset.
    pub pos: u64,
    /// Chunk number within the snapshot.
    pub chunk: u64,
    /// The last chunk of the last table.
    pub last: bool,
    /// When it was read, seconds since the epoch.
    pub timestamp: u32,
}

/// Appends the payload of a snapshot row; returns the id's length (see
/// [`PayloadWriter::write`]). The id is stable for a key within one snapshot:
/// `snapshot:<id>:<table>:<hash of the key>`.
pub fn write_snapshot(out: &mut Vec<u8>, shape: PayloadShape, row: &SnapshotRow<'_>) -> usize {
    out.extend_from_slice(b"{\"id\":\"");
    let id_start = out.len();
    out.extend_from_slice(b"snapshot:");
    escaped(out, row.snapshot.as_bytes());
    out.push(b':');
    escaped(out, row.schema.as_bytes());
    out.push(b'.');
    escaped(out, row.table.as_bytes());
    out.push(b':');
    let hash = crate::route::key_hash(0, row.key);
    out.extend_from_slice(format!("{hash:016x}").as_bytes());
    let id_len = out.len() - id_start;
    out.extend_from_slice(b"\",\"primary_id\":");
    out.extend_from_slice(row.primary_id);
    out.extend_from_slice(b",\"event\":");
    string(out, row.event);
    out.extend_from_slice(b",\"database\":");
    string(out, row.schema);
    out.extend_from_slice(b",\"table\":");
    string(out, row.table);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(row.data);
    write_tail(out, shape, row.timestamp, row.file, row.pos, None);
    if shape == PayloadShape::Envelope {
        out.extend_from_slice(b",\"snapshot\":{\"id\":");
        string(out, row.snapshot);
        out.extend_from_slice(b",\"table\":");
        string(out, &format!("{}.{}", row.schema, row.table));
        out.extend_from_slice(b",\"chunk\":");
        uint(out, row.chunk);
        out.extend_from_slice(b",\"last\":");
        out.extend_from_slice(if row.last { b"true" } else { b"false" });
        out.push(b'}');
    }
    out.push(b'}');
    id_len
}

/// A DDL on a task's table, as the `"event": "schema"` webhook tells it.
#[derive(Debug, Clone, Copy)]
pub struct SchemaChange<'a> {
    /// Where the statement is in the binlog.
    pub at: RowPosition<'a>,
    /// Schema of the table.
    pub schema: &'a str,
    /// The table.
    pub table: &'a str,
    /// The statement as the server logged it.
    pub statement: &'a str,
    /// The columns before (`None`: not known to rowhook).
    pub before: Option<&'a [crate::source::columns::ColumnInfo]>,
    /// The columns after (`None`: the table is gone, or could not be read).
    pub after: Option<&'a [crate::source::columns::ColumnInfo]>,
}

/// Appends the payload of a schema change; returns the id's length (see
/// [`PayloadWriter::write`]). The id is `<file>:<pos>:s<index>`.
pub fn write_schema(out: &mut Vec<u8>, shape: PayloadShape, change: &SchemaChange<'_>) -> usize {
    let at = change.at;
    let id_len = open_with_id(out, &at, b":s");
    out.extend_from_slice(b"\",\"primary_id\":null,\"event\":\"schema\",\"database\":");
    string(out, change.schema);
    out.extend_from_slice(b",\"table\":");
    string(out, change.table);
    out.extend_from_slice(b",\"statement\":");
    string(out, change.statement);
    for (name, columns) in [
        ("columns_before", change.before),
        ("columns_after", change.after),
    ] {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        match columns {
            None => out.extend_from_slice(b"null"),
            Some(cols) => {
                out.push(b'[');
                for (i, c) in cols.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"name\":");
                    string(out, &c.name);
                    out.extend_from_slice(b",\"type\":");
                    string(out, &c.sql_type);
                    out.extend_from_slice(b",\"primary_key\":");
                    out.extend_from_slice(if c.primary_key { b"true" } else { b"false" });
                    out.push(b'}');
                }
                out.push(b']');
            }
        }
    }
    write_tail(out, shape, at.timestamp, at.file, at.pos, at.gtid);
    out.push(b'}');
    id_len
}
