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
    /// within `timeout` (waiting for a free connection included).
    pub async fn exchange(&self, request: &[u8], timeout: Duration) -> Result<Response, HttpError> {
        let work = async {
            // Only fails once the semaphore is closed, which this pool never does.
            let _permit = self.permits.acquire_permit(1).await.ok();
            loop {
                let idle = self.idle.borrow_mut().pop();
                let (mut conn, reused) = match idle {
                    Some(c) => (c, true),
                    None => (self.connect(timeout).await?, false),
                };
                match round_trip(&mut conn, request).await {
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

async fn round_trip(conn: &mut Conn, request: &[u8]) -> Result<Response, HttpError> {
    conn.stream
        .write_all(request)
        .await
        .map_err(HttpError::Send)?;
    conn.stream.flush().await.map_err(HttpError::Send)?;
    conn.buf.clear();
    loop {
        let n = match conn.stream.read(&mut conn.chunk).await {
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
