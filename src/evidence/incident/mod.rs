//! The incident record of a call with a mark or a warning: `incident.json` and a readable
//! `incident.md`, written into the call folder at the seal, before the manifest that lists
//! them with their SHA-256. The items are those of the harassment guidance's record sheet.
//!
//! - [`build`]: the record's data from the call's [`CallRecord`](super::record::CallRecord);
//! - [`render`]: the Markdown people read.
//!
//! The facts gathered while the call runs ([`IncidentData`], [`Update`]) live with the call
//! record in [`super::record`].

pub mod build;
pub mod render;

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::manifest::RecordFile;

pub use super::record::{
    Escalation, IncidentData, LEAD, LevelChange, NoteRecord, Receipt, Update, rfc3339,
};
pub use build::*;
pub use render::{human_duration, human_time, render_md};

/// Writes one record file atomically and says what the manifest lists for it.
fn write_listed(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<RecordFile> {
    crate::fsutil::write_atomic(dir, name, bytes)?;
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
        write_listed(dir, JSON_FILE, &json)?,
        write_listed(dir, MD_FILE, md.as_bytes())?,
    ])
}

#[cfg(test)]
mod tests {
    use super::build::stmt;
    use super::render::human_dt_as_is;
    use super::*;
    use crate::evidence::manifest::WarningRecord;
    use crate::harassment::{FiredRule, Mark, MarkKind, Rule, RuleAction};
    use chrono::DateTime;

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
