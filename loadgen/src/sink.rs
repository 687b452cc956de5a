//! `loadgen sink`: a webhook receiver on plain threads (one per connection,
//! keep-alive HTTP/1.1). Answers 200, counts requests and events, and with
//! `--print` writes each body as a line on stdout (the demo's window).
//! Verification of sequences and latency histograms come with the loadgen issue.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Sink options.
pub struct SinkArgs {
    /// Address to listen on.
    pub listen: String,
    /// Print every body on stdout.
    pub print: bool,
}

#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
}

/// Runs until killed.
pub fn run(args: &SinkArgs) -> Result<(), String> {
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!("loadgen sink: listening on http://{}", args.listen);
    let counts = Arc::new(Counts::default());
    let out = Arc::new(Mutex::new(std::io::stdout()));
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let (counts, out, print) = (counts.clone(), out.clone(), args.print);
        std::thread::spawn(move || {
            let _ = serve(stream, &counts, print.then_some(&*out));
        });
    }
    Ok(())
}

fn serve(
    stream: TcpStream,
    counts: &Counts,
    print: Option<&Mutex<std::io::Stdout>>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut head = Vec::with_capacity(1024);
    let mut body = Vec::new();
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
        let (method, path, length) = match req.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                let length = req
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
                (
                    req.method.unwrap_or("").to_owned(),
                    req.path.unwrap_or("").to_owned(),
                    length,
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
            let report = format!(
                "{{\"requests\":{},\"events\":{},\"bytes\":{}}}",
                counts.requests.load(Ordering::Relaxed),
                counts.events.load(Ordering::Relaxed),
                counts.bytes.load(Ordering::Relaxed)
            );
            write!(writer, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{report}", report.len())?;
            continue;
        }
        counts.requests.fetch_add(1, Ordering::Relaxed);
        counts.bytes.fetch_add(length as u64, Ordering::Relaxed);
        // A batch is an array: count its top-level objects.
        let events = if body.first() == Some(&b'[') {
            top_level_objects(&body)
        } else {
            1
        };
        counts.events.fetch_add(events, Ordering::Relaxed);
        if let Some(out) = print {
            if let Ok(mut o) = out.lock() {
                let _ = o.write_all(&body);
                let _ = o.write_all(b"\n");
                let _ = o.flush();
            }
        }
        writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
    }
}

/// Counts `{` at depth 1 of a JSON array, skipping strings.
fn top_level_objects(json: &[u8]) -> u64 {
    let (mut depth, mut in_str, mut esc, mut n) = (0i32, false, false, 0u64);
    for &b in json {
        if in_str {
            match (esc, b) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                if depth == 1 && b == b'{' {
                    n += 1;
                }
                depth += 1;
            }
            b']' | b'}' => depth -= 1,
            _ => {}
        }
    }
    n
}
