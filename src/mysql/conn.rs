//! One connection to the source server on glommio's TCP: connect, authenticate,
//! run text queries, and read the binlog stream. Only moves bytes; the protocol
//! decisions live in `packet`, `handshake` and `result`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use super::error::MysqlError;
use super::handshake::{self, Greeting};
use super::packet::{write_packets, Framer};
use super::result::{parse_row_bytes, Row};
use crate::config::{DatabaseConfig, TlsMode};
use crate::net::Stream;

/// utf8mb4_general_ci: the connection charset for text results.
const CHARSET_UTF8MB4: u8 = 45;

/// An authenticated connection.
pub struct Connection {
    stream: Stream,
    framer: Framer,
    seq: u8,
    out: BytesMut,
    read_timeout: Option<Duration>,
    /// The server's greeting.
    pub greeting: Greeting,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> MysqlError {
    let context = context.into();
    move |source| MysqlError::Io { context, source }
}

impl Connection {
    /// Connects and logs in as `db.user`.
    pub async fn connect(
        db: &DatabaseConfig,
        max_packet: usize,
        timeout: Duration,
    ) -> Result<Self, MysqlError> {
        let addr = format!("{}:{}", db.host, db.port);
        let mut stream = glommio::timer::timeout(timeout, async {
            Ok(TcpStream::connect(addr.as_str()).await)
        })
        .await
        .unwrap_or_else(|_| Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into()))
        .map_err(|e| MysqlError::Io {
            context: format!("cannot connect to {addr}"),
            source: std::io::Error::other(e.to_string()),
        })?;
        stream.set_nodelay(true).map_err(|e| MysqlError::Io {
            context: "set TCP_NODELAY".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        // The replication stream is read in a loop: a read that empties the
        // socket queues the next as an io_uring RECV (glommio patch §8), so
        // a binlog event arrives with its bytes and costs no recv(2).
        stream.enable_read_ahead();
        let mut conn = Connection {
            stream: Stream::Plain(stream),
            framer: Framer::new(max_packet),
            seq: 0,
            out: BytesMut::with_capacity(4096),
            read_timeout: None,
            greeting: Greeting {
                server_version: String::new(),
                connection_id: 0,
                capabilities: 0,
                nonce: Vec::new(),
                auth_plugin: String::new(),
            },
        };
        conn.set_read_timeout(Some(timeout))?;
        let first = conn.read_payload().await?;
        conn.greeting = Greeting::parse(&first)?;
        conn.start_tls(db).await?;
        conn.authenticate(db).await?;
        Ok(conn)
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Upgrades to TLS as `database.tls` asks: SSLRequest, then the TLS handshake.
    /// `required` and `verify_ca` never fall back to plaintext.
    async fn start_tls(&mut self, db: &DatabaseConfig) -> Result<(), MysqlError> {
        let offered = self.greeting.capabilities & handshake::caps::SSL != 0;
        let config = match (&db.tls, offered) {
            (TlsMode::Disabled, _) | (TlsMode::Preferred, false) => return Ok(()),
            (TlsMode::Required | TlsMode::VerifyCa(_), false) => {
                return Err(MysqlError::NotUsable {
                    problem: "database.tls asks for TLS but the server does not offer it".into(),
                    fix: "configure ssl_cert/ssl_key on the server, or lower database.tls".into(),
                })
            }
            (TlsMode::Preferred | TlsMode::Required, true) => super::tls::encrypt_only()?,
            (TlsMode::VerifyCa(ca), true) => super::tls::verify_ca(ca)?,
        };
        let name = super::tls::server_name(&db.host)?;
        let request = handshake::response_head(&self.greeting, CHARSET_UTF8MB4, true);
        self.write_payload(&request).await?;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(MysqlError::Protocol("TLS started twice".into()));
        };
        let connector = futures_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| MysqlError::Io {
                context: format!("TLS handshake with {}:{}", db.host, db.port),
                source: e,
            })?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    async fn authenticate(&mut self, db: &DatabaseConfig) -> Result<(), MysqlError> {
        let mut plugin = self.greeting.auth_plugin.clone();
        let mut nonce = self.greeting.nonce.clone();
        let auth = handshake::scramble(&plugin, &db.password, &nonce)?;
        let response = handshake::response(
            &self.greeting,
            &db.user,
            &auth,
            &plugin,
            CHARSET_UTF8MB4,
            self.is_tls(),
        );
        self.write_payload(&response).await?;
        loop {
            let p = self.read_payload().await?;
            match p.first() {
                Some(0x00) => return Ok(()),
                Some(0xff) => return Err(MysqlError::from_err_packet(&p)),
                // Auth switch: another plugin and a fresh nonce.
                Some(0xfe) => {
                    let body = &p[1..];
                    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                    plugin = String::from_utf8_lossy(&body[..end]).into_owned();
                    nonce = body.get(end + 1..).unwrap_or(&[]).to_vec();
                    if nonce.last() == Some(&0) {
                        nonce.pop();
                    }
                    let auth = handshake::scramble(&plugin, &db.password, &nonce)?;
                    self.write_payload(&auth).await?;
                }
                // caching_sha2_password: 3 = fast path succeeded (OK follows), 4 = full auth.
                Some(0x01) if plugin == "caching_sha2_password" => match p.get(1) {
                    Some(3) => {}
                    // Full authentication: over TLS the password itself may be sent.
                    Some(4) if self.is_tls() => {
                        let mut clear = db.password.as_bytes().to_vec();
                        clear.push(0);
                        self.write_payload(&clear).await?;
                    }
                    // Without TLS: ask for the server's RSA key and encrypt with it.
                    Some(4) => {
                        self.write_payload(&[0x02]).await?;
                        let key = self.read_payload().await?;
                        let pem = match key.split_first() {
                            Some((0x01, pem)) => pem,
                            Some((0xff, _)) => return Err(MysqlError::from_err_packet(&key)),
                            _ => {
                                return Err(MysqlError::Protocol(
                                    "expected the server's RSA public key".into(),
                                ))
                            }
                        };
                        let sealed = handshake::rsa_encrypted_password(&db.password, &nonce, pem)?;
                        self.write_payload(&sealed).await?;
                    }
                    _ => {
                        return Err(MysqlError::Protocol(
                            "unexpected caching_sha2 message".into(),
                        ))
                    }
                },
                _ => {
                    return Err(MysqlError::Protocol(format!(
                        "unexpected packet during login: {:02x?}",
                        &p[..p.len().min(8)]
                    )))
                }
            }
        }
    }

    /// Sets how long a read may wait before the link counts as dead.
    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<(), MysqlError> {
        self.read_timeout = t;
        let Some(tcp) = self.stream.tcp() else {
            return Ok(());
        };
        tcp.set_read_timeout(t).map_err(|e| MysqlError::Io {
            context: "set read timeout".into(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// Reads the next packet payload.
    pub async fn read_payload(&mut self) -> Result<Bytes, MysqlError> {
        loop {
            if let Some(p) = self.framer.next_payload()? {
                self.seq = self.framer.last_seq.wrapping_add(1);
                return Ok(p);
            }
            let n = match self.framer.fill(&mut self.stream).await {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(MysqlError::Timeout(self.read_timeout.unwrap_or_default()));
                }
                Err(e) => return Err(io("read from server")(e)),
            };
            if n == 0 {
                return Err(MysqlError::Io {
                    context: "read from server".into(),
                    source: std::io::ErrorKind::UnexpectedEof.into(),
                });
            }
        }
    }

    async fn write_payload(&mut self, payload: &[u8]) -> Result<(), MysqlError> {
        self.out.clear();
        self.seq = write_packets(&mut self.out, payload, self.seq);
        self.stream
            .write_all(&self.out)
            .await
            .map_err(io("write to server"))?;
        self.stream.flush().await.map_err(io("write to server"))
    }

    /// Sends a command packet (sequence restarts at 0).
    pub async fn send_command(&mut self, command: &[u8]) -> Result<(), MysqlError> {
        self.seq = 0;
        self.write_payload(command).await
    }

    /// Runs a statement that returns no rows.
    pub async fn exec(&mut self, sql: &str) -> Result<(), MysqlError> {
        self.query(sql).await.map(|_| ())
    }

    /// Runs a text query and returns its rows (NULL as `None`).
    pub async fn query(&mut self, sql: &str) -> Result<Vec<Row>, MysqlError> {
        let rows = self.query_bytes(sql).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .map(|v| v.map(|b| String::from_utf8_lossy(&b).into_owned()))
                    .collect()
            })
            .collect())
    }

    /// Runs a text query and returns its rows as the bytes the server sent.
    pub async fn query_bytes(
        &mut self,
        sql: &str,
    ) -> Result<Vec<super::result::RawRow>, MysqlError> {
        let mut cmd = Vec::with_capacity(1 + sql.len());
        cmd.push(0x03);
        cmd.extend_from_slice(sql.as_bytes());
        self.send_command(&cmd).await?;
        let first = self.read_payload().await?;
        let columns = match first.first() {
            Some(0x00) => return Ok(Vec::new()),
            Some(0xff) => return Err(MysqlError::from_err_packet(&first)),
            Some(0xfb) => {
                return Err(MysqlError::Protocol(
                    "server asked for a local file; refused".into(),
                ))
            }
            _ => super::result::column_count(&first)?,
        };
        // Column definitions, then EOF.
        loop {
            let p = self.read_payload().await?;
            if is_eof(&p) {
                break;
            }
        }
        let mut rows = Vec::new();
        loop {
            let p = self.read_payload().await?;
            if is_eof(&p) {
                return Ok(rows);
            }
            if p.first() == Some(&0xff) {
                return Err(MysqlError::from_err_packet(&p));
            }
            rows.push(parse_row_bytes(&p, columns)?);
        }
    }

    /// The next binlog event of a dump, `None` at the end of a non-blocking dump.
    pub async fn binlog_event(&mut self) -> Result<Option<Bytes>, MysqlError> {
        let p = self.read_payload().await?;
        match p.first() {
            Some(0x00) => Ok(Some(p.slice(1..))),
            Some(0xff) => Err(MysqlError::from_err_packet(&p)),
            Some(0xfe) if p.len() < 9 => Ok(None),
            _ => Err(MysqlError::Protocol(
                "unexpected packet in the binlog stream".into(),
            )),
        }
    }
}

fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xfe) && p.len() < 9
}
