//! TABLE_MAP bodies with arbitrary types, metadata and optional metadata.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = rowhook::binlog::TableMap::parse(data, 6);
    let _ = rowhook::binlog::TableMap::parse(data, 4);
});
