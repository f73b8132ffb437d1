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

/// `1 step`, `2 steps`: a count and its noun, in the right number (the noun's plural adds `s`).
pub fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}
