//! A real headless Chromium driven over WebDriver (Debian's `chromium` and
//! `chromium-driver`): a tiny W3C WebDriver client on a plain TCP socket.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::mariadb::free_port;

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver with one browser session; both end on drop.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session.
    pub fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromedriver (apt install chromium-driver): {e}")
            });
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while browser
            .http("GET", "/status", None)
            .map(|v| v["value"]["ready"] == true)
            != Ok(true)
        {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,900",
                         format!("--user-data-dir={}", browser._profile.path().display())],
            }
        }}});
        let answer = browser
            .http("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("no browser session: {e}"));
        browser.session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        browser
    }

    fn http(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .map_err(|e| e.to_string())?;
        // chromedriver keeps the connection open: read the head, then exactly
        // Content-Length bytes (written `Content-Length:251`, no space).
        let mut answer = Vec::new();
        let mut chunk = [0u8; 8192];
        let (head_end, length) = loop {
            let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed before the answer".into());
            }
            answer.extend_from_slice(&chunk[..n]);
            if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .ok_or("no Content-Length")?;
                break (end + 4, length);
            }
        };
        while answer.len() < head_end + length {
            let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..n]);
        }
        let body = &answer[head_end..(head_end + length).min(answer.len())];
        serde_json::from_slice(body).map_err(|e| format!("{e}: {}", String::from_utf8_lossy(body)))
    }

    /// One command of this session; panics on a WebDriver error.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let answer = self
            .http(method, &format!("/session/{}{path}", self.session), body)
            .unwrap();
        if answer["value"]["error"].is_string() {
            panic!("webdriver {method} {path}: {}", answer["value"]);
        }
        answer["value"].clone()
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({"url": url})));
    }

    /// Runs `js` (a function body; `return` gives the value) in the page.
    pub fn script(&self, js: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    /// Waits (at most 20 s) until `js` returns true.
    pub fn wait_for(&self, js: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.script(js) != Value::Bool(true) {
            assert!(Instant::now() < deadline, "the page never satisfied: {js}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the first element matching `css` (again, when the page replaced
    /// the element between finding and clicking it).
    pub fn click(&self, css: &str) {
        for _ in 0..10 {
            let found = self.command(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            );
            let id = found[ELEMENT].as_str().unwrap_or_else(|| {
                panic!(
                    "no {css}: {found}; page: {}",
                    self.script("return document.body.innerHTML")
                )
            });
            let answer = self
                .http(
                    "POST",
                    &format!("/session/{}/element/{id}/click", self.session),
                    Some(json!({})),
                )
                .unwrap();
            match answer["value"]["error"].as_str() {
                None => return,
                Some("stale element reference") => continue,
                Some(_) => panic!("click {css}: {}", answer["value"]),
            }
        }
        panic!("{css} kept going stale");
    }

    /// The text of an open prompt, or None.
    pub fn prompt_text(&self) -> Option<String> {
        let answer = self
            .http(
                "GET",
                &format!("/session/{}/alert/text", self.session),
                None,
            )
            .ok()?;
        answer["value"].as_str().map(str::to_owned)
    }

    /// Types `text` into the open prompt and accepts it.
    pub fn answer_prompt(&self, text: &str) {
        self.command("POST", "/alert/text", Some(json!({"text": text})));
        self.command("POST", "/alert/accept", Some(json!({})));
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.command("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or_default())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.http("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
