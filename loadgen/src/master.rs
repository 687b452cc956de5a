//! `loadgen master`: a fake MySQL 8 primary. A generator thread writes the
//! synthetic traffic into binlog files at the paced rate; each replica connection
//! (a thread) logs in, gets plausible answers to the start-up queries, registers,
//! and dumps from the position (or, `--flavor mysql8`, the GTID set) it asks for —
//! following the files as they grow, with heartbeats when idle, like a real primary.
//!
//! `--flavor basic` accepts any credentials with mysql_native_password and writes
//! no GTIDs. `--flavor mysql8` speaks as MySQL 8.0 does by default:
//! caching_sha2_password (fast path for a cached password, full authentication
//! over TLS or with the RSA key exchange otherwise), GTIDs, a JSON column, and with
//! `--compress` zstd-compressed transactions.

use rowhook::mysql::handshake::put_lenenc as lenenc;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::auth::{Auth, Stream};
use crate::binlog::{self, Encoder, Writer};
use crate::traffic::{Generator, Shape};

/// Options of `loadgen master`.
#[derive(Clone)]
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
    /// MySQL 8 features (GTIDs, JSON column, compression); `None` = basic.
    pub mysql8: Option<binlog::Mysql8>,
    /// How replicas log in.
    pub auth: Option<Arc<Auth>>,
}

/// The binlog as the generator leaves it: what dumps may read.
struct Log {
    dir: PathBuf,
    /// (current file index, its committed length, transactions written).
    end: Mutex<(u32, u64, u64)>,
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
    fn wait_grown(&self, seen: (u32, u64, u64), timeout: Duration) -> (u32, u64, u64) {
        let guard = self.end.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .grown
            .wait_timeout_while(guard, timeout, |end| *end == seen)
            .unwrap_or_else(|p| p.into_inner());
        *guard
    }

    fn current(&self) -> (u32, u64, u64) {
        *self.end.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn files(&self) -> Vec<(String, u64)> {
        let (last, _, _) = self.current();
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
        mysql8: args.mysql8.clone(),
    };
    let writer = Writer::create(&dir, enc.clone(), args.max_binlog_size)
        .map_err(|e| format!("cannot write binlogs in {}: {e}", dir.display()))?;
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!(
        "loadgen master: MySQL {} ({}) on {} (binlogs in {}), {} rows/s, {} row(s)/txn, {} table(s), {} keys, {} B rows",
        binlog::SERVER_VERSION,
        match (&args.mysql8, &args.auth) {
            (Some(m), _) => format!(
                "mysql8: caching_sha2_password, GTIDs from {}{}",
                binlog::uuid_text(&m.source),
                if m.compress { ", compressed transactions" } else { "" }
            ),
            (None, _) => "basic: mysql_native_password, no GTIDs".into(),
        },
        args.listen,
        dir.display(),
        args.shape.rate,
        args.shape.txn_rows,
        args.shape.tables,
        args.shape.keys,
        args.shape.row_bytes
    );
    let log = Arc::new(Log {
        end: Mutex::new((1, writer.position().1, 0)),
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
    let (auth, gtids) = (args.auth.clone(), args.mysql8.as_ref().map(|m| m.source));
    std::thread::spawn(move || {
        let mut next_id = 1u32;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let log = accept_log.clone();
            next_id += 1;
            let id = next_id;
            let auth = auth.clone();
            std::thread::spawn(move || {
                let session = Session::new(stream, log, id, server_id, auth, gtids);
                if let Err(e) = session.serve() {
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

/// The primary's `server_uuid`, derived from its server id.
pub fn server_uuid(server_id: u32) -> String {
    format!("10ad9e00-0000-4000-8000-{server_id:012x}")
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
    crate::precise_timers();
    let mut gen = Generator::new(shape);
    let mut txn = Vec::with_capacity(shape.txn_rows as usize);
    let started = Instant::now();
    let start_ns = now_ns();
    // How late each transaction reached the dump threads (µs): the part of the
    // sink's latency that is the generator's own.
    let mut lag = crate::lag_histogram()?;
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
        crate::sleep_until(started + due);
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
        *log.end.lock().unwrap_or_else(|p| p.into_inner()) = (index, pos, writer.transactions());
        log.grown.notify_all();
        let late = started.elapsed().saturating_sub(due);
        lag.saturating_record(u64::try_from(late.as_micros()).unwrap_or(u64::MAX));
    }
    log.finished.store(true, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    Ok(format!(
        "{{\"rows\":{},\"seconds\":{secs:.3},\"rows_per_s\":{:.0},\"binlog_bytes\":{bytes},\"lag_p50_ms\":{:.3},\"lag_p99_ms\":{:.3},\"worst_lag_ms\":{:.3}}}",
        gen.made(),
        gen.made() as f64 / secs.max(1e-9),
        lag.value_at_quantile(0.5) as f64 / 1000.0,
        lag.value_at_quantile(0.99) as f64 / 1000.0,
        lag.max() as f64 / 1000.0
    ))
}

/// One replica connection.
struct Session {
    stream: Stream,
    log: Arc<Log>,
    id: u32,
    server_id: u32,
    seq: u8,
    heartbeat: Duration,
    /// `None`: any login is accepted with mysql_native_password.
    auth: Option<Arc<Auth>>,
    /// The source UUID of the GTIDs written (`--flavor mysql8`).
    gtids: Option<[u8; 16]>,
}

const MAX_PACKET: usize = 0xff_ffff;

impl Session {
    fn new(
        stream: TcpStream,
        log: Arc<Log>,
        id: u32,
        server_id: u32,
        auth: Option<Arc<Auth>>,
        gtids: Option<[u8; 16]>,
    ) -> Self {
        let _ = stream.set_nodelay(true);
        Session {
            stream: Stream::Plain(stream),
            log,
            id,
            server_id,
            seq: 0,
            heartbeat: Duration::from_secs(30),
            auth,
            gtids,
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

    fn greet(&mut self, nonce: &[u8]) -> std::io::Result<()> {
        let mut caps: u32 = 0x1 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x8_0000 | 0x20_0000;
        if self.auth.as_ref().is_some_and(|a| a.tls.is_some()) {
            caps |= crate::auth::CLIENT_SSL;
        }
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
        let plugin: &[u8] = if self.auth.is_some() {
            b"caching_sha2_password\0"
        } else {
            b"mysql_native_password\0"
        };
        p.extend_from_slice(plugin);
        self.seq = 0;
        self.write_packet(&p)
    }

    /// Greets, logs the client in, and answers commands until it leaves or dumps.
    fn serve(mut self) -> std::io::Result<()> {
        let nonce = crate::auth::nonce(self.id);
        self.greet(&nonce)?;
        let mut login = match self.read_packet() {
            Ok(p) => p,
            // A client that hangs up after the greeting (a port probe) is no error.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        match self.auth.clone() {
            // Any user and password are welcome: the response is read and accepted.
            None => self.ok()?,
            Some(auth) => {
                if crate::auth::is_ssl_request(&login) {
                    let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone)
                    else {
                        return Err(std::io::Error::other("TLS requested twice"));
                    };
                    self.stream = auth.accept_tls(tcp)?;
                    login = self.read_packet()?;
                }
                match auth.login(&mut self, &login, &nonce)? {
                    Ok(how) => {
                        eprintln!("loadgen master: connection {}: {how}", self.id);
                        self.ok()?;
                    }
                    Err((code, message)) => {
                        eprintln!("loadgen master: connection {}: {message}", self.id);
                        return self.err(code, &message);
                    }
                }
            }
        }
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
                Some(0x1e) if self.gtids.is_some() => return self.dump_gtid(&packet[1..]),
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
                "server_uuid" => server_uuid(self.server_id),
                "gtid_mode" if self.gtids.is_some() => "ON".to_owned(),
                "gtid_mode" => "OFF".to_owned(),
                "gtid_executed" => self.executed(self.log.current().2),
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
            let (index, pos, gno) = self.log.current();
            let row = vec![
                binlog::file_name(index),
                pos.to_string(),
                String::new(),
                String::new(),
                self.executed(gno),
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

    /// `source_uuid:1-gno`, or empty before the first transaction (or without GTIDs).
    fn executed(&self, gno: u64) -> String {
        match self.gtids {
            Some(u) if gno > 0 => format!("{}:1-{gno}", binlog::uuid_text(&u)),
            _ => String::new(),
        }
    }

    /// COM_BINLOG_DUMP: from a file and position.
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
        self.stream_from(index, pos, None)
    }

    /// COM_BINLOG_DUMP_GTID: everything the replica's GTID set lacks. Streams from
    /// the newest file whose PREVIOUS_GTIDS the set covers, skipping transactions
    /// already in the set, as MySQL does.
    fn dump_gtid(&mut self, args: &[u8]) -> std::io::Result<()> {
        let Some(source) = self.gtids else {
            return self.err(1236, "this primary has no GTIDs");
        };
        let Some(sids) = crate::auth::parse_dump_gtid(args) else {
            return self.err(1236, "malformed COM_BINLOG_DUMP_GTID");
        };
        let have: Vec<(u64, u64)> = sids
            .into_iter()
            .filter(|(u, _)| *u == source)
            .flat_map(|(_, i)| i)
            .collect();
        let written = self.log.current().2;
        if have.iter().any(|&(_, end)| end > written + 1) {
            return self.err(1236, &format!(
                "Slave has more GTIDs than the master has, using the master's SERVER_UUID ({}:1-{written} here)",
                binlog::uuid_text(&source)
            ));
        }
        // 1..=prefix is all in the set.
        let mut prefix = 0;
        while let Some(&(_, end)) = have
            .iter()
            .find(|&&(s, e)| s <= prefix + 1 && e > prefix + 1)
        {
            prefix = end - 1;
        }
        let last = self.log.current().0;
        let mut index = 1;
        for i in (1..=last).rev() {
            if previous_gtids(&open(&self.log.dir, i)?)? <= prefix {
                index = i;
                break;
            }
        }
        eprintln!(
            "loadgen master: connection {}: GTID dump, replica has {}:1-{prefix}; from {}",
            self.id,
            binlog::uuid_text(&source),
            binlog::file_name(index)
        );
        self.stream_from(index, 4, Some(have))
    }

    /// Fake ROTATE, the file's FDE, then events from `pos` on, following the files;
    /// heartbeats when nothing comes. With `skip`, transactions whose GTID number
    /// lies in one of its [start, end) ranges are left out.
    fn stream_from(
        &mut self,
        index: u32,
        pos: u64,
        skip: Option<Vec<(u64, u64)>>,
    ) -> std::io::Result<()> {
        let name = binlog::file_name(index);
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
            // As MySQL does: the file's own FDE (its timestamp tells when the file
            // was created) with log_pos 0.
            let fde = read_event_at(&file, 4)?;
            let created = fde
                .get(..4)
                .map_or(0, |t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]));
            let mut marked = Vec::new();
            enc.format_description(&mut marked, created, None);
            self.frame(&mut out, Some(0), &marked);
        } else {
            let fde = read_event_at(&file, 4)?;
            self.frame(&mut out, Some(0), &fde);
            at = 4 + fde.len() as u64;
        }
        self.stream.write_all(&out)?;
        let mut last_sent = Instant::now();
        let mut buf = Vec::new();
        let mut skipping = false;
        loop {
            let (end_index, end_pos, end_gno) = self.log.current();
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
                    off += size;
                    if let Some(have) = &skip {
                        if event[4] == binlog::kind::GTID {
                            let gno = event
                                .get(19 + 17..19 + 25)
                                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
                            skipping = have.iter().any(|&(s, e)| s <= gno && gno < e);
                        }
                        if skipping {
                            if matches!(
                                event[4],
                                binlog::kind::XID | binlog::kind::TRANSACTION_PAYLOAD
                            ) {
                                skipping = false;
                            }
                            continue;
                        }
                    }
                    self.frame(&mut out, Some(0), event);
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
            self.log.wait_grown((end_index, end_pos, end_gno), wait);
        }
    }
}

/// The last GTID number before a file (its PREVIOUS_GTIDS), 0 when it has none.
fn previous_gtids(file: &std::fs::File) -> std::io::Result<u64> {
    let fde = read_event_at(file, 4)?;
    let event = read_event_at(file, 4 + fde.len() as u64)?;
    if event[4] != binlog::kind::PREVIOUS_GTIDS {
        return Ok(0);
    }
    // n_sids, then uuid, n_intervals, start, end (exclusive) of our one interval.
    Ok(event
        .get(19 + 8 + 16 + 8 + 8..19 + 8 + 16 + 8 + 16)
        .map_or(0, |b| {
            u64::from_le_bytes(b.try_into().unwrap_or([0; 8])).saturating_sub(1)
        }))
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

impl crate::auth::Packets for Session {
    fn read(&mut self) -> std::io::Result<Vec<u8>> {
        self.read_packet()
    }

    fn write(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.write_packet(payload)
    }

    fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }
}
