//! Values a server sends in a snapshot's text-protocol rows, as every column
//! type renders them: the JSON written must parse, and key literals must never
//! leave their quotes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rowhook::snapshot::render::{literal, write_value, Column};

const TYPES: &[(&str, Option<&str>, bool)] = &[
    ("bigint", None, false),
    ("decimal", None, false),
    ("float", None, false),
    ("double", None, false),
    ("year", None, false),
    ("varchar", Some("utf8mb4"), false),
    ("varbinary", None, false),
    ("longtext", Some("utf8mb4"), true),
    ("datetime", None, false),
    ("enum", Some("utf8mb4"), false),
    ("bit", None, false),
    ("geometry", None, false),
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, value)) = data.split_first() else {
        return;
    };
    let (t, charset, json) = TYPES[usize::from(which) % TYPES.len()];
    let col = Column::new("c", t, charset, json, true).expect("a supported type");
    let mut out = Vec::new();
    if write_value(&mut out, &col, Some(value)).is_ok() {
        let text = std::str::from_utf8(&out).expect("UTF-8 JSON");
        // Grammar, not range: a JSON column may hold 2e+2244 (the binlog path
        // embeds it alike).
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .unwrap_or_else(|e| panic!("{t}: {text:?} is not JSON: {e}"));
    }
    if let Ok(sql) = literal(&col, value) {
        // A quoted literal closes only at its end: no unescaped quote inside.
        if let Some(inner) = sql.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            let mut escaped = false;
            for ch in inner.chars() {
                assert!(escaped || ch != '\'', "{sql}");
                escaped = !escaped && ch == '\\';
            }
        }
        let _ = rowhook::dispatch::merge::unique_key_of(value, &["c".to_owned()]);
    }
});
