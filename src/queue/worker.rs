//! The delivering side of a durable queue: every pending entry is tried until it is delivered,
//! refused for good, or too old; at-least-once, with exponential backoff and jitter, honouring
//! the receiver's `Retry-After`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::store::{DurableQueue, Entry, QueueError, QueueItem};

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The receiver took it; the receipt (an HTTP status, an object version, …) is kept.
    Delivered(String),
    /// Try again, after at least `after` when the receiver said so.
    Retry {
        /// `Retry-After`, when given.
        after: Option<Duration>,
        /// Why it did not go through.
        error: String,
    },
    /// The receiver refused it for good.
    Permanent(String),
}

/// A receiver of a queue's items. The hooks let the owner tell people what happened (logs,
/// reports); the queue has already stored the new state when they are called.
pub trait Deliver<T>: Send + Sync + 'static {
    /// One attempt to hand `item` over.
    fn deliver(&self, item: &T) -> impl Future<Output = Outcome> + Send;

    /// `entry` was delivered (its `receipt` is set).
    fn on_delivered(&self, entry: &Entry<T>) {
        let _ = entry;
    }

    /// `entry` was not delivered; the next attempt is in `delay`.
    fn on_retry(&self, entry: &Entry<T>, delay: Duration) {
        let _ = (entry, delay);
    }

    /// `entry` was given up (its `failed` says why); it stays in `failed/`.
    fn on_failed(&self, entry: &Entry<T>) {
        let _ = entry;
    }

    /// A pending entry found at start is being sent again.
    fn on_resend(&self, entry: &Entry<T>) {
        let _ = entry;
    }

    /// The queue's disk could not be written; delivery goes on from memory.
    fn on_store_error(&self, what: &str, err: &QueueError) {
        tracing::warn!(error = %err, "{what}");
    }
}

/// How retries are spaced and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Give up this long after the item was queued.
    pub retry_for: Duration,
}

impl RetryPolicy {
    /// Delay after the `attempts`-th failed attempt: `initial · 2^(attempts-1)`, capped at
    /// `max`, then scaled by a random factor in [0.5, 1] so a fleet of workstations does not
    /// hit a recovering receiver all at once.
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let raw = self.initial.saturating_mul(1u32 << exp).min(self.max);
        raw.mul_f64(0.5 + 0.5 * unit_random())
    }
}

fn unit_random() -> f64 {
    let mut buf = [0u8; 8];
    match getrandom::fill(&mut buf) {
        Ok(()) => (u64::from_le_bytes(buf) >> 11) as f64 / (1u64 << 53) as f64,
        // No randomness: no jitter, still correct.
        Err(_) => 1.0,
    }
}

fn now() -> DateTime<FixedOffset> {
    chrono::Local::now().fixed_offset()
}

/// The producing side of a running queue: stores an item, then wakes the worker.
#[derive(Debug)]
pub struct Sender<T> {
    queue: DurableQueue<T>,
    wake: mpsc::UnboundedSender<Entry<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            queue: self.queue.clone(),
            wake: self.wake.clone(),
        }
    }
}

/// The worker's side of [`channel`].
pub struct Receiver<T> {
    queue: DurableQueue<T>,
    rx: mpsc::UnboundedReceiver<Entry<T>>,
}

/// A sender and the receiver its [`run`] worker reads.
pub fn channel<T: QueueItem>(queue: DurableQueue<T>) -> (Sender<T>, Receiver<T>) {
    let (wake, rx) = mpsc::unbounded_channel();
    (
        Sender {
            queue: queue.clone(),
            wake,
        },
        Receiver { queue, rx },
    )
}

impl<T: QueueItem> Sender<T> {
    /// The queue.
    pub fn queue(&self) -> &DurableQueue<T> {
        &self.queue
    }

    /// Stores `item` (on disk before this returns), then hands it to the worker. When the disk
    /// cannot take it, the item is still handed over (delivered from memory) and the error is
    /// returned so the caller can say that it will not survive a restart.
    pub fn send(&self, item: T) -> Result<(), QueueError> {
        let (entry, stored) = match self.queue.enqueue(item.clone(), now()) {
            Ok(e) => (e, Ok(())),
            Err(err) => (self.queue.entry(item, now()), Err(err)),
        };
        // A stopped worker leaves the entry on disk for the next start.
        let _ = self.wake.send(entry);
        stored
    }

    /// Hands an entry that is already on disk to the worker (a re-offer after a crash).
    pub fn wake(&self, entry: Entry<T>) {
        let _ = self.wake.send(entry);
    }
}

/// Delivers the queue's entries until every [`Sender`] is gone or `stop` is cancelled: first
/// whatever a previous run left pending, then each new entry. In-flight attempts are abandoned
/// at the end; their entries stay pending on disk and are sent again at the next start.
pub async fn run<T, D>(
    rx: Receiver<T>,
    deliver: Arc<D>,
    policy: RetryPolicy,
    stop: CancellationToken,
) where
    T: QueueItem,
    D: Deliver<T>,
{
    let Receiver { queue, mut rx } = rx;
    let queue = Arc::new(queue);
    let stop = stop.child_token();
    let mut tasks = JoinSet::new();
    // An entry is tried by one task at a time: an item stored just before this worker's first
    // look at `pending/` arrives both ways.
    let mut in_flight: HashSet<String> = HashSet::new();
    let start = |e: Entry<T>, tasks: &mut JoinSet<String>, in_flight: &mut HashSet<String>| {
        let key = e.item.key();
        if in_flight.insert(key.clone()) {
            tasks.spawn(attempt_until_done(
                e,
                queue.clone(),
                deliver.clone(),
                policy,
                stop.clone(),
                key,
            ));
        }
    };
    for r in queue.pending() {
        match r {
            Ok(e) => {
                deliver.on_resend(&e);
                start(e, &mut tasks, &mut in_flight);
            }
            Err(err) => {
                deliver.on_store_error("a queue file cannot be read; it is kept as is", &err)
            }
        }
    }
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            e = rx.recv() => match e {
                Some(e) => start(e, &mut tasks, &mut in_flight),
                None => break,
            },
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(key) = done {
                    in_flight.remove(&key);
                }
            }
        }
    }
    stop.cancel();
    while tasks.join_next().await.is_some() {}
}

/// Tries `e` until it is delivered, refused, expired, or `stop` (then it stays pending on disk).
async fn attempt_until_done<T: QueueItem, D: Deliver<T>>(
    e: Entry<T>,
    queue: Arc<DurableQueue<T>>,
    deliver: Arc<D>,
    policy: RetryPolicy,
    stop: CancellationToken,
    key: String,
) -> String {
    attempt_loop(e, &queue, &*deliver, policy, &stop).await;
    key
}

async fn attempt_loop<T: QueueItem, D: Deliver<T>>(
    mut e: Entry<T>,
    queue: &DurableQueue<T>,
    deliver: &D,
    policy: RetryPolicy,
    stop: &CancellationToken,
) {
    let expires = e.created_at
        + chrono::Duration::from_std(policy.retry_for).unwrap_or(chrono::Duration::days(1));
    loop {
        if now() >= expires {
            let reason = format!(
                "gave up after {} of retries; last error: {}",
                humantime::format_duration(policy.retry_for),
                e.last_error.as_deref().unwrap_or("none")
            );
            give_up(&mut e, reason, queue, deliver);
            return;
        }
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            o = deliver.deliver(&e.item) => o,
        };
        e.attempts += 1;
        match outcome {
            Outcome::Delivered(receipt) => {
                e.delivered_at = Some(now());
                e.next_attempt_at = None;
                e.receipt = Some(receipt);
                if let Err(err) = queue.delivered(&e) {
                    deliver.on_store_error("a delivered item could not be moved out of the pending folder; it may be sent again after a restart (same key)", &err);
                }
                deliver.on_delivered(&e);
                return;
            }
            Outcome::Permanent(reason) => {
                give_up(&mut e, reason, queue, deliver);
                return;
            }
            Outcome::Retry { after, error } => {
                let backoff = policy.delay(e.attempts);
                // The receiver's Retry-After wins over our own spacing, but never shorter than
                // the first delay (a `Retry-After: 0` loop would hammer it).
                // Never past the retry window either: a `Retry-After` of a year still gets its
                // last attempt (and its failure report) when the window is up.
                let left = (expires - now()).to_std().unwrap_or_default();
                let delay = after
                    .map_or(backoff, |a| a.max(policy.initial))
                    .min(left.max(policy.initial));
                let next = now() + chrono::Duration::from_std(delay).unwrap_or_default();
                e.last_error = Some(error);
                e.next_attempt_at = Some(next);
                if let Err(err) = queue.save(&e) {
                    deliver.on_store_error("cannot update the queue entry", &err);
                }
                deliver.on_retry(&e, delay);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

fn give_up<T: QueueItem, D: Deliver<T>>(
    e: &mut Entry<T>,
    reason: String,
    queue: &DurableQueue<T>,
    deliver: &D,
) {
    e.failed = Some(reason);
    e.next_attempt_at = None;
    if let Err(err) = queue.fail(e) {
        deliver.on_store_error(
            "cannot move the failed item to the queue's failed folder",
            &err,
        );
    }
    deliver.on_failed(e);
}
