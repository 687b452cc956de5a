//! Arbitrary events after a real table map: framing, checksum, rows and payloads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rowhook::binlog::{Decoder, Event};
use rowhook::config::PayloadShape;
use rowhook::dispatch::payload::{PayloadWriter, Row, RowPosition};

fuzz_target!(|data: &[u8]| {
    // First byte picks checksum on/off; the rest is split into events by their
    // own size fields, so one input can hold a TABLE_MAP and then rows.
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mut decoder = Decoder::new();
    decoder.set_checksum(mode & 1 == 1);
    let mut writer = PayloadWriter::default();
    let mut out = Vec::new();
    while rest.len() >= 19 {
        let size = u32::from_le_bytes([rest[9], rest[10], rest[11], rest[12]]) as usize;
        let size = size.clamp(19, rest.len());
        let (event, tail) = rest.split_at(size);
        rest = tail;
        // The follow loop's own looks at an event, before the decoder's.
        if let Some(body) = rowhook::binlog::event::body(event, mode & 1 == 1) {
            let _ = rowhook::binlog::event::rotate(body);
            let _ = rowhook::binlog::table_map::table_id(body, 6);
        }
        let Ok((header, Event::Rows(rows))) = decoder.decode(event) else { continue };
        let Some(table) = decoder.table(rows.table_id) else { continue };
        let Ok(iter) = rows.rows(table) else { continue };
        for (i, change) in iter.enumerate() {
            let Ok(change) = change else { break };
            let row = Row {
                at: RowPosition { file: "f", pos: 4, index: i as u32, timestamp: header.timestamp, gtid: None },
                kind: rows.kind,
                table,
                change,
            };
            out.clear();
            if writer.write(&mut out, PayloadShape::Envelope, &row, None).is_ok() {
                assert!(std::str::from_utf8(&out).is_ok());
            }
        }
    }
});
