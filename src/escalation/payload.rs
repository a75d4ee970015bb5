//! What a team-lead ping says: the contract `json` body (DESIGN.md), and the `slack` and `teams`
//! renderings of the same facts. A body is rendered once, when the ping is raised, and stored in
//! the outbox, so every retry sends the same bytes (and the same signature).

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use crate::alerts::text::format_elapsed;
use crate::config::{Language, WebhookFormat};
use crate::events::{CallInfo, MarkEvent, Problem, WarningFired};

/// Value of the `event` field of the `json` body.
pub const EVENT: &str = "callguard.escalation";

/// One ping, as the `json` format sends it. Field order is the contract's.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ping {
    /// Always [`EVENT`].
    pub event: &'static str,
    /// The idempotency key (also sent as the `Idempotency-Key` header).
    pub id: String,
    /// `escalate` / `terminate` (a ladder warning), `manual` (the agent asked), `mark`,
    /// `problem`, `call.ended` (closes a call the lead was pinged about).
    pub kind: String,
    /// The warning's threshold; `null` for `manual` and `problem`.
    pub after_secs: Option<u64>,
    /// Agent extension or endpoint.
    pub agent: String,
    /// Agent display name (`agent.name`).
    pub agent_name: String,
    /// PBX call id; empty for a problem not tied to a call.
    pub call_id: String,
    /// Caller number.
    pub caller: String,
    /// Call time when the ping was raised.
    pub elapsed_secs: u64,
    /// RFC 3339 call start; `null` when not tied to a call.
    pub started_at: Option<String>,
    /// RFC 3339 time the ping was raised (stable across retries).
    pub sent_at: String,
    /// Host name of the workstation.
    pub host: String,
    /// What happened, for people, in the configured language.
    pub text: String,
    /// The agent's note (`manual`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What raised it: `warning`, `cli`, `notification`, `tray`, `mark`, `problem` or `call`.
    pub source: String,
    /// The problem's kind (`problem`), e.g. `evidence.truncated`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// What the agent marked (`mark`): `abuse`, `threat`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<String>,
    /// The caller's words with the mark, verbatim.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    /// The harassment rules the mark fired (`mark`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<String>>,
    /// The call's harassment level after the mark (1–4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    /// Grounds to end the call are met (`mark`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grounds_to_end: Option<bool>,
    /// Every mark of the call so far (mark pings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marks: Option<Vec<crate::harassment::Mark>>,
    /// The level this mark took the call to, when it crossed into "signs of harassment".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level_raised_to: Option<u8>,
    /// Call time at the end (`call.ended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
    /// The call's sealed evidence folder on the workstation (`call.ended`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// The pings merged into this one (raised within `escalation.coalesce`), oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coalesced: Option<Vec<Coalesced>>,
    /// What happened, without the level and agent that `text` starts with.
    #[serde(skip)]
    pub what: String,
    /// The incident-record reasons this ping answers.
    #[serde(skip)]
    pub reasons: Vec<String>,
}

/// One ping merged into another.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Coalesced {
    /// The merged ping's own id (never sent on its own).
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// When it was raised (RFC 3339).
    pub at: String,
    /// What it said.
    pub what: String,
}

/// Facts every ping of this workstation shares.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `agent.name`.
    pub agent_name: String,
    /// Host name.
    pub host: String,
    /// Language of `text`.
    pub language: Language,
}

fn base(id: String, kind: &str, o: &Origin, now: DateTime<FixedOffset>) -> Ping {
    Ping {
        event: EVENT,
        id,
        kind: kind.to_string(),
        after_secs: None,
        agent: String::new(),
        agent_name: o.agent_name.clone(),
        call_id: String::new(),
        caller: String::new(),
        elapsed_secs: 0,
        started_at: None,
        sent_at: now.to_rfc3339(),
        host: o.host.clone(),
        text: String::new(),
        note: None,
        source: String::new(),
        problem: None,
        mark: None,
        quote: None,
        rules: None,
        level: None,
        grounds_to_end: None,
        marks: None,
        level_raised_to: None,
        duration_secs: None,
        record: None,
        coalesced: None,
        what: String::new(),
        reasons: Vec::new(),
    }
}

fn with_call(mut p: Ping, call: &CallInfo, elapsed: Duration) -> Ping {
    p.agent = call.agent.clone();
    p.call_id = call.call_id.clone();
    p.caller = call.caller.clone();
    p.elapsed_secs = elapsed.as_secs();
    p.started_at = Some(call.started_at.to_rfc3339());
    p
}

/// `佐藤（1001）`, or whichever of the two is known.
fn who(p: &Ping, lang: Language) -> String {
    match (p.agent_name.is_empty(), p.agent.is_empty(), lang) {
        (false, false, Language::Ja) => format!("{}（{}）", p.agent_name, p.agent),
        (false, false, Language::En) => format!("{} ({})", p.agent_name, p.agent),
        (false, true, _) => p.agent_name.clone(),
        (true, false, _) => p.agent.clone(),
        (true, true, Language::Ja) => "不明".into(),
        (true, true, Language::En) => "unknown".into(),
    }
}

fn caller(p: &Ping, lang: Language) -> String {
    match (lang, p.caller.is_empty()) {
        (Language::Ja, true) => "番号不明".into(),
        (Language::En, true) => "unknown number".into(),
        _ => p.caller.clone(),
    }
}

/// `レベル 3（カスハラの兆候）` / `Level 3 (signs of harassment)`.
pub fn level_text(level: u8, lang: Language) -> String {
    let l = crate::harassment::Level(level.max(1));
    match lang {
        Language::Ja => format!("レベル {}（{}）", l.0, l.label_ja()),
        Language::En => format!("Level {} ({})", l.0, l.label_en()),
    }
}

/// Puts the level and the agent in front of what happened (`what`), once the sink knows the
/// call's level: every ping's `text` starts with them, so a lead sees at a glance how bad and who.
pub fn finish(p: &mut Ping, lang: Language) {
    let level = level_text(p.level.unwrap_or(1), lang);
    let head = match lang {
        Language::Ja => format!("【{level}】担当者 {}：", who(p, lang)),
        Language::En => format!("[{level}] Agent {}: ", who(p, lang)),
    };
    p.text = format!("{head}{}", p.what);
}

/// The ping for a ladder warning.
pub fn for_warning(
    id: String,
    call: &CallInfo,
    w: &WarningFired,
    o: &Origin,
    now: DateTime<FixedOffset>,
) -> Ping {
    let mut p = with_call(base(id, w.kind.as_str(), o, now), call, w.elapsed);
    p.after_secs = Some(w.after.as_secs());
    p.source = "warning".into();
    let (lang, el) = (o.language, format_elapsed(w.elapsed, o.language));
    let c = caller(&p, lang);
    p.what = match (w.kind, lang) {
        (crate::config::WarningKind::Escalate, Language::Ja) => format!(
            "お客様（{c}）との通話が {el} 続いています。担当者の席に向かうか、通話を引き継いでください。"
        ),
        (crate::config::WarningKind::Terminate, Language::Ja) => format!(
            "お客様（{c}）との通話が {el} に達し、終了できる基準を満たしました。担当者が定型の言葉で通話を終えるのを支えてください。"
        ),
        (crate::config::WarningKind::Escalate, Language::En) => format!(
            "the call with customer {c} has run {el}. Please go to the agent or take over the call."
        ),
        (crate::config::WarningKind::Terminate, Language::En) => format!(
            "the call with customer {c} has reached {el} and meets the criterion for ending it. Please back the agent in closing it with the standard phrase."
        ),
    };
    p
}

/// The ping for the agent's own call for help.
pub fn for_escalation(
    id: String,
    call: &CallInfo,
    elapsed: Duration,
    note: Option<&str>,
    source: &str,
    o: &Origin,
    now: DateTime<FixedOffset>,
) -> Ping {
    let mut p = with_call(base(id, "manual", o, now), call, elapsed);
    p.source = source.to_string();
    p.note = note.map(str::to_string).filter(|n| !n.trim().is_empty());
    let (lang, el) = (o.language, format_elapsed(elapsed, o.language));
    let c = caller(&p, lang);
    let mut text = match lang {
        Language::Ja => format!(
            "上長を呼んでいます（お客様 {c}、通話 {el}）。すぐに担当者の席に向かってください。"
        ),
        Language::En => format!(
            "is calling for the team lead (customer {c}, call at {el}). Please go to the agent now."
        ),
    };
    if let Some(n) = &p.note {
        text.push_str(&match lang {
            Language::Ja => format!("担当者のメモ：「{n}」"),
            Language::En => format!(" The agent's note: \"{n}\""),
        });
    }
    p.what = text;
    p
}

/// The ping for a sink's problem (e.g. a recording cut short); `call` when it is known.
pub fn for_problem(
    id: String,
    problem: &Problem,
    call: Option<&CallInfo>,
    o: &Origin,
    now: DateTime<FixedOffset>,
) -> Ping {
    let mut p = base(id, "problem", o, now);
    if let Some(call) = call {
        let elapsed = (now.signed_duration_since(call.started_at))
            .to_std()
            .unwrap_or_default();
        p = with_call(p, call, elapsed);
    } else if let Some(id) = &problem.call_id {
        p.call_id = id.clone();
    }
    p.source = "problem".into();
    p.problem = Some(problem.kind.clone());
    p.what = match o.language {
        Language::Ja => format!(
            "担当者の端末で問題が起きました：{}。端末で callguard doctor を実行して原因を確かめてください。",
            problem.text.trim_end_matches(['。', '.'])
        ),
        Language::En => format!(
            "a problem on the agent's workstation: {}. Run `callguard doctor` there to find the cause.",
            problem.text.trim_end_matches('.')
        ),
    };
    p
}

/// The ping for an agent's mark that fired harassment rules (escalate, or grounds to end).
pub fn for_mark(id: String, ev: &MarkEvent, o: &Origin, now: DateTime<FixedOffset>) -> Ping {
    let elapsed = Duration::from_secs(ev.mark.offset_secs);
    let mut p = with_call(base(id, "mark", o, now), &ev.call, elapsed);
    p.source = "mark".into();
    p.mark = Some(ev.mark.kind.as_str().to_string());
    p.quote = ev.mark.quote.clone().filter(|q| !q.trim().is_empty());
    p.rules = Some(ev.fired.iter().map(|f| f.name.clone()).collect());
    p.level = Some(ev.level.0);
    p.grounds_to_end = Some(ev.grounds_to_end);
    p.marks = Some(ev.marks.clone());
    p.level_raised_to = ev.crossed_signs().map(|l| l.0);
    let lang = o.language;
    let n = ev.marks.iter().filter(|m| m.kind == ev.mark.kind).count();
    let c = caller(&p, lang);
    let mut text = match lang {
        Language::Ja => format!(
            "お客様（{c}）の「{}」を記録しました（{n} 回目、通話 {}）。",
            ev.mark.kind.label_ja(),
            ev.mark.offset()
        ),
        Language::En => format!(
            "marked \"{}\" by customer {c} ({}, at {} into the call).",
            ev.mark.kind.label_en(),
            ordinal(n),
            ev.mark.offset()
        ),
    };
    if let Some(q) = &p.quote {
        text.push_str(&match lang {
            Language::Ja => format!("発言：「{q}」。"),
            Language::En => format!(" Said: \"{q}\"."),
        });
    }
    text.push_str(match (ev.grounds_to_end, lang) {
        (true, Language::Ja) => {
            "通話を終了できる基準を満たしています。担当者が通話を終えるのを支え、必要なら引き継いでください。"
        }
        (false, Language::Ja) => "担当者の席に向かうか、通話を引き継いでください。",
        (true, Language::En) => {
            " Grounds to end the call are met: back the agent in closing it, or take it over."
        }
        (false, Language::En) => " Please go to the agent or take over the call.",
    });
    p.what = text;
    p
}

fn ordinal(n: usize) -> String {
    match (n % 10, n % 100) {
        (1, x) if x != 11 => format!("{n}st"),
        (2, x) if x != 12 => format!("{n}nd"),
        (3, x) if x != 13 => format!("{n}rd"),
        _ => format!("{n}th"),
    }
}

/// The ping that closes a call the lead heard about: how long it ran, its final level and
/// where its sealed record is (`record`: the call's evidence folder, when sealed; the evidence
/// folder with `pending` when the seal has not come yet; `None` when nothing is recorded).
#[allow(clippy::too_many_arguments)]
pub fn for_call_end(
    id: String,
    call: &CallInfo,
    duration: Duration,
    level: u8,
    record: Option<&str>,
    pending: bool,
    o: &Origin,
    now: DateTime<FixedOffset>,
) -> Ping {
    let mut p = with_call(base(id, "call.ended", o, now), call, duration);
    p.source = "call".into();
    p.level = Some(level);
    p.duration_secs = Some(duration.as_secs());
    p.record = record.map(str::to_string);
    let lang = o.language;
    let el = format_elapsed(duration, lang);
    let c = caller(&p, lang);
    let level = level_text(level, lang);
    p.what = match (record, lang) {
        (Some(dir), Language::Ja) if pending => format!(
            "お客様（{c}）との通話が終わりました。通話時間 {el}、最終の{level}。記録は封印が済みしだい、担当者の端末の {dir} に保存されます（callguard verify で確かめられます）。"
        ),
        (Some(dir), Language::En) if pending => format!(
            "the call with customer {c} has ended after {el}; final {level}. Its record is saved under {dir} on the agent's workstation once sealed (`callguard verify` checks it)."
        ),
        (Some(dir), Language::Ja) => format!(
            "お客様（{c}）との通話が終わりました。通話時間 {el}、最終の{level}。記録は担当者の端末の {dir} にあります（incident.md）。改ざんのないことは callguard verify {dir} で確かめられます。"
        ),
        (None, Language::Ja) => format!(
            "お客様（{c}）との通話が終わりました。通話時間 {el}、最終の{level}。録音は保存していません（evidence.source = \"off\"）。"
        ),
        (Some(dir), Language::En) => format!(
            "the call with customer {c} has ended after {el}; final {level}. The record is on the agent's workstation in {dir} (incident.md); `callguard verify {dir}` checks it."
        ),
        (None, Language::En) => format!(
            "the call with customer {c} has ended after {el}; final {level}. No recording is kept (evidence.source = \"off\")."
        ),
    };
    p
}

/// Merges pings of one call raised within `escalation.coalesce` into one: the latest facts
/// (elapsed time, level, marks), every reason's sentence in order, and `coalesced` listing them.
pub fn merge(pings: Vec<Ping>, lang: Language) -> Option<Ping> {
    let mut pings = pings.into_iter();
    let first = pings.next()?;
    let mut parts = vec![first.clone()];
    parts.extend(pings);
    if parts.len() == 1 {
        return Some(first);
    }
    let Some(mut merged) = parts.last().cloned() else {
        return Some(first);
    };
    // The most pressing kind names the ping: grounds to end, then marks, the agent's call,
    // the 15-minute warning, problems.
    let rank = |k: &str| match k {
        "terminate" => 0,
        "mark" => 1,
        "manual" => 2,
        "escalate" => 3,
        _ => 4,
    };
    if let Some(top) = parts.iter().min_by_key(|p| rank(&p.kind)) {
        merged.kind = top.kind.clone();
        merged.after_secs = top.after_secs;
        merged.source = top.source.clone();
    }
    merged.level = parts.iter().filter_map(|p| p.level).max();
    merged.grounds_to_end = parts
        .iter()
        .filter_map(|p| p.grounds_to_end)
        .reduce(|a, b| a || b);
    merged.rules = Some(
        parts
            .iter()
            .flat_map(|p| p.rules.clone().unwrap_or_default())
            .collect(),
    )
    .filter(|r: &Vec<String>| !r.is_empty());
    merged.note = parts.iter().rev().find_map(|p| p.note.clone());
    merged.quote = parts.iter().rev().find_map(|p| p.quote.clone());
    merged.level_raised_to = parts.iter().filter_map(|p| p.level_raised_to).max();
    let intro = match lang {
        Language::Ja => format!("直近の {} 件をまとめてお知らせします。", parts.len()),
        Language::En => format!("{} updates in one message. ", parts.len()),
    };
    let sep = match lang {
        Language::Ja => "",
        Language::En => " ",
    };
    let items: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| match lang {
            Language::Ja => format!("（{}）{}", i + 1, p.what),
            Language::En => format!("({}) {}", i + 1, capitalize(&p.what)),
        })
        .collect();
    merged.what = format!("{intro}{}", items.join(sep));
    merged.coalesced = Some(
        parts
            .iter()
            .map(|p| Coalesced {
                id: p.id.clone(),
                kind: p.kind.clone(),
                at: p.sent_at.clone(),
                what: p.what.clone(),
            })
            .collect(),
    );
    merged.reasons = parts.iter().flat_map(|p| p.reasons.clone()).collect();
    Some(merged)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The HTTP body of `p` in `format`.
pub fn render(p: &Ping, format: WebhookFormat, lang: Language) -> String {
    match format {
        // Straight from the struct: a `Value` would sort the keys out of the contract's order.
        WebhookFormat::Json => serde_json::to_string(p).unwrap_or_default(),
        WebhookFormat::Slack => slack(p, lang).to_string(),
        WebhookFormat::Teams => teams(p, lang).to_string(),
    }
}

fn title(p: &Ping, lang: Language) -> &'static str {
    match (p.kind.as_str(), lang) {
        ("escalate", Language::Ja) => "長時間の通話：上長の対応をお願いします",
        ("terminate", Language::Ja) => "通話が終了できる基準に達しました",
        ("manual", Language::Ja) => "担当者が上長を呼んでいます",
        ("mark", Language::Ja) => "カスハラの記録：上長の対応をお願いします",
        ("call.ended", Language::Ja) => "通話が終わりました",
        (_, Language::Ja) => "担当者の端末の問題",
        ("escalate", Language::En) => "Long call: team lead needed",
        ("terminate", Language::En) => "Call meets the criterion for ending it",
        ("manual", Language::En) => "An agent is calling for the team lead",
        ("mark", Language::En) => "Harassment marked: team lead needed",
        ("call.ended", Language::En) => "Call ended",
        (_, Language::En) => "Problem on an agent's workstation",
    }
}

fn facts(p: &Ping, lang: Language) -> Vec<(&'static str, String)> {
    let labels = match lang {
        Language::Ja => ["担当者", "お客様", "通話時間", "通話 ID", "端末"],
        Language::En => ["Agent", "Customer", "Call time", "Call id", "Workstation"],
    };
    let mut out = vec![(labels[0], who(p, lang))];
    if !p.call_id.is_empty() {
        out.push((labels[1], caller(p, lang)));
        out.push((
            labels[2],
            format_elapsed(Duration::from_secs(p.elapsed_secs), lang),
        ));
        out.push((labels[3], p.call_id.clone()));
    }
    out.push((labels[4], p.host.clone()));
    out
}

/// A Slack incoming-webhook message: `blocks` (a section with the title and the sentence, a
/// context line with the facts) and `text`, the fallback that notifications and old clients show.
fn slack(p: &Ping, lang: Language) -> serde_json::Value {
    let details = facts(p, lang)
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(" · ");
    serde_json::json!({
        "text": format!("{}\n{}", title(p, lang), p.text),
        "blocks": [
            {"type": "section",
             "text": {"type": "mrkdwn", "text": format!("*{}*\n{}", title(p, lang), p.text)}},
            {"type": "context",
             "elements": [{"type": "mrkdwn", "text": details}]},
        ],
        "unfurl_links": false,
    })
}

/// The Adaptive Card's container style for a level: green, blue, amber, red.
fn level_style(level: u8) -> &'static str {
    match level {
        0 | 1 => "good",
        2 => "accent",
        3 => "warning",
        _ => "attention",
    }
}

/// The Workflows envelope ("post to a channel when a webhook request is received") with one
/// Adaptive Card; the level heads the card as a coloured container.
fn teams(p: &Ping, lang: Language) -> serde_json::Value {
    let facts: Vec<serde_json::Value> = facts(p, lang)
        .into_iter()
        .map(|(k, v)| serde_json::json!({"title": k, "value": v}))
        .collect();
    let level = p.level.unwrap_or(1);
    serde_json::json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "Container", "style": level_style(level), "bleed": true,
                     "items": [
                        {"type": "TextBlock", "text": level_text(level, lang),
                         "weight": "Bolder", "wrap": true},
                        {"type": "TextBlock", "text": title(p, lang), "size": "Medium",
                         "weight": "Bolder", "wrap": true},
                     ]},
                    {"type": "TextBlock", "text": p.text, "wrap": true},
                    {"type": "FactSet", "facts": facts},
                ],
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WarningKind;

    fn call() -> CallInfo {
        CallInfo {
            call_id: "c-42".into(),
            agent: "1001".into(),
            caller: "0312345678".into(),
            direction: "inbound".into(),
            channel: String::new(),
            started_at: DateTime::parse_from_rfc3339("2026-11-22T10:00:00+09:00").unwrap(),
            adopted: false,
        }
    }

    /// The 15-minute escalation step, fired 3 s after its time.
    fn escalate_at_15_minutes(now: DateTime<chrono::FixedOffset>) -> WarningFired {
        WarningFired {
            step: 0,
            kind: WarningKind::Escalate,
            after: Duration::from_secs(900),
            elapsed: Duration::from_secs(903),
            fired_at: now,
            late: false,
            notify_lead: true,
        }
    }

    fn origin() -> Origin {
        Origin {
            agent_name: "佐藤".into(),
            host: "ws-017".into(),
            language: Language::Ja,
        }
    }

    #[test]
    fn json_body_has_the_contract_fields_in_order() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:15:03+09:00").unwrap();
        let w = escalate_at_15_minutes(now);
        let mut p = for_warning("k1".into(), &call(), &w, &origin(), now);
        p.level = Some(2);
        finish(&mut p, Language::Ja);
        let body = render(&p, WebhookFormat::Json, Language::Ja);
        let keys = [
            "event",
            "id",
            "kind",
            "after_secs",
            "agent",
            "agent_name",
            "call_id",
            "caller",
            "elapsed_secs",
            "started_at",
            "sent_at",
            "host",
            "text",
        ];
        let mut at = 0;
        for k in keys {
            let pos = body.find(&format!("\"{k}\":")).expect(k);
            assert!(pos >= at, "{k} out of order in {body}");
            at = pos;
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["event"], "callguard.escalation");
        assert_eq!(v["after_secs"], 900);
        assert_eq!(v["elapsed_secs"], 903);
        assert_eq!(v["agent_name"], "佐藤");
        assert!(v["text"].as_str().unwrap().contains("15分03秒"));
        assert!(v.get("note").is_none());
    }

    #[test]
    fn slack_gets_blocks_and_teams_a_coloured_level() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:05:00+09:00").unwrap();
        let mut p = for_escalation(
            "k2".into(),
            &call(),
            Duration::from_secs(300),
            Some("怒鳴られています"),
            "cli",
            &origin(),
            now,
        );
        p.level = Some(2);
        finish(&mut p, Language::Ja);
        assert!(
            p.text
                .starts_with("【レベル 2（感情的）】担当者 佐藤（1001）：上長を呼んでいます"),
            "{}",
            p.text
        );
        let s: serde_json::Value =
            serde_json::from_str(&render(&p, WebhookFormat::Slack, Language::Ja)).unwrap();
        assert!(s["text"].as_str().unwrap().contains("怒鳴られています"));
        assert_eq!(s["blocks"][0]["type"], "section");
        assert!(
            s["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with("*担当者が上長を呼んでいます*\n【レベル 2")
        );
        assert_eq!(s["blocks"][1]["type"], "context");
        assert!(
            s["blocks"][1]["elements"][0]["text"]
                .as_str()
                .unwrap()
                .contains("通話 ID: c-42")
        );
        let t: serde_json::Value =
            serde_json::from_str(&render(&p, WebhookFormat::Teams, Language::Ja)).unwrap();
        assert_eq!(t["type"], "message");
        let card = &t["attachments"][0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["body"][0]["type"], "Container");
        assert_eq!(card["body"][0]["style"], "accent");
        assert_eq!(card["body"][0]["items"][0]["text"], "レベル 2（感情的）");
        assert!(
            card["body"][1]["text"]
                .as_str()
                .unwrap()
                .contains("怒鳴られています")
        );
        assert_eq!(card["body"][2]["facts"][3]["value"], "c-42");
    }

    #[test]
    fn merged_pings_keep_every_reason_and_the_highest_level() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:15:03+09:00").unwrap();
        let w = escalate_at_15_minutes(now);
        let mut a = for_warning("a".into(), &call(), &w, &origin(), now);
        a.level = Some(2);
        a.reasons = vec!["warning:escalate after 900 s".into()];
        let mut b = for_escalation(
            "b".into(),
            &call(),
            Duration::from_secs(910),
            None,
            "cli",
            &origin(),
            now,
        );
        b.level = Some(3);
        b.reasons = vec!["manual".into()];
        let mut m = merge(vec![a, b], Language::Ja).unwrap();
        finish(&mut m, Language::Ja);
        assert_eq!(m.kind, "manual");
        assert_eq!(m.level, Some(3));
        assert_eq!(m.reasons.len(), 2);
        assert!(
            m.text
                .starts_with("【レベル 3（カスハラの兆候）】担当者 佐藤（1001）：直近の 2 件")
        );
        assert!(
            m.text
                .contains("（1）お客様（0312345678）との通話が 15分03秒 続いています")
        );
        assert!(m.text.contains("（2）上長を呼んでいます"));
        let v: serde_json::Value =
            serde_json::from_str(&render(&m, WebhookFormat::Json, Language::Ja)).unwrap();
        assert_eq!(v["coalesced"][0]["id"], "a");
        assert_eq!(v["coalesced"][1]["kind"], "manual");
    }

    #[test]
    fn the_call_end_says_how_long_how_bad_and_where_the_record_is() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:33:00+09:00").unwrap();
        let mut p = for_call_end(
            "e".into(),
            &call(),
            Duration::from_secs(1980),
            3,
            Some("/home/sato/.local/share/callguard/evidence/2026/11/22/100000_c-42-3f2a9c1b"),
            false,
            &origin(),
            now,
        );
        finish(&mut p, Language::Ja);
        assert!(p.text.starts_with("【レベル 3（カスハラの兆候）】担当者 佐藤（1001）：お客様（0312345678）との通話が終わりました。通話時間 33分00秒"), "{}", p.text);
        assert!(p.text.contains("callguard verify /home/sato/"));
        let v: serde_json::Value =
            serde_json::from_str(&render(&p, WebhookFormat::Json, Language::Ja)).unwrap();
        assert_eq!(v["kind"], "call.ended");
        assert_eq!(v["duration_secs"], 1980);
        assert_eq!(v["level"], 3);
    }
}
