//! `rowhook dlq replay`: sends dead letters again, with the task's current headers
//! and signing secret and the original `webhook-id`. Each file is first renamed
//! aside, so letters a running instance adds meanwhile land in a fresh file; what
//! fails again is appended back.

use std::path::Path;

use crate::config::Config;
use crate::delivery::dlq::{self, Letter};
use crate::delivery::outcome::{classify, Outcome};
use crate::delivery::{request, Plan};
use crate::http::Pool;

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Letters acknowledged by their receiver and removed.
    pub delivered: usize,
    /// Letters that failed again and were kept.
    pub failed: usize,
    /// Lines that could not be parsed (kept as they were).
    pub unreadable: usize,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The configuration does not make a delivery plan.
    #[error(transparent)]
    Plan(#[from] crate::delivery::plan::PlanError),
    /// A file could not be read, moved or written.
    #[error("{path}: {source}")]
    Io {
        /// Which file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The executor could not start.
    #[error("cannot start the io_uring executor: {0}")]
    Executor(#[from] glommio::GlommioError<()>),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReplayError + '_ {
    move |source| ReplayError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Replays the dead letters of `task` (or all) under `config`'s state directory.
pub fn replay(config: &Config, task: Option<&str>) -> Result<Replayed, ReplayError> {
    replay_dir(config, &config.state.dir.join("dlq"), task)
}

/// Replays the records of `task` (or all) in `dir`: dead letters, or the
/// quarantine (`state.dir/quarantine`, same record format).
pub fn replay_dir(
    config: &Config,
    dir: &Path,
    task: Option<&str>,
) -> Result<Replayed, ReplayError> {
    let plan = Plan::new(config, 1)?;
    let dir = dir.to_path_buf();
    // A replay that died (full disk, kill) left its letters aside: they come back
    // first, so none is hidden.
    dlq::recover(&dir).map_err(io(&dir))?;
    let files = dlq::files(&dir, task).map_err(io(&dir))?;
    let executor = super::replay_executor()?;
    executor.run(async move {
        let mut total = Replayed::default();
        for file in files {
            let aside = file.with_extension(format!("replaying-{}", std::process::id()));
            std::fs::rename(&file, &aside).map_err(io(&file))?;
            let text = std::fs::read_to_string(&aside).map_err(io(&aside))?;
            let mut keep = Vec::new();
            for (line, parsed) in text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .zip(dlq::parse(&aside, &text))
            {
                match parsed {
                    Ok(mut letter) => {
                        if send(&plan, &mut letter).await {
                            total.delivered += 1;
                        } else {
                            total.failed += 1;
                            keep.extend_from_slice(&letter.to_line());
                        }
                    }
                    Err(bad) => {
                        tracing::warn!("{bad}; kept as it is");
                        total.unreadable += 1;
                        keep.extend_from_slice(line.as_bytes());
                        keep.push(b'\n');
                    }
                }
            }
            if !keep.is_empty() {
                let name = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                dlq::append(&dir, &name, &keep).map_err(io(&file))?;
            }
            std::fs::remove_file(&aside).map_err(io(&aside))?;
        }
        Ok(total)
    })
}

/// One attempt for `letter`; true when acknowledged. On failure the letter's
/// attempts, status and error are updated.
async fn send(plan: &Plan, letter: &mut Letter) -> bool {
    let Some(task) = plan.tasks.iter().find(|t| t.id == letter.task) else {
        letter.error = format!("task {} is no longer configured", letter.task);
        tracing::warn!(task = %letter.task, id = %letter.id, "{}", letter.error);
        return false;
    };
    let pool = Pool::new(task.endpoint.clone(), plan.tls.clone(), 1);
    let body = letter.payload.get().as_bytes();
    let mut req = Vec::with_capacity(body.len() + 512);
    let now = crate::delivery::unix_now();
    request::write(&mut req, task, letter.id.as_bytes(), body, now, 0);
    letter.attempts += 1;
    match classify(&pool.exchange(&req, plan.timeout, false).await) {
        Outcome::Delivered => true,
        Outcome::Retry { error, status, .. } => {
            letter.status = status;
            letter.error = error;
            false
        }
        Outcome::Permanent { error, status } => {
            letter.status = Some(status);
            letter.error = error;
            false
        }
    }
}
