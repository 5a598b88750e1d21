//! Pure modules, no I/O: configuration, layout, validation, state, plans, audit records.

pub mod audit;
pub mod backup;
pub mod config;
pub mod default_server;
pub mod doctor;
pub mod instance;
pub mod layout;
pub mod migrations;
pub mod redact;
pub mod render;
pub mod retention;
pub mod schedule;
pub mod state;
pub mod tls;
pub mod txn;
pub mod updates;
pub mod validate;
pub mod versions;
pub mod vhost;
