//! Reconnect delays: 0.5 s doubling to 30 s, back to 0.5 s once a connection has held a minute.

use std::time::Duration;

/// First delay.
pub const INITIAL: Duration = Duration::from_millis(500);
/// Largest delay.
pub const MAX: Duration = Duration::from_secs(30);
/// A connection that lasted this long resets the delay.
pub const STABLE: Duration = Duration::from_secs(60);

/// Capped exponential backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: INITIAL }
    }
}

impl Backoff {
    /// The delay before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(MAX);
        d
    }

    /// Called when a connection ends after having been up for `held`.
    pub fn connection_ended(&mut self, held: Duration) {
        if held >= STABLE {
            self.next = INITIAL;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets_after_a_stable_connection() {
        let mut b = Backoff::default();
        let seq: Vec<u64> = (0..9).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(
            seq,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        b.connection_ended(Duration::from_secs(59));
        assert_eq!(b.next_delay(), MAX);
        b.connection_ended(Duration::from_secs(60));
        assert_eq!(b.next_delay(), INITIAL);
    }
}
