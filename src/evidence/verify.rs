//! `callguard verify`: checks the WAV hash, the manifest signature and the ledger chain of
//! sealed calls — on this machine or on a copy of the evidence folder, given the public key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::keys;
use super::layout::{CALL_DEPTH, LEDGER_FILE, MANIFEST_FILE, META_FILE, PART_FILE, SIG_FILE};
use super::ledger::{self, CheckedLine};
use super::ledger_head;
use super::manifest::Manifest;

/// Why verify could not even start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// A path given does not exist or is not evidence.
    #[error("{0}")]
    Path(String),
}

/// The verdict on one call folder.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallVerdict {
    /// The folder.
    pub dir: PathBuf,
    /// PBX call id, if the manifest could be read.
    pub call_id: Option<String>,
    /// SHA-256 of `call.wav` (as recorded in the manifest).
    pub sha256: Option<String>,
    /// Everything that failed; empty = OK.
    pub failures: Vec<String>,
    /// Not sealed yet (a call in progress or waiting for recovery): not counted as a failure.
    pub open: bool,
    /// For a later part of a split call: the part it continues (absolute folder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub continues: Option<PathBuf>,
    /// This part's number (2, 3, …) and where its audio starts in the call, from the manifest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<(u32, Option<f64>)>,
}

/// How a ledger stands against its signed head (kept in the data dir, outside the evidence
/// folder).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum HeadCheck {
    /// Only single call folders were checked: the tail of the ledger is not in question.
    NotChecked,
    /// No head to compare with (a copy checked with `--pubkey` and no `--head`): removing
    /// the newest calls together with their ledger lines cannot be seen.
    Unknown,
    /// The head found belongs to another evidence folder.
    OtherRoot,
    /// The ledger holds its head.
    Holds,
    /// No head where one must be (the workstation's data dir), or a head that fails its
    /// signature, or a ledger that does not hold it: see the ledger's failures.
    Failed,
}

/// A folder under an evidence root holding files but no call (no `manifest.json`, no
/// `meta.json`, no `call.wav.part`): e.g. a `call.wav` put there by hand or left behind.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StrayFolder {
    /// The folder.
    pub dir: PathBuf,
    /// The files in it (names).
    pub files: Vec<String>,
}

/// One call recorded in several folders (callguard restarted during the call).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SplitCall {
    /// PBX call id.
    pub call_id: String,
    /// The parts in order: folder and where its audio starts (seconds from the call's start;
    /// `None` for the first part, or a part without audio).
    pub parts: Vec<(PathBuf, Option<f64>)>,
}

/// The verdict on a ledger as a whole.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LedgerVerdict {
    /// `ledger.jsonl`.
    pub ledger: PathBuf,
    /// Lines checked.
    pub lines: usize,
    /// Broken lines, and ledger entries whose folder is gone.
    pub failures: Vec<String>,
    /// The ledger against its signed head.
    pub head: HeadCheck,
}

/// Everything verify found.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Outcome {
    /// Per call.
    pub calls: Vec<CallVerdict>,
    /// Per evidence root.
    pub ledgers: Vec<LedgerVerdict>,
    /// Folders with files that are not evidence callguard sealed.
    pub stray: Vec<StrayFolder>,
    /// Calls whose evidence is in several parts.
    pub split_calls: Vec<SplitCall>,
}

impl Outcome {
    /// True when nothing failed (stray folders are warnings).
    pub fn ok(&self) -> bool {
        self.calls.iter().all(|c| c.failures.is_empty())
            && self.ledgers.iter().all(|l| l.failures.is_empty())
    }

    /// [`Outcome::ok`], and with `strict` no stray folder either.
    pub fn ok_strict(&self, strict: bool) -> bool {
        self.ok() && (!strict || self.stray.is_empty())
    }
}

/// Where verify finds the ledger head.
#[derive(Debug, Clone, Default)]
pub enum HeadSource {
    /// None known (a copy checked with the public key alone).
    #[default]
    None,
    /// The workstation's data dir: a head must be there for a ledger with lines.
    DataDir(PathBuf),
    /// A head file copied with the evidence.
    File(PathBuf),
}

struct Root {
    path: PathBuf,
    text: String,
    lines: Vec<CheckedLine>,
    by_dir: HashMap<String, usize>,
    addenda: HashMap<String, Vec<usize>>,
    /// SHA-256 of each line by its `seq`.
    hashes: HashMap<u64, String>,
    /// SHA-256 of every line.
    line_hashes: std::collections::HashSet<String>,
}

fn is_call_dir(p: &Path) -> bool {
    p.join(MANIFEST_FILE).is_file()
        || p.join(META_FILE).is_file()
        || p.join(PART_FILE).is_file()
        || p.join(SIG_FILE).is_file()
}

/// The evidence root above a call folder (`<root>/YYYY/MM/DD/<call>`).
fn root_of(call_dir: &Path) -> Option<PathBuf> {
    call_dir
        .ancestors()
        .skip(1)
        .take(4)
        .find(|a| a.join(LEDGER_FILE).is_file())
        .map(Path::to_path_buf)
}

fn call_dirs_under(root: &Path) -> Vec<PathBuf> {
    walk_root(root).0
}

/// Regular files directly in `d` (names, sorted).
fn files_in(d: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(d)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The call folders under an evidence root, and the folders below it that hold files but no
/// call (the root itself holds the ledger and is not one).
fn walk_root(root: &Path) -> (Vec<PathBuf>, Vec<StrayFolder>) {
    fn walk(d: &Path, depth: usize, out: &mut Vec<PathBuf>, stray: &mut Vec<StrayFolder>) {
        if depth > CALL_DEPTH {
            return;
        }
        // Only folders at the calls' depth are calls: a `meta.json` planted in a day's folder
        // is a stray file there, and the day's calls are still checked.
        if depth == CALL_DEPTH && is_call_dir(d) {
            out.push(d.to_path_buf());
            return;
        }
        if depth > 0 {
            let files = files_in(d);
            if !files.is_empty() {
                stray.push(StrayFolder {
                    dir: d.to_path_buf(),
                    files,
                });
            }
        }
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), depth + 1, out, stray);
            }
        }
    }
    let mut out = Vec::new();
    let mut stray = Vec::new();
    walk(root, 0, &mut out, &mut stray);
    out.sort();
    stray.sort_by(|a, b| a.dir.cmp(&b.dir));
    (out, stray)
}

/// Whether the workstation's ledger head names `root` (so `root` held a ledger).
fn anchored_here(source: &HeadSource, key: &VerifyingKey, root: &Path) -> bool {
    match source {
        HeadSource::DataDir(d) => {
            matches!(ledger_head::read(d, key), Ok(Some(h)) if h.is_for(root) && h.seq > 0)
        }
        _ => false,
    }
}

/// The ledger against its head; failures are added to `failures`.
fn check_head(
    root: &Root,
    source: &HeadSource,
    key: &VerifyingKey,
    failures: &mut Vec<String>,
) -> HeadCheck {
    let (read, required) = match source {
        HeadSource::None => return HeadCheck::Unknown,
        HeadSource::DataDir(d) => (ledger_head::read(d, key), Some(ledger_head::path(d))),
        HeadSource::File(f) => (ledger_head::read_file(f, key), None),
    };
    match read {
        Ok(Some(head)) if head.is_for(&root.path) || required.is_none() => {
            match ledger_head::describe(&ledger_head::standing(&root.text, &head), &head) {
                None => HeadCheck::Holds,
                Some(why) => {
                    failures.push(why);
                    HeadCheck::Failed
                }
            }
        }
        Ok(Some(_)) => HeadCheck::OtherRoot,
        Ok(None) => match required {
            Some(p) if root.lines.iter().any(|l| l.entry.is_some()) => {
                failures.push(format!(
                    "no signed ledger head at {} (it is rewritten at every seal and made at the daemon's start; without it, removed newest calls cannot be seen)",
                    p.display()
                ));
                HeadCheck::Failed
            }
            Some(_) => HeadCheck::Holds,
            None => {
                failures.push("the ledger head file given does not exist".into());
                HeadCheck::Failed
            }
        },
        Err(e) => {
            failures.push(format!("ledger head: {e}"));
            HeadCheck::Failed
        }
    }
}

/// Groups the verified parts of split calls, each call's parts in order.
fn split_calls(calls: &[CallVerdict]) -> Vec<SplitCall> {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let by_dir: HashMap<PathBuf, usize> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| (canon(&c.dir), i))
        .collect();
    // Each chain is named by its last part: a part no other verified part continues.
    let continued: std::collections::HashSet<PathBuf> = calls
        .iter()
        .filter_map(|c| c.continues.as_deref().map(canon))
        .collect();
    let mut out = Vec::new();
    for c in calls.iter().filter(|c| c.continues.is_some()) {
        if continued.contains(&canon(&c.dir)) {
            continue;
        }
        let mut parts = vec![(c.dir.clone(), c.part.and_then(|p| p.1))];
        let mut prev = c.continues.clone();
        // Bounded: a chain of folders naming each other in a loop ends here.
        while let Some(p) = prev.take() {
            if parts.len() > calls.len() {
                break;
            }
            match by_dir.get(&canon(&p)).map(|&i| &calls[i]) {
                Some(v) => {
                    parts.push((v.dir.clone(), v.part.and_then(|x| x.1)));
                    prev = v.continues.clone();
                }
                None => parts.push((p, None)),
            }
        }
        parts.reverse();
        out.push(SplitCall {
            call_id: c.call_id.clone().unwrap_or_default(),
            parts,
        });
    }
    out
}

/// Verifies one call folder fetched on its own (from the archive, by the floor) against `key`:
/// the manifest's signature and the hash of every file it names, as for a local folder. The
/// ledger is not looked at: the caller compares the manifest's SHA-256 with the ledger line it
/// has (the floor has it from the bus).
pub fn verify_folder(dir: &Path, key: &VerifyingKey) -> CallVerdict {
    verify_call(dir, None, key, true)
}

/// Verifies `paths` (call folders or evidence roots) against `key`, without a ledger head.
pub fn verify_paths(paths: &[PathBuf], key: &VerifyingKey) -> Result<Outcome, UsageError> {
    verify_paths_with(paths, key, &HeadSource::None)
}

/// Verifies `paths` (call folders or evidence roots) against `key`; each evidence root checked
/// as a whole is also checked against the ledger head from `head`.
pub fn verify_paths_with(
    paths: &[PathBuf],
    key: &VerifyingKey,
    head: &HeadSource,
) -> Result<Outcome, UsageError> {
    let mut roots: Vec<Root> = Vec::new();
    let mut calls: Vec<(PathBuf, Option<usize>)> = Vec::new();
    let mut whole_roots: Vec<usize> = Vec::new();
    let mut out = Outcome::default();
    for p in paths {
        let p = if p.file_name().is_some_and(|n| n == MANIFEST_FILE) {
            p.parent().unwrap_or(p).to_path_buf()
        } else {
            p.clone()
        };
        if !p.is_dir() {
            return Err(UsageError::Path(format!(
                "{}: no such folder (give a call folder or an evidence root)",
                p.display()
            )));
        }
        let (root, is_whole) = if is_call_dir(&p) {
            (root_of(&p), false)
        } else if p.join(LEDGER_FILE).is_file()
            || !call_dirs_under(&p).is_empty()
            || anchored_here(head, key, &p)
        {
            // (An evidence root emptied of its ledger and calls is still checked against
            // the head that names it.)
            (Some(p.clone()), true)
        } else if !files_in(&p).is_empty() && root_of(&p).is_some() {
            // A folder given by name that holds files but no sealed call.
            out.stray.push(StrayFolder {
                files: files_in(&p),
                dir: p.clone(),
            });
            continue;
        } else {
            return Err(UsageError::Path(format!(
                "{}: holds no sealed calls and no {LEDGER_FILE}",
                p.display()
            )));
        };
        let root_idx = root.map(|r| {
            let canon = r.canonicalize().unwrap_or(r.clone());
            match roots.iter().position(|x| x.path == canon) {
                Some(i) => i,
                None => {
                    roots.push(load_root(&canon, key));
                    roots.len() - 1
                }
            }
        });
        if is_whole {
            if let Some(i) = root_idx
                && !whole_roots.contains(&i)
            {
                {
                    whole_roots.push(i);
                }
            }
            let (dirs, stray) = walk_root(&p);
            for d in dirs {
                calls.push((d, root_idx));
            }
            out.stray.extend(stray);
        } else {
            calls.push((p, root_idx));
        }
    }
    let mut seen_dirs: HashMap<usize, Vec<String>> = HashMap::new();
    for (dir, root_idx) in calls {
        let root = root_idx.map(|i| &roots[i]);
        let mut v = verify_call(&dir, root, key, false);
        if let Some(r) = root {
            check_continuation(&mut v, &dir, r);
        }
        if let (Some(i), Some(r)) = (root_idx, root) {
            seen_dirs.entry(i).or_default().push(rel_of(&dir, &r.path));
        }
        out.calls.push(v);
    }
    for (i, r) in roots.iter().enumerate() {
        let mut failures: Vec<String> = r
            .lines
            .iter()
            .filter_map(|l| l.error.as_ref().map(|e| format!("line {}: {e}", l.line_no)))
            .collect();
        if whole_roots.contains(&i) {
            for l in &r.lines {
                let Some(e) = &l.entry else { continue };
                if e.is_addendum() {
                    continue;
                }
                // Every sealed call of a whole root must have been checked as a call folder
                // above: one hidden from the walk (a link in its place, a call's file planted
                // above it) would otherwise pass on its manifest alone.
                let dir = r.path.join(&e.dir);
                let is_link =
                    std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink());
                let checked = seen_dirs.get(&i).is_some_and(|d| d.contains(&e.dir));
                if is_link {
                    failures.push(format!(
                        "line {}: call {} — {} is a link, not the folder sealed (evidence holds no links)",
                        l.line_no, e.call_id, e.dir
                    ));
                    continue;
                }
                if !checked && dir.is_dir() {
                    failures.push(format!(
                        "line {}: call {} — folder {} was not checked as a call folder (a link or a call's file above it hides it)",
                        l.line_no, e.call_id, e.dir
                    ));
                    continue;
                }
                match std::fs::read(dir.join(MANIFEST_FILE)) {
                    Err(_) => failures.push(format!(
                        "line {}: call {} — folder {} or its manifest.json is missing",
                        l.line_no, e.call_id, e.dir
                    )),
                    Ok(bytes) if hex::encode(Sha256::digest(&bytes)) != e.manifest_sha256 => {
                        failures.push(format!(
                            "line {}: call {} — manifest.json in {} is not the one sealed",
                            l.line_no, e.call_id, e.dir
                        ))
                    }
                    Ok(_) => {}
                }
            }
        }
        let head_check = if whole_roots.contains(&i) {
            check_head(r, head, key, &mut failures)
        } else {
            HeadCheck::NotChecked
        };
        out.ledgers.push(LedgerVerdict {
            ledger: r.path.join(LEDGER_FILE),
            lines: r.lines.len(),
            failures,
            head: head_check,
        });
    }
    out.split_calls = split_calls(&out.calls);
    Ok(out)
}

/// A later part of a split call: the part it names must be there, sealed as named; and a
/// manifest's view of the ledger (`ledger_head`) must still hold.
fn check_continuation(v: &mut CallVerdict, dir: &Path, root: &Root) {
    let Some(m) = std::fs::read(dir.join(MANIFEST_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
    else {
        return;
    };
    if let Some(h) = m
        .ledger_head
        .as_ref()
        .filter(|h| h.seq > 0 && !root.line_hashes.contains(&h.line_sha256))
    {
        // (A line torn by a crash does not parse but keeps its bytes: found by its hash.)
        match root.hashes.get(&h.seq) {
            None => v.failures.push(format!(
                "the ledger had line {} when this call was sealed; that line is gone (the ledger was cut)",
                h.seq
            )),
            Some(sha) if *sha != h.line_sha256 => v.failures.push(format!(
                "ledger line {} is not the one there when this call was sealed (the ledger was rewritten)",
                h.seq
            )),
            Some(_) => {}
        }
    }
    let Some(c) = m.continues else { return };
    v.part = Some((c.part, c.audio_offset_secs));
    if c.dir.contains("..") || c.dir.starts_with('/') {
        v.failures.push(format!(
            "continues a part outside the evidence folder: {}",
            c.dir
        ));
        return;
    }
    let earlier = root.path.join(&c.dir);
    match std::fs::read(earlier.join(MANIFEST_FILE)) {
        Err(_) => v.failures.push(format!(
            "part {} of call {}: the part it continues ({}) is missing",
            c.part, m.call_id, c.dir
        )),
        Ok(b) if hex::encode(Sha256::digest(&b)) != c.manifest_sha256 => v.failures.push(format!(
            "part {} of call {}: the manifest of the part it continues ({}) is not the one sealed",
            c.part, m.call_id, c.dir
        )),
        Ok(_) => {}
    }
    v.continues = Some(earlier);
}

fn load_root(root: &Path, key: &VerifyingKey) -> Root {
    let text = std::fs::read_to_string(root.join(LEDGER_FILE)).unwrap_or_default();
    let lines = ledger::check(&text, key);
    let hashes = text
        .split('\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| ledger::line_seq(l).map(|s| (s, ledger::line_hash(l))))
        .collect();
    let line_hashes = text
        .split('\n')
        .filter(|l| !l.is_empty())
        .map(ledger::line_hash)
        .collect();
    let mut by_dir = HashMap::new();
    let mut addenda: HashMap<String, Vec<usize>> = HashMap::new();
    let mut lines = lines;
    for i in 0..lines.len() {
        let Some(e) = lines[i].entry.clone() else {
            continue;
        };
        if e.is_addendum() {
            addenda.entry(e.dir.clone()).or_default().push(i);
        } else if let Some(first) = by_dir.insert(e.dir.clone(), i) {
            // A folder is sealed once; a second seal means its first manifest was replaced.
            if lines[i].error.is_none() {
                lines[i].error = Some(format!(
                    "folder {} sealed a second time (first at line {}): the sealed call was replaced",
                    e.dir, lines[first].line_no
                ));
            }
        }
    }
    Root {
        path: root.to_path_buf(),
        text,
        lines,
        by_dir,
        addenda,
        hashes,
        line_hashes,
    }
}

fn rel_of(dir: &Path, root: &Path) -> String {
    let canon = dir.canonicalize().unwrap_or(dir.to_path_buf());
    canon
        .strip_prefix(root)
        .unwrap_or(&canon)
        .to_string_lossy()
        .into_owned()
}

// One call folder.
fn verify_call(
    dir: &Path,
    root: Option<&Root>,
    key: &VerifyingKey,
    ledger_elsewhere: bool,
) -> CallVerdict {
    let mut v = CallVerdict {
        dir: dir.to_path_buf(),
        call_id: None,
        sha256: None,
        failures: Vec::new(),
        open: false,
        continues: None,
        part: None,
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let sig_path = dir.join(SIG_FILE);
    // A folder the ledger knows is sealed, whatever else lies in it: never "open".
    let in_ledger = root.is_some_and(|r| r.by_dir.contains_key(&rel_of(dir, &r.path)));
    if !in_ledger
        && !sig_path.is_file()
        && (dir.join(META_FILE).is_file() || dir.join(PART_FILE).is_file())
    {
        v.open = true;
        return v;
    }
    let bytes = match std::fs::read(&manifest_path) {
        Ok(b) => b,
        Err(e) => {
            v.failures
                .push(format!("manifest.json missing or unreadable: {e}"));
            return v;
        }
    };
    let manifest: Option<Manifest> = match serde_json::from_slice(&bytes) {
        Ok(m) => Some(m),
        Err(e) => {
            v.failures
                .push(format!("manifest.json is not a callguard manifest: {e}"));
            None
        }
    };
    if let Some(m) = &manifest {
        v.call_id = Some(m.call_id.clone());
        v.sha256 = m.audio.as_ref().map(|a| a.sha256.clone());
    }
    // Signature over the exact bytes.
    let sig = std::fs::read_to_string(&sig_path)
        .ok()
        .and_then(|s| B64.decode(s.trim().as_bytes()).ok())
        .and_then(|b| Signature::from_slice(&b).ok());
    match sig {
        None => v
            .failures
            .push("manifest.sig missing or not a base64 Ed25519 signature".into()),
        Some(sig) => {
            if key.verify(&bytes, &sig).is_err() {
                let expected = keys::key_id(key);
                match &manifest {
                    Some(m) if m.key_id != expected => v.failures.push(format!(
                        "manifest signed by another key (key_id {}; the key given is {expected})",
                        m.key_id
                    )),
                    _ => v.failures.push(
                        "manifest signature does not match: manifest.json or manifest.sig was changed"
                            .into(),
                    ),
                }
            }
        }
    }
    // Audio.
    if let Some(a) = manifest.as_ref().and_then(|m| m.audio.as_ref()) {
        let wav = dir.join(&a.file);
        if a.file.contains('/') || a.file.contains("..") {
            v.failures.push(format!(
                "manifest names an audio file outside the folder: {}",
                a.file
            ));
        } else {
            match super::seal::hash_file(&wav, a.data_offset) {
                Err(e) => v
                    .failures
                    .push(format!("{} missing or unreadable: {e}", a.file)),
                Ok((sha, head_sha, len)) => {
                    if sha != a.sha256 {
                        let part = if !a.header_sha256.is_empty() && head_sha != a.header_sha256 {
                            "WAV header changed"
                        } else if len != a.bytes {
                            "length changed"
                        } else {
                            "audio data changed"
                        };
                        v.failures.push(format!(
                            "{}: SHA-256 mismatch ({part}; {len} bytes, manifest says {})",
                            a.file, a.bytes
                        ));
                    }
                }
            }
        }
    } else if manifest.is_some() && dir.join(super::layout::WAV_FILE).exists() {
        v.failures
            .push("call.wav present but the manifest records no audio".into());
    }
    // Records sealed with the call (incident.json, incident.md).
    for r in manifest.iter().flat_map(|m| m.records.iter()) {
        if r.file.contains('/') || r.file.contains("..") {
            v.failures.push(format!(
                "manifest names a record outside the folder: {}",
                r.file
            ));
            continue;
        }
        match std::fs::read(dir.join(&r.file)) {
            Err(e) => v
                .failures
                .push(format!("{} missing or unreadable: {e}", r.file)),
            Ok(b) => {
                if hex::encode(Sha256::digest(&b)) != r.sha256 {
                    v.failures.push(format!(
                        "{}: SHA-256 mismatch ({} bytes, manifest says {}; the sealed record was changed)",
                        r.file,
                        b.len(),
                        r.bytes
                    ));
                }
            }
        }
    }
    let manifest_sha = hex::encode(Sha256::digest(&bytes));
    let addendum_lines: Vec<(usize, &super::ledger::Entry)> = root
        .and_then(|r| {
            r.addenda.get(&rel_of(dir, &r.path)).map(|ix| {
                ix.iter()
                    .filter_map(|&i| r.lines[i].entry.as_ref().map(|e| (r.lines[i].line_no, e)))
                    .collect()
            })
        })
        .unwrap_or_default();
    v.failures.extend(super::addendum::check(
        dir,
        &manifest_sha,
        key,
        &addendum_lines,
    ));
    // Ledger.
    match root {
        None if ledger_elsewhere => {}
        None => v.failures.push(
            "no ledger.jsonl found above this folder (copy the whole evidence folder)".into(),
        ),
        Some(r) => {
            let rel = rel_of(dir, &r.path);
            match r.by_dir.get(&rel).map(|&i| &r.lines[i]) {
                None => v
                    .failures
                    .push("sealed call missing from the ledger".into()),
                Some(l) => {
                    let sha = hex::encode(Sha256::digest(&bytes));
                    if let Some(e) = &l.entry
                        && e.manifest_sha256 != sha
                    {
                        v.failures.push(format!(
                            "ledger line {}: manifest hash differs (manifest.json replaced or edited)",
                            l.line_no
                        ));
                    }
                    if let Some(e) = &l.error {
                        v.failures.push(format!("ledger line {}: {e}", l.line_no));
                    }
                }
            }
        }
    }
    v
}

impl Outcome {
    /// The report: one line per call (`OK <dir>`, `FAIL <dir>: <reasons>`, `OPEN <dir>: …`),
    /// one per failure of a broken ledger, one per split call (`CALL …`) and per stray folder
    /// (`WARN …`, `FAIL …` with `strict`); or JSON lines.
    pub fn lines(&self, json: bool, strict: bool) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.calls {
            if json {
                let mut line = serde_json::json!({
                    "dir": c.dir, "call_id": c.call_id, "sha256": c.sha256,
                    "ok": c.failures.is_empty(), "open": c.open, "failures": c.failures,
                });
                if let Some(p) = &c.continues {
                    line["continues"] = serde_json::json!(p);
                }
                out.push(line.to_string());
            } else if c.open {
                out.push(format!(
                    "OPEN {}: not sealed yet (call in progress or awaiting recovery)",
                    c.dir.display()
                ));
            } else if c.failures.is_empty() {
                out.push(format!("OK {}", c.dir.display()));
            } else {
                out.push(format!(
                    "FAIL {}: {}",
                    c.dir.display(),
                    c.failures.join("; ")
                ));
            }
        }
        for s in &self.split_calls {
            if json {
                let parts: Vec<_> = s
                    .parts
                    .iter()
                    .map(|(d, off)| serde_json::json!({"dir": d, "audio_offset_secs": off}))
                    .collect();
                out.push(serde_json::json!({"split_call": s.call_id, "parts": parts}).to_string());
            } else {
                let parts: Vec<String> = s
                    .parts
                    .iter()
                    .enumerate()
                    .map(|(i, (d, off))| match off {
                        Some(o) if i > 0 => format!("{} (audio from {o:.1} s)", d.display()),
                        _ => d.display().to_string(),
                    })
                    .collect();
                out.push(format!(
                    "CALL {}: one call in {} parts (callguard restarted during it): {}",
                    s.call_id,
                    s.parts.len(),
                    parts.join(" + ")
                ));
            }
        }
        for s in &self.stray {
            if json {
                out.push(
                    serde_json::json!({"stray": s.dir, "files": s.files, "ok": !strict})
                        .to_string(),
                );
            } else {
                out.push(format!(
                    "{} {}: not sealed evidence: {} with no manifest.json and no meta.json",
                    if strict { "FAIL" } else { "WARN" },
                    s.dir.display(),
                    s.files.join(", ")
                ));
            }
        }
        for l in &self.ledgers {
            if json {
                let line = serde_json::json!({
                    "ledger": l.ledger, "lines": l.lines, "ok": l.failures.is_empty(),
                    "failures": l.failures, "head": l.head,
                });
                out.push(line.to_string());
            } else if !l.failures.is_empty() {
                for f in &l.failures {
                    out.push(format!("FAIL {}: {f}", l.ledger.display()));
                }
            } else if l.head == HeadCheck::Unknown {
                out.push(format!(
                    "NOTE {}: removal of the newest calls not checked: no ledger head here (verify on the workstation, or give --head with its ledger-head.json)",
                    l.ledger.display()
                ));
            }
        }
        out
    }
}
