//! One column value of a row image: how many bytes it takes, and its JSON form
//! (SPEC section 5). Hot path (bench: decode throughput): no allocation per value.

use super::cursor::{be, le};
use super::decimal;
use super::error::DecodeError;
use super::json;
use super::table_map::{Column, ColumnType};
use super::temporal;

/// Byte length of the value of `col` at the start of `bytes`.
#[inline]
pub fn value_len(col: &Column, bytes: &[u8]) -> Result<usize, DecodeError> {
    use ColumnType as T;
    let prefixed = |n: u8| -> Result<usize, DecodeError> {
        let n = usize::from(n);
        let head = bytes.get(..n).ok_or_else(|| DecodeError::Truncated {
            what: "value length",
            needed: n - bytes.len(),
        })?;
        Ok(n + le(head) as usize)
    };
    let len = match col.ty {
        T::Tiny | T::Year => 1,
        T::Short => 2,
        T::Int24 | T::Date | T::Time => 3,
        T::Long | T::Float | T::Timestamp => 4,
        T::LongLong | T::Double | T::Datetime => 8,
        T::Null => 0,
        T::NewDecimal { precision, scale } => decimal::binary_size(precision, scale),
        T::Time2 { fsp } => 3 + temporal::frac_len(fsp),
        T::Datetime2 { fsp } => 5 + temporal::frac_len(fsp),
        T::Timestamp2 { fsp } => 4 + temporal::frac_len(fsp),
        T::Varchar { max_len } | T::String { max_len } => {
            prefixed(if max_len > 255 { 2 } else { 1 })?
        }
        T::Enum { pack_len } | T::Set { pack_len } => usize::from(pack_len),
        T::Bit { bits } => usize::from(bits).div_ceil(8),
        T::Blob { len_bytes }
        | T::Json { len_bytes }
        | T::Geometry { len_bytes }
        | T::Vector { len_bytes } => prefixed(len_bytes)?,
    };
    if len > bytes.len() {
        return Err(DecodeError::Truncated {
            what: "column value",
            needed: len - bytes.len(),
        });
    }
    Ok(len)
}

/// Writes the JSON form of `v`, exactly the bytes `value_len` measured.
pub fn write_value(out: &mut Vec<u8>, col: &Column, v: &[u8]) -> Result<(), DecodeError> {
    use ColumnType as T;
    match col.ty {
        T::Tiny => int(out, col, v, 8),
        T::Short => int(out, col, v, 16),
        T::Int24 => int(out, col, v, 24),
        T::Long => int(out, col, v, 32),
        T::LongLong => int(out, col, v, 64),
        T::Float => json::float(out, f32::from_bits(le(v) as u32)),
        T::Double => json::double(out, f64::from_bits(le(v))),
        T::Null => out.extend_from_slice(b"null"),
        T::Year => json::uint(out, if v[0] == 0 { 0 } else { 1900 + u64::from(v[0]) }),
        T::NewDecimal { precision, scale } => decimal::write(out, v, precision, scale)?,
        T::Date => temporal::date(out, v),
        T::Time => temporal::time(out, v),
        T::Time2 { fsp } => temporal::time2(out, v, fsp),
        T::Datetime => temporal::datetime(out, v),
        T::Datetime2 { fsp } => temporal::datetime2(out, v, fsp)?,
        T::Timestamp => temporal::timestamp(out, v),
        T::Timestamp2 { fsp } => temporal::timestamp2(out, v, fsp),
        T::Varchar { max_len } | T::String { max_len } => {
            text(out, col, &v[if max_len > 255 { 2 } else { 1 }..]);
        }
        T::Blob { len_bytes } => {
            let data = &v[usize::from(len_bytes)..];
            if col.json_text && std::str::from_utf8(data).is_ok_and(is_json_document) {
                out.extend_from_slice(data);
            } else {
                text(out, col, data);
            }
        }
        T::Enum { .. } => {
            let index = le(v) as usize;
            match &col.members {
                // 0 is the "invalid value" index MySQL stores as the empty string.
                Some(_) if index == 0 => out.extend_from_slice(b"\"\""),
                Some(m) => match m.get(index - 1) {
                    Some(name) => json::string(out, name),
                    None => {
                        return Err(DecodeError::malformed(
                            "ENUM value",
                            format!("index {index} of {} members", m.len()),
                        ))
                    }
                },
                None => json::uint(out, index as u64),
            }
        }
        T::Set { .. } => {
            let mask = le(v);
            match &col.members {
                Some(m) => {
                    out.push(b'"');
                    let mut first = true;
                    for (i, name) in m.iter().enumerate().take(64) {
                        if mask & (1 << i) != 0 {
                            if !first {
                                out.push(b',');
                            }
                            json::escaped(out, name.as_bytes());
                            first = false;
                        }
                    }
                    out.push(b'"');
                }
                None => json::uint(out, mask),
            }
        }
        T::Bit { .. } => {
            if v.len() > 8 {
                return Err(DecodeError::malformed(
                    "BIT value",
                    format!("{} bytes", v.len()),
                ));
            }
            json::uint(out, be(v));
        }
        T::Geometry { len_bytes } => {
            // MySQL prefixes WKB with a 4-byte SRID; the SPEC sends plain WKB.
            let data = &v[usize::from(len_bytes)..];
            json::base64(out, data.get(4..).unwrap_or(data));
        }
        T::Vector { len_bytes } => {
            let data = &v[usize::from(len_bytes)..];
            out.push(b'[');
            for (i, f) in data.chunks_exact(4).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json::float(out, f32::from_bits(le(f) as u32));
            }
            out.push(b']');
        }
        T::Json { len_bytes } => super::jsonb::write(out, &v[usize::from(len_bytes)..])?,
    }
    Ok(())
}

#[inline]
fn int(out: &mut Vec<u8>, col: &Column, v: &[u8], bits: u32) {
    let raw = le(v);
    if col.unsigned {
        json::uint(out, raw);
    } else {
        // Sign-extend from `bits`.
        let shift = 64 - bits;
        json::int(out, ((raw << shift) as i64) >> shift);
    }
}

/// Character data: decoded from the column charset; binary collations as base64.
fn text(out: &mut Vec<u8>, col: &Column, data: &[u8]) {
    match col.collation {
        Some(c) if c == super::table_map::BINARY_COLLATION => json::base64(out, data),
        Some(c) if is_latin1(c) => latin1(out, data),
        Some(_) => utf8(out, data),
        // MINIMAL metadata without a schema lookup: text if it is UTF-8, else bytes.
        None => match std::str::from_utf8(data) {
            Ok(s) => json::string(out, s),
            Err(_) => json::base64(out, data),
        },
    }
}

fn utf8(out: &mut Vec<u8>, data: &[u8]) {
    match std::str::from_utf8(data) {
        Ok(s) => json::string(out, s),
        Err(_) => json::string(out, &String::from_utf8_lossy(data)),
    }
}

/// MySQL's latin1 collations (latin1 is really Windows-1252 there).
fn is_latin1(collation: u16) -> bool {
    matches!(collation, 5 | 8 | 15 | 31 | 47 | 48 | 49 | 94)
}

fn latin1(out: &mut Vec<u8>, data: &[u8]) {
    const CP1252: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    out.push(b'"');
    for chunk in data.split_inclusive(|b| !b.is_ascii()) {
        // Each chunk is ASCII, possibly ending in one non-ASCII byte.
        let (last, ascii) = match chunk.split_last() {
            Some((&b, rest)) if !b.is_ascii() => (Some(b), rest),
            _ => (None, chunk),
        };
        json::escaped(out, ascii);
        if let Some(b) = last {
            let c = match b {
                0x80..=0x9f => CP1252[usize::from(b - 0x80)],
                _ => char::from(b),
            };
            out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes());
        }
    }
    out.push(b'"');
}

/// MariaDB JSON columns are LONGTEXT with a CHECK constraint; embed the text only
/// when it really is one JSON document, so a payload can never become invalid JSON.
fn is_json_document(s: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn latin1_is_cp1252_without_allocating_per_value() {
        let text = crate::binlog::json::rendered(|o| latin1(o, b"caf\xe9 \x80 \"q\"\n"));
        assert_eq!(text, "\"café € \\\"q\\\"\\n\"");
        assert_eq!(crate::binlog::json::rendered(|o| latin1(o, b"")), "\"\"");
    }
}
