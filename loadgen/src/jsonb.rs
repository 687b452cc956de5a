//! MySQL's binary JSON format (what a JSON column holds in a row image), for the
//! documents `--flavor mysql8` puts in each row. Only what the generated documents
//! use: objects, arrays, literals, int64, double and strings, small or large form.

/// A JSON value to encode.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// null.
    Null,
    /// true / false.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// A string.
    Str(String),
    /// An array.
    Array(Vec<Json>),
    /// An object (keys are sorted when encoded, as MySQL stores them).
    Object(Vec<(String, Json)>),
}

const SMALL_OBJECT: u8 = 0x00;
const LARGE_OBJECT: u8 = 0x01;
const SMALL_ARRAY: u8 = 0x02;
const LARGE_ARRAY: u8 = 0x03;
const LITERAL: u8 = 0x04;
const INT64: u8 = 0x09;
const DOUBLE: u8 = 0x0b;
const STRING: u8 = 0x0c;

/// The document's bytes: its type byte, then its value.
pub fn encode(doc: &Json) -> Vec<u8> {
    let mut out = vec![type_of(doc, false)];
    value(doc, &mut out, false);
    // A container too big for 16-bit offsets is written again in the large form.
    if matches!(doc, Json::Array(_) | Json::Object(_)) && out.len() > 0xffff {
        out.clear();
        out.push(type_of(doc, true));
        value(doc, &mut out, true);
    }
    out
}

fn type_of(v: &Json, large: bool) -> u8 {
    match v {
        Json::Null | Json::Bool(_) => LITERAL,
        Json::Int(_) => INT64,
        Json::Double(_) => DOUBLE,
        Json::Str(_) => STRING,
        Json::Array(_) if large => LARGE_ARRAY,
        Json::Array(_) => SMALL_ARRAY,
        Json::Object(_) if large => LARGE_OBJECT,
        Json::Object(_) => SMALL_OBJECT,
    }
}

fn literal(v: &Json) -> Option<u8> {
    match v {
        Json::Null => Some(0),
        Json::Bool(true) => Some(1),
        Json::Bool(false) => Some(2),
        _ => None,
    }
}

/// Appends a scalar's or container's value (without its type byte).
fn value(v: &Json, out: &mut Vec<u8>, large: bool) {
    match v {
        Json::Null | Json::Bool(_) => out.push(literal(v).unwrap_or(0)),
        Json::Int(n) => out.extend_from_slice(&n.to_le_bytes()),
        Json::Double(d) => out.extend_from_slice(&d.to_le_bytes()),
        Json::Str(s) => {
            let mut n = s.len();
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                out.push(if n > 0 { byte | 0x80 } else { byte });
                if n == 0 {
                    break;
                }
            }
            out.extend_from_slice(s.as_bytes());
        }
        Json::Array(items) => {
            let entries: Vec<(Option<&str>, &Json)> = items.iter().map(|i| (None, i)).collect();
            container(&entries, out, large);
        }
        Json::Object(fields) => {
            let mut sorted: Vec<&(String, Json)> = fields.iter().collect();
            // MySQL orders keys by length, then bytes.
            sorted.sort_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
            let entries: Vec<(Option<&str>, &Json)> =
                sorted.iter().map(|(k, v)| (Some(k.as_str()), v)).collect();
            container(&entries, out, large);
        }
    }
}

/// An object (keys given) or array: count, size, key entries, value entries,
/// keys, values; offsets count from the container's first byte.
fn container(entries: &[(Option<&str>, &Json)], out: &mut Vec<u8>, large: bool) {
    let width = if large { 4 } else { 2 };
    let put = |out: &mut Vec<u8>, at: usize, n: usize| {
        out[at..at + width].copy_from_slice(&(n as u32).to_le_bytes()[..width]);
    };
    let start = out.len();
    let keyed = entries.first().is_some_and(|e| e.0.is_some());
    let key_entry = if keyed { width + 2 } else { 0 };
    let header = 2 * width + entries.len() * (key_entry + 1 + width);
    out.resize(start + header, 0);
    put(out, start, entries.len());
    for (i, (key, _)) in entries.iter().enumerate() {
        if let Some(k) = key {
            let offset = out.len() - start;
            let at = start + 2 * width + i * key_entry;
            put(out, at, offset);
            out[at + width..at + width + 2].copy_from_slice(&(k.len() as u16).to_le_bytes());
            out.extend_from_slice(k.as_bytes());
        }
    }
    let values = start + 2 * width + entries.len() * key_entry;
    for (i, (_, v)) in entries.iter().enumerate() {
        let at = values + i * (1 + width);
        out[at] = type_of(v, large);
        if let Some(l) = literal(v) {
            // Literals are inlined in the value entry.
            out[at + 1] = l;
            continue;
        }
        let offset = out.len() - start;
        put(out, at + 1, offset);
        value(v, out, large);
    }
    let size = out.len() - start;
    put(out, start + width, size);
}

/// The document loadgen writes for a row: some of each kind, derived from the key
/// and seq so a receiver can check it.
pub fn row_document(key: u64, seq: u64) -> Json {
    Json::Object(vec![
        ("key".into(), Json::Int(key as i64)),
        ("seq".into(), Json::Int(seq as i64)),
        ("ok".into(), Json::Bool(seq.is_multiple_of(2))),
        ("none".into(), Json::Null),
        ("ratio".into(), Json::Double(seq as f64 / 4.0)),
        (
            "tags".into(),
            Json::Array(vec![
                Json::Str(format!("k{key}")),
                Json::Str("émoji 🚀".into()),
                Json::Int(-(seq as i64)),
            ]),
        ),
        (
            "nested".into(),
            Json::Object(vec![
                ("depth".into(), Json::Int(2)),
                (
                    "list".into(),
                    Json::Array(vec![Json::Bool(true), Json::Null]),
                ),
            ]),
        ),
    ])
}

/// The diff list (as a partial update logs it) that turns `row_document(key, 0)`
/// into `row_document(key, seq)`: replace `$.seq`, `$.ok`, `$.ratio`, `$.tags[2]`.
pub fn seq_diffs(seq: u64) -> Vec<u8> {
    let doc = row_document(0, seq);
    let Json::Object(fields) = &doc else {
        return Vec::new();
    };
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let tags = match field("tags") {
        Some(Json::Array(items)) => items.get(2),
        _ => None,
    };
    let mut out = Vec::new();
    for (path, value) in [
        ("$.seq", field("seq")),
        ("$.ok", field("ok")),
        ("$.ratio", field("ratio")),
        ("$.tags[2]", tags),
    ] {
        let Some(value) = value else { continue };
        let bytes = encode(value);
        out.push(0); // REPLACE
        out.push(path.len() as u8);
        out.extend_from_slice(path.as_bytes());
        out.push(bytes.len() as u8); // scalars: well under 251 bytes
        out.extend_from_slice(&bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_object_layout() {
        // {"a": 1} as MySQL writes it: small object, count 1, size, key entry,
        // value entry (int64 at an offset), key, value.
        let doc = Json::Object(vec![("a".into(), Json::Int(1))]);
        let b = encode(&doc);
        let mut want = vec![0x00, 1, 0, 20, 0, 11, 0, 1, 0, 0x09, 12, 0, b'a'];
        want.extend_from_slice(&1i64.to_le_bytes());
        assert_eq!(b, want);
    }

    #[test]
    fn large_documents_switch_form() {
        let big = Json::Array((0..5000).map(|i| Json::Str(format!("value {i}"))).collect());
        assert_eq!(encode(&big)[0], LARGE_ARRAY);
        assert_eq!(encode(&row_document(1, 2))[0], SMALL_OBJECT);
    }
}
