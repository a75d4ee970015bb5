//! The messages that flow one way through the daemon:
//! PBX connector → [`PbxEvent`] → call tracker → [`Action`] → alert and evidence sinks,
//! and the [`Report`]s sinks publish about what they did (for the demo timeline and status).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use crate::config::WarningKind;
use crate::harassment::{FiredRule, Level, Mark};

/// A call as the PBX announced it.
#[derive(Debug, Clone, PartialEq)]
pub struct CallStart {
    /// PBX call id (any characters, ≤ 256 bytes).
    pub call_id: String,
    /// When the PBX says the call was connected; `None` = receipt time.
    pub at: Option<DateTime<FixedOffset>>,
    /// Agent extension or endpoint.
    pub agent: String,
    /// Caller number.
    pub caller: String,
    /// `inbound` or `outbound` (free text from the PBX).
    pub direction: String,
    /// Anything else worth keeping in the record (e.g. Asterisk channel name).
    pub channel: String,
}

/// Audio encodings of protocol v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// G.711 μ-law.
    Mulaw,
    /// G.711 A-law.
    Alaw,
    /// 16-bit little-endian PCM.
    L16,
}

impl Encoding {
    /// MIME spelling used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Mulaw => "audio/x-mulaw",
            Encoding::Alaw => "audio/x-alaw",
            Encoding::L16 => "audio/l16",
        }
    }
}

/// Which side of the call a media frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// The customer.
    Inbound,
    /// The agent.
    Outbound,
    /// Both, already mixed.
    Mixed,
}

/// What a PBX connector tells the tracker.
#[derive(Debug, Clone, PartialEq)]
pub enum PbxEvent {
    /// The connection is up.
    Connected {
        /// What we are connected to (URL without credentials).
        endpoint: String,
    },
    /// The connection is down; the connector is retrying.
    Disconnected {
        /// Why.
        reason: String,
        /// Time until the next attempt; `Duration::MAX`: the connector gave up (e.g. another
        /// instance took over its Asterisk application) and waits for a restart.
        retry_in: Duration,
    },
    /// A call was connected to the agent.
    CallStart(CallStart),
    /// A call ended.
    CallEnd {
        /// PBX call id.
        call_id: String,
        /// PBX end time; `None` = receipt time.
        at: Option<DateTime<FixedOffset>>,
        /// Cause as the PBX gives it (`normal`, `lost`, Q.850 text…).
        cause: String,
    },
    /// The full list of current calls, after a (re)connect.
    Snapshot(Vec<CallStart>),
    /// Audio of a call is announced.
    MediaStart {
        /// PBX call id.
        call_id: String,
        /// Encoding.
        encoding: Encoding,
        /// Samples per second.
        sample_rate: u32,
    },
    /// A chunk of audio.
    Media {
        /// PBX call id.
        call_id: String,
        /// Which side.
        track: Track,
        /// Per-track sequence number.
        seq: u64,
        /// Raw audio bytes in the announced encoding.
        payload: Vec<u8>,
    },
    /// A frame that was not understood (logged and counted by the connector).
    BadFrame {
        /// Why it was refused.
        reason: String,
    },
    /// Something on the PBX side the agent and the team lead must hear about at once (e.g. a
    /// call Asterisk is not recording); published to every sink like a sink's problem.
    Problem(Problem),
    /// A PBX-side recording of a call is available (or definitely is not). Arrives after the
    /// call's end; forwarded to the evidence sink whether or not the call is still tracked.
    Recording {
        /// PBX call id.
        call_id: String,
        /// The downloaded file, or why there is none.
        outcome: RecordingOutcome,
    },
}

/// What became of a PBX-side recording.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordingOutcome {
    /// Downloaded to `path` (a WAV file the evidence sink moves into the call's folder).
    Downloaded {
        /// Local file.
        path: std::path::PathBuf,
        /// Where it came from (e.g. the PBX's recording name).
        source: String,
    },
    /// The PBX reports the recording failed or was canceled, or it could not be fetched.
    Failed {
        /// Why, as the PBX or the download said.
        reason: String,
    },
}

/// Something a sink ran into that the agent and the team lead must hear about (not a ladder
/// warning): e.g. a recording that had to stop because the disk is full.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The call concerned, if any.
    pub call_id: Option<String>,
    /// Short machine-readable kind, e.g. `evidence.truncated`.
    pub kind: String,
    /// What happened, for people.
    pub text: String,
}

/// A tracked call, shared read-only with every sink.
#[derive(Debug, Clone, PartialEq)]
pub struct CallInfo {
    /// PBX call id.
    pub call_id: String,
    /// Agent extension or endpoint.
    pub agent: String,
    /// Caller number.
    pub caller: String,
    /// Direction as the PBX gave it.
    pub direction: String,
    /// PBX channel, where known.
    pub channel: String,
    /// Wall-clock start (the PBX `at`, or receipt time).
    pub started_at: DateTime<FixedOffset>,
    /// Adopted from a snapshot rather than seen starting.
    pub adopted: bool,
}

/// One warning that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct WarningFired {
    /// Index of the step in the ladder.
    pub step: usize,
    /// `escalate` / `terminate`.
    pub kind: WarningKind,
    /// The configured threshold (call time, not scaled).
    pub after: Duration,
    /// Call time when it fired (scaled back with the time scale).
    pub elapsed: Duration,
    /// Wall time when it fired.
    pub fired_at: DateTime<FixedOffset>,
    /// Fired later than due, because the call was adopted or restored past it.
    pub late: bool,
    /// Whether the team lead is pinged for this step.
    pub notify_lead: bool,
}

/// One mark and what it set off.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkEvent {
    /// The call.
    pub call: Arc<CallInfo>,
    /// The mark.
    pub mark: Mark,
    /// Rules this mark fired (each fires once per call).
    pub fired: Vec<FiredRule>,
    /// The call's level after the mark.
    pub level: Level,
    /// Every mark of the call so far, this one included.
    pub marks: Vec<Mark>,
    /// Whether grounds to end the call have been met (now or before).
    pub grounds_to_end: bool,
    /// The level rise this mark caused, if any.
    pub level_raised: Option<(Level, Level)>,
}

impl MarkEvent {
    /// Whether the lead must hear of this mark: it fired a rule, or took the call to level 3
    /// or more ("signs of harassment" pings the lead at once).
    pub fn pings_lead(&self) -> bool {
        !self.fired.is_empty() || self.crossed_signs().is_some()
    }

    /// The level reached when this mark took the call from below 3 to 3 or more.
    pub fn crossed_signs(&self) -> Option<Level> {
        self.level_raised
            .filter(|(from, to)| *from < Level::SIGNS && *to >= Level::SIGNS)
            .map(|(_, to)| to)
    }
}

/// What `callguard note` adds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoteField {
    /// A witness of the call.
    Witness,
    /// The agent's response.
    Response,
    /// A statement of the caller, verbatim.
    Quote,
    /// Next steps.
    Next,
}

/// A note for a call's record.
#[derive(Debug, Clone, PartialEq)]
pub struct CallNote {
    /// The call.
    pub call_id: String,
    /// Whether the call is still in progress (else it is, or will be, sealed: an addendum).
    pub in_progress: bool,
    /// Which item.
    pub field: NoteField,
    /// The text, verbatim.
    pub text: String,
    /// When it was added.
    pub at: DateTime<FixedOffset>,
}

/// What the tracker tells the sinks.
#[derive(Debug, Clone)]
pub enum Action {
    /// The PBX connection changed state.
    Connection(PbxEvent),
    /// A call is now tracked.
    CallStarted(Arc<CallInfo>),
    /// A ladder step fired for a call.
    Warning(Arc<CallInfo>, WarningFired),
    /// A call is over.
    CallEnded {
        /// The call.
        call: Arc<CallInfo>,
        /// Wall end time.
        ended_at: DateTime<FixedOffset>,
        /// Call time (scaled back with the time scale).
        duration: Duration,
        /// Cause.
        cause: String,
    },
    /// A PBX-side recording is available (or failed); see [`PbxEvent::Recording`].
    Recording {
        /// Call id.
        call_id: String,
        /// Outcome.
        outcome: RecordingOutcome,
    },
    /// A sink reported a problem (sent back through the tracker so every sink hears of it).
    Problem(Problem),
    /// The agent called the team lead to a call (`callguard escalate`, the notification button).
    Escalation {
        /// The call.
        call: Arc<CallInfo>,
        /// Call time when asked (scaled back with the time scale).
        elapsed: Duration,
        /// The agent's note, if any.
        note: Option<String>,
        /// Who asked: `cli` or `notification`.
        source: String,
    },
    /// The agent marked what the caller did; carries the rules it fired and the marks so far.
    Marked(Arc<MarkEvent>),
    /// The call's harassment level rose.
    LevelChanged {
        /// The call.
        call: Arc<CallInfo>,
        /// Level before.
        from: Level,
        /// Level now.
        to: Level,
        /// What raised it (a mark kind, `escalate`/`terminate` warning, `manual`).
        reason: String,
    },
    /// A note added to a call's record (current call, or a sealed one by id).
    Noted(Arc<CallNote>),
    /// Audio announced for a tracked call.
    MediaStart {
        /// Call id.
        call_id: String,
        /// Encoding.
        encoding: Encoding,
        /// Samples per second.
        sample_rate: u32,
    },
    /// Audio for a tracked call.
    Media {
        /// Call id.
        call_id: String,
        /// Which side.
        track: Track,
        /// Per-track sequence number.
        seq: u64,
        /// Raw bytes.
        payload: Vec<u8>,
    },
    /// The configuration was reloaded (`callguard reload`, SIGHUP) and the tracker already
    /// runs on it: a sink that applies keys live takes them from here, in order with the
    /// actions around it. Only keys [`crate::reload`] classifies as live differ from before.
    Reconfigured(Arc<crate::config::Config>),
}

impl Action {
    /// Whether this is audio (only the recorder subscribes to it).
    pub fn is_media(&self) -> bool {
        matches!(self, Action::Media { .. } | Action::MediaStart { .. })
    }
}

/// What a sink did, published for the demo timeline, `status` and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// The PBX connection is up.
    Connected(String),
    /// The PBX connection is down.
    Disconnected(String),
    /// A call is tracked.
    CallStarted(CallInfo),
    /// A warning fired (before any sink acted on it).
    WarningDue {
        /// Call id.
        call_id: String,
        /// The warning.
        warning: WarningFired,
    },
    /// A call ended.
    CallEnded {
        /// Call id.
        call_id: String,
        /// Call time.
        duration: Duration,
        /// Cause.
        cause: String,
    },
    /// A sound was played, or why not.
    Sound {
        /// Call id.
        call_id: String,
        /// `notice` or `chime`.
        what: &'static str,
        /// `Ok(device)` or `Err(reason)`.
        outcome: Result<String, String>,
    },
    /// A desktop notification was shown, or why not.
    Notification {
        /// Call id.
        call_id: String,
        /// Title shown.
        summary: String,
        /// Body shown.
        body: String,
        /// `Ok(where)` or `Err(reason)`.
        outcome: Result<String, String>,
    },
    /// Something else a sink wants the operator to know.
    Note(String),
    /// A team-lead ping was given up: the lead was not told.
    PingFailed(PingFailure),
    /// A call's evidence was sealed (folder, WAV hash, ledger line).
    Sealed {
        /// Call id.
        call_id: String,
        /// The call folder.
        dir: std::path::PathBuf,
        /// SHA-256 of `call.wav`; `None` when the call has no audio.
        sha256: Option<String>,
        /// Ledger line number.
        seq: u64,
        /// Recording stopped early (disk full, low disk).
        truncated: bool,
        /// Sealed at start-up from a recording a crash left behind.
        recovered: bool,
    },
}

/// A team-lead ping given up for good (see [`Report::PingFailed`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PingFailure {
    /// The ping's id.
    pub ping_id: String,
    /// `escalate`, `terminate`, `manual`, `mark` or `problem`.
    pub kind: String,
    /// The call, if any.
    pub call_id: String,
    /// The receiver, its secrets masked.
    pub receiver: String,
    /// Why it was given up.
    pub reason: String,
}

impl std::fmt::Display for PingFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "team-lead ping ({}) to {} FAILED: {}",
            self.kind, self.receiver, self.reason
        )
    }
}

/// Why a team lead is pinged, as the ping's outbox entry and the call's incident record both
/// name it (the two are matched on this text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscalationReason {
    /// A ladder warning: `warning:<kind> after <n> s`.
    Warning {
        /// `escalate` or `terminate`.
        kind: String,
        /// The warning's threshold in seconds.
        after_secs: u64,
    },
    /// The agent asked for the lead: `manual`.
    Manual,
    /// A harassment rule fired: its name (e.g. `abuse#1:escalate`).
    Rule(String),
    /// A mark took the call to `to`: `level <to> (<mark>)`.
    Level {
        /// The new level.
        to: u8,
        /// The mark that raised it.
        mark: String,
    },
}

impl std::fmt::Display for EscalationReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EscalationReason::Warning { kind, after_secs } => {
                write!(f, "warning:{kind} after {after_secs} s")
            }
            EscalationReason::Manual => f.write_str("manual"),
            EscalationReason::Rule(name) => f.write_str(name),
            EscalationReason::Level { to, mark } => write!(f, "level {to} ({mark})"),
        }
    }
}
