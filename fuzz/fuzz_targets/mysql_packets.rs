//! Server bytes on the replication socket: packet framing, the greeting, result rows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rowhook::mysql::handshake::Greeting;
use rowhook::mysql::packet::Framer;
use rowhook::mysql::result::{column_count, parse_row};
use rowhook::mysql::MysqlError;

fuzz_target!(|data: &[u8]| {
    let mut framer = Framer::new(1 << 20);
    for chunk in data.chunks(7) {
        framer.push(chunk);
        loop {
            match framer.next_payload() {
                Ok(Some(p)) => {
                    let _ = Greeting::parse(&p);
                    let _ = column_count(&p);
                    let _ = parse_row(&p, usize::from(p.first().copied().unwrap_or(0) % 8));
                    let _ = MysqlError::from_err_packet(&p);
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
});
