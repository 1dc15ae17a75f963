//! Wall-clock times as the product shows them: milliseconds since the Unix epoch (in events,
//! status, the state file) and how long ago such a time was (in the text views).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch of `time` (0 before the epoch).
pub fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// How long before `now` the time `unix_ms` was; `None` when it is later than `now` (a clock
/// that stepped back).
pub fn elapsed_since(unix_ms: u64, now: SystemTime) -> Option<Duration> {
    now.duration_since(UNIX_EPOCH + Duration::from_millis(unix_ms))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_elapsed() {
        let now = UNIX_EPOCH + Duration::from_millis(10_500);
        assert_eq!(unix_ms(now), 10_500);
        assert_eq!(unix_ms(UNIX_EPOCH - Duration::from_secs(1)), 0);
        assert_eq!(elapsed_since(500, now), Some(Duration::from_secs(10)));
        assert_eq!(elapsed_since(20_000, now), None);
    }
}
