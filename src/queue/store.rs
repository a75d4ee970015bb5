//! The on-disk side of a durable queue: one JSON file per item, in one of three folders.
//!
//! ```text
//! <queue dir>/pending/<key>.json     waiting for delivery (written before the first attempt)
//! <queue dir>/failed/<key>.json      given up, kept for people to see
//! <queue dir>/delivered/<key>.json   receipts, pruned after a while
//! ```
//!
//! Each file is an [`Entry`]: the item's own fields and the queue's bookkeeping side by side in
//! one JSON object (the item is flattened into it), so the webhook outbox's files written before
//! the queue was generic load unchanged.

use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::fsutil;

/// What a durable queue carries.
pub trait QueueItem: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The item's file name stem, unique within its queue and stable across retries and
    /// restarts (`[A-Za-z0-9._-]` only). Offering an item whose key is already known is a no-op
    /// with [`DurableQueue::offer_once`].
    fn key(&self) -> String;

    /// What [`DurableQueue::entries_for`] selects on (a call id, a folder); empty = none.
    fn group(&self) -> &str {
        ""
    }
}

/// One item with its delivery bookkeeping, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry<T> {
    /// The queue's schema tag.
    pub schema: String,
    /// The item itself (its fields sit beside these in the file).
    #[serde(flatten)]
    pub item: T,
    /// When it was queued; retries stop `retry_for` after it.
    pub created_at: DateTime<FixedOffset>,
    /// Attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// Why the last attempt did not deliver.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When the next attempt is planned.
    #[serde(default)]
    pub next_attempt_at: Option<DateTime<FixedOffset>>,
    /// Set when given up: why.
    #[serde(default)]
    pub failed: Option<String>,
    /// When the receiver took it.
    #[serde(default)]
    pub delivered_at: Option<DateTime<FixedOffset>>,
    /// What the receiver answered when it took it (an HTTP status, an object version, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

impl<T: QueueItem> Entry<T> {
    /// The file name of this entry in any of the three folders.
    pub fn file_name(&self) -> String {
        format!("{}.json", self.item.key())
    }
}

/// Where an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryState {
    /// Waiting for delivery.
    Pending,
    /// Given up.
    Failed,
    /// Taken by the receiver (a receipt).
    Delivered,
}

/// A queue file that cannot be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Disk trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not an entry of this queue.
    #[error("{path}: not an outbox entry ({msg})")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A queue's state in numbers, for `status`, `doctor` and health checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct QueueStats {
    /// Folder.
    pub dir: String,
    /// Entries waiting.
    pub pending: usize,
    /// Entries given up.
    pub failed: usize,
    /// Receipts kept.
    pub delivered: usize,
    /// Bytes of the pending entries' files.
    pub pending_bytes: u64,
    /// When the oldest pending entry was queued.
    pub oldest_pending: Option<DateTime<FixedOffset>>,
    /// The most recent error of a pending entry (or failure reason), newest first.
    pub last_error: Option<String>,
    /// Files that could not be read.
    pub unreadable: usize,
}

/// A durable, typed, on-disk queue of `T` under one folder. Cheap to clone; every operation
/// reads or writes the disk, so the folder is the single source of truth (a restart, another
/// process, or `callguard status` see the same thing).
#[derive(Debug)]
pub struct DurableQueue<T> {
    dir: PathBuf,
    schema: String,
    _item: PhantomData<fn() -> T>,
}

impl<T> Clone for DurableQueue<T> {
    fn clone(&self) -> Self {
        DurableQueue {
            dir: self.dir.clone(),
            schema: self.schema.clone(),
            _item: PhantomData,
        }
    }
}

impl<T: QueueItem> DurableQueue<T> {
    /// The queue in `dir` whose files carry `schema`; nothing is created yet.
    pub fn new(dir: PathBuf, schema: &str) -> DurableQueue<T> {
        DurableQueue {
            dir,
            schema: schema.to_string(),
            _item: PhantomData,
        }
    }

    /// The queue's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The schema tag of its files.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Folder of one state.
    pub fn state_dir(&self, state: EntryState) -> PathBuf {
        self.dir.join(match state {
            EntryState::Pending => "pending",
            EntryState::Failed => "failed",
            EntryState::Delivered => "delivered",
        })
    }

    /// Creates the folders (0700).
    pub fn create(&self) -> Result<(), QueueError> {
        for s in [
            EntryState::Pending,
            EntryState::Failed,
            EntryState::Delivered,
        ] {
            let d = self.state_dir(s);
            fsutil::create_private_dir(&d).map_err(io_err(&d))?;
        }
        Ok(())
    }

    /// A fresh entry for `item`, not stored yet.
    pub fn entry(&self, item: T, now: DateTime<FixedOffset>) -> Entry<T> {
        Entry {
            schema: self.schema.clone(),
            item,
            created_at: now,
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            failed: None,
            delivered_at: None,
            receipt: None,
        }
    }

    /// Stores `item` as pending; returns once it is on disk.
    pub fn enqueue(&self, item: T, now: DateTime<FixedOffset>) -> Result<Entry<T>, QueueError> {
        let e = self.entry(item, now);
        self.save(&e)?;
        Ok(e)
    }

    /// Like [`enqueue`](Self::enqueue), unless an entry with the same key is already pending,
    /// failed or delivered: then `None` (re-offering after a crash never doubles an item).
    pub fn offer_once(
        &self,
        item: T,
        now: DateTime<FixedOffset>,
    ) -> Result<Option<Entry<T>>, QueueError> {
        let name = format!("{}.json", item.key());
        let known = [
            EntryState::Pending,
            EntryState::Failed,
            EntryState::Delivered,
        ]
        .into_iter()
        .any(|s| self.state_dir(s).join(&name).exists());
        if known {
            return Ok(None);
        }
        self.enqueue(item, now).map(Some)
    }

    /// Stores a new or updated pending entry; returns once it is on disk.
    pub fn save(&self, e: &Entry<T>) -> Result<(), QueueError> {
        self.write(EntryState::Pending, e)
    }

    /// Turns a pending entry into a receipt (written there first, so it is never in neither
    /// place).
    pub fn delivered(&self, e: &Entry<T>) -> Result<(), QueueError> {
        self.write(EntryState::Delivered, e)?;
        self.remove_pending(e)
    }

    /// Moves an entry to `failed/` (written there first, so it is never in neither place).
    pub fn fail(&self, e: &Entry<T>) -> Result<(), QueueError> {
        self.write(EntryState::Failed, e)?;
        self.remove_pending(e)
    }

    fn remove_pending(&self, e: &Entry<T>) -> Result<(), QueueError> {
        let path = self.state_dir(EntryState::Pending).join(e.file_name());
        fsutil::remove_durably(&path).map_err(io_err(&path))
    }

    fn write(&self, state: EntryState, e: &Entry<T>) -> Result<(), QueueError> {
        let dir = self.state_dir(state);
        let path = dir.join(e.file_name());
        let bytes = serde_json::to_vec_pretty(e).map_err(|err| QueueError::Corrupt {
            path: path.clone(),
            msg: err.to_string(),
        })?;
        fsutil::write_atomic(&dir, &e.file_name(), &bytes).map_err(io_err(&path))
    }

    /// Every entry in one state, unreadable files as errors (left where they are, for people
    /// to look at). Pending entries come oldest first.
    pub fn read(&self, state: EntryState) -> Vec<Result<Entry<T>, QueueError>> {
        let mut out = self.read_dir(&self.state_dir(state));
        out.sort_by_key(|r| r.as_ref().map(|e| e.created_at).ok());
        out
    }

    /// Every pending entry, oldest first.
    pub fn pending(&self) -> Vec<Result<Entry<T>, QueueError>> {
        self.read(EntryState::Pending)
    }

    /// Every entry whose item's [`group`](QueueItem::group) is `group`, with its state; an
    /// entry caught between two folders (mid-move) counts once, in its later state.
    pub fn entries_for(&self, group: &str) -> Vec<(EntryState, Entry<T>)> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for s in [
            EntryState::Delivered,
            EntryState::Failed,
            EntryState::Pending,
        ] {
            for e in self.read(s).into_iter().filter_map(Result::ok) {
                if e.item.group() == group && seen.insert(e.file_name()) {
                    out.push((s, e));
                }
            }
        }
        out
    }

    /// Deletes receipts older than `keep`; returns how many.
    pub fn prune_delivered(&self, keep: std::time::Duration, now: DateTime<FixedOffset>) -> usize {
        let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(7));
        let dir = self.state_dir(EntryState::Delivered);
        let mut n = 0;
        for e in self.read_dir(&dir).into_iter().filter_map(Result::ok) {
            if e.delivered_at.unwrap_or(e.created_at) + keep < now
                && std::fs::remove_file(dir.join(e.file_name())).is_ok()
            {
                n += 1;
            }
        }
        n
    }

    /// The queue in numbers, read from disk.
    pub fn stats(&self) -> QueueStats {
        let mut st = QueueStats {
            dir: self.dir.display().to_string(),
            ..QueueStats::default()
        };
        let mut newest_error: Option<(DateTime<FixedOffset>, String)> = None;
        let failed_names: std::collections::HashSet<String> = self
            .read(EntryState::Failed)
            .into_iter()
            .filter_map(|r| match r {
                Ok(e) => Some(e),
                Err(_) => {
                    st.unreadable += 1;
                    None
                }
            })
            .map(|e| {
                st.failed += 1;
                if let Some(why) = e.failed.clone() {
                    let at = e.next_attempt_at.unwrap_or(e.created_at);
                    if newest_error.as_ref().is_none_or(|(t, _)| at > *t) {
                        newest_error = Some((at, why));
                    }
                }
                e.file_name()
            })
            .collect();
        let pending_dir = self.state_dir(EntryState::Pending);
        for r in self.pending() {
            match r {
                // Caught between the two steps of `fail`: it is failed.
                Ok(e) if failed_names.contains(&e.file_name()) => {}
                Ok(e) => {
                    st.pending += 1;
                    st.pending_bytes += std::fs::metadata(pending_dir.join(e.file_name()))
                        .map(|m| m.len())
                        .unwrap_or(0);
                    if st.oldest_pending.is_none_or(|t| e.created_at < t) {
                        st.oldest_pending = Some(e.created_at);
                    }
                    if let Some(err) = e.last_error.clone() {
                        let at = e.next_attempt_at.unwrap_or(e.created_at);
                        if newest_error.as_ref().is_none_or(|(t, _)| at > *t) {
                            newest_error = Some((at, err));
                        }
                    }
                }
                Err(_) => st.unreadable += 1,
            }
        }
        st.delivered = self
            .read(EntryState::Delivered)
            .iter()
            .filter(|r| r.is_ok())
            .count();
        st.last_error = newest_error.map(|(_, e)| e);
        st
    }

    fn read_dir(&self, dir: &Path) -> Vec<Result<Entry<T>, QueueError>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => return vec![Err(io_err(dir)(e))],
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = match entry {
                Ok(e) => e.path(),
                Err(e) => {
                    out.push(Err(io_err(dir)(e)));
                    continue;
                }
            };
            let is_entry = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'));
            if is_entry {
                out.push(self.read_one(&path));
            }
        }
        out
    }

    fn read_one(&self, path: &Path) -> Result<Entry<T>, QueueError> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let e: Entry<T> = serde_json::from_slice(&bytes).map_err(|err| QueueError::Corrupt {
            path: path.to_path_buf(),
            msg: err.to_string(),
        })?;
        if e.schema != self.schema {
            return Err(QueueError::Corrupt {
                path: path.to_path_buf(),
                msg: format!("unknown schema `{}`", e.schema),
            });
        }
        Ok(e)
    }
}
