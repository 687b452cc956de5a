//! Property: for random tables (random column types) and random rows, rowhook's JSON
//! says the same as mysql_common's decoding of the same binlog bytes.
//! The bytes are built here: FDE from a real MySQL 5.7 file, then a TABLE_MAP and a
//! WRITE_ROWS_V1 event encoded by the small encoder below.

mod common;

use std::io::Cursor;

use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::EventData;
use mysql_common::binlog::BinlogFile;
use proptest::prelude::*;
use rowhook::binlog::{Decoder, Event};
use rowhook::config::PayloadShape;
use rowhook::dispatch::payload::{PayloadWriter, Row, RowPosition};
use serde_json::Value;

#[derive(Debug, Clone)]
enum Col {
    Int {
        bytes: u8,
        unsigned: bool,
        value: u64,
    },
    Float(f32),
    Double(f64),
    Decimal {
        p: u8,
        s: u8,
        negative: bool,
        digits: Vec<u8>,
    },
    Date {
        y: u32,
        m: u32,
        d: u32,
    },
    Datetime2 {
        fsp: u8,
        ymd: (u32, u32, u32),
        hms: (u32, u32, u32),
        micro: u32,
    },
    Timestamp2 {
        fsp: u8,
        secs: u32,
        micro: u32,
    },
    Time2 {
        fsp: u8,
        negative: bool,
        hms: (u32, u32, u32),
        micro: u32,
    },
    Year(u8),
    Varchar {
        max: u16,
        text: String,
    },
    Blob(Vec<u8>),
    Bit {
        bits: u16,
        value: u64,
    },
    Null,
}

fn fsp_micro(fsp: u8) -> impl Strategy<Value = u32> {
    let unit = 10u32.pow(6 - u32::from(fsp));
    (0..10u32.pow(u32::from(fsp))).prop_map(move |v| v * unit)
}

fn col() -> impl Strategy<Value = Col> {
    prop_oneof![
        (
            prop_oneof![Just(1u8), Just(2), Just(3), Just(4), Just(8)],
            any::<bool>(),
            any::<u64>()
        )
            .prop_map(|(bytes, unsigned, value)| Col::Int {
                bytes,
                unsigned,
                value: value & (u64::MAX >> (64 - 8 * u32::from(bytes)))
            }),
        any::<f32>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Col::Float),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Col::Double),
        (1u8..=65)
            .prop_flat_map(|p| (Just(p), 0..=p.min(30)))
            .prop_flat_map(|(p, s)| (
                Just(p),
                Just(s),
                any::<bool>(),
                proptest::collection::vec(0u8..10, p as usize)
            ))
            .prop_map(|(p, s, negative, digits)| Col::Decimal {
                p,
                s,
                negative,
                digits
            }),
        (1000u32..=9999, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| Col::Date { y, m, d }),
        (0u8..=6)
            .prop_flat_map(|fsp| (
                Just(fsp),
                (1000u32..=9999, 1u32..=12, 1u32..=28),
                (0u32..24, 0u32..60, 0u32..60),
                fsp_micro(fsp)
            ))
            .prop_map(|(fsp, ymd, hms, micro)| Col::Datetime2 {
                fsp,
                ymd,
                hms,
                micro
            }),
        (0u8..=6)
            .prop_flat_map(|fsp| (Just(fsp), 1u32..=2_147_483_647, fsp_micro(fsp)))
            .prop_map(|(fsp, secs, micro)| Col::Timestamp2 { fsp, secs, micro }),
        (0u8..=6)
            .prop_flat_map(|fsp| (
                Just(fsp),
                any::<bool>(),
                (0u32..=838, 0u32..60, 0u32..60),
                fsp_micro(fsp)
            ))
            // mysql_common 0.38 underflows (u32) on negative TIME(1|2) with a fraction,
            // so the oracle cannot judge those; tests/tail_mariadb.rs checks them
            // against a real server instead.
            .prop_filter("oracle bug", |(fsp, negative, _, micro)| !(*negative
                && (1..=2).contains(fsp)
                && *micro != 0))
            .prop_map(|(fsp, negative, hms, micro)| Col::Time2 {
                fsp,
                negative,
                hms,
                micro
            }),
        any::<u8>().prop_map(Col::Year),
        (1u16..=400)
            .prop_flat_map(|max| (Just(max), "[a-zA-Z0-9 é😀\"\\\\]{0,20}"))
            .prop_map(|(max, text)| {
                let mut t = text;
                while t.len() > usize::from(max) {
                    t.pop();
                }
                Col::Varchar { max, text: t }
            }),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Col::Blob),
        (1u16..=64, any::<u64>()).prop_map(|(bits, v)| Col::Bit {
            bits,
            value: if bits == 64 { v } else { v & ((1 << bits) - 1) }
        }),
        Just(Col::Null),
    ]
}

/// (type code, metadata bytes, value bytes, is numeric, is character, is binary)
fn encode(c: &Col) -> (u8, Vec<u8>, Vec<u8>, bool, bool, bool) {
    match c {
        Col::Int { bytes, value, .. } => {
            let code = match bytes {
                1 => 1,
                2 => 2,
                3 => 9,
                4 => 3,
                _ => 8,
            };
            (
                code,
                vec![],
                value.to_le_bytes()[..usize::from(*bytes)].to_vec(),
                true,
                false,
                false,
            )
        }
        Col::Float(f) => (4, vec![4], f.to_le_bytes().to_vec(), true, false, false),
        Col::Double(f) => (5, vec![8], f.to_le_bytes().to_vec(), true, false, false),
        Col::Decimal {
            p,
            s,
            negative,
            digits,
        } => (
            246,
            vec![*p, *s],
            decimal(*p, *s, *negative, digits),
            true,
            false,
            false,
        ),
        Col::Date { y, m, d } => (
            10,
            vec![],
            ((y << 9) | (m << 5) | d).to_le_bytes()[..3].to_vec(),
            false,
            false,
            false,
        ),
        Col::Datetime2 {
            fsp,
            ymd: (y, mo, d),
            hms: (h, mi, s),
            micro,
        } => {
            let ymd = (u64::from(y * 13 + mo) << 5) | u64::from(*d);
            let int = (ymd << 17) | u64::from((h << 12) | (mi << 6) | s);
            let mut v = (int + 0x80_0000_0000).to_be_bytes()[3..].to_vec();
            v.extend(frac(*fsp, i64::from(*micro)));
            (18, vec![*fsp], v, false, false, false)
        }
        Col::Timestamp2 { fsp, secs, micro } => {
            let mut v = secs.to_be_bytes().to_vec();
            v.extend(frac(*fsp, i64::from(*micro)));
            (17, vec![*fsp], v, false, false, false)
        }
        Col::Time2 {
            fsp,
            negative,
            hms: (h, mi, s),
            micro,
        } => {
            let mut nr = (i64::from((h << 12) | (mi << 6) | s) << 24) + i64::from(*micro);
            if *negative {
                nr = -nr;
            }
            // MySQL my_time_packed_to_binary.
            let v = match fsp {
                0 => ((nr >> 24) + 0x80_0000).to_be_bytes()[5..].to_vec(),
                1 | 2 => {
                    let mut v = ((nr >> 24) + 0x80_0000).to_be_bytes()[5..].to_vec();
                    v.push(((nr % (1 << 24)) / 10_000) as i8 as u8);
                    v
                }
                3 | 4 => {
                    let mut v = ((nr >> 24) + 0x80_0000).to_be_bytes()[5..].to_vec();
                    v.extend((((nr % (1 << 24)) / 100) as i16).to_be_bytes());
                    v
                }
                _ => (nr + 0x8000_0000_0000).to_be_bytes()[2..].to_vec(),
            };
            (19, vec![*fsp], v, false, false, false)
        }
        Col::Year(y) => (13, vec![], vec![*y], true, false, false),
        Col::Varchar { max, text } => {
            let mut v = if *max > 255 {
                (text.len() as u16).to_le_bytes().to_vec()
            } else {
                vec![text.len() as u8]
            };
            v.extend(text.as_bytes());
            (15, max.to_le_bytes().to_vec(), v, false, true, false)
        }
        Col::Blob(b) => {
            let mut v = (b.len() as u16).to_le_bytes().to_vec();
            v.extend(b);
            (252, vec![2], v, false, true, true)
        }
        Col::Bit { bits, value } => {
            let n = usize::from(*bits).div_ceil(8);
            (
                16,
                vec![(bits % 8) as u8, (bits / 8) as u8],
                value.to_be_bytes()[8 - n..].to_vec(),
                false,
                false,
                false,
            )
        }
        Col::Null => (3, vec![], vec![], true, false, false),
    }
}

fn frac(fsp: u8, micro: i64) -> Vec<u8> {
    match fsp {
        1 | 2 => vec![(micro / 10_000) as u8],
        3 | 4 => ((micro / 100) as u16).to_be_bytes().to_vec(),
        5 | 6 => (micro as u32).to_be_bytes()[1..].to_vec(),
        _ => vec![],
    }
}

fn decimal(p: u8, s: u8, negative: bool, digits: &[u8]) -> Vec<u8> {
    const D2B: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    let intg = usize::from(p - s);
    let (int_digits, frac_digits) = digits.split_at(intg);
    let num = |ds: &[u8]| ds.iter().fold(0u32, |a, &d| a * 10 + u32::from(d));
    let mut out = Vec::new();
    let lead = intg % 9;
    out.extend(&num(&int_digits[..lead]).to_be_bytes()[4 - D2B[lead]..]);
    for g in int_digits[lead..].chunks(9) {
        out.extend(num(g).to_be_bytes());
    }
    for g in frac_digits.chunks(9) {
        if g.len() == 9 {
            out.extend(num(g).to_be_bytes());
        } else {
            out.extend(&num(g).to_be_bytes()[4 - D2B[g.len()]..]);
        }
    }
    if negative {
        for b in &mut out {
            *b = !*b;
        }
    }
    out[0] ^= 0x80;
    out
}

fn event(kind: u8, body: &[u8], log_pos: u32) -> Vec<u8> {
    let mut e = Vec::new();
    e.extend(1_700_000_000u32.to_le_bytes());
    e.push(kind);
    e.extend(1u32.to_le_bytes());
    e.extend(((19 + body.len()) as u32).to_le_bytes());
    e.extend(log_pos.to_le_bytes());
    e.extend(0u16.to_le_bytes());
    e.extend(body);
    e
}

/// A binlog file: magic, a real MySQL 5.7 FDE (checksums off), TABLE_MAP, WRITE_ROWS_V1.
fn binlog(cols: &[Col], nulls: &[bool]) -> Vec<u8> {
    let real = std::fs::read(
        common::root()
            .join("tests/fixtures/binlog/mysql-binlog-connector-java__mysql-bin.checksum-none"),
    )
    .unwrap();
    let fde_len = u32::from_le_bytes(real[4 + 9..4 + 13].try_into().unwrap()) as usize;
    let mut file = real[..4 + fde_len].to_vec();
    let enc: Vec<_> = cols.iter().map(encode).collect();
    let mut tm = vec![
        42,
        0,
        0,
        0,
        0,
        0,
        1,
        0,
        1,
        b's',
        0,
        1,
        b't',
        0,
        cols.len() as u8,
    ];
    tm.extend(enc.iter().map(|e| e.0));
    let meta: Vec<u8> = enc.iter().flat_map(|e| e.1.clone()).collect();
    tm.push(meta.len() as u8);
    tm.extend(meta);
    tm.extend(vec![0xff; cols.len().div_ceil(8)]);
    // SIGNEDNESS: one bit per numeric column, most significant first.
    let numeric: Vec<bool> = cols
        .iter()
        .zip(&enc)
        .filter(|(_, e)| e.3)
        .map(|(c, _)| matches!(c, Col::Int { unsigned: true, .. }))
        .collect();
    let mut sign = vec![0u8; numeric.len().div_ceil(8)];
    for (i, u) in numeric.iter().enumerate() {
        if *u {
            sign[i / 8] |= 0x80 >> (i % 8);
        }
    }
    tm.push(1);
    tm.push(sign.len() as u8);
    tm.extend(sign);
    // DEFAULT_CHARSET: utf8mb4 (45), binary (63) for BLOB columns (index among character columns).
    let mut cs = vec![45u8];
    for (n, e) in enc.iter().filter(|e| e.4).enumerate() {
        if e.5 {
            cs.extend([n as u8, 63]);
        }
    }
    tm.push(2);
    tm.push(cs.len() as u8);
    tm.extend(cs);
    let tm_pos = file.len() as u32;
    file.extend(event(19, &tm, tm_pos + 19 + tm.len() as u32));
    let mut rows = vec![42, 0, 0, 0, 0, 0, 1, 0, cols.len() as u8];
    rows.extend(vec![0xff; cols.len().div_ceil(8)]);
    let mut null_bits = vec![0u8; cols.len().div_ceil(8)];
    let mut values: Vec<u8> = Vec::new();
    for (i, (e, c)) in enc.iter().zip(cols).enumerate() {
        if nulls[i] || matches!(c, Col::Null) {
            null_bits[i / 8] |= 1 << (i % 8);
        } else {
            values.extend(&e.2);
        }
    }
    rows.extend(null_bits);
    rows.extend(values);
    let rows_pos = file.len() as u32;
    file.extend(event(23, &rows, rows_pos + 19 + rows.len() as u32));
    file
}

fn ours(file: &[u8]) -> Vec<Value> {
    let mut decoder = Decoder::new();
    let mut at = 4;
    let mut out = Vec::new();
    while at < file.len() {
        let size = u32::from_le_bytes(file[at + 9..at + 13].try_into().unwrap()) as usize;
        let ev = &file[at..at + size];
        at += size;
        let (h, e) = decoder.decode(ev).unwrap();
        if let Event::Rows(rows) = e {
            let table = decoder.table(rows.table_id).unwrap();
            for change in rows.rows(table).unwrap() {
                let row = Row {
                    at: RowPosition {
                        file: "f",
                        pos: 4,
                        index: 0,
                        timestamp: h.timestamp,
                        gtid: None,
                    },
                    kind: rows.kind,
                    table,
                    change: change.unwrap(),
                    transaction: None,
                };
                PayloadWriter::default()
                    .write(&mut out, PayloadShape::Pikachu, &row, None)
                    .unwrap();
            }
        }
    }
    let v: Value = serde_json::from_slice(&out).unwrap();
    v["data"].as_object().unwrap().values().cloned().collect()
}

fn theirs(file: &[u8]) -> Vec<Option<mysql_common::binlog::value::BinlogValue<'static>>> {
    let mut binlog = BinlogFile::new(BinlogVersion::Version4, Cursor::new(file.to_vec())).unwrap();
    while let Some(Ok(event)) = binlog.next() {
        let Ok(Some(EventData::RowsEvent(rows))) = event.read_data() else {
            continue;
        };
        let tme = binlog.reader().get_tme(rows.table_id()).unwrap();
        let (_, after) = rows.rows(tme).next().unwrap().unwrap();
        let mut after = after.unwrap();
        return (0..after.len())
            .map(|i| after.take(i).map(|v| v.into_owned()))
            .collect();
    }
    panic!("mysql_common found no rows");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn rows_agree_with_mysql_common(cols in proptest::collection::vec(col(), 1..20), nulls in proptest::collection::vec(proptest::bool::weighted(0.1), 20)) {
        let file = binlog(&cols, &nulls);
        let ours = ours(&file);
        let theirs = theirs(&file);
        prop_assert_eq!(ours.len(), theirs.len());
        for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
            // mysql_common 0.38 does not sign-extend signed MEDIUMINT: check those
            // against the generated value itself.
            if let Col::Int { bytes: 3, unsigned: false, value } = cols[i] {
                if !nulls[i] {
                    let expected = ((value << 40) as i64) >> 40;
                    prop_assert_eq!(o.as_i64(), Some(expected), "column {} MEDIUMINT", i);
                    continue;
                }
            }
            if let Some(ok) = common::oracle::agrees(o, t) {
                prop_assert!(ok, "column {} ({:?}): ours {} vs {:?}", i, cols[i], o, t);
            }
        }
    }
}
