//! `rowhook run` as a child process for tests: config written to a temp dir, log
//! captured to a file (readable while it runs), killed on drop.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::mariadb::MariaDb;

/// A running `rowhook run`.
pub struct Rowhook {
    child: Child,
    dir: tempfile::TempDir,
}

impl Rowhook {
    /// Starts `rowhook run` with `config` (YAML text; `state.dir` is set to a temp dir
    /// unless the text sets it).
    pub fn run(config: &str) -> Rowhook {
        Self::run_with_tasks(config, None)
    }

    /// Starts `rowhook run` with `config`, and `tasks` as tasks.yaml beside it.
    pub fn run_with_tasks(config: &str, tasks: Option<&str>) -> Rowhook {
        let dir = tempfile::tempdir().unwrap();
        if let Some(tasks) = tasks {
            std::fs::write(dir.path().join("tasks.yaml"), tasks).unwrap();
        }
        let mut text = config.to_owned();
        if !text.contains("state:") {
            text.push_str(&format!(
                "\nstate: {{dir: '{}'}}\n",
                dir.path().join("state").display()
            ));
        }
        std::fs::write(dir.path().join("config.yaml"), text).unwrap();
        let log = std::fs::File::create(dir.path().join("rowhook.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_rowhook"))
            .args(["run", "--config"])
            .arg(dir.path().join("config.yaml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Rowhook { child, dir }
    }

    /// Replaces tasks.yaml (as an editor does: a new file renamed over it).
    pub fn write_tasks(&self, tasks: &str) {
        let tmp = self.dir.path().join(".tasks.yaml.new");
        std::fs::write(&tmp, tasks).unwrap();
        std::fs::rename(&tmp, self.dir.path().join("tasks.yaml")).unwrap();
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// The config file it runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// Runs another rowhook verb with the same config; returns (exit code, stdout, stderr).
    pub fn verb(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_rowhook"))
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs another rowhook verb as is (no config): (exit code, stdout, stderr).
    pub fn verb_admin(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_rowhook"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rowhook.log")).unwrap_or_default()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits for the process to exit by itself; returns its exit code and log.
    pub fn exit_within(&mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.log());
            }
            assert!(
                Instant::now() < deadline,
                "rowhook did not exit within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Rowhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- rowhook log ----\n{}", self.log());
        }
    }
}

/// Waits until some replica runs a binlog dump on `db`.
pub fn wait_streaming(db: &MariaDb) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let dumps = db.sql(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'",
        );
        if dumps[0][0] != "0" {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("rowhook never started a binlog dump");
}

/// The database section for `db` plus a fast heartbeat.
pub fn source_yaml(db: &MariaDb) -> String {
    format!(
        "database: {{host: 127.0.0.1, port: {}, user: root, password: '', server_id: 4343, tls: disabled}}
source: {{start: latest, heartbeat: 1s}}
log: {{level: info}}
",
        db.port
    )
}
