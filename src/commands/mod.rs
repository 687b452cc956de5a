//! The verbs of the command line that do work: `run` (the service), `check`,
//! `tail`, and `dlq replay`. Each wires the stages below (source, dispatch,
//! delivery, checkpoint) for its purpose; `main.rs` only parses arguments and
//! turns results into exit codes.

pub mod check;
pub mod replay;
pub mod run;
pub mod spool_replay;
pub mod tail;

/// The one-thread executor a replay sends from (`dlq replay`, spool replay,
/// `POST /tasks/{id}/replay`): unbound, so it runs beside a running instance.
pub(crate) fn replay_executor() -> Result<glommio::LocalExecutor, glommio::GlommioError<()>> {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("rowhook-replay")
        .io_memory(run::IO_MEMORY)
        .make()
}
