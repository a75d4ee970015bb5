//! Snoop channels: made with `POST /channels/{id}/snoop`, usable only once they have entered the
//! application. Asterisk answers the snoop request `200` *before* the snoop's `StasisStart`; a
//! record or play sent in between is refused with `409 Channel not in Stasis application` (about
//! one time in four on Asterisk 22.10.1) and nothing happens. So the work on a snoop waits for
//! its `StasisStart` (bounded), and that exact refusal is retried briefly in case the event was
//! missed (e.g. the events websocket was reconnecting).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::pbx::ari::rest::{Rest, RestError};

/// How long to wait for a snoop's `StasisStart` (it comes about 2 ms after the `200`).
pub(super) const STASIS_WAIT: Duration = Duration::from_secs(2);
/// Pauses between tries of an action refused with "not in Stasis": about 3 s in all.
const NOT_IN_STASIS_RETRIES: [Duration; 6] = [
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1600),
];

/// Snoops waiting for their `StasisStart`, shared by the event loop (which sees the events) and
/// the tasks doing REST work on the snoops.
#[derive(Debug, Clone, Default)]
pub(super) struct StasisGate {
    waiting: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
}

impl StasisGate {
    /// Registers interest in `channel_id` entering the application. Call it *before* asking
    /// for the snoop, so an event that comes before the REST answer is not missed.
    fn expect(&self, channel_id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.insert(channel_id.to_string(), tx);
        }
        rx
    }

    /// `StasisStart` of `channel_id` was seen.
    pub(super) fn entered(&self, channel_id: &str) {
        let waiter = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.remove(channel_id));
        if let Some(tx) = waiter {
            let _ = tx.send(());
        }
    }

    fn forget(&self, channel_id: &str) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(channel_id);
        }
    }
}

/// One snoop request: on which channel, how, under which id.
#[derive(Debug, Clone, Copy)]
pub(super) struct SnoopSpec<'a> {
    /// The agent channel.
    pub channel_id: &'a str,
    /// `both`, `in`, `out` or `none`.
    pub spy: &'a str,
    /// `both`, `in`, `out` or `none`.
    pub whisper: &'a str,
    /// The application the snoop enters.
    pub app: &'a str,
    /// The snoop's channel id.
    pub snoop_id: &'a str,
}

/// Makes the snoop and, once it is in the application, runs `act` on it. A snoop that already
/// exists (409 on the snoop request: set up by an earlier run) is taken as it is.
pub(super) async fn snoop_then<F, Fut>(
    rest: &Rest,
    gate: &StasisGate,
    spec: SnoopSpec<'_>,
    act: F,
) -> Result<(), RestError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), RestError>>,
{
    let entered = gate.expect(spec.snoop_id);
    let made = rest
        .snoop(
            spec.channel_id,
            spec.spy,
            spec.whisper,
            spec.app,
            spec.snoop_id,
        )
        .await;
    match made {
        Ok(()) => {
            if tokio::time::timeout(STASIS_WAIT, entered).await.is_err() {
                tracing::warn!(snoop = spec.snoop_id, wait = ?STASIS_WAIT,
                    "no StasisStart for the snoop; trying anyway");
            }
        }
        Err(RestError::Status { status: 409, .. }) => {
            tracing::info!(snoop = spec.snoop_id, "snoop already exists");
        }
        Err(e) => {
            gate.forget(spec.snoop_id);
            return Err(e);
        }
    }
    gate.forget(spec.snoop_id);
    let mut pauses = NOT_IN_STASIS_RETRIES.iter();
    loop {
        match act().await {
            Err(e) if e.is_not_in_stasis() => match pauses.next() {
                Some(pause) => {
                    tracing::info!(snoop = spec.snoop_id, retry_in = ?pause, "snoop not in the application yet");
                    tokio::time::sleep(*pause).await;
                }
                None => return Err(e),
            },
            other => return other,
        }
    }
}
