//! The workstation's floor backlog: every event is written to the project's durable queue
//! (`<data dir>/floor-outbox/pending/<seq>-<kind>.json`) before anything tries to send it, and
//! leaves it only when the server has acknowledged it. Unlike the webhook outbox, order matters
//! (a call's events must reach the floor in the order they happened), so one publisher takes
//! them strictly oldest first ([`Backlog::front`]), and the file names carry a sequence number
//! that only grows, also across restarts.
//!
//! The backlog is bounded on disk by `floor.max_backlog_mb`: past the bound the oldest
//! heartbeats are dropped (they only say "alive at …"), never a call event; when only call
//! events remain, they are kept over the bound and the log says so once.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::contract::{EventKind, FloorEvent};
use crate::queue::{DurableQueue, Entry, EntryState, QueueError, QueueItem};

/// The `schema` of the backlog's files.
pub const QUEUE_SCHEMA: &str = "callguard.floor-outbox/1";

/// One event waiting for the server: where it goes and what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusItem {
    /// Position in the backlog (grows strictly, also across restarts).
    pub seq: u64,
    /// The subject it is published on.
    pub subject: String,
    /// The event.
    pub event: FloorEvent,
}

impl QueueItem for BusItem {
    fn key(&self) -> String {
        // Zero-padded so that file names sort as the backlog's order.
        format!(
            "{:020}-{}",
            self.seq,
            self.event.kind().as_str().replace('.', "_")
        )
    }

    fn group(&self) -> &str {
        self.event.call_id.as_deref().unwrap_or("")
    }
}

#[derive(Debug, Clone)]
struct Slot {
    seq: u64,
    key: String,
    kind: EventKind,
    bytes: u64,
}

#[derive(Debug, Default)]
struct Index {
    slots: VecDeque<Slot>,
    bytes: u64,
    next_seq: u64,
    oldest: Option<DateTime<FixedOffset>>,
    dropped_heartbeats: u64,
    over_bound_warned: bool,
}

/// The backlog in numbers (for `status`, `doctor` and the heartbeat).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BacklogStats {
    /// Events waiting.
    pub events: u64,
    /// Their size on disk.
    pub bytes: u64,
    /// The bound (`floor.max_backlog_mb`).
    pub max_bytes: u64,
    /// Heartbeats dropped to stay within the bound since start.
    pub dropped_heartbeats: u64,
    /// When the oldest waiting event was queued.
    pub oldest: Option<DateTime<FixedOffset>>,
}

/// The floor backlog. Shared by the sink (which pushes) and the publisher (which takes the
/// front and confirms it).
#[derive(Debug)]
pub struct Backlog {
    queue: DurableQueue<BusItem>,
    index: Mutex<Index>,
    max_bytes: u64,
    wake: tokio::sync::Notify,
}

fn now() -> DateTime<FixedOffset> {
    chrono::Local::now().fixed_offset()
}

impl Backlog {
    /// Opens (and creates) the backlog in `dir`, taking up what a previous run left pending.
    pub fn open(dir: PathBuf, max_bytes: u64) -> Result<Backlog, QueueError> {
        let queue = DurableQueue::new(dir, QUEUE_SCHEMA);
        queue.create()?;
        let mut index = Index::default();
        let pending_dir = queue.state_dir(EntryState::Pending);
        let mut found: Vec<Entry<BusItem>> = Vec::new();
        for r in queue.pending() {
            match r {
                Ok(e) => found.push(e),
                Err(err) => {
                    tracing::warn!(error = %err, "a floor backlog file cannot be read; it is kept as is")
                }
            }
        }
        found.sort_by_key(|e| e.item.seq);
        for e in found {
            let key = e.item.key();
            let bytes = std::fs::metadata(pending_dir.join(e.file_name()))
                .map(|m| m.len())
                .unwrap_or(0);
            index.bytes += bytes;
            index.oldest = Some(index.oldest.map_or(e.created_at, |o| o.min(e.created_at)));
            index.next_seq = index.next_seq.max(e.item.seq + 1);
            index.slots.push_back(Slot {
                seq: e.item.seq,
                key,
                kind: e.item.event.kind(),
                bytes,
            });
        }
        // Past receipts count too, so a restart with an empty backlog never reuses a number;
        // the clock in microseconds keeps numbers growing even when receipts were pruned.
        let micros = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
        index.next_seq = index.next_seq.max(micros);
        Ok(Backlog {
            queue,
            index: Mutex::new(index),
            max_bytes,
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The durable queue underneath (its folder, stats).
    pub fn queue(&self) -> &DurableQueue<BusItem> {
        &self.queue
    }

    /// Stores `event` (on disk before this returns) for publishing on `subject`; then keeps the
    /// backlog within its bound.
    pub fn push(&self, subject: String, event: FloorEvent) -> Result<(), QueueError> {
        let kind = event.kind();
        let mut index = self.lock();
        let seq = index.next_seq;
        index.next_seq += 1;
        let item = BusItem {
            seq,
            subject,
            event,
        };
        let key = item.key();
        let entry = self.queue.enqueue(item, now())?;
        let bytes = std::fs::metadata(
            self.queue
                .state_dir(EntryState::Pending)
                .join(entry.file_name()),
        )
        .map(|m| m.len())
        .unwrap_or(0);
        index.bytes += bytes;
        if index.oldest.is_none() {
            index.oldest = Some(entry.created_at);
        }
        index.slots.push_back(Slot {
            seq,
            key,
            kind,
            bytes,
        });
        self.enforce_bound(&mut index);
        drop(index);
        self.wake.notify_one();
        Ok(())
    }

    /// Drops the oldest heartbeats (never the newest one, never a call event) until the backlog
    /// fits its bound.
    fn enforce_bound(&self, index: &mut Index) {
        if index.bytes <= self.max_bytes {
            index.over_bound_warned = false;
            return;
        }
        let last = index.slots.len().saturating_sub(1);
        let mut i = 0;
        while index.bytes > self.max_bytes && i < index.slots.len() {
            if index.slots[i].kind.is_droppable() && i != last {
                if let Some(slot) = index.slots.remove(i) {
                    let path = self
                        .queue
                        .state_dir(EntryState::Pending)
                        .join(format!("{}.json", slot.key));
                    if let Err(e) = crate::fsutil::remove_durably(&path) {
                        tracing::warn!(error = %e, path = %path.display(), "cannot drop a heartbeat from the floor backlog");
                    }
                    index.bytes = index.bytes.saturating_sub(slot.bytes);
                    index.dropped_heartbeats += 1;
                }
            } else {
                i += 1;
            }
        }
        if index.bytes > self.max_bytes && !index.over_bound_warned {
            index.over_bound_warned = true;
            tracing::warn!(
                bytes = index.bytes,
                max_bytes = self.max_bytes,
                "the floor backlog is over floor.max_backlog_mb with call events only; they are kept"
            );
        }
    }

    /// The oldest waiting event, read from disk; `None` when the backlog is empty. An unreadable
    /// file is moved out of the way (to `failed/`) and the next one is returned.
    pub fn front(&self) -> Option<Entry<BusItem>> {
        loop {
            let slot = self.lock().slots.front().cloned()?;
            let path = self
                .queue
                .state_dir(EntryState::Pending)
                .join(format!("{}.json", slot.key));
            match read_entry(&path) {
                Ok(e) => return Some(e),
                Err(err) => {
                    tracing::warn!(error = %err, path = %path.display(), "a floor backlog file cannot be read; set aside");
                    let failed = self
                        .queue
                        .state_dir(EntryState::Failed)
                        .join(format!("{}.json", slot.key));
                    let _ = std::fs::rename(&path, &failed);
                    self.forget(slot.seq);
                }
            }
        }
    }

    /// The server has the event: it leaves the backlog (a receipt is kept for a while).
    pub fn confirm(&self, entry: &mut Entry<BusItem>, receipt: String) -> Result<(), QueueError> {
        entry.delivered_at = Some(now());
        entry.attempts += 1;
        entry.receipt = Some(receipt);
        let result = self.queue.delivered(entry);
        self.forget(entry.item.seq);
        result
    }

    fn forget(&self, seq: u64) {
        let mut index = self.lock();
        if let Some(pos) = index.slots.iter().position(|s| s.seq == seq)
            && let Some(slot) = index.slots.remove(pos)
        {
            index.bytes = index.bytes.saturating_sub(slot.bytes);
        }
        if index.slots.is_empty() {
            index.oldest = None;
        }
    }

    /// Waits until something is pushed (returns at once if it already was since the last wait).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// Deletes receipts older than `keep`.
    pub fn prune(&self, keep: std::time::Duration) -> usize {
        self.queue.prune_delivered(keep, now())
    }

    /// Now, in numbers.
    pub fn stats(&self) -> BacklogStats {
        let index = self.lock();
        BacklogStats {
            events: index.slots.len() as u64,
            bytes: index.bytes,
            max_bytes: self.max_bytes,
            dropped_heartbeats: index.dropped_heartbeats,
            oldest: index.oldest,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic while holding the lock cannot leave the index half-updated in a way that
        // matters more than losing the daemon's view: the files on disk stay the truth.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read_entry(path: &std::path::Path) -> Result<Entry<BusItem>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let e: Entry<BusItem> = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if e.schema != QUEUE_SCHEMA {
        return Err(format!("unknown schema `{}`", e.schema));
    }
    Ok(e)
}
