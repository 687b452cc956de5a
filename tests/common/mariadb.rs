//! A throwaway MariaDB per test: temp datadir, free port, row binlog. Started through
//! `scripts/mariadb-sandbox` (the same script the demo uses) and killed when the
//! handle drops, or when the test thread dies (PR_SET_PDEATHSIG), so a failing or
//! aborted test never leaves a server behind.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How much table metadata the server writes into TABLE_MAP events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowMetadata {
    /// Column names, signedness, charsets, enum/set values, primary key.
    Full,
    /// Only what is needed to decode values (no names).
    Minimal,
}

/// A running MariaDB owned by one test.
pub struct MariaDb {
    child: Child,
    dir: tempfile::TempDir,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    mode: RowMetadata,
    options: Vec<String>,
}

impl MariaDb {
    /// Starts a server with `--binlog-row-metadata=FULL`.
    pub fn start() -> Self {
        Self::start_with(RowMetadata::Full)
    }

    /// Starts a server with the given row metadata mode.
    pub fn start_with(metadata: RowMetadata) -> Self {
        Self::start_with_options(metadata, &[])
    }

    /// Starts a server with extra `mariadbd` options (e.g. TLS certificates).
    pub fn start_with_options(metadata: RowMetadata, options: &[String]) -> Self {
        // A port picked free can be taken again before mariadbd binds it; retry then.
        let mut last_log = String::new();
        for _ in 0..3 {
            match Self::try_start(metadata, options) {
                Ok(db) => return db,
                Err(log) => last_log = log,
            }
        }
        panic!("MariaDB did not start:\n{last_log}");
    }

    fn try_start(metadata: RowMetadata, options: &[String]) -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("rowhook-mdb-")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        let port = free_port();
        let child = spawn_sandbox(&dir, port, metadata, options)?;
        let mut db = MariaDb {
            child,
            dir,
            port,
            mode: metadata,
            options: options.to_vec(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = db.child.try_wait() {
                return Err(format!(
                    "mariadb-sandbox exited with {status}:\n{}",
                    db.log()
                ));
            }
            if db.try_sql("SELECT 1").is_ok() {
                return Ok(db);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("MariaDB not ready after 120 s:\n{}", db.log()))
    }

    /// `mysql://root@127.0.0.1:PORT` (root has no password in the sandbox).
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// The server's data directory (binlog files live here).
    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mariadbd.log")).unwrap_or_default()
    }

    /// Runs SQL with the `mariadb` client; returns rows as tab-separated fields.
    pub fn try_sql(&self, sql: &str) -> Result<Vec<Vec<String>>, String> {
        try_sql_at(self.port, sql)
    }

    /// Runs SQL and panics with the server's message when it fails.
    pub fn sql(&self, sql: &str) -> Vec<Vec<String>> {
        sql_at(self.port, sql)
    }

    /// The single value of a one-row, one-column query.
    pub fn value(&self, sql: &str) -> String {
        let rows = self.sql(sql);
        assert_eq!(rows.len(), 1, "{sql} returned {rows:?}");
        rows[0][0].clone()
    }
}

impl MariaDb {
    /// Kills the server (like a crash) and starts it again on the same datadir and
    /// port, waiting until it answers.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.start_again();
    }
}

impl MariaDb {
    /// Starts the server again on the same datadir and port, waiting until it answers.
    fn start_again(&mut self) {
        self.child = spawn_sandbox(&self.dir, self.port, self.mode, &self.options)
            .unwrap_or_else(|e| panic!("{e}"));
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.try_sql("SELECT 1").is_err() {
            assert!(
                Instant::now() < deadline,
                "MariaDB did not come back:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A clean shutdown (SIGTERM, as a service stop or an upgrade does), waiting
    /// until the server has exited, then a start on the same datadir and port.
    pub fn restart_clean(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        self.start_again();
    }

    /// Freezes the server (SIGSTOP): sockets stay open but nothing answers, as
    /// with a hung host or a silent network partition.
    pub fn freeze(&self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.thaw();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `scripts/mariadb-sandbox` for `dir`; the server dies with the test thread.
fn spawn_sandbox(
    dir: &tempfile::TempDir,
    port: u16,
    metadata: RowMetadata,
    options: &[String],
) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("mariadbd.log"))
        .map_err(|e| e.to_string())?;
    let mode = match metadata {
        RowMetadata::Full => "FULL",
        RowMetadata::Minimal => "MINIMAL",
    };
    let mut cmd = Command::new(super::root().join("scripts/mariadb-sandbox"));
    cmd.arg(dir.path().join("data"))
        .arg(port.to_string())
        .arg(mode)
        .args(options)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    // SAFETY: prctl is async-signal-safe; it only sets a flag on the child.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("cannot run mariadb-sandbox: {e}"))
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The `mariadb` client for the server at `port`: root over TCP, tab-separated
/// rows without headers.
pub fn client(port: u16) -> Command {
    let mut c = Command::new("mariadb");
    c.args([
        "--protocol=tcp",
        "-h127.0.0.1",
        "-uroot",
        "--batch",
        "--skip-column-names",
        "--raw",
        "--default-character-set=utf8mb4",
    ])
    .arg(format!("-P{}", port));
    c
}

/// Runs SQL on the server at `port` with the `mariadb` client (usable from any
/// thread); returns rows as tab-separated fields.
pub fn try_sql_at(port: u16, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let out = client(port)
        .arg("-e")
        .arg(sql)
        .output()
        .map_err(|e| format!("cannot run mariadb client: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect())
}

/// [`try_sql_at`], panicking with the server's message when it fails.
pub fn sql_at(port: u16, sql: &str) -> Vec<Vec<String>> {
    try_sql_at(port, sql).unwrap_or_else(|e| panic!("SQL failed: {sql}\n{e}"))
}
