//! End-to-end tests: the built `kdr` binary, driven as an operator would drive it.

mod authority;
mod bad_plans;
#[path = "../common/mod.rs"]
mod common;
mod compose;
mod drill;
mod exit_codes;
mod failover;
mod harness;
mod lookup;
mod metrics;
mod notify;
mod operator;
mod plan_commands;
mod prompts;
mod rehearse;
mod report;
mod runs;
mod stranded;
mod world;
