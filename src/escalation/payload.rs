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
    /// `escalate` / `terminate` (a ladder warning), `manual` (the agent asked), `problem`.
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
    /// What raised it: `warning`, `cli`, `notification` or `problem`.
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

/// `佐藤 (1001)`, or whichever of the two is known.
fn who(p: &Ping, lang: Language) -> String {
    match (p.agent_name.is_empty(), p.agent.is_empty()) {
        (false, false) => format!("{} ({})", p.agent_name, p.agent),
        (false, true) => p.agent_name.clone(),
        (true, false) => p.agent.clone(),
        (true, true) => match lang {
            Language::Ja => "エージェント".into(),
            Language::En => "An agent".into(),
        },
    }
}

fn caller(p: &Ping, lang: Language) -> String {
    match (lang, p.caller.is_empty()) {
        (Language::Ja, true) => "不明な発信者".into(),
        (Language::En, true) => "unknown caller".into(),
        _ => p.caller.clone(),
    }
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
    p.text = match (w.kind, lang) {
        (crate::config::WarningKind::Escalate, Language::Ja) => format!(
            "{} の通話が {el} 続いています（発信者 {}）。上長の対応をお願いします。",
            who(&p, lang),
            caller(&p, lang)
        ),
        (crate::config::WarningKind::Terminate, Language::Ja) => format!(
            "{} の通話が {el} に達しました（発信者 {}）。終了できる基準に達しています。",
            who(&p, lang),
            caller(&p, lang)
        ),
        (crate::config::WarningKind::Escalate, Language::En) => format!(
            "{}'s call with {} has run {el}. Please step in.",
            who(&p, lang),
            caller(&p, lang)
        ),
        (crate::config::WarningKind::Terminate, Language::En) => format!(
            "{}'s call with {} has reached {el}: it meets the criterion for ending it.",
            who(&p, lang),
            caller(&p, lang)
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
    let mut text = match lang {
        Language::Ja => format!(
            "{} が上長を呼んでいます（発信者 {}、通話 {el}）。",
            who(&p, lang),
            caller(&p, lang)
        ),
        Language::En => format!(
            "{} is calling for the team lead (call with {}, {el}).",
            who(&p, lang),
            caller(&p, lang)
        ),
    };
    if let Some(n) = &p.note {
        text.push_str(match lang {
            Language::Ja => " メモ: ",
            Language::En => " Note: ",
        });
        text.push_str(n);
    }
    p.text = text;
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
    p.text = match o.language {
        Language::Ja => format!("{} の端末で問題: {}", who(&p, o.language), problem.text),
        Language::En => format!("Problem at {}: {}", who(&p, o.language), problem.text),
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
    let mut text = match lang {
        Language::Ja => format!(
            "{} の通話（発信者 {}）で「{}」が記録されました（レベル {}）。",
            who(&p, lang),
            caller(&p, lang),
            ev.mark.kind.label_ja(),
            ev.level.0
        ),
        Language::En => format!(
            "{} marked \"{}\" on the call with {} (level {}).",
            who(&p, lang),
            ev.mark.kind.label_en(),
            caller(&p, lang),
            ev.level.0
        ),
    };
    if ev.grounds_to_end {
        text.push_str(match lang {
            Language::Ja => " 通話を終了できる基準に達しています。",
            Language::En => " Grounds to end the call are met.",
        });
    } else {
        text.push_str(match lang {
            Language::Ja => " 上長の対応をお願いします。",
            Language::En => " Please step in.",
        });
    }
    if let Some(q) = &p.quote {
        text.push_str(&match lang {
            Language::Ja => format!(" 発言:「{q}」"),
            Language::En => format!(" Said: \"{q}\""),
        });
    }
    p.text = text;
    p
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
        ("escalate", Language::Ja) => "callguard: 長時間通話 — 上長対応の依頼",
        ("terminate", Language::Ja) => "callguard: 通話が終了基準に達しました",
        ("manual", Language::Ja) => "callguard: エージェントが上長を呼んでいます",
        ("mark", Language::Ja) => "callguard: カスハラの記録 — 上長対応の依頼",
        (_, Language::Ja) => "callguard: 端末の問題",
        ("escalate", Language::En) => "callguard: long call — team lead needed",
        ("terminate", Language::En) => "callguard: call reached the end criterion",
        ("manual", Language::En) => "callguard: an agent is calling for the team lead",
        ("mark", Language::En) => "callguard: harassment marked — team lead needed",
        (_, Language::En) => "callguard: workstation problem",
    }
}

fn facts(p: &Ping, lang: Language) -> Vec<(&'static str, String)> {
    let labels = match lang {
        Language::Ja => ["通話", "発信者", "経過", "端末"],
        Language::En => ["Call", "Caller", "Elapsed", "Host"],
    };
    let mut out = Vec::new();
    if !p.call_id.is_empty() {
        out.push((labels[0], p.call_id.clone()));
        out.push((labels[1], caller(p, lang)));
        out.push((
            labels[2],
            format_elapsed(Duration::from_secs(p.elapsed_secs), lang),
        ));
    }
    out.push((labels[3], p.host.clone()));
    out
}

/// A Slack incoming-webhook message: `text` is what every client (and notification) shows.
fn slack(p: &Ping, lang: Language) -> serde_json::Value {
    let details = facts(p, lang)
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(" · ");
    serde_json::json!({
        "text": format!("*{}*\n{}\n{}", title(p, lang), p.text, details),
        "unfurl_links": false,
    })
}

/// A message with an Adaptive Card: accepted by Teams incoming webhooks and by the Workflows
/// "post to a channel when a webhook request is received" template.
fn teams(p: &Ping, lang: Language) -> serde_json::Value {
    let facts: Vec<serde_json::Value> = facts(p, lang)
        .into_iter()
        .map(|(k, v)| serde_json::json!({"title": k, "value": v}))
        .collect();
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
                    {"type": "TextBlock", "text": title(p, lang), "weight": "Bolder",
                     "size": "Medium", "wrap": true},
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
        let w = WarningFired {
            step: 0,
            kind: WarningKind::Escalate,
            after: Duration::from_secs(900),
            elapsed: Duration::from_secs(903),
            fired_at: now,
            late: false,
            notify_lead: true,
        };
        let p = for_warning("k1".into(), &call(), &w, &origin(), now);
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
    fn slack_and_teams_carry_the_text() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:05:00+09:00").unwrap();
        let p = for_escalation(
            "k2".into(),
            &call(),
            Duration::from_secs(300),
            Some("怒鳴られています"),
            "cli",
            &origin(),
            now,
        );
        let s: serde_json::Value =
            serde_json::from_str(&render(&p, WebhookFormat::Slack, Language::Ja)).unwrap();
        assert!(s["text"].as_str().unwrap().contains("怒鳴られています"));
        let t: serde_json::Value =
            serde_json::from_str(&render(&p, WebhookFormat::Teams, Language::Ja)).unwrap();
        let card = &t["attachments"][0]["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["body"][2]["facts"][0]["value"], "c-42");
        assert!(
            card["body"][1]["text"]
                .as_str()
                .unwrap()
                .contains("怒鳴られています")
        );
    }
}
