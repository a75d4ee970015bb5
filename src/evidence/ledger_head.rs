//! The signed ledger head: `<data dir>/ledger-head.json`, outside the evidence folder, names the
//! last line of the ledger (its `seq` and SHA-256) and is rewritten after every append. A chain
//! cannot see its own tail: without this anchor, removing the newest lines of `ledger.jsonl`
//! together with their folders leaves a ledger that verifies. With it, `callguard verify` on
//! the workstation reports a ledger shorter than its last known head.
//!
//! The file is one JSON object: the head's fields, then `sig` (base64 Ed25519 over the compact
//! JSON of the fields, as for ledger lines). It is written to a temp file, fsynced and renamed,
//! so a crash leaves the old head or the new one, never half of either.

use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::ledger::{self, GENESIS};
use crate::fsutil;

/// The head file's name in the data dir.
pub const HEAD_FILE: &str = "ledger-head.json";
/// Value of `schema`.
pub const SCHEMA: &str = "callguard.ledger-head/1";

/// Where the head of the evidence root's ledger is kept.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(HEAD_FILE)
}

/// The head's fields (the signed part).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LedgerHead {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The evidence root whose ledger this is (absolute, as the daemon opened it).
    pub root: String,
    /// `seq` of the last line (0: the ledger is empty).
    pub seq: u64,
    /// SHA-256 of the last line's bytes (64 zeros when empty).
    pub line_sha256: String,
    /// Call of the last line, for the report.
    pub call_id: String,
    /// Folder of the last line.
    pub dir: String,
    /// When the head was written (RFC 3339).
    pub at: String,
}

/// The head as a manifest carries it: where the ledger stood before the call was sealed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeadRef {
    /// `seq` of the ledger's last line then (0: empty).
    pub seq: u64,
    /// SHA-256 of that line.
    pub line_sha256: String,
}

#[derive(Deserialize)]
struct SignedHead {
    #[serde(flatten)]
    head: LedgerHead,
    sig: String,
}

/// Why a head could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The head file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Not a head callguard wrote, or its signature does not match the key.
    #[error("{path}: {why}")]
    Invalid {
        /// The head file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl LedgerHead {
    /// A head for `root` at `seq` / `line_sha256`.
    pub fn new(root: &Path, seq: u64, line_sha256: &str, call_id: &str, dir: &str) -> LedgerHead {
        LedgerHead {
            schema: SCHEMA.into(),
            root: root.display().to_string(),
            seq,
            line_sha256: line_sha256.to_string(),
            call_id: call_id.to_string(),
            dir: dir.to_string(),
            at: chrono::Local::now()
                .fixed_offset()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
        }
    }

    fn unsigned_json(&self) -> String {
        // A struct of strings and an integer always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether this head belongs to the ledger under `root`.
    pub fn is_for(&self, root: &Path) -> bool {
        let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        canon(Path::new(&self.root)) == canon(root)
    }
}

/// Writes the head atomically ([`fsutil::write_atomic`]).
pub fn write(data_dir: &Path, key: &SigningKey, head: &LedgerHead) -> io::Result<()> {
    let unsigned = head.unsigned_json();
    let sig = B64.encode(key.sign(unsigned.as_bytes()).to_bytes());
    let text = format!("{},\"sig\":\"{sig}\"}}\n", &unsigned[..unsigned.len() - 1]);
    fsutil::write_atomic(data_dir, HEAD_FILE, text.as_bytes())
}

/// Reads and checks the head under `data_dir`: `Ok(None)` when there is none.
pub fn read(data_dir: &Path, key: &VerifyingKey) -> Result<Option<LedgerHead>, HeadError> {
    read_file(&path(data_dir), key)
}

/// Reads and checks a head file (e.g. one copied with the evidence): `Ok(None)` when absent.
pub fn read_file(p: &Path, key: &VerifyingKey) -> Result<Option<LedgerHead>, HeadError> {
    let p = p.to_path_buf();
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(HeadError::Io { path: p, source }),
    };
    let invalid = |why: String| HeadError::Invalid {
        path: p.clone(),
        why,
    };
    let signed: SignedHead = serde_json::from_str(text.trim_end())
        .map_err(|e| invalid(format!("not a ledger head: {e}")))?;
    if signed.head.schema != SCHEMA {
        return Err(invalid(format!("unknown schema {:?}", signed.head.schema)));
    }
    let ok = B64
        .decode(signed.sig.as_bytes())
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .is_some_and(|s| {
            key.verify(signed.head.unsigned_json().as_bytes(), &s)
                .is_ok()
        });
    if !ok {
        return Err(invalid(
            "signature invalid (the head was edited or signed by another key)".into(),
        ));
    }
    Ok(Some(signed.head))
}

/// How a ledger stands against its head.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    /// The head's line is in the ledger, unchanged (the ledger may have grown past it).
    Holds,
    /// The ledger ends before the head: lines `last_seq + 1 ..= head.seq` are gone.
    Shorter {
        /// The ledger's last `seq` (0: empty).
        last_seq: u64,
    },
    /// The line at the head's `seq` is not the one the head recorded.
    Differs,
}

/// Compares the ledger text with `head`.
pub fn standing(ledger_text: &str, head: &LedgerHead) -> Standing {
    if head.seq == 0 {
        return Standing::Holds;
    }
    let mut last_seq = 0;
    let mut at_seq = false;
    for line in ledger_text.split('\n').filter(|l| !l.is_empty()) {
        // The very bytes the head names (also a line torn by a crash, which does not parse).
        if ledger::line_hash(line) == head.line_sha256 {
            return Standing::Holds;
        }
        if let Some(seq) = ledger::line_seq(line) {
            at_seq |= seq == head.seq;
            last_seq = last_seq.max(seq);
        }
    }
    if at_seq || last_seq > head.seq {
        // Lines past the head exist but the head's own line is gone.
        Standing::Differs
    } else {
        Standing::Shorter { last_seq }
    }
}

/// The reason verify gives for a ledger that does not hold its head.
pub fn describe(standing: &Standing, head: &LedgerHead) -> Option<String> {
    let last = if head.dir.is_empty() {
        String::new()
    } else {
        format!("; its last call was {} in {}", head.call_id, head.dir)
    };
    match standing {
        Standing::Holds => None,
        Standing::Shorter { last_seq } => {
            let missing = head.seq - last_seq;
            let range = if missing == 1 {
                format!("line {}", head.seq)
            } else {
                format!("lines {}–{}", last_seq + 1, head.seq)
            };
            Some(format!(
                "the newest {missing} ledger line(s) are missing ({range}): the ledger ends at seq {last_seq} but its signed head (written {}) is at seq {}{last} — the newest calls were removed",
                head.at, head.seq
            ))
        }
        Standing::Differs => Some(format!(
            "ledger line {} is not the one its signed head (written {}) recorded{last} — the ledger was rewritten",
            head.seq, head.at
        )),
    }
}

/// The head of an empty ledger.
pub fn empty(root: &Path) -> LedgerHead {
    LedgerHead::new(root, 0, GENESIS, "", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_round_trips_and_an_edit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let head = LedgerHead::new(dir.path(), 3, &"a".repeat(64), "c-3", "2026/11/29/x");
        write(dir.path(), &key, &head).unwrap();
        assert_eq!(read(dir.path(), &key.verifying_key()).unwrap(), Some(head));
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        std::fs::write(path(dir.path()), text.replace("\"seq\":3", "\"seq\":2")).unwrap();
        assert!(matches!(
            read(dir.path(), &key.verifying_key()),
            Err(HeadError::Invalid { .. })
        ));
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(read(dir.path(), &other.verifying_key()).is_err());
    }
}
