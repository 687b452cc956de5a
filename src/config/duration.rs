//! Durations written the way pikachu (Go) writes them: `500ms`, `30s`, `2m`, `1h30m`.

use std::time::Duration;

/// Parses a Go-style duration: one or more `<number><unit>` with units
/// `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`; fractions allowed (`1.5s`).
/// A bare `0` is accepted; any other bare number is refused because its unit
/// would be a guess.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration (write e.g. 500ms, 30s, 2m)".into());
    }
    if s.starts_with('-') {
        return Err(format!("{text:?} is negative; durations must be positive"));
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!(
                "{text:?} is not a duration (write e.g. 500ms, 30s, 2m)"
            ));
        }
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("{text:?} has a malformed number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "{text:?} has no unit (write e.g. {}s or {}ms)",
                    &s[..num_len.min(s.len())],
                    &s[..num_len.min(s.len())]
                ))
            }
            other => {
                return Err(format!(
                    "{text:?} has unknown unit {other:?} (use ns, us, ms, s, m or h)"
                ))
            }
        };
        total += number * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    // A year is far beyond any sane timeout or interval and keeps the conversion exact.
    if total > 365.0 * 86400.0 {
        return Err(format!("{text:?} is too long (more than a year)"));
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5s", Duration::from_millis(1500)),
            ("250us", Duration::from_micros(250)),
            ("0", Duration::ZERO),
            (" 5s ", Duration::from_secs(5)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn refuses_ambiguous_or_malformed() {
        for text in [
            "",
            "30",
            "5x",
            "-5s",
            "s",
            "1..2s",
            "ms5",
            "400d",
            "99999999h",
        ] {
            assert!(parse_duration(text).is_err(), "{text} should be refused");
        }
    }
}
