//! The control socket's wire format: line-delimited JSON requests and answers, and the
//! documents they carry.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::calls::{CallStatus, TrackerStatus};
use crate::escalation::outbox::OutboxStatus;

/// Longest request line accepted.
pub const MAX_LINE: u64 = 64 * 1024;
/// How long the daemon waits for a client to send its request, and a client for the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How many recent errors `status` keeps.
pub const RECENT_ERRORS: usize = 20;

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The daemon's state.
    Status,
    /// Call the team lead to the agent's current call.
    Escalate {
        /// A note for the lead.
        #[serde(default)]
        note: Option<String>,
    },
    /// Mark what the caller does on the current call (or `call`).
    Mark {
        /// `abuse`, `threat`, … (see [`crate::harassment::MarkKind`]).
        kind: String,
        /// The caller's words, verbatim.
        #[serde(default)]
        quote: Option<String>,
        /// A specific call; absent = the agent's current call.
        #[serde(default)]
        call: Option<String>,
    },
    /// Add to the record of the current call, or of a past one by id.
    Note {
        /// A specific call; absent = the agent's current call.
        #[serde(default)]
        call: Option<String>,
        /// Which item of the record.
        field: crate::events::NoteField,
        /// The text, verbatim.
        text: String,
    },
    /// Read the configuration files again and apply them (see [`crate::reload`]). Answered
    /// with the [`crate::reload::Record`]; refused with `config_invalid` (the daemon keeps its
    /// configuration) or `needs_restart` (valid, but nothing was applied).
    Reload,
}

/// An answer on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    /// Whether the request was carried out.
    pub ok: bool,
    /// The answer's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Machine-readable reason when not ok: `no_current_call`, `bad_request`,
    /// `unknown_command`, `refused`, `unavailable`, `config_invalid`, `needs_restart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Reason for people when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    /// A success carrying `result`.
    pub fn ok(result: impl Serialize) -> Response {
        Response {
            ok: true,
            result: Some(serde_json::to_value(result).unwrap_or_default()),
            code: None,
            error: None,
        }
    }

    /// A refusal with a machine-readable `code`.
    pub fn err(code: &str, error: impl Into<String>) -> Response {
        Response {
            ok: false,
            result: None,
            code: Some(code.into()),
            error: Some(error.into()),
        }
    }
}

/// The answer to `escalate`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EscalateResult {
    /// The call the lead is called to.
    pub call: CallStatus,
    /// How many receivers are pinged (0 = none configured).
    pub receivers: usize,
}

/// The answer to `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DaemonStatus {
    /// Software version.
    pub version: String,
    /// Daemon process id.
    pub pid: u32,
    /// When the daemon started (RFC 3339).
    pub started_at: String,
    /// PBX connection and calls, from the tracker; `None` if it did not answer.
    pub tracker: Option<TrackerStatusView>,
    /// Receivers of team-lead pings (secrets in URLs masked).
    pub webhooks: Vec<String>,
    /// The ping outbox.
    pub outbox: OutboxStatus,
    /// What this workstation can do.
    pub capabilities: Capabilities,
    /// Latest problems, oldest first.
    pub recent_errors: Vec<ErrorEntry>,
    /// The daemon's parts (connector, tracker, sinks, control) and their states.
    #[serde(default)]
    pub parts: Vec<crate::supervisor::PartStatus>,
    /// The floor bus link and backlog, with `[floor]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<crate::floor::state::FloorStatus>,
    /// The last configuration reload since start, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_reload: Option<crate::reload::Record>,
}

/// [`TrackerStatus`], (de)serializable for clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackerStatusView {
    /// `connected`, `disconnected` or `connecting`.
    pub pbx: String,
    /// Endpoint or last reason.
    pub pbx_detail: String,
    /// Calls in progress.
    pub calls: Vec<CallStatus>,
    /// Refused frames since start.
    pub bad_frames: u64,
    /// The last refused frame's reason.
    pub last_bad_frame: Option<String>,
}

impl From<TrackerStatus> for TrackerStatusView {
    fn from(t: TrackerStatus) -> Self {
        TrackerStatusView {
            pbx: t.pbx,
            pbx_detail: crate::redact::redact(&t.pbx_detail),
            calls: t.calls,
            bad_frames: t.bad_frames,
            last_bad_frame: t.last_bad_frame,
        }
    }
}

/// What this workstation can do.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Capabilities {
    /// Desktop notifications.
    pub notifications: NotificationCapability,
    /// Local audio output.
    pub audio: AudioCapability,
    /// Evidence storage.
    pub evidence: EvidenceCapability,
}

/// The notification server on the session bus.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NotificationCapability {
    /// A server answered.
    pub present: bool,
    /// Its name and version.
    pub server: Option<String>,
    /// It supports action buttons (「上長を呼ぶ」).
    pub actions: bool,
    /// Why none answered.
    pub error: Option<String>,
}

/// The audio output, as last seen by the player.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AudioCapability {
    /// `ok`, `missing`, `off` or `unknown` (nothing played yet).
    pub state: String,
    /// Device, or why it is missing.
    pub detail: Option<String>,
}

/// The evidence folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EvidenceCapability {
    /// Folder.
    pub dir: String,
    /// Free space there (MiB), if known.
    pub free_mb: Option<u64>,
    /// The configured minimum to start a recording.
    pub min_free_mb: u64,
    /// Why the free space is unknown.
    pub error: Option<String>,
}

/// One recent problem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorEntry {
    /// When (RFC 3339).
    pub at: String,
    /// What.
    pub what: String,
    /// How many times more it happened in a row (`at` is the latest).
    #[serde(default)]
    pub repeats: u32,
}
