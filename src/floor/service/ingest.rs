//! From the bus contract to the store's rows: a [`FloorEvent`] becomes an [`EventRecord`], and
//! the store's facts become the history and ledger-head replies.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};

use super::store::{CallerHistory, EventRecord, LedgerHeadRow};
use crate::floor::contract::{
    Conclusion, EventBody, FloorEvent, HistoryMark, HistoryReply, LedgerHeadReply, PbxState, SCHEMA,
};

/// How many of the caller's last marks a history reply carries.
pub const HISTORY_MARKS: usize = 3;

/// Longest time the store takes from an event (ten years, in seconds): a call's elapsed time
/// or duration beyond it is stored as this much (the body is kept as received), so no
/// arithmetic on it can overflow.
pub const MAX_SECS: u64 = 10 * 366 * 86_400;
/// Longest heartbeat interval the store takes (a day): "protection off" after two of them.
pub const MAX_INTERVAL_SECS: u64 = 86_400;

fn secs(v: u64) -> i64 {
    v.min(MAX_SECS) as i64
}

/// The store's view of an event; `raw` is the body as received.
pub fn record(ev: &FloorEvent, raw: &[u8]) -> EventRecord {
    let mut r = EventRecord {
        id: ev.id.clone(),
        kind: ev.kind().as_str().to_string(),
        site: ev.site.clone(),
        agent: ev.agent.clone(),
        agent_name: ev.agent_name.clone(),
        host: ev.host.clone(),
        call_id: ev.call_id.clone().filter(|c| !c.is_empty()),
        caller: ev.caller.caller.clone().filter(|c| !c.is_empty()),
        caller_hash: ev.caller.caller_hash.clone().filter(|c| !c.is_empty()),
        at_ms: ev.at.timestamp_millis(),
        elapsed_secs: ev.elapsed_secs.map(secs),
        level: ev.level.map(i64::from),
        body: String::from_utf8_lossy(raw).into_owned(),
        ..EventRecord::default()
    };
    match &ev.body {
        EventBody::CallStart { .. } => {}
        EventBody::CallEnd { duration_secs, .. } => {
            r.elapsed_secs = Some(secs(*duration_secs));
        }
        EventBody::Warning {
            warning,
            after_secs,
            ..
        } => r.detail = Some(format!("{warning} {after_secs}s")),
        EventBody::Mark {
            mark, quote, rules, ..
        } => {
            r.mark = Some(mark.clone());
            r.quote = quote.clone();
            r.rules = rules.clone();
        }
        EventBody::Level { reason, .. } => r.detail = Some(reason.clone()),
        EventBody::Escalation {
            escalation_id,
            reason,
            delivery,
            ..
        } => {
            r.escalation_id = Some(escalation_id.clone());
            r.detail = Some(reason.clone());
            r.delivery = serde_json::to_value(delivery.state)
                .ok()
                .and_then(|v| v.as_str().map(String::from));
        }
        EventBody::Problem { problem, text } => r.detail = Some(format!("{problem}: {text}")),
        EventBody::Heartbeat {
            pbx_state,
            open_calls,
            version,
            interval_secs,
            ..
        } => {
            // `unknown` (not connected yet since start) is not an outage of its own; a link that
            // never comes up shows as `down` in the next heartbeats.
            r.pbx_up = Some(*pbx_state != PbxState::Down);
            r.open_calls = Some(i64::from(*open_calls));
            r.version = Some(version.clone());
            r.interval_secs = Some((*interval_secs).clamp(1, MAX_INTERVAL_SECS) as i64);
        }
        EventBody::Ledger {
            seq,
            manifest_sha256,
            line_sha256,
            ..
        } => {
            r.seq = Some(i64::try_from(*seq).unwrap_or(i64::MAX));
            r.manifest_sha256 = Some(manifest_sha256.clone());
            r.line_hash = Some(line_sha256.clone());
        }
    }
    r
}

fn at(ms: i64) -> DateTime<FixedOffset> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .fixed_offset()
}

/// The reply to a daemon's history request: counts over 30 and 365 days, the highest level, the
/// last marks and the current conclusion. `known = false` when the floor has nothing.
pub fn history_reply(
    h: &CallerHistory,
    calls_30d: i64,
    calls_365d: i64,
    highest_365d: i64,
) -> HistoryReply {
    let conclusion = h.conclusions.first().map(|c| Conclusion {
        text: c.text.clone(),
        phrase: c.phrase.clone(),
        by: c.author.clone(),
        at: at(c.at_ms),
        version: c.version.clamp(0, i64::from(u32::MAX)) as u32,
    });
    let known = !h.calls.is_empty() || conclusion.is_some();
    HistoryReply {
        schema: SCHEMA.into(),
        known,
        calls_30d: calls_30d.clamp(0, i64::from(u32::MAX)) as u32,
        calls_365d: calls_365d.clamp(0, i64::from(u32::MAX)) as u32,
        highest_level: (highest_365d > 0).then(|| highest_365d.clamp(0, 4) as u8),
        last_call_at: h.calls.first().and_then(|c| c.started_ms).map(at),
        last_marks: h
            .marks
            .iter()
            .take(HISTORY_MARKS)
            .map(|m| HistoryMark {
                mark: m.mark.clone(),
                quote: (!m.quote.is_empty()).then(|| m.quote.clone()),
                at: at(m.at_ms),
            })
            .collect(),
        conclusion,
    }
}

/// The reply to a ledger-head request.
pub fn ledger_head_reply(
    head: Option<&LedgerHeadRow>,
    received_ms: Option<i64>,
) -> LedgerHeadReply {
    match head {
        Some(h) => LedgerHeadReply {
            schema: SCHEMA.into(),
            known: true,
            seq: Some(h.seq.max(0) as u64),
            line_sha256: Some(h.line_hash.clone()),
            manifest_sha256: Some(h.manifest_sha256.clone()),
            received_at: received_ms.or(Some(h.at_ms)).map(at),
        },
        None => LedgerHeadReply {
            schema: SCHEMA.into(),
            known: false,
            ..LedgerHeadReply::default()
        },
    }
}
