//! From what the daemon does ([`Action`]) to what the floor hears ([`FloorEvent`]): one pure
//! translation with the workstation's identity and the caller-id privacy setting, plus the few
//! facts it must remember per call (level, start) to fill every event's envelope.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::Subject;
use chrono::{DateTime, FixedOffset};

use super::contract::{
    self, CallerIdMode, CallerRef, Delivery, DeliveryState, EventBody, FloorEvent, PbxState,
};
use crate::events::{Action, CallInfo, PbxEvent};
use crate::harassment::Level;

/// Who this workstation is on the bus, and how it names callers.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `floor.site`.
    pub site: String,
    /// The workstation's agent id (subject token source).
    pub agent: String,
    /// `agent.name`.
    pub agent_name: String,
    /// Host name.
    pub host: String,
    /// `floor.caller_id`.
    pub caller_mode: CallerIdMode,
    /// The site key for hashed caller ids (empty in plain mode).
    pub caller_key: Vec<u8>,
    /// `floor.country_code`.
    pub country_code: String,
    /// Number of webhook targets (an escalation with none says `no_targets`).
    pub webhook_targets: u32,
}

impl Identity {
    /// The caller as the bus may carry it.
    pub fn caller(&self, raw: &str) -> CallerRef {
        if raw.is_empty() {
            return CallerRef::default();
        }
        CallerRef::new(raw, self.caller_mode, &self.caller_key, &self.country_code)
    }

    /// The subject of `ev`.
    pub fn subject(&self, ev: &FloorEvent) -> String {
        ev.subject(&self.site, &self.agent)
    }
}

#[derive(Debug, Clone)]
struct OpenCall {
    info: std::sync::Arc<CallInfo>,
    level: u8,
}

/// Translates actions into events, remembering each open call's level.
#[derive(Debug)]
pub struct Mapper {
    id: Identity,
    /// The subject of each kind, in [`contract::ALL_KINDS`]'s order (built once: every event
    /// needs one).
    subjects: Vec<Subject>,
    calls: HashMap<String, OpenCall>,
    pbx: PbxState,
    pbx_detail: String,
}

impl Mapper {
    /// A mapper for this workstation.
    pub fn new(id: Identity) -> Mapper {
        let subjects = contract::ALL_KINDS
            .iter()
            .map(|k| Subject::from(contract::event_subject(&id.site, &id.agent, *k)))
            .collect();
        Mapper {
            id,
            subjects,
            calls: HashMap::new(),
            pbx: PbxState::Unknown,
            pbx_detail: String::new(),
        }
    }

    /// The identity.
    pub fn identity(&self) -> &Identity {
        &self.id
    }

    /// The subject of `ev`: [`Identity::subject`], without building or copying it again.
    pub fn subject(&self, ev: &FloorEvent) -> Subject {
        let kind = ev.kind();
        match contract::ALL_KINDS.iter().position(|k| *k == kind) {
            Some(i) => self.subjects[i].clone(),
            None => self.id.subject(ev).into(),
        }
    }

    /// Calls open now.
    pub fn open_calls(&self) -> u32 {
        u32::try_from(self.calls.len()).unwrap_or(u32::MAX)
    }

    /// The PBX link as last seen.
    pub fn pbx(&self) -> (PbxState, &str) {
        (self.pbx, &self.pbx_detail)
    }

    /// Whether `call_id` is open.
    pub fn is_open(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id)
    }

    /// The most recently started open call (the agent's current call).
    pub fn current_call(&self) -> Option<&CallInfo> {
        self.calls
            .values()
            .max_by_key(|c| c.info.started_at)
            .map(|c| c.info.as_ref())
    }

    fn envelope(
        &self,
        call: Option<&CallInfo>,
        at: DateTime<FixedOffset>,
        elapsed: Option<Duration>,
        level: Option<u8>,
        id_parts: &[&str],
        body: EventBody,
    ) -> FloorEvent {
        let kind = body.kind();
        let call_id = call.map(|c| c.call_id.as_str()).unwrap_or("");
        let envelope_parts = [
            self.id.site.as_str(),
            self.id.agent.as_str(),
            self.id.host.as_str(),
            kind.as_str(),
            call_id,
        ];
        FloorEvent {
            schema: contract::SCHEMA.into(),
            id: contract::event_id_of(envelope_parts.into_iter().chain(id_parts.iter().copied())),
            site: self.id.site.clone(),
            host: self.id.host.clone(),
            agent: call
                .map(|c| c.agent.clone())
                .filter(|a| !a.is_empty())
                .unwrap_or_else(|| self.id.agent.clone()),
            agent_name: self.id.agent_name.clone(),
            call_id: call.map(|c| c.call_id.clone()),
            caller: call.map(|c| self.id.caller(&c.caller)).unwrap_or_default(),
            at,
            elapsed_secs: elapsed.map(|d| d.as_secs()),
            level,
            body,
        }
    }

    fn level_of(&self, call_id: &str) -> Option<u8> {
        self.calls.get(call_id).map(|c| c.level)
    }

    /// The events of one action (most give one, media none).
    pub fn map(&mut self, action: &Action, now: DateTime<FixedOffset>) -> Vec<FloorEvent> {
        match action {
            Action::Connection(PbxEvent::Connected { endpoint }) => {
                self.pbx = PbxState::Up;
                self.pbx_detail = endpoint.clone();
                Vec::new()
            }
            Action::Connection(PbxEvent::Disconnected { reason, .. }) => {
                self.pbx = PbxState::Down;
                self.pbx_detail = reason.clone();
                Vec::new()
            }
            Action::CallStarted(call) => {
                self.calls.insert(
                    call.call_id.clone(),
                    OpenCall {
                        info: call.clone(),
                        level: Level::NORMAL.0,
                    },
                );
                let started = contract::id_time(&call.started_at);
                vec![self.envelope(
                    Some(call),
                    call.started_at,
                    Some(elapsed(call, now)),
                    Some(Level::NORMAL.0),
                    &[&started],
                    EventBody::CallStart {
                        direction: call.direction.clone(),
                        adopted: call.adopted,
                    },
                )]
            }
            Action::Warning(call, w) => {
                let step = w.step.to_string();
                vec![self.envelope(
                    Some(call),
                    w.fired_at,
                    Some(w.elapsed),
                    self.level_of(&call.call_id),
                    &[&step],
                    EventBody::Warning {
                        warning: w.kind.as_str().into(),
                        after_secs: w.after.as_secs(),
                        late: w.late,
                        notify_lead: w.notify_lead,
                    },
                )]
            }
            Action::CallEnded {
                call,
                ended_at,
                duration,
                cause,
            } => {
                let level = self.level_of(&call.call_id);
                self.calls.remove(&call.call_id);
                vec![self.envelope(
                    Some(call),
                    *ended_at,
                    Some(*duration),
                    level,
                    &[],
                    EventBody::CallEnd {
                        started_at: call.started_at,
                        duration_secs: duration.as_secs(),
                        cause: cause.clone(),
                    },
                )]
            }
            Action::Marked(m) => {
                if let Some(c) = self.calls.get_mut(&m.call.call_id) {
                    c.level = c.level.max(m.level.0);
                }
                let disc = format!(
                    "{}\u{1f}{}\u{1f}{}",
                    m.mark.kind.as_str(),
                    contract::id_time(&m.mark.at),
                    m.marks.len()
                );
                vec![self.envelope(
                    Some(&m.call),
                    m.mark.at,
                    Some(Duration::from_secs(m.mark.offset_secs)),
                    Some(m.level.0),
                    &[&disc],
                    EventBody::Mark {
                        mark: m.mark.kind.as_str().into(),
                        quote: m.mark.quote.clone(),
                        offset_secs: m.mark.offset_secs,
                        rules: m.fired.iter().map(|f| f.name.clone()).collect(),
                        grounds_to_end: m.grounds_to_end,
                    },
                )]
            }
            Action::LevelChanged {
                call,
                from,
                to,
                reason,
            } => {
                if let Some(c) = self.calls.get_mut(&call.call_id) {
                    c.level = c.level.max(to.0);
                }
                let disc = format!("{}\u{1f}{}", from.0, to.0);
                vec![self.envelope(
                    Some(call),
                    now,
                    Some(elapsed(call, now)),
                    Some(to.0),
                    &[&disc],
                    EventBody::Level {
                        from: from.0,
                        reason: reason.clone(),
                    },
                )]
            }
            Action::Escalation {
                call,
                elapsed: el,
                note,
                source,
            } => {
                let at = contract::id_time(&now);
                let escalation_id = contract::event_id(&[
                    &self.id.site,
                    &self.id.agent,
                    &call.call_id,
                    "escalation",
                    &at,
                ]);
                let state = if self.id.webhook_targets == 0 {
                    DeliveryState::NoTargets
                } else {
                    DeliveryState::Queued
                };
                vec![self.envelope(
                    Some(call),
                    now,
                    Some(*el),
                    self.level_of(&call.call_id),
                    &[&at],
                    EventBody::Escalation {
                        escalation_id,
                        reason: if source == "notification" || source == "cli" {
                            "manual".into()
                        } else {
                            source.clone()
                        },
                        note: note.clone(),
                        delivery: Delivery {
                            state,
                            targets: self.id.webhook_targets,
                            delivered: 0,
                            error: None,
                        },
                    },
                )]
            }
            Action::Problem(p) => {
                let call = p
                    .call_id
                    .as_deref()
                    .and_then(|id| self.calls.get(id))
                    .map(|c| c.info.clone());
                let at = contract::id_time(&now);
                let mut ev = self.envelope(
                    call.as_deref(),
                    now,
                    call.as_deref().map(|c| elapsed(c, now)),
                    p.call_id.as_deref().and_then(|id| self.level_of(id)),
                    &[&p.kind, &at],
                    EventBody::Problem {
                        problem: p.kind.clone(),
                        text: p.text.clone(),
                    },
                );
                if ev.call_id.is_none() {
                    ev.call_id = p.call_id.clone();
                }
                vec![ev]
            }
            _ => Vec::new(),
        }
    }

    /// An `escalation` event with a ping's final delivery state, as the team-lead outbox knows
    /// it (`state`: its text, `delivered …` or `failed: …`); `None` while it is still queued.
    pub fn delivery(
        &self,
        call: &CallInfo,
        reason: &str,
        state: &str,
        now: DateTime<FixedOffset>,
    ) -> Option<FloorEvent> {
        let (st, error) = if state.starts_with("delivered") {
            (DeliveryState::Delivered, None)
        } else if let Some(why) = state.strip_prefix("failed: ") {
            (DeliveryState::Failed, Some(why.to_string()))
        } else {
            return None;
        };
        let escalation_id = contract::event_id(&[
            &self.id.site,
            &self.id.agent,
            &call.call_id,
            "escalation",
            reason,
        ]);
        Some(self.envelope(
            Some(call),
            now,
            Some(elapsed(call, now)),
            self.level_of(&call.call_id),
            &[reason, state],
            EventBody::Escalation {
                escalation_id,
                reason: reason.to_string(),
                note: None,
                delivery: Delivery {
                    state: st,
                    targets: self.id.webhook_targets,
                    delivered: if st == DeliveryState::Delivered {
                        self.id.webhook_targets
                    } else {
                        0
                    },
                    error,
                },
            },
        ))
    }

    /// A heartbeat now.
    pub fn heartbeat(
        &self,
        now: DateTime<FixedOffset>,
        interval: Duration,
        backlog: u64,
        up_since: DateTime<FixedOffset>,
    ) -> FloorEvent {
        let at = contract::id_time(&now);
        self.envelope(
            None,
            now,
            None,
            None,
            &[&at],
            EventBody::Heartbeat {
                pbx_state: self.pbx,
                pbx_detail: self.pbx_detail.clone(),
                open_calls: self.open_calls(),
                version: env!("CARGO_PKG_VERSION").into(),
                interval_secs: interval.as_secs(),
                backlog,
                up_since: Some(up_since),
            },
        )
    }

    /// A `ledger` event for one ledger line (`line` = its exact bytes without the newline).
    pub fn ledger(
        &self,
        line: &[u8],
        call_id: Option<&str>,
        now: DateTime<FixedOffset>,
    ) -> Option<FloorEvent> {
        #[derive(serde::Deserialize)]
        struct Line {
            seq: u64,
            #[serde(default)]
            call_id: Option<String>,
            #[serde(default)]
            dir: String,
            #[serde(default)]
            manifest_sha256: String,
            #[serde(default)]
            prev: String,
        }
        use sha2::Digest;
        let parsed: Line = serde_json::from_slice(line).ok()?;
        let line_sha256 = hex::encode(sha2::Sha256::digest(line));
        let seq = parsed.seq.to_string();
        let mut ev = self.envelope(
            None,
            now,
            None,
            None,
            &[&seq, &line_sha256],
            EventBody::Ledger {
                seq: parsed.seq,
                manifest_sha256: parsed.manifest_sha256,
                line_sha256: line_sha256.clone(),
                prev: parsed.prev,
                dir: parsed.dir,
                public_key: String::new(),
            },
        );
        ev.call_id = call_id.map(str::to_string).or(parsed.call_id);
        Some(ev)
    }
}

fn elapsed(call: &CallInfo, now: DateTime<FixedOffset>) -> Duration {
    (now - call.started_at).to_std().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WarningKind;
    use crate::events::WarningFired;
    use std::sync::Arc;

    fn at(s: &str) -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn id(mode: CallerIdMode) -> Identity {
        Identity {
            site: "tokyo-1".into(),
            agent: "1001".into(),
            agent_name: "佐藤".into(),
            host: "ws-017".into(),
            caller_mode: mode,
            caller_key: b"0123456789abcdef".to_vec(),
            country_code: "81".into(),
            webhook_targets: 1,
        }
    }

    fn call() -> Arc<CallInfo> {
        Arc::new(CallInfo {
            call_id: "c-42".into(),
            agent: "1001".into(),
            caller: "0312345678".into(),
            direction: "inbound".into(),
            channel: String::new(),
            started_at: at("2026-11-22T10:00:00+09:00"),
            adopted: false,
        })
    }

    #[test]
    fn a_call_maps_to_start_warning_end_with_stable_ids() {
        let mut m = Mapper::new(id(CallerIdMode::Plain));
        let now = at("2026-11-22T10:00:01+09:00");
        let start = m.map(&Action::CallStarted(call()), now);
        assert_eq!(start.len(), 1);
        assert_eq!(start[0].kind(), contract::EventKind::CallStart);
        assert_eq!(start[0].caller.caller.as_deref(), Some("0312345678"));
        assert_eq!(
            m.identity().subject(&start[0]),
            "callguard.v1.tokyo-1.1001.call.start"
        );
        // The same start again (a snapshot after a reconnect) has the same id.
        let again = Mapper::new(id(CallerIdMode::Plain)).map(&Action::CallStarted(call()), now);
        assert_eq!(again[0].id, start[0].id);
        assert_eq!(m.open_calls(), 1);

        let w = WarningFired {
            step: 0,
            kind: WarningKind::Escalate,
            after: Duration::from_secs(900),
            elapsed: Duration::from_secs(901),
            fired_at: at("2026-11-22T10:15:01+09:00"),
            late: false,
            notify_lead: true,
        };
        let warn = m.map(&Action::Warning(call(), w), now);
        assert_eq!(warn[0].elapsed_secs, Some(901));
        assert_ne!(warn[0].id, start[0].id);
        let end = m.map(
            &Action::CallEnded {
                call: call(),
                ended_at: at("2026-11-22T10:31:00+09:00"),
                duration: Duration::from_secs(1860),
                cause: "normal".into(),
            },
            now,
        );
        assert_eq!(end[0].kind(), contract::EventKind::CallEnd);
        assert_eq!(m.open_calls(), 0);
    }

    #[test]
    fn hashed_mode_puts_no_number_in_any_event() {
        let mut m = Mapper::new(id(CallerIdMode::Hashed));
        let now = at("2026-11-22T10:00:01+09:00");
        let evs = m.map(&Action::CallStarted(call()), now);
        let json = String::from_utf8(evs[0].to_json()).unwrap();
        assert!(!json.contains("312345678"), "{json}");
        assert!(evs[0].caller.caller_hash.is_some());
    }

    #[test]
    fn ledger_lines_carry_their_hash() {
        let m = Mapper::new(id(CallerIdMode::Plain));
        let line = br#"{"seq":3,"at":"x","call_id":"c-42","dir":"2026/11/22/100000_c","manifest_sha256":"ab","prev":"00","sig":"s"}"#;
        let ev = m
            .ledger(line, None, at("2026-11-22T10:00:01+09:00"))
            .unwrap();
        match &ev.body {
            EventBody::Ledger {
                seq, line_sha256, ..
            } => {
                assert_eq!(*seq, 3);
                assert_eq!(line_sha256.len(), 64);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(ev.call_id.as_deref(), Some("c-42"));
    }
}
