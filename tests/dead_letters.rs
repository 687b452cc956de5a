//! Dead letters on a disk that fills up: `state.dir` on a small tmpfs. A record is
//! written whole or not at all, a full disk shows in `/health` and `/metrics`, and
//! once space returns every letter is readable.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mariadb::{free_port, MariaDb};
use common::receiver::{Receiver, Reply};
use common::rowhook::{source_yaml, wait_streaming, Rowhook};

/// A tmpfs of `size` mounted on a temp dir, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        assert!(
            root,
            "this test mounts a tmpfs to fill a disk and needs root (CI and the dev machines run as root)"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_full_disk_never_tears_a_dead_letter_and_shows_in_health() {
    let disk = Tmpfs::mount("256k");
    let state: PathBuf = disk.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Leaves room for a few dozen letters of the hundred to come.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![b'x'; 200 * 1024]).unwrap();

    let db = MariaDb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.t (id INT PRIMARY KEY, pad VARCHAR(700));");
    let receiver = Receiver::start(|_| Reply::Status(400));
    let port = free_port();
    let config = format!(
        "{}state: {{dir: '{}', checkpoint_interval: 100ms}}
server: {{enabled: true, port: {port}}}
tasks:
  - {{task_id: t, table_name: shop.t, events: [insert], callback_url: '{}'}}
",
        source_yaml(&db),
        state.display(),
        receiver.url("/t")
    );
    let rowhook = Rowhook::run(&config);
    wait_streaming(&db);
    let pad = "p".repeat(600);
    let inserts: String = (1..=100)
        .map(|i| format!("INSERT INTO shop.t VALUES ({i}, '{pad}');"))
        .collect();
    db.sql(&inserts);

    wait_for("the disk to fill", Duration::from_secs(60), || {
        get(port, "/health").contains("cannot write dead letters of task t")
    });
    let health = get(port, "/health");
    assert!(health.starts_with("HTTP/1.1 503"), "{health}");
    let metrics = get(port, "/metrics");
    assert!(
        metrics.contains("rowhook_dlq_writable{task=\"t\"} 0"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("rowhook_dlq_write_errors_total{task=\"t\"} 0"),
        "{metrics}"
    );

    // Space returns: every letter goes in, none glued onto a fragment.
    std::fs::remove_file(&filler).unwrap();
    wait_for("all 100 dead letters", Duration::from_secs(90), || {
        get(port, "/metrics").contains("rowhook_dead_lettered_total{task=\"t\"} 100")
    });
    assert!(get(port, "/health").starts_with("HTTP/1.1 200"));
    assert!(get(port, "/metrics").contains("rowhook_dlq_writable{task=\"t\"} 1"));
    let (code, out, err) = rowhook.verb(&["dlq", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("100 dead letter(s), 0 unreadable line(s)"),
        "{out}\n{err}\n{}",
        rowhook.log()
    );
}
