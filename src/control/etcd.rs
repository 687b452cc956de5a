//! Tasks kept in etcd: one key per task under a prefix, YAML or JSON. A
//! control-plane thread (`rowhook-etcd`, its own single-threaded tokio runtime,
//! never the source core) loads the prefix, watches it from that revision,
//! reconnects with a backoff, reloads after a compaction, and writes what the
//! admin API asks. It sends whole validated task sets to the source core over a
//! channel; the last good set is cached in `state.dir` for starts while etcd is
//! unreachable.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    TlsOptions, Txn, TxnOp, WatchOptions,
};

use crate::config::{Config, EtcdConfig, TaskConfig};

/// Longest a single etcd request (not the watch) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The cache of the last good set, under `state.dir`.
pub fn cache_path(state_dir: &Path) -> PathBuf {
    state_dir.join("etcd-tasks.json")
}

/// A validated task set read from etcd.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// The etcd revision it reflects.
    pub revision: i64,
    /// Each task with its origin (`etcd KEY@MOD_REVISION`).
    pub tasks: Vec<(TaskConfig, String)>,
    /// Keys whose value was rejected, each with every problem (a rejected key
    /// of a running task keeps its last good definition).
    pub rejected: Vec<String>,
    /// Read from the cache file, not from etcd.
    pub cached: bool,
}

/// What the etcd thread tells the source core.
#[derive(Debug)]
pub enum FromEtcd {
    /// The whole set under the prefix changed.
    Set(Update),
    /// The link to etcd is up (`None`) or down (why).
    Link(Option<String>),
}

/// A write the admin API asks for; the answer is the revision written or why not.
#[derive(Debug)]
pub enum Request {
    /// Create or replace the task `id` with `text`.
    Put {
        /// Task id (the key's last part).
        id: String,
        /// The value (validated before it is asked for).
        text: String,
        /// Where the answer goes.
        reply: Sender<Result<i64, String>>,
    },
    /// Delete the task `id`.
    Delete {
        /// Task id.
        id: String,
        /// Where the answer goes.
        reply: Sender<Result<i64, String>>,
    },
    /// Set `enabled` in the task's value, if nobody changed it meanwhile.
    SetEnabled {
        /// Task id.
        id: String,
        /// The new value of `enabled`.
        enabled: bool,
        /// Where the answer goes.
        reply: Sender<Result<i64, String>>,
    },
}

/// The source core's end of the etcd thread.
#[derive(Debug)]
pub struct EtcdTasks {
    /// Sets and link changes, in order.
    pub updates: Receiver<FromEtcd>,
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    /// The key prefix (for messages).
    pub prefix: String,
}

impl EtcdTasks {
    /// Hands `request` to the etcd thread; false when it is gone.
    pub fn ask(&self, request: Request) -> bool {
        self.requests.send(request).is_ok()
    }
}

/// Why tasks could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// etcd did not answer and there is no cache.
    #[error("cannot load tasks from etcd at {endpoints} (prefix {prefix}): {why}\n  fix: start etcd or correct tasks_source.etcd; a cached copy ({cache}) is used when etcd is down, but none exists yet")]
    Unreachable {
        /// The endpoints tried.
        endpoints: String,
        /// The prefix.
        prefix: String,
        /// The last error.
        why: String,
        /// Where a cache would be.
        cache: String,
    },
    /// The thread could not start.
    #[error("cannot start the etcd thread: {0}")]
    Thread(std::io::Error),
}

/// Starts the etcd thread and waits for the first set: from etcd, or from the
/// cache (with a warning) when etcd does not answer within the dial timeout.
pub fn start(config: &Config, etcd: &EtcdConfig) -> Result<(EtcdTasks, Update), StartError> {
    let (updates_tx, updates) = crossbeam_channel::unbounded();
    let (requests, requests_rx) = tokio::sync::mpsc::unbounded_channel();
    let running = config.clone();
    let settings = etcd.clone();
    std::thread::Builder::new()
        .name("rowhook-etcd".into())
        .spawn(move || {
            let rt = match crate::control::etcd::runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = updates_tx.send(FromEtcd::Link(Some(format!(
                        "cannot start the etcd runtime: {e}"
                    ))));
                    return;
                }
            };
            rt.block_on(follow(settings, running, updates_tx, requests_rx));
        })
        .map_err(StartError::Thread)?;
    let tasks = EtcdTasks {
        updates,
        requests,
        prefix: etcd.prefix.clone(),
    };
    let deadline = std::time::Instant::now() + etcd.dial_timeout * 2;
    let mut why = "no answer".to_owned();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tasks.updates.recv_timeout(left) {
            Ok(FromEtcd::Set(first)) => return Ok((tasks, first)),
            Ok(FromEtcd::Link(Some(e))) => why = e,
            Ok(FromEtcd::Link(None)) => {}
            Err(_) => break,
        }
    }
    let cache = cache_path(&config.state.dir);
    match read_cache(&cache, etcd, config) {
        Some(update) => {
            tracing::warn!(cache = %cache.display(), revision = update.revision, error = %why, "etcd is unreachable; starting with the cached tasks (changes in etcd apply once it answers)");
            Ok((tasks, update))
        }
        None => Err(StartError::Unreachable {
            endpoints: etcd.endpoints.join(", "),
            prefix: etcd.prefix.clone(),
            why,
            cache: cache.display().to_string(),
        }),
    }
}

/// The values under the prefix, by key: (mod revision, text).
type Entries = BTreeMap<String, (i64, String)>;

/// What the thread keeps between sessions.
struct Follower {
    settings: EtcdConfig,
    running: Config,
    updates: Sender<FromEtcd>,
    entries: Entries,
    /// The last accepted definition per task id (kept when a new value is bad).
    last_good: HashMap<String, (TaskConfig, String)>,
}

async fn follow(
    settings: EtcdConfig,
    running: Config,
    updates: Sender<FromEtcd>,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<Request>,
) {
    let mut f = Follower {
        settings,
        running,
        updates,
        entries: Entries::new(),
        last_good: HashMap::new(),
    };
    let mut backoff = crate::net::Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    loop {
        match f.session(&mut requests).await {
            // A compacted watch: load the prefix again at once.
            Ok(()) => {
                backoff =
                    crate::net::Backoff::new(Duration::from_millis(250), Duration::from_secs(10))
            }
            Err(why) => {
                if f.updates.send(FromEtcd::Link(Some(why.clone()))).is_err() {
                    return;
                }
                let delay = backoff.next_delay();
                tracing::warn!(error = %why, retry_in = ?delay, "etcd tasks source unreachable; running with the last good tasks");
                // Writes asked for meanwhile are answered, not left hanging.
                let until = tokio::time::Instant::now() + delay;
                while let Ok(Some(r)) = tokio::time::timeout_at(until, requests.recv()).await {
                    refuse(r, &why);
                }
            }
        }
    }
}

fn refuse(r: Request, why: &str) {
    let (Request::Put { reply, .. }
    | Request::Delete { reply, .. }
    | Request::SetEnabled { reply, .. }) = r;
    let _ = reply.send(Err(format!("etcd is unreachable: {why}")));
}

impl Follower {
    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.settings.prefix)
    }

    async fn connect(&self) -> Result<Client, String> {
        connect(&self.settings, "tasks_source.etcd").await
    }

    /// One connection: load the prefix, then watch it and serve writes until
    /// the link fails (Err) or the watch is compacted away (Ok: load again).
    async fn session(
        &mut self,
        requests: &mut tokio::sync::mpsc::UnboundedReceiver<Request>,
    ) -> Result<(), String> {
        let mut client = self.connect().await?;
        let prefix = self.settings.prefix.clone();
        let got = tokio::time::timeout(
            REQUEST_TIMEOUT,
            client.get(prefix.as_str(), Some(GetOptions::new().with_prefix())),
        )
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
        let revision = got.header().map_or(0, |h| h.revision());
        self.entries = got
            .kvs()
            .iter()
            .filter_map(|kv| {
                Some((
                    kv.key_str().ok()?.to_owned(),
                    (
                        kv.mod_revision(),
                        String::from_utf8_lossy(kv.value()).into_owned(),
                    ),
                ))
            })
            .collect();
        self.publish(revision)?;
        self.updates
            .send(FromEtcd::Link(None))
            .map_err(|_| "shutting down".to_owned())?;
        tracing::info!(revision, tasks = self.entries.len(), prefix = %prefix, "tasks loaded from etcd; watching for changes");
        let mut watch = client
            .watch(
                prefix.as_str(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(revision + 1)
                        .with_progress_notify(),
                ),
            )
            .await
            .map_err(|e| e.to_string())?;
        loop {
            tokio::select! {
                message = watch.message() => {
                    let Some(resp) = message.map_err(|e| e.to_string())? else {
                        return Err("the watch ended".into());
                    };
                    if resp.compact_revision() > 0 || resp.canceled() {
                        tracing::warn!(compacted = resp.compact_revision(), reason = resp.cancel_reason(), "the etcd watch was cancelled (compaction); loading the prefix again");
                        return Ok(());
                    }
                    if resp.events().is_empty() {
                        continue;
                    }
                    for event in resp.events() {
                        let Some(kv) = event.kv() else { continue };
                        let Ok(key) = kv.key_str() else { continue };
                        match event.event_type() {
                            EventType::Put => {
                                self.entries.insert(
                                    key.to_owned(),
                                    (kv.mod_revision(), String::from_utf8_lossy(kv.value()).into_owned()),
                                );
                            }
                            EventType::Delete => {
                                self.entries.remove(key);
                            }
                        }
                    }
                    let revision = resp.header().map_or(0, |h| h.revision());
                    self.publish(revision)?;
                }
                request = requests.recv() => {
                    let Some(request) = request else { return Err("shutting down".into()) };
                    self.write(&mut client, request).await;
                }
            }
        }
    }

    /// Validates every value and sends the set; writes the cache.
    fn publish(&mut self, revision: i64) -> Result<(), String> {
        let update = parse(
            &self.settings,
            &self.running,
            &self.entries,
            &mut self.last_good,
            revision,
        );
        for r in &update.rejected {
            tracing::error!("{r}");
        }
        if let Err(e) = write_cache(
            &cache_path(&self.running.state.dir),
            &self.settings.prefix,
            revision,
            &self.entries,
        ) {
            tracing::warn!(error = %e, "cannot write the etcd tasks cache");
        }
        self.updates
            .send(FromEtcd::Set(update))
            .map_err(|_| "shutting down".to_owned())
    }

    async fn write(&self, client: &mut Client, request: Request) {
        let answer = |r: Result<i64, String>, reply: &Sender<Result<i64, String>>| {
            let _ = reply.send(r);
        };
        match request {
            Request::Put { id, text, reply } => {
                let put = client.put(self.key(&id), text, None);
                let r = match tokio::time::timeout(REQUEST_TIMEOUT, put).await {
                    Ok(Ok(p)) => Ok(p.header().map_or(0, |h| h.revision())),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("etcd did not answer within {REQUEST_TIMEOUT:?}")),
                };
                answer(r, &reply);
            }
            Request::Delete { id, reply } => {
                let delete = client.delete(self.key(&id), None);
                let r = match tokio::time::timeout(REQUEST_TIMEOUT, delete).await {
                    Ok(Ok(d)) if d.deleted() == 0 => Err(format!("no key {}", self.key(&id))),
                    Ok(Ok(d)) => Ok(d.header().map_or(0, |h| h.revision())),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("etcd did not answer within {REQUEST_TIMEOUT:?}")),
                };
                answer(r, &reply);
            }
            Request::SetEnabled { id, enabled, reply } => {
                let r = self.set_enabled(client, &id, enabled).await;
                answer(r, &reply);
            }
        }
    }

    /// Rewrites the task's value with `enabled`, in a transaction that fails if
    /// the value changed since it was read (no lost update).
    async fn set_enabled(
        &self,
        client: &mut Client,
        id: &str,
        enabled: bool,
    ) -> Result<i64, String> {
        let key = self.key(id);
        let got = tokio::time::timeout(REQUEST_TIMEOUT, client.get(key.as_str(), None))
            .await
            .map_err(|_| format!("etcd did not answer within {REQUEST_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        let kv = got.kvs().first().ok_or_else(|| format!("no key {key}"))?;
        let mut value: serde_yaml::Value = serde_yaml::from_slice(kv.value())
            .map_err(|e| format!("the value of {key} is not YAML/JSON: {e}"))?;
        let serde_yaml::Value::Mapping(map) = &mut value else {
            return Err(format!("the value of {key} is not a mapping"));
        };
        map.insert("enabled".into(), enabled.into());
        let text = serde_json::to_string(&value).map_err(|e| e.to_string())?;
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.as_str(),
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([TxnOp::put(key.as_str(), text, None)]);
        let done = tokio::time::timeout(REQUEST_TIMEOUT, client.txn(txn))
            .await
            .map_err(|_| format!("etcd did not answer within {REQUEST_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        if !done.succeeded() {
            return Err(format!(
                "{key} changed while it was being updated; try again"
            ));
        }
        Ok(done.header().map_or(0, |h| h.revision()))
    }
}

/// Validates `entries` into a task set.
fn parse(
    settings: &EtcdConfig,
    running: &Config,
    entries: &Entries,
    last_good: &mut HashMap<String, (TaskConfig, String)>,
    revision: i64,
) -> Update {
    let mut update = Update {
        revision,
        ..Update::default()
    };
    last_good.retain(|id, _| entries.contains_key(&format!("{}{id}", settings.prefix)));
    for (key, (mod_revision, text)) in entries {
        let id = key.strip_prefix(&settings.prefix).unwrap_or(key);
        let origin = format!("etcd {key}@{mod_revision}");
        if id.is_empty() {
            update.rejected.push(format!(
                "etcd key {key}: the prefix itself holds no task; put tasks under it"
            ));
            continue;
        }
        let read = crate::config::task_from_text(&format!("etcd {key}"), id, text, running)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                crate::delivery::plan::check_task(&t)
                    .map(|()| t)
                    .map_err(|e| format!("etcd {key}: {e}"))
            });
        match read {
            Ok(task) => {
                last_good.insert(id.to_owned(), (task.clone(), origin.clone()));
                update.tasks.push((task, origin));
            }
            Err(e) => {
                let kept = last_good.get(id).cloned();
                update.rejected.push(format!(
                    "etcd key {key} (revision {mod_revision}) rejected{}: {e}",
                    if kept.is_some() {
                        ", its last good definition runs"
                    } else {
                        ""
                    }
                ));
                update.tasks.extend(kept);
            }
        }
    }
    update
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cache {
    prefix: String,
    revision: i64,
    entries: BTreeMap<String, (i64, String)>,
}

fn write_cache(path: &Path, prefix: &str, revision: i64, entries: &Entries) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let cache = Cache {
        prefix: prefix.to_owned(),
        revision,
        entries: entries.clone(),
    };
    let text = serde_json::to_vec_pretty(&cache).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}

fn read_cache(path: &Path, settings: &EtcdConfig, running: &Config) -> Option<Update> {
    let text = std::fs::read(path).ok()?;
    let cache: Cache = match serde_json::from_slice(&text) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(cache = %path.display(), error = %e, "the etcd tasks cache is unreadable");
            return None;
        }
    };
    // A cache of another prefix holds other tasks: not a stand-in for these.
    if cache.prefix != settings.prefix {
        tracing::warn!(cache = %path.display(), cached = %cache.prefix, configured = %settings.prefix, "the etcd tasks cache is of another prefix; not used");
        return None;
    }
    let mut update = parse(
        settings,
        running,
        &cache.entries,
        &mut HashMap::new(),
        cache.revision,
    );
    update.cached = true;
    for (_, origin) in &mut update.tasks {
        origin.push_str(" (cached)");
    }
    Some(update)
}

/// The runtime the etcd client runs on: one thread, timers and sockets.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Connects to the cluster `s` describes; `field` names its settings in errors.
pub(crate) async fn connect(s: &EtcdConfig, field: &str) -> Result<Client, String> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(s.dial_timeout)
        .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
    if let (Some(user), Some(password)) = (&s.username, &s.password) {
        options = options.with_user(user.clone(), password.clone());
    }
    if let Some(tls) = &s.tls {
        let mut t = TlsOptions::new();
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("cannot read {field}.tls.ca_file {}: {e}", ca.display()))?;
            t = t.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let read = |p: &PathBuf| {
                std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
            };
            t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        options = options.with_tls(t);
    }
    let connect = Client::connect(s.endpoints.clone(), Some(options));
    match tokio::time::timeout(s.dial_timeout, connect).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {:?}", s.dial_timeout)),
    }
}
