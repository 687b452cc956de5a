//! WRITE/UPDATE/DELETE_ROWS (v1 and v2): the event header, then each row image found
//! by walking the columns just far enough to know where it ends.

use super::cursor::Cursor;
use super::error::DecodeError;
use super::event::kind;
use super::json;
use super::table_map::{ColumnType, TableMap};
use super::value::{value_len, write_value};

/// What a rows event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsKind {
    /// INSERT: one after image per row.
    Insert,
    /// UPDATE: a before and an after image per row.
    Update,
    /// DELETE: one before image per row.
    Delete,
}

impl RowsKind {
    /// The payload's `event` word.
    pub fn as_str(self) -> &'static str {
        match self {
            RowsKind::Insert => "insert",
            RowsKind::Update => "update",
            RowsKind::Delete => "delete",
        }
    }

    /// The kind for a rows event type code, if it is one rowhook decodes.
    pub fn from_event(code: u8) -> Option<(Self, bool)> {
        Some(match code {
            kind::WRITE_ROWS_V1 => (RowsKind::Insert, false),
            kind::UPDATE_ROWS_V1 => (RowsKind::Update, false),
            kind::DELETE_ROWS_V1 => (RowsKind::Delete, false),
            kind::WRITE_ROWS => (RowsKind::Insert, true),
            kind::UPDATE_ROWS => (RowsKind::Update, true),
            kind::DELETE_ROWS => (RowsKind::Delete, true),
            _ => return None,
        })
    }
}

/// A rows event, its row images not yet walked.
#[derive(Debug, Clone)]
pub struct RowsEvent<'a> {
    /// Insert, update or delete.
    pub kind: RowsKind,
    /// The table id of the TABLE_MAP it refers to.
    pub table_id: u64,
    /// Event flags (bit 0: end of statement).
    pub flags: u16,
    /// Columns in the table at the time.
    pub column_count: usize,
    present_before: &'a [u8],
    present_after: &'a [u8],
    rows: &'a [u8],
    /// PARTIAL_UPDATE_ROWS: after images may carry JSON diffs.
    pub partial: bool,
}

/// `PARTIAL_JSON_UPDATES` in the value options of a shared image.
const PARTIAL_JSON_UPDATES: u64 = 1;

/// One row image: the null bitmap and values of the present columns.
#[derive(Debug, Clone, Copy)]
pub struct RowImage<'a> {
    /// Which columns the image holds (bit per table column).
    pub present: &'a [u8],
    /// The image bytes: null bitmap then values.
    pub bytes: &'a [u8],
    /// The after image of a partial update: a bitmap over the table's JSON
    /// columns marking those that hold diffs (empty otherwise).
    pub json_diffs: &'a [u8],
}

/// One changed row.
#[derive(Debug, Clone, Copy)]
pub struct RowChange<'a> {
    /// Before image (update, delete).
    pub before: Option<RowImage<'a>>,
    /// After image (insert, update).
    pub after: Option<RowImage<'a>>,
}

#[inline]
fn bit(bitmap: &[u8], i: usize) -> bool {
    bitmap[i / 8] & (1 << (i % 8)) != 0
}

impl<'a> RowsEvent<'a> {
    /// Parses the rows event header. `v2` events carry an extra-data block.
    pub fn parse(
        body: &'a [u8],
        kind: RowsKind,
        v2: bool,
        table_id_len: usize,
    ) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(body);
        let table_id = c.uint_le(table_id_len, "rows event table id")?;
        let flags = c.u16("rows event flags")?;
        if v2 {
            let extra = usize::from(c.u16("rows event extra data length")?);
            if extra < 2 {
                return Err(DecodeError::malformed(
                    "rows event",
                    format!("extra data length {extra} < 2"),
                ));
            }
            c.skip(extra - 2, "rows event extra data")?;
        }
        let column_count = c.lenenc("rows event column count")?;
        // MySQL and MariaDB tables have at most 4096 columns.
        if column_count > 4096 {
            return Err(DecodeError::malformed(
                "rows event",
                format!("{column_count} columns"),
            ));
        }
        let column_count = column_count as usize;
        let bitmap_len = column_count.div_ceil(8);
        let present_before = c.take(bitmap_len, "rows event column bitmap")?;
        let present_after = if kind == RowsKind::Update {
            c.take(bitmap_len, "rows event after-image bitmap")?
        } else {
            present_before
        };
        Ok(RowsEvent {
            kind,
            table_id,
            flags,
            column_count,
            present_before,
            present_after,
            rows: c.rest(),
            partial: false,
        })
    }

    /// Iterates the changed rows, checking each image against `table`.
    pub fn rows<'t>(&self, table: &'t TableMap) -> Result<RowIter<'a, 't>, DecodeError> {
        if self.column_count != table.columns.len() {
            return Err(DecodeError::malformed(
                "rows event",
                format!(
                    "{} columns, but the TABLE_MAP of {} has {}",
                    self.column_count,
                    table.qualified_name(),
                    table.columns.len()
                ),
            ));
        }
        Ok(RowIter {
            kind: self.kind,
            table,
            present_before: self.present_before,
            present_after: self.present_after,
            rest: self.rows,
            partial: self.partial,
        })
    }
}

/// Iterator over the rows of one event.
pub struct RowIter<'a, 't> {
    kind: RowsKind,
    table: &'t TableMap,
    present_before: &'a [u8],
    present_after: &'a [u8],
    rest: &'a [u8],
    partial: bool,
}

impl<'a> RowIter<'a, '_> {
    /// The shared image ahead of a partial after image: value options, and with
    /// PARTIAL_JSON_UPDATES a bitmap over the table's JSON columns.
    fn shared_image(&mut self) -> Result<&'a [u8], DecodeError> {
        let mut c = Cursor::new(self.rest);
        let options = c.lenenc("partial update value options")?;
        let bitmap = if options & PARTIAL_JSON_UPDATES != 0 {
            let json = self
                .table
                .columns
                .iter()
                .filter(|col| matches!(col.ty, ColumnType::Json { .. }))
                .count();
            c.take(json.div_ceil(8), "partial update JSON bitmap")?
        } else {
            &[]
        };
        self.rest = c.rest();
        Ok(bitmap)
    }

    fn image(&mut self, present: &'a [u8]) -> Result<RowImage<'a>, DecodeError> {
        let len = image_len(self.table, present, self.rest)?;
        // An image with no columns takes no bytes: iterating would never end.
        if len == 0 {
            return Err(DecodeError::malformed(
                "rows event",
                "row image with no columns",
            ));
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(RowImage {
            present,
            bytes,
            json_diffs: &[],
        })
    }
}

impl<'a> Iterator for RowIter<'a, '_> {
    type Item = Result<RowChange<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let change = match self.kind {
            RowsKind::Insert => self.image(self.present_after).map(|a| RowChange {
                before: None,
                after: Some(a),
            }),
            RowsKind::Delete => self.image(self.present_before).map(|b| RowChange {
                before: Some(b),
                after: None,
            }),
            RowsKind::Update => self.image(self.present_before).and_then(|b| {
                let diffs = if self.partial {
                    self.shared_image()?
                } else {
                    &[]
                };
                let mut a = self.image(self.present_after)?;
                a.json_diffs = diffs;
                Ok(RowChange {
                    before: Some(b),
                    after: Some(a),
                })
            }),
        };
        if change.is_err() {
            // Stop after an error: the rest of the event cannot be framed.
            self.rest = &[];
        }
        Some(change)
    }
}

/// Length of the row image at the start of `bytes`. Hot path (bench: decode throughput).
pub fn image_len(table: &TableMap, present: &[u8], bytes: &[u8]) -> Result<usize, DecodeError> {
    let n_present = (0..table.columns.len())
        .filter(|&i| bit(present, i))
        .count();
    let null_len = n_present.div_ceil(8);
    if bytes.len() < null_len {
        return Err(DecodeError::Truncated {
            what: "row null bitmap",
            needed: null_len - bytes.len(),
        });
    }
    let nulls = &bytes[..null_len];
    let mut pos = null_len;
    let mut k = 0;
    for (i, col) in table.columns.iter().enumerate() {
        if !bit(present, i) {
            continue;
        }
        let is_null = bit(nulls, k);
        k += 1;
        if !is_null {
            pos += value_len(col, &bytes[pos..])?;
        }
    }
    Ok(pos)
}

/// Primary-key values met while writing an image: JSON text in `text`, and per key
/// column its index and the range of its value in `text`.
#[derive(Debug, Default)]
pub struct KeyValues {
    /// JSON text of the key values, back to back.
    pub text: Vec<u8>,
    /// (column index, range in `text`) per key column, in column order.
    pub spans: Vec<(usize, std::ops::Range<usize>)>,
}

impl KeyValues {
    /// Forgets the previous row's keys.
    pub fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
    }
}

/// Writes `image` as a JSON object of `name: value`, keeping only the columns for
/// which `keep(i)` is true, and collects primary-key values (kept or not) in `keys`.
/// `before` is the row's before image when `image` is an after image (partial
/// JSON updates apply to it). Hot path (bench: decode throughput).
pub fn write_image(
    out: &mut Vec<u8>,
    table: &TableMap,
    image: RowImage<'_>,
    before: Option<RowImage<'_>>,
    keep: &dyn Fn(usize) -> bool,
    keys: &mut KeyValues,
) -> Result<(), DecodeError> {
    let nulls = null_bitmap(table, image)?;
    let mut pos = nulls.len();
    let mut k = 0;
    let mut first = true;
    out.push(b'{');
    for (i, col) in table.columns.iter().enumerate() {
        if !bit(image.present, i) {
            continue;
        }
        let is_null = bit(nulls, k);
        k += 1;
        let len = if is_null {
            0
        } else {
            value_len(col, &image.bytes[pos..])?
        };
        let value = &image.bytes[pos..pos + len];
        pos += len;
        if keep(i) {
            if !first {
                out.push(b',');
            }
            first = false;
            write_name(out, col.name.as_deref(), i);
            let start = out.len();
            if is_null {
                out.extend_from_slice(b"null");
            } else if !image.json_diffs.is_empty() && holds_diffs(table, image.json_diffs, i) {
                write_patched(out, table, before, i, value)?;
            } else {
                write_value(out, col, value)?;
            }
            if col.primary_key {
                let from = keys.text.len();
                keys.text.extend_from_slice(&out[start..]);
                keys.spans.push((i, from..keys.text.len()));
            }
        } else if col.primary_key {
            let from = keys.text.len();
            if is_null {
                keys.text.extend_from_slice(b"null");
            } else {
                write_value(&mut keys.text, col, value)?;
            }
            keys.spans.push((i, from..keys.text.len()));
        }
    }
    out.push(b'}');
    Ok(())
}

/// The null bitmap at the start of `image`: a bit per present column.
fn null_bitmap<'b>(table: &TableMap, image: RowImage<'b>) -> Result<&'b [u8], DecodeError> {
    let n_present = (0..table.columns.len())
        .filter(|&i| bit(image.present, i))
        .count();
    let null_len = n_present.div_ceil(8);
    image.bytes.get(..null_len).ok_or(DecodeError::Truncated {
        what: "row null bitmap",
        needed: null_len,
    })
}

/// Whether column `i` of a partial after image holds JSON diffs.
fn holds_diffs(table: &TableMap, json_diffs: &[u8], i: usize) -> bool {
    let is_json = |c: &super::table_map::Column| matches!(c.ty, ColumnType::Json { .. });
    if !table.columns.get(i).is_some_and(is_json) {
        return false;
    }
    let nth = table.columns[..i].iter().filter(|c| is_json(c)).count();
    json_diffs
        .get(nth / 8)
        .is_some_and(|b| b & (1 << (nth % 8)) != 0)
}

/// Writes column `i`'s document: the before image's, with the diffs in `value`
/// (a JSON column value: length, then the diff list) applied; or, when the
/// before image lacks it, the diffs themselves.
fn write_patched(
    out: &mut Vec<u8>,
    table: &TableMap,
    before: Option<RowImage<'_>>,
    i: usize,
    value: &[u8],
) -> Result<(), DecodeError> {
    let col = &table.columns[i];
    let ColumnType::Json { len_bytes } = col.ty else {
        return Err(DecodeError::malformed(
            "partial update",
            "not a JSON column",
        ));
    };
    let diffs = value.get(usize::from(len_bytes)..).unwrap_or_default();
    let old = match before {
        Some(b) => column_value(table, b, i)?,
        None => None,
    };
    // binlog_row_image=MINIMAL leaves the document out of the before image.
    let Some(old) = old else {
        return super::json_diff::write_diffs(out, diffs);
    };
    let mut doc = Vec::with_capacity(old.len() * 2);
    write_value(&mut doc, col, old)?;
    super::json_diff::apply(out, &doc, diffs)
}

/// The bytes of column `i` in `image`; `None` when absent or NULL.
fn column_value<'b>(
    table: &TableMap,
    image: RowImage<'b>,
    i: usize,
) -> Result<Option<&'b [u8]>, DecodeError> {
    if !bit(image.present, i) {
        return Ok(None);
    }
    let nulls = null_bitmap(table, image)?;
    let (mut pos, mut k) = (nulls.len(), 0);
    for (j, col) in table.columns.iter().enumerate().take(i + 1) {
        if !bit(image.present, j) {
            continue;
        }
        let is_null = bit(nulls, k);
        k += 1;
        let len = if is_null {
            0
        } else {
            value_len(col, &image.bytes[pos..])?
        };
        if j == i {
            return Ok((!is_null).then(|| &image.bytes[pos..pos + len]));
        }
        pos += len;
    }
    Ok(None)
}

/// Writes `"name":`, or `"@N":` (1-based, as mysqlbinlog) when names are unknown.
pub fn write_name(out: &mut Vec<u8>, name: Option<&str>, index: usize) {
    match name {
        Some(n) => json::string(out, n),
        None => {
            out.extend_from_slice(b"\"@");
            json::uint(out, index as u64 + 1);
            out.push(b'"');
        }
    }
    out.push(b':');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_int_table() -> TableMap {
        // TABLE_MAP body: id 1, flags, "s", "t", 1 column of type LONG, no metadata,
        // null bitmap.
        let body = [1, 0, 0, 0, 0, 0, 0, 0, 1, b's', 0, 1, b't', 0, 1, 3, 0, 0];
        TableMap::parse(&body, 6).unwrap()
    }

    #[test]
    fn rows_of_an_insert() {
        let table = one_int_table();
        // v1 write rows: id, flags, 1 column, present bitmap 1, two rows of INT.
        let body = [1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 7, 0, 0, 0, 0, 9, 0, 0, 0];
        let ev = RowsEvent::parse(&body, RowsKind::Insert, false, 6).unwrap();
        let rows: Vec<_> = ev.rows(&table).unwrap().collect::<Result<_, _>>().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].after.unwrap().bytes, &[0, 9, 0, 0, 0]);
    }

    #[test]
    fn empty_images_are_refused_not_looped_on() {
        let table = one_int_table();
        // Present bitmap 0: every image is zero bytes long, yet bytes remain.
        let body = [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xaa, 0xbb];
        let ev = RowsEvent::parse(&body, RowsKind::Insert, false, 6).unwrap();
        let mut rows = ev.rows(&table).unwrap();
        assert!(matches!(
            rows.next(),
            Some(Err(DecodeError::Malformed { .. }))
        ));
        assert!(rows.next().is_none());
    }
}
