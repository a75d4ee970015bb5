//! Recordings downloaded from the PBX into [`STAGING_DIR`] and never moved into their call's
//! folder: callguard stopped (a crash, `kill -9`, a stop while a download ran) between the
//! download and the seal. Asterisk keeps its copy, but nothing fetches it again, so the staged
//! file is the copy that counts. At start, before recovery, each goes into a call folder that
//! has a `meta.json`, which recovery then seals like any folder a crash left:
//!
//! - its call's folder, when that is still unsealed and has no recording;
//! - else a new folder continuing the call's sealed folder (sealed without the recording by an
//!   earlier recovery), with the same call details;
//! - else (no trace of the call here) a new folder named from the file, which says so.
//!
//! A download left as `.wav.part` is taken up the same way when it holds the whole WAV (the
//! crash came between its fsync and its rename); one cut short is removed, as Asterisk still
//! has that recording, and the log names it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Local, Utc};

use super::layout::{
    self, CALL_DEPTH, MANIFEST_FILE, PART_FILE, SIG_FILE, STAGED_SUFFIX, STAGING_DIR, WAV_FILE,
};
use super::manifest::{Continuation, Manifest};
use super::record::CallRecord;
use super::recovery::unsealed_folders;
use super::seal::Sealer;
use crate::fsutil;

/// The `source` of a call recorded by the PBX.
const PBX_SOURCE: &str = "asterisk";

/// Where one staged recording went.
#[derive(Debug, Clone, PartialEq)]
pub struct Adopted {
    /// The staged file, as it was named.
    pub file: PathBuf,
    /// The call folder it is in now (sealed by the recovery that follows).
    pub dir: PathBuf,
    /// Its call id.
    pub call_id: String,
}

/// Moves every recording staged before `before` (the downloads of an earlier run) into a call
/// folder, and removes the unfinished downloads of an earlier run. A file that cannot be moved
/// stays where it is for the next start; its error is in the list.
pub fn adopt(sealer: &Sealer, before: DateTime<Utc>) -> Vec<Result<Adopted, String>> {
    let staging = sealer.root().join(STAGING_DIR);
    let Ok(entries) = std::fs::read_dir(&staging) else {
        return Vec::new();
    };
    let before = before.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    // Oldest download first: two downloads of one call go in the order they were made.
    names.sort_by_key(|n| staged_nanos(n));
    let mut out = Vec::new();
    // The folders a stop left waiting for their PBX recording (each takes one).
    let mut waiting: Option<Vec<(PathBuf, CallRecord)>> = None;
    for name in names {
        let Some(nanos) = staged_nanos(&name).filter(|n| *n < before) else {
            continue;
        };
        let mut path = staging.join(&name);
        if let Some(done) = name.strip_suffix(".part") {
            match finished_part(&path, &staging.join(done)) {
                Ok(Some(p)) => path = p,
                Ok(None) => continue,
                Err(e) => {
                    out.push(Err(format!("{}: {e}", path.display())));
                    continue;
                }
            }
        }
        let Some((safe, _)) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(layout::staged_name_parts)
        else {
            continue;
        };
        let waiting = waiting.get_or_insert_with(|| waiting_folders(sealer));
        let placed = place(sealer, &path, safe, nanos, waiting);
        out.push(placed.map_err(|e| format!("{}: {e}", path.display())));
    }
    out
}

/// A download left as `.part`: renamed to `done` when it holds a whole WAV, else removed
/// (`None`).
fn finished_part(part: &Path, done: &Path) -> Result<Option<PathBuf>, String> {
    if whole_wav(part) {
        std::fs::rename(part, done).map_err(|e| format!("cannot rename: {e}"))?;
        return Ok(Some(done.to_path_buf()));
    }
    let recording = done
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(layout::staged_name_parts)
        .and_then(|(safe, _)| layout::staged_call_id(safe))
        .map(|id| format!("callguard/{id}"));
    std::fs::remove_file(part).map_err(|e| format!("cannot remove: {e}"))?;
    tracing::warn!(file = %part.display(), recording = recording.as_deref().unwrap_or("(see the file name)"),
        "a download of a PBX recording cut short by a stop was removed; the PBX still holds the recording");
    Ok(None)
}

/// Whether `path` is a RIFF/WAVE file exactly as long as its header says.
fn whole_wav(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 12];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(len) = f.metadata().map(|m| m.len()) else {
        return false;
    };
    f.read_exact(&mut head).is_ok()
        && &head[0..4] == b"RIFF"
        && &head[8..12] == b"WAVE"
        && u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]])) + 8 == len
}

/// The download start in a staged name (finished or not).
fn staged_nanos(name: &str) -> Option<i64> {
    let done = name.strip_suffix(".part").unwrap_or(name);
    layout::staged_name_parts(done).map(|(_, n)| n)
}

/// Unsealed folders of PBX-recorded calls with no recording in them. A folder signed or in
/// the ledger is sealed already, even with its `meta.json` still there (a stop between the
/// seal and its clean-up): a recording never goes into it.
fn waiting_folders(sealer: &Sealer) -> Vec<(PathBuf, CallRecord)> {
    let Ok(ledger) = sealer.ledger() else {
        return Vec::new();
    };
    unsealed_folders(sealer.root())
        .into_iter()
        .filter(|d| !d.join(WAV_FILE).exists() && !d.join(PART_FILE).exists())
        .filter(|d| !d.join(SIG_FILE).exists() && !d.join(MANIFEST_FILE).exists())
        .filter(|d| !ledger.contains_dir(&sealer.rel(d)))
        .filter_map(|d| CallRecord::load(&d).ok().map(|r| (d, r)))
        .filter(|(_, r)| r.source == PBX_SOURCE)
        .collect()
}

/// How far the PBX's clock (a call's start) may run ahead of this machine's (the download).
const CLOCK_SLACK_SECS: i64 = 300;

fn place(
    sealer: &Sealer,
    file: &Path,
    safe: &str,
    nanos: i64,
    waiting: &mut Vec<(PathBuf, CallRecord)>,
) -> Result<Adopted, String> {
    let downloaded: DateTime<FixedOffset> = DateTime::from_timestamp_nanos(nanos)
        .with_timezone(&Local)
        .fixed_offset();
    // 1. Its call's folder, still unsealed and waiting for the recording: the latest one that
    //    started before the download.
    let found = waiting
        .iter()
        .enumerate()
        .filter(|(_, (_, r))| layout::staged_id_matches(safe, &r.call_id))
        .filter(|(_, (_, r))| {
            r.started_at <= downloaded + chrono::Duration::seconds(CLOCK_SLACK_SECS)
        })
        .max_by_key(|(_, (_, r))| r.started_at)
        .map(|(i, _)| i);
    if let Some((dir, mut rec)) = found.map(|i| waiting.swap_remove(i)) {
        move_in(file, &dir)?;
        rec.problems.push(
            "callguard stopped after the PBX recording was downloaded; it was put in this folder at the next start"
                .into(),
        );
        // The recording is in: a failed note about it is no reason to leave it unsealed.
        if let Err(e) = rec.save(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot note the late recording in meta.json");
        }
        return Ok(Adopted {
            file: file.to_path_buf(),
            dir,
            call_id: rec.call_id,
        });
    }
    // 2. A new part of its call, sealed without the recording.
    let sealed = sealer
        .ledger()
        .map_err(|e| e.to_string())?
        .find_call_where(|id| layout::staged_id_matches(safe, id))
        .map_err(|e| format!("cannot read the ledger: {e}"))?;
    let rec = match sealed.and_then(|e| part_after(sealer.root(), &e.dir, &e.manifest_sha256)) {
        Some(rec) => rec,
        // 3. No trace of the call.
        None => unknown_call(file, safe, downloaded),
    };
    let (dir, _) = layout::create_call_dir(
        sealer.root(),
        &rec.call_id,
        rec.started_at.with_timezone(&Local),
    )
    .map_err(|e| format!("cannot create a call folder: {e}"))?;
    // `meta.json` before the recording: from here on a crash leaves a folder recovery seals.
    // Until the rename, the recording is still staged: the empty folder goes again.
    if let Err(e) = rec
        .save(&dir)
        .map_err(|e| e.to_string())
        .and_then(|()| move_in(file, &dir))
    {
        let _ = std::fs::remove_file(dir.join(layout::META_FILE));
        let _ = std::fs::remove_dir(&dir);
        return Err(e);
    }
    Ok(Adopted {
        file: file.to_path_buf(),
        dir,
        call_id: rec.call_id,
    })
}

/// Renames `file` to `dir/call.wav`. `Err` only when the file is still where it was: once it
/// is in, a folder that cannot be fsynced is logged, never undone (its `meta.json` is there,
/// so recovery seals it either way).
fn move_in(file: &Path, dir: &Path) -> Result<(), String> {
    let wav = dir.join(WAV_FILE);
    std::fs::rename(file, &wav)
        .map_err(|e| format!("cannot move it into {}: {e}", dir.display()))?;
    for d in [Some(dir), file.parent()].into_iter().flatten() {
        if let Err(e) = fsutil::sync_dir(d) {
            tracing::warn!(dir = %d.display(), error = %e, "cannot sync the folder of a recording taken up at start");
        }
    }
    Ok(())
}

/// The record of the part after the sealed folder `rel` (its call's details, its end).
fn part_after(root: &Path, rel: &str, manifest_sha256: &str) -> Option<CallRecord> {
    // A ledger line names a folder at call depth; anything else is not followed.
    if Path::new(rel).components().count() != CALL_DEPTH {
        return None;
    }
    let bytes = std::fs::read(root.join(rel).join(MANIFEST_FILE)).ok()?;
    let m: Manifest = serde_json::from_slice(&bytes).ok()?;
    let started_at = DateTime::parse_from_rfc3339(&m.started_at).ok()?;
    let ended_at = DateTime::parse_from_rfc3339(&m.ended_at).ok();
    Some(CallRecord {
        agent: m.agent.clone(),
        caller: m.caller.clone(),
        direction: m.direction.clone(),
        channel: m.channel.clone(),
        ended_at,
        duration_secs: Some(m.duration_secs),
        end_cause: m.end_cause.clone(),
        recovered: true,
        problems: vec![format!(
            "the PBX recording of this call was downloaded but callguard stopped before sealing it; {rel} was sealed without it, and this folder, sealed at a later start, holds it"
        )],
        continues: Some(Continuation {
            dir: rel.to_string(),
            manifest_sha256: manifest_sha256.to_string(),
            part: m.continues.map_or(2, |c| c.part + 1),
            // The PBX records the whole call.
            audio_offset_secs: Some(0.0),
        }),
        ..CallRecord::new(&m.call_id, started_at, PBX_SOURCE)
    })
}

/// The record of a staged recording whose call left no trace here.
fn unknown_call(file: &Path, safe: &str, downloaded: DateTime<FixedOffset>) -> CallRecord {
    let ended = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .map(|t| DateTime::<Local>::from(t).fixed_offset())
        .unwrap_or(downloaded);
    let call_id = layout::staged_call_id(safe).unwrap_or(safe);
    CallRecord {
        ended_at: Some(ended.max(downloaded)),
        end_cause: "unknown (a PBX recording found at start, with no record of its call)".into(),
        recovered: true,
        problems: vec![format!(
            "a PBX recording left by an earlier run, with no record of its call here: the call id is taken from the file name ({}), the start is the time of the download",
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
                .trim_end_matches(STAGED_SUFFIX)
        )],
        ..CallRecord::new(call_id, downloaded, PBX_SOURCE)
    }
}
