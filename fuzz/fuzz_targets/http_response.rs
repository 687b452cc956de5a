//! Webhook receivers' answers, as the HTTP client reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for closed in [false, true] {
        if let Ok(Some((_, consumed))) = rowhook::http::response::parse(data, closed) {
            assert!(consumed <= data.len());
        }
    }
});
