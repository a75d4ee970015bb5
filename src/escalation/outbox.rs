//! The team-lead ping outbox: a [`DurableQueue`] of [`Delivery`] items, one per (ping,
//! receiver), written before the first send attempt and kept as receipts or failures.
//!
//! ```text
//! <data dir>/outbox/pending/<ping id>-<receiver>.json
//! <data dir>/outbox/failed/<ping id>-<receiver>.json
//! <data dir>/outbox/delivered/<ping id>-<receiver>.json   (receipts, kept DELIVERED_KEEP)
//! ```

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, WebhookFormat};
use crate::queue::{DurableQueue, EntryState, QueueItem};

pub use crate::queue::QueueError as OutboxError;

/// Schema tag of an outbox file.
pub const SCHEMA: &str = "callguard.outbox/1";
/// How long delivery receipts are kept (for the incident record sealed at the call's end).
pub const DELIVERED_KEEP: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// One ping on its way to one receiver (the item; its delivery bookkeeping is in [`Entry`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    /// The ping's id, sent as `Idempotency-Key`.
    pub ping_id: String,
    /// `escalate`, `terminate`, `manual`, `mark` or `problem`.
    pub kind: String,
    /// The call, if any.
    pub call_id: String,
    /// Receiver.
    pub url: String,
    /// Body format (already rendered into `body`).
    pub format: WebhookFormat,
    /// File with the HMAC key, read at each attempt; empty = unsigned.
    pub secret_file: String,
    /// The exact bytes sent, every time.
    pub body: String,
    /// What the ping answers in the call's incident record (see
    /// [`EscalationReason`](crate::escalation::EscalationReason)).
    #[serde(default)]
    pub reasons: Vec<String>,
}

impl QueueItem for Delivery {
    /// The ping id plus a short hash of the receiver, so one ping to several receivers has one
    /// file each.
    fn key(&self) -> String {
        let digest = Sha256::digest(self.url.as_bytes());
        format!("{}-{}", self.ping_id, &hex::encode(digest)[..8])
    }

    fn group(&self) -> &str {
        &self.call_id
    }
}

/// A stored ping with its delivery state.
pub type Entry = crate::queue::Entry<Delivery>;

/// Where the outbox lives for `cfg`.
pub fn dir(cfg: &Config) -> PathBuf {
    cfg.data_dir().join("outbox")
}

/// The outbox of `cfg` (nothing is created).
pub fn of(cfg: &Config) -> Outbox {
    Outbox::new(dir(cfg))
}

/// The outbox of a data directory (nothing is created).
pub fn in_data_dir(data_dir: &Path) -> Outbox {
    Outbox::new(data_dir.join("outbox"))
}

/// The outbox folder.
#[derive(Debug, Clone)]
pub struct Outbox {
    queue: DurableQueue<Delivery>,
}

/// One entry as `callguard status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EntryStatus {
    /// Ping id.
    pub ping_id: String,
    /// Ping kind.
    pub kind: String,
    /// Call id.
    pub call_id: String,
    /// Receiver, with any secret path masked.
    pub receiver: String,
    /// When raised.
    pub created_at: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Last error (pending) or why it was given up (failed).
    pub error: Option<String>,
    /// Next attempt (pending).
    pub next_attempt_at: Option<String>,
}

/// The outbox as `callguard status` shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OutboxStatus {
    /// Folder.
    pub dir: String,
    /// Waiting for delivery.
    pub pending: Vec<EntryStatus>,
    /// Given up.
    pub failed: Vec<EntryStatus>,
    /// Files that could not be read.
    pub unreadable: Vec<String>,
}

impl Outbox {
    /// The outbox under `dir` (usually `<data dir>/outbox`); nothing is created yet.
    pub fn new(dir: PathBuf) -> Outbox {
        Outbox {
            queue: DurableQueue::new(dir, SCHEMA),
        }
    }

    /// The generic queue underneath.
    pub fn queue(&self) -> &DurableQueue<Delivery> {
        &self.queue
    }

    /// Folder of pings waiting for delivery.
    pub fn pending_dir(&self) -> PathBuf {
        self.queue.state_dir(EntryState::Pending)
    }

    /// Folder of pings given up.
    pub fn failed_dir(&self) -> PathBuf {
        self.queue.state_dir(EntryState::Failed)
    }

    /// Folder of delivery receipts.
    pub fn delivered_dir(&self) -> PathBuf {
        self.queue.state_dir(EntryState::Delivered)
    }

    /// Creates the folders (0700).
    pub fn create(&self) -> Result<(), OutboxError> {
        self.queue.create()
    }

    /// Stores a new or updated pending delivery; returns once it is on disk.
    pub fn save(&self, d: &Entry) -> Result<(), OutboxError> {
        self.queue.save(d)
    }

    /// Turns a pending entry into a delivery receipt (`delivered/`).
    pub fn delivered(&self, d: &Entry) -> Result<(), OutboxError> {
        self.queue.delivered(d)
    }

    /// Moves an entry to `failed/` (written there first, so it is never in neither place).
    pub fn fail(&self, d: &Entry) -> Result<(), OutboxError> {
        self.queue.fail(d)
    }

    /// Deletes receipts older than `keep`; returns how many.
    pub fn prune_delivered(&self, keep: std::time::Duration, now: DateTime<FixedOffset>) -> usize {
        self.queue.prune_delivered(keep, now)
    }

    /// Every pending delivery, oldest first; unreadable files are returned as errors (and left
    /// where they are, for people to look at).
    pub fn pending(&self) -> Vec<Result<Entry, OutboxError>> {
        self.queue.pending()
    }

    /// What the outbox knows of the pings of `call_id`: for each incident-record reason, its
    /// state at every receiver (`delivered <time>`, `failed: <why>`, `queued (<n> attempts)`).
    pub fn call_deliveries(&self, call_id: &str) -> Vec<(String, String)> {
        let mut by_reason: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (state, d) in self.queue.entries_for(call_id) {
            let text = match state {
                EntryState::Delivered => format!(
                    "delivered {}",
                    d.delivered_at.unwrap_or(d.created_at).to_rfc3339()
                ),
                EntryState::Failed => {
                    format!("failed: {}", d.failed.as_deref().unwrap_or("unknown"))
                }
                EntryState::Pending => match &d.last_error {
                    Some(e) => format!("queued ({} attempts; last: {e})", d.attempts),
                    None => "queued".to_string(),
                },
            };
            for r in &d.item.reasons {
                by_reason.entry(r.clone()).or_default().push(text.clone());
            }
        }
        by_reason
            .into_iter()
            .map(|(reason, states)| (reason, states.join("; ")))
            .collect()
    }

    /// The state of the outbox, read from disk.
    pub fn status(&self) -> OutboxStatus {
        let mut st = OutboxStatus {
            dir: self.queue.dir().display().to_string(),
            ..OutboxStatus::default()
        };
        let failed_ids: std::collections::HashSet<String> = self
            .queue
            .read(EntryState::Failed)
            .into_iter()
            .filter_map(Result::ok)
            .map(|d| d.file_name())
            .collect();
        for (state, failed) in [(EntryState::Pending, false), (EntryState::Failed, true)] {
            for r in self.queue.read(state) {
                match r {
                    // Caught between the two steps of `fail`: it is failed.
                    Ok(d) if !failed && failed_ids.contains(&d.file_name()) => {}
                    Ok(d) => {
                        let e = EntryStatus {
                            ping_id: d.item.ping_id.clone(),
                            kind: d.item.kind.clone(),
                            call_id: d.item.call_id.clone(),
                            receiver: crate::config::mask_url(&d.item.url),
                            created_at: d.created_at.to_rfc3339(),
                            attempts: d.attempts,
                            error: if failed {
                                d.failed.clone().or(d.last_error.clone())
                            } else {
                                d.last_error.clone()
                            },
                            next_attempt_at: d.next_attempt_at.map(|t| t.to_rfc3339()),
                        };
                        if failed {
                            st.failed.push(e);
                        } else {
                            st.pending.push(e);
                        }
                    }
                    Err(e) => st.unreadable.push(e.to_string()),
                }
            }
        }
        st.pending.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        st.failed.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str) -> Entry {
        Outbox::new(PathBuf::new()).queue().entry(
            Delivery {
                ping_id: id.into(),
                kind: "manual".into(),
                call_id: "c-1".into(),
                url: "http://127.0.0.1:9/hook".into(),
                format: WebhookFormat::Json,
                secret_file: String::new(),
                body: "{}".into(),
                reasons: vec!["manual".into()],
            },
            DateTime::parse_from_rfc3339("2026-11-22T10:00:00+09:00").unwrap(),
        )
    }

    /// An outbox file as the webhook outbox wrote it before the queue was generic.
    #[test]
    fn files_of_the_previous_format_load() {
        let tmp = tempfile::tempdir().unwrap();
        let ob = Outbox::new(tmp.path().join("outbox"));
        ob.create().unwrap();
        let old = r#"{
  "schema": "callguard.outbox/1",
  "ping_id": "p1",
  "kind": "escalate",
  "call_id": "c-9",
  "url": "http://127.0.0.1:9/hook",
  "format": "json",
  "secret_file": "",
  "body": "{}",
  "created_at": "2026-11-22T10:00:00+09:00",
  "attempts": 2,
  "last_error": "HTTP 503",
  "next_attempt_at": "2026-11-22T10:00:04+09:00",
  "failed": null,
  "reasons": ["warning:escalate after 900 s"],
  "delivered_at": null
}"#;
        std::fs::write(ob.pending_dir().join("p1-00000000.json"), old).unwrap();
        let pending = ob.pending();
        let e = pending[0].as_ref().unwrap();
        assert_eq!(e.item.ping_id, "p1");
        assert_eq!(e.attempts, 2);
        assert_eq!(e.last_error.as_deref(), Some("HTTP 503"));
        assert_eq!(e.item.reasons, vec!["warning:escalate after 900 s"]);
        // Written back, it keeps every field of the old format.
        let v: serde_json::Value = serde_json::to_value(e).unwrap();
        let old: serde_json::Value = serde_json::from_str(old).unwrap();
        for (k, _) in old.as_object().unwrap() {
            assert!(v.get(k).is_some(), "field {k} lost");
        }
    }

    #[test]
    fn save_fail_deliver_and_unreadable_files() {
        let tmp = tempfile::tempdir().unwrap();
        let ob = Outbox::new(tmp.path().join("outbox"));
        ob.create().unwrap();
        let a = delivery("a");
        let mut b = delivery("b");
        ob.save(&a).unwrap();
        ob.save(&b).unwrap();
        std::fs::write(ob.pending_dir().join("junk.json"), b"{").unwrap();
        let pending = ob.pending();
        assert_eq!(pending.iter().filter(|r| r.is_ok()).count(), 2);
        assert_eq!(pending.iter().filter(|r| r.is_err()).count(), 1);

        b.failed = Some("HTTP 404".into());
        ob.fail(&b).unwrap();
        ob.delivered(&a).unwrap();
        let st = ob.status();
        assert!(st.pending.is_empty());
        assert_eq!(st.failed.len(), 1);
        assert_eq!(st.failed[0].error.as_deref(), Some("HTTP 404"));
        assert_eq!(st.unreadable.len(), 1, "{st:?}");
        // The unreadable file is kept, not deleted.
        assert!(ob.pending_dir().join("junk.json").exists());
        let known = ob.call_deliveries("c-1");
        assert_eq!(known.len(), 1);
        assert_eq!(known[0].0, "manual");
        assert!(known[0].1.contains("delivered") && known[0].1.contains("failed: HTTP 404"));
        let later = DateTime::parse_from_rfc3339("2026-12-22T10:00:00+09:00").unwrap();
        assert_eq!(ob.prune_delivered(DELIVERED_KEEP, later), 1);
        assert!(ob.call_deliveries("c-1")[0].1.starts_with("failed"));
    }
}
