//! `rowhook run` end to end: a real MariaDB, the real binary, real loopback HTTP
//! receivers. Payloads, headers, signing, batching, retries, Retry-After, dead
//! letters, redirects, hostile connections, per-key order under failures.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use common::mariadb::MariaDb;
use common::receiver::{Receiver, Reply, Request};
use common::rowhook::{source_yaml, wait_streaming, Rowhook};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn shop(db: &MariaDb) {
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.users (id INT PRIMARY KEY, name VARCHAR(40), email VARCHAR(60));
         CREATE TABLE shop.`order` (id BIGINT PRIMARY KEY, user_id INT, total DECIMAL(10,2));",
    );
}

fn bodies(requests: &[Request]) -> Vec<Value> {
    requests.iter().map(Request::json).collect()
}

#[test]
fn streams_changes_with_headers_signature_and_batches() {
    let db = MariaDb::start();
    shop(&db);
    let users = Receiver::ok();
    let orders = Receiver::ok();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let config = format!(
        "{}dispatcher: {{retry_base_delay: 1s}}
tasks:
  - {{task_id: users, table_name: shop.users, events: [insert, update, delete], callback_url: '{}',
     headers: {{X-Team: core}}, secret: '{secret}', columns: [id, name]}}
  - {{task_id: orders, table_name: shop.order, events: [insert, update], callback_url: '{}',
     batch_size: 3, batch_linger: 300ms, payload: envelope, ordering: table}}
",
        source_yaml(&db),
        users.url("/webhook/user"),
        orders.url("/webhook/order?src=rowhook")
    );
    let _rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    db.sql(
        "INSERT INTO shop.users VALUES (1, 'Ann', 'ann@example.com'), (2, 'Bob', 'bob@example.com');
         UPDATE shop.users SET name = 'Anna' WHERE id = 1;
         DELETE FROM shop.users WHERE id = 2;
         INSERT INTO shop.`order` VALUES (10, 1, 12.50), (11, 1, 3.00), (12, 2, 7.25), (13, 2, 1.00);
         DELETE FROM shop.`order` WHERE id = 13;",
    );
    let mut got = users.wait_until(WAIT, |r| r.len() >= 4);
    // Keys travel on their own lanes: order holds per key, not across keys.
    got.sort_by_key(|r| r.json()["primary_id"].as_i64());
    let payloads = bodies(&got);
    let summary: Vec<(&str, &Value)> = payloads
        .iter()
        .map(|p| (p["event"].as_str().unwrap(), &p["primary_id"]))
        .collect();
    assert_eq!(
        summary,
        [
            ("insert", &json!(1)),
            ("update", &json!(1)),
            ("insert", &json!(2)),
            ("delete", &json!(2))
        ]
    );
    // `columns: [id, name]` leaves email out.
    assert_eq!(payloads[0]["data"], json!({"id": 1, "name": "Ann"}));
    assert_eq!(payloads[1]["old_data"], json!({"id": 1, "name": "Ann"}));
    assert_eq!(payloads[1]["new_data"], json!({"id": 1, "name": "Anna"}));
    assert_eq!(payloads[3]["data"], json!({"id": 2, "name": "Bob"}));
    let key = base64::engine::general_purpose::STANDARD
        .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap();
    for (r, p) in got.iter().zip(&payloads) {
        assert_eq!(r.path, "/webhook/user");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert!(r.header("user-agent").unwrap().starts_with("rowhook/"));
        assert_eq!(r.header("x-team"), Some("core"));
        assert_eq!(
            r.header("webhook-id"),
            p["id"].as_str(),
            "webhook-id is the payload id"
        );
        // Verify the signature independently of rowhook's signer.
        let ts = r.header("webhook-timestamp").unwrap();
        let signed = format!(
            "{}.{ts}.{}",
            r.header("webhook-id").unwrap(),
            String::from_utf8_lossy(&r.body)
        );
        let expected = common::hmac_sha256_b64(&key, signed.as_bytes());
        assert_eq!(
            r.header("webhook-signature"),
            Some(format!("v1,{expected}").as_str())
        );
    }

    // Orders: three in one array (batch_size 3), the fourth alone after the linger;
    // the delete is not subscribed.
    let got = orders.wait_until(WAIT, |r| {
        r.iter()
            .map(|q| q.json().as_array().map_or(0, Vec::len))
            .sum::<usize>()
            >= 4
    });
    std::thread::sleep(Duration::from_millis(500));
    let got_all = orders.requests();
    assert_eq!(
        got_all.len(),
        got.len(),
        "no request for the unsubscribed delete"
    );
    let arrays = bodies(&got);
    let ids: Vec<Vec<i64>> = arrays
        .iter()
        .map(|a| {
            a.as_array()
                .unwrap()
                .iter()
                .map(|e| e["primary_id"].as_i64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(ids, [vec![10, 11, 12], vec![13]]);
    let first = &arrays[0][0];
    assert_eq!(first["data"]["total"], "12.50");
    assert!(first["position"]["file"]
        .as_str()
        .unwrap()
        .starts_with("binlog."));
    assert!(first["position"]["pos"].as_u64().unwrap() > 4);
    assert_eq!(first["ts_ms"].as_u64().unwrap() % 1000, 0);
    assert_eq!(got[0].path, "/webhook/order?src=rowhook");
    let batch_id = got[0].header("webhook-id").unwrap();
    assert_eq!(batch_id, format!("{}+3", first["id"].as_str().unwrap()));
    assert_eq!(
        got[0].header("webhook-signature"),
        None,
        "unsigned without a secret"
    );
}

/// The row image a payload carries (the new one for updates).
fn row_data(p: &Value) -> &Value {
    if p["event"] == "update" {
        &p["new_data"]
    } else {
        &p["data"]
    }
}

/// Which requests (by ordinal) a receiver accepted with a 2xx.
type Verdicts = std::sync::Arc<std::sync::Mutex<HashMap<usize, bool>>>;

/// A receiver failing ~30 % of attempts (5xx or a reset) and delaying every
/// answer up to `max_delay_ms`, deterministically by request ordinal.
fn flaky_receiver(max_delay_ms: u64) -> (Receiver, Verdicts) {
    let accepted: Verdicts = Default::default();
    let verdicts = accepted.clone();
    let receiver = Receiver::start(move |r| {
        // A cheap deterministic scramble of the request number.
        let h = (r.n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let ok = h % 10 >= 3;
        verdicts.lock().unwrap().insert(r.n, ok);
        let delay = Duration::from_millis(h % max_delay_ms);
        if ok {
            Reply::Delay(delay, Box::new(Reply::Status(200)))
        } else if h.is_multiple_of(2) {
            Reply::Delay(delay, Box::new(Reply::Status(503)))
        } else {
            Reply::Reset
        }
    });
    (receiver, accepted)
}

/// Payload ids seen in accepted (2xx) requests, per primary key, in arrival order.
fn accepted_per_key(
    requests: &[Request],
    accepted: &HashMap<usize, bool>,
) -> HashMap<i64, Vec<i64>> {
    let mut per_key: HashMap<i64, Vec<i64>> = HashMap::new();
    for r in requests {
        if accepted.get(&r.n).copied().unwrap_or(false) {
            let p = r.json();
            let data = row_data(&p);
            per_key
                .entry(data["k"].as_i64().unwrap())
                .or_default()
                .push(data["seq"].as_i64().unwrap());
        }
    }
    per_key
}

#[test]
fn retries_honour_retry_after_and_dead_letter_what_cannot_be_delivered() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(10));");
    // Behaviour per primary key: how each outcome class is treated.
    let receiver = Receiver::start(|r| {
        let p = r.json();
        let id = p["primary_id"].as_i64().unwrap();
        match id {
            1 => Reply::Status(503),
            2 => Reply::Full(
                429,
                vec![("Retry-After".into(), "2".into())],
                b"slow down".to_vec(),
            ),
            3 => Reply::Full(400, vec![], b"bad payload".to_vec()),
            4 => Reply::Full(302, vec![("Location".into(), "/moved".into())], vec![]),
            5 => Reply::Status(500),
            _ => Reply::Status(200),
        }
    });
    let config = format!(
        "{}dispatcher: {{max_retries: 2, retry_base_delay: 400ms, retry_max_delay: 1s, worker_count: 8}}
tasks:
  - {{task_id: t, table_name: shop.t, events: [insert], callback_url: '{}'}}
",
        source_yaml(&db),
        receiver.url("/in")
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    db.sql("INSERT INTO shop.t VALUES (1,'a'),(2,'b'),(3,'c'),(4,'d'),(5,'e'),(6,'f')");
    // Key 1 fails twice with 503, then succeeds; key 2 is told to wait 2 s once.
    let attempts_of = |rs: &[Request], key: i64| -> Vec<Request> {
        rs.iter()
            .filter(|r| r.json()["primary_id"] == key)
            .cloned()
            .collect()
    };
    receiver.wait_until(WAIT, |rs| {
        attempts_of(rs, 1).len() >= 2 && !attempts_of(rs, 2).is_empty()
    });
    receiver.set(|r| match r.json()["primary_id"].as_i64().unwrap() {
        3 => Reply::Full(400, vec![], b"bad payload".to_vec()),
        4 => Reply::Full(302, vec![("Location".into(), "/moved".into())], vec![]),
        5 => Reply::Status(500),
        _ => Reply::Status(200),
    });
    receiver.wait_until(WAIT, |rs| {
        attempts_of(rs, 1).len() >= 3
            && attempts_of(rs, 2).len() >= 2
            && attempts_of(rs, 5).len() >= 3
            && !attempts_of(rs, 6).is_empty()
    });
    let dlq = rowhook.state_dir().join("dlq").join("t.jsonl");
    let deadline = std::time::Instant::now() + WAIT;
    while std::fs::read_to_string(&dlq)
        .unwrap_or_default()
        .lines()
        .count()
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "dead letters missing:\n{}",
            rowhook.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Keys travel on separate lanes: the snapshot above may predate key 3's or
    // 4's single attempt, which the dead letters now prove happened.
    let all = receiver.requests();

    let one = attempts_of(&all, 1);
    assert_eq!(one.len(), 3, "two 503s then a 200: three attempts");
    let ids: Vec<_> = one
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "same webhook-id on every retry: {ids:?}"
    );
    let gap1 = one[1].at - one[0].at;
    let gap2 = one[2].at - one[1].at;
    // Backoff: first retry within [base/2, base], second within [base, 2*base].
    assert!(
        gap1 >= Duration::from_millis(180) && gap1 < Duration::from_millis(900),
        "{gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(380) && gap2 < Duration::from_millis(1500),
        "{gap2:?}"
    );
    let two = attempts_of(&all, 2);
    let waited = two[1].at - two[0].at;
    assert!(
        waited >= Duration::from_millis(1900),
        "Retry-After: 2 honoured: {waited:?}"
    );
    assert_eq!(attempts_of(&all, 3).len(), 1, "400 is permanent");
    assert_eq!(
        attempts_of(&all, 4).len(),
        1,
        "302 is not followed nor retried"
    );
    assert_eq!(attempts_of(&all, 5).len(), 3, "1 attempt + max_retries 2");
    assert_eq!(attempts_of(&all, 6).len(), 1);

    let letters: Vec<Value> = std::fs::read_to_string(&dlq)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_key: HashMap<i64, &Value> = letters
        .iter()
        .map(|l| (l["payload"]["primary_id"].as_i64().unwrap(), l))
        .collect();
    assert_eq!(by_key.len(), 3, "{letters:?}");
    assert_eq!(by_key[&3]["status"], 400);
    assert_eq!(by_key[&3]["attempts"], 1);
    assert!(by_key[&3]["error"]
        .as_str()
        .unwrap()
        .contains("bad payload"));
    assert_eq!(by_key[&4]["status"], 302);
    assert!(by_key[&4]["error"].as_str().unwrap().contains("/moved"));
    assert_eq!(by_key[&5]["status"], 500);
    assert_eq!(by_key[&5]["attempts"], 3);
    for l in &letters {
        assert_eq!(l["task"], "t");
        assert_eq!(l["id"], l["payload"]["id"]);
        assert_eq!(l["url"], receiver.url("/in"));
    }

    // The operator inspects, fixes the receiver, and replays.
    let (code, out, err) = rowhook.verb(&["dlq", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("3 dead letter(s)") && out.contains("bad payload"),
        "{out}"
    );
    let (code, out, err) = rowhook.verb(&["dlq", "replay", "--task", "nope"]);
    assert_eq!(
        (code, out.contains("0 delivered")),
        (Some(0), true),
        "{out}{err}"
    );
    receiver.set(|r| match r.json()["primary_id"].as_i64().unwrap() {
        5 => Reply::Status(503),
        _ => Reply::Status(200),
    });
    let before = receiver.requests().len();
    let (code, out, err) = rowhook.verb(&["dlq", "replay"]);
    assert_eq!(code, Some(1), "one letter still fails: {out}{err}");
    assert!(out.contains("2 delivered, 1 failed again"), "{out}");
    let replayed = receiver.requests().split_off(before);
    assert_eq!(replayed.len(), 3);
    for r in &replayed {
        let letter = &by_key[&r.json()["primary_id"].as_i64().unwrap()];
        assert_eq!(
            r.header("webhook-id"),
            letter["id"].as_str(),
            "replay keeps the id"
        );
        assert_eq!(
            r.json(),
            letter["payload"],
            "replay sends the payload unchanged"
        );
    }
    let kept: Vec<Value> = std::fs::read_to_string(&dlq)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (
            kept[0]["payload"]["primary_id"].as_i64(),
            kept[0]["attempts"].as_u64(),
            kept[0]["status"].as_u64()
        ),
        (Some(5), Some(4), Some(503))
    );
}

#[test]
fn keeps_per_key_order_under_random_failures_and_delays() {
    // A shard thread of its own, whatever the machine's default.
    per_key_order_under_failures("runtime: {shards: 1}\n");
}

#[test]
fn keeps_per_key_order_under_failures_with_delivery_on_the_source_core() {
    per_key_order_under_failures("runtime: {shards: 0}\n");
}

/// Per-key order and exactly-once acknowledgement while ~30 % of attempts fail,
/// with `runtime` added to the config.
fn per_key_order_under_failures(runtime: &str) {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.ev (k INT PRIMARY KEY, seq INT NOT NULL);");
    let (receiver, accepted) = flaky_receiver(15);
    let config = format!(
        "{}{runtime}dispatcher: {{max_retries: -1, retry_base_delay: 20ms, retry_max_delay: 100ms, worker_count: 4}}
tasks:
  - {{task_id: ev, table_name: shop.ev, events: [insert, update], callback_url: '{}'}}
",
        source_yaml(&db),
        receiver.url("/ev")
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    let on_source = rowhook.log().contains("delivery runs on the source core");
    assert_eq!(
        on_source,
        runtime.contains("shards: 0"),
        "{}",
        rowhook.log()
    );
    // Not a multiple of the lane count, so keys do not line up with lanes by chance.
    const KEYS: i64 = 7;
    const ROUNDS: i64 = 25;
    db.sql(&format!(
        "INSERT INTO shop.ev SELECT seq, 0 FROM shop.seq_1_to_{KEYS}"
    ));
    let updates: String = (1..=ROUNDS)
        .map(|n| format!("UPDATE shop.ev SET seq = {n};"))
        .collect();
    db.sql(&updates);
    let expected = (KEYS * (ROUNDS + 1)) as usize;
    let all = receiver.wait_until(Duration::from_secs(90), |rs| {
        let a = accepted.lock().unwrap();
        rs.iter()
            .filter(|r| a.get(&r.n).copied().unwrap_or(false))
            .count()
            >= expected
    });
    let verdicts = accepted.lock().unwrap().clone();
    // Every attempt for a key, in arrival order, never goes back in sequence: a
    // later event waits while an earlier one is retried.
    let mut attempts: HashMap<i64, Vec<i64>> = HashMap::new();
    for r in &all {
        let p = r.json();
        let data = row_data(&p);
        attempts
            .entry(data["k"].as_i64().unwrap())
            .or_default()
            .push(data["seq"].as_i64().unwrap());
    }
    for (k, seqs) in &attempts {
        assert!(
            seqs.windows(2).all(|w| w[0] <= w[1]),
            "key {k} out of order: {seqs:?}"
        );
    }
    let accepted = accepted_per_key(&all, &verdicts);
    assert_eq!(accepted.len(), KEYS as usize);
    for (k, seqs) in accepted {
        assert_eq!(
            seqs,
            (0..=ROUNDS).collect::<Vec<_>>(),
            "key {k}: each change acknowledged once, in order"
        );
    }
    assert!(all.len() > expected, "the receiver did inject failures");
}

/// Key changes, inserts, updates and deletes on a small key space, with ~30 % of
/// attempts failing and random delays: a receiver that applies what it accepted,
/// in arrival order, to a keyed view ends with exactly the table.
#[test]
fn a_receivers_keyed_view_equals_the_table_across_primary_key_changes() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.kv (id INT PRIMARY KEY, v INT NOT NULL);");
    let (receiver, accepted) = flaky_receiver(20);
    let config = format!(
        "{}dispatcher: {{max_retries: -1, retry_base_delay: 10ms, retry_max_delay: 50ms, worker_count: 8}}
tasks:
  - {{task_id: kv, table_name: shop.kv, events: [insert, update, delete], callback_url: '{}'}}
",
        source_yaml(&db),
        receiver.url("/kv")
    );
    let _rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    // A seeded walk over keys 1..=12: every statement changes exactly one row.
    let mut next = common::seeded(0x2545_f491_4f6c_dd1d);
    let mut present: Vec<i64> = Vec::new();
    let mut statements = Vec::new();
    let mut key_changes = 0;
    for step in 0..400 {
        let absent: Vec<i64> = (1..=12).filter(|k| !present.contains(k)).collect();
        let op = if present.is_empty() { 0 } else { next(10) };
        match op {
            0..=2 if !absent.is_empty() => {
                let k = absent[next(absent.len() as u64) as usize];
                statements.push(format!("INSERT INTO shop.kv VALUES ({k}, {step})"));
                present.push(k);
            }
            3..=5 if !absent.is_empty() => {
                let i = next(present.len() as u64) as usize;
                let to = absent[next(absent.len() as u64) as usize];
                statements.push(format!(
                    "UPDATE shop.kv SET id = {to}, v = {step} WHERE id = {}",
                    present[i]
                ));
                present[i] = to;
                key_changes += 1;
            }
            6..=7 => {
                let k = present.swap_remove(next(present.len() as u64) as usize);
                statements.push(format!("DELETE FROM shop.kv WHERE id = {k}"));
            }
            _ => {
                let k = present[next(present.len() as u64) as usize];
                statements.push(format!("UPDATE shop.kv SET v = {step} WHERE id = {k}"));
            }
        }
    }
    assert!(
        key_changes > 50,
        "the walk changes keys often: {key_changes}"
    );
    db.sql(&(statements.join(";\n") + ";"));
    let expected = statements.len();
    receiver.wait_until(Duration::from_secs(120), |rs| {
        let a = accepted.lock().unwrap();
        rs.iter()
            .filter(|r| a.get(&r.n).copied().unwrap_or(false))
            .count()
            >= expected
    });
    std::thread::sleep(Duration::from_millis(300));
    // Anything after the count was reached (a stray repeat) must be in the view too.
    let all = receiver.requests();
    let verdicts = accepted.lock().unwrap().clone();
    let id = |d: &Value| d["id"].as_i64().unwrap();
    let mut view: std::collections::BTreeMap<i64, i64> = Default::default();
    let mut applied = 0;
    for r in &all {
        if !verdicts.get(&r.n).copied().unwrap_or(false) {
            continue;
        }
        applied += 1;
        let p = r.json();
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
    assert_eq!(applied, expected, "each change acknowledged exactly once");
    let table: std::collections::BTreeMap<i64, i64> = db
        .sql("SELECT id, v FROM shop.kv")
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect();
    assert_eq!(
        view, table,
        "the receiver's view equals SELECT * of the table"
    );
    assert!(all.len() > expected, "the receiver did inject failures");
}

#[test]
fn survives_hostile_connections() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.h (id INT PRIMARY KEY);");
    // Cycle through connection troubles; every sixth request is answered plainly.
    let receiver = Receiver::start(|r| match r.n % 7 {
        0 => Reply::ThenClose(Box::new(Reply::Status(200))),
        1 => Reply::Reset,
        2 => Reply::Chunked(200, vec![b"accepted ".to_vec(), b"with chunks".to_vec()]),
        3 => Reply::Oversized(3 * 1024 * 1024),
        4 => Reply::Close(204),
        5 => Reply::Raw(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ),
        _ => Reply::Delay(Duration::from_millis(1500), Box::new(Reply::Status(200))),
    });
    let config = format!(
        "{}dispatcher: {{max_retries: -1, timeout: 500ms, retry_base_delay: 50ms, retry_max_delay: 200ms, worker_count: 2}}
tasks:
  - {{task_id: h, table_name: shop.h, events: [insert], callback_url: '{}'}}
",
        source_yaml(&db),
        receiver.url("/h")
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    db.sql("INSERT INTO shop.h SELECT seq FROM shop.seq_1_to_60");
    // Answers that count as delivered: everything but the reset and the one that
    // arrives after the 500 ms timeout.
    receiver.wait_until(Duration::from_secs(60), |rs| {
        let mut done: Vec<i64> = rs
            .iter()
            .filter(|r| !matches!(r.n % 7, 1 | 6))
            .map(|r| r.json()["primary_id"].as_i64().unwrap())
            .collect();
        done.sort();
        done.dedup();
        done.len() == 60
    });
    let log = rowhook.log();
    assert!(
        log.contains("no response within 500ms"),
        "the slow answer timed out:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn memory_stays_bounded_while_a_receiver_is_down_and_others_keep_flowing() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.big (id INT PRIMARY KEY, pad TEXT);
         CREATE TABLE shop.small (id INT PRIMARY KEY);",
    );
    let down = Receiver::start(|_| Reply::Status(503));
    let healthy = Receiver::ok();
    let config = format!(
        "{}dispatcher: {{max_retries: -1, max_inflight: 2000, retry_base_delay: 100ms, retry_max_delay: 500ms}}
tasks:
  - {{task_id: big, table_name: shop.big, events: [insert], callback_url: '{}'}}
  - {{task_id: small, table_name: shop.small, events: [insert], callback_url: '{}'}}
",
        source_yaml(&db),
        down.url("/big"),
        healthy.url("/small")
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    // Under the down task's share (2000 / 2 tasks): the healthy one is not held up.
    db.sql("INSERT INTO shop.big SELECT seq, REPEAT('x', 2000) FROM shop.seq_1_to_500");
    db.sql("INSERT INTO shop.small SELECT seq FROM shop.seq_1_to_100");
    healthy.wait_until(WAIT, |rs| rs.len() >= 100);
    // Far over the bound: 40,000 rows of 2 KB (80 MB of payload) behind a dead receiver.
    for chunk in 0..8 {
        let from = 501 + chunk * 5000;
        db.sql(&format!(
            "INSERT INTO shop.big SELECT seq, REPEAT('x', 2000) FROM shop.seq_{from}_to_{}",
            from + 4999
        ));
    }
    let mut peak = 0;
    for _ in 0..30 {
        peak = peak.max(rowhook.rss_kib());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(peak > 0);
    assert!(peak < 64 * 1024, "RSS {peak} KiB with the receiver down");
    down.set(|_| Reply::Status(200));
    let got = down.wait_until(Duration::from_secs(120), |rs| {
        let ok: std::collections::HashSet<i64> = rs
            .iter()
            .filter_map(|r| r.json()["primary_id"].as_i64())
            .collect();
        ok.len() == 40_500
    });
    eprintln!(
        "peak RSS {peak} KiB; {} requests to the recovered receiver",
        got.len()
    );
}

#[test]
fn https_callbacks_verify_chain_and_host_name() {
    let certs = tempfile::tempdir().unwrap();
    common::certs::certificates(certs.path());
    let receiver = Receiver::start_tls(
        &certs.path().join("server.pem"),
        &certs.path().join("server.key"),
        |_| Reply::Status(200),
    );
    let port = receiver.url("").rsplit(':').next().unwrap().to_owned();
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.s (id INT PRIMARY KEY);");
    let instance = |server_id: u32, ca: &str, host: &str| {
        let ca_line = if ca.is_empty() {
            String::new()
        } else {
            format!(", ca_file: '{}'", certs.path().join(ca).display())
        };
        Rowhook::run(&format!(
            "{}dispatcher: {{max_retries: 0{ca_line}}}
tasks:
  - {{task_id: s, table_name: shop.s, events: [insert], callback_url: 'https://{host}:{port}/secure'}}
",
            source_yaml(&db).replace("server_id: 4343", &format!("server_id: {server_id}"))
        ))
    };
    // The CA that signed the certificate, the address it was issued for: delivered.
    let trusted = instance(501, "ca.pem", "127.0.0.1");
    // Public roots only: the private CA is unknown.
    let unknown = instance(502, "", "127.0.0.1");
    // Right CA, wrong name: the certificate is for 127.0.0.1, not localhost.
    let misnamed = instance(503, "ca.pem", "localhost");
    for _ in 0..3 {
        wait_streaming(&db);
    }
    std::thread::sleep(Duration::from_millis(500));
    db.sql("INSERT INTO shop.s VALUES (1)");
    let got = receiver.wait_until(WAIT, |r| !r.is_empty());
    assert_eq!(got[0].json()["primary_id"], 1);
    assert_eq!(got[0].path, "/secure");
    for (who, want) in [
        (&unknown, "UnknownIssuer"),
        (&misnamed, "not valid for name"),
    ] {
        let dlq = who.state_dir().join("dlq").join("s.jsonl");
        let deadline = std::time::Instant::now() + WAIT;
        let text = loop {
            let t = std::fs::read_to_string(&dlq).unwrap_or_default();
            if !t.is_empty() {
                break t;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no dead letter:\n{}",
                who.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(text.contains(want), "{want} expected in {text}");
    }
    assert_eq!(
        receiver.requests().len(),
        1,
        "only the verified instance got through"
    );
    drop(trusted);
}
