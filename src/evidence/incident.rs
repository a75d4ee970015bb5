//! The incident record of a call with a mark or a warning: `incident.json` and a readable
//! `incident.md`, written into the call folder at the seal, before the manifest that lists
//! them with their SHA-256. The items are those of the harassment guidance's record sheet.

use std::io::{self, Write};
use std::path::Path;

use chrono::{DateTime, FixedOffset, Local, SecondsFormat};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manifest::{Audio, RecordFile, WarningRecord};
use super::seal::CallRecord;
use crate::events::{EscalationReason, NoteField};
use crate::harassment::{FiredRule, Level, Mark, MarkKind, RuleAction};

/// `incident.json`.
pub const JSON_FILE: &str = "incident.json";
/// `incident.md`.
pub const MD_FILE: &str = "incident.md";
/// Value of `schema` in `incident.json`.
pub const SCHEMA: &str = "callguard.incident/1";
/// Where escalations go.
pub const LEAD: &str = "team lead";
/// Police consultation line (Japan).
pub const POLICE_LINE: &str = "#9110";

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

/// RFC 3339 in local time with milliseconds.
pub fn rfc3339(t: DateTime<FixedOffset>) -> String {
    t.with_timezone(&Local)
        .fixed_offset()
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

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

fn stmt(m: &Mark) -> Statement {
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

const NOT_ADVICE_JA: &str = "参考情報です。法的助言ではありません。判断は会社・弁護士・警察にご相談ください。警察相談専用電話 #9110。";
const NOT_ADVICE_EN: &str = "For information only, not legal advice: ask the company, a lawyer or the police. Police consultation line (Japan): #9110.";

fn none(en: bool) -> &'static str {
    if en { "(none)" } else { "（なし）" }
}

fn list(out: &mut String, items: &[String], en: bool) {
    if items.is_empty() {
        out.push_str(&format!("- {}\n", none(en)));
    }
    for i in items {
        out.push_str(&format!("- {i}\n"));
    }
}

/// A time of the record as people write it, in local time: 「2026年11月29日 14:42:49」 /
/// "29 Nov 2026 14:42:49". Text that is not RFC 3339 is kept as it is.
pub fn human_time(rfc: &str, english: bool) -> String {
    match DateTime::parse_from_rfc3339(rfc) {
        Ok(t) => human_dt(t, english),
        Err(_) => rfc.to_string(),
    }
}

fn human_dt(t: DateTime<FixedOffset>, english: bool) -> String {
    human_dt_as_is(t.with_timezone(&Local).fixed_offset(), english)
}

/// [`human_dt`] in `t`'s own offset.
fn human_dt_as_is(t: DateTime<FixedOffset>, english: bool) -> String {
    if english {
        t.format("%-d %b %Y %H:%M:%S").to_string()
    } else {
        t.format("%Y年%-m月%-d日 %H:%M:%S").to_string()
    }
}

/// A duration as people write it: 「33分00秒」 / "33 min 00 s".
pub fn human_duration(secs: u64, english: bool) -> String {
    let lang = if english {
        crate::config::Language::En
    } else {
        crate::config::Language::Ja
    };
    crate::alerts::text::format_elapsed(std::time::Duration::from_secs(secs), lang)
}

/// `mm:ss` into the call → 「通話開始から 8分00秒」 / "8 min 00 s into the call".
fn into_call(offset: &str, english: bool) -> String {
    let secs = offset
        .split_once(':')
        .and_then(|(m, s)| Some(m.parse::<u64>().ok()? * 60 + s.parse::<u64>().ok()?));
    match (secs, english) {
        (Some(s), false) => format!("通話開始から {}", human_duration(s, false)),
        (Some(s), true) => format!("{} into the call", human_duration(s, true)),
        (None, _) => offset.to_string(),
    }
}

fn mark_label(kind: MarkKind, english: bool) -> &'static str {
    if english {
        kind.label_en()
    } else {
        kind.label_ja()
    }
}

/// A warning step in words: 「通話 15分 経過の警告（上長へ引き継ぎ）」.
fn warning_words(kind: &str, after_secs: u64, english: bool) -> String {
    let at = if after_secs.is_multiple_of(60) {
        if english {
            format!("{}-minute", after_secs / 60)
        } else {
            format!("{}分", after_secs / 60)
        }
    } else {
        human_duration(after_secs, english)
    };
    match (kind, english) {
        ("terminate", false) => format!("通話 {at} 経過の警告（終了できる基準）"),
        (_, false) => format!("通話 {at} 経過の警告（上長へ引き継ぎ）"),
        ("terminate", true) => format!("{at} warning (grounds to end the call)"),
        (_, true) => format!("{at} warning (bring in the team lead)"),
    }
}

/// `warning:escalate after 900 s` (the reason a ping answers) in words.
fn warning_reason_words(reason: &str, english: bool) -> Option<String> {
    let rest = reason.strip_prefix("warning:")?;
    let (kind, after) = rest.split_once(" after ")?;
    let secs = after.trim_end_matches(" s").parse().ok()?;
    Some(warning_words(kind, secs, english))
}

/// What raised the level, in words.
fn level_reason_words(reason: &str, english: bool) -> String {
    if let Ok(k) = reason.parse::<MarkKind>() {
        return if english {
            format!("marked \"{}\"", k.label_en())
        } else {
            format!("「{}」の記録", k.label_ja())
        };
    }
    match (reason, english) {
        ("escalate", false) => "上長へ引き継ぐ時間の警告".into(),
        ("terminate", false) => "終了できる時間の警告".into(),
        ("manual", false) => "担当者が上長を呼んだこと".into(),
        ("escalate", true) => "the warning to bring in the team lead".into(),
        ("terminate", true) => "the warning that the call may be ended".into(),
        ("manual", true) => "the agent calling the team lead".into(),
        (other, _) => other.to_string(),
    }
}

/// Why the lead was called, in words.
fn escalation_words(e: &Escalation, english: bool) -> String {
    let lang = if english {
        crate::config::Language::En
    } else {
        crate::config::Language::Ja
    };
    match e.kind.as_str() {
        "rule" | "grounds_to_end" => crate::harassment::describe_rule(&e.reason, lang),
        "warning" => warning_reason_words(&e.reason, english).unwrap_or_else(|| e.reason.clone()),
        "level" => {
            // `level 3 (manager)`
            let inner = e
                .reason
                .strip_prefix("level ")
                .and_then(|r| r.split_once(" ("))
                .and_then(|(l, k)| Some((l.parse::<u8>().ok()?, k.trim_end_matches(')'))));
            match inner {
                Some((l, k)) if english => format!(
                    "{} took the call to level {l} ({})",
                    capitalized(&level_reason_words(k, true)),
                    Level(l).label_en()
                ),
                Some((l, k)) => format!(
                    "{}でレベル {l}（{}）に上がったため",
                    level_reason_words(k, false),
                    Level(l).label_ja()
                ),
                None => e.reason.clone(),
            }
        }
        "manual" if english => "The agent called the team lead".into(),
        "manual" => "担当者が上長を呼んだ".into(),
        _ => e.reason.clone(),
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// One receiver's delivery in words.
fn receipt_words(r: &Receipt, english: bool) -> String {
    let at = r.at.as_deref().map(|a| human_time(a, english));
    let detail = r.detail.as_deref().unwrap_or("");
    match (r.state.as_str(), english) {
        ("delivered", false) => format!(
            "{}：{}に届きました",
            r.receiver,
            at.map(|a| format!("{a} ")).unwrap_or_default()
        ),
        ("failed", false) => format!("{}：届きませんでした（理由：{detail}）", r.receiver),
        (_, false) => format!(
            "{}：この記録の封印時点では未達で、再送を続けています（{} 回試行{}）",
            r.receiver,
            r.attempts,
            if detail.is_empty() {
                String::new()
            } else {
                format!("、直近のエラー：{detail}")
            }
        ),
        ("delivered", true) => format!(
            "{}: delivered{}",
            r.receiver,
            at.map(|a| format!(" at {a}")).unwrap_or_default()
        ),
        ("failed", true) => format!("{}: not delivered ({detail})", r.receiver),
        (_, true) => format!(
            "{}: not yet delivered when this record was sealed; still retrying ({} attempt(s){})",
            r.receiver,
            r.attempts,
            if detail.is_empty() {
                String::new()
            } else {
                format!("; last error: {detail}")
            }
        ),
    }
}

/// `incident.md`, in the record's language: a document for HR, a lawyer or the police, so
/// every time, duration, rule and delivery is written out in words.
pub fn render_md(r: &IncidentRecord, english: bool) -> String {
    let t = |ja: &'static str, en: &'static str| if english { en } else { ja };
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let sep = t("：", ": ");
    let mut o = String::new();
    o.push_str(&format!(
        "# {}\n\n",
        t(
            "カスタマーハラスメント対応記録",
            "Customer harassment incident record"
        )
    ));
    let row = |o: &mut String, k: &str, v: String| o.push_str(&format!("- **{k}**{sep}{v}\n"));
    row(&mut o, t("通話 ID", "Call id"), r.call_id.clone());
    let (from, to) = (
        human_time(&r.started_at, english),
        human_time(&r.ended_at, english),
    );
    let length = human_duration(r.duration_secs, english);
    row(
        &mut o,
        t("日時", "Time"),
        if english {
            format!("{from} to {to} (call time {length})")
        } else {
            format!("{from} 〜 {to}（通話時間 {length}）")
        },
    );
    let direction = match (s(&r.channel, "direction").as_str(), english) {
        ("inbound", false) => "お客様からの着信",
        ("outbound", false) => "担当者からの発信",
        (_, false) => "着信・発信の別は不明",
        ("inbound", true) => "incoming call from the customer",
        ("outbound", true) => "call made by the agent",
        (_, true) => "direction unknown",
    };
    let recorded = match (s(&r.channel, "pbx").as_str(), english) {
        ("asterisk", false) => "交換機（Asterisk）が録音",
        ("stream", false) => "交換機から届いた通話音声を録音",
        (_, false) => "録音なし",
        ("asterisk", true) => "recorded by the phone system (Asterisk)",
        ("stream", true) => "recorded from the phone system's audio stream",
        (_, true) => "not recorded",
    };
    let mut channel = if english {
        format!("telephone, {direction}; {recorded}")
    } else {
        format!("電話（{direction}）、{recorded}")
    };
    let line = s(&r.channel, "pbx_channel");
    if !line.is_empty() {
        channel.push_str(&if english {
            format!("; phone-system line {line}")
        } else {
            format!("、交換機の回線 {line}")
        });
    }
    row(&mut o, t("経路", "Channel"), channel);
    let number = s(&r.customer, "number");
    row(
        &mut o,
        t("お客様", "Customer"),
        if english {
            format!(
                "{} (name unknown)",
                if number.is_empty() {
                    "number unknown"
                } else {
                    &number
                }
            )
        } else {
            format!(
                "{}（氏名不明）",
                if number.is_empty() {
                    "番号不明"
                } else {
                    &number
                }
            )
        },
    );
    let (name, endpoint) = (s(&r.agent, "name"), s(&r.agent, "endpoint"));
    row(
        &mut o,
        t("担当者", "Agent"),
        match (name.is_empty(), english) {
            (false, false) => format!("{name}（内線 {endpoint}）"),
            (true, false) => format!("内線 {endpoint}（氏名は設定なし）"),
            (false, true) => format!("{name} (extension {endpoint})"),
            (true, true) => format!("extension {endpoint} (name not set)"),
        },
    );
    row(
        &mut o,
        t("レベル", "Level"),
        if english {
            format!("{} ({})", r.level, Level(r.level).label_en())
        } else {
            format!("{}（{}）", r.level, Level(r.level).label_ja())
        },
    );

    o.push_str(&format!("\n## {}\n", t("同席者・目撃者", "Witnesses")));
    list(&mut o, &r.witnesses, english);
    let st = |v: &[Statement]| -> Vec<String> {
        v.iter()
            .map(|x| {
                let when = human_time(&x.at, english);
                let offset = if x.offset.is_empty() {
                    String::new()
                } else if english {
                    format!(" ({})", into_call(&x.offset, true))
                } else {
                    format!("（{}）", into_call(&x.offset, false))
                };
                let kind = match x.kind.parse::<MarkKind>() {
                    Ok(k) if english => format!(" (marked as: {})", k.label_en()),
                    Ok(k) => format!("（記録の種類{sep}{}）", k.label_ja()),
                    Err(_) => t("（あとから追記）", " (added afterwards)").to_string(),
                };
                let q = match (x.quote.is_empty(), english) {
                    (true, _) => String::new(),
                    (false, true) => format!(" 「{}」", x.quote),
                    (false, false) => format!("「{}」", x.quote),
                };
                format!("{when}{offset}{q}{kind}")
            })
            .collect()
    };
    o.push_str(&format!(
        "\n## {}\n",
        t(
            "お客様の発言（原文のまま）",
            "Customer's statements (verbatim)"
        )
    ));
    list(&mut o, &st(&r.statements), english);
    o.push_str(&format!("\n## {}\n", t("要求内容", "Demands")));
    list(&mut o, &st(&r.demands), english);
    o.push_str(&format!("\n## {}\n", t("担当者の対応", "Agent's response")));
    list(&mut o, &r.agent_response, english);
    o.push_str(&format!(
        "\n## {}\n",
        t("担当者の状態", "Agent's condition")
    ));
    list(&mut o, &st(&r.agent_condition), english);

    o.push_str(&format!(
        "\n## {}\n",
        t("担当者が残した記録", "What the agent marked")
    ));
    let marks: Vec<String> = r
        .marks
        .iter()
        .map(|m| {
            let q = m
                .quote
                .as_ref()
                .map(|q| {
                    if english {
                        format!(" 「{q}」")
                    } else {
                        format!("：「{q}」")
                    }
                })
                .unwrap_or_default();
            if english {
                format!(
                    "{} ({}): {}{q}",
                    human_dt(m.at, true),
                    into_call(&m.offset(), true),
                    m.kind.label_en()
                )
            } else {
                format!(
                    "{}（{}）{}{q}",
                    human_dt(m.at, false),
                    into_call(&m.offset(), false),
                    m.kind.label_ja()
                )
            }
        })
        .collect();
    list(&mut o, &marks, english);

    o.push_str(&format!(
        "\n## {}\n",
        t("レベルの推移", "How the level rose")
    ));
    let levels: Vec<String> = r
        .level_changes
        .iter()
        .map(|c| {
            if english {
                format!(
                    "{}: from {} to {} ({}), by {}",
                    human_time(&c.at, true),
                    c.from,
                    c.to,
                    Level(c.to).label_en(),
                    level_reason_words(&c.reason, true)
                )
            } else {
                format!(
                    "{}：{} から {}（{}）へ。{}による",
                    human_time(&c.at, false),
                    c.from,
                    c.to,
                    Level(c.to).label_ja(),
                    level_reason_words(&c.reason, false)
                )
            }
        })
        .collect();
    list(&mut o, &levels, english);

    o.push_str(&format!(
        "\n## {}\n",
        t(
            "時間の警告と、記録によって満たされた基準",
            "Time warnings and the rules the marks met"
        )
    ));
    let lang = if english {
        crate::config::Language::En
    } else {
        crate::config::Language::Ja
    };
    let mut rules: Vec<String> = r
        .rules_fired
        .iter()
        .map(|f| {
            let off = format!("{:02}:{:02}", f.offset_secs / 60, f.offset_secs % 60);
            if english {
                format!(
                    "{} ({}): {}",
                    human_dt(f.at, true),
                    into_call(&off, true),
                    crate::harassment::describe_rule(&f.name, lang)
                )
            } else {
                format!(
                    "{}（{}）{}",
                    human_dt(f.at, false),
                    into_call(&off, false),
                    crate::harassment::describe_rule(&f.name, lang)
                )
            }
        })
        .collect();
    rules.extend(r.warnings.iter().map(|w| {
        if english {
            format!(
                "{}: {}",
                human_time(&w.fired_at, true),
                warning_words(&w.kind, w.after_secs, true)
            )
        } else {
            format!(
                "{}：{}",
                human_time(&w.fired_at, false),
                warning_words(&w.kind, w.after_secs, false)
            )
        }
    }));
    list(&mut o, &rules, english);

    o.push_str(&format!(
        "\n## {}\n",
        t("上長への連絡", "Calls to the team lead")
    ));
    if r.escalations.is_empty() {
        o.push_str(&format!("- {}\n", none(english)));
    }
    for e in &r.escalations {
        let what = escalation_words(e, english);
        if english {
            o.push_str(&format!(
                "- {}: {what}; the team lead was notified\n",
                human_time(&e.at, true)
            ));
        } else {
            o.push_str(&format!(
                "- {}：{what}。上長に通知\n",
                human_time(&e.at, false)
            ));
        }
        if e.receipts.is_empty() {
            let state = match (e.delivery.as_str(), english) {
                ("requested", false) => {
                    "通知は送信待ちで、この記録の封印時点では届いたか確認できていません"
                }
                ("requested", true) => {
                    "sent for delivery; not confirmed when this record was sealed"
                }
                (_, false) => "通知先の記録がありません",
                (_, true) => "no record of the receivers",
            };
            o.push_str(&format!("  - {state}\n"));
        }
        for rc in &e.receipts {
            o.push_str(&format!("  - {}\n", receipt_words(rc, english)));
        }
    }

    o.push_str(&format!(
        "\n## {}\n",
        t("通話終了の根拠", "Grounds to end the call")
    ));
    let met = r.grounds_to_end["met"].as_bool().unwrap_or(false);
    let by: Vec<String> = r.grounds_to_end["by"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .map(|b| {
                    warning_reason_words(b, english)
                        .unwrap_or_else(|| crate::harassment::describe_rule(b, lang))
                })
                .collect()
        })
        .unwrap_or_default();
    o.push_str(&format!(
        "- {}{}\n",
        if met {
            t("あり", "met")
        } else {
            t("なし", "not met")
        },
        if by.is_empty() {
            String::new()
        } else if english {
            format!(": {}", by.join("; "))
        } else {
            format!("：{}", by.join("、"))
        }
    ));
    if let Some(p) = r.legal_information["provisions"].as_array() {
        o.push_str(&format!(
            "\n## {}\n",
            t(
                "関係しうる法令（参考情報）",
                "Provisions it may touch (information)"
            )
        ));
        for x in p {
            let names: Vec<&str> = x["provisions"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            let mark = x["mark"].as_str().unwrap_or("");
            let mark = mark
                .parse::<MarkKind>()
                .map(|k| mark_label(k, english).to_string())
                .unwrap_or_else(|_| mark.to_string());
            o.push_str(&format!("- {mark}{sep}{}\n", names.join("、")));
        }
        o.push_str(&format!(
            "- {}{sep}{POLICE_LINE}\n",
            t("警察相談専用電話", "Police consultation line")
        ));
        o.push_str(&format!(
            "\n> {}\n",
            if english {
                NOT_ADVICE_EN
            } else {
                NOT_ADVICE_JA
            }
        ));
    }
    o.push_str(&format!("\n## {}\n", t("今後の対応", "Next steps")));
    list(&mut o, &r.next_steps, english);

    o.push_str(&format!("\n## {}\n", t("証拠", "Evidence")));
    row(
        &mut o,
        t("録音", "Recording"),
        r.evidence["recording"]
            .as_str()
            .map(|f| match r.evidence["bytes"].as_u64() {
                Some(b) if english => format!("{f} ({b} bytes)"),
                Some(b) => format!("{f}（{b} バイト）"),
                None => f.to_string(),
            })
            .unwrap_or_else(|| t("なし", "none").to_string()),
    );
    if let Some(h) = r.evidence["sha256"].as_str() {
        row(
            &mut o,
            t("録音の SHA-256 ハッシュ値", "SHA-256 of the recording"),
            h.to_string(),
        );
    }
    row(&mut o, t("保管場所", "Kept in"), s(&r.evidence, "kept_in"));
    if let Some(c) = r.evidence.get("continues").filter(|c| c.is_object()) {
        let part = c["part"].as_u64().unwrap_or(2);
        let from = c["audio_offset_secs"]
            .as_f64()
            .map(|o| human_duration(o.round() as u64, english))
            .unwrap_or_else(|| t("不明", "unknown").to_string());
        row(
            &mut o,
            t("前の部分", "Earlier part"),
            if english {
                format!(
                    "this is part {part} of the call (callguard restarted during it); the part before is {} (manifest SHA-256 {}); this part's audio starts {from} into the call",
                    s(c, "dir"),
                    s(c, "manifest_sha256")
                )
            } else {
                format!(
                    "この記録は通話の第{part}部です（通話中に callguard が再起動しました）。前の部分は {}（目録の SHA-256 ハッシュ値 {}）。この部分の録音は通話開始から {from} 以降です。",
                    s(c, "dir"),
                    s(c, "manifest_sha256")
                )
            },
        );
    }
    o.push_str(&format!(
        "\n{}\n",
        t(
            "この記録と録音は署名付きの目録（manifest.json）に載っています。改ざんのないことは callguard verify で確かめられます。",
            "This record and the recording are listed in the signed manifest (manifest.json); `callguard verify` shows that nothing was changed."
        )
    ));
    o
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<RecordFile> {
    // Not sealed yet: a record a crash left half-written is made again at recovery.
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = crate::fsutil::create_private_file(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    Ok(RecordFile {
        file: name.into(),
        sha256: hex::encode(Sha256::digest(bytes)),
        bytes: bytes.len() as u64,
    })
}

/// Writes `incident.json` and `incident.md` into `dir`; returns them for the manifest.
pub fn write(dir: &Path, r: &IncidentRecord, english: bool) -> io::Result<Vec<RecordFile>> {
    let mut json = serde_json::to_vec_pretty(r).map_err(io::Error::other)?;
    json.push(b'\n');
    let md = render_md(r, english);
    Ok(vec![
        write_atomic(dir, JSON_FILE, &json)?,
        write_atomic(dir, MD_FILE, md.as_bytes())?,
    ])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harassment::{Mark, Rule};

    /// A record with every part: marks with quotes, demands, symptoms, notes, both warnings,
    /// rules of both kinds, escalations delivered, failed and still queued, legal information.
    fn full_record() -> IncidentRecord {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
        let mark = |kind, quote: Option<&str>, t: &str, off| Mark {
            kind,
            quote: quote.map(str::to_string),
            at: at(t),
            offset_secs: off,
        };
        let marks = vec![
            mark(
                MarkKind::Manager,
                Some("責任者を出せ"),
                "2026-11-29T05:17:49Z",
                480,
            ),
            mark(MarkKind::Manager, None, "2026-11-29T05:18:49Z", 540),
            mark(
                MarkKind::Demand,
                Some("土下座しろ"),
                "2026-11-29T05:20:49Z",
                660,
            ),
            mark(
                MarkKind::Threat,
                Some("家に行くぞ"),
                "2026-11-29T05:30:49Z",
                1260,
            ),
            mark(MarkKind::Symptom, None, "2026-11-29T05:31:49Z", 1320),
        ];
        let fired = |m, count, action, name: &str, t: &str, off| FiredRule {
            rule: Rule {
                mark: m,
                count,
                action,
            },
            name: name.into(),
            at: at(t),
            offset_secs: off,
        };
        let rules_fired = vec![
            fired(
                MarkKind::Manager,
                2,
                RuleAction::Escalate,
                "manager#2:escalate",
                "2026-11-29T05:18:49Z",
                540,
            ),
            fired(
                MarkKind::Threat,
                1,
                RuleAction::End,
                "threat#1:end",
                "2026-11-29T05:30:49Z",
                1260,
            ),
        ];
        let receipt =
            |receiver: &str, state: &str, at: Option<&str>, detail: Option<&str>| Receipt {
                receiver: mask_receiver(receiver),
                state: state.into(),
                at: at.map(str::to_string),
                detail: detail.map(str::to_string),
                attempts: 3,
            };
        let mut e1 = Escalation::requested(
            "rule",
            "manager#2:escalate".into(),
            at("2026-11-29T05:18:49Z"),
        );
        e1.delivery = "delivered 2026-11-29T05:42:49.986359239+00:00".into();
        e1.receipts = vec![
            receipt(
                "https://hooks.slack.com/services/T000/B000/XXXX",
                "delivered",
                Some("2026-11-29T05:18:50.123+00:00"),
                None,
            ),
            receipt(
                "https://prod-00.westus.logic.azure.com:443/workflows/abc/triggers/manual?sig=SECRET",
                "failed",
                None,
                Some("HTTP 404 Not Found"),
            ),
            receipt(
                "http://127.0.0.1:8080/hooks/leads",
                "queued",
                Some("2026-11-29T05:43:00+00:00"),
                Some("connection refused"),
            ),
        ];
        let e2 = Escalation::requested(
            "warning",
            "warning:escalate after 900 s".into(),
            at("2026-11-29T05:24:49Z"),
        );
        let e3 = Escalation::requested(
            "level",
            "level 3 (manager)".into(),
            at("2026-11-29T05:17:49Z"),
        );
        let e4 = Escalation::requested("manual", "manual".into(), at("2026-11-29T05:25:00Z"));
        IncidentRecord {
            schema: SCHEMA.into(),
            date: "2026-11-29".into(),
            started_at: "2026-11-29T14:09:49.000+09:00".into(),
            ended_at: "2026-11-29T14:42:49.000+09:00".into(),
            duration_secs: 1980,
            channel: serde_json::json!({"medium":"phone","pbx":"stream","direction":"inbound",
                "agent_endpoint":"1001","pbx_channel":""}),
            customer: serde_json::json!({"number":"0312345678","name":null}),
            agent: serde_json::json!({"endpoint":"1001","name":"佐藤"}),
            witnesses: vec!["鈴木（隣の席）".into()],
            statements: marks
                .iter()
                .filter(|m| m.quote.is_some())
                .map(stmt)
                .collect(),
            demands: marks
                .iter()
                .filter(|m| m.kind == MarkKind::Demand)
                .map(stmt)
                .collect(),
            agent_response: vec!["上長に代わると伝えました".into()],
            agent_condition: marks
                .iter()
                .filter(|m| m.kind == MarkKind::Symptom)
                .map(stmt)
                .collect(),
            marks: marks.clone(),
            evidence: serde_json::json!({"recording":"call.wav","sha256":"ab".repeat(32),
                "bytes": 31680044u64, "kept_in":"/home/sato/.local/share/callguard/evidence/2026/11/29/140949_c-4711-3f2a9c1b"}),
            level: 4,
            level_label: "明確なカスハラ".into(),
            level_changes: vec![
                LevelChange {
                    from: 1,
                    to: 3,
                    reason: "manager".into(),
                    at: "2026-11-29T14:17:49.000+09:00".into(),
                },
                LevelChange {
                    from: 3,
                    to: 4,
                    reason: "threat".into(),
                    at: "2026-11-29T14:30:49.000+09:00".into(),
                },
            ],
            rules_fired,
            warnings: vec![
                WarningRecord {
                    kind: "escalate".into(),
                    after_secs: 900,
                    fired_at: "2026-11-29T14:24:49.000+09:00".into(),
                },
                WarningRecord {
                    kind: "terminate".into(),
                    after_secs: 1800,
                    fired_at: "2026-11-29T14:39:49.000+09:00".into(),
                },
            ],
            escalations: vec![e3, e1, e2, e4],
            grounds_to_end: serde_json::json!({"met": true,
                "by": ["threat#1:end", "warning:terminate after 1800 s"]}),
            legal_information: serde_json::json!({
                "provisions": [{"mark":"threat","provisions":["脅迫罪（刑法222条）"]}],
                "police_consultation": POLICE_LINE, "note": NOT_ADVICE_JA}),
            next_steps: vec!["書面で回答する".into()],
            call_id: "c-4711".into(),
        }
    }

    #[test]
    fn the_japanese_record_has_no_machine_strings() {
        let md = render_md(&full_record(), false);
        // Times are in the workstation's local time, as people write them.
        let jst = DateTime::parse_from_rfc3339("2026-11-29T14:42:49+09:00").unwrap();
        assert_eq!(human_dt_as_is(jst, false), "2026年11月29日 14:42:49");
        assert_eq!(human_dt_as_is(jst, true), "29 Nov 2026 14:42:49");
        let at = |t: &str| human_time(&format!("2026-11-29T{t}+09:00"), false);
        for machine in [
            "PBX stream",
            " / ",
            "(1980 s)",
            " s)",
            "warning:",
            "#2:",
            "#1:",
            "escalate",
            "delivered",
            "requested",
            "team lead",
            "+00:00",
            "T05:",
            "T14:",
            "XXXX",
            "SECRET",
            "manager",
            "threat",
            "(",
            ")",
        ] {
            assert!(!md.contains(machine), "`{machine}` in:\n{md}");
        }
        for want in [
            format!("- **日時**：{} 〜 {}（通話時間 33分00秒）", at("14:09:49"), at("14:42:49")),
            "- **経路**：電話（お客様からの着信）、交換機から届いた通話音声を録音".to_string(),
            "- **担当者**：佐藤（内線 1001）".to_string(),
            format!("{}（通話開始から 8分00秒）「責任者を出せ」（記録の種類：責任者を出せ）", at("14:17:49")),
            format!("{}（通話開始から 9分00秒）「責任者を出せ」2 回目：上長に連絡", at("14:18:49")),
            format!("{}：通話 15分 経過の警告（上長へ引き継ぎ）", at("14:24:49")),
            format!("- {}：「責任者を出せ」の記録でレベル 3（カスハラの兆候）に上がったため。上長に通知", at("14:17:49")),
            format!("  - https://hooks.slack.com/services/…：{} に届きました", at("14:18:50")),
            "  - https://prod-00.westus.logic.azure.com/workflows/…：届きませんでした（理由：HTTP 404 Not Found）".to_string(),
            "  - http://127.0.0.1:8080/hooks/…：この記録の封印時点では未達で、再送を続けています（3 回試行、直近のエラー：connection refused）".to_string(),
            format!("- {}：担当者が上長を呼んだ。上長に通知", at("14:25:00")),
            "  - 通知は送信待ちで、この記録の封印時点では届いたか確認できていません".to_string(),
            "- あり：「脅迫」1 回目：通話を終了できる基準、通話 30分 経過の警告（終了できる基準）".to_string(),
            "- 脅迫：脅迫罪（刑法222条）".to_string(),
        ] {
            assert!(md.contains(&want), "missing `{want}` in:\n{md}");
        }
    }

    #[test]
    fn the_english_record_reads_as_english() {
        let md = render_md(&full_record(), true);
        let at = |t: &str| human_time(&format!("2026-11-29T{t}+09:00"), true);
        for machine in [
            "warning:",
            "#2:",
            "(1980 s)",
            "requested",
            "T05:",
            "+00:00",
            "XXXX",
            "送達",
            "明確な",
        ] {
            assert!(!md.contains(machine), "`{machine}` in:\n{md}");
        }
        for want in [
            format!("- **Time**: {} to {} (call time 33 min 00 s)", at("14:09:49"), at("14:42:49")),
            "- **Channel**: telephone, incoming call from the customer; recorded from the phone system's audio stream".to_string(),
            "\"demands a manager\" ×2: team lead called".to_string(),
            "15-minute warning (bring in the team lead)".to_string(),
            format!("  - https://hooks.slack.com/services/…: delivered at {}", at("14:18:50")),
            "- met: \"threat\" ×1: grounds to end the call; 30-minute warning (grounds to end the call)".to_string(),
        ] {
            assert!(md.contains(&want), "missing `{want}` in:\n{md}");
        }
    }

    #[test]
    fn delivery_from_the_outbox_replaces_requested_by_reason() {
        let at = chrono::Local::now().fixed_offset();
        let mut e = vec![
            Escalation::requested("rule", "abuse#1:escalate".into(), at),
            Escalation::requested("warning", "warning:escalate after 900 s".into(), at),
        ];
        apply_delivery(
            &mut e,
            &[Delivery {
                reason: "abuse#1:escalate".into(),
                state: "failed: HTTP 503".into(),
            }],
        );
        assert_eq!(e[0].delivery, "failed: HTTP 503");
        assert_eq!(e[1].delivery, "requested");
    }
}
