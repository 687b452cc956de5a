//! Arbitrary events after a real table map, through the same pull path `run` and
//! `tail` use (`Changes`: header, decode, rows, routes, the follow loop's Step):
//! framing, checksum, rows and payloads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rowhook::config::PayloadShape;
use rowhook::dispatch::changes::Changes;
use rowhook::dispatch::payload::PayloadWriter;
use rowhook::mysql::replica::BinlogPosition;

fuzz_target!(|data: &[u8]| {
    // First byte picks checksum on/off and MariaDB-style column lookups; the rest
    // is split into events by their own size fields, so one input can hold a
    // TABLE_MAP and then rows.
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mut changes = Changes::new(None, String::new());
    let from = BinlogPosition { file: "f.000001".into(), pos: 4 };
    changes.on_connect(mode & 1 == 1, &from, mode & 2 == 2);
    let mut writer = PayloadWriter::default();
    let mut out = Vec::new();
    while rest.len() >= 19 {
        let size = u32::from_le_bytes([rest[9], rest[10], rest[11], rest[12]]) as usize;
        let size = size.clamp(19, rest.len());
        let (event, tail) = rest.split_at(size);
        rest = tail;
        let Ok(mut feed) = changes.feed(event) else { continue };
        loop {
            let Ok(Some(mut rows)) = changes.next_rows(&mut feed, event) else { break };
            while let Some(next) = rows.next() {
                let Ok((row, routes)) = next else { break };
                for route in routes {
                    out.clear();
                    if writer.write(&mut out, PayloadShape::Envelope, &row, route.keep.as_deref()).is_ok() {
                        assert!(std::str::from_utf8(&out).is_ok());
                    }
                }
            }
        }
        let _ = changes.step(&feed);
    }
});
