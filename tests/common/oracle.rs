//! mysql_common as the oracle: does our JSON for a value say what mysql_common's
//! decoding of the same bytes says? Where the two represent a value differently
//! (TIMESTAMP as epoch text, SET as a raw mask) the comparison translates.

use base64::Engine as _;
use mysql_common::binlog::value::BinlogValue;
use mysql_common::value::Value as MyValue;
use serde_json::Value;

/// Whether our JSON value says the same as mysql_common's; `None` when not comparable.
pub fn agrees(ours: &Value, theirs: &Option<BinlogValue<'_>>) -> Option<bool> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    Some(match theirs.as_ref()? {
        BinlogValue::Value(v) => match (v, ours) {
            (MyValue::NULL, o) => o.is_null(),
            (MyValue::Int(i), Value::Number(n)) => {
                n.as_i64() == Some(*i) || n.as_u64() == Some(*i as u64)
            }
            (MyValue::UInt(u), Value::Number(n)) => n.as_u64() == Some(*u),
            (MyValue::Float(f), Value::Number(n)) => n.as_f64().map(|x| x as f32) == Some(*f),
            (MyValue::Double(d), Value::Number(n)) => n.as_f64() == Some(*d),
            (MyValue::Bytes(b), Value::String(s)) => {
                s.as_bytes() == b.as_slice()
                    || epoch_text_matches(b, s)
                    || set_mask_matches(b, s)
                    || negative_zero_matches(b, s)
                    || *s == b64(b)
                    || b.len() > 4 && *s == b64(&b[4..])
                    || String::from_utf8_lossy(b).trim_end_matches(' ') == s.as_str()
            }
            (MyValue::Date(y, mo, d, h, mi, sec, us), Value::String(s)) => {
                let date = format!("{y:04}-{mo:02}-{d:02}");
                let time = format!("{h:02}:{mi:02}:{sec:02}");
                s.starts_with(&date)
                    && (s.len() == 10 || s[11..].starts_with(&time))
                    && (*us == 0
                        || s.contains(&format!(".{}", format!("{us:06}").trim_end_matches('0'))))
            }
            (MyValue::Time(neg, days, h, mi, sec, _), Value::String(s)) => {
                let hours = days * 24 + u32::from(*h);
                s.starts_with(&format!(
                    "{}{hours:02}:{mi:02}:{sec:02}",
                    if *neg { "-" } else { "" }
                ))
            }
            _ => return None,
        },
        _ => return None,
    })
}

/// mysql_common prints a DECIMAL zero with the sign bit clear as "-0.0"; we print 0.
fn negative_zero_matches(b: &[u8], ours: &str) -> bool {
    let theirs = String::from_utf8_lossy(b);
    theirs
        .strip_prefix('-')
        .is_some_and(|z| z == ours && z.bytes().all(|c| c == b'0' || c == b'.'))
}

/// mysql_common gives a SET as its raw little-endian bitmask; we give member names,
/// one per set bit.
fn set_mask_matches(b: &[u8], ours: &str) -> bool {
    if b.is_empty() || b.len() > 8 || b.iter().all(|c| c.is_ascii_graphic()) {
        return false;
    }
    let mask = b.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x));
    let names = if ours.is_empty() {
        0
    } else {
        ours.split(',').count()
    };
    mask.count_ones() as usize == names
}

/// mysql_common renders TIMESTAMP as epoch seconds ("1525422719[.5]"); we render UTC text.
fn epoch_text_matches(b: &[u8], ours: &str) -> bool {
    let text = String::from_utf8_lossy(b);
    let (secs, frac) = text.split_once('.').unwrap_or((&text, ""));
    let Ok(secs) = secs.parse::<i64>() else {
        return false;
    };
    // Days -> civil date (Hinnant), written independently of the crate's own copy.
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let want = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    // mysql_common drops a zero fraction and trailing zeros; we print exactly the
    // column's fractional digits.
    let (ours_main, ours_frac) = ours.split_once('.').unwrap_or((ours, ""));
    let fraction_agrees = ours_frac.trim_end_matches('0') == frac.trim_end_matches('0');
    (ours_main == want && fraction_agrees) || (secs == 0 && ours.starts_with("0000-00-00 00:00:00"))
}
