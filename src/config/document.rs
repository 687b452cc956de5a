//! YAML files -> one merged tree that remembers which file each field came from.
//! Later files are layered over earlier ones (pikachu's prod overlay); `${VAR}`s are
//! expanded after merging so an overlay can override a variable-bearing field.

use std::collections::HashMap;
use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::interpolate::interpolate;
use super::problem::{ConfigError, Problem};

/// A merged YAML tree plus, for every field path, the file that set it.
#[derive(Debug, Default)]
pub(crate) struct Document {
    pub root: Mapping,
    files: Vec<String>,
    origins: HashMap<String, usize>,
}

impl Document {
    /// Reads and merges `paths` in order. Parse errors become problems; unreadable
    /// files are an error of their own.
    pub fn load(paths: &[&Path], problems: &mut Vec<Problem>) -> Result<Self, ConfigError> {
        let mut doc = Document::default();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            doc.add(&path.display().to_string(), &text, problems);
        }
        doc.interpolate(problems);
        Ok(doc)
    }

    /// Parses `text` as the file `name` and layers it over what is loaded so far.
    pub fn add(&mut self, name: &str, text: &str, problems: &mut Vec<Problem>) {
        let index = self.files.len();
        self.files.push(name.to_owned());
        let value: Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let at = e
                    .location()
                    .map(|l| format!(" at line {} column {}", l.line(), l.column()))
                    .unwrap_or_default();
                problems.push(Problem {
                    file: name.to_owned(),
                    path: String::new(),
                    message: format!("not valid YAML{at}: {e}"),
                });
                return;
            }
        };
        match value {
            Value::Null => {}
            Value::Mapping(map) => {
                let mut root = std::mem::take(&mut self.root);
                self.merge(&mut root, map, "", index);
                self.root = root;
            }
            other => problems.push(Problem {
                file: name.to_owned(),
                path: String::new(),
                message: format!(
                    "the top level must be a mapping of sections (database:, dispatcher:, ...), found {}",
                    kind_of(&other)
                ),
            }),
        }
    }

    fn merge(&mut self, into: &mut Mapping, from: Mapping, prefix: &str, file: usize) {
        for (key, value) in from {
            let path = join(prefix, &key_text(&key));
            match (into.get_mut(&key), value) {
                (Some(Value::Mapping(old)), Value::Mapping(new)) => {
                    self.origins.insert(path.clone(), file);
                    self.merge(old, new, &path, file);
                }
                (_, value) => {
                    self.record(&path, &value, file);
                    into.insert(key, value);
                }
            }
        }
    }

    fn record(&mut self, path: &str, value: &Value, file: usize) {
        self.origins.insert(path.to_owned(), file);
        match value {
            Value::Mapping(m) => {
                for (k, v) in m {
                    self.record(&join(path, &key_text(k)), v, file);
                }
            }
            Value::Sequence(items) => {
                for (i, v) in items.iter().enumerate() {
                    self.record(&format!("{path}[{i}]"), v, file);
                }
            }
            _ => {}
        }
    }

    pub fn interpolate(&mut self, problems: &mut Vec<Problem>) {
        let mut root = std::mem::take(&mut self.root);
        for (key, value) in root.iter_mut() {
            let path = key_text(key);
            self.interpolate_value(value, &path, problems);
        }
        self.root = root;
    }

    fn interpolate_value(&self, value: &mut Value, path: &str, problems: &mut Vec<Problem>) {
        match value {
            Value::String(s) => match interpolate(s, |name| std::env::var(name).ok()) {
                Ok(expanded) => *s = expanded,
                Err(e) => problems.push(self.problem(path, e.to_string())),
            },
            Value::Mapping(m) => {
                for (k, v) in m.iter_mut() {
                    self.interpolate_value(v, &join(path, &key_text(k)), problems);
                }
            }
            Value::Sequence(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    self.interpolate_value(v, &format!("{path}[{i}]"), problems);
                }
            }
            _ => {}
        }
    }

    /// The file that set `path`, or its nearest set parent; all files when none did.
    pub fn origin(&self, path: &str) -> String {
        let mut p = path;
        loop {
            if let Some(&i) = self.origins.get(p) {
                return self.files[i].clone();
            }
            match p.rfind(['.', '[']) {
                Some(cut) => p = &p[..cut],
                None => return self.files.join(" + "),
            }
        }
    }

    /// A problem at `path`, attributed to the file that set it.
    pub fn problem(&self, path: &str, message: impl Into<String>) -> Problem {
        Problem {
            file: self.origin(path),
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// Joins a parent path and a key with a dot.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A mapping key as text (YAML allows non-string keys; they are named as written).
pub(crate) fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "~".to_owned(),
        other => kind_of(other).to_owned(),
    }
}

/// How a value's YAML type is named in messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal number",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_replaces_leaves_and_keeps_the_rest() {
        let mut problems = vec![];
        let mut doc = Document::default();
        doc.add(
            "base.yaml",
            "log: {level: info, format: text}\ndatabase: {host: a}",
            &mut problems,
        );
        doc.add("prod.yaml", "log: {level: warn}", &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let log = doc.root.get("log").and_then(Value::as_mapping).unwrap();
        assert_eq!(log.get("level").and_then(Value::as_str), Some("warn"));
        assert_eq!(log.get("format").and_then(Value::as_str), Some("text"));
        assert_eq!(doc.origin("log.level"), "prod.yaml");
        assert_eq!(doc.origin("log.format"), "base.yaml");
        assert_eq!(doc.origin("database.host"), "base.yaml");
        assert_eq!(doc.origin("database.port"), "base.yaml");
        assert_eq!(doc.origin("nowhere"), "base.yaml + prod.yaml");
    }

    #[test]
    fn yaml_errors_name_the_line() {
        let mut problems = vec![];
        let mut doc = Document::default();
        doc.add("bad.yaml", "database:\n  host: [unclosed\n", &mut problems);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].message.contains("line"), "{:?}", problems[0]);
        doc.add("list.yaml", "- a\n- b\n", &mut problems);
        assert!(problems[1].message.contains("mapping"), "{:?}", problems[1]);
    }
}
