//! Notes after the seal: each is a new signed file `addendum-<n>.json` (+ `addendum-<n>.sig`)
//! in the sealed call's folder, chained to the sealed manifest and to the addendum before it,
//! and entered in the ledger. The sealed files are never edited.

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::Local;
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::layout::MANIFEST_FILE;
use super::ledger::{AddendumRef, Entry};
use super::seal::{SealError, Sealer, write_new};
use crate::events::{CallNote, NoteField};

/// Value of `schema` in an addendum.
pub const SCHEMA: &str = "callguard.addendum/1";
/// Notes whose call could not be found, kept so no text is lost.
pub const ORPHAN_FILE: &str = "orphan-notes.jsonl";

/// One addendum file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Addendum {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// PBX call id.
    pub call_id: String,
    /// 1, 2, 3, … within the call.
    pub n: u32,
    /// Which item of the record.
    pub field: NoteField,
    /// Verbatim.
    pub text: String,
    /// When the note was made (RFC 3339).
    pub at: String,
    /// SHA-256 of the sealed `manifest.json` it adds to.
    pub manifest_sha256: String,
    /// SHA-256 of `addendum-<n-1>.json`; `null` for the first.
    pub prev_addendum_sha256: Option<String>,
    /// Signing key id.
    pub key_id: String,
}

/// Why a note could not be added to a sealed call.
#[derive(Debug, thiserror::Error)]
pub enum AddendumError {
    /// No sealed call of that id in the ledger.
    #[error("no sealed call {0} in the evidence ledger")]
    UnknownCall(String),
    /// Writing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SealError {
    let path = path.to_path_buf();
    move |source| SealError::Io { what, path, source }
}

/// `addendum-<n>.json`.
pub fn json_name(n: u32) -> String {
    format!("addendum-{n}.json")
}

/// `addendum-<n>.sig`.
pub fn sig_name(n: u32) -> String {
    format!("addendum-{n}.sig")
}

/// The numbers of the addenda in `dir`, ascending.
pub fn numbers(dir: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("addendum-")?
                        .strip_suffix(".json")?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Writes the note as the next addendum of its sealed call; returns the file.
pub fn add(sealer: &Sealer, note: &CallNote) -> Result<PathBuf, AddendumError> {
    let mut ledger = sealer.ledger()?;
    let ledger_path = sealer.root().join(super::layout::LEDGER_FILE);
    let entry = ledger
        .find_call(&note.call_id)
        .map_err(io_err("read", &ledger_path))?
        .ok_or_else(|| AddendumError::UnknownCall(note.call_id.clone()))?;
    let dir = sealer.root().join(&entry.dir);
    let manifest =
        std::fs::read(dir.join(MANIFEST_FILE)).map_err(io_err("read", &dir.join(MANIFEST_FILE)))?;
    let manifest_sha256 = hex::encode(Sha256::digest(&manifest));
    let last = numbers(&dir).last().copied().unwrap_or(0);
    // A crash between an addendum's signature and its ledger line left it unchained: chain it
    // now, if its signature is ours and intact; anything else stays as found, for verify.
    if last > 0 && !ledger.contains_addendum(&entry.dir, &json_name(last)) {
        let jp = dir.join(json_name(last));
        let signed = std::fs::read(&jp).ok().zip(
            std::fs::read_to_string(dir.join(sig_name(last)))
                .ok()
                .and_then(|t| B64.decode(t.trim()).ok())
                .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok()),
        );
        match signed {
            Some((bytes, sig))
                if sealer
                    .key()
                    .verifying_key()
                    .verify_strict(&bytes, &sig)
                    .is_ok() =>
            {
                chain(
                    &mut ledger,
                    sealer,
                    note,
                    &entry.dir,
                    &manifest_sha256,
                    last,
                    &bytes,
                )?;
                tracing::warn!(file = %jp.display(), "an addendum left unchained by a crash was chained in the ledger");
            }
            _ => tracing::error!(file = %jp.display(),
                "an addendum is not in the ledger and its signature does not verify: left as found"),
        }
    }
    let n = last + 1;
    let prev_addendum_sha256 = if n > 1 {
        let p = dir.join(json_name(n - 1));
        let b = std::fs::read(&p).map_err(io_err("read", &p))?;
        Some(hex::encode(Sha256::digest(&b)))
    } else {
        None
    };
    let a = Addendum {
        schema: SCHEMA.into(),
        call_id: note.call_id.clone(),
        n,
        field: note.field.clone(),
        text: note.text.clone(),
        at: super::incident::rfc3339(note.at),
        manifest_sha256: manifest_sha256.clone(),
        prev_addendum_sha256,
        key_id: sealer.key_id().to_string(),
    };
    let json_path = dir.join(json_name(n));
    let mut bytes = serde_json::to_vec_pretty(&a).map_err(|e| SealError::Io {
        what: "serialize",
        path: json_path.clone(),
        source: io::Error::other(e),
    })?;
    bytes.push(b'\n');
    write_new(&json_path, &bytes)?;
    let sig = B64.encode(sealer.key().sign(&bytes).to_bytes());
    write_new(&dir.join(sig_name(n)), format!("{sig}\n").as_bytes())?;
    crate::fsutil::sync_dir(&dir).map_err(io_err("sync", &dir))?;
    chain(
        &mut ledger,
        sealer,
        note,
        &entry.dir,
        &manifest_sha256,
        n,
        &bytes,
    )?;
    Ok(json_path)
}

/// Appends the ledger line of addendum `n` (whose exact bytes are `bytes`) of the call in `dir`.
fn chain(
    ledger: &mut super::ledger::Ledger,
    sealer: &Sealer,
    note: &CallNote,
    dir: &str,
    manifest_sha256: &str,
    n: u32,
    bytes: &[u8],
) -> Result<(), AddendumError> {
    let r = AddendumRef {
        file: json_name(n),
        sha256: hex::encode(Sha256::digest(bytes)),
    };
    let ledger_path = sealer.root().join(super::layout::LEDGER_FILE);
    let at = super::incident::rfc3339(Local::now().fixed_offset());
    let seq = ledger
        .append(
            sealer.key(),
            at.clone(),
            &note.call_id,
            dir,
            manifest_sha256,
            Some(&r),
        )
        .map_err(io_err("append to", &ledger_path))?;
    sealer.hand_off(
        ledger,
        seq,
        &at,
        &note.call_id,
        dir,
        manifest_sha256,
        Some(&r),
        None,
    );
    Ok(())
}

/// Appends a note whose call is unknown to `<root>/orphan-notes.jsonl`, so its text is kept.
pub fn keep_orphan(root: &Path, note: &CallNote, why: &str) -> io::Result<PathBuf> {
    let path = root.join(ORPHAN_FILE);
    let line = serde_json::json!({
        "call_id": note.call_id,
        "field": note.field,
        "text": note.text,
        "at": super::incident::rfc3339(note.at),
        "in_progress": note.in_progress,
        "why": why,
    });
    crate::fsutil::append_line(&path, format!("{line}\n").as_bytes())?;
    Ok(path)
}

/// Checks the addenda of a sealed folder: signatures, links to the manifest and to each other,
/// and their ledger lines (`lines`: the ledger's addendum lines of this folder, with line
/// numbers). Returns what failed.
pub fn check(
    dir: &Path,
    manifest_sha256: &str,
    key: &VerifyingKey,
    lines: &[(usize, &Entry)],
) -> Vec<String> {
    let mut failures = Vec::new();
    let nums = numbers(dir);
    let mut prev: Option<String> = None;
    for (i, &n) in nums.iter().enumerate() {
        let name = json_name(n);
        if n as usize != i + 1 {
            failures.push(format!(
                "{name}: addendum {} is missing (numbers must run 1, 2, 3, …)",
                i + 1
            ));
        }
        let bytes = match std::fs::read(dir.join(&name)) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{name} unreadable: {e}"));
                continue;
            }
        };
        let sha = hex::encode(Sha256::digest(&bytes));
        let sig = std::fs::read_to_string(dir.join(sig_name(n)))
            .ok()
            .and_then(|s| B64.decode(s.trim().as_bytes()).ok())
            .and_then(|b| Signature::from_slice(&b).ok());
        match sig {
            None => failures.push(format!(
                "{}: missing or not a base64 Ed25519 signature",
                sig_name(n)
            )),
            Some(s) if key.verify(&bytes, &s).is_err() => failures.push(format!(
                "{name}: signature does not match ({name} or {} was changed)",
                sig_name(n)
            )),
            Some(_) => {}
        }
        match serde_json::from_slice::<Addendum>(&bytes) {
            Err(e) => failures.push(format!("{name}: not a callguard addendum: {e}")),
            Ok(a) => {
                if a.manifest_sha256 != manifest_sha256 {
                    failures.push(format!(
                        "{name}: refers to another manifest.json (the sealed manifest was replaced)"
                    ));
                }
                if a.n != n {
                    failures.push(format!("{name}: says it is addendum {}", a.n));
                }
                if a.prev_addendum_sha256 != prev {
                    failures.push(format!("{name}: chain to the addendum before it is broken"));
                }
            }
        }
        match lines
            .iter()
            .find(|(_, e)| e.file.as_deref() == Some(name.as_str()))
        {
            None => failures.push(format!("{name}: not in the ledger")),
            Some((no, e)) => {
                if e.file_sha256.as_deref() != Some(sha.as_str()) {
                    failures.push(format!(
                        "{name}: SHA-256 differs from ledger line {no} (addendum edited or replaced)"
                    ));
                }
            }
        }
        prev = Some(sha);
    }
    for (no, e) in lines {
        if let Some(f) = &e.file
            && !dir.join(f).is_file()
        {
            failures.push(format!("ledger line {no}: addendum {f} is missing"));
        }
    }
    failures
}
