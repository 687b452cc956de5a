//! Decode throughput on one core: every event of a binlog file (held in memory)
//! through framing, TABLE_MAP, row walking and payload writing, repeated for a
//! fixed time. Reports rows/s and MB/s of binlog consumed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rowhook::binlog::file::BinlogFile;
use rowhook::binlog::{Decoder, Event};
use rowhook::config::PayloadShape;
use rowhook::dispatch::payload::{PayloadWriter, Row, RowPosition};

pub fn main(args: &[String]) -> ExitCode {
    let mut file = None;
    let mut seconds = 5u64;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.next()) {
            ("--file", Some(f)) => file = Some(PathBuf::from(f)),
            ("--seconds", Some(s)) => seconds = s.parse().unwrap_or(5),
            _ => {
                eprintln!("usage: bench decode --file BINLOG [--seconds N]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(path) = file else {
        eprintln!("usage: bench decode --file BINLOG [--seconds N]");
        return ExitCode::from(2);
    };
    let events = match load(&path) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(core) = core_affinity::get_core_ids().and_then(|c| c.into_iter().next()) {
        core_affinity::set_for_current(core);
    }
    let bytes: usize = events.iter().map(Vec::len).sum();
    // One warm-up pass also checks that the file decodes.
    let rows_per_pass = match pass(&events) {
        Ok((rows, _)) => rows,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let start = Instant::now();
    let mut passes = 0u64;
    let mut payload_bytes = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        match pass(&events) {
            Ok((_, out)) => payload_bytes += out,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
        passes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let rows = rows_per_pass * passes;
    println!("file            {}", path.display());
    println!(
        "binlog bytes    {bytes} ({} events, {rows_per_pass} rows per pass)",
        events.len()
    );
    println!("passes          {passes} in {secs:.2} s on one pinned core");
    println!("rows/s          {:.0}", rows as f64 / secs);
    println!(
        "binlog MB/s     {:.1}",
        (bytes as u64 * passes) as f64 / secs / 1e6
    );
    println!("payload MB/s    {:.1}", payload_bytes as f64 / secs / 1e6);
    println!("ns/row          {:.0}", secs * 1e9 / rows.max(1) as f64);
    ExitCode::SUCCESS
}

/// Decode throughput over `path` for `seconds` on one pinned core, as JSON.
pub fn measure(path: &std::path::Path, seconds: u64) -> Result<serde_json::Value, String> {
    let events = load(path)?;
    if let Some(core) = core_affinity::get_core_ids().and_then(|c| c.into_iter().next()) {
        core_affinity::set_for_current(core);
    }
    let bytes: usize = events.iter().map(Vec::len).sum();
    let (rows_per_pass, _) = pass(&events)?;
    let start = Instant::now();
    let mut passes = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        pass(&events)?;
        passes += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "rows_per_pass": rows_per_pass,
        "passes": passes,
        "seconds": secs,
        "rows_per_s": (rows_per_pass * passes) as f64 / secs,
        "binlog_mb_per_s": (bytes as u64 * passes) as f64 / secs / 1e6,
    }))
}

fn load(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let mut file = BinlogFile::open(path).map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    while let Some((_, e)) = file.next_event().map_err(|e| e.to_string())? {
        events.push(e.to_vec());
    }
    Ok(events)
}

/// One pass over all events; returns (rows, payload bytes). Hot path under test.
fn pass(events: &[Vec<u8>]) -> Result<(u64, u64), String> {
    let mut decoder = Decoder::new();
    let mut writer = PayloadWriter::default();
    let mut out = Vec::with_capacity(1 << 20);
    let (mut rows, mut bytes) = (0u64, 0u64);
    for (n, event) in events.iter().enumerate() {
        let (header, ev) = decoder
            .decode(event)
            .map_err(|e| format!("event {n}: {e}"))?;
        if let Event::Rows(r) = ev {
            let table = decoder.table(r.table_id).ok_or("rows without table map")?;
            out.clear();
            for (i, change) in r.rows(table).map_err(|e| e.to_string())?.enumerate() {
                let row = Row {
                    at: RowPosition {
                        file: "binlog.000001",
                        pos: n as u64,
                        index: i as u32,
                        timestamp: header.timestamp,
                        gtid: None,
                    },
                    kind: r.kind,
                    table,
                    change: change.map_err(|e| e.to_string())?,
                    transaction: None,
                };
                writer
                    .write(&mut out, PayloadShape::Pikachu, &row, None)
                    .map_err(|e| e.to_string())?;
                rows += 1;
            }
            bytes += out.len() as u64;
        }
    }
    Ok((rows, bytes))
}
