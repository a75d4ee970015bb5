//! Where a call's evidence lives: `<root>/YYYY/MM/DD/<HHMMSS>_<safe-call-id>/`. A PBX call id
//! may hold any character; it never becomes a path as-is.

use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Local};
use sha2::{Digest, Sha256};

use crate::fsutil;

/// How deep call folders are below the evidence root (`YYYY/MM/DD/<call>`): only folders at
/// this depth are calls, so a call's file put higher up can never hide the calls below it.
pub const CALL_DEPTH: usize = 4;

/// Recorded audio while the call runs.
pub const PART_FILE: &str = "call.wav.part";
/// The sealed recording.
pub const WAV_FILE: &str = "call.wav";
/// The signed description of the call.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Base64 Ed25519 signature over the exact bytes of [`MANIFEST_FILE`].
pub const SIG_FILE: &str = "manifest.sig";
/// What is known of a call not sealed yet (for recovery after a crash); removed once sealed.
pub const META_FILE: &str = "meta.json";
/// Space held back so a full disk still leaves room to seal; removed before sealing.
pub const RESERVE_FILE: &str = ".reserve";
/// The hash-chained list of sealed calls, at the root.
pub const LEDGER_FILE: &str = "ledger.jsonl";

/// Where recordings downloaded from the PBX wait for their call's folder, below the root (so
/// moving one in is a rename).
pub const STAGING_DIR: &str = ".staging";
/// How a staged recording's name begins.
const STAGED_PREFIX: &str = "asterisk-";
/// How a finished staged recording's name ends (`.part` follows while it downloads).
pub const STAGED_SUFFIX: &str = ".wav";

/// Longest kept part of the reduced id.
const SAFE_ID_MAX: usize = 64;

/// The name of a recording of `call_id` whose download started at `nanos` (ns since 1970):
/// `asterisk-<safe call id>-<nanos>.wav`. The call id is found again by comparing
/// [`safe_call_id`] of a known id with it (see [`staged_name_parts`]).
pub fn staged_name(call_id: &str, nanos: i64) -> String {
    format!(
        "{STAGED_PREFIX}{}-{nanos}{STAGED_SUFFIX}",
        safe_call_id(call_id)
    )
}

/// The safe call id and start of a staged recording's name (`None`: not one of callguard's).
pub fn staged_name_parts(name: &str) -> Option<(&str, i64)> {
    let (id, nanos) = name
        .strip_prefix(STAGED_PREFIX)?
        .strip_suffix(STAGED_SUFFIX)?
        .rsplit_once('-')?;
    Some((id, nanos.parse().ok()?))
}

/// Whether the staged name part `safe` is `call_id`'s: its [`safe_call_id`], or the bare reduced
/// id that earlier versions wrote (no hash: two ids that reduce alike both match).
pub fn staged_id_matches(safe: &str, call_id: &str) -> bool {
    safe == safe_call_id(call_id) || safe == reduced_id(call_id)
}

/// The call id a staged name part stands for, when the name holds all of it (an id made only of
/// `[A-Za-z0-9._-]`, 64 characters at most, as Asterisk's are).
pub fn staged_call_id(safe: &str) -> Option<&str> {
    let (id, _) = safe.rsplit_once('-')?;
    (safe_call_id(id) == safe).then_some(id)
}

fn reduced_id(call_id: &str) -> String {
    call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(SAFE_ID_MAX)
        .collect()
}

/// The id reduced to `[A-Za-z0-9._-]` (others become `_`), cut to 64 characters, plus `-` and
/// 8 hex of the SHA-256 of the full id, so distinct ids stay distinct.
pub fn safe_call_id(call_id: &str) -> String {
    let reduced = reduced_id(call_id);
    let digest = Sha256::digest(call_id.as_bytes());
    let tag = hex::encode(&digest[..4]);
    if reduced.is_empty() {
        tag
    } else {
        format!("{reduced}-{tag}")
    }
}

/// The folder name for a call that started at `started` (local time).
pub fn folder_name(call_id: &str, started: DateTime<Local>) -> String {
    format!("{}_{}", started.format("%H%M%S"), safe_call_id(call_id))
}

/// Creates a new call folder under `root` (0700, parents too). An existing folder is never
/// reused: a `.2`, `.3`, … suffix is added instead. Returns the absolute folder and its path
/// relative to `root` (as written in the ledger).
pub fn create_call_dir(
    root: &Path,
    call_id: &str,
    started: DateTime<Local>,
) -> io::Result<(PathBuf, String)> {
    let day = started.format("%Y/%m/%d").to_string();
    let parent = root.join(&day);
    fsutil::create_private_dir(&parent)?;
    let base = folder_name(call_id, started);
    for n in 1..10_000u32 {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        let dir = parent.join(&name);
        match create_dir_0700(&dir) {
            Ok(()) => return Ok((dir, format!("{day}/{name}"))),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("too many folders named {base} under {}", parent.display()),
    ))
}

/// Creates exactly one folder with mode 0700; fails if anything exists at `dir`.
fn create_dir_0700(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_ids_stay_one_plain_component() {
        for id in [
            "../../etc/x",
            "a/b",
            "a\0b",
            "..",
            ".",
            "",
            "通話-42",
            &"x".repeat(10 * 1024),
        ] {
            let s = safe_call_id(id);
            assert!(s.len() <= SAFE_ID_MAX + 9, "{s}");
            assert!(!s.contains('/') && !s.contains('\0'), "{s}");
            assert!(s != "." && s != "..");
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            );
        }
        assert_ne!(safe_call_id("a/b"), safe_call_id("a_b"));
        assert_eq!(
            safe_call_id("c-42"),
            format!("c-42-{}", &hex::encode(Sha256::digest(b"c-42"))[..8])
        );
    }

    #[test]
    fn existing_folders_are_never_reused() {
        let root = tempfile::tempdir().unwrap();
        let t = Local::now();
        let (a, ra) = create_call_dir(root.path(), "../../etc/x", t).unwrap();
        let (b, rb) = create_call_dir(root.path(), "../../etc/x", t).unwrap();
        assert_ne!(a, b);
        assert_ne!(ra, rb);
        for d in [&a, &b] {
            assert!(d.starts_with(root.path()));
            let canon = d.canonicalize().unwrap();
            assert!(canon.starts_with(root.path().canonicalize().unwrap()));
        }
    }
}
