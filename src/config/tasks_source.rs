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
    /// Reads an `etcd:` block (`tasks_source.etcd`, `ha.etcd`); `default_prefix`
    /// when it names none.
    pub(crate) fn read(f: &mut Fields<'_, '_>, default_prefix: &str) -> Option<Self> {
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
        let prefix = f.string("prefix").unwrap_or_else(|| default_prefix.into());
        if prefix.is_empty() {
            f.problem(
                "prefix",
                format!(
                    "an empty prefix would use every key of the cluster; use e.g. {default_prefix}"
                ),
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

/// `ha:` — one active instance among several, elected in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// The etcd cluster and the prefix of the election and checkpoint keys.
    pub etcd: EtcdConfig,
    /// The lease an active instance renews; a dead one is replaced after it.
    pub lease_ttl: Duration,
    /// This instance's name in the election (`hostname:admin port` by default).
    pub id: Option<String>,
}

impl HaConfig {
    /// Reads `ha:`.
    pub(crate) fn read(f: &mut Fields<'_, '_>) -> Option<Self> {
        let id = f.string("id").filter(|i| !i.trim().is_empty());
        if !f.has("etcd") {
            f.problem(
                "etcd",
                "ha needs etcd: ha: {etcd: {endpoints: [http://127.0.0.1:2379], lease_ttl: 10s}}",
            );
            return None;
        }
        let mut e = f.nested("etcd");
        let etcd = EtcdConfig::read(&mut e, "/rowhook/ha/");
        let lease_ttl = e.duration("lease_ttl", Duration::from_secs(10), false);
        // etcd rounds a lease to whole seconds and refuses less than its own
        // minimum; under 2 s a renewal could not fit inside the safety margin.
        if lease_ttl < Duration::from_secs(2) || lease_ttl.subsec_nanos() != 0 {
            e.problem(
                "lease_ttl",
                "a whole number of seconds, at least 2s (e.g. 10s)",
            );
        }
        e.finish();
        Some(HaConfig {
            etcd: etcd?,
            lease_ttl,
            id,
        })
    }
}
