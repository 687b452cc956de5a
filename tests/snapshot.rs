//! Snapshots against a real MariaDB and a real receiver: the rows a table already
//! holds arrive as `snapshot` events, merged with live changes so that a receiver
//! applying everything in arrival order ends with exactly the table.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mariadb::MariaDb;
use common::receiver::{Receiver, Reply, Request};
use common::rowhook::{source_yaml, wait_streaming, Rowhook};
use serde_json::Value;

type Verdicts = Arc<Mutex<HashMap<usize, bool>>>;

/// One load test at a time: a snapshot under a 1,000-statement/s writer and a
/// flaky receiver keeps a debug rowhook at ~0.8 of a core, with MariaDB and the
/// receiver ~0.5 more (measured alone: 82 %, 24 %, 23 %). Two at once on 2 cores
/// slowed each snapshot to a few hundred rows/s and past its 60 s bound (clean-clone
/// CI, 4 of 12 failed); one at a time each takes ~26 s.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A receiver that answers ~25 % of requests with a failure and delays the
/// others up to `max_delay_ms`; records which requests it accepted.
fn flaky_receiver(max_delay_ms: u64) -> (Receiver, Verdicts) {
    let accepted: Verdicts = Default::default();
    let verdicts = accepted.clone();
    let receiver = Receiver::start(move |r| {
        let h = (r.n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let ok = !h.is_multiple_of(4);
        verdicts.lock().unwrap().insert(r.n, ok);
        let delay = Duration::from_millis(h % max_delay_ms.max(1));
        if ok {
            Reply::Delay(delay, Box::new(Reply::Status(200)))
        } else {
            Reply::Status(503)
        }
    });
    (receiver, accepted)
}

/// The receiver's keyed view: every accepted payload applied in arrival order
/// (`id` → `(v, s)`), and how many snapshot rows it applied.
fn keyed_view(
    requests: &[Request],
    accepted: &HashMap<usize, bool>,
) -> (BTreeMap<i64, (i64, String)>, usize) {
    let mut view = BTreeMap::new();
    let mut snapshot_rows = 0;
    let row = |d: &Value| {
        (
            d["id"].as_i64().unwrap(),
            (
                d["v"].as_i64().unwrap(),
                d["s"].as_str().unwrap().to_owned(),
            ),
        )
    };
    for r in requests {
        if !accepted.get(&r.n).copied().unwrap_or(false) {
            continue;
        }
        let p = r.json();
        match p["event"].as_str().unwrap() {
            "snapshot" => {
                snapshot_rows += 1;
                let (k, v) = row(&p["data"]);
                view.insert(k, v);
            }
            "insert" => {
                let (k, v) = row(&p["data"]);
                view.insert(k, v);
            }
            "update" => {
                view.remove(&p["old_data"]["id"].as_i64().unwrap());
                let (k, v) = row(&p["new_data"]);
                view.insert(k, v);
            }
            "delete" => {
                view.remove(&p["data"]["id"].as_i64().unwrap());
            }
            other => panic!("unexpected event {other}"),
        }
    }
    (view, snapshot_rows)
}

/// Waits up to `secs` for `rowhook` to have logged `needle` `times` times.
fn wait_logged(rowhook: &Rowhook, needle: &str, times: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while rowhook.log().matches(needle).count() < times {
        assert!(
            Instant::now() < deadline,
            "{needle:?} not logged {times} time(s) within {secs} s:\n{}",
            rowhook.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn table(db: &MariaDb) -> BTreeMap<i64, (i64, String)> {
    db.sql("SELECT id, v, s FROM shop.items")
        .iter()
        .map(|r| (r[0].parse().unwrap(), (r[1].parse().unwrap(), r[2].clone())))
        .collect()
}

/// Starts a writer of single-row statements (each its own transaction) on keys
/// `1..=keys` of `shop.items`: inserts, updates, key moves and deletes, in bursts
/// of 40 paced to about 1,000 a second, until `stop`. Returns how many
/// statements it ran.
fn spawn_writer(port: u16, keys: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut next = common::seeded(0x2545_f491_4f6c_dd1d ^ keys);
        let mut statements = 0;
        let started = Instant::now();
        while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(90) {
            let due = started + Duration::from_millis(statements as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let mut batch = Vec::new();
            for _ in 0..40 {
                let k = 1 + next(keys);
                let step = statements;
                batch.push(match next(10) {
                    0..=1 => {
                        format!("INSERT IGNORE INTO shop.items VALUES ({k}, {step}, 'new {step}')")
                    }
                    2..=3 => format!(
                        "UPDATE IGNORE shop.items SET id = {}, v = {step} WHERE id = {k}",
                        1 + next(keys)
                    ),
                    4 => format!("DELETE FROM shop.items WHERE id = {k}"),
                    _ => {
                        format!("UPDATE shop.items SET v = {step}, s = 'upd {step}' WHERE id = {k}")
                    }
                });
                statements += 1;
            }
            // The server goes away when a failing test ends first.
            if common::mariadb::try_sql_at(port, &(batch.join(";\n") + ";")).is_err() {
                break;
            }
        }
        statements
    })
}

/// Waits (up to 60 s) for the receiver's keyed view to equal the table, then
/// asserts it does; returns how many snapshot rows the view applied.
fn assert_view_equals_table(db: &MariaDb, receiver: &Receiver, accepted: &Verdicts) -> usize {
    let want = table(db);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (view, snapshot_rows) = loop {
        let verdicts = accepted.lock().unwrap().clone();
        let (view, n) = keyed_view(&receiver.requests(), &verdicts);
        if view == want || Instant::now() > deadline {
            break (view, n);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let differ: Vec<_> = want
        .iter()
        .filter(|(k, v)| view.get(k) != Some(v))
        .map(|(k, v)| (k, v, view.get(k)))
        .take(5)
        .collect();
    let extra: Vec<_> = view
        .keys()
        .filter(|k| !want.contains_key(k))
        .take(5)
        .collect();
    assert!(
        view == want,
        "the receiver's view equals SELECT *: {} rows vs {}; differing {differ:?}; extra {extra:?}",
        view.len(),
        want.len()
    );
    snapshot_rows
}

/// 20,000 existing rows snapshotted in chunks of 500 while a writer inserts,
/// updates, changes keys of and deletes random rows: once the writer stops and
/// rowhook drains, the receiver's view equals `SELECT *`, value for value.
/// `method` is the task's `snapshot_method`. With `slow_reads` the snapshot is
/// started on demand with a condition that makes each row take 0.2 ms to read
/// (`SLEEP`), so every chunk's read spans ~100 ms of the writer's changes.
fn snapshot_under_live_writes(mode: common::mariadb::RowMetadata, method: &str, slow_reads: bool) {
    let _one = one_at_a_time();
    let db = MariaDb::start_with(mode);
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.items (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(40) NOT NULL);
         INSERT INTO shop.items SELECT seq, seq, CONCAT('row ', seq) FROM shop.seq_1_to_20000;",
    );
    let (receiver, accepted) = flaky_receiver(3);
    let admin = common::mariadb::free_port();
    let initial = if slow_reads { "never" } else { "initial" };
    let config = format!(
        "{}server: {{enabled: true, port: {admin}}}
dispatcher: {{max_retries: -1, retry_base_delay: 5ms, retry_max_delay: 20ms, worker_count: 16, max_inflight: 2000}}
tasks:
  - {{task_id: items, table_name: shop.items, events: [insert, update, delete], callback_url: '{}', snapshot: {initial}, snapshot_chunk: 500, snapshot_method: {method}}}
",
        source_yaml(&db),
        receiver.url("/items")
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(db.port, 22_000, stop.clone());
    if slow_reads {
        std::thread::sleep(Duration::from_millis(300));
        let (status, body) = common::loadgen::http(
            admin,
            "POST",
            "/tasks/items/snapshot",
            r#"{"where": "SLEEP(0.0002) = 0"}"#,
        );
        assert_eq!(status, 202, "{body}");
    }
    // Until the snapshot is done, then a little more.
    wait_logged(&rowhook, "snapshot done", 1, 60);
    let placed = if method == "watermarks" {
        "watermarks"
    } else {
        "position"
    };
    assert!(
        rowhook.log().contains(&format!("method=\"{placed}\""))
            || rowhook.log().contains(&format!("method={placed}")),
        "the snapshot was placed by {placed}: {}",
        rowhook.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let statements = writer.join().unwrap();
    assert!(statements > 400, "the writer ran alongside: {statements}");
    let snapshot_rows = assert_view_equals_table(&db, &receiver, &accepted);
    assert!(
        snapshot_rows >= 15_000,
        "most rows came from the snapshot: {snapshot_rows}"
    );
    // Done is recorded (with the next checkpoint write, within its 1 s interval):
    // the snapshot does not run again by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(rowhook.state_dir().join("checkpoint.json")).unwrap();
        let saved: Value = serde_json::from_str(&text).unwrap();
        if saved["snapshots"]["items"]["done"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "{saved}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn initial_snapshot_under_live_writes_ends_with_the_table() {
    snapshot_under_live_writes(common::mariadb::RowMetadata::Full, "auto", false);
}

/// The same with MINIMAL metadata: names and keys come from information_schema.
#[test]
fn initial_snapshot_under_live_writes_ends_with_the_table_minimal_metadata() {
    snapshot_under_live_writes(common::mariadb::RowMetadata::Minimal, "auto", false);
}

/// The same placed by watermarks (the binlog's end after each read; what MySQL
/// gets, as it reports no position for a consistent read) instead of MariaDB's
/// exact position, with slow reads: every key changed while a chunk was read
/// (~100 ms each) is left to the stream. Leaving only those changed after the
/// read to it ends with stale and resurrected rows.
#[test]
fn a_snapshot_by_watermarks_under_live_writes_ends_with_the_table() {
    snapshot_under_live_writes(common::mariadb::RowMetadata::Full, "watermarks", true);
}

/// Slow reads placed by MariaDB's exact position: the same equality.
#[test]
fn a_snapshot_with_slow_reads_by_position_ends_with_the_table() {
    snapshot_under_live_writes(common::mariadb::RowMetadata::Full, "position", true);
}

/// The raw JSON text of member `name` of a payload (up to the member that
/// follows it in every shape), so values are compared byte for byte.
fn raw<'a>(body: &'a str, name: &str, next: &str) -> &'a str {
    let start = body
        .find(&format!("\"{name}\":"))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        + name.len()
        + 3;
    let end = body[start..]
        .find(&format!(",\"{next}\":"))
        .unwrap_or_else(|| panic!("no {next} after {name} in {body}"));
    &body[start..start + end]
}

/// Every column type, composite string keys and ENUM/SET labels: a snapshot row
/// is byte for byte the row the stream delivered for the same data, on FULL and
/// MINIMAL servers; a 1 MB row too, and an empty table is done with no rows. A table without a primary key is refused with a clear
/// message while its task keeps streaming.
#[test]
fn snapshot_rows_render_every_type_as_the_stream_does() {
    use common::mariadb::RowMetadata;
    use common::types::{LABELS, ROWS, SCHEMA};
    for mode in [RowMetadata::Full, RowMetadata::Minimal] {
        let db = MariaDb::start_with(mode);
        db.sql(SCHEMA);
        db.sql(ROWS);
        db.sql(LABELS);
        db.sql(
            "SET time_zone = '+00:00'; SET sql_mode = '';
             INSERT INTO shop.all_types (id) VALUES (3);
             INSERT INTO shop.all_types (id, f, d) VALUES (6, 0.1, 0.1), (7, 3.4028235e38, 1e-300), (8, 1.2345678, 2.718281828459045);
             INSERT INTO shop.all_types (id, dt, dtm, ts) VALUES (4, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00');
             INSERT INTO shop.`order-2024` VALUES (7, 'y''s', 3), (-1, '', 4), (8, 'é', 5);
             CREATE TABLE shop.empty (id INT PRIMARY KEY);
             CREATE TABLE shop.big (id INT PRIMARY KEY, b LONGBLOB, t LONGTEXT);
             INSERT INTO shop.big VALUES (1, REPEAT(x'00ff', 524288), REPEAT('é', 300000)), (2, '', NULL);
             CREATE TABLE shop.zf (id INT(6) ZEROFILL PRIMARY KEY, d DECIMAL(8,2) ZEROFILL, b BIGINT UNSIGNED ZEROFILL);
             INSERT INTO shop.zf VALUES (10, 12.5, 7), (0, 0, 0), (123456, 99999.99, NULL);",
        );
        let receiver = Receiver::ok();
        let task = |id: &str, table: &str| {
            format!(
                "  - {{task_id: {id}, table_name: '{table}', events: [insert, update, delete], ordering: table, callback_url: '{}', snapshot: initial, snapshot_chunk: 2}}\n",
                receiver.url(&format!("/{id}"))
            )
        };
        let config = format!(
            "{}tasks:\n{}{}{}{}{}{}{}",
            source_yaml(&db).replace("start: latest", "start: earliest"),
            task("types", "shop.all_types"),
            task("composite", "shop.order-2024"),
            task("labels", "shop.labels"),
            task("nokey", "shop.nokey"),
            task("empty", "shop.empty"),
            task("big", "shop.big"),
            task("zerofill", "shop.zf"),
        );
        let rowhook = Rowhook::run(&config);
        wait_logged(&rowhook, "snapshot done", 6, 30);
        std::thread::sleep(Duration::from_millis(500));
        let log = rowhook.log();
        assert!(
            log.contains("table shop.nokey: it has neither a primary key nor a unique key")
                && log.contains("fix: add a primary key"),
            "{log}"
        );
        assert!(
            log.contains("snapshot done task=empty") && log.contains("rows=0"),
            "{log}"
        );
        for id in ["types", "composite", "labels", "big", "zerofill"] {
            let bodies: Vec<String> = receiver
                .requests()
                .iter()
                .filter(|r| r.path == format!("/{id}"))
                .map(|r| String::from_utf8(r.body.clone()).unwrap())
                .collect();
            // The stream's final row per key, and the snapshot's.
            let mut streamed: BTreeMap<String, String> = BTreeMap::new();
            let mut snapshot: BTreeMap<String, String> = BTreeMap::new();
            for b in &bodies {
                let key = raw(b, "primary_id", "event").to_owned();
                match raw(b, "event", "database") {
                    "\"snapshot\"" => {
                        snapshot.insert(key, raw(b, "data", "timestamp").to_owned());
                    }
                    "\"insert\"" => {
                        streamed.insert(key, raw(b, "data", "timestamp").to_owned());
                    }
                    // (No key changes here: primary_id names the row.)
                    "\"update\"" => {
                        streamed.insert(key, raw(b, "new_data", "timestamp").to_owned());
                    }
                    "\"delete\"" => {
                        streamed.remove(&key);
                    }
                    other => panic!("unexpected event {other}"),
                }
            }
            assert!(!snapshot.is_empty(), "{id}: no snapshot rows");
            assert_eq!(
                snapshot, streamed,
                "{id} ({mode:?}): snapshot rows are the streamed rows, byte for byte"
            );
        }
    }
}

/// kill -9 five times during a 30,000-row snapshot while a writer changes the
/// table: each restart resumes after the last chunk whose rows were all delivered
/// (no table is read from the start again), what is sent twice stays within what
/// was in flight or acknowledged since the last checkpoint write, and the
/// receiver's keyed view ends equal to the table.
#[test]
fn kill_9_mid_snapshot_resumes_at_the_last_done_chunk() {
    let _one = one_at_a_time();
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.items (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(40) NOT NULL);
         INSERT INTO shop.items SELECT seq, seq, CONCAT('row ', seq) FROM shop.seq_1_to_30000;",
    );
    // Slow enough that a kill lands mid-snapshot; every answer a 200.
    let accepted: Verdicts = Default::default();
    let verdicts = accepted.clone();
    let receiver = Receiver::start(move |r| {
        verdicts.lock().unwrap().insert(r.n, true);
        Reply::Delay(Duration::from_micros(300), Box::new(Reply::Status(200)))
    });
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        "{}state: {{dir: '{}', checkpoint_interval: 200ms}}
dispatcher: {{worker_count: 4, max_inflight: 1000}}
tasks:
  - {{task_id: items, table_name: shop.items, events: [insert, update, delete], callback_url: '{}', snapshot: initial, snapshot_chunk: 500}}
",
        source_yaml(&db),
        state.path().display(),
        receiver.url("/items")
    );
    let snapshot_rows = |r: &Receiver| {
        r.requests()
            .iter()
            .filter(|q| q.json()["event"] == "snapshot")
            .count()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let writer = spawn_writer(db.port, 32_000, stop.clone());
    let mut resumed = 0;
    for kill in 1..=5 {
        let mut rowhook = Rowhook::run(&config);
        let deadline = Instant::now() + Duration::from_secs(60);
        while snapshot_rows(&receiver) < kill * 4_000 {
            assert!(
                Instant::now() < deadline,
                "stuck before kill {kill}:\n{}",
                rowhook.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = rowhook.log();
        assert!(!log.contains("snapshot done"), "killed too late: {log}");
        resumed += usize::from(log.contains("resumed=true"));
        rowhook.kill9();
    }
    assert_eq!(resumed, 4, "every restart resumed the saved progress");
    let rowhook = Rowhook::run(&config);
    wait_logged(&rowhook, "snapshot done", 1, 60);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = snapshot_rows(&receiver);
    let _ = assert_view_equals_table(&db, &receiver, &accepted);
    // The table held 30,000 rows (the writer moves some in and out); read from
    // the start again, each restart would add thousands of rows to this.
    let repeated = total.saturating_sub(30_000);
    eprintln!(
        "kill -9 x5 mid-snapshot under writes: {total} snapshot rows sent, {repeated} over 30,000"
    );
    assert!(
        repeated < 5 * 1_500,
        "{total} snapshot rows for a 30,000-row table over 5 kills"
    );
}

/// On demand, from the CLI against a running instance: a filtered snapshot runs to
/// its end and the verb says so (exit 0); wrong requests are refused with what
/// is wrong (exit 2), a failing one reports why (exit 1), nothing half-started.
#[test]
fn rowhook_snapshot_runs_on_demand_and_refuses_clearly() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.items (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(40) NOT NULL);
         INSERT INTO shop.items SELECT seq, seq, CONCAT('row ', seq) FROM shop.seq_1_to_5000;",
    );
    let receiver = Receiver::ok();
    let admin = common::mariadb::free_port();
    let config = format!(
        "{}server: {{enabled: true, port: {admin}, token: sesame}}
tasks:
  - {{task_id: items, table_name: shop.items, events: [insert, update, delete], callback_url: '{}', snapshot_chunk: 300}}
",
        source_yaml(&db),
        receiver.url("/items")
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    let url = format!("http://127.0.0.1:{admin}");
    let snapshot = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rowhook"))
            .arg("snapshot")
            .args(args)
            .args(["--admin", &url])
            .env_remove("ROWHOOK_ADMIN_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // Nothing runs without the token, for an unknown task, or to cancel.
    let (code, out) = snapshot(&["items"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("Authorization"), "{out}");
    let (code, out) = snapshot(&["nosuch", "--token", "sesame"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("no task \"nosuch\""), "{out}");
    let (code, out) = snapshot(&["items", "--token", "sesame", "--cancel"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("no snapshot of task \"items\" is running"),
        "{out}"
    );
    // A table the task does not watch, and a condition the server rejects.
    let (code, out) = snapshot(&["items", "--token", "sesame", "--table", "shop.other"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not one of the task's tables"), "{out}");
    let (code, out) = snapshot(&["items", "--token", "sesame", "--where", "v >>> nonsense"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("failed") && out.contains("SQL syntax"),
        "{out}"
    );
    // /health says so, and stays UP: the task streams on.
    let (status, health) = common::loadgen::http(admin, "GET", "/health", "");
    assert_eq!(status, 200, "{health}");
    assert!(
        health.contains("snapshot of task items failed") && health.contains("SQL syntax"),
        "{health}"
    );
    assert!(
        receiver.requests().is_empty(),
        "nothing was sent by the refused ones"
    );
    // The real one.
    let (code, out) = snapshot(&[
        "items",
        "--token",
        "sesame",
        "--table",
        "items",
        "--where",
        "id % 5 = 0",
    ]);
    assert_eq!(code, Some(0), "{out}\n{}", rowhook.log());
    assert!(out.contains("done: 1000 rows"), "{out}");
    let got = receiver.wait_until(Duration::from_secs(10), |r| r.len() >= 1000);
    let ids: std::collections::BTreeSet<i64> = got
        .iter()
        .map(|r| r.json())
        .inspect(|p| assert_eq!(p["event"], "snapshot"))
        .map(|p| p["data"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=1000).map(|n| n * 5).collect());
    // /tasks shows the finished snapshot.
    let tasks = common::loadgen::http(admin, "GET", "/tasks/items", "").1;
    let task: Value = serde_json::from_str(&tasks).unwrap();
    assert_eq!(task["snapshot"]["state"], "done", "{task}");
    assert_eq!(task["snapshot"]["rows"], 1000, "{task}");
    let metrics = common::loadgen::http(admin, "GET", "/metrics", "").1;
    assert!(
        metrics.contains("rowhook_snapshot_rows{task=\"items\"} 1000"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rowhook_snapshot_running{task=\"items\"} 0"),
        "{metrics}"
    );
}

/// A chunk query reads a range of the primary key in key order (no full scan, no
/// sort), for a composite key resumed in its middle; with a `--where` too.
#[test]
fn chunk_queries_are_range_scans_of_the_primary_key() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.c (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b));
         INSERT INTO shop.c SELECT seq % 100, CONCAT('k', seq), seq FROM shop.seq_1_to_20000;
         ANALYZE TABLE shop.c;",
    );
    let select = ["`a`".to_owned(), "`b`".to_owned(), "`v`".to_owned()];
    let keys = ["a".to_owned(), "b".to_owned()];
    let after = ["50".to_owned(), "'k5050'".to_owned()];
    for filter in [None, Some("v % 7 = 0")] {
        let q =
            rowhook::snapshot::chunk_query("shop", "c", &select, &keys, Some(&after), filter, 500);
        let plan = db.sql(&format!("EXPLAIN {q}"));
        // id, select_type, table, type, possible_keys, key, key_len, ref, rows, Extra
        let row = &plan[0];
        assert_eq!(
            (row[3].as_str(), row[5].as_str()),
            ("range", "PRIMARY"),
            "{q}\n{plan:?}"
        );
        assert!(!row[9].contains("filesort"), "{q}\n{plan:?}");
        // And it returns what keyset order says comes next: keys (50, 'k5050') and
        // on, 'k5150' the next of a = 50 (its first with v % 7 = 0 is 'k5250').
        let first = db.sql(&q.replace("`a`, `b`, `v`", "CONCAT(`a`, ':', `b`)"));
        let want = if filter.is_some() {
            "50:k5250"
        } else {
            "50:k5150"
        };
        assert_eq!(first[0][0], want, "{q}");
    }
}

/// `snapshot_rate` paces the reads: 3,000 rows at 1,500 rows/s take about 2 s.
#[test]
fn snapshot_rate_paces_the_reads() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.items (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(40) NOT NULL);
         INSERT INTO shop.items SELECT seq, seq, CONCAT('row ', seq) FROM shop.seq_1_to_3000;",
    );
    let receiver = Receiver::ok();
    let config = format!(
        "{}tasks:
  - {{task_id: items, table_name: shop.items, events: [insert], callback_url: '{}', snapshot: initial, snapshot_chunk: 100, snapshot_rate: 1500, batch_size: 50}}
",
        source_yaml(&db),
        receiver.url("/items")
    );
    let rowhook = Rowhook::run(&config);
    let got = receiver.wait_until(Duration::from_secs(20), |r| {
        r.iter()
            .map(|q| q.json().as_array().map_or(1, Vec::len))
            .sum::<usize>()
            >= 3000
    });
    let spread = got.last().unwrap().at - got[0].at;
    assert!(
        spread >= Duration::from_millis(1700) && spread < Duration::from_secs(6),
        "3,000 rows at 1,500/s arrived over {spread:?}\n{}",
        rowhook.log()
    );
}

/// A user that may replicate but not SELECT the task's table: the snapshot stops
/// with what to grant, and the task still streams.
#[test]
fn a_user_without_select_gets_a_clear_snapshot_error_and_still_streams() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.items (id INT PRIMARY KEY, v INT NOT NULL);
         INSERT INTO shop.items VALUES (1, 1);
         CREATE USER 'repl'@'%' IDENTIFIED BY 'pw';
         GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'%';",
    );
    let receiver = Receiver::ok();
    let config = format!(
        "{}tasks:
  - {{task_id: items, table_name: shop.items, events: [insert], callback_url: '{}', snapshot: initial}}
",
        source_yaml(&db).replace("user: root, password: ''", "user: repl, password: pw"),
        receiver.url("/items")
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    wait_logged(&rowhook, "snapshot stopped", 1, 20);
    let log = rowhook.log();
    assert!(
        log.contains("no table this user can see matches") && log.contains("GRANT SELECT"),
        "{log}"
    );
    db.sql("INSERT INTO shop.items VALUES (2, 2)");
    let got = receiver.wait_until(Duration::from_secs(10), |r| !r.is_empty());
    assert_eq!(got[0].json()["event"], "insert");
    assert_eq!(got.len(), 1, "no snapshot row was sent");
}

/// A table without a primary key but with a unique key of NOT NULL columns: read
/// in that key's order and matched with the stream's changes by that key's values
/// — the view keyed by it equals the table after a live writer, including changes
/// of the key itself.
#[test]
fn a_unique_key_stands_in_for_a_missing_primary_key() {
    let _one = one_at_a_time();
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.u (code VARCHAR(20) NOT NULL, v INT NOT NULL, note VARCHAR(20) NULL, UNIQUE KEY by_code (code));
         INSERT INTO shop.u SELECT CONCAT('c', seq), seq, NULL FROM shop.seq_1_to_6000;",
    );
    let (receiver, accepted) = flaky_receiver(2);
    let config = format!(
        "{}dispatcher: {{max_retries: -1, retry_base_delay: 5ms, retry_max_delay: 20ms, worker_count: 8, max_inflight: 1000}}
tasks:
  - {{task_id: u, table_name: shop.u, events: [insert, update, delete], callback_url: '{}', snapshot: initial, snapshot_chunk: 200}}
",
        source_yaml(&db),
        receiver.url("/u")
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, port) = (stop.clone(), db.port);
        std::thread::spawn(move || {
            let mut next = common::seeded(0x9e37_79b9_7f4a_7c15);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                let batch: Vec<String> = (0..40)
                    .map(|_| {
                        n += 1;
                        let k = 1 + next(6_500);
                        match next(6) {
                            0 => format!("INSERT IGNORE INTO shop.u VALUES ('c{k}', {n}, 'new')"),
                            1 => format!("UPDATE IGNORE shop.u SET code = 'c{}', v = {n} WHERE code = 'c{k}'", 1 + next(6_500)),
                            2 => format!("DELETE FROM shop.u WHERE code = 'c{k}'"),
                            _ => format!("UPDATE shop.u SET v = {n}, note = 'upd' WHERE code = 'c{k}'"),
                        }
                    })
                    .collect();
                common::mariadb::sql_at(port, &(batch.join(";\n") + ";"));
            }
            n
        })
    };
    wait_logged(&rowhook, "snapshot done", 1, 60);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let statements = writer.join().unwrap();
    assert!(statements >= 200, "the writer ran alongside: {statements}");
    let want: BTreeMap<String, (i64, String)> = db
        .sql("SELECT code, v, COALESCE(note, 'NULL') FROM shop.u")
        .into_iter()
        .map(|r| (r[0].clone(), (r[1].parse().unwrap(), r[2].clone())))
        .collect();
    let row = |d: &Value| {
        (
            d["code"].as_str().unwrap().to_owned(),
            (
                d["v"].as_i64().unwrap(),
                d["note"].as_str().unwrap_or("NULL").to_owned(),
            ),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let (view, snapshot_rows) = loop {
        let verdicts = accepted.lock().unwrap().clone();
        let mut view = BTreeMap::new();
        let mut snapshot_rows = 0;
        for r in receiver.requests() {
            if !verdicts.get(&r.n).copied().unwrap_or(false) {
                continue;
            }
            let p = r.json();
            // The server promotes the first unique NOT NULL key to the table's
            // primary key (COLUMN_KEY 'PRI', and so in TABLE_MAPs): snapshot and
            // stream name rows by it alike.
            let image = if p["event"] == "update" {
                &p["new_data"]
            } else {
                &p["data"]
            };
            assert_eq!(p["primary_id"], image["code"], "{p}");
            match p["event"].as_str().unwrap() {
                "snapshot" | "insert" => {
                    snapshot_rows += usize::from(p["event"] == "snapshot");
                    let (k, v) = row(&p["data"]);
                    view.insert(k, v);
                }
                "update" => {
                    view.remove(p["old_data"]["code"].as_str().unwrap());
                    let (k, v) = row(&p["new_data"]);
                    view.insert(k, v);
                }
                "delete" => {
                    view.remove(p["data"]["code"].as_str().unwrap());
                }
                other => panic!("unexpected event {other}"),
            }
        }
        if view == want || Instant::now() > deadline {
            break (view, snapshot_rows);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let differ: Vec<_> = want
        .iter()
        .filter(|(k, v)| view.get(*k) != Some(v))
        .take(5)
        .collect();
    assert!(
        view == want,
        "view {} rows vs table {}; differing {differ:?}",
        view.len(),
        want.len()
    );
    assert!(snapshot_rows >= 4_000, "{snapshot_rows}");
}

/// A binlog rotated while rowhook streams (FLUSH BINARY LOGS, as a size limit or
/// a restart does) and then idle: a snapshot's reads are at a position in the new
/// file, past events that belong to no transaction; the stream has passed them
/// too, so the chunks go in. By position and by watermarks (the binlog's end is
/// then past the new file's header events).
#[test]
fn a_snapshot_after_a_rotation_on_an_idle_server_finishes() {
    snapshot_after_a_rotation("position");
    snapshot_after_a_rotation("watermarks");
}

fn snapshot_after_a_rotation(method: &str) {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.items (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(40) NOT NULL);
         INSERT INTO shop.items SELECT seq, seq, CONCAT('row ', seq) FROM shop.seq_1_to_1000;",
    );
    let receiver = Receiver::ok();
    let admin = common::mariadb::free_port();
    let config = format!(
        "{}server: {{enabled: true, port: {admin}}}
tasks:
  - {{task_id: items, table_name: shop.items, events: [insert], callback_url: '{}', snapshot_chunk: 300, snapshot_method: {method}}}
",
        source_yaml(&db),
        receiver.url("/items")
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    db.sql("FLUSH BINARY LOGS");
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = common::loadgen::http(admin, "POST", "/tasks/items/snapshot", "");
    assert_eq!(status, 202, "{body}");
    wait_logged(&rowhook, "snapshot done", 1, 15);
    let got = receiver.wait_until(Duration::from_secs(10), |r| r.len() >= 1000);
    assert_eq!(got.len(), 1000);
}
