//! Tasks kept in a real etcd: changed by etcdctl and by the admin API while rows
//! stream from a real MariaDB, through an etcd outage, and at a start while etcd
//! is down.

mod common;

use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::live::{
    accepted, admin, flaky, generation, table_view, view, wait_accepted, wait_generation,
    Reference, Writer, TOKEN,
};
use common::mariadb::{free_port, MariaDb};
use common::rowhook::{source_yaml, wait_streaming, Rowhook};

const PREFIX: &str = "/rowhook/tasks/";

fn task(url: &str, extra: &str) -> String {
    format!("{{table_name: live.kv, events: [insert, update, delete], callback_url: '{url}', payload: envelope{extra}}}")
}

fn config(db: &MariaDb, etcd: &Etcd, port: u16, extra: &str) -> String {
    format!(
        "{}server: {{enabled: true, port: {port}, token: {TOKEN}}}
dispatcher: {{max_retries: -1, retry_base_delay: 5ms, retry_max_delay: 20ms, worker_count: 48}}
tasks_source: {{etcd: {{endpoints: ['{}'], prefix: {PREFIX}, dial_timeout: 2s}}}}
{extra}",
        source_yaml(db),
        etcd.endpoint()
    )
}

fn metric(port: u16, name: &str) -> f64 {
    let text = common::loadgen::http(port, "GET", "/metrics", "").1;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn tasks_in_etcd_change_live_and_survive_an_etcd_outage() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE live; CREATE TABLE live.kv (id INT PRIMARY KEY, v INT NOT NULL);");
    let mut etcd = Etcd::start();
    let (receiver, verdicts) = flaky();
    let url = |p: &str| receiver.url(p);
    etcd.put(&format!("{PREFIX}a"), &task(&url("/a"), ""));
    etcd.put(&format!("{PREFIX}b"), &task(&url("/b1"), ""));
    // JSON is as good as YAML.
    etcd.put(
        &format!("{PREFIX}d"),
        &format!(
            r#"{{"table_name": "live.kv", "events": ["insert", "update", "delete"], "callback_url": "{}", "payload": "envelope"}}"#,
            url("/d")
        ),
    );
    let port = free_port();
    let rowhook = Rowhook::run(&config(&db, &etcd, port, ""));
    wait_streaming(&db);
    let admin_url = format!("http://127.0.0.1:{port}");
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--admin", &admin_url, "--token", TOKEN]);
        rowhook.verb_admin(&all)
    };
    let writer = Writer::start(&db);
    let wait_rows = |n: usize| writer.wait_rows(n);
    wait_rows(600);
    // 1: etcdctl adds c.
    etcd.put(&format!("{PREFIX}c"), &task(&url("/c"), ""));
    wait_generation(port, 1);
    wait_rows(400);
    // 2: the admin API (rowhook tasks add) re-points b.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!("{{task_id: b, {}", &task(&url("/b2"), "")[1..]),
    )
    .unwrap();
    let (code, out, err) = cli(&["tasks", "add", file.path().to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    wait_generation(port, 2);
    wait_rows(400);
    // 3: etcdctl removes d.
    etcd.del(&format!("{PREFIX}d"));
    wait_generation(port, 3);
    wait_rows(400);
    // 4: rowhook tasks disable c.
    let (code, out, err) = cli(&["tasks", "disable", "c"]);
    assert_eq!(code, Some(0), "{out}{err}");
    wait_generation(port, 4);

    // A bad value in etcd is rejected, named by key and field; nothing changes.
    etcd.put(
        &format!("{PREFIX}e"),
        "{table_name: live.kv, events: [insert], callback_url: 'ftp://x/e', colour: red}",
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(port, "rowhook_tasks_rejected") != 1.0 {
        assert!(
            Instant::now() < deadline,
            "the bad value was never rejected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = admin(port, "GET", "/health", "").1;
    let reasons = health["reasons"].to_string();
    assert!(
        reasons.contains("etcd key /rowhook/tasks/e")
            && reasons.contains("colour")
            && reasons.contains("callback_url"),
        "{reasons}"
    );
    assert_eq!(
        health["status"], "UP",
        "a rejected definition does not stop delivery"
    );
    assert_eq!(generation(port), 4);
    // A bad API body never reaches etcd.
    let (status, answer) = admin(
        port,
        "PUT",
        "/tasks/f",
        "{table_name: live.kv, events: [upsert], callback_url: /f}",
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("events"),
        "{answer}"
    );
    assert_eq!(etcd.try_ctl(&["get", &format!("{PREFIX}f")]).unwrap(), "");

    // etcd down for 30 s: delivery goes on with the last good set.
    etcd.kill();
    let before = accepted(&receiver, &verdicts).get("/a").map_or(0, Vec::len);
    std::thread::sleep(Duration::from_secs(30));
    let during = accepted(&receiver, &verdicts).get("/a").map_or(0, Vec::len);
    assert!(
        during > before + 1000,
        "a kept receiving during the outage: {before} -> {during}"
    );
    let health = admin(port, "GET", "/health", "").1;
    assert!(
        health["reasons"].to_string().contains("unreachable"),
        "{health}"
    );
    assert_eq!(health["status"], "UP");
    assert_eq!(metric(port, "rowhook_tasks_source_connected"), 0.0);
    // Back: changes made since apply (5: e fixed and g added, one etcd txn).
    etcd.restart();
    etcd.del(&format!("{PREFIX}e"));
    etcd.put(&format!("{PREFIX}g"), &task(&url("/g"), ""));
    wait_generation(port, 5);
    assert_eq!(metric(port, "rowhook_tasks_source_connected"), 1.0);
    assert_eq!(metric(port, "rowhook_tasks_rejected"), 0.0);
    wait_rows(400);
    let total = writer.stop();

    let got = wait_accepted(&receiver, &verdicts, |n| {
        n("/a") >= total && n("/b1") + n("/b2") >= total
    });
    let path = |p: &str| got.get(p).cloned().unwrap_or_default();
    let a = path("/a");
    let reference = Reference::new(&a);
    assert_eq!(a.len(), total, "a got every row change");
    let table = table_view(&db);
    assert_eq!(
        view(&a.iter().collect::<Vec<_>>()),
        table,
        "a's view is the table"
    );
    let span = |p: &str| reference.span(&path(p), p);
    let end = reference.order.len() - 1;
    let (c_first, c_last) = span("/c");
    let (b1_first, b1_last) = span("/b1");
    let (b2_first, b2_last) = span("/b2");
    let (d_first, d_last) = span("/d");
    let (g_first, g_last) = span("/g");
    assert_eq!((b1_first, d_first), (0, 0));
    assert!(
        c_first > 0 && reference.boundary(c_first),
        "c added at a boundary"
    );
    assert!(
        b2_first == b1_last + 1 && reference.boundary(b2_first),
        "b moved at a boundary, nothing lost"
    );
    assert!(b2_first > c_first, "changes apply in order");
    assert_eq!(b2_last, end);
    assert!(
        d_last + 1 > b2_first && reference.boundary(d_last + 1),
        "d removed at a boundary"
    );
    assert!(
        c_last > d_last && reference.boundary(c_last + 1),
        "c disabled at a boundary"
    );
    assert!(
        g_first > c_last + 1000 && reference.boundary(g_first) && g_last == end,
        "g added after the outage"
    );
    let mut b_all = path("/b1");
    b_all.extend(path("/b2"));
    assert_eq!(
        view(&b_all.iter().collect::<Vec<_>>()),
        table,
        "b's view across the change is the table"
    );
    // Where each task came from.
    let tasks = admin(port, "GET", "/tasks", "").1;
    let b_task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == "b")
        .unwrap();
    assert!(
        b_task["source"]["origin"]
            .as_str()
            .unwrap()
            .starts_with("etcd /rowhook/tasks/b@"),
        "{b_task}"
    );
    // With etcd as the source, a reload says where tasks live.
    let (code, _, err) = cli(&["reload"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("etcd"), "{err}");
}

#[test]
fn a_start_while_etcd_is_down_uses_the_cache_or_fails_clearly() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE live; CREATE TABLE live.kv (id INT PRIMARY KEY, v INT NOT NULL);");
    let mut etcd = Etcd::start();
    etcd.put(&format!("{PREFIX}a"), &task("http://127.0.0.1:9/a", ""));
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let with_state = format!("state: {{dir: '{}'}}\n", state.path().display());
    let first = Rowhook::run(&config(&db, &etcd, port, &with_state));
    let deadline = Instant::now() + Duration::from_secs(20);
    while admin(port, "GET", "/tasks", "")
        .1
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        assert!(Instant::now() < deadline, "no tasks:\n{}", first.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    first.terminate();
    drop(first);
    etcd.kill();

    let port = free_port();
    let second = Rowhook::run(&config(&db, &etcd, port, &with_state));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tasks = admin(port, "GET", "/tasks", "").1;
        if let Some(a) = tasks.as_array().and_then(|t| t.first()) {
            assert_eq!(a["task_id"], "a");
            assert!(
                a["source"]["origin"]
                    .as_str()
                    .unwrap()
                    .ends_with("(cached)"),
                "{a}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no start from the cache:\n{}",
            second.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        second.log().contains("starting with the cached tasks"),
        "{}",
        second.log()
    );
    drop(second);

    // The cache of another prefix is not a stand-in.
    let other_prefix = config(&db, &etcd, free_port(), &with_state)
        .replace(&format!("prefix: {PREFIX}"), "prefix: /other/tasks/");
    let mut other = Rowhook::run(&other_prefix);
    let (code, log) = other.exit_within(Duration::from_secs(30));
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("another prefix") && log.contains("cannot load tasks from etcd"),
        "{log}"
    );

    // No cache: a clear failure.
    let mut third = Rowhook::run(&config(&db, &etcd, free_port(), ""));
    let (code, log) = third.exit_within(Duration::from_secs(30));
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("cannot load tasks from etcd") && log.contains("fix:"),
        "{log}"
    );
}

/// Twenty bad task definitions (field, the bad part of the value) and the field
/// the rejection must name.
const BAD: [(&str, &str); 20] = [
    ("callback_url", "events: [insert]"),
    (
        "callback_url",
        "events: [insert], callback_url: 'ftp://x/e'",
    ),
    ("callback_url", "events: [insert], callback_url: 'http://'"),
    ("events", "events: [upsert], callback_url: 'http://h/e'"),
    ("events", "events: [], callback_url: 'http://h/e'"),
    (
        "batch_size",
        "events: [insert], callback_url: 'http://h/e', batch_size: 0",
    ),
    (
        "batch_size",
        "events: [insert], callback_url: 'http://h/e', batch_size: many",
    ),
    (
        "batch_linger",
        "events: [insert], callback_url: 'http://h/e', batch_linger: 5",
    ),
    (
        "secret",
        "events: [insert], callback_url: 'http://h/e', secret: abc",
    ),
    (
        "secret",
        "events: [insert], callback_url: 'http://h/e', secret: 'whsec_%%%'",
    ),
    (
        "headers",
        "events: [insert], callback_url: 'http://h/e', headers: {Content-Length: '3'}",
    ),
    (
        "headers",
        "events: [insert], callback_url: 'http://h/e', headers: {'Bad Name': x}",
    ),
    (
        "ordering",
        "events: [insert], callback_url: 'http://h/e', ordering: random",
    ),
    (
        "payload",
        "events: [insert], callback_url: 'http://h/e', payload: xml",
    ),
    (
        "columns",
        "events: [insert], callback_url: 'http://h/e', columns: []",
    ),
    (
        "colour",
        "events: [insert], callback_url: 'http://h/e', colour: red",
    ),
    (
        "enabled",
        "events: [insert], callback_url: 'http://h/e', enabled: maybe",
    ),
    (
        "snapshot",
        "events: [insert], callback_url: 'http://h/e', snapshot: always",
    ),
    (
        "snapshot_chunk",
        "events: [insert], callback_url: 'http://h/e', snapshot_chunk: 0",
    ),
    (
        "snapshot_rate",
        "events: [insert], callback_url: 'http://h/e', snapshot_rate: -5",
    ),
];

#[test]
fn twenty_bad_definitions_are_rejected_from_file_api_and_etcd_naming_task_and_field() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE live; CREATE TABLE live.kv (id INT PRIMARY KEY, v INT NOT NULL);");
    let etcd = Etcd::start();
    let receiver = common::receiver::Receiver::ok();
    let good = task(&receiver.url("/a"), "");
    etcd.put(&format!("{PREFIX}a"), &good);
    let (etcd_port, file_port) = (free_port(), free_port());
    let from_etcd = Rowhook::run(&config(&db, &etcd, etcd_port, ""));
    let file_config = format!(
        "{}server: {{enabled: true, port: {file_port}, token: {TOKEN}}}\n",
        // A second replica of the same server needs its own id.
        source_yaml(&db).replace("server_id: 4343", "server_id: 4344")
    );
    let good_file = format!("tasks:\n  - {{task_id: a, {}\n", &good[1..]);
    let from_file = Rowhook::run_with_tasks(&file_config, Some(&good_file));
    let deadline = Instant::now() + Duration::from_secs(20);
    while admin(etcd_port, "GET", "/health", "").0 != 200
        || admin(file_port, "GET", "/health", "").0 != 200
    {
        assert!(Instant::now() < deadline, "not up");
        std::thread::sleep(Duration::from_millis(100));
    }
    for (field, bad) in BAD {
        let value = format!("{{table_name: live.kv, {bad}}}");
        // The API refuses the body and writes nothing.
        let (status, answer) = admin(etcd_port, "PUT", "/tasks/e", &value);
        let why = answer["error"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "{field}: {answer}");
        assert!(
            why.contains("/tasks/e") && why.contains(field),
            "API {field}: {why}"
        );
        // etcd: the key is rejected by name and field; it changes nothing.
        etcd.put(&format!("{PREFIX}e"), &value);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reasons = admin(etcd_port, "GET", "/health", "").1["reasons"].to_string();
            if reasons.contains("/rowhook/tasks/e") && reasons.contains(field) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "etcd {field}: not rejected by name and field: {reasons}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd.del(&format!("{PREFIX}e"));
        while admin(etcd_port, "GET", "/health", "").1["reasons"]
            .to_string()
            .contains("/rowhook/tasks/e")
        {
            assert!(
                Instant::now() < deadline,
                "etcd {field}: the rejection outlived the key"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The file: the reload is refused naming task and field.
        from_file.write_tasks(&format!("{good_file}  - {{task_id: e, {}\n", &value[1..]));
        let (status, answer) = admin(file_port, "POST", "/reload", "");
        let why = answer["error"].as_str().unwrap_or_default();
        assert_eq!(status, 400, "file {field}: {answer}");
        assert!(
            why.contains("tasks.yaml") && why.contains(field) && why.contains("\"e\""),
            "file {field}: {why}"
        );
    }
    assert_eq!(generation(etcd_port), 0, "nothing running changed");
    assert_eq!(generation(file_port), 0, "nothing running changed");
    // Both still deliver task a.
    db.sql("INSERT INTO live.kv VALUES (1, 1)");
    let got = receiver.wait_until(Duration::from_secs(20), |r| r.len() >= 2);
    assert_eq!(got.len(), 2, "each instance delivered the row once");
    drop((from_etcd, from_file));
}
