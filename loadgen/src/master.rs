//! `loadgen master`: a fake MySQL 8 primary. A generator thread writes the
//! synthetic traffic into binlog files at the paced rate; each replica connection
//! (a thread) logs in with any credentials, gets plausible answers to the start-up
//! queries, registers, and dumps from the position it asks for — following the
//! files as they grow, with heartbeats when idle, like a real primary.

use rowhook::mysql::handshake::put_lenenc as lenenc;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::binlog::{self, Encoder, Writer};
use crate::traffic::{Generator, Shape};

/// Options of `loadgen master`.
#[derive(Debug, Clone)]
pub struct MasterArgs {
    /// Address to listen on.
    pub listen: String,
    /// The traffic.
    pub shape: Shape,
    /// Where the binlog files go (a fresh temporary directory when unset).
    pub dir: Option<PathBuf>,
    /// Rotate after this many bytes.
    pub max_binlog_size: u64,
    /// The primary's server id.
    pub server_id: u32,
    /// Start generating at once instead of at the first dump.
    pub no_wait: bool,
}

/// The binlog as the generator leaves it: what dumps may read.
struct Log {
    dir: PathBuf,
    /// (current file index, its committed length).
    end: Mutex<(u32, u64)>,
    grown: Condvar,
    /// A replica started dumping.
    dumping: AtomicBool,
    /// The generator finished.
    finished: AtomicBool,
    /// Rows written.
    rows: AtomicU64,
    enc: Encoder,
}

impl Log {
    fn wait_grown(&self, seen: (u32, u64), timeout: Duration) -> (u32, u64) {
        let guard = self.end.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .grown
            .wait_timeout_while(guard, timeout, |end| *end == seen)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }

    fn current(&self) -> (u32, u64) {
        *self.end.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn files(&self) -> Vec<(String, u64)> {
        let (last, _) = self.current();
        (1..=last)
            .map(|i| {
                let name = binlog::file_name(i);
                let size = std::fs::metadata(self.dir.join(&name)).map_or(0, |m| m.len());
                (name, size)
            })
            .collect()
    }
}

/// Runs the primary until the traffic is done and every replica has hung up (or
/// forever without `--rows` / `--duration`).
pub fn run(args: &MasterArgs) -> Result<(), String> {
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("loadgen-master-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let enc = Encoder {
        server_id: args.server_id,
        row_bytes: args.shape.row_bytes,
    };
    let writer = Writer::create(&dir, enc.clone(), args.max_binlog_size)
        .map_err(|e| format!("cannot write binlogs in {}: {e}", dir.display()))?;
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!(
        "loadgen master: MySQL {} on {} (binlogs in {}), {} rows/s, {} row(s)/txn, {} table(s), {} keys, {} B rows",
        binlog::SERVER_VERSION,
        args.listen,
        dir.display(),
        args.shape.rate,
        args.shape.txn_rows,
        args.shape.tables,
        args.shape.keys,
        args.shape.row_bytes
    );
    let log = Arc::new(Log {
        end: Mutex::new((1, writer.position().1)),
        grown: Condvar::new(),
        dumping: AtomicBool::new(args.no_wait),
        finished: AtomicBool::new(false),
        rows: AtomicU64::new(0),
        dir,
        enc,
    });
    let generator = {
        let (log, shape) = (log.clone(), args.shape.clone());
        std::thread::spawn(move || generate(&log, writer, &shape))
    };
    let server_id = args.server_id;
    let accept_log = log.clone();
    std::thread::spawn(move || {
        let mut next_id = 1u32;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let log = accept_log.clone();
            next_id += 1;
            let id = next_id;
            std::thread::spawn(move || {
                if let Err(e) = Session::new(stream, log, id, server_id).serve() {
                    eprintln!("loadgen master: connection {id}: {e}");
                }
            });
        }
    });
    match generator.join() {
        Ok(Ok(report)) => {
            println!("{report}");
            // Replicas keep reading what was written; the primary stays up for them.
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the generator thread panicked".into()),
    }
}

/// Nanoseconds since the epoch.
fn now_ns() -> u64 {
    crate::unix_nanos()
}

/// Writes the traffic at the paced rate. Open loop: transaction n is due at
/// start + n·txn_rows/rate and carries that due time as `sent_ns`, so a late
/// generator shows up as latency instead of hiding it.
fn generate(log: &Log, mut writer: Writer, shape: &Shape) -> Result<String, String> {
    while !log.dumping.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut gen = Generator::new(shape);
    let mut txn = Vec::with_capacity(shape.txn_rows as usize);
    let started = Instant::now();
    let start_ns = now_ns();
    let mut worst_lag = Duration::ZERO;
    let mut bytes = 0u64;
    loop {
        let made = gen.made();
        let due = if shape.rate == 0 {
            started.elapsed()
        } else {
            Duration::from_nanos((made as u128 * 1_000_000_000 / u128::from(shape.rate)) as u64)
        };
        if shape.duration.is_some_and(|d| due >= d) || gen.done() {
            break;
        }
        let now = started.elapsed();
        if due > now {
            sleep_until(started + due);
        } else {
            worst_lag = worst_lag.max(now - due);
        }
        gen.transaction(&mut txn);
        if txn.is_empty() {
            break;
        }
        let sent = start_ns + due.as_nanos() as u64;
        bytes += writer
            .append(&txn, sent)
            .map_err(|e| format!("cannot write the binlog: {e}"))? as u64;
        log.rows.fetch_add(txn.len() as u64, Ordering::Relaxed);
        let (file, pos) = writer.position();
        let index = file
            .rsplit('.')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        *log.end.lock().unwrap_or_else(|p| p.into_inner()) = (index, pos);
        log.grown.notify_all();
    }
    log.finished.store(true, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    Ok(format!(
        "{{\"rows\":{},\"seconds\":{secs:.3},\"rows_per_s\":{:.0},\"binlog_bytes\":{bytes},\"worst_lag_ms\":{:.3}}}",
        gen.made(),
        gen.made() as f64 / secs.max(1e-9),
        worst_lag.as_secs_f64() * 1000.0
    ))
}

/// Sleeps until `at`: the OS sleep for most of it, then yields for the last bit
/// (timer slack would otherwise bunch transactions).
fn sleep_until(at: Instant) {
    loop {
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::thread::yield_now();
        }
    }
}

/// One replica connection.
struct Session {
    stream: TcpStream,
    log: Arc<Log>,
    id: u32,
    server_id: u32,
    seq: u8,
    heartbeat: Duration,
}

const MAX_PACKET: usize = 0xff_ffff;

impl Session {
    fn new(stream: TcpStream, log: Arc<Log>, id: u32, server_id: u32) -> Self {
        let _ = stream.set_nodelay(true);
        Session {
            stream,
            log,
            id,
            server_id,
            seq: 0,
            heartbeat: Duration::from_secs(30),
        }
    }

    /// Appends `payload` framed as packet(s) to `out`, prefixed with `lead` when
    /// given (the 0x00 of a binlog event packet).
    fn frame(&mut self, out: &mut Vec<u8>, lead: Option<u8>, payload: &[u8]) {
        // Payloads of 16 MiB - 1 and more continue in further packets.
        let total = payload.len() + usize::from(lead.is_some());
        let mut data = lead.into_iter().chain(payload.iter().copied());
        let mut left = total;
        loop {
            let n = left.min(MAX_PACKET);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
            out.push(self.seq);
            self.seq = self.seq.wrapping_add(1);
            out.extend(data.by_ref().take(n));
            left -= n;
            if n < MAX_PACKET {
                return;
            }
        }
    }

    fn write_packet(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 8);
        self.frame(&mut out, None, payload);
        self.stream.write_all(&out)
    }

    fn read_packet(&mut self) -> std::io::Result<Vec<u8>> {
        let mut payload = Vec::new();
        loop {
            let mut head = [0u8; 4];
            self.stream.read_exact(&mut head)?;
            let len = usize::from(head[0]) | usize::from(head[1]) << 8 | usize::from(head[2]) << 16;
            self.seq = head[3].wrapping_add(1);
            let start = payload.len();
            payload.resize(start + len, 0);
            self.stream.read_exact(&mut payload[start..])?;
            if len < MAX_PACKET {
                return Ok(payload);
            }
        }
    }

    fn ok(&mut self) -> std::io::Result<()> {
        self.write_packet(&[0, 0, 0, 2, 0, 0, 0])
    }

    fn err(&mut self, code: u16, message: &str) -> std::io::Result<()> {
        let mut p = vec![0xff];
        p.extend_from_slice(&code.to_le_bytes());
        p.extend_from_slice(b"#HY000");
        p.extend_from_slice(message.as_bytes());
        self.write_packet(&p)
    }

    fn greet(&mut self) -> std::io::Result<()> {
        let nonce: Vec<u8> = (0..20u8)
            .map(|i| b'a' + (i * 7 + self.id as u8) % 26)
            .collect();
        let caps: u32 = 0x1 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x8_0000 | 0x20_0000;
        let mut p = vec![10];
        p.extend_from_slice(binlog::SERVER_VERSION.as_bytes());
        p.push(0);
        p.extend_from_slice(&self.id.to_le_bytes());
        p.extend_from_slice(&nonce[..8]);
        p.push(0);
        p.extend_from_slice(&(caps as u16).to_le_bytes());
        p.push(255);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(&nonce[8..]);
        p.push(0);
        p.extend_from_slice(b"mysql_native_password\0");
        self.seq = 0;
        self.write_packet(&p)
    }

    fn serve(mut self) -> std::io::Result<()> {
        self.greet()?;
        // Any user and password are welcome: the response is read and accepted.
        let _login = match self.read_packet() {
            Ok(p) => p,
            // A client that hangs up after the greeting (a port probe) is no error.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        self.ok()?;
        loop {
            let packet = match self.read_packet() {
                Ok(p) => p,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            };
            match packet.first() {
                Some(0x01) => return Ok(()),
                Some(0x03) => {
                    let sql = String::from_utf8_lossy(&packet[1..]).into_owned();
                    self.query(&sql)?;
                }
                Some(0x0e) | Some(0x15) => self.ok()?,
                Some(0x12) => return self.dump(&packet[1..]),
                Some(c) => self.err(
                    1047,
                    &format!("loadgen master: command 0x{c:02x} not supported"),
                )?,
                None => self.err(1047, "empty command")?,
            }
        }
    }

    fn result_set(&mut self, columns: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
        let mut count = Vec::new();
        lenenc(&mut count, columns.len() as u64);
        self.write_packet(&count)?;
        for name in columns {
            let mut def = Vec::new();
            for s in ["def", "", "", "", name, name] {
                lenenc(&mut def, s.len() as u64);
                def.extend_from_slice(s.as_bytes());
            }
            def.push(0x0c);
            def.extend_from_slice(&255u16.to_le_bytes());
            def.extend_from_slice(&1024u32.to_le_bytes());
            def.push(253); // VAR_STRING
            def.extend_from_slice(&[0, 0, 0, 0, 0]);
            self.write_packet(&def)?;
        }
        self.write_packet(&[0xfe, 0, 0, 2, 0])?;
        for row in rows {
            let mut p = Vec::new();
            for v in row {
                lenenc(&mut p, v.len() as u64);
                p.extend_from_slice(v.as_bytes());
            }
            self.write_packet(&p)?;
        }
        self.write_packet(&[0xfe, 0, 0, 2, 0])
    }

    fn query(&mut self, sql: &str) -> std::io::Result<()> {
        let lower = sql.trim().to_ascii_lowercase();
        if let Some(var) = lower.strip_prefix("select @@global.") {
            let value = match var.trim() {
                "log_bin" => "1".to_owned(),
                "binlog_format" => "ROW".to_owned(),
                "binlog_row_image" | "binlog_row_metadata" => "FULL".to_owned(),
                "binlog_checksum" => "CRC32".to_owned(),
                "server_id" => self.server_id.to_string(),
                "server_uuid" => format!("10ad9e00-0000-4000-8000-{:012x}", self.server_id),
                "gtid_mode" => "OFF".to_owned(),
                other => return self.err(1193, &format!("Unknown system variable '{other}'")),
            };
            return self.result_set(&[&format!("@@GLOBAL.{var}")], &[vec![value]]);
        }
        if lower.starts_with("set ") {
            if let Some(v) = lower.strip_prefix("set @master_heartbeat_period = ") {
                if let Ok(nanos) = v.trim().parse::<u64>() {
                    if nanos > 0 {
                        self.heartbeat = Duration::from_nanos(nanos);
                    }
                }
            }
            return self.ok();
        }
        if lower == "show master status" || lower == "show binary log status" {
            let (index, pos) = self.log.current();
            let row = vec![
                binlog::file_name(index),
                pos.to_string(),
                String::new(),
                String::new(),
                String::new(),
            ];
            return self.result_set(
                &[
                    "File",
                    "Position",
                    "Binlog_Do_DB",
                    "Binlog_Ignore_DB",
                    "Executed_Gtid_Set",
                ],
                &[row],
            );
        }
        if lower == "show binary logs" {
            let rows: Vec<Vec<String>> = self
                .log
                .files()
                .into_iter()
                .map(|(name, size)| vec![name, size.to_string(), "No".to_owned()])
                .collect();
            return self.result_set(&["Log_name", "File_size", "Encrypted"], &rows);
        }
        if lower == "select 1" || lower.starts_with("select version()") {
            return self.result_set(&["1"], &[vec![binlog::SERVER_VERSION.to_owned()]]);
        }
        self.err(
            1105,
            &format!("loadgen master does not answer this query: {sql}"),
        )
    }

    /// COM_BINLOG_DUMP: fake ROTATE, the file's FDE, then events from `pos` on,
    /// following the files; heartbeats when nothing comes.
    fn dump(&mut self, args: &[u8]) -> std::io::Result<()> {
        let pos = args.get(..4).map_or(4, |b| {
            u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        });
        let name = String::from_utf8_lossy(args.get(10..).unwrap_or_default()).into_owned();
        let index: u32 = name
            .rsplit('.')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let path = self.log.dir.join(&name);
        if index == 0 || !path.exists() || index > self.log.current().0 {
            return self.err(
                1236,
                &format!("Could not find first log file name in binary log index file ({name})"),
            );
        }
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        if pos < 4 || pos > size {
            return self.err(1236, &format!("Client requested master to start replication from position > file size ({name}:{pos})"));
        }
        self.log.dumping.store(true, Ordering::Relaxed);
        let enc = self.log.enc.clone();
        let mut out = Vec::with_capacity(1 << 16);
        let mut fake = Vec::new();
        enc.rotate(&mut fake, None, &name, pos);
        self.frame(&mut out, Some(0), &fake);
        let (mut index, mut file, mut at) = (index, open(&self.log.dir, index)?, pos);
        // The file's own FDE first; from a later position a copy marked (log_pos 0)
        // as not advancing the replica's position.
        if pos > 4 {
            let mut marked = Vec::new();
            enc.format_description(&mut marked, 0, None);
            self.frame(&mut out, Some(0), &marked);
        } else {
            let fde = read_event_at(&file, 4)?;
            self.frame(&mut out, Some(0), &fde);
            at = 4 + fde.len() as u64;
        }
        self.stream.write_all(&out)?;
        let mut last_sent = Instant::now();
        let mut buf = Vec::new();
        loop {
            let (end_index, end_pos) = self.log.current();
            let limit = if index < end_index {
                file.metadata()?.len()
            } else {
                end_pos
            };
            if at < limit {
                // Everything committed since the last look, in one read and one write.
                buf.resize((limit - at).min(READ_CHUNK) as usize, 0);
                std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, at)?;
                out.clear();
                let mut off = 0;
                let mut rotated = false;
                while let Some(size) = event_size(&buf[off..]) {
                    let event = &buf[off..off + size];
                    self.frame(&mut out, Some(0), event);
                    off += size;
                    if event[4] == binlog::kind::ROTATE {
                        rotated = true;
                        break;
                    }
                }
                if off == 0 {
                    // One event larger than the chunk.
                    let event = read_event_at(&file, at)?;
                    rotated = event[4] == binlog::kind::ROTATE;
                    self.frame(&mut out, Some(0), &event);
                    off = event.len();
                }
                self.stream.write_all(&out)?;
                last_sent = Instant::now();
                at += off as u64;
                if rotated {
                    index += 1;
                    file = open(&self.log.dir, index)?;
                    at = 4;
                }
                continue;
            }
            let wait = self.heartbeat.saturating_sub(last_sent.elapsed());
            if wait.is_zero() {
                let mut hb = Vec::new();
                enc.heartbeat(&mut hb, &binlog::file_name(index), at);
                out.clear();
                self.frame(&mut out, Some(0), &hb);
                self.stream.write_all(&out)?;
                last_sent = Instant::now();
                continue;
            }
            self.log.wait_grown((end_index, end_pos), wait);
        }
    }
}

/// Bytes of binlog read per look.
const READ_CHUNK: u64 = 1 << 20;

/// Size of the complete event at the start of `buf`, if it is all there.
fn event_size(buf: &[u8]) -> Option<usize> {
    let size = u32::from_le_bytes(buf.get(9..13)?.try_into().ok()?) as usize;
    (size >= 19 && size <= buf.len()).then_some(size)
}

fn open(dir: &Path, index: u32) -> std::io::Result<std::fs::File> {
    std::fs::File::open(dir.join(binlog::file_name(index)))
}

/// Reads the whole event starting at `at`.
fn read_event_at(file: &std::fs::File, at: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 19];
    file.read_exact_at(&mut head, at)?;
    let size = u32::from_le_bytes([head[9], head[10], head[11], head[12]]) as usize;
    if size < 19 {
        return Err(std::io::Error::other(format!(
            "bad event size {size} at {at}"
        )));
    }
    let mut event = vec![0u8; size];
    event[..19].copy_from_slice(&head);
    file.read_exact_at(&mut event[19..], at + 19)?;
    Ok(event)
}
