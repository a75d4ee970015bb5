//! The floor publisher: sends the backlog strictly oldest first, each event with its id as
//! `Nats-Msg-Id`, and confirms events only as the server's PubAcks come in. Up to [`WINDOW`]
//! events are on their way at once (the server stores and acknowledges them in the order they
//! were sent), so a flood costs a few socket writes and reads, not a round trip per event. The
//! acknowledgements come in on one subscription ([`Acks`]), each naming its event.
//!
//! When an acknowledgement does not come (no connection, no stream, nothing within
//! [`ACK_TIMEOUT`]), everything not confirmed yet is sent again from the first unconfirmed
//! event, after a short backoff and one event at a time until the server takes one: a call's
//! events reach the floor in order and, thanks to the server's dedupe by id, once.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::backlog::Backlog;
use super::link::{ACK_TIMEOUT, Acked, Acks, Link, LinkError};
use super::state::{FloorState, StreamState};

/// First pause after a failed publish.
const RETRY_INITIAL: Duration = Duration::from_millis(200);
/// Longest pause between attempts (the client reconnects on its own meanwhile).
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Most events sent and not acknowledged yet.
pub const WINDOW: usize = 1024;
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
        sent_through: backlog.acked_through(),
        backlog,
        link,
        state,
        failures: 0,
        acks: None,
        inflight: VecDeque::new(),
        timer: Box::pin(tokio::time::sleep(ACK_TIMEOUT)),
    };
    tokio::select! {
        _ = p.publish_until(&stop) => {}
        _ = stop.cancelled() => {}
    }
    if !p.link.is_connected() {
        return;
    }
    let _ = tokio::time::timeout(DRAIN_AT_STOP, p.drain()).await;
}

/// An event sent and not acknowledged yet.
struct InFlight {
    seq: u64,
    sent: Instant,
    acked: bool,
}

struct Publisher {
    backlog: Arc<Backlog>,
    link: Link,
    state: Arc<FloorState>,
    failures: u32,
    /// The newest event handed to the connection in this round.
    sent_through: u64,
    /// Where the acknowledgements come in (subscribed at the first send).
    acks: Option<Acks>,
    /// Sent and not confirmed yet, oldest first.
    inflight: VecDeque<InFlight>,
    /// Fires at the latest when the oldest event in flight has waited [`ACK_TIMEOUT`] (one timer
    /// for all of them, moved only when it fires or the window was empty).
    timer: Pin<Box<Sleep>>,
}

impl Publisher {
    /// Never returns before `stop` (the caller's select ends it).
    async fn publish_until(&mut self, stop: &CancellationToken) {
        loop {
            if let Err(e) = self.step().await {
                self.failed(e);
                pause(self.failures, stop).await;
            }
        }
    }

    /// After a stop: tries at once (no backoff), until the backlog is empty or one attempt
    /// fails. It starts a round of its own: what was on its way when the stop came is sent
    /// again (the server drops what it already has), so no answer to an earlier attempt can
    /// end the drain.
    async fn drain(&mut self) {
        self.failures = 0;
        self.new_round();
        loop {
            if self.inflight.is_empty() && self.backlog.stats().events == 0 {
                return;
            }
            if let Err(e) = self.step().await {
                self.failed(e);
                return;
            }
        }
    }

    /// Sends what the window allows, then waits for acknowledgements, the oldest event's
    /// timeout, or events newly on disk (events still on their way to the disk included).
    async fn step(&mut self) -> Result<(), LinkError> {
        self.top_up().await?;
        let more_room = self.inflight.len() < self.window();
        let (Some(acks), false) = (self.acks.as_mut(), self.inflight.is_empty()) else {
            self.backlog.changed().await;
            return Ok(());
        };
        tokio::select! {
            a = acks.next() => match a {
                Some(a) => self.settle(a),
                None => {
                    self.acks = None;
                    Err(LinkError::Other("the connection to the floor bus is closed".into()))
                }
            },
            _ = self.timer.as_mut() => self.check_timeout(),
            _ = self.backlog.changed(), if more_room => Ok(()),
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
        let recs = self.backlog.durable_after(self.sent_through, room);
        if recs.is_empty() {
            return Ok(());
        }
        if self.acks.is_none() {
            self.acks = Some(self.link.acks().await?);
        }
        let Some(acks) = self.acks.as_ref() else {
            return Ok(());
        };
        let sent = Instant::now();
        if self.inflight.is_empty() {
            self.timer.as_mut().reset(sent + ACK_TIMEOUT);
        }
        for rec in recs {
            self.link
                .send(acks, rec.seq, rec.subject.clone(), &rec.id, rec.payload())
                .await?;
            self.sent_through = rec.seq;
            self.inflight.push_back(InFlight {
                seq: rec.seq,
                sent,
                acked: false,
            });
        }
        Ok(())
    }

    /// One acknowledgement, and every other one already in; what is acknowledged from the
    /// oldest on is confirmed together. An acknowledgement of an event not in flight is one
    /// sent before the last failure (same id): nothing to do.
    fn settle(&mut self, first: Acked) -> Result<(), LinkError> {
        let mut next = Some(first);
        let mut failure = None;
        while let Some((seq, r)) = next {
            if let Ok(i) = self.inflight.binary_search_by_key(&seq, |f| f.seq) {
                match r {
                    Ok(_) => self.inflight[i].acked = true,
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
            next = self.acks.as_mut().and_then(Acks::ready);
        }
        self.confirm();
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Confirms the events acknowledged from the oldest on.
    fn confirm(&mut self) {
        let mut through = None;
        let mut n = 0u64;
        while self.inflight.front().is_some_and(|f| f.acked) {
            through = self.inflight.pop_front().map(|f| f.seq);
            n += 1;
        }
        let Some(through) = through else {
            return;
        };
        if self.failures > 0 || self.state.stream() != StreamState::Present {
            tracing::info!("the floor bus takes events again");
        }
        self.failures = 0;
        self.backlog.confirm_through(through);
        self.state.published_many(n, now());
    }

    /// The timer fired: a timeout if the oldest event in flight has waited too long, else the
    /// timer moves to its deadline.
    fn check_timeout(&mut self) -> Result<(), LinkError> {
        let Some(front) = self.inflight.front() else {
            self.timer.as_mut().reset(Instant::now() + ACK_TIMEOUT);
            return Ok(());
        };
        let deadline = front.sent + ACK_TIMEOUT;
        if deadline <= Instant::now() {
            return Err(LinkError::Timeout(ACK_TIMEOUT));
        }
        self.timer.as_mut().reset(deadline);
        Ok(())
    }

    /// Everything not confirmed is to be sent again, from the oldest, with acknowledgements on
    /// a new subscription. The server answers every publish of the last round (a refusal for
    /// each when it has no stream), and an answer still on its way must never be read as one
    /// for the same event sent again.
    fn new_round(&mut self) {
        self.acks = None;
        self.inflight.clear();
        self.sent_through = self.backlog.acked_through();
    }

    /// An attempt failed: everything not confirmed is sent again, from the oldest.
    fn failed(&mut self, err: LinkError) {
        self.failures += 1;
        self.new_round();
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
