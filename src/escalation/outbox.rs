//! The durable outbox: one JSON file per (ping, receiver), written and fsynced before the first
//! send attempt, rewritten after each failed attempt, removed once delivered. A ping that cannot
//! be delivered is moved to `failed/` with its reason and stays there for people to see.
//!
//! ```text
//! <data dir>/outbox/pending/<ping id>-<receiver>.json
//! <data dir>/outbox/failed/<ping id>-<receiver>.json
//! <data dir>/outbox/delivered/<ping id>-<receiver>.json   (receipts, kept DELIVERED_KEEP)
//! ```

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::WebhookFormat;
use crate::fsutil;

/// Schema tag of an outbox file.
pub const SCHEMA: &str = "callguard.outbox/1";
/// How long delivery receipts are kept (for the incident record sealed at the call's end).
pub const DELIVERED_KEEP: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// One ping on its way to one receiver.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Delivery {
    /// [`SCHEMA`].
    pub schema: String,
    /// The ping's id, sent as `Idempotency-Key`.
    pub ping_id: String,
    /// `escalate`, `terminate`, `manual` or `problem`.
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
    /// When the ping was raised; retries stop `retry_for` after it.
    pub created_at: DateTime<FixedOffset>,
    /// Attempts so far.
    pub attempts: u32,
    /// Why the last attempt did not deliver.
    pub last_error: Option<String>,
    /// When the next attempt is planned.
    pub next_attempt_at: Option<DateTime<FixedOffset>>,
    /// Set when given up: why.
    pub failed: Option<String>,
    /// What the ping answers in the call's incident record: `warning:<kind> after <n> s`,
    /// `manual`, or the names of the harassment rules a mark fired.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// When a receiver took it.
    #[serde(default)]
    pub delivered_at: Option<DateTime<FixedOffset>>,
}

impl Delivery {
    /// File name: the ping id plus a short hash of the receiver, so one ping to several
    /// receivers has one file each.
    pub fn file_name(&self) -> String {
        let digest = Sha256::digest(self.url.as_bytes());
        format!("{}-{}.json", self.ping_id, &hex::encode(digest)[..8])
    }
}

/// One receiver's delivery of one ping, as [`Outbox::call_receipts`] reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallReceipt {
    /// The incident-record reason the ping answers.
    pub reason: String,
    /// The receiver (unmasked: mask it before showing it).
    pub url: String,
    /// `delivered`, `failed` or `queued`.
    pub state: &'static str,
    /// When it was delivered, or the next attempt of a queued one.
    pub at: Option<DateTime<FixedOffset>>,
    /// Attempts so far.
    pub attempts: u32,
    /// Why it failed, or the last error of a queued one.
    pub detail: Option<String>,
}

/// A file in the outbox that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// Disk trouble.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not an outbox entry.
    #[error("{path}: not an outbox entry ({msg})")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// The outbox folder.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
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

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Outbox {
    /// The outbox under `dir` (usually `<data dir>/outbox`); nothing is created yet.
    pub fn new(dir: PathBuf) -> Outbox {
        Outbox { dir }
    }

    /// Folder of pings waiting for delivery.
    pub fn pending_dir(&self) -> PathBuf {
        self.dir.join("pending")
    }

    /// Folder of pings given up.
    pub fn failed_dir(&self) -> PathBuf {
        self.dir.join("failed")
    }

    /// Folder of delivery receipts.
    pub fn delivered_dir(&self) -> PathBuf {
        self.dir.join("delivered")
    }

    /// Creates the folders (0700).
    pub fn create(&self) -> Result<(), OutboxError> {
        for d in [self.pending_dir(), self.failed_dir(), self.delivered_dir()] {
            fsutil::create_private_dir(&d).map_err(io_err(&d))?;
        }
        Ok(())
    }

    /// Stores a new or updated pending delivery; returns once it is on disk.
    pub fn save(&self, d: &Delivery) -> Result<(), OutboxError> {
        write_durably(&self.pending_dir(), &d.file_name(), d)
    }

    /// Turns a pending entry into a delivery receipt (`delivered/`).
    pub fn delivered(&self, d: &Delivery) -> Result<(), OutboxError> {
        write_durably(&self.delivered_dir(), &d.file_name(), d)?;
        self.remove_pending(d)
    }

    fn remove_pending(&self, d: &Delivery) -> Result<(), OutboxError> {
        let dir = self.pending_dir();
        let path = dir.join(d.file_name());
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Deletes receipts older than `keep`; returns how many.
    pub fn prune_delivered(&self, keep: std::time::Duration, now: DateTime<FixedOffset>) -> usize {
        let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::days(7));
        let mut n = 0;
        for r in read_all(&self.delivered_dir()) {
            if let Ok(d) = r
                && d.delivered_at.unwrap_or(d.created_at) + keep < now
                && std::fs::remove_file(self.delivered_dir().join(d.file_name())).is_ok()
            {
                n += 1;
            }
        }
        n
    }

    /// What the outbox knows of the pings of `call_id`: for each incident-record reason, its
    /// state at every receiver (`delivered <time>`, `failed: <why>`, `queued (<n> attempts)`).
    pub fn call_deliveries(&self, call_id: &str) -> Vec<(String, String)> {
        let mut by_reason: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let dirs = [
            (self.delivered_dir(), "delivered"),
            (self.failed_dir(), "failed"),
            (self.pending_dir(), "queued"),
        ];
        let mut seen = std::collections::HashSet::new();
        for (dir, what) in dirs {
            for d in read_all(&dir).into_iter().filter_map(Result::ok) {
                // One file per (ping, receiver); a file caught mid-move counts once, done first.
                if d.call_id != call_id || !seen.insert(d.file_name()) {
                    continue;
                }
                let state = match what {
                    "delivered" => format!(
                        "delivered {}",
                        d.delivered_at.unwrap_or(d.created_at).to_rfc3339()
                    ),
                    "failed" => format!("failed: {}", d.failed.as_deref().unwrap_or("unknown")),
                    _ => match &d.last_error {
                        Some(e) => format!("queued ({} attempts; last: {e})", d.attempts),
                        None => "queued".to_string(),
                    },
                };
                for r in &d.reasons {
                    by_reason.entry(r.clone()).or_default().push(state.clone());
                }
            }
        }
        by_reason
            .into_iter()
            .map(|(reason, states)| (reason, states.join("; ")))
            .collect()
    }

    /// Each receiver's delivery of each ping about `call_id`, for the incident record:
    /// `(reason, receiver URL, state, when, detail)` with state `delivered`, `failed` or
    /// `queued`, one row per ping, receiver and reason.
    pub fn call_receipts(&self, call_id: &str) -> Vec<CallReceipt> {
        let dirs = [
            (self.delivered_dir(), "delivered"),
            (self.failed_dir(), "failed"),
            (self.pending_dir(), "queued"),
        ];
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (dir, state) in dirs {
            for d in read_all(&dir).into_iter().filter_map(Result::ok) {
                // A file caught mid-move counts once, done first.
                if d.call_id != call_id || !seen.insert(d.file_name()) {
                    continue;
                }
                let (at, detail) = match state {
                    "delivered" => (Some(d.delivered_at.unwrap_or(d.created_at)), None),
                    "failed" => (None, d.failed.clone()),
                    _ => (d.next_attempt_at, d.last_error.clone()),
                };
                for r in &d.reasons {
                    out.push(CallReceipt {
                        reason: r.clone(),
                        url: d.url.clone(),
                        state,
                        at,
                        attempts: d.attempts,
                        detail: detail.clone(),
                    });
                }
            }
        }
        out
    }

    /// Moves an entry to `failed/` (written there first, so it is never in neither place).
    pub fn fail(&self, d: &Delivery) -> Result<(), OutboxError> {
        write_durably(&self.failed_dir(), &d.file_name(), d)?;
        self.remove_pending(d)
    }

    /// Every pending delivery, oldest first; unreadable files are returned as errors (and left
    /// where they are, for people to look at).
    pub fn pending(&self) -> Vec<Result<Delivery, OutboxError>> {
        let mut out = read_all(&self.pending_dir());
        out.sort_by_key(|r| r.as_ref().map(|d| d.created_at).ok());
        out
    }

    /// The state of the outbox, read from disk.
    pub fn status(&self) -> OutboxStatus {
        let mut st = OutboxStatus {
            dir: self.dir.display().to_string(),
            ..OutboxStatus::default()
        };
        let failed_ids: std::collections::HashSet<String> = read_all(&self.failed_dir())
            .into_iter()
            .filter_map(Result::ok)
            .map(|d| d.file_name())
            .collect();
        for (dir, failed) in [(self.pending_dir(), false), (self.failed_dir(), true)] {
            for r in read_all(&dir) {
                match r {
                    // Caught between the two steps of `fail`: it is failed.
                    Ok(d) if !failed && failed_ids.contains(&d.file_name()) => {}
                    Ok(d) => {
                        let e = EntryStatus {
                            ping_id: d.ping_id.clone(),
                            kind: d.kind.clone(),
                            call_id: d.call_id.clone(),
                            receiver: crate::config::mask_url(&d.url),
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

fn read_all(dir: &Path) -> Vec<Result<Delivery, OutboxError>> {
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
        if !is_entry {
            continue;
        }
        out.push(read_one(&path));
    }
    out
}

fn read_one(path: &Path) -> Result<Delivery, OutboxError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let d: Delivery = serde_json::from_slice(&bytes).map_err(|e| OutboxError::Corrupt {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    if d.schema != SCHEMA {
        return Err(OutboxError::Corrupt {
            path: path.to_path_buf(),
            msg: format!("unknown schema `{}`", d.schema),
        });
    }
    Ok(d)
}

/// Temp file, fsync, rename, fsync the folder: after a crash the entry is either the old or the
/// new version, never a torn one.
fn write_durably(dir: &Path, name: &str, d: &Delivery) -> Result<(), OutboxError> {
    fsutil::create_private_dir(dir).map_err(io_err(dir))?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let bytes = serde_json::to_vec_pretty(d).map_err(|e| OutboxError::Corrupt {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    let mut f = fsutil::create_private_file(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str) -> Delivery {
        Delivery {
            schema: SCHEMA.into(),
            ping_id: id.into(),
            kind: "manual".into(),
            call_id: "c-1".into(),
            url: "http://127.0.0.1:9/hook".into(),
            format: WebhookFormat::Json,
            secret_file: String::new(),
            body: "{}".into(),
            created_at: DateTime::parse_from_rfc3339("2026-11-22T10:00:00+09:00").unwrap(),
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            failed: None,
            reasons: vec!["manual".into()],
            delivered_at: None,
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
