//! What the agent reads from the floor: a lead's ack, and the caller's history at call start
//! (with the recording notice, the organisation's conclusion and the phrase to repeat).

use chrono::{DateTime, FixedOffset};

use super::contract::{AckMessage, HistoryReply};
use crate::alerts::text::NOTICE_PHRASE_JA;
use crate::config::Language;

/// Title and body of the notification for a lead's ack: 「田中さんが対応中です」.
pub fn ack_texts(ack: &AckMessage, lang: Language) -> (String, String) {
    let lead = ack.lead.trim();
    let lead = if lead.is_empty() { "?" } else { lead };
    match lang {
        Language::Ja => (
            format!("{lead}さんが対応中です"),
            format!(
                "チームリーダーの{lead}さんがこの通話を引き受けました（{}）。",
                clock(&ack.at)
            ),
        ),
        Language::En => (
            format!("{lead} is on it"),
            format!("Team lead {lead} took this call at {}.", clock(&ack.at)),
        ),
    }
}

/// The line recorded in the call's incident record for an ack (who, when).
pub fn ack_record(ack: &AckMessage, lang: Language) -> String {
    match lang {
        Language::Ja => format!(
            "チームリーダー {} が対応を引き受けた（フロアボード, {}）",
            ack.lead,
            ack.at.to_rfc3339()
        ),
        Language::En => format!(
            "Team lead {} took the call (floor board, {})",
            ack.lead,
            ack.at.to_rfc3339()
        ),
    }
}

/// Title and body of the caller-history notification; `None` when the floor does not know the
/// caller (nothing is shown then).
pub fn history_texts(rep: &HistoryReply, lang: Language) -> Option<(String, String)> {
    if !rep.known {
        return None;
    }
    let mut body = Vec::new();
    match lang {
        Language::Ja => {
            body.push(format!(
                "過去30日 {}件 / 365日 {}件{}",
                rep.calls_30d,
                rep.calls_365d,
                rep.highest_level
                    .map(|l| format!("、最高レベル {l}"))
                    .unwrap_or_default()
            ));
            for m in rep.last_marks.iter().take(3) {
                body.push(match &m.quote {
                    Some(q) => format!("・{} {}「{}」", date(&m.at), m.mark, q),
                    None => format!("・{} {}", date(&m.at), m.mark),
                });
            }
            if let Some(c) = &rep.conclusion {
                body.push(format!(
                    "組織の結論: {}（{} {}）",
                    c.text,
                    c.by,
                    date(&c.at)
                ));
                if !c.phrase.is_empty() {
                    body.push(format!("繰り返す言葉: 「{}」", c.phrase));
                }
                body.push("結論を保ち、繰り返してください。再交渉はしません。".into());
            }
            body.push(format!("録音の告知: 「{NOTICE_PHRASE_JA}」"));
            Some(("この発信者の履歴があります".into(), body.join("\n")))
        }
        Language::En => {
            body.push(format!(
                "{} calls in 30 days / {} in 365 days{}",
                rep.calls_30d,
                rep.calls_365d,
                rep.highest_level
                    .map(|l| format!(", highest level {l}"))
                    .unwrap_or_default()
            ));
            for m in rep.last_marks.iter().take(3) {
                body.push(match &m.quote {
                    Some(q) => format!("- {} {} \"{}\"", date(&m.at), m.mark, q),
                    None => format!("- {} {}", date(&m.at), m.mark),
                });
            }
            if let Some(c) = &rep.conclusion {
                body.push(format!(
                    "The organisation's conclusion: {} ({}, {})",
                    c.text,
                    c.by,
                    date(&c.at)
                ));
                if !c.phrase.is_empty() {
                    body.push(format!("Phrase to repeat: \"{}\"", c.phrase));
                }
                body.push("Hold the conclusion and repeat it; do not renegotiate.".into());
            }
            body.push(
                "Recording notice: \"This call is recorded to improve the quality of our service.\""
                    .into(),
            );
            Some(("This caller has called before".into(), body.join("\n")))
        }
    }
}

fn clock(at: &DateTime<FixedOffset>) -> String {
    at.format("%H:%M").to_string()
}

fn date(at: &DateTime<FixedOffset>) -> String {
    at.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::contract::{Conclusion, HistoryMark, SCHEMA};

    fn at() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-11-22T10:12:00+09:00").unwrap()
    }

    #[test]
    fn ack_names_the_lead() {
        let ack = AckMessage {
            schema: SCHEMA.into(),
            id: "a".into(),
            call_id: "c".into(),
            lead: "田中".into(),
            at: at(),
            escalation_id: None,
        };
        assert_eq!(ack_texts(&ack, Language::Ja).0, "田中さんが対応中です");
        let en = AckMessage {
            lead: "Tanaka".into(),
            ..ack
        };
        assert_eq!(ack_texts(&en, Language::En).0, "Tanaka is on it");
        assert!(ack_record(&en, Language::En).contains("Tanaka"));
    }

    #[test]
    fn history_shows_counts_marks_conclusion_and_notice() {
        assert!(history_texts(&HistoryReply::default(), Language::Ja).is_none());
        let rep = HistoryReply {
            schema: SCHEMA.into(),
            known: true,
            calls_30d: 3,
            calls_365d: 41,
            highest_level: Some(4),
            last_call_at: Some(at()),
            last_marks: vec![HistoryMark {
                mark: "demand".into(),
                quote: Some("土下座しろ".into()),
                at: at(),
            }],
            conclusion: Some(Conclusion {
                text: "返金には応じない".into(),
                phrase: "先日ご回答したとおりです".into(),
                by: "田中".into(),
                at: at(),
                version: 1,
            }),
        };
        let (title, body) = history_texts(&rep, Language::Ja).unwrap();
        assert!(title.contains("履歴"));
        for want in [
            "30日 3件",
            "365日 41件",
            "最高レベル 4",
            "土下座しろ",
            "返金には応じない",
            "先日ご回答したとおりです",
            NOTICE_PHRASE_JA,
        ] {
            assert!(body.contains(want), "missing {want} in {body}");
        }
        let (_, en) = history_texts(&rep, Language::En).unwrap();
        assert!(en.contains("3 calls in 30 days"));
        assert!(en.contains("do not renegotiate"));
    }
}
