//! A durable, typed, on-disk queue: an item is written to disk (atomically) before its first
//! delivery attempt, retried with backoff and jitter (honouring `Retry-After`), delivered at
//! least once, kept in `failed/` when refused for good, and sent again at the next start if the
//! process stopped first. Receipts are kept for a while so records sealed later can cite them.
//!
//! Team-lead webhook pings use it today (`escalation::outbox`); each new user (a bus publisher,
//! an evidence archive uploader) gets its own folder and item type:
//!
//! 1. an item type implementing [`QueueItem`] (a stable `key`);
//! 2. a receiver implementing [`Deliver`] (one attempt → [`Outcome`]);
//! 3. `let (tx, rx) = queue::channel(DurableQueue::new(dir, SCHEMA));` and a supervised
//!    `queue::run(rx, receiver, policy, shutdown)`; producers call `tx.send(item)`.
//!
//! Status and health checks read the folder through [`DurableQueue::stats`] and
//! [`DurableQueue::entries_for`], never through paths of their own.

pub mod store;
pub mod worker;

pub use store::{DurableQueue, Entry, EntryState, QueueError, QueueItem, QueueStats};
pub use worker::{Deliver, Outcome, Receiver, RetryPolicy, Sender, channel, run};
