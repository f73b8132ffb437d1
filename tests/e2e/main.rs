//! End-to-end tests: the built `kdr` binary, driven as an operator would drive it.

mod authority;
<<<<<<< HEAD
mod bad_plans;
=======
mod compose;
>>>>>>> compose
mod failover;
mod harness;
mod lookup;
mod plan_commands;
mod runs;
