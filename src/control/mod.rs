//! The control plane, beside the data path on the source core: where task
//! definitions come from (the tasks file, reloaded on SIGHUP, `rowhook reload`
//! or a change on disk), how a new set is validated, and the table of task slots
//! the data path reads. A change is only *proposed* here; the dispatcher applies
//! it between two transactions (`dispatch::apply_pending`).

pub mod etcd;
pub mod ha;
pub mod watch;

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::config::{Config, ConfigFiles, TaskConfig};
use crate::delivery::plan::{Plan, MAX_TASKS};
use crate::delivery::stats::Stats;
use crate::delivery::unix_now;
use crate::metrics::Progress;

/// One task slot: the task it holds now, and where that came from.
#[derive(Debug, Clone)]
pub struct Slot {
    /// The task's definition (kept after removal, for its name and counters).
    pub config: TaskConfig,
    /// Removed from the set: nothing new is routed to it; its events in flight
    /// are still delivered or dead-lettered.
    pub removed: bool,
    /// Where the definition came from (a file path).
    pub origin: String,
    /// Unix time of the last change of this slot (the start, for the first set).
    pub changed_unix: u64,
}

/// What a change does, task by task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// New task ids.
    pub added: Vec<String>,
    /// Tasks whose definition changed (URL, filter, batch size, secret, enabled…).
    pub changed: Vec<String>,
    /// Tasks no longer in the set.
    pub removed: Vec<String>,
    /// Tasks left as they were.
    pub unchanged: usize,
}

impl Summary {
    /// True when the change changes nothing.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// A validated change waiting for a transaction boundary.
#[derive(Debug)]
pub struct Proposal {
    slots: Vec<Slot>,
    plan: Arc<Plan>,
    summary: Summary,
}

/// The task set of a running instance: applied slots, the change waiting for a
/// boundary, and the last rejected change.
#[derive(Debug)]
pub struct TaskTable {
    slots: Vec<Slot>,
    plan: Arc<Plan>,
    pending: Option<Proposal>,
    rejected: Option<String>,
    worker_count: u32,
    /// The configuration files a reload reads again.
    files: Option<ConfigFiles>,
    /// The running configuration (what a reload may not change without a restart).
    running: Config,
    /// Where the definitions live.
    origin: String,
    /// The data path has not taken the applied set yet (the router re-reads it
    /// before the next event).
    pub reroute: bool,
    /// Plans below this generation were forgotten by the shards.
    pub forgotten: u32,
    /// Counters by slot (a reused slot starts at zero).
    stats: Arc<Stats>,
    /// The etcd thread, when tasks live in etcd.
    etcd: Option<etcd::EtcdTasks>,
    /// Why the tasks source is unreachable, and since when.
    source_down: Option<(String, std::time::Instant)>,
    /// Definitions in the source that were rejected (each with its problems).
    rejected_keys: Vec<String>,
}

/// Why a change was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The files do not validate; every problem, as `check` prints them.
    #[error("{0}")]
    Invalid(String),
    /// The tasks validate but cannot be planned (URL, header), or too many.
    #[error("{0}")]
    Plan(#[from] crate::delivery::plan::PlanError),
    /// Tasks are not defined where the change was asked for.
    #[error("{0}")]
    Elsewhere(String),
}

impl TaskTable {
    /// The table at start: `config`'s tasks in slots 0.., planned by `plan`.
    pub fn new(
        config: &Config,
        plan: Arc<Plan>,
        stats: Arc<Stats>,
        files: Option<ConfigFiles>,
        origin: &str,
    ) -> Self {
        let now = unix_now();
        TaskTable {
            slots: config
                .tasks
                .iter()
                .map(|t| Slot {
                    config: t.clone(),
                    removed: false,
                    origin: origin.to_owned(),
                    changed_unix: now,
                })
                .collect(),
            plan,
            pending: None,
            rejected: None,
            worker_count: config.dispatcher.worker_count,
            files,
            running: config.clone(),
            origin: origin.to_owned(),
            reroute: false,
            forgotten: 0,
            stats,
            etcd: None,
            source_down: None,
            rejected_keys: Vec::new(),
        }
    }

    /// Tasks live in etcd: `update` is the set the table starts with (its
    /// origins per task), `etcd` the thread that keeps it current.
    pub fn with_etcd(mut self, etcd: etcd::EtcdTasks, update: &etcd::Update) -> Self {
        self.origin = format!("etcd prefix {}", etcd.prefix);
        for slot in &mut self.slots {
            if let Some((_, origin)) = update
                .tasks
                .iter()
                .find(|(t, _)| t.task_id == slot.config.task_id)
            {
                slot.origin.clone_from(origin);
            }
        }
        self.rejected_keys.clone_from(&update.rejected);
        self.files = None;
        self.etcd = Some(etcd);
        self
    }

    /// Reads `text` as task `id` against the running configuration.
    pub fn validate(&self, name: &str, id: &str, text: &str) -> Result<TaskConfig, String> {
        let task = crate::config::task_from_text(name, id, text, &self.running)
            .map_err(|e| e.to_string())?;
        crate::delivery::plan::check_task(&task).map_err(|e| format!("{name}: {e}"))?;
        Ok(task)
    }

    /// The etcd thread, when tasks live in etcd.
    pub fn etcd(&self) -> Option<&etcd::EtcdTasks> {
        self.etcd.as_ref()
    }

    /// What `/health` should say about the task source, beside a rejected reload.
    pub fn source_reasons(&self) -> Vec<String> {
        let mut out = self.rejected_keys.clone();
        if let Some((why, since)) = &self.source_down {
            out.push(format!(
                "tasks source {} unreachable for {}s ({why}); running with the last good tasks",
                self.origin,
                since.elapsed().as_secs()
            ));
        }
        out
    }

    /// Rejected definitions in the source right now.
    pub fn rejected_definitions(&self) -> usize {
        self.rejected_keys.len()
    }

    /// Whether the task source answers (files always do).
    pub fn source_connected(&self) -> bool {
        self.source_down.is_none()
    }

    /// Takes what the etcd thread sent: link changes and new sets, proposed
    /// like a reload.
    pub fn take_etcd(&mut self, drained: impl Fn(usize) -> bool) {
        let Some(updates) = self.etcd.as_ref().map(|e| e.updates.clone()) else {
            return;
        };
        while let Ok(message) = updates.try_recv() {
            match message {
                etcd::FromEtcd::Link(None) => {
                    if self.source_down.take().is_some() {
                        tracing::info!(source = %self.origin, "tasks source reachable again");
                    }
                }
                etcd::FromEtcd::Link(Some(why)) => {
                    if self.source_down.is_none() {
                        self.source_down = Some((why, std::time::Instant::now()));
                    }
                }
                etcd::FromEtcd::Set(update) => {
                    self.rejected_keys = update.rejected;
                    match self.propose_each(update.tasks, &drained) {
                        Ok(s) if s.is_empty() => {}
                        Ok(s) => {
                            tracing::info!(revision = update.revision, added = ?s.added, changed = ?s.changed, removed = ?s.removed, "etcd: tasks changed; they apply at the next transaction boundary")
                        }
                        Err(e) => {
                            tracing::error!(
                                revision = update.revision,
                                "etcd: task set rejected; the running tasks stay: {e}"
                            );
                            self.reject(&format!(
                                "task set of etcd revision {} rejected: {e}",
                                update.revision
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Where the task definitions live (the file a reload reads).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Every slot, removed ones included (index = slot).
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The slot of the task `id` that is in the set.
    pub fn slot_of(&self, id: &str) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| !s.removed && s.config.task_id == id)
    }

    /// The applied plan.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Why the last change was rejected, until a change is taken.
    pub fn rejected(&self) -> Option<&str> {
        self.rejected.as_deref()
    }

    /// What the waiting change does, if one waits.
    pub fn pending(&self) -> Option<&Summary> {
        self.pending.as_ref().map(|p| &p.summary)
    }

    /// The tasks as the router sees them: removed slots disabled.
    pub fn routed(&self) -> Vec<TaskConfig> {
        routed(&self.slots)
    }

    /// Proposes `tasks` (the whole new set, from `origin`) as the next set.
    /// `drained(slot)` tells whether a removed slot has nothing in flight, so it
    /// can take a new task. An empty change proposes nothing.
    pub fn propose(
        &mut self,
        tasks: Vec<TaskConfig>,
        origin: &str,
        drained: impl Fn(usize) -> bool,
    ) -> Result<Summary, ChangeError> {
        let tasks = tasks.into_iter().map(|t| (t, origin.to_owned())).collect();
        self.propose_each(tasks, drained)
    }

    /// As [`TaskTable::propose`], each task with its own origin.
    pub fn propose_each(
        &mut self,
        tasks: Vec<(TaskConfig, String)>,
        drained: impl Fn(usize) -> bool,
    ) -> Result<Summary, ChangeError> {
        let now = unix_now();
        let mut slots = self.slots.clone();
        let mut summary = Summary::default();
        let wanted: HashSet<&str> = tasks.iter().map(|(t, _)| t.task_id.as_str()).collect();
        for slot in slots.iter_mut().filter(|s| !s.removed) {
            if !wanted.contains(slot.config.task_id.as_str()) {
                slot.removed = true;
                slot.changed_unix = now;
                summary.removed.push(slot.config.task_id.clone());
            }
        }
        for (task, origin) in tasks {
            let origin = origin.as_str();
            let same = slots.iter().position(|s| s.config.task_id == task.task_id);
            match same {
                Some(i) if !slots[i].removed && slots[i].config == task => {
                    summary.unchanged += 1;
                    // A new revision of the same definition: say where it is now.
                    origin.clone_into(&mut slots[i].origin);
                }
                Some(i) => {
                    // A changed task, or a removed one that comes back: its slot
                    // (counters, pause state) stays.
                    if slots[i].removed {
                        summary.added.push(task.task_id.clone());
                    } else {
                        summary.changed.push(task.task_id.clone());
                    }
                    slots[i] = Slot {
                        config: task,
                        removed: false,
                        origin: origin.to_owned(),
                        changed_unix: now,
                    };
                }
                _ => {
                    summary.added.push(task.task_id.clone());
                    let slot = Slot {
                        config: task,
                        removed: false,
                        origin: origin.to_owned(),
                        changed_unix: now,
                    };
                    // A slot removed before this change and with nothing in flight
                    // is reused, so the table stays small under churn.
                    let free = slots.iter().enumerate().position(|(i, s)| {
                        s.removed && i < self.slots.len() && self.slots[i].removed && drained(i)
                    });
                    match free {
                        Some(i) => slots[i] = slot,
                        None => slots.push(slot),
                    }
                }
            }
        }
        if slots.len() > MAX_TASKS {
            return Err(crate::delivery::plan::PlanError::TooMany(slots.len()).into());
        }
        if summary.is_empty() {
            self.pending = None;
            self.rejected = None;
            return Ok(summary);
        }
        let plan = Arc::new(self.plan.next(&routed(&slots), self.worker_count)?);
        self.pending = Some(Proposal {
            slots,
            plan,
            summary: summary.clone(),
        });
        self.rejected = None;
        Ok(summary)
    }

    /// Records a rejected change (shown by `/health` until a change is taken).
    pub fn reject(&mut self, why: &str) {
        self.rejected = Some(why.to_owned());
    }

    /// Takes the waiting change: the slots and plan become the applied ones.
    /// Returns the new plan and the slots whose ordering changed (their next
    /// event waits until everything earlier of the task is acknowledged).
    pub fn take_pending(&mut self) -> Option<(Arc<Plan>, Vec<usize>, Summary)> {
        let p = self.pending.take()?;
        let reordered = p
            .plan
            .tasks
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                self.plan
                    .tasks
                    .get(*i)
                    .is_some_and(|old| old.ordering != t.ordering || old.lanes != t.lanes)
            })
            .map(|(i, _)| i)
            .collect();
        // A reused slot starts with clean counters and unpaused.
        for (i, slot) in p.slots.iter().enumerate() {
            if let Some(old) = self.slots.get(i) {
                if old.config.task_id != slot.config.task_id {
                    p.plan.controls.set_paused(i, false);
                    if let Some(s) = self.stats.tasks.get(i) {
                        s.reset();
                    }
                }
            }
        }
        self.slots = p.slots;
        self.plan = p.plan.clone();
        self.reroute = true;
        tracing::info!(
            generation = self.plan.generation,
            added = ?p.summary.added,
            changed = ?p.summary.changed,
            removed = ?p.summary.removed,
            "task change applied at a transaction boundary"
        );
        Some((p.plan, reordered, p.summary))
    }

    /// Reads the configuration files again and proposes their tasks.
    pub fn reload(&mut self, drained: impl Fn(usize) -> bool) -> Result<Summary, ChangeError> {
        let Some(files) = self.files.clone() else {
            let why = match &self.etcd {
                Some(e) => format!("tasks come from etcd (prefix {}); change them there (etcdctl put, or rowhook tasks add/rm/enable/disable): rowhook applies etcd changes as they happen", e.prefix),
                None => "this instance has no configuration files to reload".into(),
            };
            tracing::warn!("reload asked: {why}");
            return Err(ChangeError::Elsewhere(why));
        };
        let result = match crate::config::load(&files) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                self.note_restart_only(&loaded.config);
                self.propose(loaded.config.tasks, &loaded.tasks_source, drained)
            }
            Err(e) => Err(ChangeError::Invalid(e.to_string())),
        };
        match &result {
            Ok(s) if s.is_empty() => tracing::info!("reload: the tasks did not change"),
            Ok(s) => {
                tracing::info!(added = ?s.added, changed = ?s.changed, removed = ?s.removed, "reload: tasks validated; they apply at the next transaction boundary")
            }
            Err(e) => {
                tracing::error!("reload rejected; the running tasks stay:\n{e}");
                self.reject(&format!("last reload rejected: {e}"));
            }
        }
        result
    }

    /// Warns about edits outside `tasks` that only a restart applies.
    fn note_restart_only(&self, fresh: &Config) {
        let r = &self.running;
        let differ: Vec<&str> = [
            ("database", fresh.database != r.database),
            ("log", fresh.log != r.log),
            ("server", fresh.server != r.server),
            ("dispatcher", fresh.dispatcher != r.dispatcher),
            ("source", fresh.source != r.source),
            ("runtime", fresh.runtime != r.runtime),
            ("state", fresh.state != r.state),
            ("tasks_watch", fresh.tasks_watch != r.tasks_watch),
        ]
        .into_iter()
        .filter(|(_, d)| *d)
        .map(|(n, _)| n)
        .collect();
        if !differ.is_empty() {
            tracing::warn!(sections = ?differ, "reload applies tasks only; these sections changed and take effect at the next restart");
        }
    }
}

/// How often the control task looks for a reload request and an applied change.
const CONTROL_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The control task on the source core: reloads when `reload` is raised (SIGHUP,
/// the file watcher), and once a change is applied starts the snapshots it
/// makes due and stops those of removed tasks.
pub async fn serve(
    tasks: Rc<RefCell<TaskTable>>,
    reload: Arc<AtomicBool>,
    progress: Rc<Progress>,
    snapshots: Rc<crate::snapshot::Snapshots>,
) {
    let mut seen = tasks.borrow().plan().generation;
    loop {
        glommio::timer::sleep(CONTROL_EVERY).await;
        if reload.swap(false, Ordering::Relaxed) {
            let p = progress.clone();
            let _ = tasks.borrow_mut().reload(move |slot| drained(&p, slot));
        }
        {
            let p = progress.clone();
            tasks.borrow_mut().take_etcd(move |slot| drained(&p, slot));
        }
        let now = tasks.borrow().plan().generation;
        if now != seen {
            seen = now;
            snapshots.start_due();
        }
    }
}

/// Whether slot `slot` has no event in flight.
pub fn drained(progress: &Progress, slot: usize) -> bool {
    progress
        .task_in_flight
        .get(slot)
        .is_none_or(|n| n.get() == 0)
}

fn routed(slots: &[Slot]) -> Vec<TaskConfig> {
    slots
        .iter()
        .map(|s| {
            let mut t = s.config.clone();
            t.enabled &= !s.removed;
            t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks(yaml: &str) -> Vec<TaskConfig> {
        crate::config::for_test("", yaml).unwrap().tasks
    }

    const AB: &str = "tasks:
  - {task_id: a, table_name: t, events: [insert], callback_url: 'http://h/a'}
  - {task_id: b, table_name: t, events: [insert], callback_url: 'http://h/b'}
";

    fn table() -> TaskTable {
        let config = crate::config::for_test("", AB).unwrap();
        let plan = Arc::new(Plan::new(&config, 1).unwrap());
        let stats = Arc::new(Stats::new(MAX_TASKS));
        TaskTable::new(&config, plan, stats, None, "tasks.yaml")
    }

    #[test]
    fn a_change_keeps_slots_by_id_and_reuses_drained_ones() {
        let mut t = table();
        // b changes its URL, a goes, c comes: c may not take a's slot while a has
        // events in flight.
        let next = "tasks:
  - {task_id: b, table_name: t, events: [insert], callback_url: 'http://h/b2'}
  - {task_id: c, table_name: t, events: [insert], callback_url: 'http://h/c'}
";
        let s = t.propose(tasks(next), "f", |_| false).unwrap();
        assert_eq!(
            (s.added, s.changed, s.removed),
            (
                vec!["c".to_owned()],
                vec!["b".to_owned()],
                vec!["a".to_owned()]
            )
        );
        let (plan, reordered, _) = t.take_pending().unwrap();
        assert_eq!(plan.generation, 1);
        assert!(reordered.is_empty());
        let ids: Vec<(&str, bool)> = t
            .slots()
            .iter()
            .map(|s| (s.config.task_id.as_str(), s.removed))
            .collect();
        assert_eq!(ids, [("a", true), ("b", false), ("c", false)]);
        assert_eq!(plan.tasks[1].url, "http://h/b2");
        assert!(!t.routed()[0].enabled, "a removed task is routed nothing");
        // d arrives once a is drained: it takes a's slot.
        let next = "tasks:
  - {task_id: b, table_name: t, events: [insert], callback_url: 'http://h/b2'}
  - {task_id: c, table_name: t, events: [insert], callback_url: 'http://h/c'}
  - {task_id: d, table_name: t, events: [insert], callback_url: 'http://h/d'}
";
        t.propose(tasks(next), "f", |_| true).unwrap();
        t.take_pending().unwrap();
        assert_eq!(t.slots()[0].config.task_id, "d");
        assert_eq!(t.slot_of("d"), Some(0));
        // The same set again is no change.
        assert!(t.propose(tasks(next), "f", |_| true).unwrap().is_empty());
        assert!(t.take_pending().is_none());
    }

    #[test]
    fn an_ordering_change_is_reported_for_a_barrier() {
        let mut t = table();
        let next = "tasks:
  - {task_id: a, table_name: t, events: [insert], callback_url: 'http://h/a', ordering: table}
  - {task_id: b, table_name: t, events: [insert], callback_url: 'http://h/b'}
";
        t.propose(tasks(next), "f", |_| false).unwrap();
        let (_, reordered, _) = t.take_pending().unwrap();
        assert_eq!(reordered, [0]);
    }
}
