//! The real-broker suite: kdr against two Nisshi broker processes (primary and DR) that the
//! harness starts on free loopback ports and stops when each test ends.
//!
//! Needs `nisshi` 0.8.1 on PATH: `scripts/test-brokers` installs it, `make test-brokers` runs
//! both. Without it every test here fails and says so; none is skipped.

mod authority;
mod batch;
mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod crash;
mod drill;
mod failover;
mod faults;
mod harness;
mod lookups;
mod mm2;
mod replication;
mod reverse;
mod roundtrip;
mod security;
mod stranded;
mod translate;
