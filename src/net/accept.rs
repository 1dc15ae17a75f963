//! What every accept loop (TCP DNS, the control socket, metrics) does when `accept` fails.
//!
//! Most accept errors are lasting: out of file descriptors (`EMFILE`, `ENFILE`), out of memory.
//! The connection that could not be accepted stays in the kernel's queue, so retrying at once
//! fails at once again, and a loop that just `continue`s burns a core while the descriptors it
//! waits for are never freed by it. [`AcceptBackoff`] waits between attempts instead, doubling
//! the wait with every failure in a row (from 5 ms up to 1 s), and logs the first failure of a
//! run and the recovery, not every attempt.

use std::future::Future;
use std::io;
use std::time::Duration;

use tracing::{info, warn};

/// The first wait after a failed accept.
const FIRST_WAIT: Duration = Duration::from_millis(5);
/// The longest wait between attempts.
const LONGEST_WAIT: Duration = Duration::from_secs(1);

/// Back-off state of one accept loop.
#[derive(Debug)]
pub struct AcceptBackoff {
    /// Which listener, for the log.
    listener: &'static str,
    /// Failures since the last success.
    failures_in_a_row: u64,
}

impl AcceptBackoff {
    /// Back-off for the listener named `listener` in logs.
    pub fn new(listener: &'static str) -> Self {
        AcceptBackoff {
            listener,
            failures_in_a_row: 0,
        }
    }

    /// Calls `accept` until it succeeds, waiting after each failure (see the module doc).
    pub async fn accept<T, Attempt>(&mut self, mut accept: impl FnMut() -> Attempt) -> T
    where
        Attempt: Future<Output = io::Result<T>>,
    {
        loop {
            match accept().await {
                Ok(accepted) => {
                    self.succeeded();
                    return accepted;
                }
                Err(error) => {
                    let wait = self.failed(&error);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Records a failure; returns how long to wait before the next attempt.
    fn failed(&mut self, error: &io::Error) -> Duration {
        if self.failures_in_a_row == 0 {
            warn!(
                listener = self.listener,
                %error,
                "accept failed; backing off until connections can be accepted again"
            );
        }
        let wait = wait_after(self.failures_in_a_row);
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        wait
    }

    fn succeeded(&mut self) {
        if self.failures_in_a_row > 0 {
            info!(
                listener = self.listener,
                failed_attempts = self.failures_in_a_row,
                "accepting connections again"
            );
            self.failures_in_a_row = 0;
        }
    }
}

/// The wait after the `failures_before`+1-th failure in a row.
fn wait_after(failures_before: u64) -> Duration {
    let doublings = u32::try_from(failures_before.min(16)).unwrap_or(16);
    FIRST_WAIT
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(LONGEST_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn waits_double_up_to_a_second() {
        let waits: Vec<u128> = (0..10).map(|n| wait_after(n).as_millis()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(wait_after(u64::MAX), LONGEST_WAIT);
    }

    /// An accept that keeps failing is retried with growing waits, not in a tight loop, and a
    /// success starts the waits over.
    #[tokio::test(start_paused = true)]
    async fn failing_accepts_are_retried_with_back_off() {
        let mut backoff = AcceptBackoff::new("test");
        let attempts = Cell::new(0u32);
        let started = tokio::time::Instant::now();
        let accepted = backoff
            .accept(|| {
                attempts.set(attempts.get() + 1);
                let result = if attempts.get() <= 6 {
                    Err(io::Error::from_raw_os_error(24)) // EMFILE
                } else {
                    Ok(attempts.get())
                };
                std::future::ready(result)
            })
            .await;
        assert_eq!(accepted, 7);
        // 5 + 10 + 20 + 40 + 80 + 160 ms of (virtual) waiting for six failures.
        assert_eq!(started.elapsed(), Duration::from_millis(315));
        assert_eq!(backoff.failures_in_a_row, 0, "a success resets the waits");
    }
}
