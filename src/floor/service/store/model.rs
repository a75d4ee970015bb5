//! What goes into the store and what comes out: plain rows, independent of the database.

use serde::Serialize;

/// One bus message as the store keeps it: the contract's fields flattened, plus the raw body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventRecord {
    /// The message id (`Nats-Msg-Id`); the store keeps each id once.
    pub id: String,
    /// Contract kind: `call.start`, `call.end`, `warning`, `mark`, `level`, `escalation`,
    /// `problem`, `heartbeat`, `ledger`.
    pub kind: String,
    /// Site of the workstation.
    pub site: String,
    /// Agent (extension) of the call.
    pub agent: String,
    /// The publishing workstation's agent token (from the subject); empty = `agent`.
    pub ws_agent: String,
    /// The agent's display name.
    pub agent_name: String,
    /// The workstation's host name.
    pub host: String,
    /// The PBX call id, for call events.
    pub call_id: Option<String>,
    /// The caller's number (plain mode).
    pub caller: Option<String>,
    /// HMAC of the caller's number (hashed mode).
    pub caller_hash: Option<String>,
    /// When it happened on the workstation (Unix ms).
    pub at_ms: i64,
    /// Seconds since the call started.
    pub elapsed_secs: Option<i64>,
    /// The call's harassment level after this event.
    pub level: Option<i64>,
    /// Mark kind (`mark`).
    pub mark: Option<String>,
    /// The caller's words, verbatim (`mark`).
    pub quote: Option<String>,
    /// Harassment rules this event fired.
    pub rules: Vec<String>,
    /// Free detail: warning step, escalation reason, problem text.
    pub detail: Option<String>,
    /// Escalation: the id shared by every event of one escalation (queued, then delivered).
    pub escalation_id: Option<String>,
    /// Escalation delivery state.
    pub delivery: Option<String>,
    /// Heartbeat: whether the PBX link is up.
    pub pbx_up: Option<bool>,
    /// Heartbeat: open calls on the workstation.
    pub open_calls: Option<i64>,
    /// Heartbeat: the daemon's version.
    pub version: Option<String>,
    /// Heartbeat: seconds between heartbeats.
    pub interval_secs: Option<i64>,
    /// Ledger: line number.
    pub seq: Option<i64>,
    /// Ledger: the sealed manifest's SHA-256.
    pub manifest_sha256: Option<String>,
    /// Ledger: the line's own hash.
    pub line_hash: Option<String>,
    /// The message body as received (JSON).
    pub body: String,
}

impl EventRecord {
    /// `site/agent/call_id`, the store's key for a call.
    pub fn call_key(&self) -> Option<String> {
        self.call_id
            .as_deref()
            .map(|c| call_key(&self.site, &self.agent, c))
    }

    /// What caller history is keyed by: the hash when the site hashes numbers, else the number.
    pub fn caller_key(&self) -> Option<String> {
        self.caller_hash
            .clone()
            .or_else(|| self.caller.clone())
            .filter(|s| !s.is_empty())
    }
}

/// The store's key for a call.
pub fn call_key(site: &str, agent: &str, call_id: &str) -> String {
    format!("{site}/{agent}/{call_id}")
}

/// The store's key for a workstation.
pub fn workstation_key(site: &str, agent: &str) -> String {
    format!("{site}/{agent}")
}

/// A lead's ack as read from the bus.
#[derive(Debug, Clone, PartialEq)]
pub struct BusAck {
    /// The ack's id.
    pub id: String,
    /// Site of the call.
    pub site: String,
    /// The workstation's agent token (from the ack's subject).
    pub ws_agent: String,
    /// PBX call id.
    pub call_id: String,
    /// The lead's display name.
    pub lead: String,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// One bus message's write, for [`super::Store::apply_batch`].
#[derive(Debug, Clone, PartialEq)]
pub enum BusWrite {
    /// A workstation's event.
    Event(Box<EventRecord>),
    /// A lead's ack.
    Ack(BusAck),
}

/// Whether an event was new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Stored and counted.
    New,
    /// Already stored (a redelivery, or another floor instance took it): nothing changed.
    Duplicate,
    /// Not stored: it speaks for a call another workstation reported (a workstation may only
    /// speak for its own calls; its NATS permissions only bind the subject, not the body).
    Refused,
}

/// One call as the board and the caller page show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallRow {
    /// `site/agent/call_id`.
    pub key: String,
    /// Site.
    pub site: String,
    /// Agent.
    pub agent: String,
    /// The workstation's agent token on the bus (where acks go).
    pub ws_agent: String,
    /// Agent's display name.
    pub agent_name: String,
    /// Workstation host.
    pub host: String,
    /// PBX call id.
    pub call_id: String,
    /// Caller's number (plain mode).
    pub caller: Option<String>,
    /// Caller key (number or hash) for the caller page.
    pub caller_key: Option<String>,
    /// Start (Unix ms).
    pub started_ms: Option<i64>,
    /// End (Unix ms), `None` while open.
    pub ended_ms: Option<i64>,
    /// Highest level reached.
    pub level: i64,
    /// Number of marks.
    pub marks: i64,
}

/// A mark with the caller's verbatim words.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MarkRow {
    /// The call.
    pub call_key: String,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Mark kind.
    pub mark: String,
    /// The caller's words, verbatim.
    pub quote: String,
    /// Level after the mark.
    pub level: i64,
    /// Rules fired, comma-separated.
    pub rules: String,
}

/// An escalation (a ping to the leads) of a call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EscalationRow {
    /// Event id.
    pub id: String,
    /// The call.
    pub call_key: String,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Why.
    pub reason: String,
    /// Delivery state on the workstation.
    pub delivery: String,
}

/// A lead taking a call.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AckRow {
    /// The ack message's id.
    pub id: String,
    /// The call.
    pub call_key: String,
    /// The lead's display name.
    pub lead: String,
    /// The lead's account.
    pub user_name: String,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// One workstation's health as the heartbeats tell it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkstationRow {
    /// `site/agent`.
    pub key: String,
    /// Site.
    pub site: String,
    /// Agent.
    pub agent: String,
    /// Agent's display name.
    pub agent_name: String,
    /// Host.
    pub host: String,
    /// Last heartbeat (Unix ms).
    pub last_seen_ms: i64,
    /// Heartbeat interval (s).
    pub interval_secs: i64,
    /// PBX link up at the last heartbeat.
    pub pbx_up: bool,
    /// Since when the PBX link is down (Unix ms).
    pub pbx_down_ms: Option<i64>,
    /// Open calls at the last heartbeat.
    pub open_calls: i64,
    /// Daemon version.
    pub version: String,
    /// When the leads were pinged about this outage (Unix ms).
    pub pinged_ms: Option<i64>,
}

impl WorkstationRow {
    /// Since when protection is off, if it is: no heartbeat for longer than `stale_after_ms`
    /// (`None`: two of the workstation's intervals), then since the last heartbeat; or the PBX
    /// link down, since it went down.
    pub fn off_since(&self, now_ms: i64, stale_after_ms: Option<i64>) -> Option<i64> {
        let limit = stale_after_ms.unwrap_or(
            self.interval_secs
                .max(1)
                .saturating_mul(2)
                .saturating_mul(1000),
        );
        let silent = now_ms.saturating_sub(self.last_seen_ms) > limit;
        match (silent, self.pbx_up) {
            (true, true) => Some(self.last_seen_ms),
            (_, false) => Some(self.pbx_down_ms.unwrap_or(self.last_seen_ms)),
            (false, true) => None,
        }
    }
}

/// One version of the organisation's conclusion about a caller.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConclusionRow {
    /// Caller key.
    pub caller_key: String,
    /// 1, 2, … (never overwritten).
    pub version: i64,
    /// The conclusion.
    pub text: String,
    /// The phrase agents repeat.
    pub phrase: String,
    /// Who recorded it (display name).
    pub author: String,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// A board account.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    /// Login name.
    pub name: String,
    /// Shown to agents in acks.
    pub display_name: String,
    /// Teams the user leads.
    pub teams: Vec<String>,
    /// Sees every agent and the audit page.
    pub admin: bool,
    /// Argon2id PHC string.
    pub password_hash: String,
}

/// A logged-in session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// The account.
    pub user_name: String,
    /// The CSRF token every POST must carry.
    pub csrf: String,
    /// Expiry (Unix ms).
    pub expires_ms: i64,
}

/// One audit line.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditRow {
    /// Sequence.
    pub id: i64,
    /// When (Unix ms).
    pub at_ms: i64,
    /// Who.
    pub user_name: String,
    /// What: `view.call`, `view.caller`, `ack`, `conclusion`, `login`, …
    pub action: String,
    /// On what.
    pub target: String,
    /// Anything else.
    pub detail: String,
}

/// The newest ledger line a workstation published.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LedgerHeadRow {
    /// Site.
    pub site: String,
    /// Agent.
    pub agent: String,
    /// Host.
    pub host: String,
    /// Line number.
    pub seq: i64,
    /// Manifest SHA-256.
    pub manifest_sha256: String,
    /// Line hash.
    pub line_hash: String,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// Everything the board shows, in one read.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct BoardData {
    /// Open calls and calls ended since the cut-off.
    pub calls: Vec<CallRow>,
    /// Their marks, oldest first.
    pub marks: Vec<MarkRow>,
    /// Their escalations, oldest first.
    pub escalations: Vec<EscalationRow>,
    /// Their acks, oldest first.
    pub acks: Vec<AckRow>,
    /// Every workstation.
    pub workstations: Vec<WorkstationRow>,
}

/// A caller's history.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CallerHistory {
    /// Every call, newest first.
    pub calls: Vec<CallRow>,
    /// Their marks, newest first.
    pub marks: Vec<MarkRow>,
    /// Every version of the conclusion, newest first.
    pub conclusions: Vec<ConclusionRow>,
}
