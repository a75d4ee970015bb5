//! The clock rules of DESIGN.md: a call's clock starts at its PBX `at`, carried onto the local
//! monotonic clock at receipt; `at` in the future or more than 24 h old falls back to receipt time.

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use tokio::time::Instant;

/// Oldest `at` still believed.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Clock skew tolerated before an `at` counts as "in the future".
pub const FUTURE_SLACK: Duration = Duration::from_secs(2);

/// Local wall time with its offset.
pub fn wall_now() -> DateTime<FixedOffset> {
    chrono::Local::now().fixed_offset()
}

/// Where a call's clock starts, on both clocks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Origin {
    /// Wall-clock start, as recorded in evidence.
    pub wall: DateTime<FixedOffset>,
    /// Monotonic receipt time, which timers are based on.
    pub received: Instant,
    /// How long the call had already run at receipt (real time).
    pub age: Duration,
    /// Why `at` was not used, if it was given and refused.
    pub refused: Option<Refused>,
}

/// Why a PBX `at` was not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// More than [`FUTURE_SLACK`] ahead of the local clock.
    Future,
    /// More than [`MAX_AGE`] old.
    TooOld,
}

/// Carries `at` onto the monotonic clock, given the wall and monotonic receipt times.
pub fn origin(
    at: Option<DateTime<FixedOffset>>,
    received_wall: DateTime<FixedOffset>,
    received_mono: Instant,
) -> Origin {
    let receipt = Origin {
        wall: received_wall,
        received: received_mono,
        age: Duration::ZERO,
        refused: None,
    };
    let Some(at) = at else { return receipt };
    let age = received_wall.signed_duration_since(at);
    match age.to_std() {
        // Negative age: `at` is ahead of us.
        Err(_) => {
            let ahead = at
                .signed_duration_since(received_wall)
                .to_std()
                .unwrap_or_default();
            if ahead > FUTURE_SLACK {
                Origin {
                    refused: Some(Refused::Future),
                    ..receipt
                }
            } else {
                Origin {
                    wall: at,
                    ..receipt
                }
            }
        }
        Ok(age) if age > MAX_AGE => Origin {
            refused: Some(Refused::TooOld),
            ..receipt
        },
        Ok(age) => Origin {
            wall: at,
            age,
            ..receipt
        },
    }
}

impl Origin {
    /// Real time the call has run at monotonic `now`.
    pub fn elapsed(&self, now: Instant) -> Duration {
        self.age + now.saturating_duration_since(self.received)
    }

    /// The monotonic instant at which the call has run `real` (now or earlier means: at once).
    pub fn when(&self, real: Duration) -> Instant {
        self.received + real.saturating_sub(self.age)
    }
}

/// When a call ended, for its record: the PBX's `at` when it is neither before the call's start
/// nor ahead of `received_wall` by more than [`FUTURE_SLACK`] (a PBX clock running ahead, or an
/// `at` in 9999, must not go into signed evidence), else the time the end was received.
pub fn end_time(
    at: Option<DateTime<FixedOffset>>,
    started: DateTime<FixedOffset>,
    received_wall: DateTime<FixedOffset>,
) -> DateTime<FixedOffset> {
    let ahead = |a: &DateTime<FixedOffset>| {
        a.signed_duration_since(received_wall)
            .to_std()
            .is_ok_and(|d| d > FUTURE_SLACK)
    };
    at.filter(|a| *a >= started && !ahead(a))
        .unwrap_or(received_wall)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_ahead_of_the_clock_or_before_the_start_is_the_time_received() {
        let start = t("2026-11-22T10:00:00+09:00");
        let recv = t("2026-11-22T10:10:00+09:00");
        let end = |at: &str| end_time(Some(t(at)), start, recv);
        assert_eq!(
            end("2026-11-22T10:09:30+09:00"),
            t("2026-11-22T10:09:30+09:00")
        );
        assert_eq!(
            end("2026-11-22T10:10:01+09:00"),
            t("2026-11-22T10:10:01+09:00")
        );
        assert_eq!(end("9999-12-31T23:59:59+00:00"), recv);
        assert_eq!(end("2026-11-22T10:11:00+09:00"), recv);
        assert_eq!(end("2026-11-22T09:59:00+09:00"), recv);
        assert_eq!(end_time(None, start, recv), recv);
    }

    fn t(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn at_is_carried_onto_the_monotonic_clock() {
        let now = Instant::now();
        let o = origin(
            Some(t("2026-11-22T10:00:00+09:00")),
            t("2026-11-22T10:20:00+09:00"),
            now,
        );
        assert_eq!(o.elapsed(now), Duration::from_secs(20 * 60));
        assert_eq!(
            o.when(Duration::from_secs(30 * 60)),
            now + Duration::from_secs(600)
        );
        assert_eq!(o.when(Duration::from_secs(15 * 60)), now);
        assert_eq!(o.wall, t("2026-11-22T10:00:00+09:00"));
        assert_eq!(o.refused, None);
    }

    #[tokio::test(start_paused = true)]
    async fn future_and_stale_at_fall_back_to_receipt() {
        let now = Instant::now();
        let recv = t("2026-11-22T10:00:00+09:00");
        let o = origin(Some(t("2026-11-22T10:05:00+09:00")), recv, now);
        assert_eq!(
            (o.age, o.wall, o.refused),
            (Duration::ZERO, recv, Some(Refused::Future))
        );
        let o = origin(Some(t("2026-11-20T10:00:00+09:00")), recv, now);
        assert_eq!(
            (o.age, o.wall, o.refused),
            (Duration::ZERO, recv, Some(Refused::TooOld))
        );
        // A second of skew is not "the future".
        let o = origin(Some(t("2026-11-22T10:00:01+09:00")), recv, now);
        assert_eq!((o.age, o.refused), (Duration::ZERO, None));
    }
}
