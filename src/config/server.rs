//! `server:` — the admin/health HTTP server.

use std::net::IpAddr;

use super::fields::Fields;

/// Admin server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Whether the admin server runs at all.
    pub enabled: bool,
    /// Address it binds to; loopback unless the operator opens it up.
    pub bind: IpAddr,
    /// TCP port.
    pub port: u16,
    /// Path of the health endpoint.
    pub path: String,
    /// Bearer token required on POST routes, when set.
    pub token: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            enabled: false,
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 8080,
            path: "/health".to_owned(),
            token: None,
        }
    }
}

impl ServerConfig {
    pub(crate) fn read(f: &mut Fields<'_, '_>) -> Self {
        let d = ServerConfig::default();
        let enabled = f.bool("enabled", d.enabled);
        let port = f.int("port", 1, 65535).map_or(d.port, |p| p as u16);
        let path = match f.string("path") {
            Some(p) if p.starts_with('/') && !p.contains(char::is_whitespace) => p,
            Some(p) => {
                f.problem(
                    "path",
                    format!("{p:?} must be an absolute path such as /health"),
                );
                d.path
            }
            None => d.path,
        };
        let bind = match f.string("bind") {
            Some(b) => b.parse().unwrap_or_else(|_| {
                f.problem(
                    "bind",
                    format!("{b:?} is not an IP address (e.g. 127.0.0.1 or 0.0.0.0)"),
                );
                d.bind
            }),
            None => d.bind,
        };
        let token = f.string("token").filter(|t| !t.is_empty());
        ServerConfig {
            enabled,
            bind,
            port,
            path,
            token,
        }
    }
}
