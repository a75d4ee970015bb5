//! `ledger.jsonl`: one line per sealed call, each chained to the previous line by its SHA-256
//! and signed, so a removed, reordered or edited line is detected. Append-only; only the
//! evidence sink writes it (one process, one lock).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `prev` of the first line.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A ledger line without its signature: the signed bytes are this, serialized compactly in
/// field order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// 1, 2, 3, …
    pub seq: u64,
    /// When the call was sealed (RFC 3339).
    pub at: String,
    /// PBX call id.
    pub call_id: String,
    /// Call folder relative to the evidence root.
    pub dir: String,
    /// SHA-256 of the exact bytes of `manifest.json`.
    pub manifest_sha256: String,
    /// SHA-256 of the previous line's bytes (without its newline); 64 zeros for the first.
    pub prev: String,
    /// `addendum` for a note added after the seal; absent on a sealed call's line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The addendum file in the call folder (`addendum-<n>.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// SHA-256 of the addendum file's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
}

/// `kind` of an addendum line.
pub const ADDENDUM: &str = "addendum";

/// What an addendum line adds to a ledger line.
#[derive(Debug, Clone, PartialEq)]
pub struct AddendumRef {
    /// File name in the call folder.
    pub file: String,
    /// SHA-256 of its bytes.
    pub sha256: String,
}

#[derive(Deserialize)]
struct SignedEntry {
    #[serde(flatten)]
    entry: Entry,
    sig: String,
}

impl Entry {
    /// Whether this line chains an addendum rather than a sealed call.
    pub fn is_addendum(&self) -> bool {
        self.kind.as_deref() == Some(ADDENDUM)
    }

    fn unsigned_json(&self) -> String {
        // A struct of strings and an integer always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The line as written: the unsigned JSON with `sig` added as the last field.
    pub fn signed_line(&self, key: &SigningKey) -> String {
        let unsigned = self.unsigned_json();
        let sig = B64.encode(key.sign(unsigned.as_bytes()).to_bytes());
        format!("{},\"sig\":\"{sig}\"}}", &unsigned[..unsigned.len() - 1])
    }
}

/// SHA-256 hex of a line's bytes.
pub fn line_hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))
}

/// The appending side.
pub struct Ledger {
    path: PathBuf,
    next_seq: u64,
    prev: String,
}

impl Ledger {
    /// Opens `<root>/ledger.jsonl`, reading its last line to continue the chain. A last line
    /// cut short by a crash is kept (verify reports it); the chain continues from its bytes.
    pub fn open(root: &Path) -> io::Result<Ledger> {
        let path = root.join(super::layout::LEDGER_FILE);
        // A last line torn by a crash or a full disk is ended with a newline, so the next line
        // starts on a line of its own; the torn bytes stay for verify to report.
        if let Ok(text) = std::fs::read(&path)
            && !text.is_empty()
            && !text.ends_with(b"\n")
        {
            let mut f = std::fs::OpenOptions::new().append(true).open(&path)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        let (next_seq, prev) = match std::fs::read_to_string(&path) {
            Ok(text) => match text.lines().rfind(|l| !l.is_empty()) {
                Some(last) => {
                    let seq = serde_json::from_str::<SignedEntry>(last)
                        .map(|e| e.entry.seq)
                        .unwrap_or_else(|_| text.lines().filter(|l| !l.is_empty()).count() as u64);
                    (seq + 1, line_hash(last))
                }
                None => (1, GENESIS.to_string()),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (1, GENESIS.to_string()),
            Err(e) => return Err(e),
        };
        Ok(Ledger {
            path,
            next_seq,
            prev,
        })
    }

    /// Whether a line for `dir` is already there (recovery after a crash between the manifest
    /// and the ledger).
    pub fn contains_dir(&self, dir: &str) -> bool {
        std::fs::read_to_string(&self.path)
            .map(|t| {
                t.lines().any(|l| {
                    serde_json::from_str::<SignedEntry>(l)
                        .is_ok_and(|e| e.entry.dir == dir && !e.entry.is_addendum())
                })
            })
            .unwrap_or(false)
    }

    /// Whether an addendum line for `file` in `dir` is already there.
    pub fn contains_addendum(&self, dir: &str, file: &str) -> bool {
        std::fs::read_to_string(&self.path)
            .map(|t| {
                t.lines().any(|l| {
                    serde_json::from_str::<SignedEntry>(l).is_ok_and(|e| {
                        e.entry.is_addendum()
                            && e.entry.dir == dir
                            && e.entry.file.as_deref() == Some(file)
                    })
                })
            })
            .unwrap_or(false)
    }

    /// The latest sealed-call line (not an addendum) of `call_id`.
    pub fn find_call(&self, call_id: &str) -> io::Result<Option<Entry>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<SignedEntry>(l).ok())
            .map(|e| e.entry)
            .rfind(|e| e.call_id == call_id && !e.is_addendum()))
    }

    /// Appends and fsyncs one line; returns its `seq`. With `addendum`, the line chains an
    /// addendum file of the sealed call whose manifest hash is `manifest_sha256`.
    pub fn append(
        &mut self,
        key: &SigningKey,
        at: String,
        call_id: &str,
        dir: &str,
        manifest_sha256: &str,
        addendum: Option<&AddendumRef>,
    ) -> io::Result<u64> {
        let entry = Entry {
            seq: self.next_seq,
            at,
            call_id: call_id.to_string(),
            dir: dir.to_string(),
            manifest_sha256: manifest_sha256.to_string(),
            prev: self.prev.clone(),
            kind: addendum.map(|_| ADDENDUM.to_string()),
            file: addendum.map(|a| a.file.clone()),
            file_sha256: addendum.map(|a| a.sha256.clone()),
        };
        let line = entry.signed_line(key);
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        f.write_all(format!("{line}\n").as_bytes())?;
        f.sync_data()?;
        self.prev = line_hash(&line);
        self.next_seq += 1;
        Ok(entry.seq)
    }

    /// SHA-256 of the last line written (what the next line's `prev` will hold).
    pub fn last_line_sha256(&self) -> &str {
        &self.prev
    }
}

/// One checked ledger line.
#[derive(Debug, Clone)]
pub struct CheckedLine {
    /// Line number (1-based).
    pub line_no: usize,
    /// The entry, if the line parses.
    pub entry: Option<Entry>,
    /// What is wrong with it, if anything.
    pub error: Option<String>,
}

/// Checks every line: format, signature, `seq` order and the `prev` chain.
pub fn check(text: &str, key: &VerifyingKey) -> Vec<CheckedLine> {
    let mut out = Vec::new();
    let mut prev = GENESIS.to_string();
    let mut expect_seq = 1u64;
    for (i, line) in text.split('\n').enumerate() {
        let line_no = i + 1;
        if line.is_empty() {
            continue;
        }
        let mut errors = Vec::new();
        let entry = match serde_json::from_str::<SignedEntry>(line) {
            Ok(se) => {
                let canonical = {
                    let u = se.entry.unsigned_json();
                    format!("{},\"sig\":\"{}\"}}", &u[..u.len() - 1], se.sig)
                };
                if canonical != line {
                    errors.push("line edited (not in the form callguard writes)".to_string());
                }
                let sig_ok = B64
                    .decode(se.sig.as_bytes())
                    .ok()
                    .and_then(|b| Signature::from_slice(&b).ok())
                    .is_some_and(|s| key.verify(se.entry.unsigned_json().as_bytes(), &s).is_ok());
                if !sig_ok {
                    errors.push("signature invalid (line edited or signed by another key)".into());
                }
                if se.entry.prev != prev {
                    errors.push(
                        "chain broken: prev does not match the line before (a line was removed, reordered or changed)"
                            .into(),
                    );
                }
                if se.entry.seq != expect_seq {
                    errors.push(format!(
                        "seq {} where {expect_seq} was expected (a line was removed or reordered)",
                        se.entry.seq
                    ));
                }
                expect_seq = se.entry.seq + 1;
                Some(se.entry)
            }
            Err(e) => {
                errors.push(format!("not a ledger line: {e}"));
                expect_seq += 1;
                None
            }
        };
        prev = line_hash(line);
        out.push(CheckedLine {
            line_no,
            entry,
            error: (!errors.is_empty()).then(|| errors.join("; ")),
        });
    }
    if !text.is_empty()
        && !text.ends_with('\n')
        && let Some(last) = out.last_mut()
    {
        {
            let msg = "last line cut short (no newline)".to_string();
            last.error = Some(match last.error.take() {
                Some(e) => format!("{e}; {msg}"),
                None => msg,
            });
        }
    }
    out
}
