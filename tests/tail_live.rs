//! `rowhook tail --config` against a real MariaDB over the replication protocol:
//! rows committed after start are printed; the stream survives a server crash and
//! restart without losing rows; unusable servers and bad credentials fail clearly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use common::mariadb::{MariaDb, RowMetadata};
use common::rowhook::wait_streaming;
use serde_json::Value;

struct Tail {
    child: Child,
    lines: Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Tail {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(db: &MariaDb, password: &str) -> String {
    format!(
        "database: {{host: 127.0.0.1, port: {}, user: root, password: '{password}', server_id: 4242, tls: disabled}}
source: {{start: latest, heartbeat: 1s}}
log: {{level: info}}
tasks:
  - {{task_id: all, table_name: 'shop.*', events: [insert, update, delete], callback_url: 'http://127.0.0.1:9/x'}}
",
        db.port
    )
}

fn spawn_tail(config_text: &str) -> Tail {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config_text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rowhook"))
        .args(["tail", "--config"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Tail {
        child,
        lines: rx,
        _dir: dir,
    }
}

/// Collects payloads until `n` arrived or `timeout` passed.
fn collect(tail: &Tail, n: usize, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tail.lines.recv_timeout(left) {
            Ok(line) => out.push(serde_json::from_str(&line).unwrap()),
            Err(_) => break,
        }
    }
    out
}

impl Tail {
    /// Stops the process and returns what it logged.
    fn kill_and_read_log(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).unwrap();
        }
        err
    }

    /// Waits for the process to exit by itself; returns its exit code and stderr.
    fn exit_within(&mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "rowhook did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).unwrap();
        }
        (status.code(), err)
    }
}

#[test]
fn streams_rows_committed_after_start() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO shop.t VALUES (0, 'before');");
    let tail = spawn_tail(&config(&db, ""));
    wait_streaming(&db);
    db.sql("INSERT INTO shop.t VALUES (1, 'a'), (2, 'b'); UPDATE shop.t SET v = 'c' WHERE id = 1; DELETE FROM shop.t WHERE id = 2;");
    let rows = collect(&tail, 4, Duration::from_secs(20));
    let summary: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["event"].as_str().unwrap().to_owned(),
                r["primary_id"].as_i64().unwrap(),
            )
        })
        .collect();
    // `start: latest`: the row written before rowhook started is not replayed.
    assert_eq!(
        summary,
        [
            ("insert".into(), 1),
            ("insert".into(), 2),
            ("update".into(), 1),
            ("delete".into(), 2)
        ]
    );
    assert_eq!(rows[2]["new_data"]["v"], "c");
}

#[test]
fn survives_server_crash_and_restart() {
    let mut db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (n INT PRIMARY KEY);");
    let tail = spawn_tail(&config(&db, ""));
    wait_streaming(&db);
    for n in 1..=50 {
        db.sql(&format!("INSERT INTO shop.seq VALUES ({n})"));
    }
    let first = collect(&tail, 50, Duration::from_secs(20));
    assert_eq!(first.len(), 50);
    db.restart();
    for n in 51..=100 {
        db.sql(&format!("INSERT INTO shop.seq VALUES ({n})"));
    }
    let second = collect(&tail, 50, Duration::from_secs(60));
    // Every row after the crash arrives; resuming at a transaction boundary may
    // repeat the last rows seen, never skip one.
    let mut seen: Vec<i64> = first
        .iter()
        .chain(&second)
        .map(|r| r["data"]["n"].as_i64().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        (1..=100).collect::<Vec<_>>(),
        "rows lost across the restart"
    );
}

#[test]
fn wrong_password_is_a_clear_error() {
    let db = MariaDb::start();
    db.sql("CREATE USER 'repl'@'%' IDENTIFIED BY 'right'; GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'repl'@'%';");
    let text = config(&db, "wrong").replace("user: root", "user: repl");
    let (code, err) = spawn_tail(&text).exit_within(Duration::from_secs(20));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("1045") && err.contains("database.password"),
        "{err}"
    );
}

#[test]
fn statement_format_server_is_refused_with_a_fix() {
    let db = MariaDb::start();
    db.sql("SET GLOBAL binlog_format = 'STATEMENT'");
    let (code, err) = spawn_tail(&config(&db, "")).exit_within(Duration::from_secs(20));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("binlog_format is STATEMENT")
            && err.contains("SET GLOBAL binlog_format = 'ROW'"),
        "{err}"
    );
}

#[test]
fn information_schema_fills_names_keys_and_mariadb_json() {
    let db = MariaDb::start_with(RowMetadata::Minimal);
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.doc (k INT, id INT, body JSON, PRIMARY KEY (id, k));");
    let tail = spawn_tail(&config(&db, ""));
    wait_streaming(&db);
    db.sql(r#"INSERT INTO shop.doc VALUES (1, 2, '{"a": [1, 2]}')"#);
    // DDL mid-stream: the cache is refreshed and the new column is named.
    db.sql("ALTER TABLE shop.doc ADD COLUMN extra VARCHAR(5) DEFAULT 'x'; INSERT INTO shop.doc (k, id, body) VALUES (3, 4, 'null');");
    let rows = collect(&tail, 2, Duration::from_secs(20));
    assert_eq!(rows.len(), 2);
    // MINIMAL metadata has neither names nor the key; information_schema does.
    assert_eq!(rows[0]["data"]["k"], 1);
    assert_eq!(rows[0]["primary_id"], serde_json::json!({"k": 1, "id": 2}));
    // MariaDB's JSON is LONGTEXT in the binlog; the schema says JSON: embedded.
    assert_eq!(rows[0]["data"]["body"], serde_json::json!({"a": [1, 2]}));
    assert_eq!(rows[1]["data"]["extra"], "x");
    assert_eq!(rows[1]["data"]["body"], Value::Null);
}

#[test]
fn silent_link_is_detected_by_missing_heartbeats() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (n INT PRIMARY KEY);");
    let mut tail = spawn_tail(&config(&db, ""));
    wait_streaming(&db);
    db.sql("INSERT INTO shop.seq VALUES (1), (2), (3)");
    assert_eq!(collect(&tail, 3, Duration::from_secs(20)).len(), 3);
    // Heartbeat is 1 s: after 3 s of silence the link counts as dead.
    db.freeze();
    std::thread::sleep(Duration::from_secs(5));
    db.thaw();
    db.sql("INSERT INTO shop.seq VALUES (4), (5)");
    let after = collect(&tail, 2, Duration::from_secs(60));
    let ns: Vec<i64> = after
        .iter()
        .map(|r| r["data"]["n"].as_i64().unwrap())
        .collect();
    assert!(ns.contains(&4) && ns.contains(&5), "{ns:?}");
    let log = tail.kill_and_read_log();
    assert!(
        log.contains("heartbeats missing") && log.contains("reconnecting"),
        "{log}"
    );
}

#[test]
fn missing_replication_privileges_name_the_grant() {
    let db = MariaDb::start();
    db.sql("CREATE USER 'reader'@'%' IDENTIFIED BY 'pw'; GRANT SELECT ON *.* TO 'reader'@'%';");
    let text = config(&db, "pw").replace("user: root", "user: reader");
    let (code, err) = spawn_tail(&text).exit_within(Duration::from_secs(20));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("1227") && err.contains("GRANT REPLICATION SLAVE, REPLICATION CLIENT"),
        "{err}"
    );
}

#[test]
fn start_at_an_explicit_file_and_position() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY); INSERT INTO shop.t VALUES (1);");
    let status = db.sql("SHOW MASTER STATUS");
    let (file, pos) = (&status[0][0], &status[0][1]);
    db.sql("INSERT INTO shop.t VALUES (2); INSERT INTO shop.t VALUES (3);");
    let text = config(&db, "").replace(
        "start: latest",
        &format!("start: {{file: {file}, pos: {pos}}}"),
    );
    let tail = spawn_tail(&text);
    let rows = collect(&tail, 2, Duration::from_secs(20));
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| r["primary_id"].as_i64().unwrap())
        .collect();
    // Exactly the rows written after that position: not 1, and nothing missing.
    assert_eq!(ids, [2, 3]);
}

#[test]
fn server_without_binary_log_is_refused_with_a_fix() {
    let db = MariaDb::start_with_options(RowMetadata::Full, &["--skip-log-bin".to_owned()]);
    assert_eq!(db.value("SELECT @@log_bin"), "0");
    let (code, err) = spawn_tail(&config(&db, "")).exit_within(Duration::from_secs(20));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("binary logging is off") && err.contains("log-bin"),
        "{err}"
    );
}
