//! The floor publisher: takes the backlog strictly oldest first, publishes each event with its
//! id as `Nats-Msg-Id`, and removes it only once the server's PubAck is in. Anything else (no
//! connection, no stream, a timeout) leaves the event at the front and tries again after a
//! short backoff, so a call's events reach the floor in order and, thanks to the server's
//! dedupe by id, once.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::backlog::Backlog;
use super::link::{Link, LinkError};
use super::state::{FloorState, StreamState};

/// First pause after a failed publish.
const RETRY_INITIAL: Duration = Duration::from_millis(200);
/// Longest pause between attempts (the client reconnects on its own meanwhile).
const RETRY_MAX: Duration = Duration::from_secs(5);

fn now() -> chrono::DateTime<chrono::FixedOffset> {
    chrono::Local::now().fixed_offset()
}

/// Backoff after `failures` failed attempts in a row: doubling from [`RETRY_INITIAL`] up to
/// [`RETRY_MAX`], scaled by a random factor in [0.5, 1] so a floor of workstations coming back
/// does not hit the server all at once.
pub fn backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let raw = RETRY_INITIAL.saturating_mul(1u32 << exp).min(RETRY_MAX);
    let mut b = [0u8; 2];
    let f = match getrandom::fill(&mut b) {
        Ok(()) => 0.5 + 0.5 * f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX),
        Err(_) => 1.0,
    };
    raw.mul_f64(f)
}

/// Publishes the backlog until `stop` is cancelled. Events are never dropped here: whatever is
/// not acknowledged when it stops stays on disk for the next start.
pub async fn run(
    backlog: Arc<Backlog>,
    link: Link,
    state: Arc<FloorState>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let Some(mut entry) = backlog.front() else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = backlog.changed() => continue,
            }
        };
        let payload = entry.item.event.to_json();
        let id = entry.item.event.id.clone();
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = link.publish(entry.item.subject.clone(), &id, payload) => r,
        };
        match result {
            Ok(duplicate) => {
                if failures > 0 || state.stream() != StreamState::Present {
                    tracing::info!("the floor bus takes events again");
                }
                failures = 0;
                state.published(now());
                let receipt = if duplicate { "duplicate" } else { "stored" };
                if let Err(e) = backlog.confirm(&mut entry, receipt.into()) {
                    tracing::warn!(error = %e, "a published floor event could not be moved out of the backlog; it may be sent again (same id, dropped by the server)");
                }
            }
            Err(err) => {
                failures += 1;
                match &err {
                    LinkError::NoStream => {
                        if state.set_stream(StreamState::Missing) {
                            tracing::warn!(
                                "the floor bus has no {} stream: events stay queued until the floor service creates it",
                                super::contract::STREAM
                            );
                        }
                    }
                    other => {
                        if failures == 1 {
                            tracing::warn!(error = %other, "floor event not published yet; it stays queued and is retried");
                        }
                    }
                }
                state.error(err.to_string());
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff(failures)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        assert!(backoff(1) <= RETRY_INITIAL);
        assert!(backoff(1) >= RETRY_INITIAL / 2);
        assert!(backoff(100) <= RETRY_MAX);
        assert!(backoff(100) >= RETRY_MAX / 2);
    }
}
