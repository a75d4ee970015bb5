//! Follows the evidence ledger and copies everything it names to the archive store: each sealed
//! folder's files, each addendum, and each ledger line as its own object. The ledger is the
//! durable queue: a line is done only when every object it needs was confirmed by the store,
//! and what is done is kept in `<data dir>/archive/state.json`, so a restart, an outage or a
//! `kill -9` resumes where it stopped and an object already there counts as done.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Utc};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::ArchiveConfig;
use super::store::{Lock, Put, Store, StoreError};
use crate::evidence::layout::{MANIFEST_FILE, SIG_FILE};
use crate::evidence::ledger::Entry;
use crate::evidence::manifest::Manifest;

/// `<data dir>/archive`.
pub fn state_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("archive")
}

/// What the archiver keeps between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Every ledger line up to this seq is archived.
    pub done_through: u64,
    /// Archived lines after `done_through` (a line stuck on a conflict does not hold back the
    /// ones after it).
    #[serde(default)]
    pub done_after: BTreeSet<u64>,
    /// Objects the store holds with other content than ours: key → details.
    #[serde(default)]
    pub conflicts: BTreeMap<String, String>,
    /// Conflicts the lead was already pinged about.
    #[serde(default)]
    pub conflicts_reported: BTreeSet<String>,
    /// Folders whose archived copy was verified and whose local copy was removed.
    #[serde(default)]
    pub removed_local: BTreeSet<String>,
    /// The last failure, and when.
    #[serde(default)]
    pub last_error: Option<String>,
    /// When `last_error` happened (RFC 3339).
    #[serde(default)]
    pub last_error_at: Option<String>,
    /// When the last object was confirmed (RFC 3339).
    #[serde(default)]
    pub last_success_at: Option<String>,
    /// Seal time of the oldest waiting line the lead was already pinged about.
    #[serde(default)]
    pub alerted_oldest: Option<String>,
}

impl State {
    /// Loads the state; missing = nothing archived yet.
    pub fn load(dir: &Path) -> State {
        std::fs::read(dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the state atomically (temp file, fsync, rename).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        crate::fsutil::create_private_dir(dir)?;
        let tmp = dir.join("state.json.tmp");
        let mut f = crate::fsutil::create_private_file(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).unwrap_or_default())?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join("state.json"))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Whether the line `seq` is archived.
    pub fn is_done(&self, seq: u64) -> bool {
        seq <= self.done_through || self.done_after.contains(&seq)
    }

    fn mark_done(&mut self, seq: u64) {
        self.done_after.insert(seq);
        while self.done_after.remove(&(self.done_through + 1)) {
            self.done_through += 1;
        }
    }
}

/// One ledger line as written, with what it names.
#[derive(Debug, Clone)]
pub struct Line {
    /// The exact bytes of the line (without its newline).
    pub raw: String,
    /// Sequence number (the line number when the line does not parse).
    pub seq: u64,
    /// The parsed entry.
    pub entry: Option<Entry>,
}

/// The ledger's lines.
pub fn read_ledger(evidence_root: &Path) -> Vec<Line> {
    let text = std::fs::read_to_string(evidence_root.join(crate::evidence::layout::LEDGER_FILE))
        .unwrap_or_default();
    text.split('\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            let entry: Option<Entry> = serde_json::from_str(l).ok();
            Line {
                raw: l.to_string(),
                seq: entry.as_ref().map(|e| e.seq).unwrap_or(i as u64 + 1),
                entry,
            }
        })
        .collect()
}

/// Object key of a file of a call folder: `<prefix>/<host>/YYYY/MM/DD/<folder>/<file>`.
pub fn object_key(prefix: &str, host: &str, dir: &str, file: &str) -> String {
    join_key(prefix, &format!("{host}/{dir}/{file}"))
}

/// Object key of a ledger line: `<prefix>/<host>/ledger/<seq>.json`.
pub fn ledger_key(prefix: &str, host: &str, seq: u64) -> String {
    join_key(prefix, &format!("{host}/ledger/{seq}.json"))
}

fn join_key(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    }
}

/// The backlog: what is sealed and not archived yet.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Backlog {
    /// Sealed folders waiting.
    pub folders: usize,
    /// Ledger lines waiting (folders, addenda).
    pub lines: usize,
    /// Bytes of the waiting folders' files.
    pub bytes: u64,
    /// Seal time of the oldest waiting line (RFC 3339).
    pub oldest: Option<String>,
    /// Objects the store holds with other content.
    pub conflicts: usize,
    /// The last failure.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<String>,
    /// When the last object was confirmed.
    pub last_success_at: Option<String>,
}

/// The backlog of `evidence_root` given the archiver's state in `data_dir`.
pub fn backlog(evidence_root: &Path, data_dir: &Path) -> Backlog {
    let state = State::load(&state_dir(data_dir));
    let mut b = Backlog {
        conflicts: state.conflicts.len(),
        last_error: state.last_error.clone(),
        last_error_at: state.last_error_at.clone(),
        last_success_at: state.last_success_at.clone(),
        ..Backlog::default()
    };
    for l in read_ledger(evidence_root) {
        if state.is_done(l.seq) {
            continue;
        }
        b.lines += 1;
        if let Some(e) = &l.entry {
            if b.oldest.is_none() {
                b.oldest = Some(e.at.clone());
            }
            if !e.is_addendum() {
                b.folders += 1;
                b.bytes += folder_files(&evidence_root.join(&e.dir))
                    .iter()
                    .filter_map(|(_, p, _)| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum::<u64>();
            }
        }
    }
    b
}

/// The files of a sealed folder that are archived: (name, path, SHA-256 hex if known).
/// The manifest names the audio and records; the signature and manifest come first.
pub fn folder_files(dir: &Path) -> Vec<(String, PathBuf, Option<String>)> {
    let mut out = vec![
        (MANIFEST_FILE.to_string(), dir.join(MANIFEST_FILE), None),
        (SIG_FILE.to_string(), dir.join(SIG_FILE), None),
    ];
    let manifest: Option<Manifest> = std::fs::read(dir.join(MANIFEST_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(m) = manifest {
        for r in &m.records {
            if is_plain(&r.file) {
                out.push((r.file.clone(), dir.join(&r.file), Some(r.sha256.clone())));
            }
        }
        if let Some(a) = &m.audio
            && is_plain(&a.file)
        {
            out.push((a.file.clone(), dir.join(&a.file), Some(a.sha256.clone())));
        }
    }
    out
}

fn is_plain(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.contains("..")
}

/// The incident level of a sealed call (1 when it has no incident record).
fn incident_level(dir: &Path) -> u8 {
    std::fs::read(dir.join(crate::evidence::incident::JSON_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("level").and_then(serde_json::Value::as_u64))
        .map(|l| l.min(255) as u8)
        .unwrap_or(1)
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassReport {
    /// Lines archived in this pass.
    pub lines: usize,
    /// Objects written now.
    pub written: usize,
    /// Objects found already there with the same content.
    pub already_there: usize,
    /// Bytes written.
    pub bytes: u64,
    /// New conflicts found.
    pub conflicts: Vec<String>,
}

/// Copies the evidence of one workstation to the store.
pub struct Archiver {
    store: Store,
    cfg: ArchiveConfig,
    prefix: String,
    host: String,
    evidence_root: PathBuf,
    state_dir: PathBuf,
    state: State,
}

fn now_rfc3339() -> String {
    chrono::Local::now().fixed_offset().to_rfc3339()
}

impl Archiver {
    /// An archiver for `evidence_root`, keeping its state under `data_dir`.
    pub fn new(
        store: Store,
        cfg: &ArchiveConfig,
        host: &str,
        evidence_root: &Path,
        data_dir: &Path,
    ) -> Archiver {
        let state_dir = state_dir(data_dir);
        Archiver {
            store,
            cfg: cfg.clone(),
            prefix: cfg.clean_prefix(),
            host: host.to_string(),
            evidence_root: evidence_root.to_path_buf(),
            state: State::load(&state_dir),
            state_dir,
        }
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Notes that the lead was pinged about the backlog whose oldest line was sealed at `oldest`.
    pub fn set_alerted(&mut self, oldest: String) {
        self.state.alerted_oldest = Some(oldest);
        self.save();
    }

    /// Notes that the local copy of `dir` was removed after its archived copy was verified.
    pub fn set_removed_local(&mut self, dir: &str) {
        self.state.removed_local.insert(dir.to_string());
        self.save();
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The archive prefix (without slashes at its ends).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The host name objects are filed under.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The evidence root.
    pub fn evidence_root(&self) -> &Path {
        &self.evidence_root
    }

    /// Where this workstation's objects go: `<prefix>/<host>/`.
    pub fn host_prefix(&self) -> String {
        join_key(&self.prefix, &format!("{}/", self.host))
    }

    fn save(&self) {
        if let Err(e) = self.state.save(&self.state_dir) {
            tracing::error!(error = %e, dir = %self.state_dir.display(),
                "cannot save the archive state; finished work may be checked again after a restart");
        }
    }

    /// Records a failure for status and doctor.
    pub fn record_error(&mut self, e: &StoreError) {
        self.state.last_error = Some(e.to_string());
        self.state.last_error_at = Some(now_rfc3339());
        self.save();
    }

    /// Ends the multipart uploads a previous run left open (recorded in the state, or listed
    /// by the store where it can list them). An abort ends an upload; it deletes no object.
    pub async fn abort_leftover_uploads(&mut self) -> Result<usize, StoreError> {
        let mut n = 0;
        let dir = self.state_dir.join("uploads");
        let records: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for path in records {
            let rec: Option<(String, String)> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| {
                    Some((
                        v.get("key")?.as_str()?.to_string(),
                        v.get("upload_id")?.as_str()?.to_string(),
                    ))
                });
            if let Some((key, id)) = rec {
                self.store.abort(&key, &id).await?;
                tracing::info!(key = %key, upload_id = %id, "aborted an upload an earlier run left unfinished");
                n += 1;
            }
            let _ = std::fs::remove_file(&path);
        }
        if let Some(open) = self.store.open_uploads(&self.host_prefix()).await {
            for (key, id) in open {
                self.store.abort(&key, &id).await?;
                tracing::info!(key = %key, upload_id = %id, "aborted an unfinished upload found on the store");
                n += 1;
            }
        }
        Ok(n)
    }

    fn lock_for(&self, at: &str, dir: &Path) -> Lock {
        let sealed: DateTime<FixedOffset> =
            DateTime::parse_from_rfc3339(at).unwrap_or_else(|_| Utc::now().fixed_offset());
        let until = sealed + chrono::Duration::days(i64::from(self.cfg.retention_days));
        Lock {
            retain_until_secs: until.timestamp(),
            legal_hold: incident_level(dir) >= self.cfg.legal_hold_level,
        }
    }

    /// One pass over the ledger: archives every line not done yet, in order. Stops at the first
    /// failure to reach the store (retried later); a conflict is recorded, reported, and the
    /// pass goes on with the next line.
    pub async fn pass(&mut self) -> Result<PassReport, StoreError> {
        self.pass_upto(u64::MAX).await
    }

    /// Archives every line up to `seq` not done yet (earlier lines first, so the archive's
    /// ledger never has a gap the local one has not); whether `seq` is done afterwards.
    pub async fn archive_through(&mut self, seq: u64) -> Result<bool, StoreError> {
        self.pass_upto(seq).await?;
        Ok(self.state.is_done(seq))
    }

    /// Conflicts not reported to the lead yet; marks them reported.
    pub fn take_unreported_conflicts(&mut self) -> Vec<String> {
        let new: Vec<String> = self
            .state
            .conflicts
            .iter()
            .filter(|(k, _)| !self.state.conflicts_reported.contains(*k))
            .map(|(_, v)| v.clone())
            .collect();
        if !new.is_empty() {
            let keys: Vec<String> = self.state.conflicts.keys().cloned().collect();
            self.state.conflicts_reported.extend(keys);
            self.save();
        }
        new
    }

    async fn pass_upto(&mut self, upto: u64) -> Result<PassReport, StoreError> {
        let mut report = PassReport::default();
        if std::fs::read_dir(self.state_dir.join("uploads")).is_ok_and(|mut d| d.next().is_some())
            && let Err(e) = self.abort_leftover_uploads().await
        {
            self.record_error(&e);
            return Err(e);
        }
        for line in read_ledger(&self.evidence_root) {
            if self.state.is_done(line.seq) || line.seq > upto {
                continue;
            }
            match self.archive_line(&line, &mut report).await {
                Ok(()) => {
                    self.state.mark_done(line.seq);
                    self.state.last_success_at = Some(now_rfc3339());
                    self.save();
                    report.lines += 1;
                }
                Err(e @ (StoreError::Conflict { .. } | StoreError::NotAsSealed { .. })) => {
                    let key = match &e {
                        StoreError::Conflict { key, .. } | StoreError::NotAsSealed { key, .. } => {
                            key.clone()
                        }
                        _ => String::new(),
                    };
                    if !self.state.conflicts.contains_key(&key) {
                        if matches!(e, StoreError::Conflict { .. }) {
                            tracing::error!(error = %e, "ARCHIVE CONFLICT: the store holds other content under a key of this workstation; nothing was overwritten");
                        } else {
                            tracing::error!(error = %e, "ARCHIVE CONFLICT: a file of a sealed folder is not as sealed; it was not archived");
                        }
                        report.conflicts.push(e.to_string());
                    }
                    self.state.conflicts.insert(key, e.to_string());
                    self.record_error(&e);
                }
                Err(e) => {
                    self.record_error(&e);
                    return Err(e);
                }
            }
        }
        Ok(report)
    }

    /// Uploads one file of the folder `dir` once; (its key, what happened, its length).
    async fn put_file(
        &self,
        dir: &str,
        name: &str,
        path: &Path,
        sha: Option<String>,
        lock: &Lock,
    ) -> Result<FileUpload, StoreError> {
        let key = object_key(&self.prefix, &self.host, dir, name);
        let local = |source| StoreError::Local {
            path: path.display().to_string(),
            source,
        };
        // What is on disk must be what was sealed: the archive locks it for years, and a file
        // changed after sealing must be reported here, not preserved.
        let on_disk = {
            let p = path.to_path_buf();
            tokio::task::spawn_blocking(move || hash_file(&p))
                .await
                .map_err(|e| local(std::io::Error::other(e.to_string())))?
                .map_err(local)?
        };
        let sha = match sha {
            Some(sealed) if sealed != on_disk => {
                return Err(StoreError::NotAsSealed {
                    key,
                    what: format!(
                        "{} is not the file sealed (its sha256 is {on_disk}, the manifest says {sealed})",
                        path.display()
                    ),
                });
            }
            Some(s) => s,
            None => on_disk,
        };
        let len = std::fs::metadata(path).map_err(local)?.len();
        let record = upload_record(&self.state_dir, &key);
        let put = self
            .store
            .put_file_once(&key, path, &sha, lock, &|id: &str| {
                // On disk before the first part: a crash leaves a record to abort.
                let body = serde_json::json!({ "key": key, "upload_id": id }).to_string();
                if let Err(e) = write_record(&record, body.as_bytes()) {
                    tracing::warn!(error = %e, "cannot record the multipart upload id");
                }
            })
            .await;
        if put.is_ok() {
            let _ = std::fs::remove_file(&record);
        }
        Ok((key, put?, len))
    }

    async fn archive_line(
        &mut self,
        line: &Line,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let at = line
            .entry
            .as_ref()
            .map(|e| e.at.clone())
            .unwrap_or_else(now_rfc3339);
        if let Some(e) = line.entry.clone() {
            let dir = self.evidence_root.join(&e.dir);
            let lock = self.lock_for(&at, &dir);
            let files: Vec<(String, PathBuf, Option<String>)> = if e.is_addendum() {
                let json = e.file.clone().unwrap_or_default();
                let sig = json
                    .strip_suffix(".json")
                    .map(|b| format!("{b}.sig"))
                    .unwrap_or_default();
                [(json, e.file_sha256.clone()), (sig, None)]
                    .into_iter()
                    .filter(|(n, _)| is_plain(n))
                    .map(|(n, sha)| (n.clone(), dir.join(&n), sha))
                    .collect()
            } else if self.state.removed_local.contains(&e.dir) {
                Vec::new()
            } else {
                folder_files(&dir)
            };
            // A file of the sealed folder missing here (a folder archived and removed locally
            // has no files listed): the line waits, and is reported, instead of counting as
            // archived without it.
            if let Some((name, path, _)) = files.iter().find(|(_, path, _)| !path.exists()) {
                return Err(StoreError::NotAsSealed {
                    key: object_key(&self.prefix, &self.host, &e.dir, name),
                    what: format!("{} is missing on this workstation", path.display()),
                });
            }
            let present = files;
            // The folder's files go up side by side (a one-minute call is four small objects,
            // each a round trip or two); its ledger line only after all of them are confirmed.
            let uploads: Vec<BoxFuture<'_, Result<FileUpload, StoreError>>> = present
                .iter()
                .map(|(name, path, sha)| {
                    Box::pin(self.put_file(&e.dir, name, path, sha.clone(), &lock))
                        as BoxFuture<'_, _>
                })
                .collect();
            let results: Vec<Result<FileUpload, StoreError>> = futures_util::stream::iter(uploads)
                .buffered(self.cfg.concurrency.max(1))
                .collect()
                .await;
            for r in results {
                let (key, put, len) = r?;
                match put {
                    Put::Written => {
                        report.written += 1;
                        report.bytes += len;
                    }
                    Put::AlreadyThere => report.already_there += 1,
                }
                self.state.conflicts.remove(&key);
            }
        }
        let key = ledger_key(&self.prefix, &self.host, line.seq);
        let lock = match &line.entry {
            Some(e) => self.lock_for(&at, &self.evidence_root.join(&e.dir)),
            None => self.lock_for(&at, &self.evidence_root),
        };
        match self
            .store
            .put_once(&key, line.raw.as_bytes().to_vec(), &lock)
            .await?
        {
            Put::Written => {
                report.written += 1;
                report.bytes += line.raw.len() as u64;
            }
            Put::AlreadyThere => report.already_there += 1,
        }
        self.state.conflicts.remove(&key);
        Ok(())
    }
}

/// One file of a folder uploaded: its key, what happened, its length.
type FileUpload = (String, Put, u64);

/// Where the upload id of a multipart upload to `key` is recorded while it runs.
fn upload_record(state_dir: &Path, key: &str) -> PathBuf {
    let tag = hex::encode(&Sha256::digest(key.as_bytes())[..12]);
    state_dir.join("uploads").join(format!("{tag}.json"))
}

fn write_record(path: &Path, body: &[u8]) -> std::io::Result<()> {
    if let Some(d) = path.parent() {
        crate::fsutil::create_private_dir(d)?;
    }
    let mut f = crate::fsutil::create_private_file(path)?;
    f.write_all(body)?;
    f.sync_all()
}

/// SHA-256 hex of a file.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_contract_layout() {
        assert_eq!(
            object_key(
                "callguard",
                "ws-01",
                "2026/11/29/101500_c-1-abcd",
                "call.wav"
            ),
            "callguard/ws-01/2026/11/29/101500_c-1-abcd/call.wav"
        );
        assert_eq!(
            ledger_key("callguard", "ws-01", 7),
            "callguard/ws-01/ledger/7.json"
        );
        assert_eq!(ledger_key("", "ws-01", 1), "ws-01/ledger/1.json");
    }

    #[test]
    fn done_lines_advance_the_watermark_past_gaps_filled_later() {
        let mut s = State::default();
        s.mark_done(1);
        s.mark_done(3);
        assert_eq!(s.done_through, 1);
        assert!(s.is_done(3) && !s.is_done(2));
        s.mark_done(2);
        assert_eq!(s.done_through, 3);
        assert!(s.done_after.is_empty());
    }

    #[test]
    fn state_survives_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = State::default();
        s.mark_done(1);
        s.conflicts.insert("k".into(), "other content".into());
        s.save(dir.path()).unwrap();
        assert_eq!(State::load(dir.path()), s);
    }
}
