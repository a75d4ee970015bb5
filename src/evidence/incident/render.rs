//! The readable incident record, `incident.md`, rendered from [`IncidentRecord`]: local times
//! as people write them, durations in minutes and seconds, one vocabulary, and no machine
//! strings in either language.

use chrono::{DateTime, FixedOffset, Local};

use super::build::{IncidentRecord, NOT_ADVICE_EN, NOT_ADVICE_JA, POLICE_LINE, Statement};
use crate::evidence::record::{Escalation, Receipt};
use crate::harassment::{Level, MarkKind};

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
pub(super) fn human_dt_as_is(t: DateTime<FixedOffset>, english: bool) -> String {
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
