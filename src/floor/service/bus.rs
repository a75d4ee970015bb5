//! The floor's side of the bus: makes the `CALLGUARD` stream if asked, consumes it through a
//! durable pull consumer shared by every floor instance (each message acknowledged only after
//! the store committed it, so a restart resumes where it stopped and nothing is counted twice),
//! answers history and ledger-head requests, and publishes leads' acks.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::ingest;
use super::store::{Applied, BusAck, BusWrite, Store, call_key};
use super::web::AckOut;
use super::web::live::BoardChanges;
use crate::floor::config::FloorConfig;
use crate::floor::contract::{
    self, AckMessage, EventKind, FloorEvent, HistoryRequest, LedgerHeadRequest, ParsedSubject,
    SCHEMA,
};

/// Why the bus side could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// JetStream refused the stream or consumer.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// A subscription failed.
    #[error("cannot subscribe to {subject}: {msg}")]
    Subscribe {
        /// Subject.
        subject: String,
        /// Cause.
        msg: String,
    },
}

/// The `CALLGUARD` stream's settings.
pub fn stream_config(cfg: &FloorConfig) -> stream::Config {
    stream::Config {
        name: contract::STREAM.into(),
        subjects: contract::stream_subjects(),
        storage: stream::StorageType::File,
        duplicate_window: contract::DUPLICATE_WINDOW,
        max_age: cfg.stream_max_age,
        // Old events age out of the stream after `stream_max_age`; the store keeps them.
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    }
}

/// Creates the stream if missing (`floor.create_stream`), else checks it exists.
pub async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &FloorConfig,
) -> Result<stream::Stream, BusError> {
    if cfg.create_stream {
        js.get_or_create_stream(stream_config(cfg))
            .await
            .map_err(|e| BusError::JetStream(e.to_string()))
    } else {
        js.get_stream(contract::STREAM)
            .await
            .map_err(|e| BusError::JetStream(e.to_string()))
    }
}

/// Consumes the stream into the store until `stop`.
pub async fn consume(
    stream: stream::Stream,
    durable: String,
    store: Store,
    notify: watch::Sender<u64>,
    changes: BoardChanges,
    stop: CancellationToken,
) -> Result<(), BusError> {
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable,
            consumer::pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_ack_pending: 10_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| BusError::JetStream(e.to_string()))?;
    loop {
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "floor: cannot pull from the stream; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        // Whatever has arrived is stored in one transaction, then acknowledged: at a flood
        // this is one commit per batch, and when events trickle in a batch is one event.
        let mut batches = (&mut messages).ready_chunks(BATCH);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                b = batches.next() => b,
            };
            let Some(batch) = next else { break };
            let mut writes = Vec::with_capacity(batch.len());
            let mut msgs = Vec::with_capacity(batch.len());
            for item in batch {
                let msg = match item {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "floor: stream read error");
                        continue;
                    }
                };
                match parse(&msg.subject, &msg.payload) {
                    Ok(w) => {
                        writes.push(w);
                        msgs.push(msg);
                    }
                    Err(why) => {
                        tracing::warn!(subject = %msg.subject, error = %why,
                            "floor: a message that does not fit the contract is skipped");
                        let _ = msg.ack_with(jetstream::AckKind::Term).await;
                    }
                }
            }
            if writes.is_empty() {
                continue;
            }
            let now = chrono::Utc::now().timestamp_millis();
            let results = match store.apply_batch(&writes, now).await {
                Ok(applied) => applied.into_iter().map(Ok).collect(),
                Err(e) if writes.len() > 1 => {
                    // One bad write must not hold back the others: one at a time, so only the
                    // message that fails is redelivered.
                    tracing::warn!(error = %e, n = writes.len(),
                        "floor: batch store write failed; storing its events one by one");
                    let mut one_by_one = Vec::with_capacity(writes.len());
                    for w in &writes {
                        one_by_one.push(store.apply_batch(std::slice::from_ref(w), now).await);
                    }
                    one_by_one
                        .into_iter()
                        .map(|r| r.map(|a| a.first().copied().unwrap_or(Applied::Duplicate)))
                        .collect::<Vec<_>>()
                }
                Err(e) => vec![Err(e)],
            };
            let mut changed = false;
            for ((msg, result), write) in msgs.iter().zip(results).zip(&writes) {
                match result {
                    Ok(applied) => {
                        if applied == Applied::New {
                            changed = true;
                            tell(&changes, write);
                        }
                        if applied == Applied::Refused {
                            tracing::warn!(subject = %msg.subject,
                                "floor: an event for a call another workstation reported is not stored");
                        }
                        if let Err(e) = msg.ack().await {
                            // Not acknowledged: the server redelivers it and the store drops
                            // the duplicate.
                            tracing::warn!(error = %e, "floor: ack to the server failed");
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e,
                            "floor: store write failed; the event is redelivered");
                        let _ = msg
                            .ack_with(jetstream::AckKind::Nak(Some(Duration::from_secs(2))))
                            .await;
                    }
                }
            }
            if changed {
                notify.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }
}

/// Tells the live board what a stored message changed.
fn tell(changes: &BoardChanges, write: &BusWrite) {
    match write {
        BusWrite::Event(ev) => {
            if let Some(key) = ev.call_key() {
                changes.call(&key);
            }
            if ev.kind == "heartbeat" {
                changes.workstations();
            }
        }
        // The store resolves which call an ack belongs to; rare enough to read the board again.
        BusWrite::Ack(_) => changes.everything(),
    }
}

/// Most messages stored in one transaction.
const BATCH: usize = 256;

/// `payload` with every JSON escape of a NUL character (`\u0000`) turned into one of the
/// replacement character (`\ufffd`), in place: PostgreSQL cannot store a NUL in text, and a
/// message it refuses would be redelivered for good. A raw NUL byte is not valid JSON anyway.
fn without_nul(payload: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const NUL: &[u8] = b"\\u0000";
    if !payload.windows(NUL.len()).any(|w| w == NUL) {
        return std::borrow::Cow::Borrowed(payload);
    }
    let mut out = payload.to_vec();
    // Backslashes in a row before this byte: an odd count means this one is escaped.
    let mut run = 0usize;
    let mut i = 0;
    while i < out.len() {
        if out[i] == b'\\' {
            if run.is_multiple_of(2) && out[i..].starts_with(NUL) {
                out[i + 2..i + 6].copy_from_slice(b"fffd");
                i += NUL.len();
                run = 0;
                continue;
            }
            run += 1;
        } else {
            run = 0;
        }
        i += 1;
    }
    std::borrow::Cow::Owned(out)
}

/// The store write a bus message asks for, or why it fits no contract.
fn parse(subject: &str, payload: &[u8]) -> Result<BusWrite, String> {
    let payload = &*without_nul(payload);
    match contract::parse_subject(subject) {
        Some(ParsedSubject::Ack { site, agent }) => {
            let ack = AckMessage::from_json(payload).map_err(|e| e.to_string())?;
            Ok(BusWrite::Ack(BusAck {
                id: ack.id,
                site,
                ws_agent: agent,
                call_id: ack.call_id,
                lead: ack.lead,
                at_ms: ack.at.timestamp_millis(),
            }))
        }
        Some(ParsedSubject::Event { site, agent, kind }) => {
            let ev = FloorEvent::from_json(payload).map_err(|e| e.to_string())?;
            // The server lets a workstation publish only under its own site and agent (its
            // permissions), so the subject is what can be trusted: a body that claims another
            // site, or another kind than the subject's, would put the event on another site's
            // board or past a consumer filtering by kind. (The body's agent may differ: it is
            // the call's agent as the PBX names it; the subject's is kept as `ws_agent`.)
            if contract::subject_token(&ev.site) != site {
                return Err(format!(
                    "the event says site {:?}, its subject site {site:?}",
                    ev.site
                ));
            }
            if ev.kind() != kind {
                return Err(format!(
                    "the event is a {}, its subject says {}",
                    ev.kind().as_str(),
                    kind.as_str()
                ));
            }
            // A heartbeat speaks for the workstation itself: its body must name the workstation
            // of its subject, or one workstation could mark another one alive. (A ledger line
            // naming another agent is kept: the board shows it red, and it moves no ledger
            // head but its own workstation's; see the store.)
            if kind == EventKind::Heartbeat && contract::subject_token(&ev.agent) != agent {
                return Err(format!(
                    "the {} says agent {:?}, its subject agent {agent:?}",
                    kind.as_str(),
                    ev.agent
                ));
            }
            let mut rec = ingest::record(&ev, payload);
            rec.ws_agent = agent;
            Ok(BusWrite::Event(Box::new(rec)))
        }
        _ => Err("not a floor subject".into()),
    }
}

/// Answers `callguard.v1.<site>.history` (every site when `site` is `*`) until `stop`.
pub async fn answer_history(
    client: async_nats::Client,
    site: String,
    store: Store,
    stop: CancellationToken,
) -> Result<(), BusError> {
    let subject = contract::history_subject(&site);
    answer_requests(client, subject, stop, move |payload| {
        let store = store.clone();
        async move {
            let req = match HistoryRequest::from_json(&payload) {
                Ok(req) => req,
                Err(e) => {
                    tracing::debug!(error = %e, "floor: malformed history request");
                    return None;
                }
            };
            match history(&store, &req).await {
                Ok(r) => Some(r.to_json()),
                Err(e) => {
                    tracing::warn!(error = %e, "floor: history lookup failed");
                    None
                }
            }
        }
    })
    .await
}

/// Answers the requests on `subject` until `stop`, in the queue group every floor instance
/// shares (one of them answers each request). Each request gets its own task, so a slow store
/// lookup never holds up the next caller's; `answer` gives the reply's bytes, or nothing (the
/// asker's timeout then lets it go on without).
async fn answer_requests<F, Fut>(
    client: async_nats::Client,
    subject: String,
    stop: CancellationToken,
    answer: F,
) -> Result<(), BusError>
where
    F: Fn(bytes::Bytes) -> Fut,
    Fut: Future<Output = Option<Vec<u8>>> + Send + 'static,
{
    let mut sub = client
        .queue_subscribe(subject.clone(), "callguard-floor".into())
        .await
        .map_err(|e| BusError::Subscribe {
            subject,
            msg: e.to_string(),
        })?;
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = sub.next() => match m { Some(m) => m, None => return Ok(()) },
        };
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let reply = answer(msg.payload);
        let client = client.clone();
        tokio::spawn(async move {
            if let Some(bytes) = reply.await {
                let _ = client.publish(reply_to, bytes.into()).await;
            }
        });
    }
}

/// The history reply for a request.
pub async fn history(
    store: &Store,
    req: &HistoryRequest,
) -> Result<contract::HistoryReply, super::store::StoreError> {
    let Some(key) = req
        .caller
        .caller_hash
        .clone()
        .or_else(|| req.caller.caller.clone())
        .filter(|k| !k.is_empty())
    else {
        return Ok(contract::HistoryReply {
            schema: SCHEMA.into(),
            ..Default::default()
        });
    };
    let now = chrono::Utc::now().timestamp_millis();
    let day = 24 * 3600 * 1000;
    let mut h = store.caller_history(&key, 50).await?;
    // The call asking is already in the store (its start came first): it is not history.
    if let Some(call_id) = &req.call_id {
        let this = call_key(&req.site, &req.agent, call_id);
        h.calls.retain(|c| c.key != this);
        h.marks.retain(|m| m.call_key != this);
    }
    let (n30, _) = store.caller_counts(&key, now - 30 * day).await?;
    let (n365, highest) = store.caller_counts(&key, now - 365 * day).await?;
    let this_call = req.call_id.is_some() && store_has_call(store, req).await;
    let sub = i64::from(this_call);
    Ok(ingest::history_reply(
        &h,
        (n30 - sub).max(0),
        (n365 - sub).max(0),
        highest,
    ))
}

async fn store_has_call(store: &Store, req: &HistoryRequest) -> bool {
    let Some(call_id) = &req.call_id else {
        return false;
    };
    matches!(
        store.call(&call_key(&req.site, &req.agent, call_id)).await,
        Ok(Some(_))
    )
}

/// Answers `callguard.v1.<site>.ledger.head` until `stop`.
pub async fn answer_ledger_head(
    client: async_nats::Client,
    site: String,
    store: Store,
    stop: CancellationToken,
) -> Result<(), BusError> {
    let subject = contract::ledger_head_subject(&site);
    answer_requests(client, subject, stop, move |payload| {
        let store = store.clone();
        async move {
            let req = LedgerHeadRequest::from_json(&payload).ok()?;
            match store.ledger_head(&req.site, &req.agent).await {
                Ok(head) => Some(ingest::ledger_head_reply(head.as_ref(), None).to_json()),
                Err(e) => {
                    tracing::warn!(error = %e, "floor: ledger head lookup failed");
                    None
                }
            }
        }
    })
    .await
}

/// Publishes leads' acks into the stream (so every floor instance records them) and thereby to
/// the agent's workstation, until `stop` or the web side closes.
pub async fn publish_acks(
    js: jetstream::Context,
    mut acks: mpsc::UnboundedReceiver<AckOut>,
    stop: CancellationToken,
) {
    loop {
        let a = tokio::select! {
            _ = stop.cancelled() => return,
            a = acks.recv() => match a { Some(a) => a, None => return },
        };
        let msg = AckMessage {
            schema: SCHEMA.into(),
            id: a.id.clone(),
            call_id: a.call_id.clone(),
            lead: a.lead.clone(),
            at: chrono::DateTime::from_timestamp_millis(a.at_ms)
                .unwrap_or_default()
                .fixed_offset(),
            escalation_id: a.escalation_id.clone(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(contract::MSG_ID_HEADER, a.id.as_str());
        let subject = contract::ack_subject(&a.site, &a.agent);
        // Retried a few times: the lead pressed the button once and expects it to arrive.
        for attempt in 0..5u32 {
            let sent = match js
                .publish_with_headers(subject.clone(), headers.clone(), msg.to_json().into())
                .await
            {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match sent {
                Ok(()) => {
                    tracing::info!(call_id = %a.call_id, agent = %a.agent, lead = %a.lead,
                        "ack sent to the workstation");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "floor: ack publish failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt + 1))).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::floor::contract::{EventBody, PbxState, event_subject};

    fn start(site: &str) -> FloorEvent {
        FloorEvent {
            schema: SCHEMA.into(),
            id: "e-1".into(),
            site: site.into(),
            host: "ws".into(),
            agent: "2001".into(),
            agent_name: String::new(),
            call_id: Some("c-1".into()),
            caller: Default::default(),
            at: chrono::Local::now().fixed_offset(),
            elapsed_secs: None,
            level: None,
            body: EventBody::CallStart {
                direction: "inbound".into(),
                adopted: false,
            },
        }
    }

    #[test]
    fn an_event_is_stored_only_under_its_own_site_and_kind() {
        let ok = parse(
            &event_subject("tokyo-1", "1001", EventKind::CallStart),
            &start("tokyo-1").to_json(),
        );
        match ok {
            // The body's agent is the call's; the workstation is the subject's.
            Ok(BusWrite::Event(rec)) => {
                assert_eq!(
                    (rec.agent.as_str(), rec.ws_agent.as_str()),
                    ("2001", "1001")
                );
            }
            other => panic!("refused its own event: {:?}", other.err()),
        }
        let other_site = parse(
            &event_subject("tokyo-1", "1001", EventKind::CallStart),
            &start("osaka-2").to_json(),
        );
        assert!(
            other_site.as_ref().is_err_and(|e| e.contains("osaka-2")),
            "stored an event for another site: {:?}",
            other_site.err()
        );
        let other_kind = parse(
            &event_subject("tokyo-1", "1001", EventKind::Heartbeat),
            &start("tokyo-1").to_json(),
        );
        assert!(
            other_kind.as_ref().is_err_and(|e| e.contains("call.start")),
            "stored a call.start published as a heartbeat: {:?}",
            other_kind.err()
        );
    }

    fn heartbeat(agent: &str) -> FloorEvent {
        FloorEvent {
            agent: agent.into(),
            call_id: None,
            body: EventBody::Heartbeat {
                pbx_state: PbxState::Up,
                pbx_detail: String::new(),
                open_calls: 0,
                version: "t".into(),
                interval_secs: 30,
                backlog: 0,
                up_since: None,
            },
            ..start("tokyo-1")
        }
    }

    #[test]
    fn a_heartbeat_speaks_only_for_the_workstation_of_its_subject() {
        let subject = event_subject("tokyo-1", "1002", EventKind::Heartbeat);
        assert!(parse(&subject, &heartbeat("1002").to_json()).is_ok());
        let forged = parse(&subject, &heartbeat("1001").to_json());
        assert!(
            forged.as_ref().is_err_and(|e| e.contains("1001")),
            "1002 marked 1001 alive: {:?}",
            forged.err()
        );
    }

    #[test]
    fn nul_characters_become_replacement_characters_and_nothing_else_changes() {
        let cases: [(&[u8], &[u8]); 5] = [
            (br#"{"a":"x\u0000y"}"#, br#"{"a":"x\ufffdy"}"#),
            // An escaped backslash followed by the text u0000 is no NUL.
            (br#"{"a":"x\\u0000"}"#, br#"{"a":"x\\u0000"}"#),
            (br#"{"a":"\\\u0000"}"#, br#"{"a":"\\\ufffd"}"#),
            (br#"{"a":"\u0000\u0000"}"#, br#"{"a":"\ufffd\ufffd"}"#),
            (br#"{"a":"plain"}"#, br#"{"a":"plain"}"#),
        ];
        for (input, want) in cases {
            assert_eq!(
                &*without_nul(input),
                want,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let mut ev = start("tokyo-1");
        ev.caller.caller = Some(format!("+8190{}1234", '\u{0}'));
        let subject = event_subject("tokyo-1", "1001", EventKind::CallStart);
        match parse(&subject, &ev.to_json()) {
            Ok(BusWrite::Event(rec)) => {
                assert_eq!(rec.caller.as_deref(), Some("+8190\u{fffd}1234"));
                assert!(!rec.body.contains('\u{0}') && !rec.body.contains("\\u0000"));
            }
            other => panic!("a caller with a NUL was refused: {:?}", other.err()),
        }
    }
}
