//! Hostile bytes never panic the decoder: every event of every fixture binlog is
//! truncated and bit-flipped, then pushed through framing, TABLE_MAP, rows and the
//! payload writer. Each outcome must be Ok or an error value.

mod common;

use rowhook::binlog::file::BinlogFile;
use rowhook::binlog::{Decoder, Event};
use rowhook::config::PayloadShape;
use rowhook::dispatch::payload::{PayloadWriter, Row, RowPosition};

/// xorshift64*: deterministic, so a failure names a reproducible case.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Decodes `event` and, for rows, writes every payload; returns whether it decoded.
fn exercise(decoder: &mut Decoder, writer: &mut PayloadWriter, event: &[u8]) -> bool {
    let Ok((header, ev)) = decoder.decode(event) else {
        return false;
    };
    if let Event::Compressed(payload) = ev {
        let mut inner = Vec::new();
        if payload.inflate(&mut inner).is_err() {
            return false;
        }
        return rowhook::binlog::compressed::events(&inner).all(|e| {
            e.is_ok_and(|e| {
                decoder
                    .decode_inner(e)
                    .is_ok_and(|(_, ev)| rows_ok(decoder, writer, header, ev))
            })
        });
    }
    rows_ok(decoder, writer, header, ev)
}

/// Writes every payload of a rows event; false when a row does not decode.
fn rows_ok(
    decoder: &Decoder,
    writer: &mut PayloadWriter,
    header: rowhook::binlog::event::EventHeader,
    ev: Event<'_>,
) -> bool {
    if let Event::Rows(rows) = ev {
        let Some(table) = decoder.table(rows.table_id) else {
            return false;
        };
        let Ok(iter) = rows.rows(table) else {
            return false;
        };
        let mut out = Vec::new();
        for (i, change) in iter.enumerate() {
            let Ok(change) = change else { return false };
            let row = Row {
                at: RowPosition {
                    file: "f",
                    pos: 4,
                    index: i as u32,
                    timestamp: header.timestamp,
                    gtid: None,
                },
                kind: rows.kind,
                table,
                change,
                transaction: None,
            };
            if writer
                .write(&mut out, PayloadShape::Envelope, &row, None)
                .is_err()
            {
                return false;
            }
        }
        assert!(std::str::from_utf8(&out).is_ok(), "payload is not UTF-8");
    }
    true
}

#[test]
fn mutated_events_never_panic() {
    let dir = common::root().join("tests/fixtures/binlog");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases = 0u64;
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let Ok(mut file) = BinlogFile::open(&path) else {
            continue;
        };
        let mut events = Vec::new();
        while let Ok(Some((_, e))) = file.next_event() {
            events.push(e.to_vec());
        }
        // The sakila file is large: sample its events to keep the test quick.
        let step = (events.len() / 400).max(1);
        let mut decoder = Decoder::new();
        let mut writer = PayloadWriter::default();
        for (n, event) in events.iter().enumerate() {
            if n % step == 0 {
                // Mutations go to a scratch decoder that shares the real state so far
                // (FDE, table maps), so rows events meet the table they belong to.
                for _ in 0..24 {
                    let mut bad = event.clone();
                    match rng.below(4) {
                        0 => bad.truncate(rng.below(bad.len())),
                        1 => {
                            for _ in 0..=rng.below(4) {
                                let i = rng.below(bad.len());
                                bad[i] ^= 1 << rng.below(8);
                            }
                        }
                        2 => {
                            // Corrupt after the header but keep the size field honest.
                            let i = 19 + rng.below(bad.len().saturating_sub(19));
                            if i < bad.len() {
                                bad[i] = rng.next() as u8;
                            }
                        }
                        _ => {
                            let extra = rng.below(64);
                            bad.extend((0..extra).map(|_| rng.next() as u8));
                            let len = bad.len() as u32;
                            if bad.len() >= 13 {
                                bad[9..13].copy_from_slice(&len.to_le_bytes());
                            }
                        }
                    }
                    let mut scratch = Decoder::new();
                    // Replay the state-building events seen so far (FDE and maps).
                    for prior in events[..n]
                        .iter()
                        .filter(|e| e.len() > 4 && matches!(e[4], 15 | 19))
                    {
                        let _ = scratch.decode(prior);
                    }
                    let _ = exercise(&mut scratch, &mut writer, &bad);
                    cases += 1;
                }
            }
            exercise(&mut decoder, &mut writer, event);
        }
    }
    assert!(cases > 5_000, "only {cases} mutated events");
}
