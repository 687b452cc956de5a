//! `${VAR}` / `${VAR:-default}` substitution in config strings, so secrets can come
//! from the environment instead of the file. `$${` writes a literal `${`.

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// `${NAME}` names a variable that is not set and has no `:-default`.
    #[error("environment variable {0} is not set (export it, or write ${{{0}:-default}})")]
    Unset(String),
    /// `${` without the closing `}`.
    #[error("unterminated ${{...}} (missing closing brace)")]
    Unterminated,
    /// `${}` or a name with characters other than letters, digits and `_`.
    #[error("invalid variable name {0:?} in ${{...}} (use letters, digits and _)")]
    BadName(String),
}

/// Replaces every `${...}` in `input` using `lookup` for variable values.
pub fn interpolate(
    input: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    if !input.contains("${") {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${` escapes the expansion: keep one `$` and the literal `{`.
            out.push_str(&rest[..at]);
            out.push('{');
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let body_start = at + 2;
        let close = rest[body_start..]
            .find('}')
            .ok_or(InterpolateError::Unterminated)?;
        let body = &rest[body_start..body_start + close];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(InterpolateError::BadName(name.to_owned()));
        }
        // As in the shell, `:-` also replaces a variable that is set but empty.
        match (
            lookup(name).filter(|v| !v.is_empty() || default.is_none()),
            default,
        ) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(InterpolateError::Unset(name.to_owned())),
        }
        rest = &rest[body_start + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn substitutes_and_defaults() {
        let cases = [
            ("plain", "plain"),
            ("${HOST}", "db.internal"),
            ("mysql://${HOST}:3306", "mysql://db.internal:3306"),
            ("${PORT:-3306}", "3306"),
            ("${HOST:-x}", "db.internal"),
            ("${EMPTY:-fallback}", "fallback"),
            ("${EMPTY}", ""),
            ("${MISSING:-}", ""),
            ("pa$$w0rd", "pa$$w0rd"),
            ("$${HOST}", "${HOST}"),
            ("${HOST}${HOST}", "db.internaldb.internal"),
        ];
        for (input, want) in cases {
            assert_eq!(interpolate(input, env).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn reports_what_is_wrong() {
        assert_eq!(
            interpolate("${MISSING}", env),
            Err(InterpolateError::Unset("MISSING".into()))
        );
        assert_eq!(
            interpolate("x${HOST", env),
            Err(InterpolateError::Unterminated)
        );
        assert_eq!(
            interpolate("${}", env),
            Err(InterpolateError::BadName(String::new()))
        );
        assert_eq!(
            interpolate("${A B}", env),
            Err(InterpolateError::BadName("A B".into()))
        );
    }
}
