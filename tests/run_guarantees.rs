//! What `rowhook run` promises across stops: a graceful stop drains and writes the
//! checkpoint (nothing repeats on restart); kill -9, again and again, loses nothing;
//! a checkpoint whose position the server no longer has, or that belongs to another
//! server and has no GTID state, stops with a clear error instead of skipping; with
//! its GTID state it resumes on a replica that took over.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::mariadb::{MariaDb, RowMetadata};
use common::receiver::{Receiver, Reply, Request};
use common::rowhook::{source_yaml, wait_streaming, Rowhook};

fn config(db: &MariaDb, receiver: &Receiver, state: &Path, extra: &str) -> String {
    format!(
        "{}state: {{dir: '{}', checkpoint_interval: 200ms}}
{extra}tasks:
  - {{task_id: seq, table_name: shop.seq, events: [insert], callback_url: '{}'}}
",
        source_yaml(db),
        state.display(),
        receiver.url("/seq")
    )
}

/// A MariaDB with table shop.seq, an always-200 receiver, a state directory and
/// the config text joining them.
fn shop_seq() -> (MariaDb, Receiver, tempfile::TempDir, String) {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (id INT PRIMARY KEY);");
    let receiver = Receiver::ok();
    let state = tempfile::tempdir().unwrap();
    let text = config(&db, &receiver, state.path(), "");
    (db, receiver, state, text)
}

/// Delivery count per row id.
fn counts(requests: &[Request]) -> HashMap<i64, usize> {
    let mut m = HashMap::new();
    for r in requests {
        *m.entry(r.json()["primary_id"].as_i64().unwrap())
            .or_default() += 1;
    }
    m
}

fn wait_exit(rowhook: &mut Rowhook) -> (Option<i32>, String) {
    rowhook.exit_within(Duration::from_secs(30))
}

#[test]
fn graceful_stop_writes_the_checkpoint_and_a_restart_repeats_nothing() {
    let (db, receiver, state, text) = shop_seq();
    let mut first = Rowhook::run(&text);
    wait_streaming(&db);
    db.sql("INSERT INTO shop.seq SELECT seq FROM shop.seq_1_to_100");
    receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 100);
    first.terminate();
    let (code, log) = wait_exit(&mut first);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("checkpoint written"), "{log}");
    let cp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.path().join("checkpoint.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cp["flavor"], "mariadb");
    assert!(cp["pos"].as_u64().unwrap() > 4);

    // Changes made while rowhook is down are delivered after the restart.
    db.sql("INSERT INTO shop.seq SELECT seq FROM shop.seq_101_to_200");
    let started = Instant::now();
    let _second = Rowhook::run(&text);
    let all = receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 200);
    let first_new = all[100].at.duration_since(started);
    std::thread::sleep(Duration::from_millis(500));
    let all = receiver.requests();
    let c = counts(&all);
    assert_eq!(c.len(), 200, "every row delivered");
    assert!(
        c.values().all(|&n| n == 1),
        "a graceful stop repeats nothing: {:?}",
        c.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
    eprintln!("restart to first delivery: {first_new:?}");
}

/// SIGTERM while a 2,000-row transaction is being read (the in-flight budget of
/// 300 holds most of it back): the stop reads on to its commit, so its rows
/// already sent are covered by the checkpoint and a restart repeats none.
#[test]
fn a_graceful_stop_inside_a_transaction_finishes_it_and_repeats_nothing() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (id INT PRIMARY KEY);");
    let receiver =
        Receiver::start(|_| Reply::Delay(Duration::from_millis(2), Box::new(Reply::Status(200))));
    let state = tempfile::tempdir().unwrap();
    let text = config(
        &db,
        &receiver,
        state.path(),
        "dispatcher: {max_inflight: 300}\n",
    );
    let mut first = Rowhook::run(&text);
    wait_streaming(&db);
    db.sql("INSERT INTO shop.seq SELECT seq FROM shop.seq_1_to_2000");
    receiver.wait_until(Duration::from_secs(30), |r| !r.is_empty());
    first.terminate();
    let (code, log) = wait_exit(&mut first);
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("stopping inside a transaction"), "{log}");
    let before = receiver.requests().len();
    assert_eq!(
        before, 2000,
        "the stop delivered the whole transaction: {log}"
    );
    let _second = Rowhook::run(&text);
    db.sql("INSERT INTO shop.seq VALUES (2001)");
    receiver.wait_until(Duration::from_secs(30), |r| r.len() > before);
    std::thread::sleep(Duration::from_millis(500));
    let all = receiver.requests();
    let c = counts(&all);
    assert_eq!(c.len(), 2001, "every row delivered");
    let repeated: Vec<_> = c.iter().filter(|(_, &n)| n > 1).collect();
    assert!(repeated.is_empty(), "{} rows sent twice", repeated.len());
}

#[test]
fn repeated_kill_9_under_load_loses_nothing() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (id INT PRIMARY KEY);");
    let receiver =
        Receiver::start(|_| Reply::Delay(Duration::from_micros(300), Box::new(Reply::Status(200))));
    let state = tempfile::tempdir().unwrap();
    let text = config(&db, &receiver, state.path(), "");
    let mut first = Rowhook::run(&text);
    wait_streaming(&db);
    // Rows are committed one per transaction, all the time, by a background writer.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicI64::new(0));
    let writer = {
        let (stop, written, port) = (stop.clone(), written.clone(), db.port);
        std::thread::spawn(move || {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                // One client run commits a burst of 20 single-row transactions.
                let sql: String = (n + 1..=n + 20)
                    .map(|i| format!("INSERT INTO shop.seq VALUES ({i});"))
                    .collect();
                let ok = std::process::Command::new("mariadb")
                    .args([
                        "--protocol=tcp",
                        "-h127.0.0.1",
                        &format!("-P{port}"),
                        "-uroot",
                        "-e",
                        &sql,
                    ])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                assert!(ok, "insert failed");
                n += 20;
                written.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let mut kills = Vec::new();
    for k in 0..10u64 {
        // 300..1200 ms of life, varied.
        std::thread::sleep(Duration::from_millis(300 + (k * 337) % 900));
        first.kill9();
        kills.push(Instant::now());
        first = Rowhook::run(&text);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = written.load(Ordering::Relaxed);
    let all = receiver.wait_until(Duration::from_secs(60), |r| {
        let c = counts(r);
        c.len() as i64 >= total
    });
    let c = counts(&all);
    let missing: Vec<i64> = (1..=total).filter(|i| !c.contains_key(i)).collect();
    assert!(missing.is_empty(), "lost rows: {missing:?}");
    let duplicates: usize = c.values().map(|n| n - 1).sum();
    eprintln!(
        "{total} rows, 10 kills, {} deliveries, {duplicates} duplicates ({:.1} per kill)",
        all.len(),
        duplicates as f64 / 10.0
    );
    // The bound: a kill repeats only rows acknowledged after the last checkpoint
    // write, i.e. within checkpoint_interval (200 ms) plus the keeper's tick
    // (50 ms) and the write itself before the kill, plus what was in flight.
    // So every repeated row was first delivered at most that long before a kill.
    //
    // Which run of rowhook sent a request is told by its connection: a
    // connection belongs to one process, and its first request came well before
    // that process was killed. The request's own time can not tell it, because the
    // receiver may read a request the killed process had already written only
    // after the kill instant was recorded.
    let mut opened: HashMap<usize, Instant> = HashMap::new();
    for r in &all {
        opened.entry(r.conn).or_insert(r.at);
    }
    let run_of = |r: &Request| kills.iter().filter(|&&k| k < opened[&r.conn]).count();
    let mut first_seen: HashMap<i64, &Request> = HashMap::new();
    let mut worst = Duration::ZERO;
    for r in &all {
        let id = r.json()["primary_id"].as_i64().unwrap();
        let Some(first) = first_seen.get(&id) else {
            first_seen.insert(id, r);
            continue;
        };
        let (run, again) = (run_of(first), run_of(r));
        assert!(
            again > run,
            "row {id} repeated by the same run of rowhook (run {run}): first #{} on conn {}, again #{} on conn {} (run {again})",
            first.n,
            first.conn,
            r.n,
            r.conn
        );
        worst = worst.max(kills[run].saturating_duration_since(first.at));
    }
    eprintln!("oldest repeated delivery: {worst:?} before its kill");
    assert!(
        worst <= Duration::from_millis(200 + 50 + 250),
        "a row delivered {worst:?} before a kill was repeated: the checkpoint lags more than checkpoint_interval"
    );
    drop(first);
}

#[test]
fn kill_during_a_ten_thousand_row_transaction_loses_nothing() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (id INT PRIMARY KEY);");
    let receiver =
        Receiver::start(|_| Reply::Delay(Duration::from_micros(200), Box::new(Reply::Status(200))));
    let state = tempfile::tempdir().unwrap();
    let text = config(
        &db,
        &receiver,
        state.path(),
        "dispatcher: {worker_count: 2}\n",
    );
    let mut first = Rowhook::run(&text);
    wait_streaming(&db);
    db.sql("INSERT INTO shop.seq SELECT seq FROM shop.seq_1_to_10000");
    receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 1000);
    first.kill9();
    let partial = receiver.requests().len();
    assert!(
        partial < 10_000,
        "the kill came mid-transaction ({partial} delivered)"
    );
    let _second = Rowhook::run(&text);
    let all = receiver.wait_until(Duration::from_secs(60), |r| counts(r).len() >= 10_000);
    let c = counts(&all);
    assert_eq!(c.len(), 10_000);
    // The transaction was never complete, so it is sent again from its start.
    let repeated = c.values().filter(|&&n| n > 1).count();
    eprintln!("{partial} delivered before the kill; {repeated} repeated after the restart");
    assert!(
        repeated >= partial.saturating_sub(2 * 2),
        "the unfinished transaction is replayed"
    );
}

#[test]
fn a_purged_checkpoint_position_stops_with_the_options() {
    let (db, receiver, _state, text) = shop_seq();
    let mut first = Rowhook::run(&text);
    wait_streaming(&db);
    db.sql("INSERT INTO shop.seq VALUES (1)");
    receiver.wait_until(Duration::from_secs(30), |r| !r.is_empty());
    first.terminate();
    assert_eq!(wait_exit(&mut first).0, Some(0));
    // While rowhook is down, the binlog holding its position goes away.
    db.sql("INSERT INTO shop.seq VALUES (2); FLUSH BINARY LOGS;");
    let current = db.sql("SHOW MASTER STATUS")[0][0].clone();
    // The server keeps a binlog a dump thread still reads; the stopped replica's
    // thread may take a moment to notice it is gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        db.sql(&format!("PURGE BINARY LOGS TO '{current}'"));
        if db.sql("SHOW BINARY LOGS")[0][0] == current {
            break;
        }
        assert!(Instant::now() < deadline, "the server keeps the old binlog");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut second = Rowhook::run(&text);
    let (code, log) = wait_exit(&mut second);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("is no longer on the server"), "{log}");
    assert!(log.contains(&format!("the server has {current}")), "{log}");
    assert!(log.contains("fix:"), "{log}");
    assert_eq!(
        receiver.requests().len(),
        1,
        "nothing skipped ahead silently"
    );
}

/// Runs rowhook until `rows` inserts are delivered, stops it gracefully, and
/// returns the checkpoint's position.
fn deliver_then_stop(db: &MariaDb, receiver: &Receiver, text: &str, rows: usize) -> u64 {
    let mut first = Rowhook::run(text);
    wait_streaming(db);
    for n in 1..=rows {
        db.sql(&format!("INSERT INTO shop.seq VALUES ({n})"));
    }
    receiver.wait_until(Duration::from_secs(30), |r| r.len() >= rows);
    first.terminate();
    let (code, log) = wait_exit(&mut first);
    assert_eq!(code, Some(0), "{log}");
    let cp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(checkpoint_path(text)).unwrap()).unwrap();
    cp["pos"].as_u64().unwrap()
}

fn checkpoint_path(text: &str) -> std::path::PathBuf {
    let dir = text
        .split("dir: '")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .unwrap();
    Path::new(dir).join("checkpoint.json")
}

#[test]
fn a_reset_binlog_that_grew_past_the_checkpoint_is_refused_not_skipped() {
    let (db, receiver, _state, text) = shop_seq();
    let pos = deliver_then_stop(&db, &receiver, &text, 5);
    // While rowhook is down the binlog starts over, and the new binlog.000001
    // grows past the saved position with other transactions.
    db.sql("RESET MASTER");
    let mut n = 1000;
    loop {
        db.sql(&format!("INSERT INTO shop.seq VALUES ({}), ({})", n, n + 1));
        n += 2;
        let end: u64 = db.sql("SHOW MASTER STATUS")[0][1].parse().unwrap();
        if end > pos + 2000 {
            break;
        }
    }
    let mut second = Rowhook::run(&text);
    let (code, log) = wait_exit(&mut second);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("cannot resume at binlog.000001:"), "{log}");
    assert!(log.contains("RESET MASTER"), "{log}");
    assert!(log.contains("fix:"), "{log}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        receiver.requests().len(),
        5,
        "no row after the old position was sent"
    );
}

#[test]
fn a_checkpoint_past_the_end_of_a_reset_binlog_says_so() {
    let (db, receiver, _state, text) = shop_seq();
    deliver_then_stop(&db, &receiver, &text, 5);
    db.sql("RESET MASTER; INSERT INTO shop.seq VALUES (1000);");
    let mut second = Rowhook::run(&text);
    let (code, log) = wait_exit(&mut second);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("past the end of the server's binlog.000001"),
        "{log}"
    );
    assert!(!log.contains("purged"), "{log}");
}

#[test]
fn a_clean_server_restart_is_a_reconnect_not_an_exit() {
    let mut db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (id INT PRIMARY KEY);");
    let receiver = Receiver::ok();
    let state = tempfile::tempdir().unwrap();
    let mut rowhook = Rowhook::run(&config(&db, &receiver, state.path(), ""));
    wait_streaming(&db);
    db.sql("INSERT INTO shop.seq SELECT seq FROM shop.seq_1_to_50");
    receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 50);
    for round in 0..2 {
        db.restart_clean();
        assert!(
            rowhook.is_running(),
            "rowhook exited on a clean server stop:\n{}",
            rowhook.log()
        );
        let from = 100 * (round + 1);
        db.sql(&format!(
            "INSERT INTO shop.seq SELECT seq FROM shop.seq_{from}_to_{}",
            from + 49
        ));
    }
    let all = receiver.wait_until(Duration::from_secs(60), |r| counts(r).len() >= 150);
    assert_eq!(
        counts(&all).len(),
        150,
        "every row delivered across two server restarts"
    );
    assert!(rowhook.is_running());
    assert!(
        rowhook.log().contains("the server ended the binlog stream"),
        "{}",
        rowhook.log()
    );
}

#[test]
fn a_checkpoint_of_another_server_is_refused() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (id INT PRIMARY KEY);");
    let receiver = Receiver::ok();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        state.path().join("checkpoint.json"),
        r#"{"file": "binlog.000001", "pos": 4, "gtid": null, "flavor": "mariadb", "server_id": 999, "server_uuid": null}"#,
    )
    .unwrap();
    let mut rowhook = Rowhook::run(&config(&db, &receiver, state.path(), ""));
    let (code, log) = wait_exit(&mut rowhook);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("was written for mariadb server_id 999"),
        "{log}"
    );
    std::fs::write(state.path().join("checkpoint.json"), "garbage").unwrap();
    let mut rowhook = Rowhook::run(&config(&db, &receiver, state.path(), ""));
    let (code, log) = wait_exit(&mut rowhook);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("not a rowhook checkpoint"), "{log}");
}

#[test]
fn server_restart_and_frequent_rotation_lose_nothing() {
    let mut db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (id INT PRIMARY KEY);");
    let receiver = Receiver::ok();
    let state = tempfile::tempdir().unwrap();
    let _rowhook = Rowhook::run(&config(&db, &receiver, state.path(), ""));
    wait_streaming(&db);
    // Rotation after every few rows: the stream crosses binlog files seamlessly.
    for n in 1..=60 {
        db.sql(&format!("INSERT INTO shop.seq VALUES ({n})"));
        if n % 7 == 0 {
            db.sql("FLUSH BINARY LOGS");
        }
        if n == 30 {
            db.restart();
        }
    }
    let all = receiver.wait_until(Duration::from_secs(60), |r| counts(r).len() >= 60);
    let c = counts(&all);
    assert_eq!(c.len(), 60);
    let duplicates: usize = c.values().map(|n| n - 1).sum();
    eprintln!("server restart + rotations: {duplicates} duplicates");
    assert!(
        duplicates <= 1,
        "resuming at the last transaction boundary repeats at most the open one"
    );
}

#[test]
fn starts_right_after_a_mariadb_gtid() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (id INT PRIMARY KEY);");
    db.sql("INSERT INTO shop.seq VALUES (1); INSERT INTO shop.seq VALUES (2);");
    let after_two = db.value("SELECT @@gtid_binlog_pos");
    db.sql("INSERT INTO shop.seq VALUES (3); FLUSH BINARY LOGS; INSERT INTO shop.seq VALUES (4);");
    let receiver = Receiver::ok();
    let state = tempfile::tempdir().unwrap();
    let text = config(&db, &receiver, state.path(), "")
        .replace("start: latest", &format!("start: {{gtid: '{after_two}'}}"));
    let _rowhook = Rowhook::run(&text);
    let got = receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 2);
    std::thread::sleep(Duration::from_millis(300));
    let mut ids: Vec<i64> = receiver
        .requests()
        .iter()
        .map(|r| r.json()["primary_id"].as_i64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [3, 4],
        "rows after GTID {after_two}, across a rotation"
    );
    // Keys travel on separate lanes; look row 3 up rather than relying on order.
    let three = got
        .iter()
        .find(|r| r.json()["primary_id"] == 3)
        .map(Request::json);
    assert!(
        three.is_some_and(|p| p["id"].as_str().unwrap().starts_with("binlog.000001:")),
        "row 3 comes from the first binlog"
    );
    // The checkpoint keeps the GTID state (for a failover), equal to the server's.
    let now = db.value("SELECT @@gtid_binlog_pos");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let cp = std::fs::read_to_string(state.path().join("checkpoint.json")).unwrap_or_default();
        let cp: serde_json::Value = serde_json::from_str(&cp).unwrap_or_default();
        if cp["gtid_set"] == now.as_str() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "checkpoint {cp} vs server {now}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let bad = config(&db, &receiver, state.path(), "")
        .replace("start: latest", "start: {gtid: \"0-1-1'; DROP TABLE x\"}");
    let other = tempfile::tempdir().unwrap();
    let bad = bad.replace(
        &state.path().display().to_string(),
        &other.path().display().to_string(),
    );
    let mut rowhook = Rowhook::run(&bad.replace("server_id: 4343", "server_id: 4344"));
    let (code, log) = wait_exit(&mut rowhook);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("is not a MariaDB GTID set"), "{log}");
}

#[test]
fn resumes_on_a_replica_after_the_primary_is_gone_by_gtid_state() {
    let primary = MariaDb::start();
    let replica = MariaDb::start_with_options(
        RowMetadata::Full,
        &["--server-id=2".into(), "--log-slave-updates=ON".into()],
    );
    replica.sql(&format!(
        "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='root', \
         MASTER_USE_GTID=slave_pos; START SLAVE;",
        primary.port
    ));
    primary.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (id INT PRIMARY KEY);");
    let receiver = Receiver::ok();
    let state = tempfile::tempdir().unwrap();
    let on_primary = config(&primary, &receiver, state.path(), "");
    let first = Rowhook::run(&on_primary);
    // (The replica's own dump thread would satisfy wait_streaming.)
    let deadline = Instant::now() + Duration::from_secs(30);
    while !first.log().contains("streaming binlog") {
        assert!(Instant::now() < deadline, "{}", first.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    for id in 1..=40 {
        primary.sql(&format!("INSERT INTO shop.seq VALUES ({id})"));
    }
    receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 40);
    let mut first = first;
    first.terminate();
    let (code, log) = first.exit_within(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    // More changes while rowhook is down; the replica applies them, then the
    // primary is lost.
    for id in 41..=70 {
        primary.sql(&format!("INSERT INTO shop.seq VALUES ({id})"));
    }
    let target = primary.value("SELECT @@gtid_binlog_pos");
    let deadline = Instant::now() + Duration::from_secs(30);
    while replica.value("SELECT @@gtid_binlog_pos") != target {
        assert!(
            Instant::now() < deadline,
            "the replica does not catch up:\n{}",
            replica.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(primary);
    let cp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.path().join("checkpoint.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cp["server_id"], 1, "{cp}");
    assert!(
        cp["gtid_set"]
            .as_str()
            .is_some_and(|s| s.starts_with("0-1-")),
        "{cp}"
    );

    let on_replica = config(&replica, &receiver, state.path(), "");
    // `check` tells the operator what `run` is about to do.
    let file = state.path().join("replica.yaml");
    std::fs::write(&file, &on_replica).unwrap();
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_rowhook"))
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&checked.stdout);
    assert!(
        report.contains("run resumes on this server after its GTID set"),
        "{report}"
    );
    let started = Instant::now();
    let second = Rowhook::run(&on_replica);
    receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 70);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let counts = counts(&receiver.requests());
    let missing: Vec<i64> = (1..=70).filter(|id| !counts.contains_key(id)).collect();
    assert!(missing.is_empty(), "lost {missing:?}\n{}", second.log());
    assert!(
        counts.values().all(|&n| n == 1),
        "a graceful stop then a failover repeats nothing: {counts:?}"
    );
    assert!(
        second.log().contains("resuming here after its GTID set"),
        "{}",
        second.log()
    );
    eprintln!(
        "failover to the replica: rows 41..=70 delivered {:.2} s after the start",
        took.as_secs_f64()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cp: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(state.path().join("checkpoint.json")).unwrap(),
        )
        .unwrap();
        if cp["server_id"] == 2 && cp["gtid_set"] == target.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "{cp} vs {target}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn starts_stream_promptly_under_cpu_contention_and_kill_9() {
    let (db, receiver, _state, text) = shop_seq();
    // The first start pins the checkpoint before any row is written.
    let mut first = Rowhook::run(&text);
    wait_streaming(&db);
    first.kill9();
    let stop = Arc::new(AtomicBool::new(false));
    // Rows keep coming, and every CPU has a busy loop competing with rowhook.
    let writer = {
        let (stop, url) = (stop.clone(), db.port);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let values: Vec<String> = (n..n + 20).map(|i| format!("({i})")).collect();
                let _ = std::process::Command::new("mariadb")
                    .args(["--protocol=tcp", "-h127.0.0.1", "-uroot"])
                    .arg(format!("-P{url}"))
                    .arg("-e")
                    .arg(format!("INSERT INTO shop.seq VALUES {}", values.join(",")))
                    .output();
                n += 20;
            }
        })
    };
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let spinners: Vec<_> = (0..cpus)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        })
        .collect();
    const STARTS: usize = 100;
    let mut took = Vec::with_capacity(STARTS);
    let mut slow = Vec::new();
    for i in 0..STARTS {
        let started = Instant::now();
        let mut rowhook = Rowhook::run(&text);
        while !rowhook.log().contains("streaming binlog")
            && started.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let t = started.elapsed();
        took.push(t);
        if t > Duration::from_secs(5) {
            slow.push(format!("start {i}: {t:?}\n{}", rowhook.log()));
        }
        rowhook.kill9();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    for s in spinners {
        s.join().unwrap();
    }
    took.sort();
    eprintln!(
        "{STARTS} starts under contention: p50 {:?}, p99 {:?}, max {:?}, {} over 5 s",
        took[STARTS / 2],
        took[STARTS * 99 / 100 - 1],
        took[STARTS - 1],
        slow.len()
    );
    assert!(
        slow.is_empty(),
        "starts that did not stream within 5 s:\n{}",
        slow.join("\n")
    );
    // Everything written while rowhook was killed again and again arrives.
    let max: i64 = db.value("SELECT MAX(id) FROM shop.seq").parse().unwrap();
    let _last = Rowhook::run(&text);
    let all = receiver.wait_until(Duration::from_secs(60), |r| counts(r).len() as i64 > max);
    let c = counts(&all);
    assert_eq!(
        c.len() as i64,
        max + 1,
        "no row lost across {STARTS} kill -9 restarts"
    );
}
