//! A real etcd server (Debian's `etcd-server`) on free loopback ports, with its
//! data in a temp dir; killed on drop. `etcdctl` (Debian's `etcd-client`) writes.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::mariadb::free_port;

/// A running etcd.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Client port.
    pub port: u16,
    peer: u16,
    name: String,
    /// `--initial-cluster` of a multi-member cluster (empty: alone).
    cluster: String,
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub fn start() -> Etcd {
        let mut e = Etcd {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
            peer: free_port(),
            name: "t".into(),
            cluster: String::new(),
        };
        e.restart();
        e
    }

    /// Starts an `n`-member cluster on loopback and waits until every member
    /// answers.
    pub fn cluster(n: usize) -> Vec<Etcd> {
        let mut members: Vec<Etcd> = (0..n)
            .map(|i| Etcd {
                child: None,
                dir: tempfile::tempdir().unwrap(),
                port: free_port(),
                peer: free_port(),
                name: format!("m{i}"),
                cluster: String::new(),
            })
            .collect();
        let cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.cluster = cluster.clone();
            m.spawn();
        }
        for m in &members {
            m.wait_healthy();
        }
        members
    }

    /// Whether this member leads the raft group.
    pub fn is_leader(&self) -> bool {
        self.try_ctl(&["endpoint", "status", "-w", "json"])
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| {
                let s = &v[0]["Status"];
                s["leader"].is_u64() && s["leader"] == s["header"]["member_id"]
            })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same ports and data.
    pub fn restart(&mut self) {
        self.spawn();
        self.wait_healthy();
    }

    fn spawn(&mut self) {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let cluster = if self.cluster.is_empty() {
            format!("{}={peer}", self.name)
        } else {
            self.cluster.clone()
        };
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).unwrap();
        let child = Command::new(binary("etcd"))
            .args(["--name", &self.name, "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &cluster])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start etcd (apt install etcd-server): {e}"));
        self.child = Some(child);
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.try_ctl(&["endpoint", "health"]).is_err() {
            assert!(
                Instant::now() < deadline,
                "etcd did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// What etcd logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// Runs etcdctl against this server: stdout, or stderr as the error.
    pub fn try_ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(binary("etcdctl"))
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint(), "--dial-timeout", "1s"])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run etcdctl (apt install etcd-client): {e}"));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `etcdctl put KEY VALUE`.
    pub fn put(&self, key: &str, value: &str) {
        self.try_ctl(&["put", key, value]).unwrap();
    }

    /// `etcdctl del KEY`.
    pub fn del(&self, key: &str) {
        self.try_ctl(&["del", key]).unwrap();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn binary(name: &str) -> PathBuf {
    ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}
