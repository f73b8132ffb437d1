//! The one rule for how long a Kafka operation may take.
//!
//! An operation has two clocks: the blocking thread that drives librdkafka, which must be
//! done by a deadline, and the async caller, which stops waiting a little later so that
//! librdkafka's own, more precise error (an authentication failure, the last transport
//! error) wins the race against a bare "timed out". Every operation in this layer takes
//! both from [`Bound::new`], so no call has a timeout rule of its own.

use std::time::{Duration, Instant};

use super::error::KafkaError;
use super::scope::Scope;

/// How much longer than an operation's deadline the async side waits for the blocking
/// thread to hand over its answer.
pub(crate) const OUTER_GRACE: Duration = Duration::from_millis(250);

/// Longest wait handed to librdkafka in one call; it takes milliseconds as an `i32`.
pub(crate) const LONGEST_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// A wait librdkafka accepts: at least 1 ms (0 means "do not wait"), at most a day.
pub(crate) fn wait(duration: Duration) -> Duration {
    duration.clamp(Duration::from_millis(1), LONGEST_WAIT)
}

/// [`wait`] in the whole milliseconds librdkafka's C calls take.
pub(crate) fn wait_ms(duration: Duration) -> i32 {
    i32::try_from(wait(duration).as_millis()).unwrap_or(i32::MAX)
}

/// When one operation's work must end, and when its caller stops waiting for the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    /// The blocking side's deadline: the operation timeout from now, or the caller's own
    /// deadline if that comes first.
    pub(crate) deadline: Instant,
    /// When the async side gives up: `deadline` plus [`OUTER_GRACE`].
    pub(crate) give_up: Instant,
}

impl Bound {
    /// The bound of an operation starting at `now` with `operation_timeout`, under the
    /// caller's `deadline` if it has one.
    pub(crate) fn new(
        operation_timeout: Duration,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Bound {
        let own = now + operation_timeout;
        let deadline = deadline.map_or(own, |caller| caller.min(own));
        Bound {
            deadline,
            give_up: deadline + OUTER_GRACE,
        }
    }

    /// Time left for the work at `now`; zero once the deadline passed.
    pub(crate) fn remaining(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }

    /// [`Bound::give_up`] on Tokio's clock.
    pub(crate) fn give_up_at(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.give_up)
    }
}

/// Where a blocking thread sends its operation's answer.
pub(crate) type Answer<T> = tokio::sync::oneshot::Sender<Result<T, KafkaError>>;

/// Runs `work` on a blocking thread and waits for the answer it sends until `bound` gives
/// up. The thread is detached: a client's teardown after the answer was sent must not hold
/// up the caller, and a thread that overruns is left to finish on its own.
pub(crate) async fn off_thread<T: Send + 'static>(
    scope: &Scope,
    bound: Bound,
    work: impl FnOnce(Answer<T>) + Send + 'static,
) -> Result<T, KafkaError> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    drop(tokio::task::spawn_blocking(move || work(answer)));
    match tokio::time::timeout_at(bound.give_up_at(), answered).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => Err(scope.client(
            "the client thread ended without an answer (librdkafka returned data kdr could not read)",
        )),
        Err(_) => Err(scope.timeout(Some("the client did not return in time".to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_timeout_bounds_the_work_and_the_grace_the_wait() {
        let now = Instant::now();
        let bound = Bound::new(Duration::from_secs(5), None, now);
        assert_eq!(bound.deadline, now + Duration::from_secs(5));
        assert_eq!(bound.give_up, now + Duration::from_secs(5) + OUTER_GRACE);
        assert_eq!(bound.remaining(now), Duration::from_secs(5));
        assert_eq!(
            bound.remaining(now + Duration::from_secs(6)),
            Duration::ZERO
        );
    }

    #[test]
    fn an_earlier_caller_deadline_wins_and_a_later_one_does_not() {
        let now = Instant::now();
        let soon = now + Duration::from_secs(1);
        let bound = Bound::new(Duration::from_secs(5), Some(soon), now);
        assert_eq!(bound.deadline, soon);
        assert_eq!(bound.give_up, soon + OUTER_GRACE);
        let late = now + Duration::from_secs(60);
        let bound = Bound::new(Duration::from_secs(5), Some(late), now);
        assert_eq!(bound.deadline, now + Duration::from_secs(5));
    }

    #[test]
    fn a_passed_caller_deadline_leaves_no_time() {
        let now = Instant::now();
        let bound = Bound::new(Duration::from_secs(5), Some(now), now);
        assert_eq!(bound.remaining(now), Duration::ZERO);
    }

    #[test]
    fn waits_handed_to_librdkafka_are_never_zero_nor_beyond_a_day() {
        assert_eq!(wait(Duration::ZERO), Duration::from_millis(1));
        assert_eq!(wait(Duration::from_secs(3)), Duration::from_secs(3));
        assert_eq!(wait(Duration::from_secs(u64::MAX / 4)), LONGEST_WAIT);
    }
}
