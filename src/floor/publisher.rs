//! The floor publisher: sends the backlog strictly oldest first, each event with its id as
//! `Nats-Msg-Id`, and confirms events only as the server's PubAcks come in. Up to [`WINDOW`]
//! events are on their way at once (the server stores and acknowledges them in the order they
//! were sent), so a flood costs a few socket writes and reads, not a round trip per event.
//!
//! When an acknowledgement does not come (no connection, no stream, a timeout), everything not
//! confirmed yet is sent again from the first unconfirmed event, after a short backoff and one
//! event at a time until the server takes one: a call's events reach the floor in order and,
//! thanks to the server's dedupe by id, once.

use std::sync::Arc;
use std::time::Duration;

use std::collections::VecDeque;

use tokio_util::sync::CancellationToken;

use super::backlog::Backlog;
use super::link::{AckWait, Link, LinkError};
use super::state::{FloorState, StreamState};

/// First pause after a failed publish.
const RETRY_INITIAL: Duration = Duration::from_millis(200);
/// Longest pause between attempts (the client reconnects on its own meanwhile).
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Most events sent and not acknowledged yet.
pub const WINDOW: usize = 256;
/// How long a stop waits for the backlog to empty (whatever is left stays on disk for the next
/// start).
pub const DRAIN_AT_STOP: Duration = Duration::from_secs(5);

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

/// Publishes the backlog until `stop` is cancelled, then drains: it goes on until the backlog
/// is empty, an attempt fails, or [`DRAIN_AT_STOP`] has passed. Events are never dropped here:
/// whatever is not acknowledged when it returns stays on disk for the next start.
pub async fn run(
    backlog: Arc<Backlog>,
    link: Link,
    state: Arc<FloorState>,
    stop: CancellationToken,
) {
    let mut p = Publisher {
        backlog,
        link,
        state,
        failures: 0,
        sent_through: 0,
        inflight: VecDeque::new(),
    };
    p.sent_through = p.backlog.acked_through();
    tokio::select! {
        _ = p.publish_until(&stop) => {}
        _ = stop.cancelled() => {}
    }
    if !p.link.is_connected() {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_AT_STOP, p.drain()).await;
}

struct Publisher {
    backlog: Arc<Backlog>,
    link: Link,
    state: Arc<FloorState>,
    failures: u32,
    /// The newest event handed to the connection in this round.
    sent_through: u64,
    /// Sent and not acknowledged yet, oldest first (the server acknowledges in order).
    inflight: VecDeque<(u64, AckWait)>,
}

impl Publisher {
    /// Never returns before `stop` (the caller's select ends it).
    async fn publish_until(&mut self, stop: &CancellationToken) {
        loop {
            if let Err(e) = self.top_up().await {
                self.failed(e);
                pause(self.failures, stop).await;
                continue;
            }
            if self.inflight.is_empty() {
                self.backlog.changed().await;
                continue;
            }
            let more_room = self.inflight.len() < self.window();
            tokio::select! {
                r = next_ack(&mut self.inflight) => {
                    if let Some((seq, r)) = r
                        && let Err(e) = self.settle(seq, r)
                    {
                        self.failed(e);
                        pause(self.failures, stop).await;
                    }
                }
                _ = self.backlog.changed(), if more_room => {}
            }
        }
    }

    /// After a stop: tries at once (no backoff), until the backlog is empty or one attempt
    /// fails.
    async fn drain(&mut self) {
        self.failures = 0;
        loop {
            if let Err(e) = self.top_up().await {
                self.failed(e);
                return;
            }
            if self.inflight.is_empty() {
                if self.backlog.stats().events == 0 {
                    return;
                }
                // Events still on their way to the disk.
                self.backlog.changed().await;
                continue;
            }
            tokio::select! {
                r = next_ack(&mut self.inflight) => {
                    if let Some((seq, r)) = r
                        && let Err(e) = self.settle(seq, r)
                    {
                        self.failed(e);
                        return;
                    }
                }
                _ = self.backlog.changed(), if self.inflight.len() < WINDOW => {}
            }
        }
    }

    /// One event at a time after a failure (a probe), a full window while the server takes
    /// them.
    fn window(&self) -> usize {
        if self.failures > 0 { 1 } else { WINDOW }
    }

    /// Sends events on disk and not sent yet, while the window has room.
    async fn top_up(&mut self) -> Result<(), LinkError> {
        let room = self.window().saturating_sub(self.inflight.len());
        if room == 0 {
            return Ok(());
        }
        for rec in self.backlog.durable_after(self.sent_through, room) {
            let ack = self
                .link
                .send(rec.subject.clone(), &rec.id, rec.payload())
                .await?;
            self.sent_through = rec.seq;
            self.inflight.push_back((rec.seq, ack));
        }
        Ok(())
    }

    /// One acknowledgement, and every other one already in: confirmed together.
    fn settle(&mut self, seq: u64, first: Result<bool, LinkError>) -> Result<(), LinkError> {
        first?;
        let mut through = seq;
        let mut n = 1u64;
        let mut failure = None;
        while let Some(r) = self
            .inflight
            .front_mut()
            .and_then(|(_, ack)| futures_util::FutureExt::now_or_never(ack))
        {
            let Some((seq, _)) = self.inflight.pop_front() else {
                break;
            };
            match r {
                Ok(_) => {
                    through = seq;
                    n += 1;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if self.failures > 0 || self.state.stream() != StreamState::Present {
            tracing::info!("the floor bus takes events again");
        }
        self.failures = 0;
        self.backlog.confirm_through(through);
        self.state.published_many(n, now());
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// An attempt failed: everything not confirmed is sent again, from the oldest.
    fn failed(&mut self, err: LinkError) {
        self.failures += 1;
        self.inflight.clear();
        self.sent_through = self.backlog.acked_through();
        match &err {
            LinkError::NoStream => {
                if self.state.set_stream(StreamState::Missing) {
                    tracing::warn!(
                        "the floor bus has no {} stream: events stay queued until the floor service creates it",
                        super::contract::STREAM
                    );
                }
            }
            other => {
                if self.failures == 1 {
                    tracing::warn!(error = %other, "floor event not published yet; it stays queued and is retried");
                }
            }
        }
        self.state.error(err.to_string());
    }
}

/// The backoff after `failures` failures; a stop ends it at once (the drain tries again).
/// The oldest acknowledgement, once it is in (pending while nothing is in flight).
async fn next_ack(
    inflight: &mut VecDeque<(u64, AckWait)>,
) -> Option<(u64, Result<bool, LinkError>)> {
    let r = std::future::poll_fn(|cx| match inflight.front_mut() {
        Some((_, ack)) => std::pin::Pin::new(ack).poll(cx),
        None => std::task::Poll::Pending,
    })
    .await;
    inflight.pop_front().map(|(seq, _)| (seq, r))
}

async fn pause(failures: u32, stop: &CancellationToken) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(backoff(failures)) => {}
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
