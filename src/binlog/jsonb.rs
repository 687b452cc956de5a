//! MySQL's binary JSON (the JSON column type in MySQL 5.7+ row events) written as
//! JSON text. Layout: sql/json_binary.h in the MySQL source. Offsets inside objects
//! and arrays are checked; depth is bounded so hostile input cannot overflow the stack.

use super::cursor::le;
use super::error::DecodeError;
use super::json;

const SMALL_OBJECT: u8 = 0x00;
const LARGE_OBJECT: u8 = 0x01;
const SMALL_ARRAY: u8 = 0x02;
const LARGE_ARRAY: u8 = 0x03;
const LITERAL: u8 = 0x04;
const INT16: u8 = 0x05;
const UINT16: u8 = 0x06;
const INT32: u8 = 0x07;
const UINT32: u8 = 0x08;
const INT64: u8 = 0x09;
const UINT64: u8 = 0x0a;
const DOUBLE: u8 = 0x0b;
const STRING: u8 = 0x0c;
const OPAQUE: u8 = 0x0f;

/// MySQL allows 100 levels; a little slack, then refuse.
const MAX_DEPTH: usize = 128;

fn bad(detail: impl Into<String>) -> DecodeError {
    DecodeError::malformed("binary JSON", detail)
}

/// Writes a whole binary JSON document (an empty value is JSON null, as MySQL does
/// for a NULL-equivalent empty document).
pub fn write(out: &mut Vec<u8>, doc: &[u8]) -> Result<(), DecodeError> {
    let Some((&ty, body)) = doc.split_first() else {
        out.extend_from_slice(b"null");
        return Ok(());
    };
    value(out, ty, body, 0)
}

fn value(out: &mut Vec<u8>, ty: u8, data: &[u8], depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(bad("nested too deeply"));
    }
    let fixed = |n: usize| data.get(..n).ok_or_else(|| bad("value past the end"));
    match ty {
        SMALL_OBJECT | LARGE_OBJECT => {
            return container(out, data, ty == LARGE_OBJECT, true, depth)
        }
        SMALL_ARRAY | LARGE_ARRAY => return container(out, data, ty == LARGE_ARRAY, false, depth),
        LITERAL => return literal(out, *fixed(1)?.first().unwrap_or(&0xff)),
        INT16 => json::int(out, i64::from(le(fixed(2)?) as u16 as i16)),
        UINT16 => json::uint(out, le(fixed(2)?)),
        INT32 => json::int(out, i64::from(le(fixed(4)?) as u32 as i32)),
        UINT32 => json::uint(out, le(fixed(4)?)),
        INT64 => json::int(out, le(fixed(8)?) as i64),
        UINT64 => json::uint(out, le(fixed(8)?)),
        DOUBLE => json::double(out, f64::from_bits(le(fixed(8)?))),
        STRING => {
            let (len, n) = var_len(data)?;
            let s = data
                .get(n..n + len)
                .ok_or_else(|| bad("string past the end"))?;
            out.push(b'"');
            match std::str::from_utf8(s) {
                Ok(s) => json::escaped(out, s.as_bytes()),
                Err(_) => json::escaped(out, String::from_utf8_lossy(s).as_bytes()),
            }
            out.push(b'"');
        }
        OPAQUE => return opaque(out, data),
        other => return Err(bad(format!("unknown value type {other:#04x}"))),
    }
    Ok(())
}

fn literal(out: &mut Vec<u8>, v: u8) -> Result<(), DecodeError> {
    out.extend_from_slice(match v {
        0 => b"null".as_slice(),
        1 => b"true",
        2 => b"false",
        other => return Err(bad(format!("unknown literal {other}"))),
    });
    Ok(())
}

/// Variable-length length: 7 bits per byte, low groups first, at most 5 bytes.
fn var_len(data: &[u8]) -> Result<(usize, usize), DecodeError> {
    let mut len = 0usize;
    for i in 0..5 {
        let b = *data.get(i).ok_or_else(|| bad("length past the end"))?;
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((len, i + 1));
        }
    }
    Err(bad("length longer than 5 bytes"))
}

fn container(
    out: &mut Vec<u8>,
    data: &[u8],
    large: bool,
    object: bool,
    depth: usize,
) -> Result<(), DecodeError> {
    let w = if large { 4 } else { 2 };
    let read = |at: usize, n: usize| -> Result<usize, DecodeError> {
        data.get(at..at + n)
            .map(|b| le(b) as usize)
            .ok_or_else(|| bad("container header past the end"))
    };
    let count = read(0, w)?;
    let size = read(w, w)?;
    if size > data.len() {
        return Err(bad(format!(
            "container of {size} bytes in {} bytes",
            data.len()
        )));
    }
    let data = &data[..size];
    let key_entries = 2 * w;
    let key_entry_len = w + 2;
    let value_entry_len = 1 + w;
    let values_at = key_entries + if object { count * key_entry_len } else { 0 };
    if values_at + count.saturating_mul(value_entry_len) > size {
        return Err(bad("container entries past its end"));
    }
    out.push(if object { b'{' } else { b'[' });
    for i in 0..count {
        if i > 0 {
            out.push(b',');
        }
        if object {
            let e = key_entries + i * key_entry_len;
            let off = read(e, w)?;
            let len = read(e + w, 2)?;
            let key = data
                .get(off..off + len)
                .ok_or_else(|| bad("key past the end"))?;
            out.push(b'"');
            json::escaped(out, String::from_utf8_lossy(key).as_bytes());
            out.extend_from_slice(b"\":");
        }
        let e = values_at + i * value_entry_len;
        let ty = data[e];
        let inlined = match ty {
            LITERAL | INT16 | UINT16 => true,
            INT32 | UINT32 => large,
            _ => false,
        };
        if inlined {
            value(out, ty, &data[e + 1..e + 1 + w], depth + 1)?;
        } else {
            let off = read(e + 1, w)?;
            let v = data
                .get(off..)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| bad("value offset past the end"))?;
            value(out, ty, v, depth + 1)?;
        }
    }
    out.push(if object { b'}' } else { b']' });
    Ok(())
}

/// Opaque values carry a MySQL field type: temporals and decimals are rendered as
/// MySQL's JSON output does; anything else as MySQL's `base64:typeNN:` string.
fn opaque(out: &mut Vec<u8>, data: &[u8]) -> Result<(), DecodeError> {
    let (&field_type, rest) = data
        .split_first()
        .ok_or_else(|| bad("opaque without type"))?;
    let (len, n) = var_len(rest)?;
    let v = rest
        .get(n..n + len)
        .ok_or_else(|| bad("opaque value past the end"))?;
    match field_type {
        // NEWDECIMAL: precision, scale, packed decimal.
        246 if v.len() >= 2 => {
            let (p, s) = (v[0], v[1]);
            if p == 0 || s > p || super::decimal::binary_size(p, s) != v.len() - 2 {
                return Err(bad("opaque DECIMAL with inconsistent precision"));
            }
            super::decimal::write_plain(out, &v[2..], p, s)
        }
        // DATE, DATETIME, TIMESTAMP, TIME: a packed 8-byte integer.
        10 | 12 | 7 | 11 if v.len() >= 8 => {
            packed_temporal(out, field_type, le(&v[..8]) as i64);
            Ok(())
        }
        _ => {
            out.extend_from_slice(b"\"base64:type");
            out.extend_from_slice(itoa::Buffer::new().format(field_type).as_bytes());
            out.push(b':');
            let mut b64 = Vec::new();
            json::base64(&mut b64, v);
            out.extend_from_slice(&b64[1..b64.len() - 1]);
            out.push(b'"');
            Ok(())
        }
    }
}

fn packed_temporal(out: &mut Vec<u8>, field_type: u8, packed: i64) {
    let negative = packed < 0;
    let p = packed.unsigned_abs();
    let int = p >> 24;
    let micros = p % (1 << 24);
    out.push(b'"');
    if field_type == 11 {
        if negative {
            out.push(b'-');
        }
        json::digits(out, (int >> 12) % (1 << 10), 2);
        out.push(b':');
        json::digits(out, (int >> 6) % 64, 2);
        out.push(b':');
        json::digits(out, int % 64, 2);
    } else {
        let ymd = int >> 17;
        let ym = ymd >> 5;
        let hms = int % (1 << 17);
        super::temporal::write_date(out, (ym / 13) as u32, (ym % 13) as u32, (ymd % 32) as u32);
        if field_type != 10 {
            out.push(b' ');
            json::digits(out, hms >> 12, 2);
            out.push(b':');
            json::digits(out, (hms >> 6) % 64, 2);
            out.push(b':');
            json::digits(out, hms % 64, 2);
        }
    }
    if field_type != 10 {
        out.push(b'.');
        json::digits(out, micros, 6);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(doc: &[u8]) -> Result<String, DecodeError> {
        let mut out = Vec::new();
        write(&mut out, doc)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn small_object_with_inline_and_string_values() {
        // {"a": 1, "b": "xy"} in the small format.
        let mut d = vec![SMALL_OBJECT];
        let body: Vec<u8> = vec![
            2, 0, // count
            0, 0, // size (patched below)
            18, 0, 1, 0, // key "a" at 18, len 1
            19, 0, 1, 0, // key "b" at 19, len 1
            INT16, 1, 0, // inline 1
            STRING, 20, 0, // string at 20
            b'a', b'b', 2, b'x', b'y',
        ];
        let mut body = body;
        let size = body.len() as u16;
        body[2..4].copy_from_slice(&size.to_le_bytes());
        d.extend(body);
        assert_eq!(text(&d).unwrap(), r#"{"a":1,"b":"xy"}"#);
    }

    #[test]
    fn scalars_and_hostile_input() {
        assert_eq!(text(&[LITERAL, 1]).unwrap(), "true");
        assert_eq!(
            text(&[INT64, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap(),
            "-1"
        );
        assert_eq!(text(&[]).unwrap(), "null");
        assert!(text(&[0x0e]).is_err());
        assert!(text(&[SMALL_ARRAY, 5, 0, 0xff, 0xff]).is_err());
        assert!(text(&[STRING, 0x80, 0x80, 0x80, 0x80, 0x80]).is_err());
        // A string length far past the end.
        assert!(text(&[STRING, 100, b'a']).is_err());
    }
}
