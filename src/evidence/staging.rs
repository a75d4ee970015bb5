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
//! A download that did not finish (`.wav.part`) is removed: Asterisk still has that recording,
//! and the log names it.

use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, Local, Utc};

use super::layout::{
    self, CALL_DEPTH, MANIFEST_FILE, PART_FILE, STAGED_SUFFIX, STAGING_DIR, WAV_FILE,
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
        let path = staging.join(&name);
        if name.ends_with(".part") {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::warn!(file = %path.display(), "an unfinished download of a PBX recording was removed; the PBX still holds the recording")
                }
                Err(e) => out.push(Err(format!("{}: cannot remove: {e}", path.display()))),
            }
            continue;
        }
        let Some((safe, _)) = layout::staged_name_parts(&name) else {
            continue;
        };
        let waiting = waiting.get_or_insert_with(|| waiting_folders(sealer.root()));
        let placed = place(sealer, &path, safe, nanos, waiting);
        out.push(placed.map_err(|e| format!("{}: {e}", path.display())));
    }
    if !out.is_empty() {
        let _ = fsutil::sync_dir(&staging);
    }
    out
}

/// The download start in a staged name (finished or not).
fn staged_nanos(name: &str) -> Option<i64> {
    let done = name.strip_suffix(".part").unwrap_or(name);
    layout::staged_name_parts(done).map(|(_, n)| n)
}

/// Unsealed folders of PBX-recorded calls with no recording in them.
fn waiting_folders(root: &Path) -> Vec<(PathBuf, CallRecord)> {
    unsealed_folders(root)
        .into_iter()
        .filter(|d| !d.join(WAV_FILE).exists() && !d.join(PART_FILE).exists())
        .filter_map(|d| CallRecord::load(&d).ok().map(|r| (d, r)))
        .filter(|(_, r)| r.source == PBX_SOURCE)
        .collect()
}

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
        .filter(|(_, (_, r))| r.started_at <= downloaded)
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
    if let Err(e) = rec
        .save(&dir)
        .and_then(|()| move_in(file, &dir).map_err(std::io::Error::other))
    {
        let _ = std::fs::remove_file(dir.join(layout::META_FILE));
        let _ = std::fs::remove_dir(&dir);
        return Err(e.to_string());
    }
    Ok(Adopted {
        file: file.to_path_buf(),
        dir,
        call_id: rec.call_id,
    })
}

/// Renames `file` to `dir/call.wav`, durably.
fn move_in(file: &Path, dir: &Path) -> Result<(), String> {
    let wav = dir.join(WAV_FILE);
    std::fs::rename(file, &wav)
        .map_err(|e| format!("cannot move it into {}: {e}", dir.display()))?;
    fsutil::sync_dir(dir).map_err(|e| format!("cannot sync {}: {e}", dir.display()))
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
        call_id: m.call_id.clone(),
        agent: m.agent.clone(),
        caller: m.caller.clone(),
        direction: m.direction.clone(),
        channel: m.channel.clone(),
        started_at,
        ended_at,
        duration_secs: Some(m.duration_secs),
        end_cause: m.end_cause.clone(),
        warnings: Vec::new(),
        source: PBX_SOURCE.into(),
        source_name: String::new(),
        stream_encoding: String::new(),
        truncated: false,
        recovered: true,
        problems: vec![format!(
            "the PBX recording of this call was downloaded but callguard stopped before sealing it; {rel} was sealed without it, and this folder, sealed at a later start, holds it"
        )],
        gaps: 0,
        late_frames: 0,
        incident: Default::default(),
        continues: Some(Continuation {
            dir: rel.to_string(),
            manifest_sha256: manifest_sha256.to_string(),
            part: m.continues.map_or(2, |c| c.part + 1),
            // The PBX records the whole call.
            audio_offset_secs: Some(0.0),
        }),
    })
}

/// The record of a staged recording whose call left no trace here.
fn unknown_call(file: &Path, safe: &str, downloaded: DateTime<FixedOffset>) -> CallRecord {
    let ended = std::fs::metadata(file)
        .and_then(|m| m.modified())
        .map(|t| DateTime::<Local>::from(t).fixed_offset())
        .unwrap_or(downloaded);
    CallRecord {
        call_id: layout::staged_call_id(safe).unwrap_or(safe).to_string(),
        agent: String::new(),
        caller: String::new(),
        direction: String::new(),
        channel: String::new(),
        started_at: downloaded,
        ended_at: Some(ended.max(downloaded)),
        duration_secs: None,
        end_cause: "unknown (a PBX recording found at start, with no record of its call)".into(),
        warnings: Vec::new(),
        source: PBX_SOURCE.into(),
        source_name: String::new(),
        stream_encoding: String::new(),
        truncated: false,
        recovered: true,
        problems: vec![format!(
            "a PBX recording left by an earlier run, with no record of its call here: the call id is taken from the file name ({}), the start is the time of the download",
            file.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
                .trim_end_matches(STAGED_SUFFIX)
        )],
        gaps: 0,
        late_frames: 0,
        incident: Default::default(),
        continues: None,
    }
}
