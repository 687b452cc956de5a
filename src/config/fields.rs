//! Typed reads of one YAML mapping that record problems instead of stopping at the
//! first: wrong types, out-of-range numbers, missing required fields, unknown fields.
//!
//! serde's derive stops at the first error; operators fixing a config want the whole
//! list, so sections are read field by field through this.

use std::time::Duration;

use serde_yaml::{Mapping, Value};

use super::document::{join, key_text, kind_of, Document};
use super::duration::parse_duration;
use super::problem::{closest, Problem};

/// Problems and warnings gathered while reading a configuration.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

/// The fields of one mapping (a config section, or one task).
pub(crate) struct Fields<'d, 'r> {
    doc: &'d Document,
    report: &'r mut Report,
    path: String,
    map: Option<&'d Mapping>,
    known: Vec<&'static str>,
}

impl<'d, 'r> Fields<'d, 'r> {
    /// The mapping at `key` of `parent` (absent is fine: every field then takes its default).
    pub fn section(
        doc: &'d Document,
        report: &'r mut Report,
        parent: &'d Mapping,
        parent_path: &str,
        key: &str,
    ) -> Self {
        let path = join(parent_path, key);
        let map = match parent.get(key) {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(other) => {
                report.problems.push(doc.problem(
                    &path,
                    format!("expected a mapping of fields, found {}", kind_of(other)),
                ));
                None
            }
        };
        Fields {
            doc,
            report,
            path,
            map,
            known: Vec::new(),
        }
    }

    /// Reads a mapping value that is already in hand (e.g. one list item).
    pub fn of(doc: &'d Document, report: &'r mut Report, map: &'d Mapping, path: String) -> Self {
        Fields {
            doc,
            report,
            path,
            map: Some(map),
            known: Vec::new(),
        }
    }

    /// The dotted path of a field of this mapping.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Records a problem at field `key`.
    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        let p = self.doc.problem(&self.path_of(key), message);
        self.report.problems.push(p);
    }

    /// Records a warning about field `key`.
    pub fn warn(&mut self, key: &str, message: impl AsRef<str>) {
        let w = format!(
            "{}: {}: {}",
            self.doc.origin(&self.path_of(key)),
            self.path_of(key),
            message.as_ref()
        );
        self.report.warnings.push(w);
    }

    /// Marks `key` as a known field and returns its value unless absent or null.
    /// The fields of the mapping at `key` of this one (absent: every field takes
    /// its default); finish it before using this one again.
    pub fn nested<'s>(&'s mut self, key: &'static str) -> Fields<'d, 's> {
        self.known.push(key);
        let path = self.path_of(key);
        let map = match self.map.and_then(|m| m.get(key)) {
            None | Some(Value::Null) => None,
            Some(Value::Mapping(m)) => Some(m),
            Some(other) => {
                self.report.problems.push(self.doc.problem(
                    &path,
                    format!("expected a mapping of fields, found {}", kind_of(other)),
                ));
                None
            }
        };
        Fields {
            doc: self.doc,
            report: self.report,
            path,
            map,
            known: Vec::new(),
        }
    }

    /// Whether the mapping has `key` set.
    pub fn has(&self, key: &str) -> bool {
        self.map
            .is_some_and(|m| !matches!(m.get(key), None | Some(Value::Null)))
    }

    pub fn raw(&mut self, key: &'static str) -> Option<&'d Value> {
        self.known.push(key);
        match self.map?.get(key) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Records "required field missing" with a hint on what to put there.
    pub fn missing(&mut self, key: &str, hint: &str) {
        self.problem(key, format!("required field is missing: {hint}"));
    }

    /// A text field; numbers and booleans are taken as written.
    pub fn string(&mut self, key: &'static str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                let found = kind_of(other);
                self.problem(key, format!("expected text, found {found}"));
                None
            }
        }
    }

    /// A text field that must be present and non-empty.
    pub fn required_string(&mut self, key: &'static str, hint: &str) -> Option<String> {
        let present = self
            .map
            .and_then(|m| m.get(key))
            .is_some_and(|v| !v.is_null());
        match self.string(key) {
            Some(s) if !s.trim().is_empty() => Some(s),
            Some(_) => {
                self.problem(key, format!("must not be empty: {hint}"));
                None
            }
            // Present but of the wrong type: `string` has already said so.
            None if present => None,
            None => {
                self.missing(key, hint);
                None
            }
        }
    }

    /// A whole number in `min..=max`; numeric strings (from `${VAR}`) are accepted.
    pub fn int(&mut self, key: &'static str, min: i64, max: i64) -> Option<i64> {
        let value = self.raw(key)?;
        let n = match value {
            Value::Number(n) if n.is_f64() => None,
            Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from)),
            Value::String(s) => s.trim().parse::<i128>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (i128::from(min)..=i128::from(max)).contains(&n) => Some(n as i64),
            Some(n) => {
                let range = if max >= i64::from(u32::MAX) {
                    format!("at least {min}")
                } else {
                    format!("between {min} and {max}")
                };
                self.problem(key, format!("{n} is out of range: must be {range}"));
                None
            }
            None => {
                let shown = describe(value);
                self.problem(key, format!("expected a whole number, found {shown}"));
                None
            }
        }
    }

    /// A size in bytes: a whole number, or a string like `512MiB`, `1GiB`,
    /// `64MB` (binary and decimal units), at least `min`.
    pub fn bytes(&mut self, key: &'static str, default: u64, min: u64) -> u64 {
        let Some(value) = self.raw(key) else {
            return default;
        };
        let parsed = match value {
            Value::Number(n) => n
                .as_u64()
                .ok_or_else(|| format!("{n} is not a whole number of bytes")),
            Value::String(s) => parse_bytes(s),
            other => Err(format!(
                "expected a size like 1GiB, found {}",
                kind_of(other)
            )),
        };
        match parsed {
            Ok(n) if n >= min => n,
            Ok(n) => {
                self.problem(key, format!("{n} bytes is too small: at least {min}"));
                default
            }
            Err(e) => {
                self.problem(key, e);
                default
            }
        }
    }

    /// A positive count (`>= 1`) with a default.
    pub fn count(&mut self, key: &'static str, default: u64) -> u64 {
        self.int(key, 1, i64::from(u32::MAX))
            .map_or(default, |n| n as u64)
    }

    /// `true`/`false` (also as strings, from `${VAR}`).
    pub fn bool(&mut self, key: &'static str, default: bool) -> bool {
        match self.raw(key) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s == "true" => true,
            Some(Value::String(s)) if s == "false" => false,
            Some(other) => {
                let shown = describe(other);
                self.problem(key, format!("expected true or false, found {shown}"));
                default
            }
        }
    }

    /// A duration such as `500ms`, `30s`, `2m`; must be positive unless `allow_zero`.
    pub fn duration(&mut self, key: &'static str, default: Duration, allow_zero: bool) -> Duration {
        let Some(value) = self.raw(key) else {
            return default;
        };
        let parsed = match value {
            Value::String(s) => parse_duration(s),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration::ZERO),
            Value::Number(n) => Err(format!("{n} has no unit (write e.g. {n}s or {n}ms)")),
            other => Err(format!(
                "expected a duration like 30s, found {}",
                kind_of(other)
            )),
        };
        match parsed {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.problem(key, "must be greater than zero");
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.problem(key, e);
                default
            }
        }
    }

    /// One of a fixed set of words; anything else is a problem listing the choices.
    pub fn choice<T: Copy>(&mut self, key: &'static str, default: T, options: &[(&str, T)]) -> T {
        let Some(text) = self.string(key) else {
            return default;
        };
        let wanted = text.trim().to_ascii_lowercase();
        if let Some((_, v)) = options.iter().find(|(name, _)| *name == wanted) {
            return *v;
        }
        let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
        self.problem(key, format!("{text:?} is not one of: {}", names.join(", ")));
        default
    }

    /// A list of text items.
    pub fn string_list(&mut self, key: &'static str) -> Option<Vec<String>> {
        let value = self.raw(key)?;
        let Value::Sequence(items) = value else {
            let found = kind_of(value);
            self.problem(key, format!("expected a list, found {found}"));
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                Value::Number(n) => out.push(n.to_string()),
                other => {
                    let found = kind_of(other);
                    self.problem(
                        &format!("{key}[{i}]"),
                        format!("expected text, found {found}"),
                    );
                }
            }
        }
        Some(out)
    }

    /// A mapping of text keys to text values, in file order.
    pub fn string_map(&mut self, key: &'static str) -> Option<Vec<(String, String)>> {
        let value = self.raw(key)?;
        let Value::Mapping(map) = value else {
            let found = kind_of(value);
            self.problem(
                key,
                format!("expected a mapping of name: value, found {found}"),
            );
            return None;
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let name = key_text(k);
            match v {
                Value::String(s) => out.push((name, s.clone())),
                Value::Number(n) => out.push((name, n.to_string())),
                Value::Bool(b) => out.push((name, b.to_string())),
                other => {
                    let found = kind_of(other);
                    self.problem(
                        &format!("{key}.{name}"),
                        format!("expected text, found {found}"),
                    );
                }
            }
        }
        Some(out)
    }

    /// Reports every field of the mapping that no read asked for.
    pub fn finish(self) {
        let Some(map) = self.map else { return };
        for key in map.keys() {
            let name = key_text(key);
            if self.known.contains(&name.as_str()) {
                continue;
            }
            let hint = match closest(&name, &self.known) {
                Some(s) => format!(" (did you mean `{s}`?)"),
                None => format!(" (known fields: {})", self.known.join(", ")),
            };
            let p = self
                .doc
                .problem(&join(&self.path, &name), format!("unknown field{hint}"));
            self.report.problems.push(p);
        }
    }
}

/// A value as shown in a message: short scalars verbatim, others by kind.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) if s.len() <= 40 => format!("{s:?}"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => kind_of(other).to_owned(),
    }
}

/// `1GiB`, `512 MiB`, `64MB`, `100k`, `4096`.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (write e.g. 1GiB, 512MiB or 1048576)"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "{other:?} is not a size unit (B, KiB, MiB, GiB, TiB, or KB, MB, GB, TB)"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}
