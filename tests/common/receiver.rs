//! A real webhook receiver on loopback for tests: plain threads, keep-alive HTTP/1.1,
//! every request recorded, and a per-request behaviour that can answer any status,
//! delay, reset, close idle connections, send chunked or oversized bodies.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// Request path.
    pub path: String,
    /// Header (lower-cased name, value) pairs.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// When it was fully read.
    pub at: Instant,
    /// Which connection (accept order) carried it.
    pub conn: usize,
    /// 1-based ordinal over all requests.
    pub n: usize,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// How to answer one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status with an empty body.
    Status(u16),
    /// A status, extra headers, a body (Content-Length).
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// A status with a chunked body of these chunks.
    Chunked(u16, Vec<Vec<u8>>),
    /// 200 with a body of this many bytes.
    Oversized(usize),
    /// Answer, then close the connection without saying so (an idle-timeout close).
    ThenClose(Box<Reply>),
    /// Answer with `Connection: close` and close.
    Close(u16),
    /// Reset the connection without answering.
    Reset,
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
    /// These exact bytes.
    Raw(Vec<u8>),
}

type Behaviour = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

struct Shared {
    requests: Mutex<Vec<Request>>,
    behaviour: Mutex<Behaviour>,
    count: AtomicUsize,
    conns: AtomicUsize,
    stop: AtomicBool,
}

/// A running receiver; stops accepting when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Starts a receiver answering each request with `behaviour`.
    pub fn start(behaviour: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Receiver {
        Self::start_inner(None, behaviour)
    }

    /// Starts an HTTPS receiver with the certificate chain and key (PEM files).
    pub fn start_tls(
        cert: &std::path::Path,
        key: &std::path::Path,
        behaviour: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Self::start_inner(Some(Arc::new(config)), behaviour)
    }

    fn start_inner(
        tls: Option<Arc<rustls::ServerConfig>>,
        behaviour: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            behaviour: Mutex::new(Arc::new(behaviour)),
            count: AtomicUsize::new(0),
            conns: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let conn = s.conns.fetch_add(1, Ordering::Relaxed);
                let s = s.clone();
                let tls = tls.clone();
                std::thread::spawn(move || {
                    let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
                    match tls {
                        None => serve(stream, fd, conn, &s),
                        Some(cfg) => {
                            let Ok(session) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            serve(rustls::StreamOwned::new(session, stream), fd, conn, &s)
                        }
                    }
                });
            }
        });
        Receiver { addr, shared }
    }

    /// Always 200.
    pub fn ok() -> Receiver {
        Receiver::start(|_| Reply::Status(200))
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Replaces the behaviour for requests from now on.
    pub fn set(&self, behaviour: impl Fn(&Request) -> Reply + Send + Sync + 'static) {
        *self.shared.behaviour.lock().unwrap() = Arc::new(behaviour);
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests from the `from`-th on, in arrival order (copies only those):
    /// a test that polls while thousands arrive must not hold the lock the
    /// receiving threads need for a scan of all of them.
    pub fn requests_since(&self, from: usize) -> Vec<Request> {
        let all = self.shared.requests.lock().unwrap();
        all.get(from..).map(<[Request]>::to_vec).unwrap_or_default()
    }

    /// Whether some request satisfies `f` (without copying them all).
    pub fn any(&self, f: impl Fn(&Request) -> bool) -> bool {
        self.shared.requests.lock().unwrap().iter().rev().any(f)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.conns.load(Ordering::Relaxed)
    }

    /// Waits until `done` holds for the requests so far (or panics after `timeout`).
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&[Request]) -> bool) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.requests();
            if done(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "receiver: condition not met within {timeout:?}; {} requests: {:?}",
                r.len(),
                r.iter()
                    .map(|q| String::from_utf8_lossy(&q.body).into_owned())
                    .take(20)
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve<S: Read + Write>(stream: S, fd: RawFd, conn: usize, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader, conn, shared) else {
            return;
        };
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let behaviour = shared.behaviour.lock().unwrap().clone();
        let reply = behaviour(&request);
        shared.requests.lock().unwrap().push(request);
        if !answer(reader.get_mut(), fd, reply) {
            return;
        }
    }
}

fn read_request<S: Read>(
    reader: &mut BufReader<S>,
    conn: usize,
    shared: &Shared,
) -> Option<Request> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        head.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(_) = req.parse(&head).ok()? else {
        return None;
    };
    assert_eq!(req.method, Some("POST"), "webhooks are POSTs");
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("requests carry Content-Length");
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        path: req.path.unwrap_or("").to_owned(),
        headers,
        body,
        at: Instant::now(),
        conn,
        n: shared.count.fetch_add(1, Ordering::Relaxed) + 1,
    })
}

/// Writes the reply; false when the connection is to be closed.
fn answer(out: &mut impl Write, fd: RawFd, reply: Reply) -> bool {
    match reply {
        Reply::Status(s) => write(
            out,
            &format!("HTTP/1.1 {s} X\r\nContent-Length: 0\r\n\r\n").into_bytes(),
        ),
        Reply::Full(s, headers, body) => {
            let mut text = format!("HTTP/1.1 {s} X\r\nContent-Length: {}\r\n", body.len());
            for (n, v) in headers {
                text.push_str(&format!("{n}: {v}\r\n"));
            }
            text.push_str("\r\n");
            let mut bytes = text.into_bytes();
            bytes.extend_from_slice(&body);
            write(out, &bytes)
        }
        Reply::Chunked(s, chunks) => {
            let mut bytes =
                format!("HTTP/1.1 {s} X\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
            for c in chunks {
                bytes.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                bytes.extend_from_slice(&c);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
            write(out, &bytes)
        }
        Reply::Oversized(n) => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
            if !write(out, head.as_bytes()) {
                return false;
            }
            let block = vec![b'x'; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let k = left.min(block.len());
                if out.write_all(&block[..k]).is_err() {
                    return false;
                }
                left -= k;
            }
            true
        }
        Reply::ThenClose(inner) => {
            answer(out, fd, *inner);
            // SAFETY: shutting down a socket this thread owns.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            false
        }
        Reply::Close(s) => {
            write(
                out,
                &format!("HTTP/1.1 {s} X\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    .into_bytes(),
            );
            false
        }
        Reply::Reset => {
            // SO_LINGER 0 turns the close into an RST.
            let _ = linger_zero(fd);
            false
        }
        Reply::Delay(d, inner) => {
            std::thread::sleep(d);
            answer(out, fd, *inner)
        }
        Reply::Raw(bytes) => write(out, &bytes),
    }
}

fn write(out: &mut impl Write, bytes: &[u8]) -> bool {
    out.write_all(bytes).is_ok() && out.flush().is_ok()
}

fn linger_zero(fd: RawFd) -> std::io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a correctly sized linger struct.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
