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
use super::layout::{LEDGER_FILE, MANIFEST_FILE, META_FILE, PART_FILE, SIG_FILE};
use super::ledger::{self, CheckedLine};
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
}

/// Everything verify found.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Outcome {
    /// Per call.
    pub calls: Vec<CallVerdict>,
    /// Per evidence root.
    pub ledgers: Vec<LedgerVerdict>,
}

impl Outcome {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.calls.iter().all(|c| c.failures.is_empty())
            && self.ledgers.iter().all(|l| l.failures.is_empty())
    }
}

struct Root {
    path: PathBuf,
    lines: Vec<CheckedLine>,
    by_dir: HashMap<String, usize>,
    addenda: HashMap<String, Vec<usize>>,
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
    fn walk(d: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        if depth > 4 {
            return;
        }
        if depth > 0 && is_call_dir(d) {
            out.push(d.to_path_buf());
            return;
        }
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, 0, &mut out);
    out.sort();
    out
}

/// Verifies `paths` (call folders or evidence roots) against `key`.
pub fn verify_paths(paths: &[PathBuf], key: &VerifyingKey) -> Result<Outcome, UsageError> {
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
        } else if p.join(LEDGER_FILE).is_file() || !call_dirs_under(&p).is_empty() {
            (Some(p.clone()), true)
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
            for d in call_dirs_under(&p) {
                calls.push((d, root_idx));
            }
        } else {
            calls.push((p, root_idx));
        }
    }
    let mut seen_dirs: HashMap<usize, Vec<String>> = HashMap::new();
    for (dir, root_idx) in calls {
        let root = root_idx.map(|i| &roots[i]);
        let v = verify_call(&dir, root, key);
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
                match std::fs::read(r.path.join(&e.dir).join(MANIFEST_FILE)) {
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
        out.ledgers.push(LedgerVerdict {
            ledger: r.path.join(LEDGER_FILE),
            lines: r.lines.len(),
            failures,
        });
    }
    Ok(out)
}

fn load_root(root: &Path, key: &VerifyingKey) -> Root {
    let text = std::fs::read_to_string(root.join(LEDGER_FILE)).unwrap_or_default();
    let lines = ledger::check(&text, key);
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
        lines,
        by_dir,
        addenda,
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
fn verify_call(dir: &Path, root: Option<&Root>, key: &VerifyingKey) -> CallVerdict {
    let mut v = CallVerdict {
        dir: dir.to_path_buf(),
        call_id: None,
        sha256: None,
        failures: Vec::new(),
        open: false,
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
    /// one per failure of a broken ledger; or JSON lines.
    pub fn lines(&self, json: bool) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.calls {
            if json {
                let line = serde_json::json!({
                    "dir": c.dir, "call_id": c.call_id, "sha256": c.sha256,
                    "ok": c.failures.is_empty(), "open": c.open, "failures": c.failures,
                });
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
        for l in &self.ledgers {
            if json {
                let line = serde_json::json!({
                    "ledger": l.ledger, "lines": l.lines, "ok": l.failures.is_empty(), "failures": l.failures,
                });
                out.push(line.to_string());
            } else {
                for f in &l.failures {
                    out.push(format!("FAIL {}: {f}", l.ledger.display()));
                }
            }
        }
        out
    }
}
