//! kdr: a runbook executor for Kafka disaster recovery.
//!
//! Data flows plan → engine → steps → replication → kafka/mm2 → journal → report; the look-ups
//! (`lookup`) read through `replication` too. The binary in `main.rs` only parses the command
//! line, runs, and maps the outcome to an exit code.

pub mod app;
pub mod authority;
pub mod cli;
pub mod engine;
pub mod exit;
pub mod journal;
pub mod kafka;
pub mod lookup;
pub mod manual;
pub mod mm2;
pub mod plan;
pub mod rehearsal;
pub mod replication;
pub mod report;
pub mod steps;
