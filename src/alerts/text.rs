//! Warning texts: the configured ones, or the defaults that carry the standard phrases of the
//! guidance, with `{agent}`, `{caller}` and `{elapsed}` filled in.

use std::time::Duration;

use crate::config::{Language, WarningConfig, WarningKind};
use crate::events::CallInfo;

/// The phrase for closing a call past 30 minutes (standard wording of the guidance).
pub const TERMINATE_PHRASE_JA: &str =
    "30分以上お話しいただいておりますが、これ以上のご対応は致しかねます。失礼いたします。";
/// The recording notice (standard wording of the guidance).
pub const NOTICE_PHRASE_JA: &str = "対応品質向上のため、通話を録音させていただいております";

/// The closing phrase when grounds to end a call are met by the caller's conduct.
pub const END_PHRASE_JA: &str =
    "恐れ入りますが、これ以上のご対応は致しかねます。今後のご連絡は書面にてお願いいたします。";

/// Title and body telling the agent what a fired harassment rule means.
pub fn rule_texts(
    action: crate::harassment::RuleAction,
    mark: crate::harassment::MarkKind,
    level: crate::harassment::Level,
    lang: Language,
) -> (String, String) {
    use crate::harassment::RuleAction;
    match (action, lang) {
        (RuleAction::Escalate, Language::Ja) => (
            format!("上長を呼びました（{}）", mark.label_ja()),
            format!(
                "「{}」の記録により上長に連絡しました。レベル {}（{}）。",
                mark.label_ja(),
                level.0,
                level.label_ja()
            ),
        ),
        (RuleAction::End, Language::Ja) => (
            format!("通話を終了できます（{}）", mark.label_ja()),
            format!("次の言葉で通話を終了できます：「{END_PHRASE_JA}」"),
        ),
        (RuleAction::Escalate, Language::En) => (
            format!("Team lead called ({})", mark.label_en()),
            format!(
                "Your mark \"{}\" called your team lead. Level {} ({}).",
                mark.label_en(),
                level.0,
                level.label_en()
            ),
        ),
        (RuleAction::End, Language::En) => (
            format!("You may end this call ({})", mark.label_en()),
            "You may close the call with: \"I am sorry, we cannot assist further. Please contact us in writing from now on.\"".to_string(),
        ),
    }
}

/// Default title of a warning.
pub fn default_title(kind: WarningKind, lang: Language) -> &'static str {
    match (kind, lang) {
        (WarningKind::Escalate, Language::Ja) => "通話 {elapsed} 経過 — 上長へ引き継ぎを",
        (WarningKind::Terminate, Language::Ja) => {
            "通話 {elapsed} 経過 — 終了できる基準に達しました"
        }
        (WarningKind::Escalate, Language::En) => "Call at {elapsed} — bring in your team lead",
        (WarningKind::Terminate, Language::En) => "Call at {elapsed} — you may end this call",
    }
}

/// Default body of a warning.
pub fn default_body(kind: WarningKind, lang: Language) -> &'static str {
    match (kind, lang) {
        (WarningKind::Escalate, Language::Ja) => {
            "{caller} 様との通話が {elapsed} 続いています。解決の見込みがなければ上長に対応を引き継いでください。（担当 {agent}）"
        }
        (WarningKind::Terminate, Language::Ja) => {
            "次の言葉で通話を終了できます：「30分以上お話しいただいておりますが、これ以上のご対応は致しかねます。失礼いたします。」（{caller} 様・担当 {agent}）"
        }
        (WarningKind::Escalate, Language::En) => {
            "The call with {caller} has run {elapsed}. If it has not settled, hand it over to your team lead. (agent {agent})"
        }
        (WarningKind::Terminate, Language::En) => {
            "You may close the call with: \"We have been speaking for more than 30 minutes and cannot assist further. Goodbye.\" (caller {caller}, agent {agent})"
        }
    }
}

/// Call time as people read it: `15分03秒` / `15 min 03 s`; hours when needed.
///
/// ```
/// use std::time::Duration;
/// use callguard::alerts::text::format_elapsed;
/// use callguard::config::Language;
/// assert_eq!(format_elapsed(Duration::from_secs(903), Language::Ja), "15分03秒");
/// assert_eq!(format_elapsed(Duration::from_secs(1800), Language::En), "30 min 00 s");
/// ```
pub fn format_elapsed(d: Duration, lang: Language) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    match (lang, h) {
        (Language::Ja, 0) => format!("{m}分{s:02}秒"),
        (Language::Ja, _) => format!("{h}時間{m:02}分{s:02}秒"),
        (Language::En, 0) => format!("{m} min {s:02} s"),
        (Language::En, _) => format!("{h} h {m:02} min {s:02} s"),
    }
}

/// Fills the placeholders.
pub fn render(template: &str, call: &CallInfo, elapsed: Duration, lang: Language) -> String {
    let unknown = match lang {
        Language::Ja => "不明",
        Language::En => "unknown",
    };
    let or_unknown = |s: &str| {
        if s.is_empty() {
            unknown.to_string()
        } else {
            s.to_string()
        }
    };
    template
        .replace("{agent}", &or_unknown(&call.agent))
        .replace("{caller}", &or_unknown(&call.caller))
        .replace("{elapsed}", &format_elapsed(elapsed, lang))
}

/// Title and body of a fired warning.
pub fn warning_texts(
    step: Option<&WarningConfig>,
    kind: WarningKind,
    call: &CallInfo,
    elapsed: Duration,
    lang: Language,
) -> (String, String) {
    let title = step
        .map(|s| s.title.as_str())
        .filter(|t| !t.is_empty())
        .unwrap_or(default_title(kind, lang));
    let body = step
        .map(|s| s.body.as_str())
        .filter(|t| !t.is_empty())
        .unwrap_or(default_body(kind, lang));
    (
        render(title, call, elapsed, lang),
        render(body, call, elapsed, lang),
    )
}

/// A short name of a mark for the agent's confirmation (「暴言を記録しました」).
pub fn mark_short_ja(kind: crate::harassment::MarkKind) -> &'static str {
    use crate::harassment::MarkKind::*;
    match kind {
        Abuse => "暴言",
        Threat => "脅迫",
        Demand => "不当な要求",
        Manager => "「責任者を出せ」",
        Repeat => "同じ要求の繰り返し",
        Sexual => "性的な言動",
        Violence => "暴力",
        Symptom => "体調の異変",
    }
}

/// Title and body confirming a mark to the agent: what was recorded, how often, the level,
/// and whether the lead was told.
pub fn mark_confirmation(ev: &crate::events::MarkEvent, lang: Language) -> (String, String) {
    let n = ev.marks.iter().filter(|m| m.kind == ev.mark.kind).count();
    let lead = ev
        .fired
        .iter()
        .any(|f| f.rule.action == crate::harassment::RuleAction::Escalate)
        || ev.pings_lead();
    match lang {
        Language::Ja => {
            let mut body = format!("レベル {}（{}）。", ev.level.0, ev.level.label_ja());
            if lead {
                body.push_str("上長に連絡しました。");
            }
            if let Some(q) = &ev.mark.quote {
                body.push_str(&format!("発言：「{q}」"));
            }
            (
                format!("{}を記録しました（{n} 回目）", mark_short_ja(ev.mark.kind)),
                body,
            )
        }
        Language::En => {
            let mut body = format!("Level {} ({}).", ev.level.0, ev.level.label_en());
            if lead {
                body.push_str(" Your team lead was told.");
            }
            if let Some(q) = &ev.mark.quote {
                body.push_str(&format!(" Said: \"{q}\""));
            }
            (format!("Marked: {} (×{n})", ev.mark.kind.label_en()), body)
        }
    }
}

/// Title and body confirming the agent's call for help; `receivers` = how many webhooks.
pub fn escalation_confirmation(
    call: &CallInfo,
    elapsed: Duration,
    receivers: usize,
    lang: Language,
) -> (String, String) {
    let el = format_elapsed(elapsed, lang);
    match (lang, receivers) {
        (Language::Ja, 0) => (
            "上長への連絡先が設定されていません".into(),
            format!(
                "通話（お客様 {}、{el}）の記録には残しました。上長に直接声をかけてください。",
                call.caller
            ),
        ),
        (Language::Ja, _) => (
            "上長に連絡しました".into(),
            format!(
                "お客様 {} との通話（{el}）。上長が来るまで落ち着いて対応してください。",
                call.caller
            ),
        ),
        (Language::En, 0) => (
            "No team-lead receiver is set up".into(),
            format!(
                "The call (customer {}, {el}) keeps it on record. Please tell your team lead in person.",
                call.caller
            ),
        ),
        (Language::En, _) => (
            "Team lead called".into(),
            format!(
                "Call with customer {} ({el}). Your team lead has been told.",
                call.caller
            ),
        ),
    }
}

/// Title and body confirming a note added to a call's record.
pub fn note_confirmation(note: &crate::events::CallNote, lang: Language) -> (String, String) {
    use crate::events::NoteField::*;
    let (ja, en) = match note.field {
        Witness => ("同席者", "witness"),
        Response => ("担当者の対応", "your response"),
        Quote => ("お客様の発言", "the customer's words"),
        Next => ("今後の対応", "next steps"),
    };
    match (lang, note.in_progress) {
        (Language::Ja, true) => (format!("記録に{ja}を追加しました"), note.text.clone()),
        (Language::Ja, false) => (
            format!("通話 {} の記録に{ja}を追記しました", note.call_id),
            format!(
                "{}（封印済みの記録は変えずに、署名付きの追記として残します）",
                note.text
            ),
        ),
        (Language::En, true) => (format!("Added {en} to the record"), note.text.clone()),
        (Language::En, false) => (
            format!("Added {en} to the record of call {}", note.call_id),
            format!(
                "{} (a signed addendum; the sealed record stays as it was)",
                note.text
            ),
        ),
    }
}

/// The critical notice the CLI shows itself when no daemon answers a hotkey.
pub fn not_running(lang: Language) -> (&'static str, &'static str) {
    match lang {
        Language::Ja => (
            "callguard が動いていません。上長に直接連絡してください",
            "記録も上長への連絡もできませんでした。IT 担当に callguard の再起動を依頼してください（systemctl --user restart callguard）。",
        ),
        Language::En => (
            "callguard is not running. Contact your team lead directly",
            "Nothing was recorded and your team lead was not told. Ask IT to restart callguard (systemctl --user restart callguard).",
        ),
    }
}

/// A reloaded configuration was refused: the daemon goes on with the one it had.
pub fn config_refused(lang: Language, detail: &str) -> (String, String) {
    match lang {
        Language::Ja => (
            "callguard: 新しい設定に誤りがあります".into(),
            format!(
                "これまでの設定のまま動いています（警告・記録・上長への連絡は続きます）。IT 担当に連絡してください。\n{detail}"
            ),
        ),
        Language::En => (
            "callguard: the new configuration has a mistake".into(),
            format!(
                "callguard goes on with the configuration it had (warnings, recording and lead pings continue). Tell IT.\n{detail}"
            ),
        ),
    }
}

/// The configuration is invalid at start: callguard is not running.
pub fn config_invalid_at_start(lang: Language, detail: &str) -> (String, String) {
    match lang {
        Language::Ja => (
            "callguard が設定の誤りで起動できません。上長に直接連絡してください".into(),
            format!("警告も記録も動いていません。IT 担当に連絡してください。\n{detail}"),
        ),
        Language::En => (
            "callguard cannot start: its configuration has a mistake. Contact your team lead directly".into(),
            format!("No warnings and no recording until it is fixed. Tell IT.\n{detail}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> CallInfo {
        CallInfo {
            call_id: "c".into(),
            agent: "1001".into(),
            caller: "0312345678".into(),
            direction: "inbound".into(),
            channel: String::new(),
            started_at: chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00+09:00").unwrap(),
            adopted: false,
        }
    }

    #[test]
    fn defaults_carry_the_standard_phrase_and_placeholders() {
        let (t, b) = warning_texts(
            None,
            WarningKind::Terminate,
            &call(),
            Duration::from_secs(1800),
            Language::Ja,
        );
        assert_eq!(t, "通話 30分00秒 経過 — 終了できる基準に達しました");
        assert!(b.contains(TERMINATE_PHRASE_JA), "{b}");
        assert!(b.contains("0312345678") && b.contains("1001"));
        let (t, _) = warning_texts(
            None,
            WarningKind::Escalate,
            &call(),
            Duration::from_secs(903),
            Language::En,
        );
        assert_eq!(t, "Call at 15 min 03 s — bring in your team lead");
        assert_eq!(
            format_elapsed(Duration::from_secs(3725), Language::Ja),
            "1時間02分05秒"
        );
    }
}
