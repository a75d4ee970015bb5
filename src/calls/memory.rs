//! Which warnings already fired, kept on disk so that a restarted daemon that re-adopts a call
//! from the PBX snapshot does not warn the agent a second time. An append-only journal written by
//! its own thread, so the tracker never waits on the disk; compacted at start-up.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use crate::config::WarningKind;

/// Journal entries older than this are dropped at compaction (no call lasts a day).
const KEEP_HOURS: i64 = 24;

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    call_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<WarningKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after_secs: Option<u64>,
    #[serde(default)]
    ended: bool,
    at: chrono::DateTime<chrono::FixedOffset>,
}

/// A warning step's identity that survives ladder edits: its kind and threshold.
pub type StepKey = (WarningKind, u64);

/// The journal of fired warnings.
pub struct Memory {
    fired: HashMap<String, HashSet<StepKey>>,
    writer: Option<mpsc::Sender<Entry>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Memory {
    /// Lets the writer finish what is queued, so nothing fired is forgotten at shutdown.
    fn drop(&mut self) {
        self.writer = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Memory {
    /// A memory that forgets everything at exit (tests, demo).
    pub fn volatile() -> Memory {
        Memory {
            fired: HashMap::new(),
            writer: None,
            thread: None,
        }
    }

    /// Opens (and compacts) the journal at `path`. On any error the daemon still runs, with a
    /// volatile memory and a warning in the log.
    pub fn open(path: &Path) -> Memory {
        match Self::try_open(path) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e,
                    "cannot keep fired warnings on disk; after a restart a warning may repeat");
                Memory::volatile()
            }
        }
    }

    fn try_open(path: &Path) -> std::io::Result<Memory> {
        if let Some(dir) = path.parent() {
            crate::fsutil::create_private_dir(dir)?;
        }
        let mut fired: HashMap<String, HashSet<StepKey>> = HashMap::new();
        let mut kept: Vec<Entry> = Vec::new();
        let cutoff = chrono::Local::now().fixed_offset() - chrono::Duration::hours(KEEP_HOURS);
        if let Ok(file) = std::fs::File::open(path) {
            for line in std::io::BufReader::new(file).lines() {
                let Ok(entry) = serde_json::from_str::<Entry>(&line?) else {
                    continue; // a torn last line after a crash
                };
                if entry.at < cutoff {
                    continue;
                }
                if entry.ended {
                    fired.remove(&entry.call_id);
                    kept.retain(|e| e.call_id != entry.call_id);
                    continue;
                }
                if let (Some(kind), Some(after)) = (entry.kind, entry.after_secs) {
                    fired
                        .entry(entry.call_id.clone())
                        .or_default()
                        .insert((kind, after));
                    kept.push(entry);
                }
            }
        }
        let mut text = Vec::new();
        for e in &kept {
            serde_json::to_writer(&mut text, e)?;
            text.push(b'\n');
        }
        let (dir, name) = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
            (Some(dir), Some(name)) => (dir, name),
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{}: not a file path", path.display()),
                ));
            }
        };
        crate::fsutil::write_atomic(dir, name, &text)?;
        let file = std::fs::OpenOptions::new().append(true).open(path)?;
        let (tx, rx) = mpsc::channel::<Entry>();
        let shown = PathBuf::from(path);
        let thread = std::thread::Builder::new()
            .name("callguard-memory".into())
            .spawn(move || {
                let mut file = std::io::LineWriter::new(file);
                for entry in rx {
                    let line = serde_json::to_string(&entry).unwrap_or_default();
                    if let Err(e) = writeln!(file, "{line}") {
                        tracing::warn!(path = %shown.display(), error = %e, "cannot record a fired warning");
                    }
                }
            })?;
        Ok(Memory {
            fired,
            writer: Some(tx),
            thread: Some(thread),
        })
    }

    /// Whether this step already fired for this call (in this run or an earlier one).
    pub fn has_fired(&self, call_id: &str, step: StepKey) -> bool {
        self.fired.get(call_id).is_some_and(|s| s.contains(&step))
    }

    /// Records that a step fired.
    pub fn fired(&mut self, call_id: &str, step: StepKey) {
        self.fired
            .entry(call_id.to_string())
            .or_default()
            .insert(step);
        self.write(Entry {
            call_id: call_id.to_string(),
            kind: Some(step.0),
            after_secs: Some(step.1),
            ended: false,
            at: chrono::Local::now().fixed_offset(),
        });
    }

    /// Forgets every call for which `keep` is false (calls gone from the PBX).
    pub fn forget_unless(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self.fired.keys().filter(|id| !keep(id)).cloned().collect();
        for id in gone {
            self.ended(&id);
        }
    }

    /// Forgets a call that ended.
    pub fn ended(&mut self, call_id: &str) {
        if self.fired.remove(call_id).is_some() {
            self.write(Entry {
                call_id: call_id.to_string(),
                kind: None,
                after_secs: None,
                ended: true,
                at: chrono::Local::now().fixed_offset(),
            });
        }
    }

    fn write(&self, entry: Entry) {
        if let Some(tx) = &self.writer {
            let _ = tx.send(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_across_reopen_and_forgets_ended_calls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/fired.jsonl");
        {
            let mut m = Memory::open(&path);
            m.fired("a", (WarningKind::Escalate, 900));
            m.fired("b", (WarningKind::Escalate, 900));
            m.ended("b");
        }
        let m = Memory::open(&path);
        assert!(m.has_fired("a", (WarningKind::Escalate, 900)));
        assert!(!m.has_fired("a", (WarningKind::Terminate, 1800)));
        assert!(!m.has_fired("b", (WarningKind::Escalate, 900)));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "compacted: {text}");
    }
}
