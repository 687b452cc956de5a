//! Text-protocol result sets, sans-I/O: the column count and rows of length-encoded
//! strings (0xFB = NULL).

use super::error::MysqlError;

/// One result row; NULL is `None`.
pub type Row = Vec<Option<String>>;

/// The column count packet.
pub fn column_count(p: &[u8]) -> Result<usize, MysqlError> {
    let (n, _) = lenenc(p, 0).ok_or_else(|| MysqlError::Protocol("bad column count".into()))?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n > 0 && n <= 4096)
        .ok_or_else(|| MysqlError::Protocol(format!("{n} columns")))
}

/// A text-protocol row of `columns` values.
pub fn parse_row(p: &[u8], columns: usize) -> Result<Row, MysqlError> {
    Ok(value_ranges(p, columns)?
        .into_iter()
        .map(|r| r.map(|r| String::from_utf8_lossy(&p[r]).into_owned()))
        .collect())
}

/// A text-protocol row of `columns` values as the bytes the server sent (binary
/// strings stay binary), sharing `p`'s buffer.
pub fn parse_row_bytes(p: &bytes::Bytes, columns: usize) -> Result<RawRow, MysqlError> {
    Ok(value_ranges(p, columns)?
        .into_iter()
        .map(|r| r.map(|r| p.slice(r)))
        .collect())
}

/// One result row as sent; NULL is `None`.
pub type RawRow = Vec<Option<bytes::Bytes>>;

/// Where each of the `columns` values of a row lies in `p`; NULL is `None`.
fn value_ranges(
    p: &[u8],
    columns: usize,
) -> Result<Vec<Option<std::ops::Range<usize>>>, MysqlError> {
    let mut row = Vec::with_capacity(columns);
    let mut i = 0;
    for _ in 0..columns {
        if p.get(i) == Some(&0xfb) {
            row.push(None);
            i += 1;
            continue;
        }
        let (len, at) = lenenc(p, i).ok_or_else(|| MysqlError::Protocol("truncated row".into()))?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|len| at.checked_add(len))
            .filter(|&e| e <= p.len())
            .ok_or_else(|| MysqlError::Protocol("truncated row".into()))?;
        row.push(Some(at..end));
        i = end;
    }
    Ok(row)
}

/// A length-encoded integer at `i`: (value, index after it). Read by the one
/// reader of them, the binlog decoder's cursor.
fn lenenc(p: &[u8], i: usize) -> Option<(u64, usize)> {
    let rest = p.get(i..)?;
    let mut c = crate::binlog::cursor::Cursor::new(rest);
    let value = c.lenenc("length-encoded integer").ok()?;
    Some((value, i + rest.len() - c.remaining()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_with_nulls_and_truncation() {
        let p = [3, b'a', b'b', b'c', 0xfb, 0];
        assert_eq!(
            parse_row(&p, 3).unwrap(),
            vec![Some("abc".into()), None, Some(String::new())]
        );
        assert!(parse_row(&p[..3], 3).is_err());
        assert!(parse_row(&[0xfc, 0xff], 1).is_err());
        assert_eq!(column_count(&[2]).unwrap(), 2);
        assert!(column_count(&[0]).is_err());
    }
}
