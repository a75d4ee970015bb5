//! Start-up recovery: every call folder a crash left unsealed (it still holds `meta.json` or a
//! `call.wav.part`) is repaired and sealed with `"recovered": true`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Local};

use super::layout::{CALL_DEPTH, MANIFEST_FILE, META_FILE, PART_FILE, RESERVE_FILE, SIG_FILE};
use super::seal::{CallRecord, Sealed, Sealer};

/// Folders under `root` (down to `YYYY/MM/DD/<call>`) holding `meta.json` or `call.wav.part`.
pub fn unsealed_folders(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk(root, 0, &mut found);
    found.sort();
    found
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    if depth == CALL_DEPTH {
        if dir.join(META_FILE).is_file() || dir.join(PART_FILE).is_file() {
            found.push(dir.to_path_buf());
        }
        return;
    }
    // Above the call folders a call's file is no call (callguard never puts one there): it is
    // never sealed as one, and the calls below are still found.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        // Never follow links out of the evidence tree.
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            walk(&e.path(), depth + 1, found);
        }
    }
}

/// Repairs and seals every unsealed folder. Returns what was sealed and what could not be.
pub fn recover(sealer: &Sealer) -> Vec<Result<Sealed, String>> {
    unsealed_folders(sealer.root())
        .into_iter()
        .filter_map(|dir| recover_one(sealer, &dir).transpose())
        .collect()
}

fn recover_one(sealer: &Sealer, dir: &Path) -> Result<Option<Sealed>, String> {
    let show = dir.display();
    if dir.join(SIG_FILE).is_file() && dir.join(MANIFEST_FILE).is_file() {
        // The crash came after the signature: only the ledger line (and clean-up) may be missing.
        let call_id = std::fs::read(dir.join(MANIFEST_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<super::manifest::Manifest>(&b).ok())
            .map(|m| m.call_id)
            .unwrap_or_default();
        sealer
            .ensure_in_ledger(dir, &call_id)
            .map_err(|e| format!("{show}: {e}"))?;
        let _ = std::fs::remove_file(dir.join(META_FILE));
        let _ = std::fs::remove_file(dir.join(RESERVE_FILE));
        return Ok(None);
    }
    // A folder the ledger already holds was sealed: a missing signature there is damage (or
    // tampering), never a crash to repair. It is left exactly as found, for verify to report.
    let sealed = sealer
        .ledger()
        .map(|l| l.contains_dir(&sealer.rel(dir)))
        .map_err(|e| format!("{show}: {e}"))?;
    if sealed {
        return Err(format!(
            "{show}: sealed in the ledger but its manifest.sig is missing; left untouched (run callguard verify)"
        ));
    }
    // An unsigned manifest was never sealed: it is made again below.
    let _ = std::fs::remove_file(dir.join(MANIFEST_FILE));
    let part = dir.join(PART_FILE);
    let mut rec = match CallRecord::load(dir) {
        Ok(r) => r,
        Err(e) => fallback_record(dir, &e.to_string()),
    };
    rec.recovered = true;
    if part.is_file()
        && let Err(e) = super::wav::repair(&part)
    {
        {
            rec.problems
                .push(format!("the WAV header could not be repaired: {e}"));
        }
    }
    if rec.ended_at.is_none() {
        let last = [part.as_path(), &dir.join(META_FILE)]
            .iter()
            .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .max()
            .map(|t| DateTime::<Local>::from(t).fixed_offset())
            .unwrap_or_else(|| Local::now().fixed_offset());
        rec.ended_at = Some(last.max(rec.started_at));
        rec.end_cause =
            "unknown (callguard stopped during the call; sealed at the next start)".into();
        rec.problems
            .push("callguard stopped during the call; the recording ends at its last write".into());
    } else if rec.source == "asterisk" && !dir.join(super::layout::WAV_FILE).exists() {
        rec.problems
            .push("callguard stopped before the PBX recording arrived".into());
    }
    sealer
        .seal(dir, &rec)
        .map(Some)
        .map_err(|e| format!("{show}: {e}"))
}

fn fallback_record(dir: &Path, why: &str) -> CallRecord {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started = std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .map(|t| DateTime::<Local>::from(t).fixed_offset())
        .unwrap_or_else(|_| Local::now().fixed_offset());
    CallRecord {
        recovered: true,
        problems: vec![format!(
            "meta.json unreadable ({why}): call id taken from the folder name, start from its time"
        )],
        ..CallRecord::new(&name, started, "stream")
    }
}

/// How far apart two start times of the same call may be and still be the same call (the
/// tracker derives the start from the PBX's time; a re-announced call may round it
/// differently).
const SAME_START_SECS: i64 = 2;

/// The earlier part of a call whose recording a restart of callguard split: the latest sealed
/// folder of `call_id` that started at the same time. `None` for a call seen for the first
/// time, or a call id the PBX reused for another call.
pub fn earlier_part(
    sealer: &Sealer,
    call_id: &str,
    started_at: DateTime<chrono::FixedOffset>,
) -> Option<super::manifest::Continuation> {
    let entry = sealer.ledger().ok()?.find_call(call_id).ok()??;
    let bytes = std::fs::read(sealer.root().join(&entry.dir).join(MANIFEST_FILE)).ok()?;
    let m: super::manifest::Manifest = serde_json::from_slice(&bytes).ok()?;
    let theirs = DateTime::parse_from_rfc3339(&m.started_at).ok()?;
    if (theirs - started_at).num_seconds().abs() > SAME_START_SECS {
        return None;
    }
    Some(super::manifest::Continuation {
        dir: entry.dir,
        manifest_sha256: entry.manifest_sha256,
        part: m.continues.map_or(2, |c| c.part + 1),
        audio_offset_secs: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_folders_at_the_calls_depth_are_unsealed_calls() {
        let root = tempfile::tempdir().unwrap();
        let day = root.path().join("2026/11/30");
        let call = day.join("120000_c-1");
        std::fs::create_dir_all(&call).unwrap();
        std::fs::write(call.join(META_FILE), "{}").unwrap();
        // Planted where no call lives: neither sealed as a call nor hiding the one below.
        std::fs::write(day.join(META_FILE), "{}").unwrap();
        std::fs::write(root.path().join("2026").join(PART_FILE), "x").unwrap();
        assert_eq!(unsealed_folders(root.path()), vec![call]);
    }
}
