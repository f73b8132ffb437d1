//! The operator's look-up commands: `kdr lag`, `kdr offsets translate` and `kdr status`.
//!
//! They answer "where do we stand?" between runs, or in the first minute of an incident,
//! with the same measurements the failover's steps take (`replication`), read-only unless
//! `offsets translate --apply` is asked for. Each returns a report that is printed as a table
//! or as JSON (`--output json`); the JSON shapes are a versioned contract ([`SCHEMA_VERSION`],
//! documented in the README and read back in `tests/e2e/lookup.rs`).
//!
//! A dead cluster is an answer here, not an error: each command says what it could not read
//! and shows what the other side knows. Every Kafka call is bounded by its operation timeout,
//! and the whole command by an overall deadline (`--timeout`), so a look-up never hangs.

pub mod lag;
pub mod newest;
pub mod status;
pub mod translate;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::kafka::KafkaError;
use crate::plan::Plan;
use crate::replication::{Bound, Clusters};
use crate::report::Progress;

/// The version of every look-up command's JSON output. Adding a field keeps it; renaming,
/// removing or changing the meaning of one bumps it.
pub const SCHEMA_VERSION: u32 = 1;

/// How long a look-up may take in all, unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Work that takes longer than this says what it is doing.
const SLOW: Duration = Duration::from_secs(1);

/// Why a look-up could not give its answer at all (as opposed to an answer that says
/// something is wrong, which is a report with a failing exit code).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The plan's client settings are not usable: nothing was asked of any cluster.
    #[error("failed to configure the Kafka clients: {0}")]
    Config(KafkaError),
    /// A question the answer depends on could not be answered.
    #[error("{0}")]
    Failed(String),
    /// The overall deadline passed.
    #[error("failed to finish within {} (--timeout)", humantime::format_duration(*.0))]
    TimedOut(Duration),
}

/// What a look-up works under: the overall deadline, and the one channel to the operator
/// (notes and warnings go through [`Progress::say`], as the runs' do, never to stderr directly).
#[derive(Clone)]
pub struct LookupCtx {
    /// When the look-up's own work must be done (a little before the hard deadline).
    pub deadline: Instant,
    /// None: the notes are not for anybody (a look-up polled by `kdr drill`).
    progress: Option<Arc<Mutex<Progress>>>,
}

impl LookupCtx {
    fn new(deadline: Instant) -> LookupCtx {
        LookupCtx {
            deadline,
            progress: Some(Arc::new(Mutex::new(Progress::new(false, 0)))),
        }
    }

    /// A look-up whose notes nobody reads: `kdr drill` polls MM2's checkpoints with one until
    /// they hold what it waits for, and says itself what it waited for when they never do.
    pub fn quiet(deadline: Instant) -> LookupCtx {
        LookupCtx {
            deadline,
            progress: None,
        }
    }

    /// A note for the operator, beside the report.
    pub fn say(&self, text: &str) {
        let Some(progress) = &self.progress else {
            return;
        };
        // A poisoned lock only means another note panicked mid-line: still say this one.
        let mut progress = progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        progress.say(text);
    }

    /// `work`, saying what it is when it runs longer than [`SLOW`], and how long it took
    /// then: a look-up at the scale of thousands of partitions is never silent for long.
    /// Plain lines through [`LookupCtx::say`], on a terminal or not.
    pub async fn noting<T>(&self, what: &str, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let mut work = std::pin::pin!(work);
        tokio::select! {
            done = &mut work => return done,
            () = tokio::time::sleep(SLOW) => {}
        }
        self.say(&format!("{what}…"));
        let done = work.await;
        self.say(&format!(
            "{what}: done in {}",
            crate::report::format_ms(
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
            )
        ));
        done
    }

    /// Waits that end at the deadline.
    pub fn bound(&self) -> Bound {
        Bound::until(self.deadline)
    }
}

/// Runs one look-up on the command's runtime under the overall deadline.
pub fn run_bounded<T, F, Fut>(
    runtime: &tokio::runtime::Runtime,
    plan: &Plan,
    timeout: Duration,
    work: F,
) -> Result<T, LookupError>
where
    F: FnOnce(Clusters, LookupCtx) -> Fut,
    Fut: Future<Output = Result<T, LookupError>>,
{
    let clusters = Clusters::from_plan(plan).map_err(LookupError::Config)?;
    runtime.block_on(async {
        let started = Instant::now();
        // The work's own deadline comes a little before the hard one, so that what could not
        // be read in time is reported as such, with everything else that was.
        let ctx = LookupCtx::new(started + timeout - (timeout / 10).min(Duration::from_secs(1)));
        // Split brain is said by every command, whatever it was asked.
        let alarm = async {
            let state = tokio::time::timeout_at(
                ctx.deadline,
                crate::authority::read_both(&clusters.primary, &clusters.dr, &plan.name),
            )
            .await;
            if let Some(alarm) = state.ok().and_then(|s| s.split_brain()) {
                ctx.say(&format!("!!! {alarm}"));
            }
        };
        let (result, ()) = tokio::join!(
            tokio::time::timeout_at(started + timeout, work(clusters.clone(), ctx.clone())),
            alarm
        );
        match result {
            Ok(result) => result,
            Err(_) => Err(LookupError::TimedOut(timeout)),
        }
    })
}

/// Awaits Kafka work, at most until `deadline`, with the error in words.
async fn bounded<T>(
    deadline: Instant,
    what: &str,
    work: impl Future<Output = Result<T, KafkaError>>,
) -> Result<T, String> {
    match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("failed to {what}: {e}")),
        Err(_) => Err(format!(
            "failed to {what}: the command's deadline passed first"
        )),
    }
}

/// Time left before `deadline`, at most `cap`, at least a millisecond (a zero bound means
/// "do not wait" to librdkafka).
fn within(deadline: Instant, cap: Duration) -> Duration {
    Bound::until(deadline).within(cap)
}

/// A count with its thousands separated by a space: `1 234 567`.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// An age in milliseconds as people read it (`850ms`, `4.2s`, `3m 05s`); negative ages (a
/// clock ahead of this host's) read as `0ms`.
pub fn age(ms: i64) -> String {
    crate::report::format_ms(u64::try_from(ms).unwrap_or(0))
}

/// A table in the style of `report::tables`.
fn table(header: &[&str]) -> crate::report::tables::Grid {
    crate::report::tables::table(header)
}

/// An optional number for a table cell: `-` when unknown.
fn cell(value: Option<i64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped_by_thousands_with_a_space() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1 000");
        assert_eq!(count(1234), "1 234");
        assert_eq!(count(123_456), "123 456");
        assert_eq!(count(1_234_567), "1 234 567");
        assert_eq!(count(-1234), "-1 234");
        assert_eq!(count(i64::MIN), "-9 223 372 036 854 775 808");
    }

    #[test]
    fn ages_read_like_durations_and_never_go_negative() {
        assert_eq!(age(850), "850ms");
        assert_eq!(age(4_200), "4.2s");
        assert_eq!(age(185_000), "3m 05s");
        assert_eq!(age(-5), "0ms");
    }
}
