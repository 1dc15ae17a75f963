//! When each upstream attempt of one query starts: staggered starts (the next candidate after the
//! stagger, or at once when the one started last has failed), backups only once every primary
//! has failed. Pure bookkeeping: the forwarder drives it with the clock and the outcomes, so the
//! rules are tested without sockets or timers.

use std::time::{Duration, Instant};

/// When the next candidate may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Now.
    Now,
    /// At this moment.
    At(Instant),
}

/// The start schedule of one query's candidates: primaries (indexes `0..primaries`) then
/// backups, in order of preference.
#[derive(Debug, Clone)]
pub struct Schedule {
    primaries: usize,
    total: usize,
    stagger: Duration,
    /// Candidates started so far (always a prefix of the order).
    started: usize,
    last_start: Option<Instant>,
    /// Per started candidate: whether it has failed.
    failed: Vec<bool>,
}

impl Schedule {
    /// A schedule for `primaries` primary and `backups` backup candidates.
    pub fn new(primaries: usize, backups: usize, stagger: Duration) -> Self {
        Schedule {
            primaries,
            total: primaries + backups,
            stagger,
            started: 0,
            last_start: None,
            failed: Vec::with_capacity(primaries + backups),
        }
    }

    /// Records that candidate `index` (started) failed.
    pub fn failed(&mut self, index: usize) {
        if let Some(failed) = self.failed.get_mut(index) {
            *failed = true;
        }
    }

    /// The next candidate when it may start at `now`, marked as started; `None` when none may.
    pub fn start_due(&mut self, now: Instant) -> Option<usize> {
        if let Due::At(at) = self.next_start()?
            && at > now
        {
            return None;
        }
        let index = self.started;
        self.started += 1;
        self.last_start = Some(now);
        self.failed.push(false);
        Some(index)
    }

    /// When the next candidate may start; `None` when none is left or the next is a backup
    /// waiting for the primaries still in flight to fail.
    pub fn next_start(&self) -> Option<Due> {
        let next = self.started;
        if next >= self.total {
            return None;
        }
        let primaries_failed = self.failed.iter().take(self.primaries).all(|&f| f)
            && self.failed.len() >= self.primaries;
        if next >= self.primaries && !primaries_failed {
            return None;
        }
        let Some(last_start) = self.last_start else {
            // Nothing started yet: at once (an empty primary tier lets the backups start).
            return Some(Due::Now);
        };
        let previous_failed = self.failed.last().copied().unwrap_or(true);
        if previous_failed || next == self.primaries {
            Some(Due::Now)
        } else {
            Some(Due::At(last_start + self.stagger))
        }
    }

    /// Whether every candidate has started and failed: nothing can answer any more.
    pub fn exhausted(&self) -> bool {
        self.started == self.total && self.failed.iter().all(|&f| f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAGGER: Duration = Duration::from_millis(200);

    fn ms(start: Instant, at: u64) -> Instant {
        start + Duration::from_millis(at)
    }

    #[test]
    fn primaries_start_staggered_and_at_once_after_a_failure() {
        let start = Instant::now();
        let mut schedule = Schedule::new(3, 0, STAGGER);
        assert_eq!(schedule.start_due(start), Some(0), "the first at once");
        assert_eq!(schedule.start_due(start), None, "one at a time");
        assert_eq!(schedule.next_start(), Some(Due::At(ms(start, 200))));
        assert_eq!(schedule.start_due(ms(start, 199)), None);
        assert_eq!(
            schedule.start_due(ms(start, 200)),
            Some(1),
            "after the stagger"
        );
        schedule.failed(1);
        assert_eq!(
            schedule.start_due(ms(start, 250)),
            Some(2),
            "the one before failed: at once"
        );
        assert_eq!(schedule.next_start(), None, "none left");
        assert!(!schedule.exhausted(), "0 and 2 still in flight");
        schedule.failed(0);
        schedule.failed(2);
        assert!(schedule.exhausted());
    }

    #[test]
    fn backups_wait_until_every_primary_failed() {
        let start = Instant::now();
        let mut schedule = Schedule::new(2, 2, STAGGER);
        assert_eq!(schedule.start_due(start), Some(0));
        assert_eq!(schedule.start_due(ms(start, 200)), Some(1));
        assert_eq!(schedule.next_start(), None, "a backup waits for failures");
        assert_eq!(schedule.start_due(ms(start, 5_000)), None, "not for time");
        schedule.failed(1);
        assert_eq!(
            schedule.start_due(ms(start, 5_000)),
            None,
            "0 still in flight"
        );
        schedule.failed(0);
        assert_eq!(
            schedule.start_due(ms(start, 5_001)),
            Some(2),
            "every primary failed: the first backup at once"
        );
        assert_eq!(
            schedule.next_start(),
            Some(Due::At(ms(start, 5_201))),
            "backups stagger too"
        );
        assert_eq!(schedule.start_due(ms(start, 5_201)), Some(3));
        assert!(!schedule.exhausted());
    }

    #[test]
    fn no_primary_available_lets_backups_start_at_once() {
        let start = Instant::now();
        let mut schedule = Schedule::new(0, 2, STAGGER);
        assert_eq!(schedule.start_due(start), Some(0));
        assert_eq!(schedule.start_due(start), None);
        schedule.failed(0);
        assert_eq!(schedule.start_due(ms(start, 1)), Some(1));
    }

    #[test]
    fn zero_stagger_starts_every_primary_together() {
        let start = Instant::now();
        let mut schedule = Schedule::new(3, 1, Duration::ZERO);
        let started: Vec<usize> = std::iter::from_fn(|| schedule.start_due(start)).collect();
        assert_eq!(started, [0, 1, 2], "every primary, no backup");
    }

    #[test]
    fn nothing_to_try_is_exhausted_at_once() {
        let mut schedule = Schedule::new(0, 0, STAGGER);
        assert_eq!(schedule.start_due(Instant::now()), None);
        assert!(schedule.exhausted());
    }
}
