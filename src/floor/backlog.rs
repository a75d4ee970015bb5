//! The workstation's floor backlog: every event is on disk before anything tries to send it, and
//! leaves the backlog only when the server has acknowledged it.
//!
//! Unlike the webhook outbox (a handful of pings a day, one file each), the floor gets every
//! call's events and must keep their order, so the backlog is an append-only log with one
//! reader:
//!
//! ```text
//! <data dir>/floor-outbox/log/<first seq>.log   segments, one JSON line per event
//! <data dir>/floor-outbox/acked                 the highest sequence number the server took
//! ```
//!
//! - **Group commit.** [`Backlog::push`] only hands the line to a writer thread; the writer
//!   appends whatever arrived while its last write was on its way with one `write` and one
//!   `fdatasync`, and only then lets the publisher see those events ("on disk before the first
//!   attempt"). A flood of events costs one fsync per batch, not several per event.
//! - **Receipts without fsync.** The server acknowledges strictly in order, so one number says
//!   what was taken. It is written without fsync, with the next group commit (or at most
//!   `ACKED_SPACING` later when no events come): after a crash or a power cut the last few
//!   events may be sent again, with the same `Nats-Msg-Id`, and the server drops them
//!   (two-hour window), as does the floor's store (unique event ids). Nothing is lost.
//! - **Order.** Sequence numbers only grow, also across restarts; the publisher takes the
//!   events oldest first.
//! - **Bound.** Past `floor.max_backlog_mb` the oldest heartbeats are dropped (they only say
//!   "alive at …") until the backlog is back under 90 % of the bound, and the log is rewritten
//!   without them; a call event is never dropped. When only call events remain, they are kept
//!   over the bound and the log says so once.
//! - **A torn tail** (the process died in the middle of a write that was never confirmed) is
//!   dropped at the next start, and the log is rewritten clean. A segment with an unreadable
//!   line *before* its end (damage, not a crash) is copied to `floor-outbox/damaged/` first, so
//!   the rewrite never destroys the only copy of what could not be read.
//! - **Disk trouble.** When a group commit cannot be written (disk full, I/O error), its events
//!   are sent from memory all the same (the floor hearing about a call matters more than the
//!   copy on disk), `status` says the backlog is not on disk, and the writer rewrites the whole
//!   log from memory, at most every `REWRITE_RETRY`, until the disk takes it: the events of the
//!   failed commit are then on disk again before the error is cleared. A rewrite that fails
//!   leaves the previous segments as they were and no temp file behind.
//!
//! The events waiting are also kept in memory (the publisher never reads the disk back), so the
//! daemon's memory grows with the backlog, up to about `floor.max_backlog_mb`.
//!
//! Backlogs written by earlier versions (one JSON file per event under `pending/`) are taken up
//! at start, in order, and their files removed once the log holds them.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use async_nats::Subject;
use bytes::Bytes;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::contract::{EventKind, FloorEvent, write_time};
use crate::fsutil;
use crate::queue::{DurableQueue, QueueItem};

/// The folder of the log's segments, inside the backlog folder.
pub const LOG_DIR: &str = "log";
/// The file holding the highest sequence number the server acknowledged.
pub const ACKED_FILE: &str = "acked";
/// The `schema` of the backlog files of earlier versions (`pending/*.json`).
pub const QUEUE_SCHEMA: &str = "callguard.floor-outbox/1";
/// A segment takes new events until it is this large; older segments are deleted once every
/// event in them is acknowledged.
const SEGMENT_BYTES: u64 = 4 << 20;

/// Shortest time between two group commits while events keep coming. A flood then costs at most
/// one `fdatasync` per spacing instead of one per wake-up of the writer (each costs as much CPU
/// as publishing dozens of events), and a single event after a quiet spell is still written at
/// once. It only delays when an event becomes durable: nothing is sent before it is on disk.
/// During a stream of events each waits at most this long more to reach the floor, which no
/// lead watching the board can see (its target is 250 ms); per event, the commit and the
/// publisher's wake that follows it cost less the more events share them. A commit costs about
/// 0.4 ms of CPU (its `fdatasync` half of it); going from 50 to 100 ms took a sixth off the
/// floor's CPU in the ARI flood. The price: a `kill -9` or power cut during a flood can lose
/// up to this much of the floor's copy of the latest events.
const SYNC_SPACING: std::time::Duration = std::time::Duration::from_millis(100);

/// Longest time the `acked` file lags behind the server's acknowledgements when no events are
/// being written (it is written with every group commit otherwise). Nothing depends on it being
/// fresh: after a crash, events it does not cover yet are sent again with their ids and
/// dropped as duplicates.
const ACKED_SPACING: std::time::Duration = std::time::Duration::from_millis(100);

/// After a write that failed, how long before the writer tries again to put the whole log back
/// on disk (a disk that is full stays full for a while: no rewrite of up to
/// `floor.max_backlog_mb` every group commit).
const REWRITE_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a segment with damaged lines is copied before the log is rewritten without them.
pub const DAMAGED_DIR: &str = "damaged";

/// Why the backlog could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BacklogError {
    /// Disk trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The last write to disk failed: the event is kept in memory and sent, but would not
    /// survive a restart.
    #[error("the floor backlog cannot write to disk ({0}); events are sent from memory")]
    Disk(String),
    /// The backlog is closed (the daemon is stopping).
    #[error("the floor backlog is closed")]
    Closed,
    /// An event that cannot be put into JSON (never happens with the contract's types).
    #[error("cannot encode a floor event: {0}")]
    Encode(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BacklogError + '_ {
    move |source| BacklogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One event waiting for the server, as the publisher sends it.
#[derive(Debug)]
pub struct Pending {
    /// Position in the backlog (grows strictly, also across restarts).
    pub seq: u64,
    /// When it was queued.
    pub queued_at: DateTime<FixedOffset>,
    /// Its kind (heartbeats may be dropped past the bound).
    pub kind: EventKind,
    /// The subject it is published on (shared with every publish of it, never copied).
    pub subject: Subject,
    /// The event id, sent as `Nats-Msg-Id`.
    pub id: String,
    /// The event's JSON, as published (shared with the publish, never copied).
    pub event: Bytes,
}

impl Pending {
    /// The bytes published.
    pub fn payload(&self) -> Bytes {
        self.event.clone()
    }
}

/// The bytes of a JSON value already encoded (no copy).
fn json_bytes(raw: Box<RawValue>) -> Bytes {
    Bytes::from(Box::<str>::from(raw).into_boxed_bytes())
}

/// One line of a segment, as read back.
#[derive(Deserialize)]
struct LineIn {
    seq: u64,
    queued_at: DateTime<FixedOffset>,
    kind: EventKind,
    subject: String,
    id: String,
    event: Box<RawValue>,
}

fn encode_line(out: &mut Vec<u8>, p: &Pending) {
    // The fields of `LineIn`, written directly (one line per event of a flood). Strings:
    // writing to a Vec cannot fail. The event is already JSON: it goes in as it is, last,
    // instead of through the encoder again.
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(p.seq).as_bytes());
    out.extend_from_slice(b",\"queued_at\":\"");
    write_time(out, &p.queued_at);
    out.extend_from_slice(b"\",\"kind\":\"");
    out.extend_from_slice(p.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"subject\":");
    let _ = serde_json::to_writer(&mut *out, p.subject.as_str());
    out.extend_from_slice(b",\"id\":");
    let _ = serde_json::to_writer(&mut *out, &p.id);
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(&p.event);
    out.extend_from_slice(b"}\n");
}

/// An event file of earlier versions (`pending/<seq>-<kind>.json`), taken up at start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegacyItem {
    /// Position in the backlog.
    pub seq: u64,
    /// The subject.
    pub subject: String,
    /// The event.
    pub event: FloorEvent,
}

impl QueueItem for LegacyItem {
    fn key(&self) -> String {
        format!(
            "{:020}-{}",
            self.seq,
            self.event.kind().as_str().replace('.', "_")
        )
    }
}

#[derive(Debug)]
struct Slot {
    rec: Arc<Pending>,
    bytes: u64,
}

#[derive(Debug, Default)]
struct Index {
    /// Events not acknowledged yet, oldest first.
    slots: VecDeque<Slot>,
    /// Their size in the log.
    bytes: u64,
    next_seq: u64,
    /// Every event up to this one is on disk (or was given to the publisher from memory after
    /// a failed write).
    durable_through: u64,
    /// Every event up to this one was acknowledged by the server.
    acked_through: u64,
    /// Lines not written yet, and the sequence numbers they span.
    unwritten: Vec<u8>,
    unwritten_first: u64,
    unwritten_last: u64,
    /// The log should be rewritten from the slots (heartbeats dropped, torn tail, old files).
    compact: bool,
    closing: bool,
    /// The writer thread is waiting for work (else it looks again when done: no wake needed).
    writer_idle: bool,
    /// ... and for nothing else: no acknowledgement is waiting to be recorded either.
    writer_asleep: bool,
    dropped_heartbeats: u64,
    over_bound_warned: bool,
    disk_error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    index: Mutex<Index>,
    /// Wakes the writer thread.
    work: Condvar,
    /// Wakes the publisher: events became durable.
    durable: tokio::sync::Notify,
    max_bytes: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Index> {
        // The files on disk stay the truth; a panic elsewhere must not take the backlog down.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }
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
    /// Why the backlog's last write to disk failed: events waiting may be in memory only until
    /// the whole log is written again (cleared then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_on_disk: Option<String>,
}

/// The floor backlog. Shared by the sink (which pushes) and the publisher (which takes events
/// in order and confirms what the server took).
#[derive(Debug)]
pub struct Backlog {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

fn now() -> DateTime<FixedOffset> {
    chrono::Local::now().fixed_offset()
}

impl Backlog {
    /// Opens (and creates) the backlog in `dir`, taking up what a previous run left, and starts
    /// its writer thread.
    pub fn open(dir: PathBuf, max_bytes: u64) -> Result<Backlog, BacklogError> {
        let log_dir = dir.join(LOG_DIR);
        fsutil::create_private_dir(&log_dir).map_err(io_err(&log_dir))?;
        remove_stale_temp_files(&log_dir);
        let loaded = load(&dir)?;
        // The rewrite at start drops what could not be read: a copy is kept first, and
        // without one nothing is rewritten (the segment stays as it is).
        let kept = keep_damaged(&dir, &loaded.damaged);
        let mut index = Index {
            acked_through: loaded.acked,
            compact: loaded.needs_rewrite && kept,
            ..Index::default()
        };
        for rec in loaded.records {
            let mut line = Vec::new();
            encode_line(&mut line, &rec);
            index.bytes += line.len() as u64;
            index.durable_through = index.durable_through.max(rec.seq);
            index.slots.push_back(Slot {
                bytes: line.len() as u64,
                rec: Arc::new(rec),
            });
        }
        // The clock in microseconds keeps numbers growing even when the log was emptied.
        let micros = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or(0);
        index.next_seq = (loaded.max_seq + 1).max(micros);
        index.durable_through = index.durable_through.max(loaded.acked);
        let shared = Arc::new(Shared {
            index: Mutex::new(index),
            work: Condvar::new(),
            durable: tokio::sync::Notify::new(),
            max_bytes,
        });
        let files = Files {
            log_dir,
            acked_path: dir.join(ACKED_FILE),
            acked_file: None,
            segments: loaded.segments,
            active: None,
            acked_written: loaded.acked,
            legacy: loaded.legacy,
        };
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("floor-backlog".into())
            .spawn(move || write_loop(&writer_shared, files))
            .map_err(io_err(&dir))?;
        Ok(Backlog {
            shared,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Queues `event` for publishing on `subject`. The line goes to disk with the next group
    /// commit; the publisher sees the event only after that. Then keeps the backlog within its
    /// bound. An error says the event will be sent but is not safe on disk (or the backlog is
    /// closed).
    pub fn push(&self, subject: impl Into<Subject>, event: FloorEvent) -> Result<(), BacklogError> {
        self.push_at(subject, event, now())
    }

    /// [`Backlog::push`], queued at `queued_at` (a caller that has just read the clock saves
    /// reading it again for every event).
    pub fn push_at(
        &self,
        subject: impl Into<Subject>,
        event: FloorEvent,
        queued_at: DateTime<FixedOffset>,
    ) -> Result<(), BacklogError> {
        let json = Bytes::from(
            event
                .encode()
                .map_err(|e| BacklogError::Encode(e.to_string()))?,
        );
        let subject = subject.into();
        let kind = event.kind();
        let id = event.id;
        let mut guard = self.shared.lock();
        let ix = &mut *guard;
        if ix.closing {
            return Err(BacklogError::Closed);
        }
        let seq = ix.next_seq;
        ix.next_seq += 1;
        let rec = Pending {
            seq,
            queued_at,
            kind,
            subject,
            id,
            event: json,
        };
        let before = ix.unwritten.len();
        if before == 0 {
            ix.unwritten_first = seq;
        }
        encode_line(&mut ix.unwritten, &rec);
        let bytes = (ix.unwritten.len() - before) as u64;
        ix.unwritten_last = seq;
        ix.bytes += bytes;
        ix.slots.push_back(Slot {
            rec: Arc::new(rec),
            bytes,
        });
        self.enforce_bound(ix);
        let err = ix.disk_error.clone();
        // One wake per idle spell: the pushes of a batch that follow find it cleared and do
        // not call into the kernel again while the writer is on its way.
        let wake = std::mem::take(&mut ix.writer_idle);
        drop(guard);
        if wake {
            self.shared.work.notify_one();
        }
        match err {
            Some(e) => Err(BacklogError::Disk(e)),
            None => Ok(()),
        }
    }

    /// Drops the oldest heartbeats (never the newest event, never a call event) until the
    /// backlog is under 90 % of its bound, and has the log rewritten without them.
    fn enforce_bound(&self, ix: &mut Index) {
        let max = self.shared.max_bytes;
        if ix.bytes <= max {
            ix.over_bound_warned = false;
            return;
        }
        let target = max - max / 10;
        let mut excess = ix.bytes - target;
        let newest = ix.slots.back().map(|s| s.rec.seq);
        let mut freed = 0u64;
        let mut dropped = 0u64;
        ix.slots.retain(|s| {
            if excess > 0 && s.rec.kind.is_droppable() && Some(s.rec.seq) != newest {
                excess = excess.saturating_sub(s.bytes);
                freed += s.bytes;
                dropped += 1;
                false
            } else {
                true
            }
        });
        if dropped > 0 {
            ix.bytes -= freed;
            ix.dropped_heartbeats += dropped;
            ix.compact = true;
        }
        if ix.bytes > max && !ix.over_bound_warned {
            ix.over_bound_warned = true;
            tracing::warn!(
                bytes = ix.bytes,
                max_bytes = max,
                "the floor backlog is over floor.max_backlog_mb with call events only; they are kept"
            );
        }
    }

    /// Up to `max` events on disk and not acknowledged, after sequence number `after`, oldest
    /// first.
    pub fn durable_after(&self, after: u64, max: usize) -> Vec<Arc<Pending>> {
        let ix = self.shared.lock();
        let start = ix.slots.partition_point(|s| s.rec.seq <= after);
        ix.slots
            .range(start..)
            .take_while(|s| s.rec.seq <= ix.durable_through)
            .take(max)
            .map(|s| s.rec.clone())
            .collect()
    }

    /// The oldest event on disk not acknowledged yet.
    pub fn front(&self) -> Option<Arc<Pending>> {
        self.durable_after(0, 1).into_iter().next()
    }

    /// The server has every event up to `seq`: they leave the backlog.
    pub fn confirm_through(&self, seq: u64) {
        let mut ix = self.shared.lock();
        while ix.slots.front().is_some_and(|s| s.rec.seq <= seq) {
            if let Some(s) = ix.slots.pop_front() {
                ix.bytes = ix.bytes.saturating_sub(s.bytes);
            }
        }
        ix.acked_through = ix.acked_through.max(seq);
        // The writer records it with its next commit, or within ACKED_SPACING: it is woken
        // only when it sleeps with nothing to record (once per spacing at most, not per
        // confirmation).
        let wake = std::mem::take(&mut ix.writer_asleep);
        drop(ix);
        if wake {
            self.shared.work.notify_one();
        }
    }

    /// The highest sequence number the server acknowledged.
    pub fn acked_through(&self) -> u64 {
        self.shared.lock().acked_through
    }

    /// Waits until more events are on disk (returns at once if some became so since the last
    /// wait).
    pub async fn changed(&self) {
        self.shared.durable.notified().await;
    }

    /// Now, in numbers.
    pub fn stats(&self) -> BacklogStats {
        let ix = self.shared.lock();
        BacklogStats {
            events: ix.slots.len() as u64,
            bytes: ix.bytes,
            max_bytes: self.shared.max_bytes,
            dropped_heartbeats: ix.dropped_heartbeats,
            oldest: ix.slots.front().map(|s| s.rec.queued_at),
            not_on_disk: ix.disk_error.clone(),
        }
    }

    /// Writes what is still in memory, records the last acknowledgement, and stops the writer
    /// thread. Blocks for at most one write and fsync. Pushing afterwards is refused.
    pub fn close(&self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_one();
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!("the floor backlog's writer stopped with a panic");
        }
    }
}

impl Drop for Backlog {
    fn drop(&mut self) {
        self.close();
    }
}

/// The backlog as it is on disk, for `status` and `doctor` when no daemon runs (nothing is
/// changed).
pub fn disk_stats(dir: &Path, max_bytes: u64) -> BacklogStats {
    let Ok(loaded) = load(dir) else {
        return BacklogStats {
            max_bytes,
            ..BacklogStats::default()
        };
    };
    let mut bytes = 0u64;
    let mut line = Vec::new();
    for r in &loaded.records {
        line.clear();
        encode_line(&mut line, r);
        bytes += line.len() as u64;
    }
    BacklogStats {
        events: loaded.records.len() as u64,
        bytes,
        max_bytes,
        dropped_heartbeats: 0,
        oldest: loaded.records.iter().map(|r| r.queued_at).min(),
        not_on_disk: None,
    }
}

/// What [`load`] found on disk.
struct Loaded {
    acked: u64,
    max_seq: u64,
    /// Not acknowledged, oldest first, each once.
    records: Vec<Pending>,
    segments: Vec<Segment>,
    legacy: Vec<PathBuf>,
    needs_rewrite: bool,
    /// Segments with an unreadable line before their end (damage, not a write cut short).
    damaged: Vec<PathBuf>,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    last: u64,
}

fn read_acked(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads the log (and any files of earlier versions) without changing anything.
fn load(dir: &Path) -> Result<Loaded, BacklogError> {
    let acked = read_acked(&dir.join(ACKED_FILE));
    let log_dir = dir.join(LOG_DIR);
    let mut names: Vec<(u64, PathBuf)> = Vec::new();
    match std::fs::read_dir(&log_dir) {
        Ok(rd) => {
            for entry in rd.flatten() {
                let path = entry.path();
                let first = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".log"))
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(first) = first {
                    names.push((first, path));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&log_dir)(e)),
    }
    names.sort();
    let mut out = Loaded {
        acked,
        max_seq: acked,
        records: Vec::new(),
        segments: Vec::new(),
        legacy: Vec::new(),
        needs_rewrite: false,
        damaged: Vec::new(),
    };
    let mut bad = 0usize;
    let mut damaged = Vec::new();
    for (_, path) in names {
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let mut last = 0u64;
        let complete = bytes.len() - bytes.iter().rev().take_while(|b| **b != b'\n').count();
        if complete < bytes.len() {
            // A write that never finished: it was never confirmed, so never published.
            bad += 1;
        }
        for line in bytes[..complete].split(|b| *b == b'\n') {
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<LineIn>(line) {
                Ok(l) => {
                    last = last.max(l.seq);
                    out.max_seq = out.max_seq.max(l.seq);
                    if l.seq > acked {
                        out.records.push(Pending {
                            seq: l.seq,
                            queued_at: l.queued_at,
                            kind: l.kind,
                            subject: l.subject.into(),
                            id: l.id,
                            event: json_bytes(l.event),
                        });
                    }
                }
                Err(_) => {
                    bad += 1;
                    if damaged.last() != Some(&path) {
                        damaged.push(path.clone());
                    }
                }
            }
        }
        out.segments.push(Segment { path, last });
    }
    // Files of earlier versions: one JSON file per event.
    let legacy = DurableQueue::<LegacyItem>::new(dir.to_path_buf(), QUEUE_SCHEMA);
    let pending_dir = legacy.state_dir(crate::queue::EntryState::Pending);
    for r in legacy.pending() {
        match r {
            Ok(e) => {
                let item = e.item;
                out.legacy
                    .push(pending_dir.join(format!("{}.json", item.key())));
                out.max_seq = out.max_seq.max(item.seq);
                let Ok(event) = serde_json::value::to_raw_value(&item.event) else {
                    continue;
                };
                out.records.push(Pending {
                    seq: item.seq,
                    queued_at: e.created_at,
                    kind: item.event.kind(),
                    subject: item.subject.into(),
                    id: item.event.id,
                    event: json_bytes(event),
                });
            }
            Err(err) => {
                tracing::warn!(error = %err, "a floor backlog file of an earlier version cannot be read; it is kept as is")
            }
        }
    }
    let before = out.records.len();
    out.records.sort_by_key(|r| r.seq);
    out.records.dedup_by_key(|r| r.seq);
    if bad > 0 {
        tracing::warn!(
            lines = bad,
            "the floor backlog had unreadable or unfinished lines (a write cut short); they are dropped"
        );
    }
    out.needs_rewrite = bad > 0 || out.records.len() != before || !out.legacy.is_empty();
    out.damaged = damaged;
    Ok(out)
}

/// The writer thread's files.
struct Files {
    log_dir: PathBuf,
    acked_path: PathBuf,
    acked_file: Option<File>,
    /// Oldest first; the last one may be `active`.
    segments: Vec<Segment>,
    /// The segment taking new lines, and its length.
    active: Option<(File, u64)>,
    acked_written: u64,
    legacy: Vec<PathBuf>,
}

impl Files {
    /// Appends `buf` (lines `first..=last`) and fsyncs it.
    fn append(&mut self, buf: &[u8], first: u64, last: u64) -> io::Result<()> {
        let rotate = self
            .active
            .as_ref()
            .is_none_or(|(_, len)| *len >= SEGMENT_BYTES);
        let mut fresh = false;
        if rotate {
            let path = self.log_dir.join(format!("{first:020}.log"));
            let file = fsutil::create_private_file(&path)?;
            self.segments.push(Segment { path, last });
            self.active = Some((file, 0));
            fresh = true;
        }
        let Some((file, len)) = self.active.as_mut() else {
            return Err(io::Error::other("no segment to write to"));
        };
        let result = file.write_all(buf).and_then(|()| file.sync_data());
        match result {
            Ok(()) => {
                *len += buf.len() as u64;
                if let Some(seg) = self.segments.last_mut() {
                    seg.last = last;
                }
                if fresh {
                    fsutil::sync_dir(&self.log_dir)?;
                }
                Ok(())
            }
            Err(e) => {
                // Never leave half a line for the next batch to follow: cut it, or start a new
                // segment next time.
                if file.set_len(*len).is_err() {
                    self.active = None;
                }
                Err(e)
            }
        }
    }

    /// Rewrites the log as exactly `recs` (one new segment), then removes every other segment
    /// and the files of earlier versions.
    /// When it fails, the segments on disk are the ones there were (and are still followed).
    fn rewrite(&mut self, recs: &[Arc<Pending>]) -> io::Result<()> {
        self.active = None;
        let mut keep: Option<Segment> = None;
        if let (Some(first), Some(last)) = (recs.first(), recs.last()) {
            let name = format!("{:020}.log", first.seq);
            let mut buf = Vec::new();
            for r in recs {
                encode_line(&mut buf, r);
            }
            fsutil::write_atomic(&self.log_dir, &name, &buf)?;
            keep = Some(Segment {
                path: self.log_dir.join(name),
                last: last.seq,
            });
        }
        // Old segments that cannot be removed stay followed (and are removed once
        // acknowledged); the new one holds the same events and comes last.
        let old: Vec<Segment> = std::mem::take(&mut self.segments);
        let mut err = None;
        for seg in old {
            if keep.as_ref().is_some_and(|k| k.path == seg.path) {
                continue;
            }
            if let Err(e) = remove_if_present(&seg.path) {
                err = Some(e);
                self.segments.push(seg);
            }
        }
        self.segments.extend(keep);
        if let Some(e) = err {
            return Err(e);
        }
        for p in std::mem::take(&mut self.legacy) {
            fsutil::remove_durably(&p)?;
        }
        fsutil::sync_dir(&self.log_dir)
    }

    /// Records the last acknowledgement (no fsync: see the module's notes) and deletes the
    /// segments every event of which was acknowledged.
    fn acked(&mut self, seq: u64) -> io::Result<()> {
        if self.acked_file.is_none() {
            self.acked_file = Some(fsutil::create_private_file(&self.acked_path)?);
        }
        if let Some(file) = &self.acked_file {
            file.write_all_at(format!("{seq:020}\n").as_bytes(), 0)?;
        }
        self.acked_written = seq;
        let active = self.segments.len().saturating_sub(1);
        let has_active = self.active.is_some();
        let mut idx = 0;
        let mut err = None;
        self.segments.retain(|s| {
            let is_active = has_active && idx == active;
            idx += 1;
            if is_active || s.last > seq {
                return true;
            }
            match remove_if_present(&s.path) {
                Ok(()) => false,
                Err(e) => {
                    err = Some(e);
                    true
                }
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Removes the temp files of rewrites a previous run did not finish (they are never read: the
/// segment they were to become is written again whole).
fn remove_stale_temp_files(log_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(log_dir) else {
        return;
    };
    for path in rd.flatten().map(|e| e.path()) {
        let stale = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
        if stale && let Err(e) = std::fs::remove_file(&path) {
            tracing::warn!(error = %e, path = %path.display(), "cannot remove an unfinished floor backlog file");
        }
    }
}

/// Copies each damaged segment to `<dir>/damaged/<name>.<now in µs>`; whether every one is
/// kept.
fn keep_damaged(dir: &Path, damaged: &[PathBuf]) -> bool {
    if damaged.is_empty() {
        return true;
    }
    let to = dir.join(DAMAGED_DIR);
    let stamp = chrono::Utc::now().timestamp_micros();
    let mut all = true;
    for path in damaged {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("segment");
        let copy = fsutil::create_private_dir(&to)
            .and_then(|()| std::fs::read(path))
            .and_then(|bytes| fsutil::write_atomic(&to, &format!("{name}.{stamp}"), &bytes));
        match copy {
            Ok(()) => tracing::warn!(
                segment = %path.display(),
                copy = %to.join(format!("{name}.{stamp}")).display(),
                "a floor backlog segment has unreadable lines; a copy is kept and the log is rewritten without them"
            ),
            Err(e) => {
                all = false;
                tracing::error!(error = %e, segment = %path.display(), "a floor backlog segment has unreadable lines and no copy can be kept; it is left as it is");
            }
        }
    }
    all
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The writer thread: group commits, rewrites, receipts, until closed and everything written.
fn write_loop(shared: &Shared, mut files: Files) {
    let mut spare: Vec<u8> = Vec::new();
    let mut last_sync: Option<std::time::Instant> = None;
    // Set while the log on disk lacks events that are in memory (a write failed): when the
    // whole log is to be written again.
    let mut rewrite_due: Option<std::time::Instant> = None;
    loop {
        let mut ix = shared.lock();
        while ix.unwritten.is_empty() && !ix.compact && !ix.closing {
            let until_rewrite =
                rewrite_due.map(|t| t.saturating_duration_since(std::time::Instant::now()));
            if until_rewrite.is_some_and(|d| d.is_zero()) {
                break;
            }
            ix.writer_idle = true;
            if ix.acked_through == files.acked_written && until_rewrite.is_none() {
                ix.writer_asleep = true;
                ix = shared.work.wait(ix).unwrap_or_else(|p| p.into_inner());
                ix.writer_asleep = false;
            } else {
                let spacing = if ix.acked_through == files.acked_written {
                    None
                } else {
                    Some(ACKED_SPACING)
                };
                let wait = match (spacing, until_rewrite) {
                    (Some(a), Some(r)) => a.min(r),
                    (a, r) => a.or(r).unwrap_or(ACKED_SPACING),
                };
                let (guard, waited) = shared
                    .work
                    .wait_timeout(ix, wait)
                    .unwrap_or_else(|p| p.into_inner());
                ix = guard;
                if waited.timed_out() {
                    ix.writer_idle = false;
                    break;
                }
            }
            ix.writer_idle = false;
        }
        if !ix.unwritten.is_empty()
            && !ix.closing
            && let Some(wait) = last_sync.and_then(|t| SYNC_SPACING.checked_sub(t.elapsed()))
        {
            // Busy: let this commit gather what arrives meanwhile (pushes do not wake a
            // writer that is not idle).
            drop(ix);
            std::thread::sleep(wait);
            ix = shared.lock();
        }
        spare.clear();
        std::mem::swap(&mut spare, &mut ix.unwritten);
        let (first, last) = (ix.unwritten_first, ix.unwritten_last);
        let closing = ix.closing;
        drop(ix);

        if !spare.is_empty() {
            let result = files.append(&spare, first, last);
            last_sync = Some(std::time::Instant::now());
            let mut ix = shared.lock();
            ix.durable_through = ix.durable_through.max(last);
            match result {
                Ok(()) => {
                    if rewrite_due.is_none() {
                        ix.disk_error = None;
                    }
                }
                Err(e) => {
                    // Sent from memory all the same: the floor hearing about a call matters
                    // more than the copy on disk. The whole log is written again later, so
                    // these events are on disk again once the disk takes them.
                    if rewrite_due.is_none() {
                        tracing::error!(error = %e, dir = %files.log_dir.display(), "cannot write the floor backlog; events are sent from memory and written again when the disk takes them");
                        rewrite_due = Some(std::time::Instant::now() + REWRITE_RETRY);
                    }
                    ix.disk_error = Some(e.to_string());
                }
            }
            drop(ix);
            shared.durable.notify_one();
        }

        let mut ix = shared.lock();
        let retry = rewrite_due.is_some_and(|t| closing || t <= std::time::Instant::now());
        let rewrite = (std::mem::take(&mut ix.compact) || retry).then(|| {
            ix.slots
                .iter()
                .filter(|s| s.rec.seq <= ix.durable_through)
                .map(|s| s.rec.clone())
                .collect::<Vec<_>>()
        });
        let acked = ix.acked_through;
        drop(ix);
        if let Some(recs) = rewrite {
            match files.rewrite(&recs) {
                Ok(()) => {
                    if rewrite_due.take().is_some() {
                        tracing::info!(dir = %files.log_dir.display(), "the floor backlog is on disk again");
                        shared.lock().disk_error = None;
                    }
                }
                Err(e) => {
                    if rewrite_due.is_none() {
                        tracing::error!(error = %e, dir = %files.log_dir.display(), "cannot rewrite the floor backlog; tried again later");
                    }
                    rewrite_due = Some(std::time::Instant::now() + REWRITE_RETRY);
                    shared.lock().disk_error = Some(e.to_string());
                }
            }
        }
        if acked != files.acked_written
            && let Err(e) = files.acked(acked)
        {
            tracing::warn!(error = %e, "cannot record the floor's acknowledgement; events may be sent again (same ids, dropped by the server)");
            // Not again at once: the next acknowledgement tries again.
            files.acked_written = acked;
        }
        if closing {
            let ix = shared.lock();
            if ix.unwritten.is_empty() && !ix.compact {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::contract::time_text;
    use crate::floor::contract::{self, EventBody, PbxState};

    fn event(i: u64, kind: EventKind) -> FloorEvent {
        let body = match kind {
            EventKind::Heartbeat => EventBody::Heartbeat {
                pbx_state: PbxState::Up,
                pbx_detail: String::new(),
                open_calls: 0,
                version: "t".into(),
                interval_secs: 30,
                backlog: 0,
                up_since: None,
            },
            _ => EventBody::CallEnd {
                started_at: now(),
                duration_secs: i,
                cause: "normal".into(),
            },
        };
        FloorEvent {
            schema: contract::SCHEMA.into(),
            id: format!("ev-{i}"),
            site: "s".into(),
            host: "h".into(),
            agent: "1001".into(),
            agent_name: String::new(),
            call_id: Some(format!("c-{i}")),
            caller: Default::default(),
            at: now(),
            elapsed_secs: None,
            level: None,
            body,
        }
    }

    fn ids(b: &Backlog) -> Vec<String> {
        b.durable_after(0, usize::MAX)
            .iter()
            .map(|p| p.id.clone())
            .collect()
    }

    async fn wait_durable(b: &Backlog, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while b.durable_after(0, usize::MAX).len() < n {
            assert!(std::time::Instant::now() < deadline, "never on disk");
            tokio::time::timeout(std::time::Duration::from_millis(100), b.changed())
                .await
                .ok();
        }
    }

    #[tokio::test]
    async fn events_survive_a_restart_in_order_and_acknowledged_ones_do_not_come_back() {
        let dir = tempfile::tempdir().expect("dir");
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("open");
        for i in 0..5 {
            b.push(format!("subj.{i}"), event(i, EventKind::CallEnd))
                .expect("push");
        }
        wait_durable(&b, 5).await;
        let first_two = b.durable_after(0, 2);
        b.confirm_through(first_two[1].seq);
        drop(b);

        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("reopen");
        assert_eq!(ids(&b), vec!["ev-2", "ev-3", "ev-4"]);
        let front = b.front().expect("front");
        assert_eq!(front.subject.as_str(), "subj.2");
        let ev = FloorEvent::from_json(&front.payload()).expect("the payload is the event");
        assert_eq!(ev.id, "ev-2");
        // New numbers keep growing past the old ones.
        b.push("subj.5", event(5, EventKind::CallEnd))
            .expect("push");
        wait_durable(&b, 4).await;
        let all = b.durable_after(0, usize::MAX);
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
        b.confirm_through(all[3].seq);
        assert_eq!(b.stats().events, 0);
        drop(b);
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("reopen");
        assert_eq!(b.stats().events, 0);
        assert_eq!(disk_stats(dir.path(), 1).events, 0);
    }

    #[tokio::test]
    async fn each_events_queue_time_survives_a_restart_when_a_batch_shares_one() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).expect("time");
        let batch = at("2026-11-30T10:00:00.25+09:00");
        // The same instant in another offset is written in that offset, not the batch's.
        let same_instant_utc = batch.with_timezone(&chrono::Utc).fixed_offset();
        let later = at("2026-11-30T10:00:00.3+09:00");
        let times = [batch, batch, same_instant_utc, batch, later, later];
        let dir = tempfile::tempdir().expect("dir");
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("open");
        for (i, t) in times.iter().enumerate() {
            b.push_at("s", event(i as u64, EventKind::CallEnd), *t)
                .expect("push");
        }
        wait_durable(&b, times.len()).await;
        drop(b);
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("reopen");
        let back: Vec<String> = b
            .durable_after(0, usize::MAX)
            .iter()
            .map(|p| time_text(&p.queued_at))
            .collect();
        let want: Vec<String> = times.iter().map(time_text).collect();
        assert_eq!(back, want);
        assert_eq!(back[2], "2026-11-30T01:00:00.250Z");
        assert_eq!(back[0], "2026-11-30T10:00:00.250+09:00");
    }

    #[tokio::test]
    async fn a_torn_tail_is_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("open");
        for i in 0..3 {
            b.push("s", event(i, EventKind::CallEnd)).expect("push");
        }
        wait_durable(&b, 3).await;
        drop(b);
        let seg = std::fs::read_dir(dir.path().join(LOG_DIR))
            .expect("log")
            .flatten()
            .map(|e| e.path())
            .next()
            .expect("a segment");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .expect("open");
        f.write_all(b"{\"seq\":99999999999999999,\"queued")
            .expect("tear");
        drop(f);
        assert_eq!(disk_stats(dir.path(), 1 << 20).events, 3);
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("reopen");
        assert_eq!(ids(&b), vec!["ev-0", "ev-1", "ev-2"]);
        b.push("s", event(3, EventKind::CallEnd)).expect("push");
        wait_durable(&b, 4).await;
        drop(b);
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("reopen");
        assert_eq!(ids(&b), vec!["ev-0", "ev-1", "ev-2", "ev-3"]);
    }

    #[tokio::test]
    async fn past_the_bound_old_heartbeats_go_and_call_events_stay() {
        let dir = tempfile::tempdir().expect("dir");
        let mut probe = Vec::new();
        let one = Pending {
            seq: 1,
            queued_at: now(),
            kind: EventKind::Heartbeat,
            subject: "s".into(),
            id: "ev-0".into(),
            event: serde_json::to_vec(&event(0, EventKind::Heartbeat))
                .expect("json")
                .into(),
        };
        encode_line(&mut probe, &one);
        // Room for about ten events.
        let max = probe.len() as u64 * 10;
        let b = Backlog::open(dir.path().to_path_buf(), max).expect("open");
        for i in 0..10 {
            b.push("s", event(i, EventKind::Heartbeat)).expect("push");
        }
        for i in 10..15 {
            b.push("s", event(i, EventKind::CallEnd)).expect("push");
        }
        let st = b.stats();
        assert!(st.bytes <= max, "{st:?}");
        assert!(st.dropped_heartbeats >= 5, "{st:?}");
        wait_durable(&b, st.events as usize).await;
        let kept = ids(&b);
        for i in 10..15 {
            assert!(kept.contains(&format!("ev-{i}")), "{kept:?}");
        }
        // Only call events left: kept over the bound.
        for i in 15..40 {
            b.push("s", event(i, EventKind::CallEnd)).expect("push");
        }
        let st = b.stats();
        assert!(st.bytes > max);
        wait_durable(&b, st.events as usize).await;
        let kept_now = ids(&b);
        drop(b);
        // The disk holds what the memory holds: the dropped heartbeats are gone from it too.
        let on_disk = disk_stats(dir.path(), max);
        assert_eq!(on_disk.events as usize, kept_now.len());
        let b = Backlog::open(dir.path().to_path_buf(), max).expect("reopen");
        assert_eq!(ids(&b), kept_now);
    }

    #[tokio::test]
    async fn files_of_earlier_versions_are_taken_up_in_order() {
        let dir = tempfile::tempdir().expect("dir");
        let q = DurableQueue::<LegacyItem>::new(dir.path().to_path_buf(), QUEUE_SCHEMA);
        q.create().expect("create");
        for (seq, i) in [(7u64, 1u64), (5, 0)] {
            q.enqueue(
                LegacyItem {
                    seq,
                    subject: "old".into(),
                    event: event(i, EventKind::CallEnd),
                },
                now(),
            )
            .expect("old file");
        }
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("open");
        assert_eq!(ids(&b), vec!["ev-0", "ev-1"]);
        b.push("new", event(2, EventKind::CallEnd)).expect("push");
        wait_durable(&b, 3).await;
        drop(b);
        let left = std::fs::read_dir(dir.path().join("pending"))
            .expect("pending")
            .count();
        assert_eq!(left, 0, "old files removed once the log holds them");
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("reopen");
        assert_eq!(ids(&b), vec!["ev-0", "ev-1", "ev-2"]);
    }

    #[tokio::test]
    async fn commits_the_disk_refused_are_on_disk_again_once_it_takes_writes() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join(LOG_DIR);
        let away = dir.path().join("log.away");
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("open");
        // A file where the log's folder was: no segment can be created (a real I/O error).
        std::fs::rename(&log, &away).expect("move the log away");
        std::fs::write(&log, b"not a folder").expect("file in its place");
        for i in 0..3 {
            // Whether a push sees the error depends on when the last commit failed.
            let _ = b.push("s", event(i, EventKind::CallEnd));
        }
        // Sent from memory all the same, and said so.
        wait_durable(&b, 3).await;
        let not_on_disk = b.stats().not_on_disk;
        assert!(
            not_on_disk.is_some(),
            "status must say the backlog is not on disk"
        );
        assert!(matches!(
            b.push("s", event(3, EventKind::CallEnd)),
            Err(BacklogError::Disk(_))
        ));
        assert_eq!(disk_stats(dir.path(), 1 << 20).events, 0);

        // The disk takes writes again: every event is written, the failed commits' too.
        std::fs::remove_file(&log).expect("remove the file");
        std::fs::rename(&away, &log).expect("the log back");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while b.stats().not_on_disk.is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the log was never written again"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(disk_stats(dir.path(), 1 << 20).events, 4);
        let names: Vec<String> = std::fs::read_dir(&log)
            .expect("ls")
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        assert!(
            names.iter().all(|n| n.ends_with(".log")),
            "only segments in the log: {names:?}"
        );
        b.push("s", event(4, EventKind::CallEnd))
            .expect("the disk takes writes");
        wait_durable(&b, 5).await;
        drop(b);
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("reopen");
        assert_eq!(ids(&b), vec!["ev-0", "ev-1", "ev-2", "ev-3", "ev-4"]);
    }

    #[tokio::test]
    async fn a_damaged_line_is_dropped_only_after_a_copy_is_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("open");
        for i in 0..3 {
            b.push("s", event(i, EventKind::CallEnd)).expect("push");
        }
        wait_durable(&b, 3).await;
        drop(b);
        let log = dir.path().join(LOG_DIR);
        let seg = std::fs::read_dir(&log)
            .expect("log")
            .flatten()
            .map(|e| e.path())
            .next()
            .expect("a segment");
        let text = std::fs::read_to_string(&seg).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let damaged = format!("{}\n{{\"seq\":7,\"que#ed_at\n{}\n", lines[0], lines[2]);
        std::fs::write(&seg, &damaged).expect("damage");
        // And the temp file of a rewrite that never finished.
        let stale = log.join(".00000000000000000001.log.1-0.tmp");
        std::fs::write(&stale, b"half").expect("temp");

        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("reopen");
        assert_eq!(ids(&b), vec!["ev-0", "ev-2"]);
        assert!(
            !stale.exists(),
            "an unfinished rewrite's temp file is removed"
        );
        let copies: Vec<_> = std::fs::read_dir(dir.path().join(DAMAGED_DIR))
            .expect("the damaged folder")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(copies.len(), 1);
        assert_eq!(
            std::fs::read_to_string(&copies[0]).expect("copy"),
            damaged,
            "the copy is the segment as it was found"
        );
        drop(b);
        let on_disk: String = std::fs::read_dir(&log)
            .expect("log")
            .flatten()
            .map(|e| std::fs::read_to_string(e.path()).expect("read"))
            .collect();
        assert!(!on_disk.contains("que#ed"), "the log is rewritten clean");
        let b = Backlog::open(dir.path().to_path_buf(), 1 << 20).expect("reopen");
        assert_eq!(ids(&b), vec!["ev-0", "ev-2"]);
        assert_eq!(
            std::fs::read_dir(dir.path().join(DAMAGED_DIR))
                .expect("ls")
                .count(),
            1,
            "a clean log is not copied again"
        );
    }
}
