//! abssctl: Actual Budget Sync Server ConTroL.
//!
//! Data flows one way: `cli` (parse, render) -> `ops` (use cases: lock, plan, transaction,
//! audit) -> `domain` (pure logic) and `sys` (the only code with side effects).

pub mod cli;
pub mod domain;
pub mod error;
pub mod ops;
pub mod sys;
