//! Live task changes against a real MariaDB while rows stream: what each
//! receiver sees shows every change taking effect at one transaction boundary,
//! nothing lost or sent twice for unchanged tasks, exactly the expected rows for
//! changed, added and removed ones, and per-key order across a change.

mod common;

use std::time::{Duration, Instant};

use common::live::{
    accepted, admin, flaky, generation, table_view, view, wait_accepted, wait_generation,
    Reference, Seen, Writer, TOKEN,
};
use common::mariadb::{free_port, MariaDb};
use common::rowhook::{source_yaml, wait_streaming, Rowhook};

fn task(id: &str, url: &str, extra: &str) -> String {
    format!("  - {{task_id: {id}, table_name: live.kv, events: [insert, update, delete], callback_url: '{url}', payload: envelope{extra}}}\n")
}

#[test]
fn tasks_change_by_file_sighup_and_reload_at_transaction_boundaries() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE live; CREATE TABLE live.kv (id INT PRIMARY KEY, v INT NOT NULL);");
    // o's receiver is slow until its ordering changes, so its one old lane still
    // holds events when the first ones of the new routing reach the new lanes.
    let slow = std::sync::Arc::new(std::sync::Mutex::new(Some("/o".to_owned())));
    let (receiver, verdicts) = common::live::flaky_slow_on(Some(slow.clone()));
    let port = free_port();
    let config = format!(
        "{}server: {{enabled: true, port: {port}, token: {TOKEN}}}
dispatcher: {{max_retries: -1, retry_base_delay: 5ms, retry_max_delay: 20ms, worker_count: 48}}
",
        source_yaml(&db)
    );
    let url = |p: &str| receiver.url(p);
    let first = format!(
        "tasks:\n{}{}{}{}",
        task("a", &url("/a"), ""),
        task("b", &url("/b1"), ""),
        task("d", &url("/d"), ""),
        task("o", &url("/o"), ", ordering: table, batch_size: 50")
    );
    let rowhook = Rowhook::run_with_tasks(&config, Some(&first));
    wait_streaming(&db);
    let writer = Writer::start(&db);
    let wait_rows = |n: usize| writer.wait_rows(n);
    wait_rows(1000);

    // Change 1, by file + SIGHUP: b moves to /b2, c is added, d is removed, o
    // switches from one lane for the table to per-key lanes.
    let o_keyed = task("o", &url("/o"), ", batch_size: 50");
    let second = format!(
        "tasks:\n{}{}{}{}",
        task("a", &url("/a"), ""),
        task("b", &url("/b2"), ""),
        task("c", &url("/c"), ""),
        o_keyed
    );
    rowhook.write_tasks(&second);
    rowhook.signal(libc::SIGHUP);
    wait_generation(port, 1);
    *slow.lock().unwrap() = None;
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
        "tasks:\n{}{}{}{}",
        task("a", &url("/a"), ""),
        task("b", &url("/b2"), ""),
        task("c", &url("/c"), ", enabled: false"),
        o_keyed
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
    let got = wait_accepted(&receiver, &verdicts, |n| {
        n("/a") >= total && n("/b1") + n("/b2") >= total && n("/o") >= total
    });
    let path = |p: &str| got.get(p).cloned().unwrap_or_default();
    let (a, b1, b2, c, d) = (path("/a"), path("/b1"), path("/b2"), path("/c"), path("/d"));

    // a, untouched by every change: each row change once, and its view is the table.
    let reference = Reference::new(&a);
    assert_eq!(a.len(), total, "a got every row change");
    let table = table_view(&db);
    assert_eq!(
        view(&a.iter().collect::<Vec<_>>()),
        table,
        "a's view is the table"
    );
    let span = |rows: &[Seen], name: &str| reference.span(rows, name);
    let boundary = |i: usize| reference.boundary(i);
    let order = &reference.order;

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
    // o, whose lanes changed under it: complete, each once, and in per-key order.
    let o = path("/o");
    assert_eq!(reference.span(&o, "o"), (0, order.len() - 1));
    assert_eq!(
        view(&o.iter().collect::<Vec<_>>()),
        table,
        "o's view across its ordering change is the table"
    );
    common::live::assert_per_key_order(&o, "o");
    let b_all: Vec<Seen> = b1.iter().chain(&b2).cloned().collect();
    common::live::assert_per_key_order(&b_all, "b");
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

#[test]
fn a_test_webhook_is_a_signed_sample_of_the_tasks_table_and_reports_the_answer() {
    use base64::Engine as _;
    let db = MariaDb::start();
    db.sql("CREATE DATABASE live; CREATE TABLE live.kv (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(20)); INSERT INTO live.kv VALUES (7, 70, 'seven');");
    let receiver = common::receiver::Receiver::start(|r| {
        if r.path == "/down" {
            common::receiver::Reply::Full(500, vec![], b"receiver broken".to_vec())
        } else {
            common::receiver::Reply::Full(200, vec![], b"thanks".to_vec())
        }
    });
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let port = free_port();
    let config = format!(
        "{}server: {{enabled: true, port: {port}, token: {TOKEN}}}
tasks:
  - {{task_id: kv, table_name: live.kv, events: [insert], callback_url: '{}', secret: '{secret}', batch_size: 2, headers: {{X-Team: core}}, columns: [id, v]}}
  - {{task_id: down, table_name: live.kv, events: [insert], callback_url: '{}', enabled: false}}
",
        source_yaml(&db),
        receiver.url("/hook"),
        receiver.url("/down")
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    let admin_url = format!("http://127.0.0.1:{port}");
    let (code, out, err) = rowhook.verb_admin(&[
        "tasks", "test", "kv", "--admin", &admin_url, "--token", TOKEN,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("HTTP 200") && out.contains("thanks"), "{out}");
    let got = receiver.wait_until(Duration::from_secs(10), |r| !r.is_empty());
    let r = &got[0];
    assert_eq!(r.header("webhook-test"), Some("true"));
    assert_eq!(r.header("x-team"), Some("core"));
    // batch_size 2: the body is an array, as the task's real requests are.
    let body = r.json();
    let sample = &body[0];
    assert_eq!(sample["event"], "insert");
    assert_eq!(sample["test"], true);
    assert_eq!(
        sample["data"],
        serde_json::json!({"id": 7, "v": 70}),
        "the task's columns of a real row"
    );
    assert_eq!(sample["primary_id"], 7);
    let id = r.header("webhook-id").unwrap();
    assert!(id.starts_with("test:kv:"), "{id}");
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let signed = format!(
        "{id}.{}.{}",
        r.header("webhook-timestamp").unwrap(),
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(
        r.header("webhook-signature"),
        Some(format!("v1,{}", common::hmac_sha256_b64(&key, signed.as_bytes())).as_str())
    );
    // A failing receiver: the status and body are shown and the exit code says so
    // (a disabled task can be tested too).
    let (code, out, _) = rowhook.verb_admin(&[
        "tasks", "test", "down", "--admin", &admin_url, "--token", TOKEN,
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("HTTP 500") && out.contains("receiver broken"),
        "{out}"
    );
    // The token is needed.
    let (code, _, err) = rowhook.verb_admin(&["tasks", "test", "kv", "--admin", &admin_url]);
    assert_eq!(code, Some(2), "{err}");
}

#[test]
fn a_task_added_on_disk_with_snapshot_initial_sends_existing_rows_then_streams() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE live; CREATE TABLE live.kv (id INT PRIMARY KEY, v INT NOT NULL);");
    // Keys the writer never touches, beside the ones it changes all along.
    let rows: Vec<String> = (1001..=1060).map(|k| format!("({k}, {k})")).collect();
    db.sql(&format!("INSERT INTO live.kv VALUES {};", rows.join(", ")));
    let (receiver, verdicts) = flaky();
    let port = free_port();
    let config = format!(
        "{}server: {{enabled: true, port: {port}, token: {TOKEN}}}
dispatcher: {{max_retries: -1, retry_base_delay: 5ms, retry_max_delay: 20ms, worker_count: 48}}
tasks_watch: true
",
        source_yaml(&db)
    );
    let a = task("a", &receiver.url("/a"), "");
    let rowhook = Rowhook::run_with_tasks(&config, Some(&format!("tasks:\n{a}")));
    wait_streaming(&db);
    let writer = Writer::start(&db);
    std::thread::sleep(Duration::from_millis(500));
    rowhook.write_tasks(&format!(
        "tasks:\n{a}{}",
        task(
            "s",
            &receiver.url("/s"),
            ", snapshot: initial, snapshot_chunk: 7"
        )
    ));
    // No signal: tasks_watch sees the file change.
    wait_generation(port, 1);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = admin(port, "GET", "/tasks", "").1;
        let state = tasks
            .as_array()
            .and_then(|t| t.iter().find(|t| t["task_id"] == "s"))
            .map(|t| t["snapshot"]["state"].clone());
        if state.as_ref().is_some_and(|s| s == "done") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the snapshot of s never finished: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    writer.stop();
    let table = table_view(&db);
    let deadline = Instant::now() + Duration::from_secs(60);
    let s = loop {
        let s = accepted(&receiver, &verdicts)
            .remove("/s")
            .unwrap_or_default();
        if view(&s.iter().collect::<Vec<_>>()) == table || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        s.iter().any(|x| x.body["event"] == "snapshot"),
        "s got snapshot rows"
    );
    assert!(
        s.iter().any(|x| x.body["event"] != "snapshot"),
        "s streams too"
    );
    assert_eq!(
        view(&s.iter().collect::<Vec<_>>()),
        table,
        "s's view is the table: no gap, no stale row"
    );
}
