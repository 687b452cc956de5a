//! Date and time values from their binlog encodings to the SPEC's text forms:
//! DATE "2026-01-31", DATETIME "2026-01-31 13:45:00[.fff]", TIME "[-]HH:MM:SS[.fff]",
//! TIMESTAMP in UTC, and the event time as RFC 3339.

use super::cursor::{be, le};
use super::error::DecodeError;
use super::json::digits;

/// Bytes of the fractional part for `fsp` digits.
pub fn frac_len(fsp: u8) -> usize {
    usize::from(fsp).div_ceil(2)
}

/// Writes `YYYY-MM-DD` (zero dates stay zeros).
pub fn write_date(out: &mut Vec<u8>, year: u32, month: u32, day: u32) {
    digits(out, u64::from(year), 4);
    out.push(b'-');
    digits(out, u64::from(month), 2);
    out.push(b'-');
    digits(out, u64::from(day), 2);
}

fn write_hms(out: &mut Vec<u8>, h: u64, m: u64, s: u64) {
    digits(
        out,
        h,
        if h > 99 {
            if h > 999 {
                4
            } else {
                3
            }
        } else {
            2
        },
    );
    out.push(b':');
    digits(out, m, 2);
    out.push(b':');
    digits(out, s, 2);
}

fn write_frac(out: &mut Vec<u8>, micros: u64, fsp: u8) {
    if fsp > 0 {
        out.push(b'.');
        digits(
            out,
            micros / 10u64.pow(6 - u32::from(fsp)),
            usize::from(fsp),
        );
    }
}

/// Reads the big-endian fractional part of a 5.6-format temporal as microseconds.
fn frac_micros(bytes: &[u8], fsp: u8) -> u64 {
    match fsp {
        1 | 2 => be(bytes) * 10_000,
        3 | 4 => be(bytes) * 100,
        5 | 6 => be(bytes),
        _ => 0,
    }
}

/// DATE: 3 bytes little-endian, day:5 month:4 year:15 bits.
pub fn date(out: &mut Vec<u8>, v: &[u8]) {
    let n = le(v) as u32;
    out.push(b'"');
    write_date(out, n >> 9, (n >> 5) & 15, n & 31);
    out.push(b'"');
}

/// DATETIME2: 5 bytes big-endian offset by 2^39, then the fraction.
pub fn datetime2(out: &mut Vec<u8>, v: &[u8], fsp: u8) -> Result<(), DecodeError> {
    let int = be(&v[..5]) as i64 - 0x80_0000_0000;
    if int < 0 {
        return Err(DecodeError::malformed("DATETIME value", "negative"));
    }
    let int = int as u64;
    let ymd = int >> 17;
    let ym = ymd >> 5;
    let hms = int & 0x1_ffff;
    out.push(b'"');
    write_date(out, (ym / 13) as u32, (ym % 13) as u32, (ymd & 31) as u32);
    out.push(b' ');
    write_hms(out, hms >> 12, (hms >> 6) & 63, hms & 63);
    write_frac(out, frac_micros(&v[5..], fsp), fsp);
    out.push(b'"');
    Ok(())
}

/// Old DATETIME: 8 bytes little-endian YYYYMMDDhhmmss.
pub fn datetime(out: &mut Vec<u8>, v: &[u8]) {
    let n = le(v);
    let (d, t) = (n / 1_000_000, n % 1_000_000);
    out.push(b'"');
    write_date(
        out,
        (d / 10_000) as u32,
        (d / 100 % 100) as u32,
        (d % 100) as u32,
    );
    out.push(b' ');
    write_hms(out, t / 10_000, t / 100 % 100, t % 100);
    out.push(b'"');
}

/// TIMESTAMP2: 4 bytes big-endian seconds, then the fraction; rendered in UTC.
pub fn timestamp2(out: &mut Vec<u8>, v: &[u8], fsp: u8) {
    let secs = be(&v[..4]);
    timestamp_utc(out, secs, frac_micros(&v[4..], fsp), fsp);
}

/// Old TIMESTAMP: 4 bytes little-endian seconds.
pub fn timestamp(out: &mut Vec<u8>, v: &[u8]) {
    timestamp_utc(out, le(v), 0, 0);
}

fn timestamp_utc(out: &mut Vec<u8>, secs: u64, micros: u64, fsp: u8) {
    out.push(b'"');
    if secs == 0 {
        out.extend_from_slice(b"0000-00-00 00:00:00");
        write_frac(out, micros, fsp);
    } else {
        let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
        let t = secs % 86_400;
        write_date(out, y as u32, mo, d);
        out.push(b' ');
        write_hms(out, t / 3600, t / 60 % 60, t % 60);
        write_frac(out, micros, fsp);
    }
    out.push(b'"');
}

/// TIME2: 3 bytes big-endian offset by 2^23 plus the fraction; negative values keep
/// their fraction in reversed order (MySQL `my_time_packed_from_binary`).
pub fn time2(out: &mut Vec<u8>, v: &[u8], fsp: u8) {
    let packed: i64 = match fsp {
        1..=4 => {
            let mut int = be(&v[..3]) as i64 - 0x80_0000;
            let (mut frac, unit, wrap) = if fsp <= 2 {
                (v[3] as i64, 10_000, 0x100)
            } else {
                (be(&v[3..5]) as i64, 100, 0x1_0000)
            };
            if int < 0 && frac != 0 {
                int += 1;
                frac -= wrap;
            }
            (int << 24) + frac * unit
        }
        5 | 6 => be(&v[..6]) as i64 - 0x8000_0000_0000,
        _ => (be(&v[..3]) as i64 - 0x80_0000) << 24,
    };
    let negative = packed < 0;
    let packed = packed.unsigned_abs();
    let hms = packed >> 24;
    let micros = packed % (1 << 24);
    out.push(b'"');
    if negative {
        out.push(b'-');
    }
    write_hms(
        out,
        (hms >> 12) % (1 << 10),
        (hms >> 6) % (1 << 6),
        hms % (1 << 6),
    );
    write_frac(out, micros, fsp);
    out.push(b'"');
}

/// Old TIME: 3 bytes little-endian signed HHMMSS.
pub fn time(out: &mut Vec<u8>, v: &[u8]) {
    let raw = le(v) as i64;
    let n = if raw & 0x80_0000 != 0 {
        raw - 0x100_0000
    } else {
        raw
    };
    out.push(b'"');
    if n < 0 {
        out.push(b'-');
    }
    let n = n.unsigned_abs();
    write_hms(out, n / 10_000, n / 100 % 100, n % 100);
    out.push(b'"');
}

/// Writes the event time as RFC 3339 UTC (`2026-01-01T12:00:00Z`).
pub fn rfc3339(out: &mut Vec<u8>, secs: u32) {
    let secs = u64::from(secs);
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    out.push(b'"');
    write_date(out, y as u32, mo, d);
    out.push(b'T');
    write_hms(out, t / 3600, t / 60 % 60, t % 60);
    out.extend_from_slice(b"Z\"");
}

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::binlog::json::rendered as s;

    #[test]
    fn calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(
            s(|o| rfc3339(o, 1_767_268_800)),
            r#""2026-01-01T12:00:00Z""#
        );
    }

    #[test]
    fn time2_negative_fraction() {
        // -00:00:01.5 with fsp 1 as MySQL packs it: int -1 + 1 = 0 wrapped fraction.
        // intpart = -2 (stored), frac = 0x100 - 50 = 206 -> -1 s, -0.5 -> "-00:00:01.5"
        let stored_int = (0x80_0000i64 - 2) as u32;
        let v = [
            (stored_int >> 16) as u8,
            (stored_int >> 8) as u8,
            stored_int as u8,
            206,
        ];
        assert_eq!(s(|o| time2(o, &v, 1)), r#""-00:00:01.5""#);
        // 838:59:59 (max TIME), fsp 0.
        let int = 0x80_0000u32 + ((838 << 12) | (59 << 6) | 59);
        let v = [(int >> 16) as u8, (int >> 8) as u8, int as u8];
        assert_eq!(s(|o| time2(o, &v, 0)), r#""838:59:59""#);
    }
}
