//! What the agent's commands (`mark`, `note`, `escalate`) say, in the configured `language`.
//! Help texts stay English; these are the answers an agent reads after a keystroke.

use crate::calls::MarkReceipt;
use crate::config::Language;
use crate::events::NoteField;
use crate::harassment::{Level, MarkKind, describe_rule};

/// The lines printed after a mark.
pub fn marked(kind: MarkKind, r: &MarkReceipt, lang: Language) -> Vec<String> {
    let level = Level(r.level);
    let mut lines = Vec::new();
    match lang {
        Language::Ja => {
            lines.push(format!(
                "「{}」を記録しました（通話 {}、{} の時点、{} 回目）。レベル {}（{}）",
                kind.label_ja(),
                r.call_id,
                r.offset,
                r.count,
                r.level,
                level.label_ja()
            ));
            if !r.fired.is_empty() {
                let rules: Vec<String> = r.fired.iter().map(|f| describe_rule(f, lang)).collect();
                lines.push(format!("発動したルール：{}", rules.join("、")));
            }
            if r.grounds_to_end {
                lines.push(format!(
                    "通話を終了できる基準に達しました：「{}」",
                    crate::alerts::text::END_PHRASE_JA
                ));
            }
        }
        Language::En => {
            lines.push(format!(
                "marked {} ({}) on call {} at {} — {} so far; level {} ({})",
                kind.as_str(),
                kind.label_en(),
                r.call_id,
                r.offset,
                r.count,
                r.level,
                level.label_en()
            ));
            if !r.fired.is_empty() {
                let rules: Vec<String> = r.fired.iter().map(|f| describe_rule(f, lang)).collect();
                lines.push(format!("rules fired: {}", rules.join(", ")));
            }
            if r.grounds_to_end {
                lines.push(
                    "grounds to end the call are met: \"I am sorry, we cannot assist further. Please contact us in writing from now on.\""
                        .to_string(),
                );
            }
        }
    }
    lines
}

/// After `callguard escalate`, with `receivers` webhooks pinged.
pub fn escalated(
    call_id: &str,
    caller: &str,
    elapsed: &str,
    receivers: usize,
    lang: Language,
) -> String {
    match lang {
        Language::Ja => format!(
            "上長に連絡しました（通話 {call_id}、お客様 {caller}、{elapsed}、通知先 {receivers} 件）"
        ),
        Language::En => format!(
            "team lead called to call {call_id} (customer {caller}, {elapsed}); {receivers} receiver(s)"
        ),
    }
}

/// `callguard escalate` with no `[[escalation.webhook]]`.
pub fn no_receivers(call_id: &str, lang: Language) -> String {
    match lang {
        Language::Ja => format!(
            "通話 {call_id} の記録には残しましたが、上長への通知先（[[escalation.webhook]]）が設定されていないため、誰にも連絡していません。上長に直接声をかけてください"
        ),
        Language::En => format!(
            "call {call_id} noted, but no [[escalation.webhook]] is configured: nobody was pinged; tell your team lead in person"
        ),
    }
}

/// After a note.
pub fn noted(field: &NoteField, call_id: &str, lang: Language) -> String {
    let (ja, en) = match field {
        NoteField::Witness => ("同席者", "the witness"),
        NoteField::Response => ("担当者の対応", "your response"),
        NoteField::Quote => ("お客様の発言", "the customer's words"),
        NoteField::Next => ("今後の対応", "the next steps"),
    };
    match lang {
        Language::Ja => format!("通話 {call_id} の記録に{ja}を追加しました"),
        Language::En => format!("added {en} to the record of call {call_id}"),
    }
}

/// `callguard note` without anything to add.
pub fn nothing_to_note(lang: Language) -> &'static str {
    match lang {
        Language::Ja => {
            "追加する内容がありません：--witness、--response、--quote、--next のどれかを指定してください"
        }
        Language::En => "nothing to add: give --witness, --response, --quote or --next",
    }
}

/// No daemon answers (the command also shows a critical desktop notification).
pub fn not_running(lang: Language) -> &'static str {
    match lang {
        Language::Ja => {
            "callguard が動いていません。上長に直接連絡してください（記録も連絡もできていません）"
        }
        Language::En => {
            "callguard is not running. Contact your team lead directly (nothing was recorded or sent)"
        }
    }
}

/// `callguard status` with no daemon on the control socket at `path`.
pub fn status_not_running(path: &std::path::Path, lang: Language) -> String {
    match lang {
        Language::Ja => format!(
            "callguard が動いていません（{} で応答するデーモンがありません）",
            path.display()
        ),
        Language::En => format!(
            "callguard is not running (no daemon answers on {})",
            path.display()
        ),
    }
}

/// The daemon refused a request: `code` is the protocol's reason, `error` its English text.
pub fn refused(code: Option<&str>, error: &str, lang: Language) -> String {
    match (lang, code) {
        (Language::Ja, Some("no_current_call")) => {
            "通話中ではありません（記録する通話がありません）".into()
        }
        (Language::Ja, Some("not_in_progress")) => {
            format!("その通話は進行中ではありません（{error}）")
        }
        (Language::Ja, _) => format!("受け付けられませんでした：{error}"),
        (Language::En, _) => error.to_string(),
    }
}

/// An unknown mark kind.
pub fn unknown_kind(kind: &str, lang: Language) -> String {
    match lang {
        Language::Ja => format!(
            "「{kind}」という記録の種類はありません。使えるもの：abuse（暴言）、threat（脅迫）、demand（不当な要求）、manager（責任者を出せ）、repeat（繰り返し）、sexual（性的言動）、violence（暴力）、symptom（体調の異変）"
        ),
        Language::En => crate::harassment::UnknownKind(kind.to_string()).to_string(),
    }
}

/// `callguard reload`: the files are the configuration the daemon already runs.
pub fn reload_unchanged(lang: Language) -> String {
    match lang {
        Language::Ja => "設定を再読み込みしました：変更はありません".into(),
        Language::En => "configuration reloaded: nothing changed".into(),
    }
}

/// `callguard reload`: the new configuration is in use; `keys` are the ones that changed.
pub fn reload_applied(lang: Language, keys: &[String]) -> String {
    match lang {
        Language::Ja => format!(
            "設定を再読み込みしました：{} 件変更（{}）",
            keys.len(),
            keys.join("、")
        ),
        Language::En => format!(
            "configuration reloaded: {} changed: {}",
            keys.len(),
            keys.join(", ")
        ),
    }
}

/// `callguard reload`: the new files were invalid; the daemon keeps the configuration it had.
pub fn reload_refused(lang: Language, detail: &str) -> String {
    match lang {
        Language::Ja => format!(
            "新しい設定は受け付けられませんでした。デーモンは以前の設定のまま動いています：\n  {detail}"
        ),
        Language::En => format!(
            "the new configuration was REFUSED; the daemon goes on with the one it had:\n  {detail}"
        ),
    }
}

/// `callguard reload`: valid, but it changes keys only a restart applies; nothing was applied.
pub fn reload_needs_restart(lang: Language, detail: &str) -> String {
    match lang {
        Language::Ja => format!("新しい設定は適用されていません：{detail}"),
        Language::En => format!("the new configuration was not applied: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_answers_carry_no_machine_strings() {
        let r = MarkReceipt {
            call_id: "c-4711".into(),
            offset: "05:00".into(),
            count: 2,
            level: 3,
            fired: vec!["manager#2:escalate".into()],
            grounds_to_end: false,
        };
        let lines = marked(MarkKind::Manager, &r, Language::Ja);
        assert_eq!(
            lines[0],
            "「責任者を出せ」を記録しました（通話 c-4711、05:00 の時点、2 回目）。レベル 3（カスハラの兆候）"
        );
        assert_eq!(
            lines[1],
            "発動したルール：「責任者を出せ」2 回目：上長に連絡"
        );
        let en = marked(MarkKind::Manager, &r, Language::En);
        assert!(en[0].starts_with("marked manager (demands a manager) on call c-4711"));
    }
}
