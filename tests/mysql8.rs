//! rowhook against MySQL 8 as emulated by `loadgen master --flavor mysql8` (no
//! MySQL server can be installed here): every caching_sha2_password path, binary
//! JSON and compressed transactions, GTID starts, and resuming on another primary
//! of the cluster from the checkpoint's GTID set.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::loadgen::{loadgen, report, spawn, spawn_logged, succeeds, wait_port};
use common::mariadb::free_port;
use common::rowhook::Rowhook;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::events::EventData;
use mysql_common::binlog::BinlogFile;
use serde_json::{json, Value};

/// The server_uuid `loadgen master --server-id 1` has (and its GTIDs' source).
const UUID_1: &str = "10ad9e00-0000-4000-8000-000000000001";

fn database(port: u16, user: &str, password: &str, tls: &str) -> String {
    format!(
        "database: {{host: 127.0.0.1, port: {port}, user: {user}, password: '{password}', server_id: 4242, {tls}}}\n"
    )
}

/// `rowhook tail --config` until it printed `lines` lines (or exited, or 20 s);
/// returns (exit code if it exited, stdout, stderr).
fn tail_until(config: &str, lines: usize) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_rowhook"))
        .args(["tail", "--config"])
        .arg(&path)
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let count = || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if count() >= lines || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        code,
        std::fs::read_to_string(&out).unwrap(),
        std::fs::read_to_string(&err).unwrap(),
    )
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

const TAIL_TASK: &str = "source: {start: earliest, heartbeat: 1s}\n\
    tasks:\n  - {task_id: t, table_name: 'loadgen.*', events: [insert, update, delete], callback_url: 'http://127.0.0.1:9/'}\n";

#[test]
fn caching_sha2_fast_path_full_auth_over_rsa_and_tls_and_wrong_passwords() {
    let dir = tempfile::tempdir().unwrap();
    common::certs::certificates(dir.path());
    let port = free_port();
    let log = dir.path().join("master.log");
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server.key");
    let _master = spawn_logged(
        &[
            "master",
            "--flavor",
            "mysql8",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--password",
            "s3cret",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--rate",
            "500",
            "--no-wait",
        ],
        &log,
    );
    wait_port(port);
    let logins = |user: &str, how: &str| {
        read(&log)
            .lines()
            .filter(|l| {
                l.contains(&format!(
                    "user {user} logged in (caching_sha2_password {how}"
                ))
            })
            .count()
    };
    let streams = |user: &str, password: &str, tls: &str| {
        let (code, out, err) = tail_until(&(database(port, user, password, tls) + TAIL_TASK), 1);
        assert_eq!(code, None, "{user}: tail exited\n{err}");
        let first: Value = serde_json::from_str(out.lines().next().unwrap_or("{}")).unwrap();
        assert_eq!(first["database"], "loadgen", "{user}: {out}\n{err}");
    };

    // A cold cache and no TLS: full authentication with the server's RSA key.
    streams("alice", "s3cret", "tls: disabled");
    assert_eq!(
        logins("alice", "full authentication with the RSA public key"),
        1
    );
    // Now cached: the fast path.
    streams("alice", "s3cret", "tls: disabled");
    assert_eq!(logins("alice", "fast path"), 1, "{}", read(&log));
    // Another user over TLS: full authentication with the password sent in TLS.
    streams("bob", "s3cret", "tls: required");
    assert_eq!(
        logins("bob", "full authentication over TLS"),
        1,
        "{}",
        read(&log)
    );
    // Also with the server certificate checked against its CA.
    let ca = dir.path().join("ca.pem");
    streams(
        "bob",
        "s3cret",
        &format!("tls: verify_ca, ca_file: '{}'", ca.display()),
    );
    assert_eq!(logins("bob", "fast path"), 1);

    // Wrong passwords, on the full path (carol is not cached) and the fast path
    // (alice is): a clear error naming the user, exit 1, no retrying forever.
    for (user, tls) in [
        ("carol", "tls: disabled"),
        ("carol", "tls: required"),
        ("alice", "tls: disabled"),
    ] {
        let (code, _, err) = tail_until(&(database(port, user, "wrong", tls) + TAIL_TASK), 1);
        assert_eq!(code, Some(1), "{user} with a wrong password: {err}");
        assert!(
            err.contains(&format!("Access denied for user '{user}'")),
            "{user}: {err}"
        );
    }
    assert_eq!(logins("carol", ""), 0);
    assert_eq!(logins("alice", "fast path"), 1);
}

/// The JSON document loadgen puts in row (key, seq).
fn expected_doc(key: i64, seq: i64) -> Value {
    json!({
        "key": key, "seq": seq, "ok": seq % 2 == 0, "none": null, "ratio": seq as f64 / 4.0,
        "tags": [format!("k{key}"), "émoji 🚀", -seq],
        "nested": {"depth": 2, "list": [true, null]}
    })
}

/// (table, event, id, seq, doc) of every payload `rowhook tail --file` prints.
fn rows_of(file: &Path) -> Vec<(String, String, i64, i64, Value)> {
    let out = succeeds(
        Command::new(env!("CARGO_BIN_EXE_rowhook"))
            .args(["tail", "--file"])
            .arg(file),
    );
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let image = if v["event"] == "update" {
                &v["new_data"]
            } else {
                &v["data"]
            };
            (
                v["table"].as_str().unwrap().to_owned(),
                v["event"].as_str().unwrap().to_owned(),
                image["id"].as_i64().unwrap(),
                image["seq"].as_i64().unwrap(),
                image["doc"].clone(),
            )
        })
        .collect()
}

/// What mysql_common finds in `file`: GTID numbers, compressed payloads, rows.
fn oracle(file: &Path) -> (Vec<u64>, usize, usize) {
    let f = std::fs::File::open(file).unwrap();
    let mut binlog = BinlogFile::new(BinlogVersion::Version4, std::io::BufReader::new(f)).unwrap();
    let (mut gnos, mut payloads, mut rows) = (Vec::new(), 0, 0);
    let mut count = |binlog: &BinlogFile<_>, e: &mysql_common::binlog::events::Event| {
        if let Ok(Some(EventData::RowsEvent(r))) = e.read_data() {
            let tme = binlog.reader().get_tme(r.table_id()).unwrap();
            for row in r.rows(tme) {
                row.unwrap();
                rows += 1;
            }
        }
    };
    while let Some(event) = binlog.next() {
        let event = event.unwrap();
        match event.read_data().unwrap() {
            Some(EventData::GtidEvent(g)) => {
                assert_eq!(Some(g.sid()), rowhook::binlog::gtid::parse_uuid(UUID_1));
                assert!(g.immediate_commit_timestamp() > 0);
                gnos.push(g.gno());
            }
            Some(EventData::TransactionPayloadEvent(p)) => {
                payloads += 1;
                let mut inner = p.decompressed().unwrap();
                while let Some(e) = binlog.reader_mut().read_decompressed(&mut inner).unwrap() {
                    count(&binlog, &e);
                }
            }
            _ => count(&binlog, &event),
        }
    }
    (gnos, payloads, rows)
}

#[test]
fn json_documents_gtids_compressed_transactions_and_partial_updates_decode_right() {
    let dir = tempfile::tempdir().unwrap();
    let mut decoded = Vec::new();
    for extra in [None, Some("--compress"), Some("--partial-json")] {
        let file = dir.path().join(format!("m8{}.bin", extra.unwrap_or("")));
        let mut args = vec![
            "binlog",
            "--flavor",
            "mysql8",
            "--rows",
            "600",
            "--txn-rows",
            "3",
            "--tables",
            "2",
            "--mix",
            "5:3:2",
            "--seed",
            "7",
            "--out",
        ];
        args.push(file.to_str().unwrap());
        args.extend(extra);
        succeeds(Command::new(loadgen()).args(&args));
        let rows = rows_of(&file);
        assert_eq!(rows.len(), 600, "{extra:?}");
        // With --partial-json every update's document is the before image's with
        // the logged diffs applied: it must come out whole all the same.
        for (table, event, key, seq, doc) in &rows {
            assert_eq!(
                doc,
                &expected_doc(*key, *seq),
                "{table} {event} seq {seq} ({extra:?})"
            );
        }
        // mysql_common agrees on the rows, sees one GTID per transaction, numbered
        // 1..=200, and (compressed) one payload per transaction.
        let (gnos, payloads, oracle_rows) = oracle(&file);
        assert_eq!(oracle_rows, 600, "{extra:?}");
        assert_eq!(gnos, (1..=200).collect::<Vec<u64>>());
        let compressed = extra == Some("--compress");
        assert_eq!(payloads, if compressed { 200 } else { 0 });
        decoded.push(rows);
    }
    assert_eq!(decoded[0], decoded[1], "compression changed the payloads");
    assert_eq!(
        decoded[0], decoded[2],
        "partial updates changed the payloads"
    );
}

/// Reads `path` until it holds a line containing `needle` (or 30 s pass).
fn wait_for_line(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = read(path);
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `run` from the start of the primary at `port` into the sink at `sink_port`,
/// checkpointing every 100 ms in `state`.
fn streaming_config(port: u16, state: &Path, sink_port: u16) -> String {
    database(port, "rowhook", "pw", "tls: disabled")
        + &format!(
            "source: {{start: earliest, heartbeat: 1s}}
state: {{dir: '{}', checkpoint_interval: 100ms}}
tasks:
  - {{task_id: lg, table_name: 'loadgen.*', events: [insert, update, delete], callback_url: 'http://127.0.0.1:{sink_port}/lg'}}
",
            state.display()
        )
}

fn master_args<'a>(port: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "master",
        "--flavor",
        "mysql8",
        "--listen",
        port,
        "--password",
        "pw",
        "--rows",
        "3000",
        "--txn-rows",
        "2",
        "--tables",
        "2",
        "--keys",
        "300",
        "--mix",
        "6:3:1",
        "--seed",
        "11",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn gtid_start_and_failover_to_another_primary_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (a_port, b_port, sink_port) = (free_port(), free_port(), free_port());
    let (a_addr, b_addr) = (format!("127.0.0.1:{a_port}"), format!("127.0.0.1:{b_port}"));
    // Primary A writes 3,000 rows (1,500 transactions, GTIDs A:1-1500) at 1,000/s.
    let a_log = dir.path().join("a.log");
    let primary_a = spawn_logged(
        &master_args(&a_addr, &["--rate", "1000", "--max-binlog-size", "60000"]),
        &a_log,
    );
    let _sink = spawn(&[
        "sink",
        "--listen",
        &format!("127.0.0.1:{sink_port}"),
        "--expect-rows",
        "3000",
    ]);
    wait_port(a_port);
    wait_port(sink_port);
    let state = dir.path().join("state");
    let config = |port: u16| streaming_config(port, &state, sink_port);
    let mut first = Rowhook::run(&config(a_port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while report(sink_port)["verified"].as_u64().unwrap() < 1000 {
        assert!(Instant::now() < deadline, "no deliveries:\n{}", first.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill9();
    // A is lost for good. Its checkpoint has A's position and its GTID set (learned
    // from PREVIOUS_GTIDS, since the start was a file position).
    drop(primary_a);
    let cp: Value = serde_json::from_str(&read(&state.join("checkpoint.json"))).unwrap();
    assert_eq!(cp["server_uuid"], UUID_1, "{cp}");
    let set = cp["gtid_set"].as_str().unwrap_or_default().to_owned();
    let upto: u64 = set
        .strip_prefix(&format!("{UUID_1}:1-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("checkpoint GTID set {set:?}"));
    assert!(upto >= 400, "{cp}");

    // Primary B (server_id 2) has the same transactions under A's UUID, in files
    // of another size: none of A's positions mean anything there.
    let b_log = dir.path().join("b.log");
    let _primary_b = spawn_logged(
        &master_args(
            &b_addr,
            &[
                "--server-id",
                "2",
                "--gtid-source",
                UUID_1,
                "--rate",
                "0",
                "--no-wait",
                "--max-binlog-size",
                "45000",
            ],
        ),
        &b_log,
    );
    wait_for_line(&b_log, "\"rows\":3000");
    let started = Instant::now();
    let second = Rowhook::run(&config(b_port));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = report(sink_port);
        if r["verified"] == 3000 {
            assert_eq!(r["lost"], 0, "{r}");
            assert_eq!(r["reorders"], 0, "{r}");
            assert!(r["duplicates"].as_u64().unwrap() < 1000, "{r}");
            eprintln!(
                "failover: A's checkpoint at {UUID_1}:1-{upto}; all 3,000 rows {:.2} s after starting on B; {} duplicates",
                started.elapsed().as_secs_f64(),
                r["duplicates"]
            );
            break;
        }
        assert!(Instant::now() < deadline, "{r}\n{}", second.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        second.log().contains("resuming here after its GTID set"),
        "{}",
        second.log()
    );
    assert!(
        read(&b_log).contains(&format!("replica has {UUID_1}:1-{upto}")),
        "B was not asked by GTID from {upto}:\n{}",
        read(&b_log)
    );
    // The checkpoint now belongs to B and still carries the whole set.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cp: Value = serde_json::from_str(&read(&state.join("checkpoint.json"))).unwrap();
        if cp["gtid_set"] == format!("{UUID_1}:1-1500") {
            assert_eq!(cp["server_id"], 2, "{cp}");
            break;
        }
        assert!(Instant::now() < deadline, "{cp}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(second);

    // source.start: {gtid} on MySQL: exactly the transactions after the set.
    let start = |set: &str| {
        database(b_port, "rowhook", "pw", "tls: disabled")
            + &format!(
                "source: {{start: {{gtid: '{set}'}}, heartbeat: 1s}}
tasks:
  - {{task_id: t, table_name: 'loadgen.*', events: [insert, update, delete], callback_url: 'http://127.0.0.1:9/'}}
"
            )
    };
    let (code, out, err) = tail_until(&start(&format!("{UUID_1}:1-1000")), 1001);
    assert_eq!(code, None, "{err}");
    assert_eq!(
        out.lines().count(),
        1000,
        "rows after GTID 1000 of 1500:\n{err}"
    );
    // More GTIDs than the server has: the server's refusal, clearly.
    let (code, _, err) = tail_until(&start(&format!("{UUID_1}:1-9999")), 1);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("more GTIDs than the master has"), "{err}");
    // A MariaDB-style list against MySQL is refused before asking.
    let (code, _, err) = tail_until(&start("0-1-100"), 1);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not a MySQL GTID set"), "{err}");
}

/// A primary whose binlog started over under the same names (RESET MASTER, or a
/// rebuilt server with the same UUID): the checkpoint's file is another file now,
/// told apart by its FORMAT_DESCRIPTION timestamp. rowhook stops instead of
/// resuming at a position that means something else.
#[test]
fn a_primary_whose_binlog_started_over_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (port, sink_port) = (free_port(), free_port());
    let addr = format!("127.0.0.1:{port}");
    let args = master_args(&addr, &["--rate", "0", "--no-wait"]);
    let first_log = dir.path().join("first.log");
    let primary = spawn_logged(&args, &first_log);
    wait_for_line(&first_log, "\"rows\":3000");
    let _sink = spawn(&["sink", "--listen", &format!("127.0.0.1:{sink_port}")]);
    wait_port(sink_port);
    let state = dir.path().join("state");
    let config = streaming_config(port, &state, sink_port);
    let mut run = Rowhook::run(&config);
    let deadline = Instant::now() + Duration::from_secs(60);
    while report(sink_port)["verified"].as_u64().unwrap() < 3000 {
        assert!(Instant::now() < deadline, "no deliveries:\n{}", run.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    run.terminate();
    assert_eq!(run.exit_within(Duration::from_secs(30)).0, Some(0));
    let cp: Value = serde_json::from_str(&read(&state.join("checkpoint.json"))).unwrap();
    assert!(cp["file_created"].as_u64().is_some(), "{cp}");
    drop(primary);
    // The same server, the same rows at the same positions, in files written a
    // second or more later.
    std::thread::sleep(Duration::from_millis(1100));
    let again_log = dir.path().join("again.log");
    let _again = spawn_logged(&args, &again_log);
    wait_for_line(&again_log, "\"rows\":3000");
    let mut second = Rowhook::run(&config);
    let (code, log) = second.exit_within(Duration::from_secs(30));
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("the binlog was reset (RESET MASTER) or rewritten"),
        "{log}"
    );
    assert!(log.contains("fix:"), "{log}");
}
