//! Where sealed evidence goes next: registered followers (an archive uploader, a ledger-anchoring
//! publisher) each get every sealed folder and every chained addendum through their own durable
//! queue, never through the lossy report broadcast.
//!
//! The hand-off happens under the ledger lock, right after the ledger line is written: the item
//! is stored in each follower's queue (`<data dir>/followers/<name>/pending/`) before the seal
//! returns. A crash between the ledger line and that write is repaired at the next start: every
//! ledger line after the follower's mark (`<data dir>/followers/<name>/offered`, the last `seq`
//! handed over) is offered again, once (an item is keyed by its ledger `seq`). A follower added
//! to an existing installation is offered the whole ledger once.
//!
//! Adding a follower: implement [`EvidenceFollower`] in its own module and add one line to
//! [`from_config`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::health::Check;
use crate::queue::{self, Deliver, DurableQueue, Entry, Outcome, QueueItem, RetryPolicy};

use super::ledger;

/// Schema tag of a follower's queue files.
pub const SCHEMA: &str = "callguard.sealed/1";
/// File holding the last ledger `seq` handed to a follower.
const OFFERED_FILE: &str = "offered";

/// What was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealedKind {
    /// A call folder (`manifest.json`, `manifest.sig`, `call.wav`, records).
    Folder,
    /// An addendum chained to a sealed folder (`addendum-<n>.json` and its signature).
    Addendum,
}

/// One sealed folder or chained addendum, as handed to followers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sealed {
    /// Folder or addendum.
    pub kind: SealedKind,
    /// PBX call id.
    pub call_id: String,
    /// The call folder (absolute).
    pub dir: PathBuf,
    /// The folder as the ledger names it (relative to the evidence root).
    pub rel: String,
    /// The addendum's file name (`addendum-<n>.json`), for an addendum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// SHA-256 of the addendum's bytes, for an addendum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
    /// The ledger line's `seq`.
    pub ledger_seq: u64,
    /// SHA-256 of the ledger line's bytes (what the next line's `prev` holds).
    pub ledger_line_sha256: String,
    /// SHA-256 of the folder's `manifest.json`.
    pub manifest_sha256: String,
    /// The call's harassment level at the seal, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    /// The ledger line's `at`.
    pub at: String,
}

impl QueueItem for Sealed {
    fn key(&self) -> String {
        format!("seq-{:010}", self.ledger_seq)
    }

    fn group(&self) -> &str {
        &self.call_id
    }
}

impl Sealed {
    /// The item for a ledger line (`line_sha256`: SHA-256 of the line's bytes) under `root`.
    pub fn from_ledger(root: &Path, e: &ledger::Entry, line_sha256: &str) -> Sealed {
        Sealed {
            kind: if e.is_addendum() {
                SealedKind::Addendum
            } else {
                SealedKind::Folder
            },
            call_id: e.call_id.clone(),
            dir: root.join(&e.dir),
            rel: e.dir.clone(),
            file: e.file.clone(),
            file_sha256: e.file_sha256.clone(),
            ledger_seq: e.seq,
            ledger_line_sha256: line_sha256.to_string(),
            manifest_sha256: e.manifest_sha256.clone(),
            level: None,
            at: e.at.clone(),
        }
    }
}

/// A receiver of sealed evidence.
pub trait EvidenceFollower: Send + Sync + 'static {
    /// Its name: the part name (`follower:<name>`) and its queue folder
    /// (`<data dir>/followers/<name>`); `[a-z0-9-]`.
    fn name(&self) -> &str;

    /// One attempt to take `item` (upload it, publish it, …).
    fn deliver<'a>(&'a self, item: &'a Sealed) -> BoxFuture<'a, Outcome>;

    /// Retry spacing and how long to keep trying.
    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            initial: std::time::Duration::from_secs(5),
            max: std::time::Duration::from_secs(600),
            retry_for: std::time::Duration::from_secs(30 * 24 * 3600),
        }
    }

    /// The doctor's rows for this follower.
    fn healthcheck(&self) -> BoxFuture<'_, Vec<Check>> {
        Box::pin(async { Vec::new() })
    }
}

/// The followers the configuration asks for. One line per follower.
pub fn from_config(cfg: &Config) -> Vec<Arc<dyn EvidenceFollower>> {
    let _ = cfg;
    #[allow(unused_mut)]
    let mut list: Vec<Arc<dyn EvidenceFollower>> = Vec::new();
    list
}

/// The queue folder of follower `name`.
pub fn queue_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("followers").join(name)
}

/// The durable queue of follower `name` (for status and health checks).
pub fn queue_of(data_dir: &Path, name: &str) -> DurableQueue<Sealed> {
    DurableQueue::new(queue_dir(data_dir, name), SCHEMA)
}

struct Target {
    name: String,
    tx: queue::Sender<Sealed>,
}

/// The sealing side's handle on every follower's queue. Empty (no followers) by default.
#[derive(Clone, Default)]
pub struct Handoff {
    targets: Arc<Vec<Target>>,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.targets.iter().map(|t| &t.name))
            .finish()
    }
}

fn now() -> chrono::DateTime<chrono::FixedOffset> {
    chrono::Local::now().fixed_offset()
}

impl Handoff {
    /// Whether any follower is registered.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Stores `item` in every follower's queue (on disk before this returns) and wakes its
    /// worker. Called under the ledger lock, right after the ledger line is written.
    pub fn offer(&self, item: &Sealed) {
        for t in self.targets.iter() {
            let q = t.tx.queue();
            match q.offer_once(item.clone(), now()) {
                Ok(Some(entry)) => t.tx.wake(entry),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(follower = %t.name, seq = item.ledger_seq, error = %e,
                        "cannot hand sealed evidence to its follower; it is offered again at the next start");
                    continue;
                }
            }
            if let Err(e) = write_offered(q.dir(), item.ledger_seq) {
                tracing::warn!(follower = %t.name, error = %e, "cannot record what was handed over");
            }
        }
    }

    /// Offers again every ledger line under `root` that a follower has not been handed yet
    /// (a crash between a ledger line and its hand-off). Run at start, after recovery.
    pub fn reoffer(&self, root: &Path) {
        if self.targets.is_empty() {
            return;
        }
        let text = match std::fs::read_to_string(root.join(super::layout::LEDGER_FILE)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the ledger to re-offer sealed evidence");
                return;
            }
        };
        let lines: Vec<(ledger::Entry, String)> = text
            .lines()
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                serde_json::from_str::<ledger::Entry>(l)
                    .ok()
                    .map(|e| (e, ledger::line_hash(l)))
            })
            .collect();
        for t in self.targets.iter() {
            let q = t.tx.queue();
            let mark = read_offered(q.dir());
            let mut offered = 0usize;
            let mut last = mark;
            for (e, sha) in lines.iter().filter(|(e, _)| mark.is_none_or(|m| e.seq > m)) {
                match q.offer_once(Sealed::from_ledger(root, e, sha), now()) {
                    Ok(Some(entry)) => {
                        offered += 1;
                        t.tx.wake(entry);
                    }
                    Ok(None) => {}
                    Err(err) => {
                        tracing::error!(follower = %t.name, seq = e.seq, error = %err,
                            "cannot hand sealed evidence to its follower");
                        break;
                    }
                }
                last = Some(e.seq);
            }
            if offered > 0 {
                tracing::info!(follower = %t.name, offered,
                    "sealed evidence not yet handed to its follower was offered again");
            }
            if last != mark
                && let Some(seq) = last
                && let Err(e) = write_offered(q.dir(), seq)
            {
                tracing::warn!(follower = %t.name, error = %e, "cannot record what was handed over");
            }
        }
    }
}

fn read_offered(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join(OFFERED_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn write_offered(dir: &Path, seq: u64) -> std::io::Result<()> {
    if read_offered(dir).is_some_and(|m| m >= seq) {
        return Ok(());
    }
    crate::fsutil::write_atomic(dir, OFFERED_FILE, format!("{seq}\n").as_bytes())
}

/// Delivers a follower's queue through the follower, logging how it goes.
struct Courier(Arc<dyn EvidenceFollower>);

impl Deliver<Sealed> for Courier {
    async fn deliver(&self, item: &Sealed) -> Outcome {
        self.0.deliver(item).await
    }

    fn on_delivered(&self, e: &Entry<Sealed>) {
        tracing::info!(follower = %self.0.name(), seq = e.item.ledger_seq, call_id = %e.item.call_id,
            receipt = e.receipt.as_deref().unwrap_or(""), "sealed evidence handed over");
    }

    fn on_retry(&self, e: &Entry<Sealed>, delay: std::time::Duration) {
        tracing::warn!(follower = %self.0.name(), seq = e.item.ledger_seq,
            error = e.last_error.as_deref().unwrap_or(""), retry_in_secs = delay.as_secs(),
            "sealed evidence not handed over yet; will retry");
    }

    fn on_failed(&self, e: &Entry<Sealed>) {
        tracing::error!(follower = %self.0.name(), seq = e.item.ledger_seq,
            reason = e.failed.as_deref().unwrap_or(""),
            "SEALED EVIDENCE NOT HANDED OVER: given up; it stays in the follower's failed folder");
    }
}

/// A follower's worker, to run as a supervised part named `part`.
pub struct Worker {
    /// `follower:<name>`.
    pub part: String,
    /// Delivers until shutdown.
    pub run: BoxFuture<'static, anyhow::Result<()>>,
}

/// Sets up every follower's queue under `data_dir`: the [`Handoff`] for the sealer and one
/// worker per follower.
pub fn start(
    followers: Vec<Arc<dyn EvidenceFollower>>,
    data_dir: &Path,
    shutdown: tokio_util::sync::CancellationToken,
) -> (Handoff, Vec<Worker>) {
    let mut targets = Vec::new();
    let mut workers = Vec::new();
    for f in followers {
        let name = f.name().to_string();
        let q = queue_of(data_dir, &name);
        if let Err(e) = q.create() {
            tracing::error!(follower = %name, error = %e, "cannot create the follower's queue");
        }
        let (tx, rx) = queue::channel(q);
        let policy = f.retry();
        let courier = Arc::new(Courier(f));
        let stop = shutdown.clone();
        workers.push(Worker {
            part: format!("follower:{name}"),
            run: Box::pin(async move {
                queue::run(rx, courier, policy, stop).await;
                Ok(())
            }),
        });
        targets.push(Target { name, tx });
    }
    (
        Handoff {
            targets: Arc::new(targets),
        },
        workers,
    )
}
