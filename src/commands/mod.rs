//! The verbs of the command line that do work: `run` (the service), `check`,
//! `tail`, and `dlq replay`. Each wires the stages below (source, dispatch,
//! delivery, checkpoint) for its purpose; `main.rs` only parses arguments and
//! turns results into exit codes.

pub mod check;
pub mod replay;
pub mod run;
pub mod spool_replay;
pub mod tail;
