//! High availability on etcd: any number of instances with the same config,
//! exactly one active. Each instance holds a lease and campaigns in etcd's
//! election (`<prefix>election`); the winner reads the shared state
//! (`<prefix>state`: epoch and checkpoint), bumps the epoch and streams. Every
//! checkpoint write is a transaction conditioned on the winner's election key
//! (its create revision), so a deposed instance cannot move it. The lease is
//! renewed every quarter TTL; sending stops a quarter TTL before the lease could
//! expire (`Leadership`), and an instance that lost its lease restarts itself as
//! a standby (it execs itself: the data path starts clean, nothing of the old
//! run is sent). All etcd work runs on the `rowhook-ha` thread (a
//! single-threaded tokio runtime), never on the source core.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use etcd_client::{Client, Compare, CompareOp, ResignOptions, Txn, TxnOp};

use crate::checkpoint::Checkpoint;
use crate::config::HaConfig;
use crate::delivery::plan::{boot_ms, Controls};

/// Longest one etcd request (not the campaign) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the thread looks at requests, the lease and the clock.
const TICK: Duration = Duration::from_millis(20);

/// This instance's part in the election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// Waiting to be elected (or not connected to etcd).
    #[default]
    Standby,
    /// Elected: reads the binlog and sends.
    Active,
}

impl Role {
    /// `active` or `standby`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Standby => "standby",
            Role::Active => "active",
        }
    }
}

/// What `/health`, `/metrics` and `rowhook status` show about the election.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// This instance's id in the election.
    pub id: String,
    /// Its role.
    pub role: Role,
    /// The epoch it runs under (active), or the last one it saw.
    pub epoch: u64,
    /// The active instance's id, when known.
    pub active_id: Option<String>,
    /// The active instance's admin address, when known.
    pub active_admin: Option<String>,
    /// Why etcd cannot be used right now.
    pub etcd_error: Option<String>,
    /// Times this process became active.
    pub takeovers: u64,
}

/// Shared between the `rowhook-ha` thread and the source core.
#[derive(Debug, Default)]
pub struct Status {
    view: Mutex<View>,
}

impl Status {
    /// A copy of the current state.
    pub fn view(&self) -> View {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut View)) {
        if let Ok(mut v) = self.view.lock() {
            f(&mut v);
        }
    }
}

/// Won the election.
#[derive(Debug)]
pub struct Elected {
    /// The new epoch.
    pub epoch: u64,
    /// The shared checkpoint to resume from (none before the first write).
    pub checkpoint: Option<Checkpoint>,
}

enum ToHa {
    Store {
        value: Vec<u8>,
        reply: Sender<Result<(), String>>,
    },
    Resign {
        reply: Sender<()>,
    },
}

/// The source core's end of the `rowhook-ha` thread.
pub struct Ha {
    to: Sender<ToHa>,
    elected: Receiver<Elected>,
    /// The election state, for the admin server.
    pub status: Arc<Status>,
    prefix: String,
}

/// Why HA could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the ha thread: {0}")]
pub struct StartError(std::io::Error);

/// The shared state in etcd, `<prefix>state`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Shared {
    epoch: u64,
    /// The instance that wrote it.
    instance: String,
    checkpoint: Option<Checkpoint>,
}

/// Starts the `rowhook-ha` thread: it connects, holds a lease and campaigns.
/// Sending is held (`controls.leadership`) until it wins.
pub fn start(
    settings: &HaConfig,
    admin_address: String,
    controls: Arc<Controls>,
) -> Result<Ha, StartError> {
    controls.leadership.hold();
    let id = settings.id.clone().unwrap_or_else(|| admin_address.clone());
    let status = Arc::new(Status::default());
    status.update(|v| v.id = id.clone());
    let (to, from_core) = crossbeam_channel::unbounded();
    let (elected_tx, elected) = crossbeam_channel::bounded(1);
    let node = Node {
        settings: settings.clone(),
        id,
        admin: admin_address,
        controls,
        status: status.clone(),
        requests: from_core,
        elected: elected_tx,
    };
    std::thread::Builder::new()
        .name("rowhook-ha".into())
        .spawn(move || {
            let rt = match crate::control::etcd::runtime()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the ha runtime; this instance stays standby");
                    return;
                }
            };
            rt.block_on(node.run());
        })
        .map_err(StartError)?;
    Ok(Ha {
        to,
        elected,
        status,
        prefix: settings.etcd.prefix.clone(),
    })
}

impl Ha {
    /// The election result, once this instance won.
    pub fn try_elected(&self) -> Option<Elected> {
        self.elected.try_recv().ok()
    }

    /// Writes checkpoints to etcd, fenced on this instance's leadership.
    pub fn replica(&self) -> Arc<dyn crate::checkpoint::Replica> {
        Arc::new(Writer {
            to: self.to.clone(),
            prefix: self.prefix.clone(),
        })
    }

    /// Gives the active role up (graceful stop, step-down): resigns and revokes
    /// the lease so a standby takes over at once. Waits at most a few seconds.
    pub fn resign(&self) {
        let (reply, done) = crossbeam_channel::bounded(1);
        if self.to.send(ToHa::Resign { reply }).is_ok() {
            let _ = done.recv_timeout(REQUEST_TIMEOUT * 2);
        }
    }
}

struct Writer {
    to: Sender<ToHa>,
    prefix: String,
}

impl crate::checkpoint::Replica for Writer {
    fn store(&self, cp: &Checkpoint) -> Result<(), String> {
        let value = serde_json::to_vec(cp).map_err(|e| e.to_string())?;
        let (reply, answer) = crossbeam_channel::bounded(1);
        let at = format!("etcd ({}state)", self.prefix);
        self.to
            .send(ToHa::Store { value, reply })
            .map_err(|_| format!("{at}: the ha thread is gone"))?;
        match answer.recv_timeout(REQUEST_TIMEOUT * 2) {
            Ok(r) => r.map_err(|e| format!("{at}: {e}")),
            Err(_) => Err(format!("{at}: no answer")),
        }
    }
}

/// How a session with etcd ended.
enum End {
    /// Standby lost its link or lease: connect again.
    Lost(String),
    /// Was active and lost the lease (or another instance took over).
    Deposed(String),
    /// Resigned on purpose.
    Resigned,
}

struct Node {
    settings: HaConfig,
    id: String,
    admin: String,
    controls: Arc<Controls>,
    status: Arc<Status>,
    requests: Receiver<ToHa>,
    elected: Sender<Elected>,
}

/// The lease's renewal state, shared with its keep-alive task.
struct Lease {
    id: i64,
    /// Boot-clock ms when the last successful renewal was sent.
    renewed: AtomicU64,
    /// etcd answered that the lease is gone.
    expired: AtomicBool,
}

impl Node {
    fn ttl_ms(&self) -> u64 {
        self.settings.lease_ttl.as_millis() as u64
    }

    /// Sending stops this long before the lease could expire.
    fn margin_ms(&self) -> u64 {
        self.ttl_ms() / 4
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.settings.etcd.prefix)
    }

    async fn run(self) {
        let mut backoff =
            crate::net::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            match self.session().await {
                End::Lost(why) => {
                    self.status.update(|v| {
                        v.etcd_error = Some(why.clone());
                        v.active_id = None;
                        v.active_admin = None;
                    });
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %why, retry_in = ?delay, "ha: etcd unusable; standing by");
                    let until = tokio::time::Instant::now() + delay;
                    while tokio::time::Instant::now() < until {
                        if let Some(done) = self.refuse_requests("this instance is standby") {
                            let _ = done.send(());
                        }
                        tokio::time::sleep(TICK).await;
                    }
                }
                End::Deposed(why) => restart_as_standby(&why),
                End::Resigned => {
                    // Stays held; the process is stopping or restarting.
                    loop {
                        if let Some(done) = self.refuse_requests("this instance resigned") {
                            let _ = done.send(());
                        }
                        tokio::time::sleep(TICK).await;
                    }
                }
            }
        }
    }

    /// Answers checkpoint writes with `why`; returns the reply channel of a
    /// resignation, if one was asked for.
    fn refuse_requests(&self, why: &str) -> Option<Sender<()>> {
        let mut resign = None;
        while let Ok(r) = self.requests.try_recv() {
            match r {
                ToHa::Store { reply, .. } => {
                    let _ = reply.send(Err(why.to_owned()));
                }
                ToHa::Resign { reply } => resign = Some(reply),
            }
        }
        resign
    }

    async fn session(&self) -> End {
        let etcd = &self.settings.etcd;
        let mut client = match crate::control::etcd::connect(etcd, "ha.etcd").await {
            Ok(c) => c,
            Err(e) => return End::Lost(format!("etcd at {}: {e}", etcd.endpoints.join(", "))),
        };
        let ttl = self.settings.lease_ttl.as_secs() as i64;
        // The lease runs from when etcd granted it, which is after this.
        let asked = boot_ms();
        let granted = timed(client.lease_grant(ttl, None)).await;
        let lease = match granted {
            Ok(g) => Arc::new(Lease {
                id: g.id(),
                renewed: AtomicU64::new(asked),
                expired: AtomicBool::new(false),
            }),
            Err(e) => return End::Lost(format!("lease: {e}")),
        };
        self.status.update(|v| v.etcd_error = None);
        let keeper = tokio::spawn(keep_alive(
            client.clone(),
            lease.clone(),
            Duration::from_millis(self.ttl_ms() / 4),
        ));
        let end = self.contend(&mut client, &lease).await;
        keeper.abort();
        if !matches!(end, End::Resigned) {
            // Best effort: a standby that lost its link leaves no key behind to
            // wait for; a deposed one frees the election sooner.
            let _ =
                tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(lease.id)).await;
        }
        end
    }

    /// Campaigns until elected, then leads until the lease or the election is lost.
    async fn contend(&self, client: &mut Client, lease: &Lease) -> End {
        let name = self.key("election");
        let value = serde_json::json!({"id": self.id, "admin": self.admin}).to_string();
        let mut campaigner = client.clone();
        let campaign = campaigner.campaign(name.clone(), value, lease.id);
        tokio::pin!(campaign);
        let mut looked = 0u64;
        let leader = loop {
            tokio::select! {
                won = &mut campaign => match won {
                    Ok(mut r) => match r.take_leader() {
                        Some(l) => break l,
                        None => return End::Lost("the election answered without a key".into()),
                    },
                    Err(e) => return End::Lost(format!("campaign: {e}")),
                },
                _ = tokio::time::sleep(TICK) => {
                    // A standby that stops leaves the queue at once: were it
                    // next in line, a takeover would otherwise wait for its lease.
                    if let Some(done) = self.refuse_requests("this instance is standby") {
                        let _ = timed(client.lease_revoke(lease.id)).await;
                        let _ = done.send(());
                        return End::Resigned;
                    }
                    if let Some(why) = self.lease_problem(lease) {
                        return End::Lost(why);
                    }
                    // Who leads, for /health (once a second).
                    if boot_ms() - looked >= 1000 {
                        looked = boot_ms();
                        self.look_at_active(client, &name).await;
                    }
                }
            }
        };
        let fence =
            || Compare::create_revision(leader.key().to_vec(), CompareOp::Equal, leader.rev());
        // Take over: the epoch moves on before anything is sent.
        let state_key = self.key("state");
        let shared = match timed(client.get(state_key.clone(), None)).await {
            Ok(r) => match r.kvs().first() {
                Some(kv) => match serde_json::from_slice::<Shared>(kv.value()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        return End::Lost(format!(
                            "{state_key} is not rowhook's shared state ({e}); remove it or change ha.etcd.prefix"
                        ))
                    }
                },
                None => None,
            },
            Err(e) => return End::Lost(format!("reading {state_key}: {e}")),
        };
        let epoch = shared.as_ref().map_or(0, |s| s.epoch) + 1;
        let checkpoint = shared.and_then(|s| s.checkpoint);
        let mut current = Shared {
            epoch,
            instance: self.id.clone(),
            checkpoint: checkpoint.clone(),
        };
        match self.put_fenced(client, &state_key, &current, fence()).await {
            Ok(true) => {}
            Ok(false) => return End::Lost("lost the election before taking over".into()),
            Err(e) => return End::Lost(format!("writing {state_key}: {e}")),
        }
        let until = lease.renewed.load(Ordering::Acquire) + self.ttl_ms() - self.margin_ms();
        if until <= boot_ms() {
            return End::Lost("the lease ran out while taking over".into());
        }
        self.controls.leadership.grant(epoch, until);
        self.status.update(|v| {
            v.role = Role::Active;
            v.epoch = epoch;
            v.active_id = Some(self.id.clone());
            v.active_admin = Some(self.admin.clone());
            v.takeovers += 1;
        });
        tracing::info!(epoch, id = %self.id, resume = ?checkpoint.as_ref().map(Checkpoint::position), "ha: this instance is active");
        if self.elected.send(Elected { epoch, checkpoint }).is_err() {
            return End::Deposed("the source core is gone".into());
        }
        loop {
            tokio::time::sleep(TICK).await;
            if let Some(why) = self.lease_problem(lease) {
                return End::Deposed(why);
            }
            self.controls
                .leadership
                .extend(lease.renewed.load(Ordering::Acquire) + self.ttl_ms() - self.margin_ms());
            while let Ok(r) = self.requests.try_recv() {
                match r {
                    ToHa::Store { value, reply } => {
                        let cp = match serde_json::from_slice::<Checkpoint>(&value) {
                            Ok(cp) => cp,
                            Err(e) => {
                                let _ = reply.send(Err(e.to_string()));
                                continue;
                            }
                        };
                        current.checkpoint = Some(cp);
                        match self.put_fenced(client, &state_key, &current, fence()).await {
                            Ok(true) => {
                                let _ = reply.send(Ok(()));
                            }
                            Ok(false) => {
                                let _ = reply.send(Err("another instance is active".into()));
                                return End::Deposed(
                                    "the election key is gone: another instance took over".into(),
                                );
                            }
                            Err(e) => {
                                let _ = reply.send(Err(e));
                            }
                        }
                    }
                    ToHa::Resign { reply } => {
                        self.controls.leadership.hold();
                        let _ = timed(
                            client.resign(Some(ResignOptions::new().with_leader(leader.clone()))),
                        )
                        .await;
                        let _ = timed(client.lease_revoke(lease.id)).await;
                        self.status.update(|v| v.role = Role::Standby);
                        tracing::info!(epoch, "ha: resigned the active role");
                        let _ = reply.send(());
                        return End::Resigned;
                    }
                }
            }
        }
    }

    /// Who is active and under which epoch, for a standby's /health.
    async fn look_at_active(&self, client: &mut Client, election: &str) {
        if let Ok(r) = timed(client.leader(election)).await {
            let who = r
                .kv()
                .and_then(|kv| serde_json::from_slice::<serde_json::Value>(kv.value()).ok());
            let text = |k: &str| who.as_ref().and_then(|w| w[k].as_str().map(str::to_owned));
            self.status.update(|v| {
                v.active_id = text("id");
                v.active_admin = text("admin");
            });
        }
        if let Ok(r) = timed(client.get(self.key("state"), None)).await {
            if let Some(shared) = r
                .kvs()
                .first()
                .and_then(|kv| serde_json::from_slice::<Shared>(kv.value()).ok())
            {
                self.status.update(|v| v.epoch = shared.epoch);
            }
        }
    }

    /// Why the lease can no longer be counted on, if so.
    fn lease_problem(&self, lease: &Lease) -> Option<String> {
        if lease.expired.load(Ordering::Acquire) {
            return Some("etcd says the lease expired".into());
        }
        let since = boot_ms().saturating_sub(lease.renewed.load(Ordering::Acquire));
        (since + self.margin_ms() >= self.ttl_ms()).then(|| {
            format!(
                "the lease was not renewed for {since} ms (ttl {} ms)",
                self.ttl_ms()
            )
        })
    }

    /// Puts `state` if `fence` holds; false when it does not.
    async fn put_fenced(
        &self,
        client: &mut Client,
        key: &str,
        state: &Shared,
        fence: Compare,
    ) -> Result<bool, String> {
        let value = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        let txn = Txn::new()
            .when([fence])
            .and_then([TxnOp::put(key, value, None)]);
        timed(client.txn(txn)).await.map(|r| r.succeeded())
    }
}

/// Renews `lease` every `every`; records when a renewal that succeeded was sent.
/// How soon a keep-alive stream that could not be opened is tried again.
const REOPEN_AFTER: Duration = Duration::from_millis(100);

async fn keep_alive(mut client: Client, lease: Arc<Lease>, every: Duration) {
    let mut stream = None;
    loop {
        if stream.is_none() {
            // Bounded by the renewal period, and tried again soon: with a member
            // gone the channel may pick it (connect error) or a member still
            // electing a leader (no answer); a 3 s wait plus a full period before
            // the next try let a 6 s lease lapse though two members were up.
            let opened = tokio::time::timeout(
                every.max(Duration::from_millis(200)),
                client.lease_keep_alive(lease.id),
            )
            .await;
            match opened {
                Ok(Ok(s)) => stream = Some(s),
                _ => {
                    tokio::time::sleep(REOPEN_AFTER).await;
                    continue;
                }
            }
        }
        if let Some((keeper, answers)) = stream.as_mut() {
            let sent = boot_ms();
            let renewed = async {
                keeper.keep_alive().await.map_err(|e| e.to_string())?;
                answers
                    .message()
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| "the keep-alive stream ended".to_owned())
            };
            match tokio::time::timeout(every.max(Duration::from_millis(200)), renewed).await {
                Ok(Ok(r)) if r.ttl() > 0 => {
                    lease.renewed.fetch_max(sent, Ordering::AcqRel);
                }
                Ok(Ok(_)) => {
                    lease.expired.store(true, Ordering::Release);
                    return;
                }
                // A failed stream (a member went away) is opened again at once.
                Ok(Err(_)) | Err(_) => {
                    stream = None;
                    continue;
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT:?}")),
    }
}

/// Leaves the active role for good: nothing more is sent, and the process
/// execs itself so it comes back as a standby with a clean data path (what it
/// held in memory is sent again by the new active from the shared checkpoint).
pub fn restart_as_standby(why: &str) -> ! {
    tracing::error!(reason = %why, "ha: no longer active; restarting as standby");
    reexec()
}

/// The CPUs the process was given at start, before threads pinned themselves.
static START_AFFINITY: std::sync::OnceLock<libc::cpu_set_t> = std::sync::OnceLock::new();

/// Remembers the process's CPU set, so a restart as standby gets all of it back
/// (exec keeps the calling thread's mask, which pinning narrowed to one CPU).
pub fn remember_affinity() {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if ok == 0 {
        let _ = START_AFFINITY.set(set);
    }
}

/// Execs this binary again with the same arguments and the same pid.
pub fn reexec() -> ! {
    use std::os::unix::process::CommandExt;
    if let Some(set) = START_AFFINITY.get() {
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    }
    // Sockets and files opened without close-on-exec (io_uring, listeners)
    // would otherwise outlive the exec and keep the admin port bound.
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for fd in dir
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
            .filter(|&fd| fd > 2)
        {
            // SAFETY: setting FD_CLOEXEC on a descriptor number has no memory
            // effects; an fd closed meanwhile just fails with EBADF.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "rowhook".into());
    // /proc/self/exe works even when the binary on disk was replaced.
    let error = std::process::Command::new("/proc/self/exe")
        .arg0(arg0)
        .args(args)
        .exec();
    tracing::error!(error = %error, "cannot restart; exiting (a supervisor restarts rowhook)");
    std::process::exit(75)
}
