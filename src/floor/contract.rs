//! The floor bus contract (DESIGN.md, "The floor tier") as types: subjects, the stream, the JSON
//! bodies of events, acks, the caller-history and ledger-head request/replies, event ids and the
//! caller-id privacy rules. Daemons publish with these types and the floor service consumes them;
//! both sides must agree byte for byte, so nothing here depends on either side's internals.
//!
//! # Subjects
//!
//! | subject                                    | who → who            | what                      |
//! |--------------------------------------------|----------------------|---------------------------|
//! | `callguard.v1.<site>.<agent>.<kind>`       | daemon → stream      | [`FloorEvent`]            |
//! | `callguard.v1.<site>.<agent>.ack`          | floor → daemon       | [`AckMessage`]            |
//! | `callguard.v1.<site>.history`              | daemon ↔ floor (req) | [`HistoryRequest`]/[`HistoryReply`] |
//! | `callguard.v1.<site>.ledger.head`          | anyone ↔ floor (req) | [`LedgerHeadRequest`]/[`LedgerHeadReply`] |
//!
//! `<kind>` is one of [`EventKind`]; `call.start` and `call.end` span two subject tokens.
//!
//! # The stream
//!
//! One stream, [`STREAM`] (`CALLGUARD`), holds everything under `callguard.v1.`: the event
//! subjects of every kind and the acks ([`stream_subjects`]). It deliberately does not list the
//! request subjects (`…history`, `…ledger.head`): JetStream answers any message published with a
//! reply subject onto a stream subject with its own PubAck, which would reach the requester
//! before (or instead of) the floor's reply. So the stream covers `callguard.v1.*.*.<kind>` for
//! each kind rather than the bare wildcard `callguard.v1.>`.
//!
//! # Subject tokens
//!
//! Site and agent ids become subject tokens through [`subject_token`]: every character outside
//! `[A-Za-z0-9_-]` becomes `_` (so `.`, `*`, `>` and spaces can never change a subject's shape);
//! an empty id becomes `_`; an id longer than [`MAX_TOKEN`] bytes after that is cut and suffixed
//! with `-` and the first 8 hex digits of the SHA-256 of the original id. `PJSIP/1001` becomes
//! `PJSIP_1001`; server permissions (deploy/nats/) are written with these tokens.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `schema` value of every body on the bus.
pub const SCHEMA: &str = "callguard.floor/1";
/// First two tokens of every subject.
pub const PREFIX: &str = "callguard.v1";
/// The JetStream stream holding the floor's events.
pub const STREAM: &str = "CALLGUARD";
/// How long the server remembers a `Nats-Msg-Id` to drop a duplicate. Long enough to cover a
/// daemon killed between the server's store and its PubAck and restarted later; the floor store
/// also keeps `id` unique, so a duplicate beyond the window is still counted once there.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 3600);
/// Longest subject token made from a site or agent id.
pub const MAX_TOKEN: usize = 64;
/// Header carrying the event id (JetStream dedupe).
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// What a [`FloorEvent`] says happened. The spelling is the subject's last token(s) and the
/// body's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    /// A call was connected to the agent.
    #[serde(rename = "call.start")]
    CallStart,
    /// A call ended.
    #[serde(rename = "call.end")]
    CallEnd,
    /// A ladder step (15/30 min) fired.
    #[serde(rename = "warning")]
    Warning,
    /// The agent marked what the caller did.
    #[serde(rename = "mark")]
    Mark,
    /// The call's harassment level rose.
    #[serde(rename = "level")]
    Level,
    /// The lead was called to the call, with the ping's delivery state.
    #[serde(rename = "escalation")]
    Escalation,
    /// Something went wrong that the floor should see (disk full, recording lost…).
    #[serde(rename = "problem")]
    Problem,
    /// The workstation is alive: PBX link state, open calls, version.
    #[serde(rename = "heartbeat")]
    Heartbeat,
    /// One line of the workstation's evidence ledger (anchoring).
    #[serde(rename = "ledger")]
    Ledger,
}

/// Every event kind, in contract order.
pub const ALL_KINDS: [EventKind; 9] = [
    EventKind::CallStart,
    EventKind::CallEnd,
    EventKind::Warning,
    EventKind::Mark,
    EventKind::Level,
    EventKind::Escalation,
    EventKind::Problem,
    EventKind::Heartbeat,
    EventKind::Ledger,
];

impl EventKind {
    /// Contract spelling, e.g. `call.start`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::CallStart => "call.start",
            EventKind::CallEnd => "call.end",
            EventKind::Warning => "warning",
            EventKind::Mark => "mark",
            EventKind::Level => "level",
            EventKind::Escalation => "escalation",
            EventKind::Problem => "problem",
            EventKind::Heartbeat => "heartbeat",
            EventKind::Ledger => "ledger",
        }
    }

    /// The kind spelled `s`, if any.
    pub fn parse(s: &str) -> Option<EventKind> {
        ALL_KINDS.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the event belongs to a call (kept in order per call and never dropped from a
    /// full backlog). Heartbeats are the only events a full backlog may shed.
    pub fn is_droppable(self) -> bool {
        self == EventKind::Heartbeat
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A site or agent id made safe as one subject token (rule in the module docs).
pub fn subject_token(id: &str) -> String {
    // Site and agent ids are nearly always tokens already; every event's subject is built from
    // them, so that case is a plain copy.
    if !id.is_empty()
        && id.len() <= MAX_TOKEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return id.to_string();
    }
    let mut token: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() {
        return "_".into();
    }
    if token.len() > MAX_TOKEN {
        let digest = hex::encode(Sha256::digest(id.as_bytes()));
        token.truncate(MAX_TOKEN - 9);
        token.push('-');
        token.push_str(&digest[..8]);
    }
    token
}

/// `callguard.v1.<site>.<agent>.<kind>`: where a workstation publishes an event.
pub fn event_subject(site: &str, agent: &str, kind: EventKind) -> String {
    format!(
        "{PREFIX}.{}.{}.{}",
        subject_token(site),
        subject_token(agent),
        kind.as_str()
    )
}

/// `callguard.v1.<site>.<agent>.ack`: where the floor sends a lead's ack for this agent.
pub fn ack_subject(site: &str, agent: &str) -> String {
    format!(
        "{PREFIX}.{}.{}.ack",
        subject_token(site),
        subject_token(agent)
    )
}

/// `callguard.v1.<site>.history`: the caller-history request subject the floor answers.
pub fn history_subject(site: &str) -> String {
    format!("{PREFIX}.{}.history", subject_token(site))
}

/// `callguard.v1.<site>.ledger.head`: the ledger-head request subject the floor answers.
pub fn ledger_head_subject(site: &str) -> String {
    format!("{PREFIX}.{}.ledger.head", subject_token(site))
}

/// `callguard.v1.<site>.*.ack`: every ack of a site (for a floor instance following the others).
pub fn site_acks_filter(site: &str) -> String {
    format!("{PREFIX}.{}.*.ack", subject_token(site))
}

/// `_INBOX.<site>.<agent>`: the inbox prefix a workstation uses for replies, so the server can
/// let each workstation read only its own replies (deploy/nats/).
pub fn inbox_prefix(site: &str, agent: &str) -> String {
    format!("_INBOX.{}.{}", subject_token(site), subject_token(agent))
}

/// The subjects of the [`STREAM`]: every event kind of every site and agent, and the acks.
pub fn stream_subjects() -> Vec<String> {
    ALL_KINDS
        .iter()
        .map(|k| format!("{PREFIX}.*.*.{}", k.as_str()))
        .chain(std::iter::once(format!("{PREFIX}.*.*.ack")))
        .collect()
}

/// What a subject on the stream is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedSubject {
    /// An event of `kind` from `agent` at `site` (tokens as on the bus).
    Event {
        /// Site token.
        site: String,
        /// Agent token.
        agent: String,
        /// Kind.
        kind: EventKind,
    },
    /// An ack for `agent` at `site`.
    Ack {
        /// Site token.
        site: String,
        /// Agent token.
        agent: String,
    },
}

/// Splits a stream subject into site, agent and kind; `None` for anything else.
pub fn parse_subject(subject: &str) -> Option<ParsedSubject> {
    let rest = subject.strip_prefix(PREFIX)?.strip_prefix('.')?;
    let mut parts = rest.splitn(3, '.');
    let site = parts.next()?.to_string();
    let agent = parts.next()?.to_string();
    let tail = parts.next()?;
    if site.is_empty() || agent.is_empty() {
        return None;
    }
    if tail == "ack" {
        return Some(ParsedSubject::Ack { site, agent });
    }
    EventKind::parse(tail).map(|kind| ParsedSubject::Event { site, agent, kind })
}

/// A stable event id: the first 32 hex digits of SHA-256 over the parts, NUL-separated. Built
/// from what identifies the event (site, agent, call, kind, step…), never from a counter, so the
/// same event emitted again (after a restart, a PBX snapshot) carries the same id and is dropped
/// by the server ([`DUPLICATE_WINDOW`]) and by the floor store.
pub fn event_id(parts: &[&str]) -> String {
    event_id_of(parts.iter().copied())
}

/// [`event_id`] of parts that are not in one slice (the mapper's envelope and its kind's own
/// parts), without gathering them first.
pub fn event_id_of<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for (i, p) in parts.into_iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    // 32 hex digits of the digest's first 16 bytes, without building all 64 first (one id per
    // published event).
    let digest = h.finalize();
    let mut out = [0u8; 32];
    if hex::encode_to_slice(&digest[..16], &mut out).is_err() {
        return hex::encode(&digest[..16]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How the caller's number travels on the bus (`floor.caller_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallerIdMode {
    /// The number as the PBX gave it, in `caller`.
    #[default]
    Plain,
    /// Only `caller_hash`: HMAC-SHA256 with the site key over the E.164 number.
    Hashed,
}

/// The caller's number in E.164 (`+81312345678`) for hashing, so that `03-1234-5678`,
/// `0312345678` and `+81 3 1234 5678` hash the same. Separators (space, `-`, `.`, `(`, `)`) are
/// dropped; `+` numbers are kept; `00…` is the international prefix; a national number with its
/// trunk `0` gets `+<country_code>` instead. Anything else (an extension, `anonymous`) is
/// returned as it is without separators, so it still hashes consistently.
pub fn e164(raw: &str, country_code: &str) -> String {
    let cleaned: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{3000}'))
        .collect();
    let all_digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if let Some(rest) = cleaned.strip_prefix('+')
        && all_digits(rest)
    {
        return cleaned;
    }
    if let Some(rest) = cleaned.strip_prefix("00")
        && all_digits(rest)
    {
        return format!("+{rest}");
    }
    if let Some(rest) = cleaned.strip_prefix('0')
        && all_digits(rest)
        && rest.len() >= 6
    {
        return format!("+{country_code}{rest}");
    }
    cleaned
}

/// `caller_hash`: lowercase hex HMAC-SHA256 of the E.164 number with the site key.
pub fn caller_hash(key: &[u8], e164_number: &str) -> String {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) else {
        unreachable!("HMAC-SHA256 takes keys of any length")
    };
    mac.update(e164_number.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Who the caller is on the bus: exactly one of `caller` / `caller_hash` is set (both empty for
/// events not about a call).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerRef {
    /// The number as the PBX gave it (`floor.caller_id = "plain"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// HMAC-SHA256 hex of the E.164 number (`floor.caller_id = "hashed"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_hash: Option<String>,
}

impl CallerRef {
    /// The caller as configured: the plain number, or its hash with `key`.
    pub fn new(raw: &str, mode: CallerIdMode, key: &[u8], country_code: &str) -> CallerRef {
        match mode {
            CallerIdMode::Plain => CallerRef {
                caller: Some(raw.to_string()),
                caller_hash: None,
            },
            CallerIdMode::Hashed => CallerRef {
                caller: None,
                caller_hash: Some(caller_hash(key, &e164(raw, country_code))),
            },
        }
    }

    /// Whether neither is set.
    pub fn is_empty(&self) -> bool {
        self.caller.is_none() && self.caller_hash.is_none()
    }
}

/// One event on the bus: the common envelope, then the fields of its kind ([`EventBody`],
/// flattened; its `kind` tag is the envelope's `kind`). Readers ignore unknown fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FloorEvent {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Stable id ([`event_id`]), also sent as `Nats-Msg-Id`.
    pub id: String,
    /// Site id as configured (`floor.site`).
    pub site: String,
    /// Host name of the workstation.
    pub host: String,
    /// The agent: the call's agent as the PBX gives it, else the workstation's agent id.
    pub agent: String,
    /// The agent's display name (`agent.name`).
    #[serde(default)]
    pub agent_name: String,
    /// The call, for call events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// The caller (plain or hashed).
    #[serde(flatten)]
    pub caller: CallerRef,
    /// When it happened (RFC 3339 with offset).
    pub at: DateTime<FixedOffset>,
    /// Call time when it happened, for call events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_secs: Option<u64>,
    /// The call's harassment level (1–4) when it happened, for call events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    /// The kind and its own fields.
    #[serde(flatten)]
    pub body: EventBody,
}

impl FloorEvent {
    /// The kind of the body.
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    /// The subject this event is published on, from the workstation's site and agent id (the
    /// identity its credentials allow; in floor mode it differs from the body's `agent`).
    pub fn subject(&self, site: &str, workstation_agent: &str) -> String {
        event_subject(site, workstation_agent, self.kind())
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings, numbers and chrono times always serializes.
        self.encode().unwrap_or_default()
    }

    /// The JSON body, byte for byte what serde writes for it (a test pins this). The kinds
    /// every call publishes (`call.start`, `call.end`) are written directly: a flood publishes
    /// thousands a second, and serde's flattening and chrono's formatting through it cost
    /// several times more. The other kinds go through serde.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(512);
        match &self.body {
            EventBody::CallStart { direction, adopted } => {
                self.write_envelope(&mut out);
                out.extend_from_slice(br#","kind":"call.start","direction":"#);
                json_str(&mut out, direction);
                out.extend_from_slice(if *adopted {
                    br#","adopted":true}"#
                } else {
                    br#","adopted":false}"#
                });
            }
            EventBody::CallEnd {
                started_at,
                duration_secs,
                cause,
            } => {
                self.write_envelope(&mut out);
                out.extend_from_slice(br#","kind":"call.end","started_at":"#);
                json_time(&mut out, started_at);
                out.extend_from_slice(br#","duration_secs":"#);
                json_u64(&mut out, *duration_secs);
                out.extend_from_slice(br#","cause":"#);
                json_str(&mut out, cause);
                out.push(b'}');
            }
            _ => serde_json::to_writer(&mut out, self)?,
        }
        Ok(out)
    }

    /// `{` and the envelope's fields, in serde's order, without the closing brace.
    fn write_envelope(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"schema":"#);
        json_str(out, &self.schema);
        for (key, value) in [
            (&br#","id":"#[..], &self.id),
            (br#","site":"#, &self.site),
            (br#","host":"#, &self.host),
            (br#","agent":"#, &self.agent),
            (br#","agent_name":"#, &self.agent_name),
        ] {
            out.extend_from_slice(key);
            json_str(out, value);
        }
        for (key, value) in [
            (&br#","call_id":"#[..], &self.call_id),
            (br#","caller":"#, &self.caller.caller),
            (br#","caller_hash":"#, &self.caller.caller_hash),
        ] {
            if let Some(v) = value {
                out.extend_from_slice(key);
                json_str(out, v);
            }
        }
        out.extend_from_slice(br#","at":"#);
        json_time(out, &self.at);
        if let Some(e) = self.elapsed_secs {
            out.extend_from_slice(br#","elapsed_secs":"#);
            json_u64(out, e);
        }
        if let Some(l) = self.level {
            out.extend_from_slice(br#","level":"#);
            json_u64(out, u64::from(l));
        }
    }

    /// Parses a body; checks the schema.
    pub fn from_json(bytes: &[u8]) -> Result<FloorEvent, ContractError> {
        let ev: FloorEvent = serde_json::from_slice(bytes)?;
        check_schema(&ev.schema)?;
        Ok(ev)
    }
}

/// A JSON string, escaped as serde_json escapes it.
fn json_str(out: &mut Vec<u8>, s: &str) {
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(out, s);
}

fn json_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// [`write_time`]'s text as a `String`, for the tests to compare.
#[cfg(test)]
pub(crate) fn time_text(t: &DateTime<FixedOffset>) -> String {
    let mut out = Vec::with_capacity(35);
    write_time(&mut out, t);
    String::from_utf8(out).unwrap_or_else(|_| chrono_time_text(t))
}

fn chrono_time_text(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Appends `t` as chrono's serde writes it (RFC 3339; fractional seconds only when there are
/// some; `Z` for UTC): events and the backlog's lines are read back with serde. Every event and
/// backlog line carries one or two times, so the usual ones (years 0–9999, whole-minute
/// offsets, no leap second) are written digit by digit, without chrono's formatter and its
/// `String`; anything else goes through chrono.
pub(crate) fn write_time(out: &mut Vec<u8>, t: &DateTime<FixedOffset>) {
    use chrono::{Datelike, Timelike};
    let local = t.naive_local();
    let nanos = local.nanosecond();
    let offset = t.offset().local_minus_utc();
    let year = match u32::try_from(local.year()) {
        Ok(y) if y <= 9999 && nanos < 1_000_000_000 && offset % 60 == 0 => y,
        _ => {
            out.extend_from_slice(chrono_time_text(t).as_bytes());
            return;
        }
    };
    fn digits(out: &mut Vec<u8>, n: u32, width: u32) {
        for i in (0..width).rev() {
            out.push(b'0' + (n / 10u32.pow(i) % 10) as u8);
        }
    }
    digits(out, year, 4);
    out.push(b'-');
    digits(out, local.month(), 2);
    out.push(b'-');
    digits(out, local.day(), 2);
    out.push(b'T');
    digits(out, local.hour(), 2);
    out.push(b':');
    digits(out, local.minute(), 2);
    out.push(b':');
    digits(out, local.second(), 2);
    if nanos != 0 {
        out.push(b'.');
        if nanos.is_multiple_of(1_000_000) {
            digits(out, nanos / 1_000_000, 3);
        } else if nanos.is_multiple_of(1_000) {
            digits(out, nanos / 1_000, 6);
        } else {
            digits(out, nanos, 9);
        }
    }
    if offset == 0 {
        out.push(b'Z');
        return;
    }
    out.push(if offset < 0 { b'-' } else { b'+' });
    let minutes = offset.unsigned_abs() / 60;
    digits(out, minutes / 60, 2);
    out.push(b':');
    digits(out, minutes % 60, 2);
}

/// `t` as chrono's `to_rfc3339` writes it (`+00:00` for UTC where [`write_time`] writes `Z`):
/// the text some event ids are hashed over, which must stay the same from one version to the
/// next (a call adopted after an upgrade keeps its events' ids).
pub(crate) fn id_time(t: &DateTime<FixedOffset>) -> String {
    let mut out = Vec::with_capacity(35);
    write_time(&mut out, t);
    if out.last() == Some(&b'Z') {
        out.pop();
        out.extend_from_slice(b"+00:00");
    }
    String::from_utf8(out).unwrap_or_else(|_| t.to_rfc3339())
}

fn json_time(out: &mut Vec<u8>, t: &DateTime<FixedOffset>) {
    out.push(b'"');
    write_time(out, t);
    out.push(b'"');
}

/// The fields of each kind, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum EventBody {
    /// `call.start`.
    #[serde(rename = "call.start")]
    CallStart {
        /// `inbound` / `outbound` as the PBX gave it.
        #[serde(default)]
        direction: String,
        /// Adopted from a PBX snapshot rather than seen starting.
        #[serde(default)]
        adopted: bool,
    },
    /// `call.end`.
    #[serde(rename = "call.end")]
    CallEnd {
        /// When the call started.
        started_at: DateTime<FixedOffset>,
        /// Call time in seconds.
        duration_secs: u64,
        /// End cause as the PBX gave it (`normal`, `lost`…).
        #[serde(default)]
        cause: String,
    },
    /// `warning`.
    #[serde(rename = "warning")]
    Warning {
        /// `escalate` / `terminate`.
        warning: String,
        /// The step's threshold, seconds of call time.
        after_secs: u64,
        /// Fired later than due (call adopted or restored past it).
        #[serde(default)]
        late: bool,
        /// Whether the lead is pinged for this step.
        #[serde(default)]
        notify_lead: bool,
    },
    /// `mark`.
    #[serde(rename = "mark")]
    Mark {
        /// The mark kind (`abuse`, `threat`, …).
        mark: String,
        /// The caller's words, verbatim.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quote: Option<String>,
        /// Offset into the call and its recording, seconds.
        #[serde(default)]
        offset_secs: u64,
        /// Names of the rules this mark fired.
        #[serde(default)]
        rules: Vec<String>,
        /// Whether grounds to end the call are met.
        #[serde(default)]
        grounds_to_end: bool,
    },
    /// `level`: the envelope's `level` is the new level.
    #[serde(rename = "level")]
    Level {
        /// The level before.
        from: u8,
        /// What raised it (mark kind, `escalate`/`terminate`, `manual`).
        #[serde(default)]
        reason: String,
    },
    /// `escalation`: the lead was called; sent when the ping is queued and again when its
    /// delivery state is final, both with the same `escalation_id`.
    #[serde(rename = "escalation")]
    Escalation {
        /// Same for every event of one escalation (the ping's idempotency key where there is one).
        escalation_id: String,
        /// Why: `escalate`/`terminate` (ladder), `manual` (the agent asked), `rule:<name>`,
        /// `level` (signs of harassment).
        reason: String,
        /// The agent's note, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// Delivery state of the ping to the lead's webhooks.
        delivery: Delivery,
    },
    /// `problem`.
    #[serde(rename = "problem")]
    Problem {
        /// Short machine-readable kind, e.g. `evidence.truncated`.
        problem: String,
        /// What happened, for people.
        text: String,
    },
    /// `heartbeat`.
    #[serde(rename = "heartbeat")]
    Heartbeat {
        /// The PBX link.
        pbx_state: PbxState,
        /// Why the link is down, or what it is connected to.
        #[serde(default)]
        pbx_detail: String,
        /// Calls open on this workstation now.
        open_calls: u32,
        /// callguard version of the daemon.
        version: String,
        /// The heartbeat interval: the floor calls a workstation stale after two missed beats.
        interval_secs: u64,
        /// Events waiting in the workstation's floor backlog (this heartbeat excluded).
        #[serde(default)]
        backlog: u64,
        /// When the daemon started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        up_since: Option<DateTime<FixedOffset>>,
    },
    /// `ledger`: one evidence ledger line, for the floor to notice a ledger that lost its tail.
    #[serde(rename = "ledger")]
    Ledger {
        /// The line's `seq`.
        seq: u64,
        /// The line's `manifest_sha256`.
        manifest_sha256: String,
        /// SHA-256 hex of the line's exact bytes (without the newline): the next line's `prev`.
        line_sha256: String,
        /// The line's `prev`, where the publisher has it (empty otherwise).
        #[serde(default)]
        prev: String,
        /// The call folder, relative to the evidence root.
        #[serde(default)]
        dir: String,
        /// The workstation's evidence public key (base64 of the 32 bytes, as `callguard key
        /// show` prints it), for a floor that has no key file for this host: it pins the key
        /// it sees first. Empty when the publisher does not have it.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        public_key: String,
    },
}

impl EventBody {
    /// The kind tag.
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::CallStart { .. } => EventKind::CallStart,
            EventBody::CallEnd { .. } => EventKind::CallEnd,
            EventBody::Warning { .. } => EventKind::Warning,
            EventBody::Mark { .. } => EventKind::Mark,
            EventBody::Level { .. } => EventKind::Level,
            EventBody::Escalation { .. } => EventKind::Escalation,
            EventBody::Problem { .. } => EventKind::Problem,
            EventBody::Heartbeat { .. } => EventKind::Heartbeat,
            EventBody::Ledger { .. } => EventKind::Ledger,
        }
    }
}

/// Delivery state of an escalation's ping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Overall state.
    pub state: DeliveryState,
    /// Webhook targets configured.
    #[serde(default)]
    pub targets: u32,
    /// Targets that confirmed receipt.
    #[serde(default)]
    pub delivered: u32,
    /// Last error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a ping stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// In the outbox, being sent.
    Queued,
    /// Every target confirmed.
    Delivered,
    /// Given up on at least one target.
    Failed,
    /// No webhook configured: the floor board is the only way the lead hears of it.
    NoTargets,
}

/// The PBX link as a heartbeat reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PbxState {
    /// Connected.
    Up,
    /// Disconnected, retrying (or given up).
    Down,
    /// Not connected yet since start.
    Unknown,
}

/// A lead took a call: sent by the floor on `callguard.v1.<site>.<agent>.ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckMessage {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Unique id of this ack (also its `Nats-Msg-Id` when stored in the stream).
    pub id: String,
    /// The call taken.
    pub call_id: String,
    /// The lead's display name, shown on the agent's desktop (「田中さんが対応中です」).
    pub lead: String,
    /// When the lead took it.
    pub at: DateTime<FixedOffset>,
    /// The escalation answered, if the lead pressed the button of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_id: Option<String>,
}

impl AckMessage {
    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a body; checks the schema.
    pub fn from_json(bytes: &[u8]) -> Result<AckMessage, ContractError> {
        let ack: AckMessage = serde_json::from_slice(bytes)?;
        check_schema(&ack.schema)?;
        Ok(ack)
    }
}

/// What a daemon asks at call start on `callguard.v1.<site>.history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRequest {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Site id.
    pub site: String,
    /// Asking agent.
    pub agent: String,
    /// Asking host.
    pub host: String,
    /// The call being started (so the floor does not count it as history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// The caller, plain or hashed as configured on the workstation.
    #[serde(flatten)]
    pub caller: CallerRef,
}

impl HistoryRequest {
    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a body; checks the schema.
    pub fn from_json(bytes: &[u8]) -> Result<HistoryRequest, ContractError> {
        let req: HistoryRequest = serde_json::from_slice(bytes)?;
        check_schema(&req.schema)?;
        Ok(req)
    }
}

/// The floor's answer about a caller. `known = false` (or no answer in time) shows nothing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HistoryReply {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Whether the floor has any earlier call of this caller.
    pub known: bool,
    /// Calls in the last 30 days (the current one excluded).
    #[serde(default)]
    pub calls_30d: u32,
    /// Calls in the last 365 days (the current one excluded).
    #[serde(default)]
    pub calls_365d: u32,
    /// Highest level any of those calls reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub highest_level: Option<u8>,
    /// When the last call was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_call_at: Option<DateTime<FixedOffset>>,
    /// The most recent marks, newest first (a few).
    #[serde(default)]
    pub last_marks: Vec<HistoryMark>,
    /// The organisation's current conclusion about this caller, if a lead recorded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<Conclusion>,
}

impl HistoryReply {
    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a body; checks the schema.
    pub fn from_json(bytes: &[u8]) -> Result<HistoryReply, ContractError> {
        let rep: HistoryReply = serde_json::from_slice(bytes)?;
        check_schema(&rep.schema)?;
        Ok(rep)
    }
}

/// One earlier mark of the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryMark {
    /// Mark kind.
    pub mark: String,
    /// Verbatim quote, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<String>,
    /// When.
    pub at: DateTime<FixedOffset>,
}

/// The organisation's conclusion toward a caller, recorded by a lead (versioned on the floor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conclusion {
    /// The conclusion, e.g. 「返金には応じられない旨、2026年10月に書面で回答済み」.
    pub text: String,
    /// The phrase the agent repeats instead of renegotiating.
    pub phrase: String,
    /// Who recorded it (display name).
    pub by: String,
    /// When.
    pub at: DateTime<FixedOffset>,
    /// Version number (1 = first).
    #[serde(default)]
    pub version: u32,
}

/// `callguard verify --against-floor` asks `callguard.v1.<site>.ledger.head`: the last ledger
/// line the floor has seen from this workstation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerHeadRequest {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Site id.
    pub site: String,
    /// Workstation agent id (as in its events' subjects, before sanitizing).
    pub agent: String,
    /// Host name whose ledger is asked about (ledgers are per workstation).
    pub host: String,
}

impl LedgerHeadRequest {
    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a body; checks the schema.
    pub fn from_json(bytes: &[u8]) -> Result<LedgerHeadRequest, ContractError> {
        let req: LedgerHeadRequest = serde_json::from_slice(bytes)?;
        check_schema(&req.schema)?;
        Ok(req)
    }
}

/// The floor's answer: the highest ledger line it has received from that host.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LedgerHeadReply {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Whether the floor has seen any ledger line of this host.
    pub known: bool,
    /// The highest `seq` seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// That line's `line_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_sha256: Option<String>,
    /// That line's `manifest_sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// When the floor received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at: Option<DateTime<FixedOffset>>,
}

impl LedgerHeadReply {
    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a body; checks the schema.
    pub fn from_json(bytes: &[u8]) -> Result<LedgerHeadReply, ContractError> {
        let rep: LedgerHeadReply = serde_json::from_slice(bytes)?;
        check_schema(&rep.schema)?;
        Ok(rep)
    }
}

/// A body that does not fit the contract.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// Not JSON of the expected shape.
    #[error("malformed floor message: {0}")]
    Json(#[from] serde_json::Error),
    /// Another schema (a newer major version, or not ours).
    #[error("unsupported schema `{0}` (expected {SCHEMA})")]
    Schema(String),
}

fn check_schema(schema: &str) -> Result<(), ContractError> {
    if schema == SCHEMA {
        Ok(())
    } else {
        Err(ContractError::Schema(schema.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_chrono_writes_them_and_read_back_the_same() {
        use chrono::{NaiveDate, TimeZone};
        let offsets = [
            0,
            9 * 3600,
            -5 * 3600,
            5 * 3600 + 45 * 60,
            -30 * 60,
            14 * 3600,
            90,
        ];
        let nanos = [
            0,
            1,
            1_000,
            5_000_000,
            123_000_000,
            123_456_000,
            123_456_789,
            999_999_999,
            1_500_000_000, // a leap second
        ];
        let days = [
            (1970, 1, 1),
            (2026, 11, 30),
            (2024, 2, 29),
            (9999, 12, 31),
            (0, 1, 1),
        ];
        let mut checked = 0;
        for (y, m, d) in days {
            for &n in &nanos {
                for &off in &offsets {
                    let Some(tz) = FixedOffset::east_opt(off) else {
                        continue;
                    };
                    let Some(naive) = NaiveDate::from_ymd_opt(y, m, d)
                        .and_then(|day| day.and_hms_nano_opt(23, 59, 59, n))
                    else {
                        continue;
                    };
                    let Some(t) = tz.from_local_datetime(&naive).single() else {
                        continue;
                    };
                    let want = t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
                    assert_eq!(time_text(&t), want, "{t:?}");
                    assert_eq!(id_time(&t), t.to_rfc3339(), "{t:?}");
                    let mut json = Vec::new();
                    json_time(&mut json, &t);
                    assert_eq!(json, serde_json::to_vec(&t).unwrap(), "{t:?}");
                    // chrono itself writes an offset to the minute only.
                    if off % 60 == 0 {
                        let back: DateTime<FixedOffset> = serde_json::from_slice(&json).unwrap();
                        assert_eq!((back, back.offset()), (t, t.offset()));
                    }
                    checked += 1;
                }
            }
        }
        assert!(checked > 250, "{checked}");
    }

    #[test]
    fn an_id_from_parts_in_pieces_is_the_id_of_the_parts_together() {
        let head = ["site", "1001", "ws-1", "call.start", "c-1"];
        let tail = ["x", ""];
        let all: Vec<&str> = head.iter().chain(tail.iter()).copied().collect();
        assert_eq!(
            event_id_of(head.into_iter().chain(tail.iter().copied())),
            event_id(&all)
        );
    }

    fn at() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-11-22T10:00:00+09:00").unwrap()
    }

    fn event(body: EventBody) -> FloorEvent {
        FloorEvent {
            schema: SCHEMA.into(),
            id: event_id(&["s", "a", "c-42", "mark", "1"]),
            site: "tokyo-1".into(),
            host: "ws-017".into(),
            agent: "1001".into(),
            agent_name: "佐藤".into(),
            call_id: Some("c-42".into()),
            caller: CallerRef::new("0312345678", CallerIdMode::Plain, b"", "81"),
            at: at(),
            elapsed_secs: Some(903),
            level: Some(3),
            body,
        }
    }

    #[test]
    fn tokens_keep_subjects_in_shape() {
        assert_eq!(subject_token("1001"), "1001");
        assert_eq!(subject_token("PJSIP/1001"), "PJSIP_1001");
        assert_eq!(subject_token("a.b*c>d e"), "a_b_c_d_e");
        assert_eq!(subject_token(""), "_");
        assert_eq!(subject_token("東京"), "__");
        let long = "x".repeat(100);
        let t = subject_token(&long);
        assert_eq!(t.len(), MAX_TOKEN);
        assert_ne!(t, subject_token(&"x".repeat(101)));
    }

    #[test]
    fn subjects_follow_the_contract() {
        assert_eq!(
            event_subject("tokyo.1", "PJSIP/1001", EventKind::CallStart),
            "callguard.v1.tokyo_1.PJSIP_1001.call.start"
        );
        assert_eq!(ack_subject("t", "1001"), "callguard.v1.t.1001.ack");
        assert_eq!(history_subject("t"), "callguard.v1.t.history");
        assert_eq!(ledger_head_subject("t"), "callguard.v1.t.ledger.head");
        assert_eq!(
            parse_subject("callguard.v1.t.1001.call.end"),
            Some(ParsedSubject::Event {
                site: "t".into(),
                agent: "1001".into(),
                kind: EventKind::CallEnd
            })
        );
        assert_eq!(
            parse_subject("callguard.v1.t.1001.ack"),
            Some(ParsedSubject::Ack {
                site: "t".into(),
                agent: "1001".into()
            })
        );
        assert_eq!(parse_subject("callguard.v1.t.history"), None);
        assert_eq!(parse_subject("callguard.v1.t.ledger.head"), None);
        assert_eq!(parse_subject("other.v1.t.a.mark"), None);
    }

    #[test]
    fn stream_subjects_leave_requests_out() {
        let subjects = stream_subjects();
        assert_eq!(subjects.len(), 10);
        assert!(subjects.contains(&"callguard.v1.*.*.call.start".to_string()));
        assert!(subjects.contains(&"callguard.v1.*.*.ack".to_string()));
        // Each pattern has five or more tokens, the history request only four; and the
        // ledger-head request ends in `head`, which no pattern ends in.
        assert!(subjects.iter().all(|s| !s.ends_with(".head")));
    }

    #[test]
    fn the_direct_encoding_is_what_serde_writes() {
        let times = [
            "2026-11-22T10:00:00+09:00",
            "2026-11-22T10:00:00.120+09:00",
            "2026-11-22T10:00:00.123456-05:30",
            "2026-11-22T10:00:00.123456789+00:00",
            "1999-01-02T03:04:05.000000001+14:00",
        ];
        for t in times {
            let t = DateTime::parse_from_rfc3339(t).unwrap();
            for body in [
                EventBody::CallStart {
                    direction: "in\"bound\u{1}\n東京".into(),
                    adopted: true,
                },
                EventBody::CallStart {
                    direction: String::new(),
                    adopted: false,
                },
                EventBody::CallEnd {
                    started_at: t,
                    duration_secs: u64::MAX,
                    cause: "normal".into(),
                },
            ] {
                let mut ev = event(body);
                ev.at = t;
                let hashed = CallerRef::new("0312345678", CallerIdMode::Hashed, b"k", "81");
                for (caller, call_id, elapsed, level) in [
                    (
                        ev.caller.clone(),
                        Some("c-\\42".to_string()),
                        Some(0),
                        Some(4),
                    ),
                    (hashed, None, None, None),
                    (
                        CallerRef::default(),
                        Some(String::new()),
                        Some(u64::MAX),
                        Some(u8::MAX),
                    ),
                ] {
                    ev.caller = caller;
                    ev.call_id = call_id;
                    ev.elapsed_secs = elapsed;
                    ev.level = level;
                    let serde = serde_json::to_vec(&ev).unwrap();
                    assert_eq!(
                        String::from_utf8(ev.encode().unwrap()).unwrap(),
                        String::from_utf8(serde).unwrap()
                    );
                }
            }
        }
    }

    #[test]
    fn event_body_round_trips_with_kind_tag() {
        let ev = event(EventBody::Mark {
            mark: "threat".into(),
            quote: Some("家に行くぞ".into()),
            offset_secs: 300,
            rules: vec!["threat-once".into()],
            grounds_to_end: true,
        });
        let json: serde_json::Value = serde_json::from_slice(&ev.to_json()).unwrap();
        assert_eq!(json["schema"], "callguard.floor/1");
        assert_eq!(json["kind"], "mark");
        assert_eq!(json["quote"], "家に行くぞ");
        assert_eq!(json["caller"], "0312345678");
        assert!(json.get("caller_hash").is_none());
        let back = FloorEvent::from_json(&ev.to_json()).unwrap();
        assert_eq!(back, ev);
        assert_eq!(back.kind(), EventKind::Mark);

        let hb = event(EventBody::Heartbeat {
            pbx_state: PbxState::Down,
            pbx_detail: "connection refused".into(),
            open_calls: 0,
            version: "0.1.0".into(),
            interval_secs: 30,
            backlog: 4,
            up_since: None,
        });
        assert_eq!(FloorEvent::from_json(&hb.to_json()).unwrap(), hb);
    }

    #[test]
    fn readers_ignore_unknown_fields_but_not_other_schemas() {
        let mut json: serde_json::Value = serde_json::from_slice(
            &event(EventBody::Problem {
                problem: "evidence.truncated".into(),
                text: "disk full".into(),
            })
            .to_json(),
        )
        .unwrap();
        json["future_field"] = serde_json::json!(1);
        assert!(FloorEvent::from_json(json.to_string().as_bytes()).is_ok());
        json["schema"] = serde_json::json!("callguard.floor/2");
        assert!(matches!(
            FloorEvent::from_json(json.to_string().as_bytes()),
            Err(ContractError::Schema(_))
        ));
    }

    #[test]
    fn e164_normalizes_the_usual_spellings() {
        assert_eq!(e164("03-1234-5678", "81"), "+81312345678");
        assert_eq!(e164("0312345678", "81"), "+81312345678");
        assert_eq!(e164("+81 3 1234 5678", "81"), "+81312345678");
        assert_eq!(e164("0081312345678", "81"), "+81312345678");
        assert_eq!(e164("1002", "81"), "1002");
        assert_eq!(e164("anonymous", "81"), "anonymous");
    }

    #[test]
    fn hashed_caller_never_carries_the_number() {
        let a = CallerRef::new(
            "03-1234-5678",
            CallerIdMode::Hashed,
            b"site-key-0123456",
            "81",
        );
        let b = CallerRef::new(
            "+81312345678",
            CallerIdMode::Hashed,
            b"site-key-0123456",
            "81",
        );
        assert_eq!(a, b);
        assert!(a.caller.is_none());
        let h = a.caller_hash.unwrap();
        assert_eq!(h.len(), 64);
        assert!(!h.contains("312345678"));
        let other = CallerRef::new(
            "0312345678",
            CallerIdMode::Hashed,
            b"another-key-0000",
            "81",
        );
        assert_ne!(other.caller_hash.unwrap(), h);
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(event_id(&["a", "b"]), event_id(&["a", "b"]));
        assert_ne!(event_id(&["a", "b"]), event_id(&["ab"]));
        assert_eq!(event_id(&["a"]).len(), 32);
        // The same ids as earlier versions computed (a backlog queued before an upgrade is
        // still deduplicated by the server).
        let mut h = Sha256::new();
        h.update(b"a");
        h.update([0u8]);
        h.update(b"b");
        assert_eq!(event_id(&["a", "b"]), hex::encode(h.finalize())[..32]);
    }

    #[test]
    fn ack_history_and_ledger_head_round_trip() {
        let ack = AckMessage {
            schema: SCHEMA.into(),
            id: "ack-1".into(),
            call_id: "c-42".into(),
            lead: "田中".into(),
            at: at(),
            escalation_id: None,
        };
        assert_eq!(AckMessage::from_json(&ack.to_json()).unwrap(), ack);
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
                version: 2,
            }),
        };
        assert_eq!(HistoryReply::from_json(&rep.to_json()).unwrap(), rep);
        let req = HistoryRequest {
            schema: SCHEMA.into(),
            site: "t".into(),
            agent: "1001".into(),
            host: "ws".into(),
            call_id: Some("c-42".into()),
            caller: CallerRef::new("0312345678", CallerIdMode::Hashed, b"k", "81"),
        };
        assert_eq!(HistoryRequest::from_json(&req.to_json()).unwrap(), req);
        let head = LedgerHeadReply {
            schema: SCHEMA.into(),
            known: true,
            seq: Some(7),
            line_sha256: Some("ab".repeat(32)),
            manifest_sha256: None,
            received_at: Some(at()),
        };
        assert_eq!(LedgerHeadReply::from_json(&head.to_json()).unwrap(), head);
    }
}
