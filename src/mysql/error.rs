//! What can go wrong talking to the source server, with the server's own code and,
//! where rowhook knows it, what the operator should do.

/// A replication-connection failure.
#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    /// Socket-level failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The server said no.
    #[error("server error {code} ({state}): {message}{}", hint.as_deref().map(|h| format!("\n  fix: {h}")).unwrap_or_default())]
    Server {
        /// MySQL error number.
        code: u16,
        /// SQLSTATE.
        state: String,
        /// Server message.
        message: String,
        /// What to do about it, when known.
        hint: Option<String>,
    },
    /// Bytes that do not follow the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A packet larger than the configured maximum.
    #[error("packet of {size} bytes exceeds the {max}-byte limit")]
    PacketTooLarge {
        /// Announced size.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Authentication cannot proceed with what this build supports.
    #[error("authentication: {0}")]
    Auth(String),
    /// The server works but is not set up for row-based replication.
    #[error("the source server is not usable: {problem}\n  fix: {fix}")]
    NotUsable {
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// The server ended the binlog stream (it is shutting down or restarting).
    #[error("the server ended the binlog stream (shutdown or restart)")]
    StreamEnded,
    /// The checkpoint's position on this server is not the point it was taken at.
    #[error("cannot resume at {at}: {problem}\n  fix: {fix}")]
    ResumeMismatch {
        /// The saved position.
        at: String,
        /// What the server has there instead.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// The follow loop made no progress at all for too long (the watchdog).
    #[error("no progress for {after:?} while {phase}; reconnecting (watchdog)")]
    Stalled {
        /// What the loop was doing.
        phase: String,
        /// How long it had not moved.
        after: std::time::Duration,
    },
    /// No packet within the dead-link timeout.
    #[error("no data from the server for {0:?} (heartbeats missing): the link is dead")]
    Timeout(std::time::Duration),
}

impl MysqlError {
    /// Parses an ERR packet (starting with 0xFF).
    pub fn from_err_packet(p: &[u8]) -> Self {
        let code = p.get(1..3).map_or(0, |b| u16::from_le_bytes([b[0], b[1]]));
        let (state, msg) = match p.get(3) {
            Some(b'#') if p.len() >= 9 => (String::from_utf8_lossy(&p[4..9]).into_owned(), &p[9..]),
            _ => (String::from("HY000"), p.get(3..).unwrap_or(&[])),
        };
        let message = String::from_utf8_lossy(msg).into_owned();
        let hint = hint_for(code);
        MysqlError::Server {
            code,
            state,
            message,
            hint,
        }
    }

    /// Whether a new connection may succeed where this one failed.
    pub fn is_transient(&self) -> bool {
        match self {
            MysqlError::Io { .. }
            | MysqlError::Timeout(_)
            | MysqlError::StreamEnded
            | MysqlError::Stalled { .. } => true,
            // Shutdown in progress, server gone, too many connections, killed.
            MysqlError::Server { code, .. } => {
                matches!(code, 1040 | 1053 | 1317 | 2006 | 2013 | 1927)
            }
            _ => false,
        }
    }
}

fn hint_for(code: u16) -> Option<String> {
    Some(match code {
        1045 => "check database.user / database.password (and that the account may log in from this host)".into(),
        1227 | 1142 | 1044 => "GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO the rowhook user".into(),
        1236 => "the requested binlog position is not on the server any more (purged?): \
                 choose source.start: earliest or a position the server still has"
            .into(),
        _ => return None,
    })
}
