//! Reconnect delays: 0.5 s doubling to 30 s, back to 0.5 s once a connection has held a minute.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::events::PbxEvent;

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

/// The reconnect loop's memory: the backoff, and the last failure, so that a PBX that stays
/// unreachable is reported once (log and [`PbxEvent::Disconnected`]) rather than per attempt.
pub struct Reconnect {
    backoff: Backoff,
    last_failure: Option<String>,
    attempts_failed: u64,
    url: String,
    events: mpsc::Sender<PbxEvent>,
    shutdown: CancellationToken,
}

impl Reconnect {
    /// For the connection to `url` (as shown in logs), reporting to `events`.
    pub fn new(
        url: &str,
        events: mpsc::Sender<PbxEvent>,
        shutdown: CancellationToken,
    ) -> Reconnect {
        Reconnect {
            backoff: Backoff::default(),
            last_failure: None,
            attempts_failed: 0,
            url: url.to_string(),
            events,
            shutdown,
        }
    }

    /// Called when a connection attempt or connection ended. `connected`: it had been up, for
    /// `held`. `severe`: log at error level (e.g. refused credentials). Logs and reports the
    /// change of state, then waits out the backoff. `false` = stop (shutdown, or the tracker
    /// has gone).
    pub async fn ended(
        &mut self,
        connected: bool,
        held: Duration,
        reason: String,
        severe: bool,
    ) -> bool {
        let url = self.url.as_str();
        if connected {
            self.backoff.connection_ended(held);
            self.attempts_failed = 0;
        } else {
            self.attempts_failed += 1;
        }
        let delay = self.backoff.next_delay();
        if connected || self.last_failure.as_deref() != Some(reason.as_str()) {
            if severe {
                tracing::error!(%url, %reason, retry_in = ?delay, "PBX refused the connection; retrying with backoff");
            } else {
                tracing::warn!(%url, %reason, retry_in = ?delay, "PBX connection down; retrying with backoff");
            }
            let down = PbxEvent::Disconnected {
                reason: reason.clone(),
                retry_in: delay,
            };
            if self.events.send(down).await.is_err() {
                return false;
            }
        } else {
            tracing::debug!(%url, %reason, attempts_failed = self.attempts_failed, retry_in = ?delay,
                "PBX still unreachable");
        }
        self.last_failure = if connected { None } else { Some(reason) };
        tokio::select! {
            _ = self.shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
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
