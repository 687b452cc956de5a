//! Rows streaming while tasks change, and what receivers saw: a writer of
//! transactions over changing keys, a flaky receiver, and keyed views.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::mariadb::MariaDb;
use super::receiver::{Receiver, Reply};

/// The admin server's token in these tests.
pub const TOKEN: &str = "s3cret";

/// One admin request with the token: (status, JSON body); (0, null) while
/// nothing listens (or the listener goes away mid-request: a process being
/// killed or restarting).
pub fn admin(port: u16, method: &str, path: &str, body: &str) -> (u16, Value) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Value::Null);
    };
    if write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .is_err()
    {
        return (0, Value::Null);
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

pub fn generation(port: u16) -> u64 {
    admin(port, "GET", "/health", "").1["tasks_generation"]
        .as_u64()
        .unwrap_or(0)
}

pub fn wait_generation(port: u16, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while generation(port) < at_least {
        assert!(
            Instant::now() < deadline,
            "tasks generation {at_least} never applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Transactions of 1–4 statements over keys 1..=60 (inserts, value updates,
/// primary-key changes, deletes), the same sequence on every run.
struct Script {
    next: Box<dyn FnMut(u64) -> u64 + Send>,
    present: Vec<i64>,
    step: u64,
    /// Of the statements drawn as primary-key changes, one in this many is
    /// one (the others update the value).
    key_changes_one_in: u64,
    /// Inserts, value updates and deletes touch 1 to this many rows each
    /// (a primary-key change always one).
    rows_per_statement: u64,
}

impl Script {
    fn new(key_changes_one_in: u64, rows_per_statement: u64) -> Script {
        Script {
            next: Box::new(super::seeded(0x1234_5678_9abc_def1)),
            present: Vec::new(),
            step: 0,
            key_changes_one_in,
            rows_per_statement,
        }
    }

    /// Up to `want` distinct keys drawn from `from`, removed from it.
    fn draw(next: &mut dyn FnMut(u64) -> u64, from: &mut Vec<i64>, want: u64) -> Vec<i64> {
        let mut keys = Vec::new();
        while (keys.len() as u64) < want && !from.is_empty() {
            keys.push(from.swap_remove(next(from.len() as u64) as usize));
        }
        keys
    }

    /// Appends `txns` transactions to `script`; returns their row changes.
    fn push(&mut self, txns: usize, script: &mut String) -> usize {
        let (next, present) = (&mut self.next, &mut self.present);
        let mut n = 0;
        for _ in 0..txns {
            script.push_str("BEGIN;\n");
            for _ in 0..=next(4) {
                let mut absent: Vec<i64> = (1..=60).filter(|k| !present.contains(k)).collect();
                let mut op = if present.is_empty() { 0 } else { next(10) };
                if op == 3 && next(self.key_changes_one_in) != 0 {
                    op = 4;
                }
                let width = match self.rows_per_statement {
                    1 => 1,
                    w => 1 + next(w),
                };
                // Each row change writes its own value: the keyed view then
                // tells every change apart.
                let mut values = |keys: &[i64]| -> Vec<u64> {
                    keys.iter()
                        .map(|_| {
                            self.step += 1;
                            self.step
                        })
                        .collect()
                };
                let (stmt, rows) = match op {
                    0..=2 if !absent.is_empty() => {
                        let keys = Self::draw(next, &mut absent, width);
                        present.extend(&keys);
                        let rows: Vec<String> = keys
                            .iter()
                            .zip(values(&keys))
                            .map(|(k, v)| format!("({k}, {v})"))
                            .collect();
                        (
                            format!("INSERT INTO live.kv VALUES {}", rows.join(", ")),
                            keys.len(),
                        )
                    }
                    3 if !absent.is_empty() => {
                        let i = next(present.len() as u64) as usize;
                        let to = absent[next(absent.len() as u64) as usize];
                        let from = present[i];
                        present[i] = to;
                        let v = values(&[to])[0];
                        (
                            format!("UPDATE live.kv SET id = {to}, v = {v} WHERE id = {from}"),
                            1,
                        )
                    }
                    5..=6 => {
                        let keys = Self::draw(next, present, width);
                        let list: Vec<String> = keys.iter().map(i64::to_string).collect();
                        (
                            format!("DELETE FROM live.kv WHERE id IN ({})", list.join(", ")),
                            keys.len(),
                        )
                    }
                    _ => {
                        let mut pick = present.clone();
                        let keys = Self::draw(next, &mut pick, width);
                        let cases: Vec<String> = keys
                            .iter()
                            .zip(values(&keys))
                            .map(|(k, v)| format!("WHEN {k} THEN {v}"))
                            .collect();
                        let list: Vec<String> = keys.iter().map(i64::to_string).collect();
                        (
                            format!(
                                "UPDATE live.kv SET v = CASE id {} END WHERE id IN ({})",
                                cases.join(" "),
                                list.join(", ")
                            ),
                            keys.len(),
                        )
                    }
                };
                script.push_str(&stmt);
                script.push_str(";\n");
                n += rows;
            }
            script.push_str("COMMIT;\n");
        }
        n
    }
}

/// Writes [`Script`]'s transactions into `live.kv` until stopped; counts the row
/// changes it committed.
pub struct Writer {
    stop: Arc<AtomicBool>,
    rows: Arc<AtomicUsize>,
    handle: Option<std::thread::JoinHandle<()>>,
    /// The long-lived client of [`Writer::paced`].
    client: Option<std::process::Child>,
}

impl Writer {
    /// As fast as a fresh `mariadb` client per 12 transactions goes.
    pub fn start(db: &MariaDb) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let rows = Arc::new(AtomicUsize::new(0));
        let (s, r, port) = (stop.clone(), rows.clone(), db.port);
        let handle = std::thread::spawn(move || {
            let mut script = Script::new(1, 1);
            while !s.load(Ordering::Relaxed) {
                let mut text = String::new();
                let n = script.push(12, &mut text);
                super::mariadb::sql_at(port, &text);
                r.fetch_add(n, Ordering::Relaxed);
            }
        });
        Writer {
            stop,
            rows,
            handle: Some(handle),
            client: None,
        }
    }

    /// At `per_s` row changes a second through one long-lived `mariadb` client
    /// (a client per batch cannot reach a few thousand a second); a row counts
    /// once the client answered a marker query sent after its transaction.
    /// Primary-key changes are one in `key_changes_one_in` times rarer than in
    /// [`Writer::start`] (~1 statement in 10 there): each one waits for the
    /// task's earlier events to be acknowledged, so at a few thousand rows a
    /// second a mix that heavy measures the receiver's round trip, not the path.
    /// Other statements touch 1 to `rows_per_statement` rows: MariaDB's cost
    /// per statement, not rowhook, capped single-row statements near 4,000/s.
    pub fn paced(
        db: &MariaDb,
        per_s: u64,
        key_changes_one_in: u64,
        rows_per_statement: u64,
    ) -> Writer {
        use std::io::BufRead;
        let stop = Arc::new(AtomicBool::new(false));
        let rows = Arc::new(AtomicUsize::new(0));
        let (s, r) = (stop.clone(), rows.clone());
        let mut client = super::mariadb::client(db.port)
            // Answers as they come: the marker below waits for them.
            .arg("--unbuffered")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cannot run the mariadb client");
        let mut stdin = client.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(client.stdout.take().unwrap());
        let handle = std::thread::spawn(move || {
            let mut script = Script::new(key_changes_one_in, rows_per_statement);
            let started = Instant::now();
            let (mut written, mut marker) = (0u64, 0u64);
            while !s.load(Ordering::Relaxed) {
                let due = started.elapsed().as_secs_f64() * per_s as f64;
                if (written as f64) >= due {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let mut text = String::new();
                let n = script.push(16, &mut text);
                marker += 1;
                text.push_str(&format!("SELECT {marker};\n"));
                stdin.write_all(text.as_bytes()).unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    let got = stdout.read_line(&mut line).unwrap();
                    assert!(got > 0, "the mariadb client quit (a statement failed?)");
                    if line.trim() == marker.to_string() {
                        break;
                    }
                }
                written += n as u64;
                r.fetch_add(n, Ordering::Relaxed);
            }
        });
        Writer {
            stop,
            rows,
            handle: Some(handle),
            client: Some(client),
        }
    }

    /// Waits until `n` more row changes are committed (at most 30 s).
    pub fn wait_rows(&self, n: usize) {
        let until = self.rows() + n;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.rows() < until && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn rows(&self) -> usize {
        self.rows.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            // A client that stopped answering must not hang the test: killed,
            // its writer thread fails with the reason.
            let deadline = Instant::now() + Duration::from_secs(30);
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Some(c) = &mut self.client {
                let _ = c.kill();
                let _ = c.wait();
            }
            h.join().unwrap();
        }
        self.rows()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(c) = &mut self.client {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A receiver that delays answers up to 3 ms and fails ~10 % of attempts,
/// deterministically by request ordinal, recording its verdicts.
pub fn flaky() -> (Receiver, Arc<Mutex<HashMap<usize, bool>>>) {
    flaky_slow_on(None)
}

/// As [`flaky`], and while `slow` holds a path, requests to it take 20–40 ms
/// (a backlog builds in that task's lanes).
pub fn flaky_slow_on(
    slow: Option<Arc<Mutex<Option<String>>>>,
) -> (Receiver, Arc<Mutex<HashMap<usize, bool>>>) {
    let verdicts: Arc<Mutex<HashMap<usize, bool>>> = Default::default();
    let v = verdicts.clone();
    let receiver = Receiver::start(move |r| {
        let h = (r.n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let ok = h % 10 >= 1;
        v.lock().unwrap().insert(r.n, ok);
        let slowed = slow
            .as_ref()
            .is_some_and(|s| s.lock().unwrap().as_deref() == Some(r.path.as_str()));
        let delay = Duration::from_millis(if slowed { 20 + h % 20 } else { h % 4 });
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
pub struct Seen {
    /// (binlog position of the rows event, row index): binlog order.
    pub at: (u64, u64),
    /// The transaction's GTID.
    pub gtid: String,
    /// The payload.
    pub body: Value,
}

/// Accepted payloads per path, in arrival order.
pub fn accepted(
    receiver: &Receiver,
    verdicts: &Mutex<HashMap<usize, bool>>,
) -> HashMap<String, Vec<Seen>> {
    let verdicts = verdicts.lock().unwrap().clone();
    let mut out: HashMap<String, Vec<Seen>> = HashMap::new();
    for r in receiver.requests() {
        if !verdicts.get(&r.n).copied().unwrap_or(false) {
            continue;
        }
        let seen = out.entry(r.path.clone()).or_default();
        match r.json() {
            // A batch: its events in order.
            Value::Array(events) => seen.extend(events.into_iter().map(seen_in)),
            one => seen.push(seen_in(one)),
        }
    }
    out
}

/// Waits (at most 2 minutes) until `done` holds for what was accepted, then a
/// moment more for strays; returns what was accepted.
pub fn wait_accepted(
    receiver: &Receiver,
    verdicts: &Mutex<HashMap<usize, bool>>,
    done: impl Fn(&dyn Fn(&str) -> usize) -> bool,
) -> HashMap<String, Vec<Seen>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = accepted(receiver, verdicts);
        let n = |p: &str| got.get(p).map_or(0, Vec::len);
        if done(&n) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    accepted(receiver, verdicts)
}

/// One payload as accepted.
pub fn seen_in(body: Value) -> Seen {
    if body["event"] == "snapshot" {
        // Not in the binlog: ordered before everything, told apart by key.
        return Seen {
            at: (0, 0),
            gtid: String::new(),
            body,
        };
    }
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
pub fn view(seen: &[&Seen]) -> BTreeMap<i64, i64> {
    let id = |d: &Value| d["id"].as_i64().unwrap();
    let mut view = BTreeMap::new();
    for s in seen {
        let p = &s.body;
        match p["event"].as_str().unwrap() {
            "insert" | "snapshot" => {
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

/// SELECT id, v of live.kv, keyed.
pub fn table_view(db: &MariaDb) -> BTreeMap<i64, i64> {
    db.sql("SELECT id, v FROM live.kv")
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect()
}

/// The row changes of a task no change touched, in binlog order: what the
/// others are measured against.
pub struct Reference {
    /// Every row change once, in binlog order.
    pub order: Vec<Seen>,
    index: HashMap<(u64, u64), usize>,
}

impl Reference {
    /// From what the unchanged task accepted (each row change exactly once).
    pub fn new(seen: &[Seen]) -> Reference {
        let mut order = seen.to_vec();
        order.sort_by_key(|s| s.at);
        order.dedup_by_key(|s| s.at);
        assert_eq!(
            order.len(),
            seen.len(),
            "the reference task got no row twice"
        );
        let index = order.iter().enumerate().map(|(i, s)| (s.at, i)).collect();
        Reference { order, index }
    }

    /// Where `rows` sit in binlog order: (first, last) index, after checking they
    /// are every row of that range, each once.
    pub fn span(&self, rows: &[Seen], name: &str) -> (usize, usize) {
        let mut at: Vec<usize> =
            rows.iter()
                .map(|s| {
                    *self.index.get(&s.at).unwrap_or_else(|| {
                        panic!("{name} got a row the reference did not: {:?}", s.at)
                    })
                })
                .collect();
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
    }

    /// Whether the point between order[i - 1] and order[i] is between two
    /// transactions.
    pub fn boundary(&self, i: usize) -> bool {
        i == 0 || i == self.order.len() || self.order[i - 1].gtid != self.order[i].gtid
    }
}

/// Asserts that, per `primary_id`, `seen` (in arrival order) follows binlog order.
pub fn assert_per_key_order(seen: &[Seen], name: &str) {
    let mut last: HashMap<String, (u64, u64)> = HashMap::new();
    for s in seen {
        let key = s.body["primary_id"].to_string();
        if let Some(before) = last.insert(key.clone(), s.at) {
            assert!(
                before < s.at,
                "{name}: key {key} got {:?} after {before:?}: out of order",
                s.at
            );
        }
    }
}
