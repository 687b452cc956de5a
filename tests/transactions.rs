//! Transactions as webhooks against a real MariaDB and a real receiver:
//! `delivery: transaction` (one POST per source transaction per task, in parts
//! when large) and the envelope's `transaction: {id, seq}` in per-event mode.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::mariadb::MariaDb;
use common::receiver::{Receiver, Reply, Request};
use common::rowhook::{source_yaml, wait_streaming, Rowhook};
use serde_json::Value;

/// Requests a receiver answered 200 (it fails every 7th one with a 500, so
/// retries are part of every run).
fn accepted(r: &Receiver, path: &str) -> Vec<Request> {
    r.requests()
        .into_iter()
        .filter(|q| q.path == path && !q.n.is_multiple_of(7))
        .collect()
}

fn seventh_fails() -> Receiver {
    Receiver::start(|r| {
        if r.n.is_multiple_of(7) {
            Reply::Status(500)
        } else {
            Reply::Status(200)
        }
    })
}

/// A writer's script of `n` transactions over `shop.a` and `shop.b`, each
/// statement changing exactly one row (inserts of new keys, updates — some of
/// the key — and deletes of keys that exist), and the (a rows, b rows) of each.
fn script(n: usize) -> (String, Vec<(u64, u64)>) {
    let mut next = common::seeded(0x5eed_7a11);
    let mut live: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
    let mut fresh = 1u64;
    let mut sql = String::new();
    let mut counts = Vec::new();
    for t in 0..n {
        sql.push_str("BEGIN;\n");
        let mut count = [0u64; 2];
        let statements = 1 + next(12) as usize;
        for s in 0..statements {
            // Every fifth transaction touches only `a`.
            let side = if t % 5 == 0 { 0 } else { next(2) as usize };
            let name = ["a", "b"][side];
            let keys = &mut live[side];
            let step = t * 100 + s;
            match next(4) {
                0 | 1 if !keys.is_empty() => {
                    let i = next(keys.len() as u64) as usize;
                    if next(3) == 0 {
                        fresh += 1;
                        sql.push_str(&format!(
                            "UPDATE shop.{name} SET id = {fresh}, v = {step} WHERE id = {};\n",
                            keys[i]
                        ));
                        keys[i] = fresh;
                    } else {
                        sql.push_str(&format!(
                            "UPDATE shop.{name} SET v = {step} WHERE id = {};\n",
                            keys[i]
                        ));
                    }
                }
                2 if !keys.is_empty() => {
                    let k = keys.swap_remove(next(keys.len() as u64) as usize);
                    sql.push_str(&format!("DELETE FROM shop.{name} WHERE id = {k};\n"));
                }
                _ => {
                    fresh += 1;
                    keys.push(fresh);
                    sql.push_str(&format!(
                        "INSERT INTO shop.{name} VALUES ({fresh}, {step});\n"
                    ));
                }
            }
            count[side] += 1;
        }
        sql.push_str("COMMIT;\n");
        counts.push((count[0], count[1]));
    }
    (sql, counts)
}

/// The table's rows as `id -> v`.
fn table(db: &MariaDb, name: &str) -> BTreeMap<i64, i64> {
    db.sql(&format!("SELECT id, v FROM shop.{name}"))
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].parse().unwrap()))
        .collect()
}

/// Applies one row change (either payload shape) to views keyed by table and id.
fn apply(views: &mut HashMap<String, BTreeMap<i64, i64>>, e: &Value) {
    let view = views
        .entry(e["table"].as_str().unwrap().to_owned())
        .or_default();
    let id_v = |row: &Value| (row["id"].as_i64().unwrap(), row["v"].as_i64().unwrap());
    match e["event"].as_str().unwrap() {
        "insert" => {
            let (k, v) = id_v(&e["data"]);
            view.insert(k, v);
        }
        "update" => {
            view.remove(&id_v(&e["old_data"]).0);
            let (k, v) = id_v(&e["new_data"]);
            view.insert(k, v);
        }
        "delete" => {
            view.remove(&id_v(&e["data"]).0);
        }
        other => panic!("unexpected event {other}"),
    }
}

/// 120 multi-statement transactions over two tables plus one of 130 rows, for
/// three tasks: `all` (both tables, `delivery: transaction`, parts of 50,
/// envelope), `b` (only `shop.b`, `delivery: transaction`) and `each` (`shop.a`,
/// per event, envelope). Each POST holds exactly its task's rows of one
/// transaction with matching counts, parts come in order and reassemble, a
/// transaction without the task's rows sends it nothing, and the rows applied in
/// arrival order give the tables; per-event envelopes number their rows.
#[test]
fn each_tasks_post_holds_its_rows_of_one_transaction_and_parts_reassemble() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.a (id INT PRIMARY KEY, v INT NOT NULL);
         CREATE TABLE shop.b (id INT PRIMARY KEY, v INT NOT NULL);",
    );
    let receiver = seventh_fails();
    let config = format!(
        "{}dispatcher: {{max_retries: -1, retry_base_delay: 5ms, retry_max_delay: 20ms}}
tasks:
  - {{task_id: all, table_name: 'shop.*', events: [insert, update, delete], callback_url: '{}', delivery: transaction, max_transaction_events: 50, payload: envelope}}
  - {{task_id: b, table_name: shop.b, events: [insert, update, delete], callback_url: '{}', delivery: transaction}}
  - {{task_id: each, table_name: shop.a, events: [insert, update, delete], callback_url: '{}', payload: envelope}}
",
        source_yaml(&db),
        receiver.url("/all"),
        receiver.url("/b"),
        receiver.url("/each"),
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    let (sql, mut counts) = script(120);
    db.sql(&sql);
    db.sql(
        "INSERT INTO shop.a SELECT seq + 1000000, seq FROM shop.seq_1_to_130;
         UPDATE shop.b SET v = v + 1 WHERE id < 0;",
    );
    counts.push((130, 0));
    let want_rows: u64 = counts.iter().map(|(a, b)| a + b).sum();
    let want_each: u64 = counts.iter().map(|c| c.0).sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got: u64 = accepted(&receiver, "/all")
            .iter()
            .map(|q| q.json()["events"].as_array().unwrap().len() as u64)
            .sum();
        let each = accepted(&receiver, "/each").len() as u64;
        if got >= want_rows && each >= want_each {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {want_rows} rows:\n{}",
            rowhook.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));

    // `all`: one entry per transaction, in commit order, parts in order.
    let all = accepted(&receiver, "/all");
    let mut ids = HashSet::new();
    let mut order: Vec<String> = Vec::new();
    let mut txns: HashMap<String, Vec<Value>> = HashMap::new();
    let mut views = HashMap::new();
    for q in &all {
        let body = q.json();
        assert!(
            ids.insert(body["id"].as_str().unwrap().to_owned()),
            "accepted twice: {}",
            body["id"]
        );
        assert_eq!(q.header("webhook-id"), body["id"].as_str());
        let t = &body["transaction"];
        let id = t["id"].as_str().unwrap().to_owned();
        assert_eq!(
            body["id"].as_str().unwrap(),
            format!("txn:{id}:{}", t["part"]),
            "id names the transaction and part"
        );
        let events = body["events"].as_array().unwrap();
        assert_eq!(t["events"].as_u64().unwrap(), events.len() as u64);
        let by_table: u64 = t["tables"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(by_table, events.len() as u64, "{t}");
        assert!(events.len() <= 50, "parts hold at most 50 rows: {t}");
        for e in events {
            assert_eq!(e["position"]["gtid"].as_str(), Some(id.as_str()));
            assert_eq!(e["transaction"]["id"].as_str(), Some(id.as_str()));
            apply(&mut views, e);
        }
        if order.last() != Some(&id) {
            assert!(!txns.contains_key(&id), "{id} interleaved with another");
            order.push(id.clone());
        }
        txns.entry(id).or_default().push(body);
    }
    assert_eq!(order.len(), counts.len(), "one entry per transaction");
    let seq_no = |id: &str| id.rsplit('-').next().unwrap().parse::<u64>().unwrap();
    assert!(
        order.windows(2).all(|w| seq_no(&w[0]) < seq_no(&w[1])),
        "transactions in commit order: {order:?}"
    );
    let mut parted = 0;
    for (n, id) in order.iter().enumerate() {
        let parts = &txns[id];
        let (a, b) = counts[n];
        let mut tables: HashMap<String, u64> = HashMap::new();
        let mut seqs = Vec::new();
        for (i, body) in parts.iter().enumerate() {
            let t = &body["transaction"];
            let last = i + 1 == parts.len();
            assert_eq!(t["part"], i as u64 + 1, "{id}: parts in order");
            assert_eq!(t["last"], last, "{id}: {t}");
            if last {
                assert_eq!(t["parts"], parts.len() as u64, "{t}");
                assert!(t["xid"].is_u64(), "the last part has the xid: {t}");
                assert!(t["commit_time"].is_string(), "{t}");
            } else {
                assert!(t["parts"].is_null() && t["xid"].is_null(), "{t}");
                assert_eq!(t["events"], 50, "full parts: {t}");
            }
            for (table, c) in t["tables"].as_object().unwrap() {
                *tables.entry(table.clone()).or_default() += c.as_u64().unwrap();
            }
            for e in body["events"].as_array().unwrap() {
                seqs.push(e["transaction"]["seq"].as_u64().unwrap());
            }
        }
        parted += usize::from(parts.len() > 1);
        assert_eq!(tables.get("shop.a").copied().unwrap_or(0), a, "{id}");
        assert_eq!(tables.get("shop.b").copied().unwrap_or(0), b, "{id}");
        assert_eq!(
            seqs,
            (1..=a + b).collect::<Vec<_>>(),
            "{id}: rows in binlog order, numbered across parts"
        );
    }
    assert!(parted >= 1, "the 130-row transaction came in parts");
    assert_eq!(views.remove("a").unwrap_or_default(), table(&db, "a"));
    assert_eq!(views.remove("b").unwrap_or_default(), table(&db, "b"));

    // `b`: only its table, nothing for transactions without it, pikachu shape.
    let b_posts = accepted(&receiver, "/b");
    let with_b: Vec<u64> = counts.iter().map(|c| c.1).filter(|&b| b > 0).collect();
    assert_eq!(
        b_posts.len(),
        with_b.len(),
        "one POST per transaction with b rows"
    );
    for (q, want) in b_posts.iter().zip(&with_b) {
        let body = q.json();
        let events = body["events"].as_array().unwrap();
        assert_eq!(events.len() as u64, *want);
        assert_eq!(
            body["transaction"]["tables"],
            serde_json::json!({"shop.b": want})
        );
        assert!(events
            .iter()
            .all(|e| e["table"] == "b" && e.get("position").is_none()));
    }

    // `each`: one POST per row, numbered within its transaction.
    let mut numbered: HashMap<String, Vec<u64>> = HashMap::new();
    for q in accepted(&receiver, "/each") {
        let e = q.json();
        let t = &e["transaction"];
        numbered
            .entry(t["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(t["seq"].as_u64().unwrap());
    }
    for (n, id) in order.iter().enumerate() {
        let want = counts[n].0;
        let mut seqs = numbered.remove(id).unwrap_or_default();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=want).collect::<Vec<_>>(), "{id}");
    }
}

/// kill -9 while a 3,000-row transaction goes out in 30 parts to a slow
/// receiver: the restarted instance sends the transaction again whole, every
/// part with the same id and the same bytes, and nothing is lost.
#[test]
fn a_transaction_cut_by_kill_9_between_parts_is_sent_again_whole() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.a (id INT PRIMARY KEY, v INT NOT NULL);",
    );
    let receiver =
        Receiver::start(|_| Reply::Delay(Duration::from_millis(40), Box::new(Reply::Status(200))));
    let state = tempfile::tempdir().unwrap();
    let config = format!(
        "{}state: {{dir: '{}', checkpoint_interval: 100ms}}
tasks:
  - {{task_id: all, table_name: shop.a, events: [insert], callback_url: '{}', delivery: transaction, max_transaction_events: 100}}
",
        source_yaml(&db),
        state.path().display(),
        receiver.url("/all"),
    );
    let mut rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    db.sql("INSERT INTO shop.a VALUES (0, 0)");
    receiver.wait_until(Duration::from_secs(10), |r| r.len() == 1);
    // Let the checkpoint pass the first transaction.
    std::thread::sleep(Duration::from_millis(500));
    db.sql("INSERT INTO shop.a SELECT seq, seq FROM shop.seq_1_to_3000");
    receiver.wait_until(Duration::from_secs(20), |r| r.len() >= 8);
    rowhook.kill9();
    let before = receiver.requests().len();
    assert!(before < 31, "killed mid-transaction: {before} requests");
    let _again = Rowhook::run(&config);
    let got = receiver.wait_until(Duration::from_secs(30), |r| {
        r.iter()
            .skip(before)
            .any(|q| q.json()["transaction"]["last"] == true)
    });
    let mut bodies: HashMap<String, Vec<u8>> = HashMap::new();
    for q in &got[1..] {
        let id = q.header("webhook-id").unwrap().to_owned();
        if let Some(first) = bodies.get(&id) {
            assert!(first == &q.body, "{id} sent again with other bytes");
        }
        bodies.insert(id, q.body.clone());
    }
    let mut rows = HashSet::new();
    for part in 1..=30 {
        let id = bodies
            .keys()
            .find(|id| id.ends_with(&format!(":{part}")))
            .unwrap_or_else(|| panic!("part {part} missing: {:?}", bodies.keys()));
        let body: Value = serde_json::from_slice(&bodies[id]).unwrap();
        for e in body["events"].as_array().unwrap() {
            rows.insert(e["data"]["id"].as_i64().unwrap());
        }
    }
    assert_eq!(rows.len(), 3000, "every row arrived");
    let resent = got.len() - 1 - bodies.len();
    eprintln!(
        "kill -9 after {} of 30 parts: the restart sent {} parts, {resent} of them again",
        before - 1,
        got.len() - before
    );
    assert!(
        resent >= 1,
        "the cut transaction was sent again from its start"
    );
}

/// A part of a `delivery: transaction` POST, as far as the million-row test checks it.
#[derive(serde::Deserialize)]
struct Part {
    transaction: Value,
    events: Vec<PartEvent>,
}

/// One event of a part: its row image's id and its place in the transaction.
#[derive(serde::Deserialize)]
struct PartEvent {
    data: Option<RowId>,
    new_data: Option<RowId>,
    transaction: Seq,
}

/// A row image's `id` (the other columns are not checked).
#[derive(serde::Deserialize)]
struct RowId {
    id: u64,
}

/// An event's `transaction.seq`.
#[derive(serde::Deserialize)]
struct Seq {
    seq: u64,
}

/// A 1,000,000-row INSERT and then a 1,000,000-row UPDATE (before and after
/// images), each one transaction, through a `delivery: transaction` task and a
/// per-event task with batches of 1,000: every row arrives, the parts in order
/// (100 of 10,000 per transaction, the last with the xid), and rowhook's RSS
/// stays bounded while the receiver of the parts is slow — parts count against
/// `max_inflight` by their rows.
#[test]
fn a_million_row_transaction_flows_through_with_bounded_memory() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.a (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(40) NOT NULL);",
    );
    // Slower than the decoder: parts would pile up if they were not counted by
    // their rows.
    let receiver = Receiver::start(|r| {
        if r.path == "/txn" {
            Reply::Delay(Duration::from_millis(30), Box::new(Reply::Status(200)))
        } else {
            Reply::Status(200)
        }
    });
    let config = format!(
        "{}tasks:
  - {{task_id: txn, table_name: shop.a, events: [insert, update], callback_url: '{}', delivery: transaction, payload: envelope}}
  - {{task_id: rows, table_name: shop.a, events: [insert, update], callback_url: '{}', batch_size: 1000}}
",
        source_yaml(&db),
        receiver.url("/txn"),
        receiver.url("/rows"),
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    let idle = rowhook.rss_kib();
    let mut peak = 0;
    // Bodies are parsed once each, as they come, into just the fields checked:
    // four million rows as `Value`s cost the test several times rowhook's own
    // CPU and made it, not rowhook, the slow side.
    let (mut seen, mut parts, mut rows) = (0, Vec::<Part>::new(), 0usize);
    let mut phase = |sql: &str, want_parts: usize, peak: &mut u64| -> f64 {
        db.sql(sql);
        let started = Instant::now();
        loop {
            *peak = (*peak).max(rowhook.rss_kib());
            // Only the new requests: a copy of all of them (hundreds of MB by
            // the UPDATE) every pass held the receiver's lock, and with it the
            // acks, longer than rowhook took to send them.
            let new = receiver.requests_since(seen);
            for q in &new {
                if q.path == "/rows" {
                    let batch: Vec<serde::de::IgnoredAny> = serde_json::from_slice(&q.body)
                        .unwrap_or_else(|e| panic!("a batch is a JSON array: {e}"));
                    rows += batch.len();
                } else {
                    parts.push(
                        serde_json::from_slice(&q.body)
                            .unwrap_or_else(|e| panic!("a part is an envelope: {e}")),
                    );
                }
            }
            seen += new.len();
            if parts.len() >= want_parts && rows >= want_parts * 10_000 {
                return started.elapsed().as_secs_f64();
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{} parts, {rows} rows after 120 s:\n{}",
                parts.len(),
                rowhook.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let insert = phase(
        "INSERT INTO shop.a SELECT seq, seq, CONCAT('row number ', seq) FROM shop.seq_1_to_1000000",
        100,
        &mut peak,
    );
    let update = phase(
        "UPDATE shop.a SET v = v + 1, s = CONCAT(s, '!')",
        200,
        &mut peak,
    );
    assert_eq!(parts.len(), 200);
    assert_eq!(rows, 2_000_000);
    for (n, transaction) in parts.chunks(100).enumerate() {
        let mut next_id = 1;
        let id = &transaction[0].transaction["id"];
        for (i, p) in transaction.iter().enumerate() {
            let t = &p.transaction;
            assert_eq!(&t["id"], id, "one transaction per 100 parts");
            assert_eq!(t["part"], i as u64 + 1);
            assert_eq!(t["events"], 10_000);
            assert_eq!(t["last"], i == 99);
            assert_eq!(t["xid"].is_u64(), i == 99, "{t}");
            assert_eq!(p.events.len(), 10_000);
            for e in &p.events {
                let image = if n == 0 { &e.data } else { &e.new_data };
                let image = image.as_ref().expect("the row image of the event's type");
                assert_eq!(image.id, next_id, "rows in order across parts");
                assert_eq!(e.transaction.seq, next_id);
                next_id += 1;
            }
        }
    }
    eprintln!(
        "1,000,000-row INSERT then UPDATE: 100 parts + 1,000 batches each, {insert:.1} s and {update:.1} s; rowhook RSS idle {} MB, peak {} MB",
        idle / 1024,
        peak / 1024
    );
    assert!(peak < 96 * 1024, "peak RSS {peak} KiB");
}

/// The position (file sequence, offset) a payload's id starts with.
fn position_of(id: &str) -> (u64, u64) {
    let mut parts = id.split(':');
    let file = parts.next().unwrap();
    let seq = file.rsplit('.').next().unwrap().parse().unwrap();
    (seq, parts.next().unwrap().parse().unwrap())
}

/// Column names of a schema webhook's `columns_before`/`columns_after`.
fn names(columns: &Value) -> Option<Vec<String>> {
    columns.as_array().map(|cols| {
        cols.iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    })
}

/// ALTER ADD/MODIFY/DROP COLUMN and RENAME mid-stream with `schema_events: true`:
/// each DDL on a watched table arrives as an `"event": "schema"` webhook with
/// the statement and the columns before and after, in order with the rows — every
/// row change written before it arrives before it, every one after it after —
/// under a receiver that delays and fails, with FULL and MINIMAL metadata.
fn schema_changes_arrive_in_order_with_rows(mode: common::mariadb::RowMetadata) {
    let db = MariaDb::start_with(mode);
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.items (id INT PRIMARY KEY, v INT NOT NULL);
         CREATE TABLE shop.other (id INT PRIMARY KEY);",
    );
    let receiver = Receiver::start(|r| {
        let h = (r.n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
        if h.is_multiple_of(5) {
            Reply::Status(503)
        } else {
            Reply::Delay(
                Duration::from_micros(h % 2000),
                Box::new(Reply::Status(200)),
            )
        }
    });
    let config = format!(
        "{}dispatcher: {{max_retries: -1, retry_base_delay: 5ms, retry_max_delay: 20ms, worker_count: 8}}
tasks:
  - {{task_id: items, table_name: 'shop.*', events: [insert, update, delete], callback_url: '{}', payload: envelope, schema_events: true}}
  - {{task_id: plain, table_name: shop.items, events: [insert, update, delete], callback_url: '{}'}}
",
        source_yaml(&db),
        receiver.url("/items"),
        receiver.url("/plain"),
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    let rows = |from: u32, n: u32| {
        format!(
            "INSERT INTO shop.items (id, v) SELECT seq, seq FROM shop.seq_{from}_to_{};",
            from + n - 1
        )
    };
    db.sql(&rows(1, 200));
    db.sql("ALTER TABLE shop.items ADD COLUMN note VARCHAR(20) NULL");
    db.sql("UPDATE shop.items SET note = 'x', v = v + 1 WHERE id <= 100; DELETE FROM shop.items WHERE id > 190;");
    db.sql("ALTER TABLE shop.items MODIFY v BIGINT NOT NULL");
    db.sql(&rows(1000, 100));
    db.sql("ALTER TABLE shop.items DROP COLUMN note");
    db.sql(&rows(2000, 100));
    db.sql("ALTER TABLE shop.other ADD COLUMN w INT");
    db.sql("RENAME TABLE shop.items TO shop.things");
    db.sql("INSERT INTO shop.things (id, v) SELECT seq, seq FROM shop.seq_3000_to_3099");
    // 200 + 100 updates + 10 deletes + 100 + 100 + 100 rows; 5 DDL webhooks
    // (ADD, MODIFY, DROP, other's ADD, and RENAME's two names).
    let want = 610 + 6;
    let accepted = |r: &Receiver| -> Vec<Value> {
        r.requests()
            .iter()
            .filter(|q| q.path == "/items")
            .filter(|q| {
                let h = (q.n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
                !h.is_multiple_of(5)
            })
            .map(Request::json)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted(&receiver).len() < want {
        assert!(
            Instant::now() < deadline,
            "{} of {want}:\n{}",
            accepted(&receiver).len(),
            rowhook.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    let got = accepted(&receiver);
    assert_eq!(got.len(), want, "nothing extra");
    let schema: Vec<(usize, &Value)> = got
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "schema")
        .collect();
    let statements: Vec<&str> = schema
        .iter()
        .map(|(_, e)| e["statement"].as_str().unwrap())
        .collect();
    assert_eq!(
        statements,
        [
            "ALTER TABLE shop.items ADD COLUMN note VARCHAR(20) NULL",
            "ALTER TABLE shop.items MODIFY v BIGINT NOT NULL",
            "ALTER TABLE shop.items DROP COLUMN note",
            "ALTER TABLE shop.other ADD COLUMN w INT",
            "RENAME TABLE shop.items TO shop.things",
            "RENAME TABLE shop.items TO shop.things",
        ],
        "{mode:?}"
    );
    // In order with the rows: a DDL's webhook splits the rows by position.
    for (i, s) in &schema {
        let at = position_of(s["id"].as_str().unwrap());
        for (j, e) in got.iter().enumerate() {
            if e["event"] == "schema" {
                continue;
            }
            let p = position_of(e["id"].as_str().unwrap());
            assert_eq!(
                j < *i,
                p < at,
                "{mode:?}: row {} arrived {} the schema change {}",
                e["id"],
                if j < *i { "before" } else { "after" },
                s["statement"]
            );
        }
    }
    let cols = |k: usize, side: &str| names(&schema[k].1[side]);
    let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    assert_eq!(cols(0, "columns_before"), strings(&["id", "v"]), "{mode:?}");
    assert_eq!(cols(0, "columns_after"), strings(&["id", "v", "note"]));
    assert_eq!(schema[0].1["columns_after"][2]["type"], "varchar(20)");
    assert_eq!(schema[0].1["columns_after"][0]["primary_key"], true);
    assert!(
        schema[1].1["columns_after"][1]["type"]
            .as_str()
            .unwrap()
            .starts_with("bigint"),
        "{}",
        schema[1].1
    );
    assert_eq!(cols(2, "columns_after"), strings(&["id", "v"]));
    assert_eq!(schema[3].1["table"], "other");
    assert_eq!(schema[4].1["table"], "items");
    assert_eq!(schema[4].1["columns_after"], Value::Null, "renamed away");
    assert_eq!(schema[5].1["table"], "things");
    assert_eq!(cols(5, "columns_after"), strings(&["id", "v"]));
    assert!(schema[0].1["position"]["gtid"].is_string());
    // Rows after ADD COLUMN carry it, by name, in both metadata modes.
    let updated = got
        .iter()
        .find(|e| e["event"] == "update")
        .expect("an update");
    assert_eq!(updated["new_data"]["note"], "x", "{mode:?}: {updated}");
    // A task without schema_events gets only rows.
    let plain = receiver
        .requests()
        .iter()
        .filter(|q| q.path == "/plain")
        .any(|q| q.json()["event"] == "schema");
    assert!(!plain);
}

#[test]
fn schema_changes_arrive_in_order_with_rows_full_metadata() {
    schema_changes_arrive_in_order_with_rows(common::mariadb::RowMetadata::Full);
}

#[test]
fn schema_changes_arrive_in_order_with_rows_minimal_metadata() {
    schema_changes_arrive_in_order_with_rows(common::mariadb::RowMetadata::Minimal);
}

/// Rows written before an ALTER ADD COLUMN but read after it: with MINIMAL
/// metadata the binlog names no columns and information_schema now has one more,
/// so the names cannot be known. Those rows go to the quarantine (positions and
/// raw values, `/health`, `/tasks`, `/metrics` say so), later rows flow named,
/// and `rowhook quarantine replay --yes` re-sends them after `list` showed them.
/// With FULL metadata the event names its columns and nothing is quarantined.
fn rows_from_before_an_alter(mode: common::mariadb::RowMetadata) {
    let db = MariaDb::start_with(mode);
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.items (id INT PRIMARY KEY, v INT NOT NULL);
         INSERT INTO shop.items SELECT seq, seq FROM shop.seq_1_to_20;
         ALTER TABLE shop.items ADD COLUMN note VARCHAR(20) NULL;
         INSERT INTO shop.items SELECT seq, seq, 'new' FROM shop.seq_21_to_30;
         CREATE TABLE shop.typed (id INT PRIMARY KEY, v INT NOT NULL);
         INSERT INTO shop.typed SELECT seq, seq FROM shop.seq_1_to_5;
         ALTER TABLE shop.typed MODIFY v VARCHAR(10) NOT NULL;
         INSERT INTO shop.typed SELECT seq, seq FROM shop.seq_6_to_10;",
    );
    let receiver = Receiver::ok();
    let admin = common::mariadb::free_port();
    let config = format!(
        "{}server: {{enabled: true, port: {admin}}}
tasks:
  - {{task_id: items, table_name: 'shop.*', events: [insert], callback_url: '{}'}}
",
        source_yaml(&db).replace("start: latest", "start: earliest"),
        receiver.url("/items"),
    );
    let rowhook = Rowhook::run(&config);
    let minimal = matches!(mode, common::mariadb::RowMetadata::Minimal);
    // items: 20 rows with one column fewer, then 10; typed: 5 rows with v an
    // INT where information_schema now says VARCHAR (same count), then 5.
    let named = if minimal { 15 } else { 40 };
    let got = receiver.wait_until(Duration::from_secs(20), |r| r.len() >= named);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(receiver.requests().len(), named, "{mode:?}");
    for q in &got {
        let data = &q.json()["data"];
        assert!(
            data["id"].is_i64() && !data["v"].is_null(),
            "{mode:?}: {data}"
        );
    }
    let (_, tasks) = common::loadgen::http(admin, "GET", "/tasks", "");
    let (_, health) = common::loadgen::http(admin, "GET", "/health", "");
    let (_, metrics) = common::loadgen::http(admin, "GET", "/metrics", "");
    let file = rowhook.state_dir().join("quarantine").join("items.jsonl");
    if !minimal {
        assert!(
            !file.exists(),
            "FULL names its columns: nothing quarantined"
        );
        assert!(!health.contains("quarantined"), "{health}");
        return;
    }
    let tasks: Value = serde_json::from_str(&tasks).unwrap();
    assert_eq!(tasks[0]["quarantined"], 25, "{tasks}");
    assert!(
        health.contains("25 row change(s) quarantined")
            && health.contains("rowhook quarantine list"),
        "{health}"
    );
    assert!(
        metrics.contains("rowhook_quarantined_total{task=\"items\"} 25"),
        "{metrics}"
    );
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 25);
    assert_eq!(
        lines[0]["payload"]["data"],
        serde_json::json!({"@1": 1, "@2": 1})
    );
    assert_eq!(lines[20]["payload"]["table"], "typed");
    assert!(lines[0]["id"].as_str().unwrap().starts_with("binlog."));
    let (code, out, _) = rowhook.verb(&["quarantine", "list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("25 quarantined row change(s)"), "{out}");
    let (code, _, err) = rowhook.verb(&["quarantine", "replay", "--task", "items"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(receiver.requests().len(), 15, "nothing sent without --yes");
    let (code, out, err) = rowhook.verb(&["quarantine", "replay", "--task", "items", "--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("25 delivered"), "{out}");
    let replayed: Vec<Value> = receiver.requests()[15..]
        .iter()
        .map(Request::json)
        .collect();
    assert_eq!(replayed.len(), 25);
    assert_eq!(replayed[19]["data"]["@1"], 20);
    let (_, out, _) = rowhook.verb(&["quarantine", "list"]);
    assert!(out.contains("0 quarantined row change(s)"), "{out}");
}

#[test]
fn rows_from_before_an_alter_are_quarantined_under_minimal_metadata() {
    rows_from_before_an_alter(common::mariadb::RowMetadata::Minimal);
}

#[test]
fn rows_from_before_an_alter_are_named_by_the_event_under_full_metadata() {
    rows_from_before_an_alter(common::mariadb::RowMetadata::Full);
}
