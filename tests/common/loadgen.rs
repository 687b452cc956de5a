//! loadgen as a child process for tests: the binary built beside rowhook, its
//! processes killed on drop, and the sink's report.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The loadgen binary `cargo test --workspace` built beside rowhook.
pub fn loadgen() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_rowhook")).with_file_name("loadgen");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p loadgen` first)",
        path.display()
    );
    path
}

/// A loadgen process, killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(args: &[&str]) -> Process {
    Process(
        Command::new(loadgen())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Runs `cmd` to the end, asserting it succeeded; its stdout.
pub fn succeeds(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

pub fn report(port: u16) -> Value {
    serde_json::from_str(&http(port, "GET", "/report", "").1).unwrap()
}

/// Spawns loadgen with stdout and stderr going to `log` (readable while it runs).
pub fn spawn_logged(args: &[&str], log: &Path) -> Process {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    Process(
        Command::new(loadgen())
            .args(args)
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap(),
    )
}
