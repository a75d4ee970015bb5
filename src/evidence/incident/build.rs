//! Building the incident record (`incident.json`'s data) from a call's [`CallRecord`], with
//! the delivery of its escalations as the team-lead outbox knows it at the seal.

use std::path::Path;

use chrono::{DateTime, FixedOffset, Local};
use serde::{Deserialize, Serialize};

use crate::events::{EscalationReason, NoteField};
use crate::evidence::manifest::{Audio, WarningRecord};
use crate::evidence::record::{CallRecord, Escalation, LevelChange, Receipt, rfc3339};
use crate::harassment::{FiredRule, Mark, MarkKind, RuleAction};

/// `incident.json`.
pub const JSON_FILE: &str = "incident.json";
/// `incident.md`.
pub const MD_FILE: &str = "incident.md";
/// Value of `schema` in `incident.json`.
pub const SCHEMA: &str = "callguard.incident/1";
/// Police consultation line (Japan).
pub const POLICE_LINE: &str = "#9110";

/// A receiver's URL safe to put in a record: scheme, host, port and — when more path follows —
/// the first path segment; the rest (where Slack and Teams keep their secret) is masked.
pub fn mask_receiver(raw: &str) -> String {
    // The same masking as everywhere else; the record drops the English "(masked)" marker.
    crate::redact::mask_url(raw).replace("…(masked)", "…")
}

/// Every receiver's delivery of the call's escalations, by reason, from the outbox under
/// `data_dir` at the seal.
pub fn escalation_receipts(data_dir: &Path, call_id: &str) -> Vec<(String, Receipt)> {
    crate::escalation::outbox::Outbox::new(data_dir.join("outbox"))
        .call_receipts(call_id)
        .into_iter()
        .map(|r| {
            let receipt = Receipt {
                receiver: mask_receiver(&r.url),
                state: r.state.to_string(),
                at: r.at.map(rfc3339),
                detail: r.detail.map(|d| d.replace(&r.url, &mask_receiver(&r.url))),
                attempts: r.attempts,
            };
            (r.reason, receipt)
        })
        .collect()
}

/// Puts each receipt on the escalations it answers (matched by `reason`).
pub fn apply_receipts(escalations: &mut [Escalation], known: &[(String, Receipt)]) {
    for e in escalations {
        e.receipts = known
            .iter()
            .filter(|(reason, _)| *reason == e.reason)
            .map(|(_, r)| r.clone())
            .collect();
    }
}

/// What the team-lead outbox knows of one escalation of a call.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The escalation's `reason` as recorded here (the rule name, e.g. `abuse#1:escalate`).
    pub reason: String,
    /// What became of it, for the record (e.g. `delivered 2026-11-22T15:01:02+09:00`,
    /// `failed: HTTP 503`, `queued`).
    pub state: String,
}

/// The delivery state of a call's escalations as the team-lead outbox (under `data_dir`)
/// knows it at the seal; `None` when it knows none (the record keeps `requested`).
pub fn escalation_delivery(data_dir: &Path, call_id: &str) -> Option<Vec<Delivery>> {
    let known = crate::escalation::outbox::in_data_dir(data_dir).call_deliveries(call_id);
    (!known.is_empty()).then(|| {
        known
            .into_iter()
            .map(|(reason, state)| Delivery { reason, state })
            .collect()
    })
}

/// Sets `delivery` of each escalation the outbox knows of (matched by `reason`).
pub fn apply_delivery(escalations: &mut [Escalation], known: &[Delivery]) {
    for e in escalations {
        if let Some(d) = known.iter().find(|d| d.reason == e.reason) {
            e.delivery = d.state.clone();
        }
    }
}

/// The legal-information note, in Japanese.
pub const NOT_ADVICE_JA: &str = "参考情報です。法的助言ではありません。判断は会社・弁護士・警察にご相談ください。警察相談専用電話 #9110。";
/// The legal-information note, in English.
pub const NOT_ADVICE_EN: &str = "For information only, not legal advice: ask the company, a lawyer or the police. Police consultation line (Japan): #9110.";

/// Whether the call gets an incident record.
pub fn applies(rec: &CallRecord) -> bool {
    !rec.incident.marks.is_empty() || !rec.warnings.is_empty()
}

/// A statement of the customer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Statement {
    /// Mark kind it was given with (`quote` for a note).
    pub kind: String,
    /// Verbatim.
    pub quote: String,
    /// Offset into the recording, `mm:ss` (empty for a note).
    pub offset: String,
    /// Wall time (RFC 3339).
    pub at: String,
}

/// A criminal-law provision a mark may touch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provision {
    /// The mark kind.
    pub mark: String,
    /// Provisions.
    pub provisions: Vec<String>,
}

/// `incident.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncidentRecord {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Call date (local, `YYYY-MM-DD`).
    pub date: String,
    /// Start (RFC 3339).
    pub started_at: String,
    /// End (RFC 3339).
    pub ended_at: String,
    /// Call length.
    pub duration_secs: u64,
    /// Channel.
    pub channel: serde_json::Value,
    /// Customer.
    pub customer: serde_json::Value,
    /// Agent.
    pub agent: serde_json::Value,
    /// Witnesses (notes).
    pub witnesses: Vec<String>,
    /// The customer's statements verbatim, with their offsets.
    pub statements: Vec<Statement>,
    /// Demands (demand and repeat marks).
    pub demands: Vec<Statement>,
    /// The agent's response (notes).
    pub agent_response: Vec<String>,
    /// The agent's condition (symptom marks).
    pub agent_condition: Vec<Statement>,
    /// Every mark.
    pub marks: Vec<Mark>,
    /// The recording.
    pub evidence: serde_json::Value,
    /// Final level.
    pub level: u8,
    /// Its label.
    pub level_label: String,
    /// Level changes.
    pub level_changes: Vec<LevelChange>,
    /// Rules fired with times.
    pub rules_fired: Vec<FiredRule>,
    /// Time warnings.
    pub warnings: Vec<WarningRecord>,
    /// Escalations.
    pub escalations: Vec<Escalation>,
    /// Grounds to end met, and by what.
    pub grounds_to_end: serde_json::Value,
    /// Provisions the marks may touch; information, not legal advice.
    pub legal_information: serde_json::Value,
    /// Next steps (notes).
    pub next_steps: Vec<String>,
    /// Call id.
    pub call_id: String,
}

fn en(rec: &CallRecord) -> bool {
    rec.incident.language == "en"
}

pub(super) fn stmt(m: &Mark) -> Statement {
    Statement {
        kind: m.kind.as_str().into(),
        quote: m.quote.clone().unwrap_or_default(),
        offset: m.offset(),
        at: rfc3339(m.at),
    }
}

fn notes(rec: &CallRecord, f: NoteField) -> Vec<String> {
    rec.incident
        .notes
        .iter()
        .filter(|n| n.field == f)
        .map(|n| n.text.clone())
        .collect()
}

/// Builds the record of a call about to be sealed in `dir`.
pub fn build(
    rec: &CallRecord,
    ended: DateTime<FixedOffset>,
    duration_secs: u64,
    audio: Option<&Audio>,
    dir: &Path,
) -> IncidentRecord {
    let inc = &rec.incident;
    let level = inc.level();
    let mut statements: Vec<Statement> = inc
        .marks
        .iter()
        .filter(|m| m.quote.is_some())
        .map(stmt)
        .collect();
    statements.extend(
        inc.notes
            .iter()
            .filter(|n| n.field == NoteField::Quote)
            .map(|n| Statement {
                kind: "quote".into(),
                quote: n.text.clone(),
                offset: String::new(),
                at: n.at.clone(),
            }),
    );
    let of = |k: &[MarkKind]| -> Vec<Statement> {
        inc.marks
            .iter()
            .filter(|m| k.contains(&m.kind))
            .map(stmt)
            .collect()
    };
    let mut kinds: Vec<MarkKind> = inc.marks.iter().map(|m| m.kind).collect();
    kinds.sort();
    kinds.dedup();
    let provisions: Vec<Provision> = kinds
        .iter()
        .filter(|k| !k.provisions().is_empty())
        .map(|k| Provision {
            mark: k.as_str().into(),
            provisions: k.provisions().iter().map(|s| s.to_string()).collect(),
        })
        .collect();
    let legal = if provisions.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!({
            "provisions": provisions,
            "police_consultation": POLICE_LINE,
            "note": if en(rec) { NOT_ADVICE_EN } else { NOT_ADVICE_JA },
        })
    };
    let mut by: Vec<String> = inc
        .rules_fired
        .iter()
        .filter(|f| f.rule.action == RuleAction::End)
        .map(|f| f.name.clone())
        .collect();
    by.extend(
        rec.warnings
            .iter()
            .filter(|w| w.kind == "terminate")
            .map(|w| {
                EscalationReason::Warning {
                    kind: w.kind.clone(),
                    after_secs: w.after_secs,
                }
                .to_string()
            }),
    );
    let started = rec.started_at.with_timezone(&Local);
    let mut evidence = serde_json::json!({
        "recording": audio.map(|a| a.file.clone()),
        "sha256": audio.map(|a| a.sha256.clone()),
        "bytes": audio.map(|a| a.bytes),
        "kept_in": dir.display().to_string(),
    });
    // A later part of a call split by a restart names the part before it.
    if let Some(c) = &rec.continues {
        evidence["continues"] = serde_json::json!(c);
    }
    IncidentRecord {
        schema: SCHEMA.into(),
        call_id: rec.call_id.clone(),
        date: started.format("%Y-%m-%d").to_string(),
        started_at: rfc3339(rec.started_at),
        ended_at: rfc3339(ended),
        duration_secs,
        channel: serde_json::json!({
            "medium": "phone",
            "pbx": rec.source,
            "direction": rec.direction,
            "agent_endpoint": rec.agent,
            "pbx_channel": rec.channel,
        }),
        customer: serde_json::json!({ "number": rec.caller, "name": null }),
        agent: serde_json::json!({ "endpoint": rec.agent, "name": inc.agent_name }),
        witnesses: notes(rec, NoteField::Witness),
        statements,
        demands: of(&[MarkKind::Demand, MarkKind::Repeat]),
        agent_response: notes(rec, NoteField::Response),
        agent_condition: of(&[MarkKind::Symptom]),
        marks: inc.marks.clone(),
        evidence,
        level: level.0,
        level_label: if en(rec) {
            level.label_en()
        } else {
            level.label_ja()
        }
        .into(),
        level_changes: inc.level_changes.clone(),
        rules_fired: inc.rules_fired.clone(),
        warnings: rec.warnings.clone(),
        escalations: inc.escalations.clone(),
        grounds_to_end: serde_json::json!({ "met": inc.grounds_to_end || !by.is_empty(), "by": by }),
        legal_information: legal,
        next_steps: notes(rec, NoteField::Next),
    }
}
