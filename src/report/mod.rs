//! What people read: the live progress on stderr, and tables and JSON on stdout.

pub mod metrics;
mod progress;
pub mod tables;

pub use progress::{ColorChoice, Progress, format_ms};
