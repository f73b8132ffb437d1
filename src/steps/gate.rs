//! Human gates: where kdr waits for a person. At 3 AM nothing may hang silently, so every
//! question is bounded by a timeout and by Ctrl-C, and a run without a terminal to ask refuses to
//! start unless `--yes` answered for the operator.

use std::io::{BufRead, Write};
use std::time::Duration;

use tokio::sync::watch;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Text(String),
    /// End of input: nobody is there to answer.
    Closed,
    TimedOut,
    Cancelled,
}

/// Who answers the questions.
pub enum Gate {
    /// `--yes`: gates are passed and recorded as such; the steps decide what that means.
    Unattended,
    /// An operator at the terminal (stdin), prompts on stderr.
    Terminal,
}

impl Gate {
    pub fn unattended(&self) -> bool {
        matches!(self, Gate::Unattended)
    }

    pub async fn ask(
        &mut self,
        prompt: &str,
        timeout: Duration,
        cancel: &mut watch::Receiver<bool>,
    ) -> Answer {
        match self {
            Gate::Unattended => Answer::Closed,
            Gate::Terminal => {
                if *cancel.borrow() {
                    return Answer::Cancelled;
                }
                {
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "{prompt}");
                    let _ = err.flush();
                }
                // The blocking read cannot be cancelled; on Ctrl-C or timeout it is abandoned and
                // the run ends, which closes stdin with the process.
                let read = tokio::task::spawn_blocking(|| {
                    let mut line = String::new();
                    match std::io::stdin().lock().read_line(&mut line) {
                        Ok(0) | Err(_) => None,
                        Ok(_) => Some(line.trim().to_owned()),
                    }
                });
                tokio::select! {
                    line = read => match line {
                        Ok(Some(text)) => Answer::Text(text),
                        _ => Answer::Closed,
                    },
                    () = tokio::time::sleep(timeout) => Answer::TimedOut,
                    () = super::until_cancelled(cancel) => Answer::Cancelled,
                }
            }
        }
    }
}
