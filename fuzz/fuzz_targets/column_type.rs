//! information_schema `COLUMN_TYPE` text (ENUM/SET label lists) from the server.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(labels) = rowhook::source::columns::members(text) {
            assert!(!labels.is_empty());
        }
    }
});
