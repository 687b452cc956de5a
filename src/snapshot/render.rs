//! A table's columns as the snapshot reads them, and the JSON of their values as
//! the text protocol sends them — rendered exactly as the binlog decoder renders
//! the same values (`binlog::value`), so a snapshot row and a streamed row of the
//! same data are the same bytes. Sans-I/O.

use crate::binlog::write::{base64, double, float, string, uint};

/// How a column's text-protocol value becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Integer types (a JSON number, as sent).
    Integer,
    /// DECIMAL: a JSON string of its digits.
    Decimal,
    /// FLOAT, read as `CAST(.. AS DOUBLE)` so no digit is lost.
    Float,
    /// DOUBLE.
    Double,
    /// YEAR: a number.
    Year,
    /// Character data (any charset; the connection sends UTF-8).
    Text,
    /// Binary strings and BLOBs: base64.
    Binary,
    /// JSON (MariaDB: LONGTEXT with a json_valid check): the document itself.
    Json,
    /// DATE, DATETIME, TIMESTAMP (the session is UTC), TIME: the server's text.
    Temporal,
    /// ENUM and SET: their labels.
    Label,
    /// BIT: a number.
    Bit,
    /// Spatial types: base64 WKB.
    Geometry,
}

/// One column of a snapshotted table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// How its values render.
    pub kind: Kind,
    /// Part of the primary key.
    pub primary_key: bool,
}

/// Why a table cannot be snapshotted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("column {column} has type {data_type}, which snapshots do not read yet")]
pub struct Unsupported {
    /// The column.
    pub column: String,
    /// Its `information_schema.COLUMNS.DATA_TYPE`.
    pub data_type: String,
}

impl Column {
    /// A column from `information_schema.COLUMNS` facts: `data_type` (DATA_TYPE),
    /// `column_type` (COLUMN_TYPE), `charset` (CHARACTER_SET_NAME); `json` when the
    /// column holds JSON documents (MariaDB marks them only with a CHECK).
    pub fn new(
        name: &str,
        data_type: &str,
        charset: Option<&str>,
        json: bool,
        primary_key: bool,
    ) -> Result<Column, Unsupported> {
        let t = data_type.to_ascii_lowercase();
        let kind = match t.as_str() {
            _ if json => Kind::Json,
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" => Kind::Integer,
            "decimal" | "numeric" => Kind::Decimal,
            "float" => Kind::Float,
            "double" | "real" => Kind::Double,
            "year" => Kind::Year,
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => {
                if charset.is_some_and(|c| c.eq_ignore_ascii_case("binary")) {
                    Kind::Binary
                } else {
                    Kind::Text
                }
            }
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                Kind::Binary
            }
            "json" => Kind::Json,
            "date" | "datetime" | "timestamp" | "time" => Kind::Temporal,
            "enum" | "set" => Kind::Label,
            "bit" => Kind::Bit,
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
            | "multipolygon" | "geometrycollection" => Kind::Geometry,
            _ => {
                return Err(Unsupported {
                    column: name.to_owned(),
                    data_type: data_type.to_owned(),
                })
            }
        };
        Ok(Column {
            name: name.to_owned(),
            kind,
            primary_key,
        })
    }

    /// The select-list expression that reads this column.
    pub fn select(&self) -> String {
        let q = quote_name(&self.name);
        match self.kind {
            Kind::Float => format!("CAST({q} AS DOUBLE)"),
            _ => q,
        }
    }
}

/// A text-protocol value of `kind` for a sample row when the table has none
/// (`None`: NULL, for kinds whose text depends on the exact column type).
pub fn placeholder(kind: Kind) -> Option<&'static [u8]> {
    match kind {
        Kind::Integer | Kind::Decimal | Kind::Float | Kind::Double | Kind::Bit => Some(b"0"),
        Kind::Year => Some(b"2000"),
        Kind::Text | Kind::Binary => Some(b""),
        Kind::Json => Some(b"{}"),
        Kind::Temporal | Kind::Label | Kind::Geometry => None,
    }
}

/// A value the server sent that is not what its type allows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("column {column}: {what}")]
pub struct BadValue {
    /// The column.
    pub column: String,
    /// What is wrong.
    pub what: String,
}

/// Appends the JSON of `value` (NULL as `None`) of `col` to `out`.
pub fn write_value(out: &mut Vec<u8>, col: &Column, value: Option<&[u8]>) -> Result<(), BadValue> {
    let Some(v) = value else {
        out.extend_from_slice(b"null");
        return Ok(());
    };
    let bad = |what: &str| BadValue {
        column: col.name.clone(),
        what: what.to_owned(),
    };
    let text = || std::str::from_utf8(v).map_err(|_| bad("not UTF-8"));
    match col.kind {
        Kind::Integer => {
            if !is_integer(v) {
                return Err(bad("not an integer"));
            }
            write_number(out, v);
        }
        Kind::Decimal => {
            if !is_decimal(v) {
                return Err(bad("not a decimal"));
            }
            out.push(b'"');
            write_number(out, v);
            out.push(b'"');
        }
        Kind::Float => {
            let f: f64 = text()?.parse().map_err(|_| bad("not a number"))?;
            // The column holds an f32; widening was exact, narrowing is too.
            float(out, f as f32);
        }
        Kind::Double => double(out, text()?.parse().map_err(|_| bad("not a number"))?),
        Kind::Year => uint(out, text()?.parse().map_err(|_| bad("not a year"))?),
        Kind::Text | Kind::Label => match std::str::from_utf8(v) {
            Ok(s) => string(out, s),
            Err(_) => string(out, &String::from_utf8_lossy(v)),
        },
        Kind::Binary => base64(out, v),
        Kind::Json => match std::str::from_utf8(v) {
            Ok(s) if serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok() => {
                out.extend_from_slice(v)
            }
            Ok(s) => string(out, s),
            Err(_) => string(out, &String::from_utf8_lossy(v)),
        },
        Kind::Temporal => {
            // The server writes digits, '-', ':', ' ' and '.'; anything else would
            // be copied into the payload's JSON.
            if !v.iter().all(|b| b.is_ascii_digit() || b"-:. ".contains(b)) {
                return Err(bad("not a date or time"));
            }
            out.push(b'"');
            out.extend_from_slice(v);
            out.push(b'"');
        }
        Kind::Bit => {
            if v.len() > 8 {
                return Err(bad("more than 64 bits"));
            }
            uint(out, v.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b)));
        }
        // The server's internal form is a 4-byte SRID, then WKB; the payload is WKB.
        Kind::Geometry => base64(out, v.get(4..).unwrap_or(v)),
    }
    Ok(())
}

/// The SQL literal of a key value, to resume a keyset scan after it. Numbers stay
/// numbers (a quoted BIGINT would compare as a double); binary data is hex; text
/// is quoted for `sql_mode=''` (backslash escapes on).
pub fn literal(col: &Column, v: &[u8]) -> Result<String, BadValue> {
    let bad = |what: &str| BadValue {
        column: col.name.clone(),
        what: what.to_owned(),
    };
    Ok(match col.kind {
        Kind::Integer if is_integer(v) => String::from_utf8_lossy(v).into_owned(),
        Kind::Decimal if is_decimal(v) => String::from_utf8_lossy(v).into_owned(),
        Kind::Integer | Kind::Decimal => return Err(bad("not a number")),
        Kind::Binary | Kind::Bit | Kind::Geometry => {
            let mut s = String::with_capacity(3 + v.len() * 2);
            s.push_str("X'");
            for b in v {
                s.push_str(&format!("{b:02x}"));
            }
            s.push('\'');
            s
        }
        _ => {
            let mut s = String::with_capacity(v.len() + 2);
            s.push('\'');
            for ch in String::from_utf8_lossy(v).chars() {
                match ch {
                    '\'' => s.push_str("\\'"),
                    '\\' => s.push_str("\\\\"),
                    '\0' => s.push_str("\\0"),
                    c => s.push(c),
                }
            }
            s.push('\'');
            s
        }
    })
}

/// `name` as a quoted identifier.
pub fn quote_name(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Writes a validated integer or decimal without the leading zeros ZEROFILL
/// columns are sent with (`00012.50` is `12.50`, as the binlog decoder writes it).
fn write_number(out: &mut Vec<u8>, v: &[u8]) {
    let (negative, digits) = match v.strip_prefix(b"-") {
        Some(d) => (true, d),
        None => (false, v),
    };
    let whole_len = digits
        .iter()
        .position(|&b| b == b'.')
        .unwrap_or(digits.len());
    let zeros = digits[..whole_len]
        .iter()
        .take_while(|&&b| b == b'0')
        .count();
    // Keep one digit before the point.
    let start = zeros.min(whole_len.saturating_sub(1));
    let rest = &digits[start..];
    let is_zero = rest.iter().all(|&b| b == b'0' || b == b'.');
    if negative && !is_zero {
        out.push(b'-');
    }
    out.extend_from_slice(rest);
}

fn is_integer(v: &[u8]) -> bool {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

fn is_decimal(v: &[u8]) -> bool {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    let mut parts = digits.splitn(2, |&b| b == b'.');
    let whole = parts.next().unwrap_or_default();
    let frac = parts.next();
    !whole.is_empty()
        && whole.iter().all(u8::is_ascii_digit)
        && frac.is_none_or(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(data_type: &str, charset: Option<&str>) -> Column {
        Column::new("c", data_type, charset, false, false).unwrap()
    }

    fn json(c: &Column, v: Option<&[u8]>) -> Result<String, BadValue> {
        let mut out = Vec::new();
        write_value(&mut out, c, v)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn values_render_as_the_binlog_renders_them() {
        // (DATA_TYPE, charset, value as sent, JSON as the binlog decoder writes it)
        type Case<'a> = (&'a str, Option<&'a str>, Option<&'a [u8]>, &'a str);
        let cases: &[Case] = &[
            ("int", None, Some(b"-42"), "-42"),
            (
                "bigint",
                None,
                Some(b"18446744073709551615"),
                "18446744073709551615",
            ),
            ("decimal", None, Some(b"-12.50"), "\"-12.50\""),
            ("float", None, Some(b"0.10000000149011612"), "0.1"),
            ("double", None, Some(b"0.1"), "0.1"),
            ("year", None, Some(b"2024"), "2024"),
            (
                "varchar",
                Some("utf8mb4"),
                Some("é \"q\"\n".as_bytes()),
                "\"é \\\"q\\\"\\n\"",
            ),
            ("varbinary", None, Some(b"\x00\xff"), "\"AP8=\""),
            (
                "datetime",
                None,
                Some(b"2024-01-31 12:34:56.123"),
                "\"2024-01-31 12:34:56.123\"",
            ),
            ("bit", None, Some(b"\x01\x02"), "258"),
            ("set", Some("utf8mb4"), Some(b"a,b"), "\"a,b\""),
            ("int", None, None, "null"),
        ];
        for (t, cs, v, want) in cases {
            assert_eq!(json(&col(t, *cs), *v).unwrap(), *want, "{t}");
        }
        let doc = Column::new("j", "longtext", Some("utf8mb4"), true, false).unwrap();
        assert_eq!(json(&doc, Some(b"{\"a\": [1]}")).unwrap(), "{\"a\": [1]}");
        assert_eq!(json(&doc, Some(b"{oops")).unwrap(), "\"{oops\"");
    }

    #[test]
    fn hostile_values_are_errors_not_json_injection() {
        assert!(json(&col("int", None), Some(b"1,\"x\":2")).is_err());
        assert!(json(&col("decimal", None), Some(b"1.2\"")).is_err());
        assert!(json(&col("bit", None), Some(&[1; 9])).is_err());
        assert!(Column::new("u", "uuid", None, false, false).is_err());
        // Found by the snapshot_value fuzz target: ZEROFILL columns are sent with
        // leading zeros, which are no JSON number.
        assert_eq!(json(&col("int", None), Some(b"00010")).unwrap(), "10");
        assert_eq!(json(&col("int", None), Some(b"000")).unwrap(), "0");
        assert_eq!(json(&col("int", None), Some(b"-007")).unwrap(), "-7");
        assert_eq!(
            json(&col("decimal", None), Some(b"0012.50")).unwrap(),
            "\"12.50\""
        );
        assert_eq!(
            json(&col("decimal", None), Some(b"000.05")).unwrap(),
            "\"0.05\""
        );
        // And bytes that are not a time
        // were copied into the JSON as they came (invalid UTF-8 included).
        assert!(json(&col("datetime", None), Some(b"{\xff\x01")).is_err());
        assert!(json(&col("time", None), Some(b"1\"")).is_err());
    }

    #[test]
    fn key_literals_resume_the_scan_exactly() {
        assert_eq!(
            literal(&col("bigint", None), b"-9007199254740993").unwrap(),
            "-9007199254740993"
        );
        assert_eq!(
            literal(&col("varchar", Some("utf8mb4")), b"it's a \\ key").unwrap(),
            "'it\\'s a \\\\ key'"
        );
        assert_eq!(
            literal(&col("binary", None), b"\x00\xab").unwrap(),
            "X'00ab'"
        );
        assert!(literal(&col("int", None), b"1 OR 1=1").is_err());
        assert_eq!(quote_name("we`ird"), "`we``ird`");
    }
}
