//! MySQL's partial JSON updates (`binlog_row_value_options=PARTIAL_JSON`): the after
//! image of a PARTIAL_UPDATE_ROWS event may hold, for a JSON column, a list of
//! diffs (replace / insert / remove at a JSON path) instead of the document. They
//! are applied to the before image's document so `new_data` carries the whole
//! document, as for any other update. Without the document in the before image
//! (`binlog_row_image=MINIMAL`) the diffs themselves are written, in the shape
//! `{"$json_diff": [{"op": "replace", "path": "$.a", "value": 1}, ...]}`.

use serde_json::Value;

use super::cursor::Cursor;
use super::error::DecodeError;

const REPLACE: u8 = 0;
const INSERT: u8 = 1;
const REMOVE: u8 = 2;

/// Applies the diffs in `diffs` (the column's value bytes after its length) to
/// `doc` (the before image's document as JSON text) and appends the result.
pub fn apply(out: &mut Vec<u8>, doc: &[u8], diffs: &[u8]) -> Result<(), DecodeError> {
    let mut value: Value = serde_json::from_slice(doc)
        .map_err(|e| bad(format!("the before image is not JSON: {e}")))?;
    let mut c = Cursor::new(diffs);
    let mut text = Vec::new();
    while c.remaining() > 0 {
        let op = c.u8("json diff operation")?;
        let path = c.lenenc_bytes("json diff path")?;
        let path = parse_path(path)?;
        let new = if op == REMOVE {
            None
        } else {
            let bytes = c.lenenc_bytes("json diff value")?;
            text.clear();
            super::jsonb::write(&mut text, bytes)?;
            Some(
                serde_json::from_slice::<Value>(&text)
                    .map_err(|e| bad(format!("diff value: {e}")))?,
            )
        };
        edit(&mut value, &path, op, new)?;
    }
    serde_json::to_writer(&mut *out, &value).map_err(|e| bad(e.to_string()))
}

/// Writes the diffs themselves: `{"$json_diff":[{"op":..,"path":..,"value":..}]}`
/// (no `value` for a remove).
pub fn write_diffs(out: &mut Vec<u8>, diffs: &[u8]) -> Result<(), DecodeError> {
    let mut c = Cursor::new(diffs);
    out.extend_from_slice(b"{\"$json_diff\":[");
    let mut first = true;
    while c.remaining() > 0 {
        let op = c.u8("json diff operation")?;
        let name: &[u8] = match op {
            REPLACE => b"replace",
            INSERT => b"insert",
            REMOVE => b"remove",
            other => return Err(bad(format!("operation {other}"))),
        };
        let path = c.lenenc_bytes("json diff path")?;
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(b"{\"op\":\"");
        out.extend_from_slice(name);
        out.extend_from_slice(b"\",\"path\":");
        super::json::string(out, &String::from_utf8_lossy(path));
        if op != REMOVE {
            out.extend_from_slice(b",\"value\":");
            super::jsonb::write(out, c.lenenc_bytes("json diff value")?)?;
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Parses the paths MySQL logs: `$`, `.key`, `."quoted key"`, `[n]`.
fn parse_path(raw: &[u8]) -> Result<Vec<Step>, DecodeError> {
    let text = std::str::from_utf8(raw).map_err(|_| bad("path is not UTF-8".into()))?;
    let rest = text
        .trim()
        .strip_prefix('$')
        .ok_or_else(|| bad(format!("path {text:?} does not start with $")))?;
    let mut steps = Vec::new();
    let mut chars = rest.trim_start().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    let mut key = String::new();
                    loop {
                        match chars.next() {
                            Some('\\') => key.push(chars.next().unwrap_or('\\')),
                            Some('"') => break,
                            Some(ch) => key.push(ch),
                            None => return Err(bad(format!("unterminated key in {text:?}"))),
                        }
                    }
                    steps.push(Step::Key(key));
                } else {
                    let mut key = String::new();
                    while let Some(&ch) = chars.peek() {
                        if ch == '.' || ch == '[' {
                            break;
                        }
                        key.push(ch);
                        chars.next();
                    }
                    steps.push(Step::Key(key.trim().to_owned()));
                }
            }
            '[' => {
                let mut n = String::new();
                for ch in chars.by_ref() {
                    if ch == ']' {
                        break;
                    }
                    n.push(ch);
                }
                let index = n
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("array index {n:?} in {text:?}")))?;
                steps.push(Step::Index(index));
            }
            ' ' => {}
            other => return Err(bad(format!("unexpected {other:?} in path {text:?}"))),
        }
    }
    Ok(steps)
}

fn edit(root: &mut Value, path: &[Step], op: u8, new: Option<Value>) -> Result<(), DecodeError> {
    let Some((last, parents)) = path.split_last() else {
        // The whole document.
        return match (op, new) {
            (REPLACE, Some(v)) => {
                *root = v;
                Ok(())
            }
            _ => Err(bad("only a replace may target the whole document".into())),
        };
    };
    let mut at = root;
    for step in parents {
        at = match (step, at) {
            (Step::Key(k), Value::Object(m)) => m.get_mut(k),
            (Step::Index(i), Value::Array(a)) => a.get_mut(*i),
            _ => None,
        }
        .ok_or_else(|| bad("a diff's path is not in the before image".into()))?;
    }
    let missing = || bad("a diff's path is not in the before image".into());
    match (op, last, at, new) {
        (REPLACE, Step::Key(k), Value::Object(m), Some(v)) => {
            *m.get_mut(k).ok_or_else(missing)? = v;
        }
        (REPLACE, Step::Index(i), Value::Array(a), Some(v)) => {
            *a.get_mut(*i).ok_or_else(missing)? = v;
        }
        (INSERT, Step::Key(k), Value::Object(m), Some(v)) => {
            m.insert(k.clone(), v);
        }
        (INSERT, Step::Index(i), Value::Array(a), Some(v)) => {
            a.insert((*i).min(a.len()), v);
        }
        (REMOVE, Step::Key(k), Value::Object(m), None) => {
            m.remove(k).ok_or_else(missing)?;
        }
        (REMOVE, Step::Index(i), Value::Array(a), None) => {
            if *i >= a.len() {
                return Err(missing());
            }
            a.remove(*i);
        }
        (op, ..) if op > REMOVE => return Err(bad(format!("operation {op}"))),
        _ => return Err(bad("the diff does not fit the document's shape".into())),
    }
    Ok(())
}

fn bad(detail: String) -> DecodeError {
    DecodeError::malformed("partial JSON update", detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A diff list entry with a binary JSON `value` (None for remove).
    fn diff(out: &mut Vec<u8>, op: u8, path: &str, value: Option<&[u8]>) {
        out.push(op);
        out.push(path.len() as u8);
        out.extend_from_slice(path.as_bytes());
        if let Some(v) = value {
            out.push(v.len() as u8);
            out.extend_from_slice(v);
        }
    }

    #[test]
    fn replace_insert_remove_at_paths() {
        let before = br#"{"a":1,"b":[1,2,3],"c":{"d":"x"},"e f":true}"#;
        let mut d = Vec::new();
        // int16 5, string "y", literal false (binary JSON)
        diff(&mut d, REPLACE, "$.a", Some(&[0x05, 5, 0]));
        diff(&mut d, INSERT, "$.b[1]", Some(&[0x0c, 1, b'y']));
        diff(&mut d, REMOVE, "$.c.d", None);
        diff(&mut d, REPLACE, "$.\"e f\"", Some(&[0x04, 2]));
        diff(&mut d, INSERT, "$.n", Some(&[0x04, 0]));
        let mut out = Vec::new();
        apply(&mut out, before, &d).unwrap();
        let got: Value = serde_json::from_slice(&out).unwrap();
        let want: Value =
            serde_json::from_str(r#"{"a":5,"b":[1,"y",2,3],"c":{},"e f":false,"n":null}"#).unwrap();
        assert_eq!(got, want);
    }

    #[test]
    fn diffs_without_a_document_are_written_as_they_are() {
        let mut d = Vec::new();
        diff(&mut d, REPLACE, "$.a", Some(&[0x05, 5, 0]));
        diff(&mut d, REMOVE, "$.b[0]", None);
        let mut out = Vec::new();
        write_diffs(&mut out, &d).unwrap();
        let got: Value = serde_json::from_slice(&out).unwrap();
        let want: Value = serde_json::from_str(
            r#"{"$json_diff":[{"op":"replace","path":"$.a","value":5},{"op":"remove","path":"$.b[0]"}]}"#,
        )
        .unwrap();
        assert_eq!(got, want);
        assert!(write_diffs(&mut out, &[7, 1, b'$']).is_err());
    }

    #[test]
    fn bad_diffs_are_errors() {
        let mut out = Vec::new();
        let mut d = Vec::new();
        diff(&mut d, REMOVE, "$.zz", None);
        assert!(apply(&mut out, b"{}", &d).is_err());
        let mut d = Vec::new();
        diff(&mut d, 9, "$.a", Some(&[0x04, 0]));
        assert!(apply(&mut out, br#"{"a":1}"#, &d).is_err());
        assert!(apply(&mut out, br#"{"a":1}"#, &[0, 3, b'$']).is_err());
        assert!(parse_path(b"a.b").is_err());
        assert_eq!(
            parse_path(b"$.a[2].\"b c\"").unwrap(),
            vec![
                Step::Key("a".into()),
                Step::Index(2),
                Step::Key("b c".into())
            ]
        );
    }
}
