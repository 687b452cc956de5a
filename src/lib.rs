//! rowhook: reads MySQL/MariaDB's binary log as a replica and delivers every row
//! change to HTTP webhooks. See SPEC.md for the contract and DESIGN.md for the layout.

pub mod admin;
pub mod binlog;
pub mod changes;
pub mod check;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod dispatch;
pub mod dlq;
pub mod gtid;
pub mod http;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod mysql;
pub mod net;
pub mod payload;
pub mod replay;
pub mod route;
pub mod run;
pub mod schema;
pub mod source;
pub mod tail;
