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
        evidence: serde_json::json!({
            "recording": audio.map(|a| a.file.clone()),
            "sha256": audio.map(|a| a.sha256.clone()),
            "bytes": audio.map(|a| a.bytes),
            "kept_in": dir.display().to_string(),
        }),
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

/// `incident.md`, in the record's language.
pub fn render_md(r: &IncidentRecord, english: bool) -> String {
    let t = |ja: &'static str, en: &'static str| if english { en } else { ja };
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut o = String::new();
    o.push_str(&format!(
        "# {} — {}\n\n",
        t(
            "カスタマーハラスメント対応記録",
            "Customer harassment incident record"
        ),
        r.call_id
    ));
    let row = |o: &mut String, k: &str, v: String| o.push_str(&format!("- **{k}**: {v}\n"));
    row(&mut o, t("日付", "Date"), r.date.clone());
    row(
        &mut o,
        t("開始・終了", "Start / end"),
        format!("{} — {} ({} s)", r.started_at, r.ended_at, r.duration_secs),
    );
    row(
        &mut o,
        t("チャネル", "Channel"),
        format!(
            "{} / PBX {} / {} {}",
            t("電話", "phone"),
            s(&r.channel, "pbx"),
            s(&r.channel, "agent_endpoint"),
            s(&r.channel, "pbx_channel")
        ),
    );
    row(
        &mut o,
        t("顧客", "Customer"),
        format!(
            "{} ({})",
            s(&r.customer, "number"),
            t("氏名不明", "name unknown")
        ),
    );
    row(
        &mut o,
        t("担当者", "Agent"),
        format!("{} {}", s(&r.agent, "name"), s(&r.agent, "endpoint"))
            .trim()
            .to_string(),
    );
    row(
        &mut o,
        t("レベル", "Level"),
        format!("{} ({})", r.level, r.level_label),
    );
    o.push_str(&format!("\n## {}\n", t("同席者・目撃者", "Witnesses")));
    list(&mut o, &r.witnesses, english);
    let st = |v: &[Statement]| -> Vec<String> {
        v.iter()
            .map(|x| {
                let q = if x.quote.is_empty() {
                    String::new()
                } else {
                    format!(" 「{}」", x.quote)
                };
                let off = if x.offset.is_empty() {
                    String::new()
                } else {
                    format!("[{}] ", x.offset)
                };
                let kind = match x.kind.parse::<MarkKind>() {
                    Ok(k) if english => k.label_en(),
                    Ok(k) => k.label_ja(),
                    Err(_) => t("発言（追記）", "statement (note)"),
                };
                format!("{off}{kind}{q} ({})", x.at)
            })
            .collect()
    };
    o.push_str(&format!(
        "\n## {}\n",
        t(
            "顧客の発言（原文のまま）",
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
    o.push_str(&format!("\n## {}\n", t("記録（マーク）", "Marks")));
    let marks: Vec<String> = r
        .marks
        .iter()
        .map(|m| {
            let label = if english {
                m.kind.label_en()
            } else {
                m.kind.label_ja()
            };
            let q = m
                .quote
                .as_ref()
                .map(|q| format!(" 「{q}」"))
                .unwrap_or_default();
            format!("[{}] {label}{q} ({})", m.offset(), rfc3339(m.at))
        })
        .collect();
    list(&mut o, &marks, english);
    o.push_str(&format!("\n## {}\n", t("証拠", "Evidence")));
    row(
        &mut o,
        t("録音", "Recording"),
        r.evidence["recording"]
            .as_str()
            .unwrap_or(none(english))
            .to_string(),
    );
    row(
        &mut o,
        "SHA-256",
        r.evidence["sha256"]
            .as_str()
            .unwrap_or(none(english))
            .to_string(),
    );
    row(&mut o, t("保管場所", "Kept in"), s(&r.evidence, "kept_in"));
    o.push_str(&format!("\n## {}\n", t("発動したルール", "Rules fired")));
    let mut rules: Vec<String> = r
        .rules_fired
        .iter()
        .map(|f| {
            format!(
                "{} [{:02}:{:02}] ({})",
                f.name,
                f.offset_secs / 60,
                f.offset_secs % 60,
                rfc3339(f.at)
            )
        })
        .collect();
    rules.extend(r.warnings.iter().map(|w| {
        format!(
            "warning:{} after {} s ({})",
            w.kind, w.after_secs, w.fired_at
        )
    }));
    list(&mut o, &rules, english);
    o.push_str(&format!("\n## {}\n", t("エスカレーション", "Escalations")));
    let esc: Vec<String> = r
        .escalations
        .iter()
        .map(|e| {
            format!(
                "{} → {} ({}; {}: {})",
                e.reason,
                if english {
                    "team lead"
                } else {
                    "責任者（チームリーダー）"
                },
                e.at,
                t("送達", "delivery"),
                match (english, e.delivery.as_str()) {
                    (false, "requested") => "依頼済み（送達は未確認）",
                    (true, "requested") => "requested (delivery not confirmed)",
                    (_, other) => other,
                }
            )
        })
        .collect();
    list(&mut o, &esc, english);
    o.push_str(&format!(
        "\n## {}\n",
        t("通話終了の根拠", "Grounds to end the call")
    ));
    let met = r.grounds_to_end["met"].as_bool().unwrap_or(false);
    let by: Vec<String> = r.grounds_to_end["by"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
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
        } else {
            format!(": {}", by.join(", "))
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
            o.push_str(&format!(
                "- {}: {}\n",
                x["mark"].as_str().unwrap_or(""),
                names.join("、")
            ));
        }
        o.push_str(&format!(
            "- {}: {POLICE_LINE}\n",
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
