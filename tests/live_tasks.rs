//! Live task changes against a real MariaDB while rows stream: what each
//! receiver sees shows every change taking effect at one transaction boundary,
//! nothing lost or sent twice for unchanged tasks, exactly the expected rows for
//! changed, added and removed ones, and per-key order across a change.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mariadb::{free_port, MariaDb};
use common::receiver::{Receiver, Reply, Request};
use common::rowhook::{source_yaml, wait_streaming, Rowhook};
use serde_json::Value;

const TOKEN: &str = "s3cret";

/// One admin request with the token: (status, JSON body).
fn admin(port: u16, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn generation(port: u16) -> u64 {
    admin(port, "GET", "/health", "").1["tasks_generation"]
        .as_u64()
        .unwrap_or(0)
}

fn wait_generation(port: u16, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while generation(port) < at_least {
        assert!(
            Instant::now() < deadline,
            "tasks generation {at_least} never applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes transactions of 1–4 single-row statements over keys 1..=60 (inserts,
/// value updates, primary-key changes, deletes) until stopped; returns how many
/// row changes it committed.
struct Writer {
    stop: Arc<AtomicBool>,
    rows: Arc<AtomicUsize>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(db: &MariaDb) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let rows = Arc::new(AtomicUsize::new(0));
        let (s, r, port) = (stop.clone(), rows.clone(), db.port);
        let handle = std::thread::spawn(move || {
            let mut next = common::seeded(0x1234_5678_9abc_def1);
            let mut present: Vec<i64> = Vec::new();
            let mut step = 0;
            while !s.load(Ordering::Relaxed) {
                let mut script = String::new();
                let mut n = 0;
                for _ in 0..12 {
                    script.push_str("BEGIN;\n");
                    for _ in 0..=next(4) {
                        step += 1;
                        let absent: Vec<i64> = (1..=60).filter(|k| !present.contains(k)).collect();
                        let op = if present.is_empty() { 0 } else { next(10) };
                        let stmt = match op {
                            0..=2 if !absent.is_empty() => {
                                let k = absent[next(absent.len() as u64) as usize];
                                present.push(k);
                                format!("INSERT INTO live.kv VALUES ({k}, {step})")
                            }
                            3 if !absent.is_empty() => {
                                let i = next(present.len() as u64) as usize;
                                let to = absent[next(absent.len() as u64) as usize];
                                let from = present[i];
                                present[i] = to;
                                format!(
                                    "UPDATE live.kv SET id = {to}, v = {step} WHERE id = {from}"
                                )
                            }
                            5..=6 => {
                                let k = present.swap_remove(next(present.len() as u64) as usize);
                                format!("DELETE FROM live.kv WHERE id = {k}")
                            }
                            _ => {
                                let k = present[next(present.len() as u64) as usize];
                                format!("UPDATE live.kv SET v = {step} WHERE id = {k}")
                            }
                        };
                        script.push_str(&stmt);
                        script.push_str(";\n");
                        n += 1;
                    }
                    script.push_str("COMMIT;\n");
                }
                common::mariadb::sql_at(port, &script);
                r.fetch_add(n, Ordering::Relaxed);
            }
        });
        Writer {
            stop,
            rows,
            handle: Some(handle),
        }
    }

    fn rows(&self) -> usize {
        self.rows.load(Ordering::Relaxed)
    }

    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.rows()
    }
}

/// A receiver that delays answers up to 3 ms and fails ~10 % of attempts,
/// deterministically by request ordinal, recording its verdicts.
fn flaky() -> (Receiver, Arc<Mutex<HashMap<usize, bool>>>) {
    let verdicts: Arc<Mutex<HashMap<usize, bool>>> = Default::default();
    let v = verdicts.clone();
    let receiver = Receiver::start(move |r| {
        let h = (r.n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let ok = h % 10 >= 1;
        v.lock().unwrap().insert(r.n, ok);
        let delay = Duration::from_millis(h % 4);
        if ok {
            Reply::Delay(delay, Box::new(Reply::Status(200)))
        } else {
            Reply::Delay(delay, Box::new(Reply::Status(503)))
        }
    });
    (receiver, verdicts)
}

/// A row change as one task's receiver accepted it.
#[derive(Debug, Clone)]
struct Seen {
    /// (binlog position of the rows event, row index): binlog order.
    at: (u64, u64),
    gtid: String,
    body: Value,
}

/// Accepted payloads per path, in arrival order.
fn accepted(
    receiver: &Receiver,
    verdicts: &Mutex<HashMap<usize, bool>>,
) -> HashMap<String, Vec<Seen>> {
    let verdicts = verdicts.lock().unwrap().clone();
    let mut out: HashMap<String, Vec<Seen>> = HashMap::new();
    for r in receiver.requests() {
        if !verdicts.get(&r.n).copied().unwrap_or(false) {
            continue;
        }
        out.entry(r.path.clone()).or_default().push(seen(&r));
    }
    out
}

fn seen(r: &Request) -> Seen {
    let body = r.json();
    let id = body["id"].as_str().unwrap().to_owned();
    let mut parts = id.rsplitn(3, ':');
    let index = parts.next().unwrap().parse().unwrap();
    let pos = parts.next().unwrap().parse().unwrap();
    Seen {
        at: (pos, index),
        gtid: body["position"]["gtid"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body,
    }
}

/// Applies changes in arrival order to a keyed view (primary-key changes too).
fn view(seen: &[&Seen]) -> BTreeMap<i64, i64> {
    let id = |d: &Value| d["id"].as_i64().unwrap();
    let mut view = BTreeMap::new();
    for s in seen {
        let p = &s.body;
        match p["event"].as_str().unwrap() {
            "insert" => {
                view.insert(id(&p["data"]), p["data"]["v"].as_i64().unwrap());
            }
            "update" => {
                view.remove(&id(&p["old_data"]));
                view.insert(id(&p["new_data"]), p["new_data"]["v"].as_i64().unwrap());
            }
            "delete" => {
                view.remove(&id(&p["data"]));
            }
            other => panic!("unexpected event {other}"),
        }
    }
    view
}

fn task(id: &str, url: &str, extra: &str) -> String {
    format!("  - {{task_id: {id}, table_name: live.kv, events: [insert, update, delete], callback_url: '{url}', payload: envelope{extra}}}\n")
}

#[test]
fn tasks_change_by_file_sighup_and_reload_at_transaction_boundaries() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE live; CREATE TABLE live.kv (id INT PRIMARY KEY, v INT NOT NULL);");
    let (receiver, verdicts) = flaky();
    let port = free_port();
    let config = format!(
        "{}server: {{enabled: true, port: {port}, token: {TOKEN}}}
dispatcher: {{max_retries: -1, retry_base_delay: 5ms, retry_max_delay: 20ms, worker_count: 48}}
",
        source_yaml(&db)
    );
    let url = |p: &str| receiver.url(p);
    let first = format!(
        "tasks:\n{}{}{}",
        task("a", &url("/a"), ""),
        task("b", &url("/b1"), ""),
        task("d", &url("/d"), "")
    );
    let rowhook = Rowhook::run_with_tasks(&config, Some(&first));
    wait_streaming(&db);
    let writer = Writer::start(&db);
    let wait_rows = |n: usize| {
        let until = writer.rows() + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while writer.rows() < until && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_rows(1000);

    // Change 1, by file + SIGHUP: b moves to /b2, c is added, d is removed.
    let second = format!(
        "tasks:\n{}{}{}",
        task("a", &url("/a"), ""),
        task("b", &url("/b2"), ""),
        task("c", &url("/c"), "")
    );
    rowhook.write_tasks(&second);
    rowhook.signal(libc::SIGHUP);
    wait_generation(port, 1);
    wait_rows(1000);

    // A bad edit is rejected with the file and field named; nothing changes.
    rowhook.write_tasks(&format!(
        "{second}  - {{task_id: e, table_name: live.kv, events: [insert], callback_url: 'ftp://x/e', colour: red}}\n"
    ));
    let (code, out, err) = rowhook.verb_admin(&[
        "reload",
        "--admin",
        &format!("http://127.0.0.1:{port}"),
        "--token",
        TOKEN,
    ]);
    assert_eq!(code, Some(2), "a rejected reload exits 2: {out}{err}");
    assert!(
        err.contains("tasks.yaml") && err.contains("colour"),
        "{err}"
    );
    let health = admin(port, "GET", "/health", "").1;
    assert!(
        health["reasons"]
            .to_string()
            .contains("last reload rejected"),
        "{health}"
    );
    assert_eq!(generation(port), 1);
    // Definitions come from the file: the API says where to change them.
    let (status, answer) = admin(port, "DELETE", "/tasks/a", "");
    assert_eq!(status, 409);
    assert!(
        answer["error"].as_str().unwrap().contains("tasks.yaml"),
        "{answer}"
    );

    // Change 2, by `rowhook reload`: c is disabled.
    rowhook.write_tasks(&format!(
        "tasks:\n{}{}{}",
        task("a", &url("/a"), ""),
        task("b", &url("/b2"), ""),
        task("c", &url("/c"), ", enabled: false")
    ));
    let (code, out, err) = rowhook.verb_admin(&[
        "reload",
        "--admin",
        &format!("http://127.0.0.1:{port}"),
        "--token",
        TOKEN,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("changed c") && out.contains("applied"),
        "{out}"
    );
    assert_eq!(generation(port), 2);
    assert!(admin(port, "GET", "/health", "").1["reasons"]
        .as_array()
        .unwrap()
        .is_empty());
    wait_rows(1000);
    let total = writer.stop();

    // Wait until a and b have every row change; the others are checked against a.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = accepted(&receiver, &verdicts);
        let n = |p: &str| got.get(p).map_or(0, Vec::len);
        if (n("/a") >= total && n("/b1") + n("/b2") >= total) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let got = accepted(&receiver, &verdicts);
    let path = |p: &str| got.get(p).cloned().unwrap_or_default();
    let (a, b1, b2, c, d) = (path("/a"), path("/b1"), path("/b2"), path("/c"), path("/d"));

    // a, untouched by every change: each row change once, and its view is the table.
    let mut order: Vec<&Seen> = a.iter().collect();
    order.sort_by_key(|s| s.at);
    order.dedup_by_key(|s| s.at);
    assert_eq!(order.len(), a.len(), "a got no row twice");
    assert_eq!(a.len(), total, "a got every row change");
    let table: BTreeMap<i64, i64> = db
        .sql("SELECT id, v FROM live.kv")
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    assert_eq!(
        view(&a.iter().collect::<Vec<_>>()),
        table,
        "a's view is the table"
    );

    // Where a set of rows sits in a's binlog order: (first index, last index).
    let index: HashMap<(u64, u64), usize> =
        order.iter().enumerate().map(|(i, s)| (s.at, i)).collect();
    let span = |rows: &[Seen], name: &str| -> (usize, usize) {
        let mut at: Vec<usize> = rows.iter().map(|s| index[&s.at]).collect();
        at.sort_unstable();
        let n = at.len();
        at.dedup();
        assert_eq!(at.len(), n, "{name} got no row twice");
        assert!(n > 0, "{name} got rows");
        assert_eq!(
            at[n - 1] - at[0] + 1,
            n,
            "{name} got every row of its range"
        );
        (at[0], at[n - 1])
    };
    // A boundary between order[i - 1] and order[i] is a transaction boundary.
    let boundary = |i: usize| i == 0 || i == order.len() || order[i - 1].gtid != order[i].gtid;

    // Change 1 took effect at one boundary for b, c and d alike.
    let (d_first, d_last) = span(&d, "d");
    let (b1_first, b1_last) = span(&b1, "b1");
    let (b2_first, b2_last) = span(&b2, "b2");
    let (c_first, c_last) = span(&c, "c");
    assert_eq!((d_first, b1_first), (0, 0), "d and b1 from the start");
    assert_eq!(d_last, b1_last, "d removed where b moved");
    assert_eq!(b2_first, b1_last + 1, "b lost nothing at the move");
    assert_eq!(c_first, b2_first, "c added where b moved");
    assert!(boundary(b2_first), "change 1 at a transaction boundary");
    assert_eq!(b2_last, order.len() - 1, "b2 to the end");
    // Change 2 stopped c at a boundary, well before the end.
    assert!(boundary(c_last + 1), "change 2 at a transaction boundary");
    assert!(
        c_last + 300 < order.len(),
        "c stopped at the change: {c_last} of {}",
        order.len()
    );
    // b's receiver, across its URL change, keeps per-key order: its view is the table.
    let b: Vec<&Seen> = b1.iter().chain(&b2).collect();
    assert_eq!(view(&b), table, "b's view across the change is the table");
    // Counters survive the change of b (same id).
    let tasks = admin(port, "GET", "/tasks", "").1;
    let b_task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == "b")
        .unwrap();
    assert_eq!(
        b_task["delivered"].as_u64().unwrap() as usize,
        b1.len() + b2.len()
    );
    assert_eq!(b_task["callback_url"], url("/b2"));
    let c_task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == "c")
        .unwrap();
    assert_eq!(c_task["state"], "disabled");
    assert!(
        tasks
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["task_id"] != "d"),
        "d is gone"
    );
}
