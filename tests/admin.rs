//! The admin server of a running instance: every endpoint answered with real
//! numbers (Prometheus text checked by a real parser, histograms decoded), auth on
//! POST routes, pause/resume holding events without loss, DOWN while the source
//! is unreachable, and the `status` / `tasks` verbs reading it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::mariadb::{free_port, MariaDb};
use common::receiver::Receiver;
use common::rowhook::{source_yaml, wait_streaming, Rowhook};
use serde_json::Value;

const TOKEN: &str = "s3cret-token";

fn config(db: &MariaDb, receiver: &Receiver, state: &Path, port: u16) -> String {
    format!(
        "{}state: {{dir: '{}', checkpoint_interval: 100ms}}
runtime: {{shards: 1}}
server: {{enabled: true, port: {port}, token: {TOKEN}}}
tasks:
  - {{task_id: seq, table_name: shop.seq, events: [insert, update, delete], callback_url: '{}'}}
  - {{task_id: off, table_name: shop.seq, events: [insert], callback_url: '{}', enabled: false}}
",
        source_yaml(db),
        state.display(),
        receiver.url("/seq"),
        receiver.url("/off")
    )
}

/// One request to the admin server: (status, head, body).
fn call(port: u16, method: &str, path: &str, auth: Option<&str>) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth.map_or_else(String::new, |a| format!("Authorization: {a}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_owned(), body.to_owned())
}

fn get_json(port: u16, path: &str) -> (u16, Value) {
    let (status, _, body) = call(port, "GET", path, None);
    (status, serde_json::from_str(&body).unwrap())
}

/// A MariaDB with table shop.seq, a receiver, and `rowhook run` streaming with
/// its admin server up.
struct Instance {
    db: MariaDb,
    receiver: Receiver,
    state: tempfile::TempDir,
    port: u16,
    _rowhook: Rowhook,
}

impl Instance {
    fn start() -> Instance {
        let db = MariaDb::start();
        db.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (id INT PRIMARY KEY, v INT);");
        let receiver = Receiver::ok();
        let state = tempfile::tempdir().unwrap();
        let port = free_port();
        let rowhook = Rowhook::run(&config(&db, &receiver, state.path(), port));
        wait_streaming(&db);
        wait_admin(port);
        Instance {
            db,
            receiver,
            state,
            port,
            _rowhook: rowhook,
        }
    }
}

/// Waits until the admin port answers.
fn wait_admin(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "admin server never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn cli(verb: &str, port: u16) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rowhook"))
        .args([verb, "--admin", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

/// The value of `name` with `labels` in a parsed scrape.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let s = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"));
    match &s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => *v,
        other => panic!("{name}: unexpected {other:?}"),
    }
}

#[test]
fn every_endpoint_reports_the_running_instance() {
    let Instance {
        db,
        receiver,
        state: _state,
        port,
        _rowhook,
    } = Instance::start();
    db.sql("INSERT INTO shop.seq SELECT seq, 0 FROM shop.seq_1_to_50");
    receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 50);
    // The checkpoint follows within its interval.
    std::thread::sleep(Duration::from_millis(600));

    let (status, health) = get_json(port, "/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "UP");
    assert_eq!(health["monitor_running"], true);

    // The console: one self-contained page (nothing loaded from elsewhere, and
    // the CSP forbids it), told that actions need the token.
    let (status, head, page) = call(port, "GET", "/", None);
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/html"), "{head}");
    assert!(
        head.contains("Content-Security-Policy: default-src 'self'"),
        "{head}"
    );
    assert!(
        page.contains(r#"{"read_only":false,"token_required":true}"#)
            || page.contains(r#"{"token_required":true,"read_only":false}"#),
        "settings not injected"
    );
    for outside in ["http://", "https://", "src=\"//", "<link"] {
        assert!(
            !page.contains(outside),
            "the console loads {outside} from elsewhere"
        );
    }
    for route in ["/health", "/metrics.json", "/tasks", "/metrics"] {
        assert!(
            page.contains(&format!("\"{route}\"")),
            "the console reads {route}"
        );
    }
    assert_eq!(health["event_queue_size"], 0);
    assert!(health["binlog_position"]["file"]
        .as_str()
        .unwrap()
        .contains("bin"));
    assert!(health["binlog_position"]["position"].as_u64().unwrap() > 4);
    assert!(
        health["checkpoint"]["position"].as_u64().unwrap() > 4,
        "{health}"
    );
    assert!(health["lag_seconds"].as_u64().unwrap() < 30, "{health}");
    assert!(health["last_event_time"].as_str().unwrap().ends_with('Z'));

    let (status, head, text) = call(port, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let seq = [("task", "seq")];
    assert_eq!(sample(&scrape, "rowhook_events_read_total", &seq), 50.0);
    assert_eq!(
        sample(&scrape, "rowhook_events_delivered_total", &seq),
        50.0
    );
    assert_eq!(sample(&scrape, "rowhook_dead_lettered_total", &seq), 0.0);
    assert_eq!(sample(&scrape, "rowhook_events_in_flight", &seq), 0.0);
    assert_eq!(
        sample(
            &scrape,
            "rowhook_http_responses_total",
            &[("task", "seq"), ("class", "2xx")]
        ),
        50.0
    );
    assert_eq!(
        sample(&scrape, "rowhook_events_read_total", &[("task", "off")]),
        0.0
    );
    assert_eq!(sample(&scrape, "rowhook_replication_connected", &[]), 1.0);
    assert_eq!(sample(&scrape, "rowhook_up", &[]), 1.0);
    // GTID, TABLE_MAP, WRITE_ROWS, XID at least.
    assert!(sample(&scrape, "rowhook_binlog_events_total", &[]) >= 4.0);
    assert!(scrape
        .samples
        .iter()
        .any(|s| s.metric == "rowhook_checkpoint_position"));
    let e2e = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "rowhook_latency_seconds" && s.labels.get("stage") == Some("end_to_end")
        })
        .expect("end_to_end latency histogram");
    let prometheus_parse::Value::Histogram(buckets) = &e2e.value else {
        panic!("{:?} is not a histogram", e2e.value)
    };
    let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
    assert_eq!(inf.count, 50.0, "one end-to-end sample per event");
    assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));

    let (status, m) = get_json(port, "/metrics.json");
    assert_eq!(status, 200);
    assert_eq!(m["dispatcher"]["delivered"], 50);
    assert_eq!(m["dispatcher"]["shards_on_source_core"], false, "{m}");
    assert_eq!(m["monitor"]["events_read"], 50);
    assert!(m["system"]["memory_rss_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(m["tasks"][0]["task_id"], "seq");

    let (status, h) = get_json(port, "/histograms");
    assert_eq!(status, 200);
    for (stage, at_least) in [
        ("decode", 1),
        ("handoff", 1),
        ("http", 50),
        ("end_to_end", 50),
    ] {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(h["stages"][stage]["hdr"].as_str().unwrap())
            .unwrap();
        let decoded: hdrhistogram::Histogram<u64> =
            hdrhistogram::serialization::Deserializer::new()
                .deserialize(&mut bytes.as_slice())
                .unwrap_or_else(|e| panic!("{stage}: {e:?}"));
        assert!(
            decoded.len() >= at_least,
            "{stage}: {} samples",
            decoded.len()
        );
        assert_eq!(h["stages"][stage]["count"], decoded.len());
    }

    let (status, tasks) = get_json(port, "/tasks");
    assert_eq!(status, 200);
    let states: Vec<_> = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["task_id"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("seq", "running"), ("off", "disabled")]);
    assert_eq!(get_json(port, "/tasks/seq").1["delivered"], 50);

    // Wrong routes, methods and credentials.
    assert_eq!(call(port, "GET", "/nope", None).0, 404);
    assert_eq!(call(port, "GET", "/tasks/nope", None).0, 404);
    let (status, head, _) = call(port, "GET", "/tasks/seq/pause", None);
    assert_eq!(status, 405);
    assert!(head.contains("Allow: POST"), "{head}");
    assert_eq!(call(port, "POST", "/metrics", None).0, 405);
    let (status, head, _) = call(port, "POST", "/tasks/seq/pause", None);
    assert_eq!(status, 401);
    assert!(head.contains("WWW-Authenticate: Bearer"), "{head}");
    assert_eq!(
        call(port, "POST", "/tasks/seq/pause", Some("Bearer wrong")).0,
        401
    );
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(call(port, "POST", "/tasks/off/pause", Some(&bearer)).0, 409);
    assert_eq!(get_json(port, "/tasks/seq").1["state"], "running");
    // Garbage does not take the server down.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n").unwrap();
    let mut junk = String::new();
    let _ = s.read_to_string(&mut junk);
    assert!(junk.starts_with("HTTP/1.1 400"), "{junk}");
    assert_eq!(get_json(port, "/health").0, 200);

    let (code, out) = cli("status", port);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(": UP"), "{out}");
    assert!(out.contains("delivered    50 "), "{out}");
    assert!(out.contains("replication  connected"), "{out}");
    let (code, out) = cli("tasks", port);
    assert_eq!(code, Some(0), "{out}");
    let seq_line = out.lines().find(|l| l.starts_with("seq ")).unwrap();
    assert!(seq_line.contains("running"), "{out}");
    assert!(seq_line.contains(" 50 "), "{out}");
    let (code, out) = cli("status", free_port());
    assert_eq!(code, Some(1));
    assert!(out.contains("cannot reach the admin server"), "{out}");
}

#[test]
fn a_paused_task_holds_its_events_and_resume_releases_them_without_loss() {
    let Instance {
        db,
        receiver,
        state,
        port,
        _rowhook,
    } = Instance::start();
    db.sql("INSERT INTO shop.seq SELECT seq, 0 FROM shop.seq_1_to_10");
    let inserted = db.sql("SELECT @@gtid_binlog_pos")[0][0].clone();
    receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 10);
    let checkpoint = || -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(state.path().join("checkpoint.json")).unwrap(),
        )
        .unwrap()
    };
    // The write for the delivered transaction goes through the blocking pool with
    // an fsync; on a busy disk it lands well after the delivery, so wait for it
    // rather than guess a delay — otherwise its late arrival looks like a move.
    let deadline = Instant::now() + Duration::from_secs(20);
    while checkpoint()["gtid_set"] != inserted.as_str() {
        assert!(
            Instant::now() < deadline,
            "the checkpoint never reached {inserted}: {}",
            checkpoint()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = checkpoint();

    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = call(port, "POST", "/tasks/seq/pause", Some(&bearer));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"paused\""), "{body}");
    db.sql("INSERT INTO shop.seq SELECT seq, 1 FROM shop.seq_11_to_110");
    db.sql("UPDATE shop.seq SET v = 2 WHERE id <= 5");
    // Held: nothing sent, all counted in flight, the checkpoint stays put.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = get_json(port, "/tasks/seq").1;
        if t["in_flight"] == 105 {
            assert_eq!(t["state"], "paused");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events never reached the held lanes: {t}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(receiver.requests().len(), 10, "a paused task sends nothing");
    assert_eq!(checkpoint(), before, "the checkpoint waits for held events");
    assert_eq!(get_json(port, "/health").0, 200, "paused is not DOWN");
    let (_, out) = cli("tasks", port);
    assert!(
        out.lines()
            .any(|l| l.starts_with("seq ") && l.contains("paused")),
        "{out}"
    );

    let (status, _, body) = call(port, "POST", "/tasks/seq/resume", Some(&bearer));
    assert_eq!(status, 200, "{body}");
    let all = receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 115);
    std::thread::sleep(Duration::from_millis(500));
    let all = if all.len() == 115 {
        receiver.requests()
    } else {
        all
    };
    assert_eq!(all.len(), 115, "each held event sent once");
    let mut ids: Vec<i64> = all
        .iter()
        .filter(|r| r.json()["event"] == "insert")
        .map(|r| r.json()["primary_id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=110).collect::<Vec<_>>());
    // Per key: the insert of ids 1..=5 came before their update (sent long ago);
    // for 11..=110, nothing was reordered by the hold either.
    let updates = all.iter().filter(|r| r.json()["event"] == "update").count();
    assert_eq!(updates, 5);
    let deadline = Instant::now() + Duration::from_secs(10);
    while checkpoint() == before {
        assert!(
            Instant::now() < deadline,
            "checkpoint never moved after resume"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn health_is_down_while_the_source_is_unreachable_and_up_again_after() {
    let Instance {
        db,
        receiver,
        state: _state,
        port,
        _rowhook,
    } = Instance::start();
    assert_eq!(get_json(port, "/health").0, 200);
    db.freeze();
    let deadline = Instant::now() + Duration::from_secs(40);
    let health = loop {
        let (status, h) = get_json(port, "/health");
        if status == 503 {
            break h;
        }
        assert!(Instant::now() < deadline, "never DOWN: {h}");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(health["status"], "DOWN");
    assert_eq!(health["monitor_running"], false);
    assert!(
        health["reasons"][0]
            .as_str()
            .unwrap()
            .contains("replication link down"),
        "{health}"
    );
    let (code, out) = cli("status", port);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("DOWN because replication link down"), "{out}");
    db.thaw();
    let deadline = Instant::now() + Duration::from_secs(60);
    while get_json(port, "/health").0 != 200 {
        assert!(Instant::now() < deadline, "never UP again");
        std::thread::sleep(Duration::from_millis(250));
    }
    db.sql("INSERT INTO shop.seq VALUES (1, 1)");
    receiver.wait_until(Duration::from_secs(30), |r| !r.is_empty());
    let (_, m) = get_json(port, "/metrics.json");
    assert!(m["monitor"]["reconnects"].as_u64().unwrap() >= 1, "{m}");
}

/// Whether the server has closed `s` (read gives end of stream or a reset).
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut b = [0u8; 256];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => closed_by_server(s),
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn slow_clients_cannot_keep_health_out_and_conflicting_lengths_are_refused() {
    let it = Instance::start();
    // 150 clients (more than the 64 slots) trickle a request head, a byte a second.
    let mut slow: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", it.port)).unwrap();
            let _ = s.write_all(b"G");
            s
        })
        .collect();
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(12) {
        for s in &mut slow {
            let _ = s.write_all(b"E");
        }
        let asked = Instant::now();
        let (status, _) = get_json(it.port, "/health");
        assert_eq!(status, 200);
        worst = worst.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(1000));
    }
    eprintln!("slowest /health under 150 slow clients: {worst:?}");
    assert!(worst < Duration::from_secs(2), "/health took {worst:?}");
    // None of them still holds a connection: evicted, or cut off at the request deadline.
    let open = slow
        .iter_mut()
        .map(closed_by_server)
        .filter(|closed| !closed)
        .count();
    assert_eq!(open, 0, "slow clients still connected after 12 s");

    let mut s = TcpStream::connect(("127.0.0.1", it.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /tasks/seq/pause HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello",
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("conflicting Content-Length"), "{answer}");
}
