//! `database:` — the replication source rowhook connects to as a replica.

use std::path::PathBuf;

use super::fields::Fields;

/// How to reach the source server and who to be towards it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// Host name or address of the source.
    pub host: String,
    /// TCP port of the source.
    pub port: u16,
    /// Replication user (needs REPLICATION SLAVE, REPLICATION CLIENT, SELECT).
    pub user: String,
    /// Password of `user`; empty when the account has none.
    pub password: String,
    /// Default schema for tasks whose `table_name` has no `db.` prefix.
    pub database: Option<String>,
    /// Our server id among the source's replicas.
    pub server_id: u32,
    /// Connection character set.
    pub charset: String,
    /// Whether and how to use TLS.
    pub tls: TlsMode,
    /// Which dialect to speak, or detect it.
    pub flavor: Flavor,
}

/// TLS towards the source server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// Never use TLS.
    Disabled,
    /// Use TLS when the server offers it, without verifying the certificate.
    Preferred,
    /// Require TLS; never fall back to plaintext.
    Required,
    /// Require TLS and verify the server certificate against this CA file.
    VerifyCa(PathBuf),
}

/// Server dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Detect from the server's version string.
    Auto,
    /// Oracle MySQL (5.7, 8.x).
    Mysql,
    /// MariaDB (10.5+).
    Mariadb,
}

impl DatabaseConfig {
    pub(crate) fn read(f: &mut Fields<'_, '_>) -> Option<Self> {
        let host = f.required_string("host", "the hostname or IP of the MySQL/MariaDB source");
        let port = f.int("port", 1, 65535).map_or(3306, |p| p as u16);
        let user = f.required_string(
            "user",
            "a user with REPLICATION SLAVE and REPLICATION CLIENT",
        );
        let password = f.string("password").unwrap_or_default();
        let database = f.string("database").filter(|d| !d.trim().is_empty());
        let server_id = f.int("server_id", 1, i64::from(u32::MAX)).map(|n| n as u32);
        if server_id.is_none() && f.raw("server_id").is_none() {
            f.missing(
                "server_id",
                "a number from 1 to 4294967295, unique among the source's replicas",
            );
        }
        let charset = f.string("charset").unwrap_or_else(|| "utf8mb4".to_owned());
        #[derive(Clone, Copy)]
        enum Tls {
            Disabled,
            Preferred,
            Required,
            VerifyCa,
        }
        let tls = f.choice(
            "tls",
            Tls::Preferred,
            &[
                ("disabled", Tls::Disabled),
                ("preferred", Tls::Preferred),
                ("required", Tls::Required),
                ("verify_ca", Tls::VerifyCa),
            ],
        );
        let ca_file = f.string("ca_file").map(PathBuf::from);
        let tls = match (tls, ca_file) {
            (Tls::VerifyCa, Some(ca)) => TlsMode::VerifyCa(ca),
            (Tls::VerifyCa, None) => {
                f.problem("ca_file", "tls: verify_ca needs ca_file: the PEM file of the CA that signed the server certificate");
                TlsMode::Required
            }
            (_, Some(_)) => {
                f.problem(
                    "ca_file",
                    "is only used with tls: verify_ca; set that or remove ca_file",
                );
                TlsMode::Required
            }
            (Tls::Disabled, None) => TlsMode::Disabled,
            (Tls::Preferred, None) => TlsMode::Preferred,
            (Tls::Required, None) => TlsMode::Required,
        };
        let flavor = f.choice(
            "flavor",
            Flavor::Auto,
            &[
                ("auto", Flavor::Auto),
                ("mysql", Flavor::Mysql),
                ("mariadb", Flavor::Mariadb),
            ],
        );
        Some(DatabaseConfig {
            host: host?,
            port,
            user: user?,
            password,
            database,
            server_id: server_id?,
            charset,
            tls,
            flavor,
        })
    }
}
