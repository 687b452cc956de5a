//! The operator console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`) against a running instance streaming from MariaDB: the
//! numbers on the page are the API's, and its pause and resume buttons (asking
//! for the token) pause and resume the task.

mod common;

use std::time::{Duration, Instant};

use common::browser::Browser;
use common::live::admin;
use common::mariadb::{free_port, MariaDb};
use common::receiver::{Receiver, Reply};
use common::rowhook::{source_yaml, wait_streaming, Rowhook};

const TOKEN: &str = "s3cret"; // common::live::admin sends this one

/// The task rows as the page shows them: {task: {state, delivered, in_flight}}.
const READ_TABLE: &str = r#"
const out = {};
for (const tr of document.querySelectorAll('#tasks tr')) {
  const f = (n) => tr.querySelector(`[data-field="${n}"]`).textContent;
  out[tr.dataset.task] = {state: f('state'), delivered: Number(f('delivered')), in_flight: Number(f('in_flight')), last_error: f('last_error'), spool_records: f('spool_records'), spool: f('spool')};
}
return out;"#;

fn task_state(port: u16, id: &str) -> String {
    admin(port, "GET", &format!("/tasks/{id}"), "").1["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn the_console_shows_the_api_numbers_and_its_buttons_pause_and_resume() {
    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.seq (id INT PRIMARY KEY, v INT);");
    // audit's first attempt fails: the page shows its last error.
    let failed_once = std::sync::atomic::AtomicBool::new(false);
    let receiver = Receiver::start(move |r| {
        if r.path == "/audit" && !failed_once.swap(true, std::sync::atomic::Ordering::Relaxed) {
            Reply::Status(503)
        } else {
            Reply::Status(200)
        }
    });
    let port = free_port();
    let config = format!(
        "{}server: {{enabled: true, port: {port}, token: {TOKEN}}}
dispatcher: {{retry_base_delay: 100ms, max_inflight: 60}}
tasks:
  - {{task_id: seq, table_name: shop.seq, events: [insert, update, delete], callback_url: '{}'}}
  - {{task_id: audit, table_name: shop.seq, events: [insert], callback_url: '{}'}}
  - {{task_id: held, table_name: shop.seq, events: [insert], callback_url: '{}', spool: {{fsync_interval: 20ms}}}}
",
        source_yaml(&db),
        receiver.url("/seq"),
        receiver.url("/audit"),
        receiver.url("/held")
    );
    let _rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    // Paused before the rows come: beyond its share of max_inflight, `held`'s
    // events go to its spool, which the page must show.
    let (code, body) = admin(port, "POST", "/tasks/held/pause", "");
    assert_eq!(code, 200, "{body}");
    db.sql("INSERT INTO shop.seq SELECT seq, 0 FROM shop.seq_1_to_200");
    receiver.wait_until(Duration::from_secs(30), |r| r.len() >= 401);

    let browser = Browser::start();
    browser.goto(&format!("http://127.0.0.1:{port}/"));
    browser.wait_for("return document.getElementById('status').textContent === 'UP' && document.querySelectorAll('#tasks tr').length === 3");
    // Quiet now: the page's numbers must be the API's.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = browser.script(READ_TABLE);
        let api = admin(port, "GET", "/tasks", "").1;
        let same = api.as_array().unwrap().iter().all(|t| {
            let id = t["task_id"].as_str().unwrap();
            page[id]["state"] == t["state"]
                && page[id]["delivered"] == t["delivered"]
                && page[id]["in_flight"] == t["in_flight"]
                && page[id]["spool_records"].as_str()
                    == Some(
                        t["spool"]["records"]
                            .as_u64()
                            .map_or("–".to_owned(), |n| n.to_string())
                            .as_str(),
                    )
        });
        if same {
            let spooled = api
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["task_id"] == "held")
                .and_then(|t| t["spool"]["records"].as_u64())
                .unwrap_or(0);
            assert!(spooled > 0, "nothing spooled: {api}");
            assert!(
                page["held"]["spool"].as_str().unwrap_or("").contains("MB"),
                "{page}"
            );
            assert_eq!(page["seq"]["spool"], "off", "{page}");
            assert_eq!(page["seq"]["delivered"], 200, "{page}");
            assert_eq!(page["seq"]["last_error"], "–", "{page}");
            let audit = page["audit"]["last_error"].as_str().unwrap_or("");
            assert!(audit.contains("503"), "{page}");
            break;
        }
        assert!(Instant::now() < deadline, "page {page} != api {api}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Pause from the page: it asks for the token, then the API says paused.
    browser.click(r#"button[data-action="pause"][data-task="seq"]"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    let prompt = loop {
        if let Some(p) = browser.prompt_text() {
            break p;
        }
        assert!(Instant::now() < deadline, "no token prompt");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(prompt.contains("token"), "{prompt}");
    browser.answer_prompt(TOKEN);
    let deadline = Instant::now() + Duration::from_secs(10);
    while task_state(port, "seq") != "paused" {
        assert!(Instant::now() < deadline, "the pause button did not pause");
        std::thread::sleep(Duration::from_millis(50));
    }
    db.sql("INSERT INTO shop.seq SELECT seq, 0 FROM shop.seq_201_to_220");
    browser.wait_for("return document.querySelector('#tasks tr[data-task=\"seq\"] [data-field=\"state\"]').textContent === 'paused'");
    let held = receiver
        .requests()
        .iter()
        .filter(|r| r.path == "/seq")
        .count();
    assert_eq!(held, 200, "a paused task sends nothing");
    if let Ok(path) = std::env::var("ROWHOOK_CONSOLE_SCREENSHOT") {
        std::fs::write(&path, browser.screenshot()).unwrap();
    }
    assert!(browser.screenshot().starts_with(b"\x89PNG"));

    // Resume: the token is remembered for the session, no second prompt.
    browser.click(r#"button[data-action="resume"][data-task="seq"]"#);
    let deadline = Instant::now() + Duration::from_secs(10);
    while task_state(port, "seq") != "running" {
        assert!(browser.prompt_text().is_none(), "asked for the token again");
        assert!(
            Instant::now() < deadline,
            "the resume button did not resume"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    receiver.wait_until(Duration::from_secs(30), |r| {
        r.iter().filter(|r| r.path == "/seq").count() >= 220
    });
}
