//! Request heads from any client of the admin port.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(len)) = rowhook::admin::parse_request_head(data) {
        assert!(len <= data.len());
    }
});
