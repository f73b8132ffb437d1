//! End-to-end tests: the built `kdr` binary, driven as an operator would drive it.

mod authority;
mod bad_plans;
mod compose;
mod failover;
mod harness;
mod lookup;
mod plan_commands;
mod report;
mod runs;
mod world;
