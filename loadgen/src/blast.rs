//! `loadgen blast`: the HTTP ceiling. Keep-alive connections, one request in flight
//! on each (as rowhook's lanes send), POSTing bodies shaped like rowhook's webhooks
//! (with loadgen's seq and sent_ns, so a sink does the same work per request) as
//! fast as the receiver answers. Prints requests/s. `--rate` paces instead (see
//! `paced`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `loadgen blast` (also its command line).
#[derive(Debug, Clone, clap::Args)]
pub struct BlastArgs {
    /// The receiver, host:port.
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub target: String,
    /// Request path.
    #[arg(long, default_value = "/blast")]
    pub path: String,
    /// Keep-alive connections, one request in flight on each.
    #[arg(long, default_value_t = 16)]
    pub connections: usize,
    /// Bytes of each body's payload field.
    #[arg(long, default_value_t = 64)]
    pub row_bytes: usize,
    /// How long to send (e.g. 10s).
    #[arg(long, value_parser = crate::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Requests per second over all connections, paced from one thread, each body
    /// stamped with its due time (a bare webhook's latency); 0 = as fast as answered.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
}

/// Runs the blast and prints the JSON result.
pub fn run(args: &BlastArgs) -> Result<(), String> {
    if args.rate > 0 {
        return crate::paced::run(args);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let started = Instant::now();
    for c in 0..args.connections.max(1) {
        let (stop, ok, failed, args) = (stop.clone(), ok.clone(), failed.clone(), args.clone());
        threads.push(std::thread::spawn(move || {
            // Each connection owns a table, so sequences stay gapless per table.
            let table = format!("blast{c}");
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match connection(&args, &table, &mut seq, &stop, &ok) {
                    Ok(()) => {}
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }));
    }
    std::thread::sleep(args.duration);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = started.elapsed().as_secs_f64();
    let n = ok.load(Ordering::Relaxed);
    println!(
        "{{\"requests\":{n},\"seconds\":{secs:.3},\"requests_per_s\":{:.0},\"connections\":{},\"connection_failures\":{}}}",
        n as f64 / secs.max(1e-9),
        args.connections,
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}

fn connection(
    args: &BlastArgs,
    table: &str,
    seq: &mut u64,
    stop: &AtomicBool,
    ok: &AtomicU64,
) -> std::io::Result<()> {
    let stream = TcpStream::connect(&args.target)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let payload = "p".repeat(args.row_bytes);
    let mut request = Vec::with_capacity(512 + args.row_bytes);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        *seq += 1;
        let body = format!(
            r#"{{"id":"blast:{seq}:0","primary_id":{seq},"event":"insert","database":"loadgen","table":"{table}","data":{{"id":{seq},"seq":{seq},"sent_ns":{},"payload":"{payload}"}},"timestamp":"2026-01-01T00:00:00Z"}}"#,
            crate::unix_nanos()
        );
        request.clear();
        write!(
            request,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nwebhook-id: blast:{seq}:0\r\n\r\n{body}",
            args.path,
            args.target,
            body.len()
        )?;
        writer.write_all(&request)?;
        // Status line, headers, then the body by Content-Length.
        line.clear();
        reader.read_line(&mut line)?;
        let good = line.starts_with("HTTP/1.1 2");
        let status = line.trim().to_owned();
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut sink = vec![0u8; length];
        reader.read_exact(&mut sink)?;
        if !good {
            return Err(std::io::Error::other(format!("answered {status}")));
        }
        ok.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}
