//! `tasks_source:` — where task definitions live when not in a file: etcd, one
//! key per task under a prefix.

use std::path::PathBuf;
use std::time::Duration;

use super::fields::Fields;

/// Tasks kept in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://host:2379` or `https://host:2379` (TLS with `tls`).
    pub endpoints: Vec<String>,
    /// Key prefix; every key under it holds one task (YAML or JSON).
    pub prefix: String,
    /// etcd authentication.
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// TLS to etcd.
    pub tls: Option<EtcdTls>,
    /// How long one connection attempt may take.
    pub dial_timeout: Duration,
}

/// TLS settings for etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM CA bundle that signs the etcd servers' certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), for etcd's client-cert authentication.
    pub cert_file: Option<PathBuf>,
    /// Its key (PEM).
    pub key_file: Option<PathBuf>,
}

impl EtcdConfig {
    /// Reads `tasks_source.etcd`.
    pub(crate) fn read(f: &mut Fields<'_, '_>) -> Option<Self> {
        let endpoints = f.string_list("endpoints").unwrap_or_default();
        if endpoints.is_empty() {
            f.problem(
                "endpoints",
                "list at least one etcd endpoint, e.g. [http://127.0.0.1:2379]",
            );
        }
        for e in &endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                f.problem(
                    "endpoints",
                    format!("{e:?} must start with http:// or https://"),
                );
            }
        }
        let prefix = f
            .string("prefix")
            .unwrap_or_else(|| "/rowhook/tasks/".into());
        if prefix.is_empty() {
            f.problem(
                "prefix",
                "an empty prefix would read every key of the cluster; use e.g. /rowhook/tasks/",
            );
        }
        let username = f.string("username").filter(|u| !u.is_empty());
        let password = f.string("password");
        if password.is_some() && username.is_none() {
            f.problem("password", "a password needs a username");
        }
        let tls = f.has("tls").then(|| {
            let mut t = f.nested("tls");
            let tls = EtcdTls {
                ca_file: t.string("ca_file").map(PathBuf::from),
                cert_file: t.string("cert_file").map(PathBuf::from),
                key_file: t.string("key_file").map(PathBuf::from),
            };
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                t.problem("cert_file", "cert_file and key_file go together");
            }
            t.finish();
            tls
        });
        let dial_timeout = f.duration("dial_timeout", Duration::from_secs(5), false);
        (!endpoints.is_empty() && !prefix.is_empty()).then_some(EtcdConfig {
            endpoints,
            prefix,
            username,
            password,
            tls,
            dial_timeout,
        })
    }
}
