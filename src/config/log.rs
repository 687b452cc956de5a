//! `log:` — how much rowhook says and in which format.

use super::fields::Fields;

/// Logging settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Least severe level printed.
    pub level: LogLevel,
    /// Human text or JSON lines.
    pub format: LogFormat,
}

/// Least severe level printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything, including per-connection detail.
    Debug,
    /// Start-up, progress and state changes.
    Info,
    /// Problems rowhook works around (retries, reconnects).
    Warn,
    /// Problems that stop work.
    Error,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per record.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::Info,
            format: LogFormat::Text,
        }
    }
}

impl LogConfig {
    pub(crate) fn read(f: &mut Fields<'_, '_>) -> Self {
        let level = f.choice(
            "level",
            LogLevel::Info,
            &[
                ("debug", LogLevel::Debug),
                ("info", LogLevel::Info),
                ("warn", LogLevel::Warn),
                ("warning", LogLevel::Warn),
                ("error", LogLevel::Error),
            ],
        );
        let format = f.choice(
            "format",
            LogFormat::Text,
            &[("text", LogFormat::Text), ("json", LogFormat::Json)],
        );
        LogConfig { level, format }
    }
}
