//! What people read: the live progress on stderr, tables and JSON on stdout, and incident
//! reports (Markdown, HTML, JSON) built from incident logs.

pub mod html;
pub mod incident;
#[cfg(test)]
mod incident_tests;
pub mod json;
pub mod markdown;
pub mod metrics;
mod progress;
mod sections;
pub mod tables;

pub use progress::{ColorChoice, Progress, format_ms};
