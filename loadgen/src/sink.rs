//! `loadgen sink`: a webhook receiver on plain threads (one per keep-alive
//! connection). Each acknowledged body is parsed (simd-json); rows that carry
//! loadgen's `seq` / `sent_ns` columns are checked per table for loss and
//! duplication and per (table, key) for order, and their end-to-end latency (now −
//! sent_ns) goes into an HdrHistogram. Faults can be injected. `GET /report` and
//! exit (SIGTERM, SIGINT, `--exit-after`) give a JSON report; `--out PREFIX` also
//! writes PREFIX.json, PREFIX.hgrm (percentile distribution) and PREFIX.hdr (V2
//! compressed, base64).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use simd_json::prelude::*;

/// Sink options (also its command line).
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: String,
    /// Print every body on stdout.
    #[arg(long)]
    pub print: bool,
    /// Fraction of requests answered --status instead of 200 (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Status of injected failures.
    #[arg(long, default_value_t = 500)]
    pub status: u16,
    /// Delay before every answer (e.g. 5ms).
    #[arg(long, value_parser = crate::parse_duration, default_value = "0s")]
    pub delay: Duration,
    /// Fraction of requests whose connection is reset without an answer (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Close each connection after N answers.
    #[arg(long)]
    pub close_after: Option<u64>,
    /// Hold every answer for this long (a stalled receiver) ...
    #[arg(long, value_parser = crate::parse_duration, default_value = "0s")]
    pub stall_for: Duration,
    /// ... starting this long after the first request.
    #[arg(long, value_parser = crate::parse_duration, default_value = "0s")]
    pub stall_at: Duration,
    /// Print the report and exit after this long.
    #[arg(long, value_parser = crate::parse_duration)]
    pub exit_after: Option<Duration>,
    /// Also write PREFIX.json, PREFIX.hgrm and PREFIX.hdr at exit.
    #[arg(long, value_name = "PREFIX")]
    pub out: Option<String>,
    /// Rows per run the sink should see (lost = expected - verified).
    #[arg(long)]
    pub expect_rows: Option<u64>,
}

/// Highest seq checked (2^32 rows per table: 512 MiB of bitmap at most).
const MAX_SEQ: u64 = 1 << 32;

/// Sequence checking of one table.
#[derive(Default)]
struct TableCheck {
    /// Bit per seq seen.
    seen: Vec<u64>,
    distinct: u64,
    max_seq: u64,
    duplicates: u64,
    /// Last seq delivered per key.
    last: HashMap<u64, u64>,
    reorders: u64,
}

impl TableCheck {
    fn record(&mut self, key: u64, seq: u64) {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            // A redelivery is legal (at-least-once); only a first delivery that
            // comes after a later change of its key is a reorder.
            return;
        }
        self.seen[word] |= 1 << bit;
        self.distinct += 1;
        self.max_seq = self.max_seq.max(seq);
        let last = self.last.entry(key).or_insert(0);
        if seq < *last {
            self.reorders += 1;
        } else {
            *last = seq;
        }
    }
}

/// Everything the sink has seen.
struct State {
    requests: u64,
    answered_ok: u64,
    events: u64,
    bytes: u64,
    unverifiable: u64,
    tables: HashMap<String, TableCheck>,
    latency: Histogram<u64>,
}

struct Shared {
    args: SinkArgs,
    state: Mutex<State>,
    started: Instant,
    first_request: Mutex<Option<Instant>>,
    counter: AtomicU64,
    stop: AtomicBool,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h in nanoseconds, 3 digits: constant bounds.
    Histogram::new_with_bounds(1_000, 3_600_000_000_000, 3).unwrap_or_else(|_| unreachable!())
}

/// Runs until killed or `--exit-after`.
pub fn run(args: &SinkArgs) -> Result<(), String> {
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!("loadgen sink: listening on http://{}", args.listen);
    let shared = Arc::new(Shared {
        args: args.clone(),
        state: Mutex::new(State {
            requests: 0,
            answered_ok: 0,
            events: 0,
            bytes: 0,
            unverifiable: 0,
            tables: HashMap::new(),
            latency: histogram(),
        }),
        started: Instant::now(),
        first_request: Mutex::new(None),
        counter: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).map_err(|e| e.to_string())?;
    }
    {
        let shared = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
    }
    while !stop.load(Ordering::Relaxed)
        && shared
            .args
            .exit_after
            .is_none_or(|d| shared.started.elapsed() < d)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    shared.stop.store(true, Ordering::Relaxed);
    let report = report(&shared);
    println!("{report}");
    if let Some(prefix) = &shared.args.out {
        write_files(&shared, prefix, &report)?;
    }
    Ok(())
}

fn write_files(shared: &Shared, prefix: &str, report: &str) -> Result<(), String> {
    use base64::Engine as _;
    use hdrhistogram::serialization::Serializer as _;
    let h = lock(&shared.state).latency.clone();
    let io = |e: std::io::Error| format!("cannot write {prefix}.*: {e}");
    std::fs::write(format!("{prefix}.json"), report).map_err(io)?;
    std::fs::write(format!("{prefix}.hgrm"), percentile_distribution(&h)).map_err(io)?;
    let mut bytes = Vec::new();
    hdrhistogram::serialization::V2DeflateSerializer::new()
        .serialize(&h, &mut bytes)
        .map_err(|e| format!("cannot encode the histogram: {e:?}"))?;
    std::fs::write(
        format!("{prefix}.hdr"),
        base64::engine::general_purpose::STANDARD.encode(bytes),
    )
    .map_err(io)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// HdrHistogram's percentile distribution text, values in milliseconds.
fn percentile_distribution(h: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:14.2}", 1.0 / (1.0 - q))
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{:12.3} {:14.12} {:10} {inv}\n",
            v.value_iterated_to() as f64 / 1e6,
            q,
            v.count_since_last_iteration()
        ));
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n#[Buckets = {:12}, SubBuckets     = {:12}]\n",
        h.mean() / 1e6,
        h.stdev() / 1e6,
        h.max() as f64 / 1e6,
        h.len(),
        h.buckets(),
        h.distinct_values()
    ));
    out
}

/// The report as JSON.
fn report(shared: &Shared) -> String {
    let s = lock(&shared.state);
    let (mut distinct, mut dups, mut reorders, mut gaps) = (0u64, 0u64, 0u64, 0u64);
    let mut tables = Vec::new();
    let mut names: Vec<&String> = s.tables.keys().collect();
    names.sort();
    for name in names {
        let t = &s.tables[name];
        distinct += t.distinct;
        dups += t.duplicates;
        reorders += t.reorders;
        gaps += t.max_seq - t.distinct;
        tables.push(format!(
            "{{\"table\":\"{name}\",\"distinct\":{},\"max_seq\":{},\"gaps\":{},\"duplicates\":{},\"reorders\":{}}}",
            t.distinct,
            t.max_seq,
            t.max_seq - t.distinct,
            t.duplicates,
            t.reorders
        ));
    }
    // Gaps are rows missing below the highest seq seen; with --expect-rows the
    // missing tail counts too.
    let lost = match shared.args.expect_rows {
        Some(n) => n.saturating_sub(distinct),
        None => gaps,
    };
    let h = &s.latency;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e6;
    format!(
        "{{\"requests\":{},\"answered_2xx\":{},\"events\":{},\"bytes\":{},\"verified\":{distinct},\"lost\":{lost},\"duplicates\":{dups},\"reorders\":{reorders},\"unverifiable\":{},\
\"latency_ms\":{{\"count\":{},\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3}}},\"seconds\":{:.3},\"tables\":[{}]}}",
        s.requests,
        s.answered_ok,
        s.events,
        s.bytes,
        s.unverifiable,
        h.len(),
        ms(0.5),
        ms(0.9),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1e6,
        shared.started.elapsed().as_secs_f64(),
        tables.join(",")
    )
}

/// Records the rows of one acknowledged body.
fn verify(shared: &Shared, body: &mut [u8], now_ns: u64) -> u64 {
    let Ok(value) = simd_json::to_borrowed_value(body) else {
        lock(&shared.state).unverifiable += 1;
        return 0;
    };
    let items: Vec<&simd_json::BorrowedValue> = match value.as_array() {
        Some(a) => a.iter().collect(),
        None => vec![&value],
    };
    let mut s = lock(&shared.state);
    for item in &items {
        let row = item.get("new_data").or_else(|| item.get("data"));
        let table = item.get_str("table").unwrap_or("?");
        let fields =
            row.and_then(|r| Some((r.get_u64("id")?, r.get_u64("seq")?, r.get_u64("sent_ns")?)));
        match fields {
            // The bitmap grows with the seq; a body claiming an absurd one is not
            // from loadgen and must not make the sink allocate without bound.
            Some((key, seq, sent)) if seq <= MAX_SEQ => {
                if !s.tables.contains_key(table) {
                    s.tables.insert(table.to_owned(), TableCheck::default());
                }
                if let Some(t) = s.tables.get_mut(table) {
                    t.record(key, seq);
                }
                let _ = s.latency.record(now_ns.saturating_sub(sent).max(1_000));
            }
            _ => s.unverifiable += 1,
        }
    }
    s.events += items.len() as u64;
    items.len() as u64
}

/// What to do with one request.
enum Answer {
    Ok,
    Fail(u16),
    Reset,
}

fn decide(shared: &Shared) -> Answer {
    let a = &shared.args;
    let n = shared.counter.fetch_add(1, Ordering::Relaxed);
    // A cheap deterministic spread: the golden-ratio sequence mod 1.
    let u = ((n as f64) * 0.618_033_988_75).fract();
    if u < a.reset_rate {
        Answer::Reset
    } else if u < a.reset_rate + a.fail_rate {
        Answer::Fail(if a.status == 0 { 500 } else { a.status })
    } else {
        Answer::Ok
    }
}

fn stall(shared: &Shared) {
    let a = &shared.args;
    if a.stall_for.is_zero() {
        return;
    }
    let first = *lock(&shared.first_request).get_or_insert_with(Instant::now);
    let (from, to) = (first + a.stall_at, first + a.stall_at + a.stall_for);
    let now = Instant::now();
    if now >= from && now < to {
        std::thread::sleep(to - now);
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut head = Vec::with_capacity(1024);
    let mut body = Vec::new();
    let mut answered = 0u64;
    let out = std::io::stdout();
    loop {
        head.clear();
        loop {
            let before = head.len();
            if reader.read_until(b'\n', &mut head)? == 0 {
                return Ok(());
            }
            if &head[before..] == b"\r\n" {
                break;
            }
            if head.len() > 64 * 1024 {
                return writer.write_all(
                    b"HTTP/1.1 431 Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                );
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let (method, path, length, close) = match req.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let header = |name: &str| {
                    req.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                        .map(str::trim)
                };
                let length = header("content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let close = req.version == Some(0)
                    || header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
                (
                    req.method.unwrap_or("").to_owned(),
                    req.path.unwrap_or("").to_owned(),
                    length,
                    close,
                )
            }
            _ => {
                return writer.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                );
            }
        };
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
        if method == "GET" && path == "/report" {
            let report = report(shared);
            write!(writer, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{report}", report.len())?;
            if close {
                return Ok(());
            }
            continue;
        }
        {
            let mut s = lock(&shared.state);
            s.requests += 1;
            s.bytes += length as u64;
        }
        stall(shared);
        if !shared.args.delay.is_zero() {
            std::thread::sleep(shared.args.delay);
        }
        match decide(shared) {
            Answer::Reset => {
                // SO_LINGER 0: the close sends RST, as a crashing receiver would.
                let _ = set_linger_zero(&writer);
                return Ok(());
            }
            Answer::Fail(status) => {
                write!(
                    writer,
                    "HTTP/1.1 {status} Injected\r\nContent-Length: 8\r\n\r\ninjected"
                )?;
            }
            Answer::Ok => {
                if shared.args.print {
                    let mut o = out.lock();
                    let _ = o.write_all(&body);
                    let _ = o.write_all(b"\n");
                    let _ = o.flush();
                }
                // Verified before the answer: an acknowledged row is a delivered row.
                verify(shared, &mut body, crate::unix_nanos());
                lock(&shared.state).answered_ok += 1;
                writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
            }
        }
        answered += 1;
        if close
            || shared.args.close_after.is_some_and(|n| answered >= n)
            || shared.stop.load(Ordering::Relaxed)
        {
            return Ok(());
        }
    }
}

fn set_linger_zero(stream: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_check_counts_gaps_duplicates_and_reorders() {
        let mut t = TableCheck::default();
        for (key, seq) in [(1, 1), (2, 2), (1, 4), (1, 3), (2, 2), (3, 6)] {
            t.record(key, seq);
        }
        assert_eq!(t.distinct, 5);
        assert_eq!(t.max_seq, 6);
        assert_eq!(t.max_seq - t.distinct, 1, "seq 5 missing");
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.reorders, 1, "key 1: seq 3 after 4");
    }
}
