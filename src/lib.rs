//! rowhook: reads MySQL/MariaDB's binary log as a replica and delivers every row
//! change to HTTP webhooks. The README is the user contract; ARCHITECTURE.md the
//! design, stage by stage.

pub mod admin;
pub mod binlog;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod delivery;
pub mod dispatch;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod mysql;
pub mod net;
pub mod route;
pub mod snapshot;
pub mod source;
pub mod spool;
