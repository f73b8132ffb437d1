//! One wait for Kafka work: the work, its deadline and, in a run, cancellation, in one
//! `select!` (STYLE.md "Async, time and signals").

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How a wait ended without the work's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The deadline passed first.
    Deadline,
    /// The operator interrupted (the first Ctrl-C).
    Interrupted,
}

/// How long a caller waits for Kafka work: until its deadline and, when it has one, until its
/// cancellation turns true.
#[derive(Debug, Clone)]
pub struct Bound {
    deadline: Instant,
    cancel: Option<watch::Receiver<bool>>,
}

impl Bound {
    /// Waits end at `deadline` only (the look-ups: they have no Ctrl-C of their own to honour).
    pub fn until(deadline: Instant) -> Bound {
        Bound {
            deadline,
            cancel: None,
        }
    }

    /// Waits end at `deadline`, or at once when `cancel` is or turns true (a run's steps).
    pub fn cancellable(deadline: Instant, cancel: watch::Receiver<bool>) -> Bound {
        Bound {
            deadline,
            cancel: Some(cancel),
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Time left before the deadline, at most `cap`, at least a millisecond (a zero bound
    /// means "do not wait" to librdkafka).
    pub fn within(&self, cap: Duration) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .min(cap)
            .max(Duration::from_millis(1))
    }

    /// `work`, unless the deadline passes or cancellation comes first.
    pub async fn wait<T>(&mut self, work: impl Future<Output = T>) -> Result<T, Cut> {
        let deadline = self.deadline;
        let cancelled = async {
            match self.cancel.as_mut() {
                Some(cancel) => {
                    // A dropped sender can never cancel: wait for the deadline alone then.
                    if cancel.wait_for(|c| *c).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = cancelled => Err(Cut::Interrupted),
            r = tokio::time::timeout_at(deadline, work) => r.map_err(|_| Cut::Deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_its_deadline() {
        let mut bound = Bound::until(Instant::now() + Duration::from_secs(5));
        let started = Instant::now();
        let r = bound.wait(std::future::pending::<()>()).await;
        assert_eq!(r, Err(Cut::Deadline));
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // Work that is ready when asked is an answer, even past the deadline (as `timeout_at`).
        assert_eq!(bound.wait(async { 7 }).await, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn cancellation_ends_a_wait_at_once_and_a_cancelled_bound_waits_no_more() {
        let (tx, rx) = watch::channel(false);
        let mut bound = Bound::cancellable(Instant::now() + Duration::from_secs(60), rx);
        assert_eq!(bound.wait(async { 1 }).await, Ok(1));
        let started = Instant::now();
        let cancel = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            tx.send(true).expect("receiver alive");
        };
        let (r, ()) = tokio::join!(bound.wait(std::future::pending::<()>()), cancel);
        assert_eq!(r, Err(Cut::Interrupted));
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert_eq!(bound.wait(async { 2 }).await, Err(Cut::Interrupted));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_cancel_sender_leaves_the_deadline() {
        let (tx, rx) = watch::channel(false);
        drop(tx);
        let mut bound = Bound::cancellable(Instant::now() + Duration::from_secs(3), rx);
        assert_eq!(bound.wait(async { 3 }).await, Ok(3));
        let started = Instant::now();
        assert_eq!(
            bound.wait(std::future::pending::<()>()).await,
            Err(Cut::Deadline)
        );
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
