//! What is known about a call besides its audio while it runs: the [`CallRecord`] kept in
//! `meta.json` (so a crash loses none of it), with the marks, levels, notes and escalations
//! ([`IncidentData`]) that the incident record is later built from. Sealing
//! ([`super::seal`]) and the incident record ([`super::incident`]) read it; it depends on
//! neither.

use std::io;
use std::path::Path;

use chrono::{DateTime, FixedOffset, Local, SecondsFormat};
use serde::{Deserialize, Serialize};

use super::layout::META_FILE;
use super::manifest::{self, WarningRecord};
use crate::events::{EscalationReason, NoteField};
use crate::fsutil;
use crate::harassment::{FiredRule, Level, Mark, RuleAction};

/// Everything known about a call besides its audio; kept in `meta.json` while the call runs so
/// a crash loses none of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CallRecord {
    /// PBX call id.
    pub call_id: String,
    /// Agent.
    pub agent: String,
    /// Caller.
    pub caller: String,
    /// Direction.
    pub direction: String,
    /// PBX channel.
    #[serde(default)]
    pub channel: String,
    /// Start (as the tracker has it).
    pub started_at: DateTime<FixedOffset>,
    /// End, once known.
    #[serde(default)]
    pub ended_at: Option<DateTime<FixedOffset>>,
    /// Call time, once known.
    #[serde(default)]
    pub duration_secs: Option<u64>,
    /// End cause, once known.
    #[serde(default)]
    pub end_cause: String,
    /// Warnings so far.
    #[serde(default)]
    pub warnings: Vec<WarningRecord>,
    /// `stream` or `asterisk`.
    pub source: String,
    /// Recording name at the PBX (`asterisk`).
    #[serde(default)]
    pub source_name: String,
    /// Wire encoding (`audio/x-mulaw`, …).
    #[serde(default)]
    pub stream_encoding: String,
    /// Recording stopped early.
    #[serde(default)]
    pub truncated: bool,
    /// Sealed at start-up after a crash.
    #[serde(default)]
    pub recovered: bool,
    /// What went wrong, for people.
    #[serde(default)]
    pub problems: Vec<String>,
    /// Stream counters.
    #[serde(default)]
    pub gaps: u64,
    /// Stream counters.
    #[serde(default)]
    pub late_frames: u64,
    /// Marks, rules, levels, notes and escalations, for the incident record.
    #[serde(default)]
    pub incident: IncidentData,
    /// The earlier part of this call, when a restart of callguard split its recording.
    #[serde(default)]
    pub continues: Option<manifest::Continuation>,
}

impl CallRecord {
    /// A record for a call as the tracker announced it.
    pub fn from_call(call: &crate::events::CallInfo, source: &str) -> CallRecord {
        CallRecord {
            agent: call.agent.clone(),
            caller: call.caller.clone(),
            direction: call.direction.clone(),
            channel: call.channel.clone(),
            ..CallRecord::new(&call.call_id, call.started_at, source)
        }
    }

    /// A record that knows only its call id, start and source; everything else empty.
    pub fn new(call_id: &str, started_at: DateTime<FixedOffset>, source: &str) -> CallRecord {
        CallRecord {
            call_id: call_id.to_string(),
            agent: String::new(),
            caller: String::new(),
            direction: String::new(),
            channel: String::new(),
            started_at,
            ended_at: None,
            duration_secs: None,
            end_cause: String::new(),
            warnings: Vec::new(),
            source: source.to_string(),
            source_name: String::new(),
            stream_encoding: String::new(),
            truncated: false,
            recovered: false,
            problems: Vec::new(),
            gaps: 0,
            late_frames: 0,
            incident: Default::default(),
            continues: None,
        }
    }

    /// Writes `meta.json` into `dir` atomically ([`fsutil::write_atomic`]).
    pub fn save(&self, dir: &Path) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        fsutil::write_atomic(dir, META_FILE, &text)
    }

    /// Reads `meta.json` from `dir`.
    pub fn load(dir: &Path) -> io::Result<CallRecord> {
        let text = std::fs::read(dir.join(META_FILE))?;
        serde_json::from_slice(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Where escalations go.
pub const LEAD: &str = "team lead";

/// What the evidence sink collects about a call besides its audio, kept in `meta.json` while
/// the call runs so a crash loses none of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IncidentData {
    /// `ja` or `en`: the language of `incident.md`.
    #[serde(default)]
    pub language: String,
    /// The agent's display name (`agent.name`).
    #[serde(default)]
    pub agent_name: String,
    /// Marks in order.
    #[serde(default)]
    pub marks: Vec<Mark>,
    /// Rules fired in order.
    #[serde(default)]
    pub rules_fired: Vec<FiredRule>,
    /// Level changes in order.
    #[serde(default)]
    pub level_changes: Vec<LevelChange>,
    /// Grounds to end the call met.
    #[serde(default)]
    pub grounds_to_end: bool,
    /// Notes added while the call was in progress.
    #[serde(default)]
    pub notes: Vec<NoteRecord>,
    /// Escalations requested.
    #[serde(default)]
    pub escalations: Vec<Escalation>,
}

impl IncidentData {
    /// The call's final level (1 when it never rose).
    pub fn level(&self) -> Level {
        self.level_changes
            .iter()
            .map(|c| Level(c.to))
            .max()
            .unwrap_or(Level::NORMAL)
    }
}

/// One rise of the level.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LevelChange {
    /// Level before.
    pub from: u8,
    /// Level after.
    pub to: u8,
    /// What raised it.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
}

/// A note of the agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NoteRecord {
    /// Which item.
    pub field: NoteField,
    /// Verbatim.
    pub text: String,
    /// When (RFC 3339).
    pub at: String,
}

/// One escalation requested.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Escalation {
    /// `rule`, `grounds_to_end`, `warning`, `level`, `manual`.
    pub kind: String,
    /// Which rule / warning / level.
    pub reason: String,
    /// When (RFC 3339).
    pub at: String,
    /// To whom.
    pub target: String,
    /// `requested`, or what the outbox knows at the seal (see [`escalation_delivery`]).
    pub delivery: String,
    /// Each receiver's delivery as the outbox knows it at the seal (receivers masked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receipts: Vec<Receipt>,
}

/// One receiver's delivery of an escalation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Receipt {
    /// The receiver, masked: scheme, host, port and the first path segment.
    pub receiver: String,
    /// `delivered`, `failed` or `queued`.
    pub state: String,
    /// When it was delivered (or the next attempt of a queued one), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// Why it failed, or the last error of a queued one (URLs masked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Attempts so far.
    #[serde(default)]
    pub attempts: u32,
}

impl Escalation {
    /// A requested escalation to the team lead.
    pub fn requested(kind: &str, reason: String, at: DateTime<FixedOffset>) -> Escalation {
        Escalation {
            kind: kind.into(),
            reason,
            at: rfc3339(at),
            target: LEAD.into(),
            delivery: "requested".into(),
            receipts: Vec::new(),
        }
    }
}

/// RFC 3339 in local time with milliseconds.
pub fn rfc3339(t: DateTime<FixedOffset>) -> String {
    t.with_timezone(&Local)
        .fixed_offset()
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// One thing the tracker said about a call, as the evidence sink keeps it.
#[derive(Debug, Clone)]
pub enum Update {
    /// A mark and the rules it fired.
    Marked(std::sync::Arc<crate::events::MarkEvent>),
    /// The level rose.
    Level {
        /// Before.
        from: Level,
        /// After.
        to: Level,
        /// What raised it.
        reason: String,
        /// When the sink heard of it.
        at: DateTime<FixedOffset>,
    },
    /// A time warning that pings the lead.
    Warning {
        /// `escalate` / `terminate`.
        kind: String,
        /// Threshold.
        after_secs: u64,
        /// When it fired.
        at: DateTime<FixedOffset>,
    },
    /// A note while the call is in progress.
    Note(NoteRecord),
    /// The agent called the lead by hand.
    Manual {
        /// When.
        at: DateTime<FixedOffset>,
    },
}

impl IncidentData {
    /// Takes in one update.
    pub fn apply(&mut self, u: Update) {
        match u {
            Update::Marked(ev) => {
                self.marks = ev.marks.clone();
                self.grounds_to_end |= ev.grounds_to_end;
                for f in &ev.fired {
                    let kind = match f.rule.action {
                        RuleAction::Escalate => "rule",
                        RuleAction::End => "grounds_to_end",
                    };
                    self.escalations.push(Escalation::requested(
                        kind,
                        EscalationReason::Rule(f.name.clone()).to_string(),
                        f.at,
                    ));
                    self.rules_fired.push(f.clone());
                }
            }
            Update::Level {
                from,
                to,
                reason,
                at,
            } => {
                // Marks that take the call to 3 ping the lead at once; warnings and manual
                // escalations have pings of their own.
                if to >= Level::SIGNS
                    && from < Level::SIGNS
                    && reason.parse::<crate::harassment::MarkKind>().is_ok()
                {
                    self.escalations.push(Escalation::requested(
                        "level",
                        EscalationReason::Level {
                            to: to.0,
                            mark: reason.clone(),
                        }
                        .to_string(),
                        at,
                    ));
                }
                self.level_changes.push(LevelChange {
                    from: from.0,
                    to: to.0,
                    reason,
                    at: rfc3339(at),
                });
            }
            Update::Warning {
                kind,
                after_secs,
                at,
            } => {
                if kind == "terminate" {
                    self.grounds_to_end = true;
                }
                self.escalations.push(Escalation::requested(
                    "warning",
                    EscalationReason::Warning {
                        kind: kind.clone(),
                        after_secs,
                    }
                    .to_string(),
                    at,
                ));
            }
            Update::Note(n) => self.notes.push(n),
            Update::Manual { at } => {
                self.escalations.push(Escalation::requested(
                    "manual",
                    EscalationReason::Manual.to_string(),
                    at,
                ));
            }
        }
    }
}
