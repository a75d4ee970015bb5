//! `ledger.jsonl`: one line per sealed call, each chained to the previous line by its SHA-256
//! and signed, so a removed, reordered or edited line is detected. Append-only; only the
//! evidence sink writes it (one process, one lock).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ledger_head::{self, HeadRef};

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

/// `seq` of a ledger line, if it parses.
pub fn line_seq(line: &str) -> Option<u64> {
    serde_json::from_str::<SignedEntry>(line)
        .ok()
        .map(|e| e.entry.seq)
}

/// The appending side.
pub struct Ledger {
    path: PathBuf,
    next_seq: u64,
    prev: String,
    anchor: Option<Anchor>,
    /// A failed append could not read the file back: it is read before the next line.
    resync: bool,
}

/// Where the ledger's signed head is kept (see [`super::ledger_head`]).
struct Anchor {
    root: PathBuf,
    data_dir: PathBuf,
    /// The ledger on disk did not hold the head found at start: the head is left as found
    /// (for verify to report) rather than moved to a shortened or rewritten ledger.
    frozen: bool,
}

impl Ledger {
    /// Opens `<root>/ledger.jsonl`, reading its last line to continue the chain. A last line
    /// cut short by a crash is kept (verify reports it); the chain continues from its bytes.
    pub fn open(root: &Path) -> io::Result<Ledger> {
        Ledger::open_at(root.join(super::layout::LEDGER_FILE))
    }

    fn open_at(path: PathBuf) -> io::Result<Ledger> {
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
            anchor: None,
            resync: false,
        })
    }

    /// Where the ledger stands now: its last line's `seq` and hash (a manifest records it).
    pub fn head_ref(&self) -> HeadRef {
        HeadRef {
            seq: self.next_seq - 1,
            line_sha256: self.prev.clone(),
        }
    }

    /// Keeps the signed head of this ledger in `data_dir` from now on, after checking the one
    /// there: a ledger that no longer holds its head (newest lines removed, or rewritten) is
    /// reported in `Err`, and that head is then left untouched so verify keeps reporting it.
    pub fn anchor(&mut self, root: &Path, data_dir: &Path, key: &SigningKey) -> Result<(), String> {
        let mut anchor = Anchor {
            root: root.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            frozen: false,
        };
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(format!("{}: {e}", self.path.display())),
        };
        let verdict = match ledger_head::read(data_dir, &key.verifying_key()) {
            Ok(Some(head)) if head.is_for(root) => {
                let standing = ledger_head::standing(&text, &head);
                ledger_head::describe(&standing, &head)
            }
            // None yet (first start, or an upgrade), or the head of another evidence folder:
            // anchored to this ledger as it is now.
            Ok(_) => None,
            Err(e) => Some(format!(
                "the signed ledger head cannot be trusted ({e}); it is left as found"
            )),
        };
        if let Some(why) = verdict {
            anchor.frozen = true;
            self.anchor = Some(anchor);
            return Err(why);
        }
        let last = text
            .lines()
            .rfind(|l| !l.is_empty())
            .and_then(|l| serde_json::from_str::<SignedEntry>(l).ok())
            .map(|e| (e.entry.call_id, e.entry.dir))
            .unwrap_or_default();
        let head =
            ledger_head::LedgerHead::new(root, self.next_seq - 1, &self.prev, &last.0, &last.1);
        let written = ledger_head::write(data_dir, key, &head);
        self.anchor = Some(anchor);
        written.map_err(|e| {
            format!(
                "cannot write the ledger head {}: {e}",
                ledger_head::path(data_dir).display()
            )
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
        self.find_call_where(|id| id == call_id)
    }

    /// The latest sealed-call line (not an addendum) whose call id `is_it` accepts.
    pub fn find_call_where(&self, is_it: impl Fn(&str) -> bool) -> io::Result<Option<Entry>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str::<SignedEntry>(l).ok())
            .map(|e| e.entry)
            .rfind(|e| !e.is_addendum() && is_it(&e.call_id)))
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
        if self.resync {
            // An earlier failure left the file unread: nothing is written on an unknown tail.
            self.take_up_disk()?;
            self.resync = false;
        }
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
        if let Err(e) = crate::fsutil::append_line(&self.path, format!("{line}\n").as_bytes()) {
            // Whatever is on disk now is where the chain goes on: the last line as before when
            // the refused bytes were taken back, else the torn line, ended as at a start.
            self.resync = self.take_up_disk().is_err();
            return Err(e);
        }
        self.prev = line_hash(&line);
        self.next_seq += 1;
        if let Some(a) = self.anchor.as_ref().filter(|a| !a.frozen) {
            let head = ledger_head::LedgerHead::new(&a.root, entry.seq, &self.prev, call_id, dir);
            // The line is sealed; a head left one line behind is caught up at the next append
            // or start (the ledger holds it), so this is not a failure of the seal.
            if let Err(e) = ledger_head::write(&a.data_dir, key, &head) {
                tracing::warn!(error = %e, seq = entry.seq, "cannot update the ledger head");
            }
        }
        Ok(entry.seq)
    }

    /// Takes the chain's position from the file as it is (a torn last line ended first).
    fn take_up_disk(&mut self) -> io::Result<()> {
        let again = Ledger::open_at(self.path.clone())?;
        (self.next_seq, self.prev) = (again.next_seq, again.prev);
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Set (to the ledger's folder) in the copy of this test binary that runs with a file size
    /// limit.
    const LIMITED: &str = "CALLGUARD_TEST_LEDGER_LIMIT";
    /// Left by that copy once its checks passed: the copy did run.
    const DONE: &str = "limited-copy-done";

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn add(l: &mut Ledger, n: u32) -> io::Result<u64> {
        l.append(
            &key(),
            "2026-11-30T10:00:00+09:00".into(),
            &format!("call-{n}"),
            &format!("2026/11/30/call-{n}"),
            &"ab".repeat(32),
            None,
        )
    }

    #[test]
    fn a_line_the_disk_refused_half_way_is_taken_back() {
        if let Some(dir) = std::env::var_os(LIMITED) {
            // The limited copy: the next line fits only in part, as on a disk that fills up
            // in the middle of it.
            let dir = PathBuf::from(dir);
            let path = dir.join(super::super::layout::LEDGER_FILE);
            let before = std::fs::metadata(&path).expect("ledger").len();
            let limit = rustix::process::Rlimit {
                current: Some(before + 40),
                maximum: Some(before + 40),
            };
            rustix::process::setrlimit(rustix::process::Resource::Fsize, limit).expect("limit");
            let mut l = Ledger::open(&dir).expect("open");
            assert!(add(&mut l, 2).is_err(), "the limit must refuse the line");
            assert_eq!(
                std::fs::metadata(&path).expect("ledger").len(),
                before,
                "the refused line's bytes must be taken back"
            );
            assert_eq!(l.next_seq, 2, "the refused line takes no number");
            std::fs::write(dir.join(DONE), b"").expect("mark");
            return;
        }
        let dir = tempfile::tempdir().expect("dir");
        let mut l = Ledger::open(dir.path()).expect("open");
        add(&mut l, 1).expect("first line");
        let name = module_path!()
            .split_once("::")
            .map_or(String::new(), |(_, m)| {
                format!("{m}::a_line_the_disk_refused_half_way_is_taken_back")
            });
        // SIGXFSZ ignored (kept through exec): a write past the limit then fails with EFBIG
        // instead of ending the process, as a full disk's ENOSPC would.
        let out = std::process::Command::new("sh")
            .args(["-c", "trap '' XFSZ; exec \"$0\" \"$@\""])
            .arg(std::env::current_exe().expect("test binary"))
            .args([name.as_str(), "--exact", "--test-threads=1"])
            .env(LIMITED, dir.path())
            .output()
            .expect("run the limited copy");
        assert!(
            out.status.success(),
            "the limited copy failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            dir.path().join(DONE).exists(),
            "the limited copy did not run"
        );
        // The next line goes on the chain as if the refused one had never been tried.
        let mut l = Ledger::open(dir.path()).expect("open again");
        assert_eq!(add(&mut l, 3).expect("next line"), 2);
        let path = dir.path().join(super::super::layout::LEDGER_FILE);
        let text = std::fs::read_to_string(path).expect("read");
        let lines = check(&text, &key().verifying_key());
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines.iter().all(|l| l.error.is_none()), "{lines:?}");
    }
}
