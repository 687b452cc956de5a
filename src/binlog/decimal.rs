//! DECIMAL(p,s) from MySQL's packed binary format to its exact text ("12.50"):
//! groups of 9 digits in 4 big-endian bytes, partial groups in fewer bytes, sign in
//! the top bit with all bytes inverted for negatives.

use super::error::DecodeError;

const DIG_PER_GROUP: usize = 9;
const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// Size in bytes of a DECIMAL(precision, scale) value.
pub fn binary_size(precision: u8, scale: u8) -> usize {
    let intg = usize::from(precision - scale);
    let frac = usize::from(scale);
    (intg / DIG_PER_GROUP) * 4
        + DIG2BYTES[intg % DIG_PER_GROUP]
        + (frac / DIG_PER_GROUP) * 4
        + DIG2BYTES[frac % DIG_PER_GROUP]
}

/// Writes the value as a JSON string with exactly `scale` fractional digits.
pub fn write(out: &mut Vec<u8>, v: &[u8], precision: u8, scale: u8) -> Result<(), DecodeError> {
    out.push(b'"');
    write_plain(out, v, precision, scale)?;
    out.push(b'"');
    Ok(())
}

/// Writes the value's digits without quotes (a JSON number, as inside MySQL JSON).
pub fn write_plain(
    out: &mut Vec<u8>,
    v: &[u8],
    precision: u8,
    scale: u8,
) -> Result<(), DecodeError> {
    // Precision and scale may come from untrusted bytes (binary JSON); MySQL's
    // limits are 65 and 30.
    if precision == 0 || precision > 65 || scale > 30 || scale > precision {
        return Err(DecodeError::malformed(
            "DECIMAL value",
            format!("precision {precision}, scale {scale}"),
        ));
    }
    let size = binary_size(precision, scale);
    if v.len() != size || size == 0 {
        return Err(DecodeError::malformed(
            "DECIMAL value",
            format!("{} bytes, expected {size}", v.len()),
        ));
    }
    // Copy to flip the sign bit and un-invert negatives; 32 bytes covers DECIMAL(65,30).
    let mut buf = [0u8; 32];
    let bytes = &mut buf[..size];
    bytes.copy_from_slice(v);
    let negative = bytes[0] & 0x80 == 0;
    bytes[0] ^= 0x80;
    if negative {
        for b in bytes.iter_mut() {
            *b = !*b;
        }
    }
    let intg = usize::from(precision - scale);
    let frac = usize::from(scale);
    let mut pos = 0;
    let mut read = |n: usize| -> u32 {
        let v = bytes[pos..pos + n]
            .iter()
            .fold(0u32, |a, &b| (a << 8) | u32::from(b));
        pos += n;
        v
    };
    let sign_at = out.len();
    if negative {
        out.push(b'-');
    }
    let int_start = out.len();
    let mut leading = true;
    let push_group = |out: &mut Vec<u8>, value: u32, width: usize, leading: &mut bool| {
        if *leading {
            if value == 0 {
                return;
            }
            out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
            *leading = false;
        } else {
            super::json::digits(out, u64::from(value), width);
        }
    };
    let partial = intg % DIG_PER_GROUP;
    if partial > 0 {
        let value = read(DIG2BYTES[partial]);
        check_digits(value, partial)?;
        push_group(out, value, partial, &mut leading);
    }
    for _ in 0..intg / DIG_PER_GROUP {
        let value = read(4);
        check_digits(value, DIG_PER_GROUP)?;
        push_group(out, value, DIG_PER_GROUP, &mut leading);
    }
    if out.len() == int_start {
        out.push(b'0');
    }
    if frac > 0 {
        out.push(b'.');
        for _ in 0..frac / DIG_PER_GROUP {
            let value = read(4);
            check_digits(value, DIG_PER_GROUP)?;
            super::json::digits(out, u64::from(value), DIG_PER_GROUP);
        }
        let partial = frac % DIG_PER_GROUP;
        if partial > 0 {
            let value = read(DIG2BYTES[partial]);
            check_digits(value, partial)?;
            super::json::digits(out, u64::from(value), partial);
        }
    }
    // A zero with the sign bit clear means -0, which is just 0.
    if negative && out[int_start..].iter().all(|&b| b == b'0' || b == b'.') {
        out.remove(sign_at);
    }
    Ok(())
}

fn check_digits(value: u32, digits: usize) -> Result<(), DecodeError> {
    if u64::from(value) >= 10u64.pow(digits as u32) {
        return Err(DecodeError::malformed(
            "DECIMAL value",
            format!("group {value} has more than {digits} digits"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8], p: u8, s: u8) -> String {
        let mut out = Vec::new();
        write(&mut out, bytes, p, s).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn mysql_manual_example() {
        // DECIMAL(14,4) 1234567890.1234 from the MySQL internals documentation.
        let v = [0x81, 0x0D, 0xFB, 0x38, 0xD2, 0x04, 0xD2];
        assert_eq!(binary_size(14, 4), 7);
        assert_eq!(dec(&v, 14, 4), r#""1234567890.1234""#);
        let neg: Vec<u8> = v.iter().map(|b| !b).collect();
        assert_eq!(dec(&neg, 14, 4), r#""-1234567890.1234""#);
    }

    #[test]
    fn small_values_keep_scale() {
        // DECIMAL(10,2) 12.50: intg 8 -> 4 bytes, frac 2 -> 1 byte.
        assert_eq!(dec(&[0x80, 0, 0, 12, 50], 10, 2), r#""12.50""#);
        assert_eq!(dec(&[0x80, 0, 0, 0, 5], 10, 2), r#""0.05""#);
        assert_eq!(dec(&[0x80, 0, 0, 0, 0], 10, 2), r#""0.00""#);
    }

    #[test]
    fn negative_zero_is_zero() {
        // DECIMAL(10,2) 0.00 with the sign bit clear and bytes inverted.
        let neg_zero: Vec<u8> = [0x80u8, 0, 0, 0, 0].iter().map(|b| !b).collect();
        assert_eq!(dec(&neg_zero, 10, 2), r#""0.00""#);
        assert_eq!(dec(&[0x7f], 1, 0), r#""0""#);
    }

    #[test]
    fn malformed_groups_are_errors() {
        let mut out = Vec::new();
        assert!(write(&mut out, &[0x80, 0, 0, 12], 10, 2).is_err());
        assert!(write(&mut out, &[0x80, 0, 0, 12, 200], 10, 2).is_err());
    }
}
