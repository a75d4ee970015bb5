//! `manifest.json`: the signed description of one sealed call (schema `callguard.evidence/1`).
//! Field names are a contract (DESIGN.md); fields may be added, never renamed.

use serde::{Deserialize, Serialize};

/// Value of `schema`.
pub const SCHEMA: &str = "callguard.evidence/1";

/// The whole manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// PBX call id, as the PBX gave it.
    pub call_id: String,
    /// Agent extension or endpoint.
    pub agent: String,
    /// Caller number.
    pub caller: String,
    /// `inbound` / `outbound`, as the PBX gave it.
    pub direction: String,
    /// PBX channel, where known.
    #[serde(default)]
    pub channel: String,
    /// Call start, RFC 3339 with the local offset.
    pub started_at: String,
    /// Call end, RFC 3339 with the local offset.
    pub ended_at: String,
    /// Call length on the call clock.
    pub duration_secs: u64,
    /// End cause as the PBX gave it (`normal`, `lost`, …; `shutdown` when the daemon stopped).
    #[serde(default)]
    pub end_cause: String,
    /// The recording; `null` when there is none (see `problems`).
    pub audio: Option<Audio>,
    /// Ladder warnings that fired during the call.
    pub warnings: Vec<WarningRecord>,
    /// Sealed at start-up from a recording left by a crash.
    pub recovered: bool,
    /// Recording stopped before the call ended (disk full, low disk at call start, write error).
    pub truncated: bool,
    /// What went wrong with this call's evidence, for people.
    #[serde(default)]
    pub problems: Vec<String>,
    /// Workstation name.
    pub host: String,
    /// `callguard <version>`.
    pub software: String,
    /// When the seal was made.
    #[serde(default)]
    pub sealed_at: String,
    /// First 16 hex of the SHA-256 of the signing public key.
    pub key_id: String,
    /// Other files sealed with the call (`incident.json`, `incident.md`); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<RecordFile>,
    /// Where the ledger stood just before this call was sealed (its last line's `seq` and
    /// SHA-256): a copy of this folder kept elsewhere shows how long the ledger was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_head: Option<super::ledger_head::HeadRef>,
    /// Set on the second (third, …) part of a call whose recording was split by a restart of
    /// callguard during the call: the part it continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<Continuation>,
}

/// `continues`: the earlier part of the same call, and where this part's audio starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Continuation {
    /// The earlier part's folder, relative to the evidence root (as in the ledger).
    pub dir: String,
    /// SHA-256 of the earlier part's `manifest.json`.
    pub manifest_sha256: String,
    /// This part's number: 2 for the part after the first, and so on.
    pub part: u32,
    /// Where this part's audio starts, in seconds from the call's start (`null`: no audio).
    #[serde(default)]
    pub audio_offset_secs: Option<f64>,
}

/// One entry of `records`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordFile {
    /// File name in the call folder.
    pub file: String,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Its length.
    pub bytes: u64,
}

/// `audio`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Audio {
    /// File name in the call folder (`call.wav`).
    pub file: String,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// File length.
    pub bytes: u64,
    /// SHA-256 of the bytes before the sample data (the WAV header), so verify can say which
    /// part changed.
    #[serde(default)]
    pub header_sha256: String,
    /// Offset of the first sample byte.
    #[serde(default)]
    pub data_offset: u64,
    /// Encoding of the file's samples (`pcm_s16le`).
    pub encoding: String,
    /// Encoding of the audio as it arrived (`audio/x-mulaw`, …), where it differs.
    #[serde(default)]
    pub stream_encoding: String,
    /// Samples per second.
    pub sample_rate: u32,
    /// 1, or 2 (left customer, right agent).
    pub channels: u16,
    /// Frames missing from the stream (a `seq` gap), filled with silence.
    pub gaps: u64,
    /// Frames that came out of order or twice and could not be placed (counted, not written).
    #[serde(default)]
    pub late_frames: u64,
    /// Length of the audio.
    #[serde(default)]
    pub audio_secs: f64,
    /// `stream` (protocol v1 media frames) or `asterisk` (recorded by the PBX).
    pub source: String,
    /// The PBX's name of the recording, for `asterisk`.
    #[serde(default)]
    pub source_name: String,
}

/// One entry of `warnings`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WarningRecord {
    /// `escalate` / `terminate`.
    pub kind: String,
    /// The configured threshold.
    pub after_secs: u64,
    /// When it fired, RFC 3339.
    pub fired_at: String,
}

/// The workstation's host name.
pub fn host_name() -> String {
    crate::host::name()
}

/// `software`.
pub fn software() -> String {
    format!("callguard {}", env!("CARGO_PKG_VERSION"))
}
