//! Spool segment bytes as read back from disk (torn, damaged, or hostile).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rowhook::spool::record::{decode, whole_prefix, Decoded};

fuzz_target!(|data: &[u8]| {
    // No input may panic, and every record read re-encodes to its own bytes.
    let (whole, _) = whole_prefix(data);
    assert!(whole <= data.len());
    let mut at = 0;
    while let Decoded::Record(r, len) = decode(&data[at..]) {
        let mut again = Vec::new();
        r.encode(&mut again);
        assert_eq!(again.as_slice(), &data[at..at + len]);
        at += len;
    }
    assert_eq!(at, whole);
});
