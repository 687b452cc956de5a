//! Which tasks want the changes of a table: matched once per table id (and again
//! when its TABLE_MAP changes), with each task's column projection resolved to a mask.

use std::collections::HashMap;

use crate::binlog::{RowsKind, TableMap};
use crate::config::{PayloadShape, TaskConfig};

/// One task's interest in one table.
#[derive(Debug, Clone)]
pub struct Route {
    /// Index into the task list.
    pub task: usize,
    /// The task's payload shape.
    pub shape: PayloadShape,
    /// Columns to send (`None` = all).
    pub keep: Option<Vec<bool>>,
}

/// Matches tables to tasks, caching the answer per table id.
#[derive(Debug)]
pub struct Router {
    tasks: Vec<TaskConfig>,
    cache: HashMap<u64, Vec<Route>>,
}

impl Router {
    /// A router over `tasks` (disabled tasks never match).
    pub fn new(tasks: Vec<TaskConfig>) -> Self {
        Router {
            tasks,
            cache: HashMap::new(),
        }
    }

    /// Forgets what was resolved for `table_id` (its TABLE_MAP was replaced).
    pub fn invalidate(&mut self, table_id: u64) {
        self.cache.remove(&table_id);
    }

    /// Resolves (once per table id) which tasks want `table`.
    pub fn prepare(&mut self, table: &TableMap) {
        if !self.cache.contains_key(&table.table_id) {
            let routes = resolve(&self.tasks, table);
            self.cache.insert(table.table_id, routes);
        }
    }

    /// Every task's route for a prepared table, whatever the event kind.
    pub fn routes(&self, table_id: u64) -> &[Route] {
        self.cache.get(&table_id).map_or(&[], Vec::as_slice)
    }

    /// Whether `task` wants events of `kind`.
    pub fn wants(&self, task: usize, kind: RowsKind) -> bool {
        let e = self.tasks[task].events;
        match kind {
            RowsKind::Insert => e.insert,
            RowsKind::Update => e.update,
            RowsKind::Delete => e.delete,
        }
    }
}

fn resolve(tasks: &[TaskConfig], table: &TableMap) -> Vec<Route> {
    tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.enabled && t.table.matches(&table.schema, &table.table))
        .map(|(i, t)| Route {
            task: i,
            shape: t.payload,
            keep: t.columns.as_ref().map(|names| {
                table
                    .columns
                    .iter()
                    .map(|c| {
                        c.name
                            .as_ref()
                            .is_some_and(|n| names.iter().any(|w| w == n))
                    })
                    .collect()
            }),
        })
        .collect()
}
