//! `rowhook check`: connects to the source and the callback hosts and reports each
//! requirement as ok / warn / FAIL with what to do, so an operator sees everything
//! that is wrong in one run.

use std::collections::BTreeSet;
use std::fmt;
use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::checkpoint;
use crate::config::{Config, Flavor};
use crate::http::Endpoint;
use crate::mysql::{replica, Connection, MysqlError};

/// How a requirement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Met.
    Ok,
    /// Works, but not as well as it could.
    Warn,
    /// rowhook cannot run like this.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Verdict.
    pub level: Level,
    /// What was checked and what was found.
    pub what: String,
    /// What to do (for warn and fail).
    pub fix: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        write!(f, "{tag}  {}", self.what)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n      fix: {fix}")?;
        }
        Ok(())
    }
}

fn ok(what: impl Into<String>) -> Finding {
    Finding {
        level: Level::Ok,
        what: what.into(),
        fix: None,
    }
}

fn bad(level: Level, what: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding {
        level,
        what: what.into(),
        fix: Some(fix.into()),
    }
}

/// Checks the server and the callbacks. Runs on its own executor.
pub fn check(config: &Config) -> Vec<Finding> {
    let executor = match glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("rowhook-check")
        .io_memory(256 << 10)
        .make()
    {
        Ok(e) => e,
        Err(e) => {
            return vec![bad(
            Level::Fail,
            format!("cannot start the io_uring executor: {e}"),
            "allow io_uring (kernel >= 5.8, not disabled by seccomp) and raise memlock (tuning/)",
        )]
        }
    };
    let mut findings = executor.run(server(config));
    findings.extend(callbacks(config));
    findings.extend(etcd(config));
    findings
}

/// The etcd clusters the configuration uses: tasks (`tasks_source.etcd`) and the
/// election (`ha.etcd`). A one-off tokio runtime for the gRPC client.
fn etcd(config: &Config) -> Vec<Finding> {
    if config.tasks_etcd.is_none() && config.ha.is_none() {
        return Vec::new();
    }
    let rt = match crate::control::etcd::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            return vec![bad(
                Level::Fail,
                format!("cannot start the etcd client's runtime: {e}"),
                "see the error",
            )]
        }
    };
    rt.block_on(async {
        let mut out = Vec::new();
        if let Some(settings) = &config.tasks_etcd {
            out.push(etcd_tasks(settings).await);
        }
        if let Some(ha) = &config.ha {
            out.push(etcd_election(&ha.etcd).await);
        }
        out
    })
}

async fn etcd_tasks(s: &crate::config::EtcdConfig) -> Finding {
    let at = s.endpoints.join(", ");
    let mut client = match crate::control::etcd::connect(s, "tasks_source.etcd").await {
        Ok(c) => c,
        Err(e) => {
            return bad(
                Level::Fail,
                format!("tasks_source: etcd at {at}: {e}"),
                "start etcd or correct tasks_source.etcd (endpoints, tls, username/password); run starts from its cached tasks when etcd is down, if it has any",
            )
        }
    };
    let keys = etcd_client::GetOptions::new()
        .with_prefix()
        .with_count_only();
    match tokio::time::timeout(s.dial_timeout, client.get(s.prefix.as_str(), Some(keys))).await {
        Ok(Ok(r)) => ok(format!(
            "tasks_source: etcd at {at} answers; {} task key(s) under {}",
            r.count(),
            s.prefix
        )),
        Ok(Err(e)) => bad(
            Level::Fail,
            format!(
                "tasks_source: etcd at {at} refuses to list {}: {e}",
                s.prefix
            ),
            "grant this user read access to the prefix",
        ),
        Err(_) => bad(
            Level::Fail,
            format!(
                "tasks_source: etcd at {at} did not answer within {:?}",
                s.dial_timeout
            ),
            "check that a quorum of the etcd cluster is up",
        ),
    }
}

async fn etcd_election(s: &crate::config::EtcdConfig) -> Finding {
    let at = s.endpoints.join(", ");
    let mut client = match crate::control::etcd::connect(s, "ha.etcd").await {
        Ok(c) => c,
        Err(e) => {
            return bad(
                Level::Fail,
                format!("ha: etcd at {at}: {e}"),
                "start etcd or correct ha.etcd; without it no instance becomes active",
            )
        }
    };
    let election = format!("{}election", s.prefix);
    let leader = tokio::time::timeout(s.dial_timeout, client.leader(election.as_str())).await;
    let state = tokio::time::timeout(
        s.dial_timeout,
        client.get(format!("{}state", s.prefix), None),
    )
    .await;
    let epoch = match state {
        Ok(Ok(r)) => r
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice::<serde_json::Value>(kv.value()).ok())
            .and_then(|v| v["epoch"].as_u64()),
        _ => None,
    };
    let epoch = epoch.map_or_else(|| "no epoch yet".to_owned(), |e| format!("epoch {e}"));
    match leader {
        Ok(Ok(r)) => {
            let who = r
                .kv()
                .and_then(|kv| serde_json::from_slice::<serde_json::Value>(kv.value()).ok());
            let id = who.as_ref().and_then(|w| w["id"].as_str()).unwrap_or("?");
            let admin = who
                .as_ref()
                .and_then(|w| w["admin"].as_str())
                .unwrap_or("?");
            ok(format!(
                "ha: etcd at {at} answers; active instance {id} at {admin} ({epoch})"
            ))
        }
        // etcd answers "no leader" as an error: nobody runs yet.
        Ok(Err(e)) if e.to_string().contains("no leader") => ok(format!(
            "ha: etcd at {at} answers; no instance is active yet ({epoch})"
        )),
        Ok(Err(e)) => bad(
            Level::Fail,
            format!("ha: etcd at {at} cannot read {election}: {e}"),
            "grant this user read and write access to the ha prefix",
        ),
        Err(_) => bad(
            Level::Fail,
            format!(
                "ha: etcd at {at} did not answer within {:?}",
                s.dial_timeout
            ),
            "check that a quorum of the etcd cluster is up",
        ),
    }
}

async fn server(config: &Config) -> Vec<Finding> {
    let db = &config.database;
    let mut out = Vec::new();
    let mut conn = match Connection::connect(db, 1 << 24, Duration::from_secs(10)).await {
        Ok(c) => c,
        Err(e) => {
            out.push(bad(
                Level::Fail,
                format!("connect to {}@{}:{}: {e}", db.user, db.host, db.port),
                "see the server's message above",
            ));
            return out;
        }
    };
    let tls = if conn.is_tls() { "TLS" } else { "no TLS" };
    out.push(ok(format!(
        "connected to {} at {}:{} as {} ({tls})",
        conn.greeting.server_version, db.host, db.port, db.user
    )));
    let mariadb = conn.greeting.server_version.contains("MariaDB");
    if (db.flavor == Flavor::Mysql && mariadb) || (db.flavor == Flavor::Mariadb && !mariadb) {
        out.push(bad(
            Level::Fail,
            format!(
                "database.flavor is {:?} but the server is {}",
                db.flavor, conn.greeting.server_version
            ),
            "set database.flavor: auto",
        ));
    }
    let var = |v: &str| format!("SELECT @@GLOBAL.{v}");
    let value = |rows: Result<Vec<Vec<Option<String>>>, MysqlError>| -> Option<String> {
        rows.ok()?.into_iter().next()?.into_iter().next()?
    };
    let log_bin = value(conn.query(&var("log_bin")).await).unwrap_or_default();
    out.push(if matches!(log_bin.as_str(), "1" | "ON") {
        ok("log_bin = ON")
    } else {
        bad(
            Level::Fail,
            format!("log_bin = {log_bin}"),
            "start the server with log-bin and server-id in my.cnf",
        )
    });
    let format = value(conn.query(&var("binlog_format")).await).unwrap_or_default();
    out.push(if format.eq_ignore_ascii_case("ROW") {
        ok("binlog_format = ROW")
    } else {
        bad(
            Level::Fail,
            format!("binlog_format = {format}"),
            "SET GLOBAL binlog_format = 'ROW' and binlog_format=ROW in my.cnf",
        )
    });
    let image = value(conn.query(&var("binlog_row_image")).await).unwrap_or_else(|| "FULL".into());
    out.push(if image.eq_ignore_ascii_case("FULL") {
        ok("binlog_row_image = FULL")
    } else {
        bad(
            Level::Warn,
            format!("binlog_row_image = {image}: old_data and deletes carry only some columns"),
            "SET GLOBAL binlog_row_image = 'FULL'",
        )
    });
    let metadata =
        value(conn.query(&var("binlog_row_metadata")).await).unwrap_or_else(|| "MINIMAL".into());
    out.push(if metadata.eq_ignore_ascii_case("FULL") {
        ok("binlog_row_metadata = FULL")
    } else {
        bad(Level::Warn, format!("binlog_row_metadata = {metadata}: column names and keys come from information_schema lookups (rows written before an ALTER and read after it are quarantined)"), "SET GLOBAL binlog_row_metadata = 'FULL' (recommended)")
    });
    let their_id = value(conn.query(&var("server_id")).await).and_then(|v| v.parse::<u32>().ok());
    out.push(if their_id == Some(db.server_id) {
        bad(Level::Fail, format!("database.server_id {} is the source's own server_id", db.server_id), "pick a server_id no server or replica in the topology uses")
    } else if config.ha.is_some() && replica_ids(&mut conn).await.contains(&db.server_id) {
        ok(format!("a replica with server_id {} is connected: with ha, the active instance (all instances share it)", db.server_id))
    } else if replica_ids(&mut conn).await.contains(&db.server_id) {
        bad(Level::Warn, format!("a replica with server_id {} is connected already (another rowhook, or a real replica)", db.server_id), "if that is not this rowhook's own earlier run, give this instance another server_id: the server disconnects one of two replicas that share one")
    } else {
        ok(format!("server_id {} is not used by the source or a connected replica", db.server_id))
    });
    out.push(privileges(&mut conn, mariadb).await);
    out.extend(saved_checkpoint(config, &mut conn, mariadb, their_id).await);
    out
}

async fn replica_ids(conn: &mut Connection) -> BTreeSet<u32> {
    let rows = match conn.query("SHOW SLAVE HOSTS").await {
        Ok(r) => r,
        Err(_) => conn.query("SHOW REPLICAS").await.unwrap_or_default(),
    };
    rows.into_iter()
        .filter_map(|r| r.into_iter().next().flatten()?.parse().ok())
        .collect()
}

async fn privileges(conn: &mut Connection, mariadb: bool) -> Finding {
    let grants: Vec<String> = match conn.query("SHOW GRANTS FOR CURRENT_USER()").await {
        Ok(rows) => rows
            .into_iter()
            .filter_map(|r| r.into_iter().next().flatten())
            .collect(),
        Err(e) => {
            return bad(
                Level::Warn,
                format!("cannot read the grants: {e}"),
                "run check as the rowhook user",
            )
        }
    };
    let text = grants.join("\n").to_ascii_uppercase();
    let global = |p: &str| {
        grants.iter().any(|g| {
            let g = g.to_ascii_uppercase();
            g.contains(" ON *.* ") && (g.contains("ALL PRIVILEGES") || g.contains(p))
        })
    };
    let mut missing = Vec::new();
    if !global("REPLICATION SLAVE") && !global("REPLICATION REPLICA") {
        missing.push("REPLICATION SLAVE");
    }
    // MariaDB 10.5 split REPLICATION CLIENT into BINLOG MONITOR (the old name still grants it).
    if !(global("REPLICATION CLIENT") || (mariadb && global("BINLOG MONITOR"))) {
        missing.push("REPLICATION CLIENT");
    }
    let select = global("SELECT") || text.contains("ON `INFORMATION_SCHEMA`");
    match (missing.is_empty(), select) {
        (true, true) => ok("privileges: replication and SELECT for information_schema"),
        (true, false) => bad(
            Level::Warn,
            "no global SELECT: information_schema shows only tables the user can read",
            "GRANT SELECT ON *.* (or on the watched schemas) TO the rowhook user",
        ),
        (false, _) => bad(
            Level::Fail,
            format!("missing privileges: {}", missing.join(", ")),
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO the rowhook user",
        ),
    }
}

async fn saved_checkpoint(
    config: &Config,
    conn: &mut Connection,
    mariadb: bool,
    their_id: Option<u32>,
) -> Vec<Finding> {
    let path = checkpoint::path(&config.state.dir);
    let saved = match checkpoint::load(&config.state.dir) {
        Ok(None) => {
            return vec![ok(format!(
                "no checkpoint at {}: the first run starts at source.start",
                path.display()
            ))]
        }
        Ok(Some(cp)) => cp,
        Err(e) => return vec![bad(Level::Fail, e.to_string(), "see above")],
    };
    let flavor = if mariadb { "mariadb" } else { "mysql" };
    let uuid = if mariadb {
        None
    } else {
        conn.query("SELECT @@GLOBAL.server_uuid")
            .await
            .ok()
            .and_then(|r| r.into_iter().next()?.into_iter().next()?)
    };
    let ours = their_id.is_some_and(|id| saved.belongs_to(flavor, id, uuid.as_deref()));
    if !ours && saved.resumable_by_gtids(flavor) {
        return vec![bad(
            Level::Warn,
            format!(
                "{} was written for {} server_id {}: run resumes on this server after its GTID set {} (failover)",
                path.display(),
                saved.flavor,
                saved.server_id,
                saved.gtid_set.as_deref().unwrap_or_default()
            ),
            "nothing, if this server took over from that one; otherwise point database.host back at it",
        )];
    }
    if !ours {
        return vec![bad(
            Level::Fail,
            format!(
                "{} was written for {} server_id {}, not this server",
                path.display(),
                saved.flavor,
                saved.server_id
            ),
            "point database.host at the server the checkpoint came from, or move the file away",
        )];
    }
    let logs = replica::binlog_files(conn).await.unwrap_or_default();
    if logs.contains(&saved.file) {
        vec![ok(format!(
            "checkpoint {}:{} is still on the server",
            saved.file, saved.pos
        ))]
    } else {
        vec![bad(
            Level::Fail,
            format!(
                "checkpoint {}:{} is no longer on the server (it has {})",
                saved.file,
                saved.pos,
                replica::describe_range(&logs)
            ),
            "restore the missing binlogs, or move the checkpoint away and set source.start (changes in between are lost)",
        )]
    }
}

/// Resolves and connects to every callback origin once (plain TCP; 3 s each).
fn callbacks(config: &Config) -> Vec<Finding> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for t in config.tasks.iter().filter(|t| t.enabled) {
        let e = match Endpoint::parse(&t.callback_url) {
            Ok(e) => e,
            Err(why) => {
                out.push(bad(
                    Level::Fail,
                    format!("task {}: {why}", t.task_id),
                    "fix callback_url",
                ));
                continue;
            }
        };
        if !seen.insert(e.origin()) {
            continue;
        }
        let addrs: Vec<_> = match (e.host.as_str(), e.port).to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(err) => {
                out.push(bad(
                    Level::Fail,
                    format!("callback host {} does not resolve: {err}", e.host),
                    "fix the host name in callback_url / callback_host, or DNS",
                ));
                continue;
            }
        };
        let reached = addrs
            .iter()
            .any(|a| std::net::TcpStream::connect_timeout(a, Duration::from_secs(3)).is_ok());
        out.push(if reached {
            ok(format!("callback {} accepts connections", e.origin()))
        } else {
            bad(
                Level::Warn,
                format!("callback {} does not accept connections now", e.origin()),
                "start the receiver; rowhook retries until it answers",
            )
        });
    }
    out
}
