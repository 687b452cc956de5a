//! `loadgen blast --rate N`: a bare webhook's latency. One thread drives every keep-alive
//! connection (as a rowhook shard does), sends request i when it is due
//! (i / rate seconds in) on connection i mod connections, and stamps the body with
//! that due time. A connection still waiting for its previous answer sends the
//! request as soon as the answer comes, with the old stamp, as a rowhook lane
//! would. The sink's latency is then what a bare webhook costs at that rate on
//! this machine, with nothing decoding binlogs in between.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::blast::BlastArgs;

/// How long connections running late get to catch up after the schedule ends:
/// their late requests are the latency being measured.
const GRACE: Duration = Duration::from_secs(10);

/// The largest answer head or body read: a receiver sending more is broken, and
/// the connection is replaced rather than buffering without bound.
const MAX_ANSWER: usize = 64 * 1024;

/// One keep-alive connection with at most one request in flight.
struct Conn {
    stream: TcpStream,
    table: String,
    seq: u64,
    /// Due times (ns since the epoch) of requests waiting for this connection.
    backlog: VecDeque<u64>,
    busy: bool,
    input: Vec<u8>,
}

impl Conn {
    fn open(target: &str, table: String) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(target)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            table,
            seq: 0,
            backlog: VecDeque::new(),
            busy: false,
            input: Vec::with_capacity(4096),
        })
    }

    /// Replaces a broken connection, keeping the table's sequence and backlog; the
    /// request in flight is lost (the sink reports it as a gap).
    fn reopen(&mut self, target: &str) -> Result<(), String> {
        let mut fresh = Conn::open(target, self.table.clone())
            .map_err(|e| format!("cannot reconnect to {target}: {e}"))?;
        fresh.seq = self.seq;
        fresh.backlog = std::mem::take(&mut self.backlog);
        *self = fresh;
        Ok(())
    }

    /// Sends the oldest waiting request if the connection is free; returns its
    /// due time when it sent one.
    fn send_next(&mut self, args: &BlastArgs, payload: &str) -> std::io::Result<Option<u64>> {
        if self.busy {
            return Ok(None);
        }
        let Some(sent_ns) = self.backlog.pop_front() else {
            return Ok(None);
        };
        self.seq += 1;
        let (seq, table) = (self.seq, &self.table);
        let body = format!(
            r#"{{"id":"bare:{seq}:0","primary_id":{seq},"event":"insert","database":"loadgen","table":"{table}","data":{{"id":{seq},"seq":{seq},"sent_ns":{sent_ns},"payload":"{payload}"}},"timestamp":"2026-01-01T00:00:00Z"}}"#
        );
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nwebhook-id: bare:{seq}:0\r\n\r\n{body}",
            args.path,
            args.target,
            body.len()
        );
        self.stream.write_all(request.as_bytes())?;
        self.busy = true;
        Ok(Some(sent_ns))
    }

    /// Reads what arrived; true when it completed an answer, which must be 2xx.
    fn receive(&mut self) -> std::io::Result<bool> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.input.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut answer = httparse::Response::new(&mut headers);
        let head = match answer.parse(&self.input) {
            Ok(httparse::Status::Complete(head)) => head,
            Ok(httparse::Status::Partial) if self.input.len() <= MAX_ANSWER => return Ok(false),
            Ok(httparse::Status::Partial) => {
                return Err(std::io::Error::other("answer head over 64 KiB"))
            }
            Err(e) => return Err(std::io::Error::other(format!("bad answer: {e}"))),
        };
        let length = answer
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
        if length > MAX_ANSWER {
            return Err(std::io::Error::other(format!(
                "answer body of {length} bytes"
            )));
        }
        if self.input.len() < head + length {
            return Ok(false);
        }
        let status = answer.code.unwrap_or(0);
        self.input.drain(..head + length);
        self.busy = false;
        if (200..300).contains(&status) {
            Ok(true)
        } else {
            Err(std::io::Error::other(format!("answered {status}")))
        }
    }
}

/// Runs the paced blast and prints the JSON result.
pub fn run(args: &BlastArgs) -> Result<(), String> {
    crate::precise_timers();
    let count = args.connections.max(1);
    let mut conns = (0..count)
        .map(|c| Conn::open(&args.target, format!("bare{c}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot connect to {}: {e}", args.target))?;
    let payload = "p".repeat(args.row_bytes);
    let rate = u128::from(args.rate.max(1));
    let due = |i: u64| Duration::from_nanos((u128::from(i) * 1_000_000_000 / rate) as u64);
    let started = Instant::now();
    let started_ns = crate::unix_nanos();
    let (mut next, mut ok, mut failed) = (0u64, 0u64, 0u64);
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(count);
    // How late each request was written (µs): its wait for the timer, for the
    // connection's previous answer, and for this thread to get a CPU.
    let mut lag = crate::lag_histogram()?;
    loop {
        let now = started.elapsed();
        while due(next) <= now && due(next) < args.duration {
            let at = due(next);
            let c = (next % count as u64) as usize;
            if let Some(conn) = conns.get_mut(c) {
                conn.backlog.push_back(started_ns + at.as_nanos() as u64);
            }
            next += 1;
        }
        for conn in conns.iter_mut() {
            match conn.send_next(args, &payload) {
                Ok(None) => {}
                Ok(Some(due_ns)) => {
                    let late = crate::unix_nanos().saturating_sub(due_ns) / 1000;
                    lag.saturating_record(late);
                }
                Err(_) => {
                    failed += 1;
                    conn.reopen(&args.target)?;
                }
            }
        }
        let scheduling = due(next) < args.duration;
        let idle = conns.iter().all(|c| !c.busy && c.backlog.is_empty());
        if (!scheduling && idle) || now > args.duration + GRACE {
            break;
        }
        fds.clear();
        fds.extend(conns.iter().map(|c| libc::pollfd {
            fd: c.stream.as_raw_fd(),
            events: if c.busy { libc::POLLIN } else { 0 },
            revents: 0,
        }));
        let wait = if scheduling {
            due(next).saturating_sub(started.elapsed())
        } else {
            Duration::from_millis(10)
        };
        let timeout = libc::timespec {
            tv_sec: wait.as_secs() as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `fds` is a live, initialised array of `fds.len()` pollfds and
        // `timeout` outlives the call; no signal mask is passed.
        let ready = unsafe {
            libc::ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                &timeout,
                std::ptr::null(),
            )
        };
        if ready <= 0 {
            continue;
        }
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let Some(conn) = conns.get_mut(i) else {
                continue;
            };
            match conn.receive() {
                Ok(true) => ok += 1,
                Ok(false) => {}
                Err(_) => {
                    failed += 1;
                    conn.reopen(&args.target)?;
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{{\"requests\":{ok},\"seconds\":{secs:.3},\"requests_per_s\":{:.0},\"rate\":{},\"connections\":{count},\"connection_failures\":{failed},\"lag_p50_ms\":{:.3},\"lag_p99_ms\":{:.3},\"worst_lag_ms\":{:.3}}}",
        ok as f64 / secs.max(1e-9),
        args.rate,
        lag.value_at_quantile(0.5) as f64 / 1000.0,
        lag.value_at_quantile(0.99) as f64 / 1000.0,
        lag.max() as f64 / 1000.0
    );
    Ok(())
}
