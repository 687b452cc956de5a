//! loadgen, the measuring instrument, checked against rowhook and mysql_common:
//! its binlog files decode the same in both; its sink catches injected loss,
//! duplication and reordering; and its fake primary keeps a replica whole across a
//! kill -9 and a resume from a later position.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::loadgen::{http, loadgen, report, spawn, succeeds, wait_port};
use common::mariadb::free_port;
use common::rowhook::Rowhook;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::EventData;
use mysql_common::binlog::BinlogFile;
use serde_json::Value;

/// The row image that carries a change's seq: the after image of an update.
fn image(row: &Value) -> &Value {
    if row["event"] == "update" {
        &row["new_data"]
    } else {
        &row["data"]
    }
}

#[test]
fn loadgen_binlog_decodes_the_same_in_rowhook_and_mysql_common() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gen.bin");
    succeeds(
        Command::new(loadgen())
            .args(["binlog", "--out"])
            .arg(&file)
            .args([
                "--rows",
                "3000",
                "--txn-rows",
                "7",
                "--tables",
                "3",
                "--keys",
                "50",
            ])
            .args(["--mix", "5:3:2", "--row-bytes", "300", "--rate", "0"]),
    );

    // rowhook: every row, with gapless per-table sequences.
    let tail = succeeds(
        Command::new(env!("CARGO_BIN_EXE_rowhook"))
            .args(["tail", "--file"])
            .arg(&file),
    );
    let rows: Vec<Value> = String::from_utf8_lossy(&tail)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3000);
    let mut per_table: HashMap<String, Vec<u64>> = HashMap::new();
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        let image = image(r);
        assert_eq!(r["database"], "loadgen");
        assert_eq!(
            image["id"], r["primary_id"],
            "the PK comes from the optional metadata"
        );
        assert_eq!(image["payload"].as_str().unwrap().len(), 300);
        per_table
            .entry(r["table"].as_str().unwrap().to_owned())
            .or_default()
            .push(image["seq"].as_u64().unwrap());
        *kinds
            .entry(r["event"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_table.len(), 3);
    for seqs in per_table.values() {
        assert_eq!(*seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }
    assert!(kinds["insert"] > kinds["update"] && kinds["update"] > kinds["delete"]);

    // mysql_common reads the same file: same row count per kind, same values.
    let mut binlog = BinlogFile::new(
        BinlogVersion::Version4,
        std::io::BufReader::new(std::fs::File::open(&file).unwrap()),
    )
    .unwrap();
    let mut theirs = Vec::new();
    while let Some(event) = binlog.next() {
        let event = event.unwrap();
        let Some(EventData::RowsEvent(ev)) = event.read_data().unwrap() else {
            continue;
        };
        let tme = binlog.reader().get_tme(ev.table_id()).unwrap();
        assert_eq!(tme.database_name().as_ref(), "loadgen");
        for row in ev.rows(tme) {
            let (before, after) = row.unwrap();
            let mut image = after.or(before).unwrap();
            let seq = image.take(1).unwrap();
            theirs.push(format!("{seq:?}"));
        }
    }
    assert_eq!(theirs.len(), rows.len());
    for (r, t) in rows.iter().zip(&theirs) {
        let image = image(r);
        assert!(t.contains(&format!("({})", image["seq"])), "{t} vs {image}");
    }
}

/// A sink that answers 503 to every request, and its port.
fn failing_sink() -> (common::loadgen::Process, u16) {
    let port = free_port();
    let sink = spawn(&[
        "sink",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--fail-rate",
        "1",
        "--status",
        "503",
    ]);
    wait_port(port);
    (sink, port)
}

/// `loadgen blast --rate RATE` for 1 s over `connections` to `port`; its result.
fn paced_blast(port: u16, connections: u32, rate: u32) -> Value {
    let out = succeeds(Command::new(loadgen()).args([
        "blast",
        "--target",
        &format!("127.0.0.1:{port}"),
        "--connections",
        &connections.to_string(),
        "--rate",
        &rate.to_string(),
        "--duration",
        "1s",
    ]));
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn sink_reports_injected_loss_duplicates_and_reorders() {
    let port = free_port();
    let _sink = spawn(&["sink", "--listen", &format!("127.0.0.1:{port}")]);
    wait_port(port);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let row = |table: &str, key: u64, seq: u64| {
        format!(
            r#"{{"id":"x","primary_id":{key},"event":"insert","database":"loadgen","table":"{table}","data":{{"id":{key},"seq":{seq},"sent_ns":{now},"payload":"p"}}}}"#
        )
    };
    // t0: seq 3 never sent (lost), seq 2 twice (duplicate), key 1 gets seq 5 then 4
    // (reorder). t1: a batch of two, in order.
    for body in [
        row("t0", 1, 1),
        row("t0", 2, 2),
        row("t0", 2, 2),
        row("t0", 1, 5),
        row("t0", 1, 4),
        format!("[{},{}]", row("t1", 9, 1), row("t1", 9, 2)),
        "not json".to_owned(),
        row("t0", 3, 1 << 60),
    ] {
        assert_eq!(http(port, "POST", "/t", &body).0, 200);
    }
    let r = report(port);
    assert_eq!(r["requests"], 8);
    assert_eq!(r["events"], 8, "{r}");
    assert_eq!(r["verified"], 6, "{r}");
    assert_eq!(r["lost"], 1, "{r}");
    assert_eq!(r["duplicates"], 1, "{r}");
    assert_eq!(r["reorders"], 1, "{r}");
    assert_eq!(r["unverifiable"], 2, "not JSON, and an absurd seq: {r}");
    assert_eq!(r["latency_ms"]["count"], 7, "{r}");

    // Injected failures answer the status and are not counted as delivered.
    let (_failing, port) = failing_sink();
    assert_eq!(http(port, "POST", "/t", &row("t0", 1, 1)).0, 503);
    assert_eq!(report(port)["verified"], 0);
}

#[test]
fn paced_blast_sends_every_request_on_schedule_and_survives_a_failing_receiver() {
    let port = free_port();
    let _sink = spawn(&["sink", "--listen", &format!("127.0.0.1:{port}")]);
    wait_port(port);
    let blast = paced_blast(port, 4, 2000);
    assert_eq!(blast["requests"], 2000, "{blast}");
    assert_eq!(blast["connection_failures"], 0, "{blast}");
    // The last request is due 0.9995 s in: a pacer that did not wait ends sooner.
    assert!(blast["seconds"].as_f64().unwrap() >= 0.999, "{blast}");
    assert!(blast["lag_p99_ms"].as_f64().is_some(), "{blast}");
    // Every body reached the sink whole: gapless per connection's table, with a
    // due-time stamp the sink measured.
    let r = report(port);
    assert_eq!(r["verified"], 2000, "{r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["duplicates"], 0, "{r}");
    assert_eq!(r["latency_ms"]["count"], 2000, "{r}");
    assert_eq!(r["tables"].as_array().unwrap().len(), 4, "{r}");

    // A receiver that answers 503 to everything: counted as failures, the run
    // still ends on time.
    let (_failing, port) = failing_sink();
    let started = Instant::now();
    let blast = paced_blast(port, 2, 200);
    assert_eq!(blast["requests"], 0, "{blast}");
    assert!(
        blast["connection_failures"].as_u64().unwrap() >= 100,
        "{blast}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{blast}");
}

#[test]
fn paced_blast_replaces_a_connection_whose_answer_never_ends() {
    // A receiver whose answer head goes on forever: blast must give up on the
    // connection instead of buffering it, and still end on time.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nX-Endless: ");
                let filler = [b'a'; 4096];
                while conn.write_all(&filler).is_ok() {}
            });
        }
    });
    let started = Instant::now();
    let blast = paced_blast(port, 1, 20);
    assert_eq!(blast["requests"], 0, "{blast}");
    assert!(
        blast["connection_failures"].as_u64().unwrap() >= 1,
        "{blast}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{blast}");
}

#[test]
fn master_streams_to_rowhook_and_survives_kill9_and_resume_from_a_later_position_on_the_source_core(
) {
    let (mport, sport) = (free_port(), free_port());
    let binlogs = tempfile::tempdir().unwrap();
    let master = spawn(&[
        "master",
        "--listen",
        &format!("127.0.0.1:{mport}"),
        "--dir",
        binlogs.path().to_str().unwrap(),
        "--rate",
        "2000",
        "--rows",
        "8000",
        "--tables",
        "2",
        "--keys",
        "200",
        "--mix",
        "6:3:1",
        "--txn-rows",
        "4",
        "--max-binlog-size",
        "200000",
    ]);
    let _sink = spawn(&[
        "sink",
        "--listen",
        &format!("127.0.0.1:{sport}"),
        "--expect-rows",
        "8000",
    ]);
    wait_port(mport);
    wait_port(sport);
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        "database: {{host: 127.0.0.1, port: {mport}, user: anyone, password: x, server_id: 4242, tls: disabled}}
source: {{start: earliest, heartbeat: 1s}}
state: {{dir: '{}', checkpoint_interval: 100ms}}
tasks:
  - {{task_id: lg, table_name: 'loadgen.*', events: [insert, update, delete], callback_url: 'http://127.0.0.1:{sport}/lg'}}
",
        state.path().display()
    );
    // A shard thread first, whatever the machine's default.
    let mut first = Rowhook::run(&format!("{config}runtime: {{shards: 1}}\n"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while report(sport)["verified"].as_u64().unwrap() < 2000 {
        assert!(Instant::now() < deadline, "no deliveries:\n{}", first.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill9();
    let checkpoint: Value = serde_json::from_str(
        &std::fs::read_to_string(state.path().join("checkpoint.json")).unwrap(),
    )
    .unwrap();
    assert!(checkpoint["pos"].as_u64().unwrap() > 4, "{checkpoint}");
    // The master went on writing (and rotating every 200 kB) meanwhile. The same
    // state resumes with delivery on the source core.
    std::thread::sleep(Duration::from_millis(500));
    let mut second = Rowhook::run(&format!("{config}runtime: {{shards: 0}}\n"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = report(sport);
        if r["verified"] == 8000 {
            assert_eq!(r["lost"], 0, "{r}");
            assert_eq!(r["reorders"], 0, "{r}");
            assert!(r["duplicates"].as_u64().unwrap() < 1000, "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "{r}\n{}", second.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = second.log();
    assert!(log.contains("resuming from the checkpoint"), "{log}");
    assert!(log.contains("delivery runs on the source core"), "{log}");
    assert!(!log.contains("delivery shards started"), "{log}");
    // A graceful stop drains the source-core shard and records the end.
    second.terminate();
    let (code, log) = second.exit_within(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{log}");
    let checkpoint: Value = serde_json::from_str(
        &std::fs::read_to_string(state.path().join("checkpoint.json")).unwrap(),
    )
    .unwrap();
    // The master wrote all 8,000 rows: its last file ends where delivery ended.
    let last = std::fs::read_dir(binlogs.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().contains(".0"))
        .max_by_key(|e| e.file_name())
        .unwrap();
    assert_eq!(
        checkpoint["file"],
        *last.file_name().to_string_lossy(),
        "{checkpoint}"
    );
    assert_eq!(
        checkpoint["pos"],
        last.metadata().unwrap().len(),
        "{checkpoint}"
    );
    drop(master);
}

#[test]
fn sql_traffic_with_deletes_on_mariadb_reaches_the_sink_whole_and_in_key_order() {
    let db = common::mariadb::MariaDb::start();
    let sport = free_port();
    let _sink = spawn(&[
        "sink",
        "--listen",
        &format!("127.0.0.1:{sport}"),
        "--expect-rows",
        "3000",
    ]);
    wait_port(sport);
    let state = tempfile::tempdir().unwrap();
    let _rowhook = Rowhook::run(&format!(
        "{}state: {{dir: '{}'}}
tasks:
  - {{task_id: lg, table_name: 'loadgen.*', events: [insert, update, delete], callback_url: 'http://127.0.0.1:{sport}/lg'}}
",
        common::rowhook::source_yaml(&db),
        state.path().display()
    ));
    common::rowhook::wait_streaming(&db);
    let out = succeeds(
        Command::new(loadgen())
            .args([
                "sql",
                "--mysql",
                &format!("mysql://root@127.0.0.1:{}", db.port),
            ])
            .args([
                "--rate",
                "3000",
                "--rows",
                "3000",
                "--connections",
                "3",
                "--tables",
                "2",
            ])
            .args(["--keys", "300", "--mix", "6:3:1", "--txn-rows", "2"]),
    );
    let summary: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(summary["rows"], 3000, "{summary}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = report(sport);
        if r["verified"] == 3000 {
            assert_eq!(r["lost"], 0, "{r}");
            assert_eq!(r["duplicates"], 0, "{r}");
            assert_eq!(r["reorders"], 0, "{r}");
            break;
        }
        assert!(Instant::now() < deadline, "{r}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_ne!(db.value("SELECT COUNT(*) FROM loadgen.t0"), "0");
    // Real DELETEs reached the binlog (and were verified above like the rest).
    let mut deletes = 0;
    for entry in std::fs::read_dir(db.datadir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("binlog.0") {
            let out = succeeds(
                Command::new(env!("CARGO_BIN_EXE_rowhook"))
                    .args(["tail", "--file"])
                    .arg(&path),
            );
            deletes += String::from_utf8_lossy(&out)
                .matches("\"event\":\"delete\",\"database\":\"loadgen\"")
                .count();
        }
    }
    assert!(deletes > 100, "{deletes} deletes in the binlog");
}
