//! The webhook client: per callback host a bounded pool of keep-alive connections
//! (plain TCP or rustls) on glommio, one request in flight per connection. A request
//! that fails on a reused connection before any byte of the answer is sent again on
//! a fresh one (the server closed an idle connection under us).

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::response::{self, Response, ResponseError};
use crate::net::Stream;

/// Where webhooks of a task go, split out of its callback URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https`.
    pub tls: bool,
    /// Host name or address (no brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path and query of the request line.
    pub path: String,
    /// The `Host` header value.
    pub authority: String,
}

/// Why a callback URL is not an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not a URL at all.
    #[error("{text:?} is not a URL: {reason}")]
    NotUrl {
        /// The text.
        text: String,
        /// The URL parser's complaint.
        reason: String,
    },
    /// A scheme other than http(s).
    #[error("{text:?}: scheme {scheme:?} is not http or https")]
    Scheme {
        /// The text.
        text: String,
        /// Its scheme.
        scheme: String,
    },
    /// No host part.
    #[error("{0:?} has no host")]
    NoHost(String),
    /// No port, given or known for the scheme.
    #[error("{0:?} has no port")]
    NoPort(String),
}

/// Why the TLS settings for webhooks cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// `dispatcher.ca_file` cannot be read or holds a bad certificate.
    #[error("dispatcher.ca_file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the protocol versions.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

impl Endpoint {
    /// Parses an absolute http(s) URL.
    pub fn parse(text: &str) -> Result<Endpoint, EndpointError> {
        let url = url::Url::parse(text).map_err(|e| EndpointError::NotUrl {
            text: text.to_owned(),
            reason: e.to_string(),
        })?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => {
                return Err(EndpointError::Scheme {
                    text: text.to_owned(),
                    scheme: other.to_owned(),
                })
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            None => return Err(EndpointError::NoHost(text.to_owned())),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| EndpointError::NoPort(text.to_owned()))?;
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or(&host)),
            None => url.host_str().unwrap_or(&host).to_owned(),
        };
        let mut path = url.path().to_owned();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        Ok(Endpoint {
            tls,
            host,
            port,
            path,
            authority,
        })
    }

    /// The key connections are pooled under.
    pub fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// No address of the host accepted a connection.
    #[error("cannot connect to {origin}: {source}")]
    Connect {
        /// scheme://host:port.
        origin: String,
        /// The last failure.
        source: std::io::Error,
    },
    /// The TLS handshake failed (certificate checks included).
    #[error("TLS with {origin} failed: {source}")]
    Tls {
        /// scheme://host:port.
        origin: String,
        /// What rustls said.
        source: std::io::Error,
    },
    /// Sending the request failed.
    #[error("sending the request failed: {0}")]
    Send(std::io::Error),
    /// Reading the answer failed.
    #[error("reading the response failed after {got} bytes: {source}")]
    Receive {
        /// Bytes of the answer received before the failure.
        got: usize,
        /// The socket error.
        source: std::io::Error,
    },
    /// The peer closed the connection without answering.
    #[error("connection closed before any response")]
    Closed,
    /// The answer is not valid HTTP.
    #[error(transparent)]
    Response(#[from] ResponseError),
    /// No answer within the request timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

impl HttpError {
    /// True when the server cannot have seen a complete request or answered it, so
    /// a stale keep-alive connection is the likely cause.
    fn before_response(&self) -> bool {
        matches!(
            self,
            HttpError::Send(_) | HttpError::Closed | HttpError::Receive { got: 0, .. }
        )
    }
}

/// TLS settings for webhooks: the Mozilla roots, plus the CAs in `ca_file`.
/// Certificates and host names are always verified.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let bad = |reason: String| TlsConfigError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no certificates in the file".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One open connection and its read buffer.
struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    /// Where reads land, zeroed once per connection rather than per request.
    chunk: Box<[u8]>,
}

/// Keep-alive connections to one origin, at most `limit` open.
pub struct Pool {
    endpoint: Endpoint,
    tls: Arc<ClientConfig>,
    idle: RefCell<Vec<Conn>>,
    permits: Semaphore,
}

impl Pool {
    /// A pool for `endpoint`'s origin holding up to `limit` connections.
    pub fn new(endpoint: Endpoint, tls: Arc<ClientConfig>, limit: usize) -> Self {
        Pool {
            endpoint,
            tls,
            idle: RefCell::new(Vec::new()),
            permits: Semaphore::new(limit.max(1) as u64),
        }
    }

    /// Whether `endpoint` has this pool's origin (scheme, host and port).
    pub fn serves(&self, endpoint: &Endpoint) -> bool {
        let mine = &self.endpoint;
        mine.tls == endpoint.tls && mine.port == endpoint.port && mine.host == endpoint.host
    }

    /// Sends `request` (a complete HTTP/1.1 request) and reads the answer, all
    /// within `timeout` (waiting for a free connection included). `lazy`: read
    /// a plain-HTTP answer when this thread next wakes up anyway (see
    /// [`reap_answers`]) rather than waking it for the answer.
    pub async fn exchange(
        &self,
        request: &[u8],
        timeout: Duration,
        lazy: bool,
    ) -> Result<Response, HttpError> {
        let work = async {
            // Only fails once the semaphore is closed, which this pool never does.
            let _permit = self.permits.acquire_permit(1).await.ok();
            loop {
                let idle = self.idle.borrow_mut().pop();
                let (mut conn, reused) = match idle {
                    Some(c) => (c, true),
                    None => (self.connect(timeout).await?, false),
                };
                match round_trip(&mut conn, request, lazy).await {
                    Ok(r) => {
                        if r.reusable {
                            self.idle.borrow_mut().push(conn);
                        }
                        return Ok(r);
                    }
                    Err(e) if reused && e.before_response() => {
                        tracing::debug!(origin = %self.endpoint.origin(), error = %e, "kept-alive connection went stale; sending again on a new one");
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let deadline = async {
            glommio::timer::sleep(timeout).await;
            Err(HttpError::Timeout(timeout))
        };
        futures_lite::future::or(work, deadline).await
    }

    async fn connect(&self, timeout: Duration) -> Result<Conn, HttpError> {
        let e = &self.endpoint;
        let origin = || e.origin();
        let addrs = resolve(&e.host, e.port).await?;
        let mut last = std::io::Error::other("no addresses");
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(addr, timeout).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(err) => last = err.into(),
            }
        }
        let Some(tcp) = tcp else {
            return Err(HttpError::Connect {
                origin: origin(),
                source: last,
            });
        };
        // Requests are written whole; Nagle would only delay them.
        let _ = tcp.set_nodelay(true);
        let stream = if e.tls {
            let name = ServerName::try_from(e.host.clone()).map_err(|err| HttpError::Tls {
                origin: origin(),
                source: std::io::Error::other(err.to_string()),
            })?;
            let tls = futures_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|source| HttpError::Tls {
                    origin: origin(),
                    source,
                })?;
            Stream::Tls(Box::new(tls))
        } else {
            Stream::Plain(tcp)
        };
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(1024),
            chunk: vec![0u8; 8192].into_boxed_slice(),
        })
    }
}

/// Resolves on a blocking thread: name lookups must not stall the shard. Literal
/// addresses skip the resolver.
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, HttpError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = host.to_owned();
    let found = glommio::executor()
        .spawn_blocking(move || {
            (name.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>())
        })
        .await;
    match found {
        Ok(a) if !a.is_empty() => Ok(a),
        Ok(_) => Err(HttpError::Resolve {
            host: host.to_owned(),
            reason: "no addresses".into(),
        }),
        Err(e) => Err(HttpError::Resolve {
            host: host.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// How long a lazily awaited answer waits at most for this thread's next
/// wake-up before the reaper reads it. Only the ack waits (the lane has
/// nothing queued), and while binlog events keep coming they reap first: the
/// tick matters when the stream goes quiet. It fires every tick while
/// answers wait, a wake-up and a timer arm each: at 1 ms that was ~0.1
/// `io_uring_enter` and 1–3 µs of CPU per event at 10k rows/s (A/B against
/// 5 ms, 2026-12-02).
const REAP_TICK: Duration = Duration::from_millis(5);

/// A gap between two wake-ups of the source core at most this long makes
/// the next one likely soon enough to read answers in. 2 ms covers 1k
/// events/s: the answer's wake-up cost more than the reaper's ticks (A/B at
/// 1k rows/s, five runs each: 1.34–1.38 context switches per event against
/// 2.06, CPU 72–80 against 77–83 µs; the ack waits ~2 ms, the webhook not at
/// all). It was 400 µs.
const BRISK: Duration = Duration::from_millis(2);

/// Calls of [`reap_answers`] closer than this belong to one wake-up.
const SAME_WAKE: Duration = Duration::from_micros(50);

/// Exchanges waiting to read their answer at the thread's next wake-up, and
/// the reaper's waker while none waits.
#[derive(Default)]
struct Reaper {
    /// Each with the executor's sleep count when it began to wait.
    waiting: RefCell<Vec<(u64, std::task::Waker)>>,
    idle_reaper: RefCell<Option<std::task::Waker>>,
    /// The last call of [`reap_answers`].
    last: std::cell::Cell<Option<std::time::Instant>>,
    /// The last gap between wake-ups was at most [`BRISK`].
    brisk: std::cell::Cell<bool>,
}

thread_local! {
    static REAPER: Reaper = Reaper::default();
}

/// Lets the exchanges waiting lazily try to read their answer: the thread is
/// awake anyway (the source calls this after each binlog event it takes in).
/// Only those that began to wait before the thread slept twice: an answer to
/// a request sent in this wake-up is rarely there yet, and one sent in the
/// wake-up before often is not either, as the receiver waits for a CPU too
/// (a `recv(2)` that finds nothing: 0.3 per event at 10k rows/s when all were
/// tried, 0.13–0.16 with one sleep, 0.02 with two; A/B 2026-12-02).
pub fn reap_answers() {
    REAPER.with(|r| {
        // Called once per binlog event: it measures the stream's pace.
        let now = std::time::Instant::now();
        if let Some(gap) = r.last.replace(Some(now)).map(|t| now - t) {
            if gap > SAME_WAKE {
                r.brisk.set(gap <= BRISK);
            }
        }
    });
    reap(2);
}

/// As [`reap_answers`], for those that began to wait before the thread last
/// slept: an event is queued behind one of them, and its lane would
/// otherwise hold it for another wake-up.
pub fn hurry_answers() {
    reap(1);
}

/// Wakes the waiting exchanges that began to wait at least `sleeps` sleeps
/// of the executor ago; 0 wakes all (the reaper's tick: an executor kept
/// busy may not sleep for long).
fn reap(sleeps: u64) {
    let waiting = REAPER.with(|r| {
        let slept = glommio::executor().sleeps();
        let due = |since: u64| since + sleeps <= slept;
        let mut waiting = r.waiting.borrow_mut();
        if waiting.iter().all(|(since, _)| due(*since)) {
            std::mem::take(&mut *waiting)
        } else if !waiting.iter().any(|(since, _)| due(*since)) {
            Vec::new()
        } else {
            let (due, wait): (Vec<_>, Vec<_>) =
                waiting.drain(..).partition(|(since, _)| due(*since));
            *waiting = wait;
            due
        }
    });
    for (_, w) in waiting {
        w.wake();
    }
}

/// Whether answers read lazily would wait little: binlog events came at
/// most [`BRISK`] apart, the last one within it. At lower rates the
/// reaper's tick would be the wake-up of most answers, and they would wait
/// for it.
pub fn answers_can_wait() -> bool {
    // And the last one was recent: a stream gone quiet leaves `brisk` set
    // until its next event.
    REAPER.with(|r| r.brisk.get() && r.last.get().is_some_and(|t| t.elapsed() <= BRISK))
}

/// Bounds the wait of lazy exchanges when no binlog event comes: every
/// [`REAP_TICK`] while one waits, no timer while none does. Runs on the
/// thread whose exchanges are lazy.
pub async fn reaper() {
    loop {
        futures_lite::future::poll_fn(|cx| {
            REAPER.with(|r| {
                if r.waiting.borrow().is_empty() {
                    *r.idle_reaper.borrow_mut() = Some(cx.waker().clone());
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(())
                }
            })
        })
        .await;
        glommio::timer::sleep(REAP_TICK).await;
        reap(0);
    }
}

/// Ready once [`reap_answers`] ran after its first poll.
struct NextReap(bool);

impl std::future::Future for NextReap {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        REAPER.with(|r| {
            r.waiting
                .borrow_mut()
                .push((glommio::executor().sleeps(), cx.waker().clone()));
            if let Some(w) = r.idle_reaper.borrow_mut().take() {
                w.wake();
            }
        });
        std::task::Poll::Pending
    }
}

/// Reads what the socket holds at the thread's next wake-up: no poll is
/// armed, so the answer's arrival wakes nobody.
async fn read_lazily(stream: &Stream, into: &mut [u8]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let fd = stream
        .tcp()
        .map(|t| t.as_raw_fd())
        .ok_or_else(|| std::io::Error::other("no socket"))?;
    loop {
        NextReap(false).await;
        // SAFETY: `into` is valid for writes of its length; MSG_DONTWAIT keeps
        // the call from blocking the executor.
        let n = unsafe { libc::recv(fd, into.as_mut_ptr().cast(), into.len(), libc::MSG_DONTWAIT) };
        if let Ok(n) = usize::try_from(n) {
            return Ok(n);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::Interrupted
        {
            return Err(e);
        }
    }
}

async fn round_trip(conn: &mut Conn, request: &[u8], lazy: bool) -> Result<Response, HttpError> {
    conn.stream
        .write_all(request)
        .await
        .map_err(HttpError::Send)?;
    conn.stream.flush().await.map_err(HttpError::Send)?;
    conn.buf.clear();
    // TLS reads go through rustls, which needs the stream's own reads.
    let lazy = lazy && matches!(conn.stream, Stream::Plain(_));
    loop {
        let got = if lazy {
            read_lazily(&conn.stream, &mut conn.chunk).await
        } else {
            conn.stream.read(&mut conn.chunk).await
        };
        let n = match got {
            Ok(n) => n,
            Err(source) => {
                return Err(HttpError::Receive {
                    got: conn.buf.len(),
                    source,
                })
            }
        };
        if n == 0 && conn.buf.is_empty() {
            return Err(HttpError::Closed);
        }
        conn.buf.extend_from_slice(&conn.chunk[..n]);
        if let Some((mut r, used)) = response::parse(&conn.buf, n == 0)? {
            // Bytes past the answer mean the peer is out of step: do not reuse.
            if used != conn.buf.len() {
                r.reusable = false;
            }
            return Ok(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver on a plain socket that answers every request at once.
    fn answering_server() -> u16 {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0
                            || conn
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                                .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    /// A local server that sends back each byte it reads `after` a delay.
    fn echo_after(after: Duration) -> std::net::SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let mut byte = [0u8; 1];
            while conn.read_exact(&mut byte).is_ok() {
                std::thread::sleep(after);
                if conn.write_all(&byte).is_err() {
                    return;
                }
            }
        });
        addr
    }

    /// An answer read lazily arrives without a wake-up of its own: with no
    /// binlog event to reap it, the reaper's tick must, within a few ticks;
    /// with [`reap_answers`] called it is read at once.
    #[test]
    fn lazy_answers_are_read_by_the_reaper_tick_or_the_next_reap() {
        let port = answering_server();
        let took = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .unwrap()
            .run(async move {
                glommio::spawn_local(reaper()).detach();
                let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
                let pool = Pool::new(endpoint, tls_config(None).unwrap(), 1);
                let request = b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
                let mut took = Vec::new();
                for _ in 0..20 {
                    let at = std::time::Instant::now();
                    let answer = pool.exchange(request, Duration::from_secs(5), true).await;
                    assert_eq!(answer.map(|r| r.status).ok(), Some(200));
                    took.push(at.elapsed());
                }
                // Reaped by a caller that is awake anyway: no tick needed.
                let at = std::time::Instant::now();
                let reaping = glommio::spawn_local(async {
                    for _ in 0..2000 {
                        reap_answers();
                        glommio::timer::sleep(Duration::from_micros(50)).await;
                    }
                })
                .detach();
                let answer = pool.exchange(request, Duration::from_secs(5), true).await;
                assert_eq!(answer.map(|r| r.status).ok(), Some(200));
                let reaped = at.elapsed();
                reaping.cancel();
                took.sort();
                (took, reaped)
            });
        let (took, reaped) = took;
        // Each waits for the tick at most, on a loaded VM a few.
        assert!(took[took.len() / 2] < REAP_TICK * 4, "{took:?}");
        assert!(reaped < Duration::from_millis(100), "{reaped:?}");
    }

    /// A reap in the wake-up that sent the request leaves the exchange
    /// waiting (its answer is rarely there yet), and so does the first reap
    /// after one sleep unless an event is queued behind it (`hurry_answers`);
    /// the first routine reap after two sleeps reads it.
    #[test]
    fn a_reap_tries_only_exchanges_that_began_to_wait_two_sleeps_before() {
        let port = answering_server();
        let seen = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .unwrap()
            .run(async move {
                let endpoint = Endpoint::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
                let pool = std::rc::Rc::new(Pool::new(endpoint, tls_config(None).unwrap(), 1));
                let waiting = || REAPER.with(|r| r.waiting.borrow().len());
                let slept = || glommio::executor().sleeps();
                // One wake-up from a socket: a short timer wait counted two
                // sleeps here every time (the count includes a sleep that
                // returns at once), which would not test the one-sleep case.
                let echo = echo_after(Duration::from_millis(2));
                let mut echo = glommio::net::TcpStream::connect(echo).await.unwrap();
                async fn sleep_once(echo: &mut glommio::net::TcpStream) {
                    use futures_lite::{AsyncReadExt, AsyncWriteExt};
                    let mut byte = [0u8; 1];
                    echo.write_all(b"x").await.unwrap();
                    echo.read_exact(&mut byte).await.unwrap();
                }
                // The first wake-ups also arm what later ones keep armed.
                for _ in 0..3 {
                    sleep_once(&mut echo).await;
                }
                let mut seen = Vec::new();
                for hurry in [false, true, false, true] {
                    let pool = pool.clone();
                    let exchange = glommio::spawn_local(async move {
                        let request =
                            b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
                        let answer = pool.exchange(request, Duration::from_secs(5), true).await;
                        answer.map(|r| r.status).ok()
                    });
                    let began = std::time::Instant::now();
                    while waiting() == 0 && began.elapsed() < Duration::from_secs(10) {
                        futures_lite::future::yield_now().await;
                    }
                    assert_eq!(waiting(), 1, "the exchange never began to wait");
                    let since = REAPER.with(|r| r.waiting.borrow()[0].0);
                    assert_eq!(since, slept(), "no sleep since it began");
                    reap_answers();
                    hurry_answers();
                    let same_wake = waiting();
                    sleep_once(&mut echo).await;
                    let sleeps = slept() - since;
                    if hurry {
                        hurry_answers();
                    } else {
                        reap_answers();
                    }
                    let after_one = waiting();
                    sleep_once(&mut echo).await;
                    reap_answers();
                    let after_two = waiting();
                    seen.push((
                        hurry,
                        same_wake,
                        sleeps,
                        after_one,
                        after_two,
                        exchange.await,
                    ));
                }
                seen
            });
        // The first exchange also connects, which can take more than one
        // sleep: the routine reap may then read it after "one" wake-up too.
        for (hurry, same_wake, sleeps, after_one, after_two, status) in &seen {
            let left = usize::from(!hurry && *sleeps < 2);
            assert_eq!(
                (*same_wake, *after_one, *after_two, *status),
                (1, left, 0, Some(200)),
                "{seen:?}"
            );
        }
        assert!(
            seen.iter().any(|s| !s.0 && s.2 == 1) && seen.iter().any(|s| s.0 && s.2 == 1),
            "no exchange waited exactly one sleep in each mode: {seen:?}"
        );
    }

    #[test]
    fn endpoints_from_urls() {
        let e = Endpoint::parse("http://127.0.0.1:18080/hook/a?x=1").unwrap();
        assert_eq!(
            (
                e.tls,
                e.host.as_str(),
                e.port,
                e.path.as_str(),
                e.authority.as_str()
            ),
            (false, "127.0.0.1", 18080, "/hook/a?x=1", "127.0.0.1:18080")
        );
        let e = Endpoint::parse("https://hooks.example.com/in").unwrap();
        assert_eq!(
            (e.tls, e.port, e.authority.as_str()),
            (true, 443, "hooks.example.com")
        );
        let e = Endpoint::parse("http://[::1]:9000/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.authority.as_str()),
            ("::1", "[::1]:9000")
        );
        assert!(Endpoint::parse("ftp://x/").is_err());
        assert!(Endpoint::parse("/relative").is_err());
    }
}
