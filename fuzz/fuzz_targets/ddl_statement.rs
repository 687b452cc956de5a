//! DDL statement text from a binlog QUERY event: which tables it names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // No input may panic; names are never empty identifiers of a bare word.
    let _ = rowhook::source::ddl::tables(&text, "db");
});
