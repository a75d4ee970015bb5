//! ARI events as Asterisk sends them on `/ari/events`. Only the `type` is read first, so the
//! flood of events the connector has no use for (ChannelVarset, ChannelDialplan,
//! DeviceStateChanged…) costs one shallow scan without allocation; the few types that matter are
//! then parsed into lean structs that ignore every other field.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset};
use serde::Deserialize;

/// ARI's timestamp format: `2026-11-22T13:33:54.833+0000` (no colon in the offset).
pub const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3f%z";

/// Parses an ARI timestamp; RFC 3339 is accepted too.
pub fn parse_time(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_str(s, TIME_FORMAT)
        .or_else(|_| DateTime::parse_from_rfc3339(s))
        .ok()
}

/// Caller id or connected line of a channel.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Party {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Number.
    #[serde(default)]
    pub number: String,
}

/// Where a channel is in the dialplan.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Dialplan {
    /// Application running, e.g. `AppDial` for a channel Asterisk dialed.
    #[serde(default)]
    pub app_name: String,
}

/// An ARI channel (as in events and in `GET /ari/channels`), reduced to what callguard uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Channel {
    /// Unique id, e.g. `1795354434.7`.
    pub id: String,
    /// Name, e.g. `PJSIP/1001-0000002a`.
    pub name: String,
    /// `Down`, `Ring`, `Up`…
    #[serde(default)]
    pub state: String,
    /// Caller id.
    #[serde(default)]
    pub caller: Party,
    /// Connected line (for an agent's channel: the customer).
    #[serde(default)]
    pub connected: Party,
    /// Dialplan position.
    #[serde(default)]
    pub dialplan: Dialplan,
    /// When the channel was created (ARI format).
    #[serde(default)]
    pub creationtime: String,
}

impl Channel {
    /// The other party's number: the connected line, else the caller id.
    pub fn caller_number(&self) -> &str {
        if self.connected.number.is_empty() {
            &self.caller.number
        } else {
            &self.connected.number
        }
    }

    /// `inbound` when Asterisk dialed this channel (the phone was called), else `outbound`.
    pub fn direction(&self) -> &'static str {
        if self.dialplan.app_name.starts_with("AppDial") {
            "inbound"
        } else {
            "outbound"
        }
    }

    /// Whether the channel is answered.
    pub fn is_up(&self) -> bool {
        self.state == "Up"
    }
}

/// A recording as ARI describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Recording {
    /// Name, e.g. `callguard/1795354434.7`.
    pub name: String,
    /// `queued`, `recording`, `done`, `failed`, `canceled`…
    #[serde(default)]
    pub state: String,
    /// Why it failed, when Asterisk says.
    #[serde(default)]
    pub cause: Option<String>,
    /// What was recorded, e.g. `channel:cg-snoop-1795354434.7`.
    #[serde(default)]
    pub target_uri: String,
}

/// A playback as ARI describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Playback {
    /// Playback id.
    #[serde(default)]
    pub id: String,
    /// What is played, e.g. `sound:custom/recording-notice`.
    #[serde(default)]
    pub media_uri: String,
    /// Where, e.g. `channel:cg-notice-1795354434.7`.
    #[serde(default)]
    pub target_uri: String,
    /// `playing`, `done`, `failed`…
    #[serde(default)]
    pub state: String,
}

/// The events the connector acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<'a> {
    /// A channel was created or changed state (`ChannelCreated`, `ChannelStateChange`).
    ChannelState {
        /// The channel after the change.
        channel: Channel,
        /// Event time.
        at: Option<DateTime<FixedOffset>>,
    },
    /// `ChannelDestroyed`.
    ChannelDestroyed {
        /// The channel.
        channel: Channel,
        /// Event time.
        at: Option<DateTime<FixedOffset>>,
        /// Q.850 cause code.
        cause: i64,
        /// Its text, e.g. `Normal Clearing`.
        cause_txt: String,
    },
    /// `RecordingStarted`.
    RecordingStarted(Recording),
    /// `RecordingFinished` or `RecordingFailed`.
    RecordingFinished(Recording),
    /// `PlaybackStarted` / `PlaybackFinished`.
    Playback {
        /// The event type.
        kind: String,
        /// The playback.
        playback: Playback,
    },
    /// `StasisStart`: a channel entered an application (for callguard: one of its snoops is
    /// ready to be recorded or played into).
    StasisStart {
        /// The channel's id.
        channel_id: String,
    },
    /// Another websocket took over this application name.
    ApplicationReplaced {
        /// The application name.
        application: String,
    },
    /// Any other type: nothing to do (borrowed from the frame: no allocation).
    Ignored(Cow<'a, str>),
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// Not a JSON object.
    #[error("not JSON: {0}")]
    Json(String),
    /// No `type` field.
    #[error("ARI event without `type`")]
    NoType,
    /// A known type whose fields do not fit.
    #[error("ARI `{kind}` event: {msg}")]
    Bad {
        /// Event type.
        kind: String,
        /// What is wrong.
        msg: String,
    },
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChannelEvent {
    channel: Channel,
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    cause: i64,
    #[serde(default)]
    cause_txt: String,
}

#[derive(Deserialize)]
struct RecordingEvent {
    recording: Recording,
}

#[derive(Deserialize)]
struct PlaybackEvent {
    playback: Playback,
}

#[derive(Deserialize)]
struct ChannelRef {
    id: String,
}

#[derive(Deserialize)]
struct StasisEvent {
    channel: ChannelRef,
}

#[derive(Deserialize)]
struct ApplicationEvent {
    #[serde(default)]
    application: String,
}

/// Reads one text frame.
pub fn parse(text: &str) -> Result<Event<'_>, EventError> {
    let head: Head = serde_json::from_str(text).map_err(|e| EventError::Json(e.to_string()))?;
    let kind = head.kind.ok_or(EventError::NoType)?;
    if !acted_on(&kind) {
        return Ok(Event::Ignored(kind));
    }
    let bad = |e: serde_json::Error| EventError::Bad {
        kind: kind.to_string(),
        msg: e.to_string(),
    };
    Ok(match kind.as_ref() {
        "ChannelCreated" | "ChannelStateChange" => {
            let ev: ChannelEvent = serde_json::from_str(text).map_err(bad)?;
            Event::ChannelState {
                at: parse_time(&ev.timestamp),
                channel: ev.channel,
            }
        }
        "ChannelDestroyed" => {
            let ev: ChannelEvent = serde_json::from_str(text).map_err(bad)?;
            Event::ChannelDestroyed {
                at: parse_time(&ev.timestamp),
                channel: ev.channel,
                cause: ev.cause,
                cause_txt: ev.cause_txt,
            }
        }
        "RecordingStarted" => {
            let ev: RecordingEvent = serde_json::from_str(text).map_err(bad)?;
            Event::RecordingStarted(ev.recording)
        }
        "RecordingFinished" | "RecordingFailed" => {
            let ev: RecordingEvent = serde_json::from_str(text).map_err(bad)?;
            Event::RecordingFinished(ev.recording)
        }
        "PlaybackStarted" | "PlaybackFinished" => {
            let ev: PlaybackEvent = serde_json::from_str(text).map_err(bad)?;
            Event::Playback {
                kind: kind.to_string(),
                playback: ev.playback,
            }
        }
        "StasisStart" => {
            let ev: StasisEvent = serde_json::from_str(text).map_err(bad)?;
            Event::StasisStart {
                channel_id: ev.channel.id,
            }
        }
        "ApplicationReplaced" => {
            let ev: ApplicationEvent = serde_json::from_str(text).map_err(bad)?;
            Event::ApplicationReplaced {
                application: ev.application,
            }
        }
        other => Event::Ignored(Cow::Owned(other.to_string())),
    })
}

/// The types [`parse`] reads beyond `type`.
fn acted_on(kind: &str) -> bool {
    matches!(
        kind,
        "ChannelCreated"
            | "ChannelStateChange"
            | "ChannelDestroyed"
            | "RecordingStarted"
            | "RecordingFinished"
            | "RecordingFailed"
            | "PlaybackStarted"
            | "PlaybackFinished"
            | "StasisStart"
            | "ApplicationReplaced"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/asterisk-22.10.1"
    );

    #[test]
    fn parses_ari_timestamps_without_colon_in_the_offset() {
        let t = parse_time("2026-11-22T13:33:54.833+0000").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-22T13:33:54.833+00:00");
        let t = parse_time("2026-11-22T22:33:54.833+0900").unwrap();
        assert_eq!(t.offset().local_minus_utc(), 9 * 3600);
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn every_fixture_frame_is_read() {
        let mut read = 0;
        for entry in std::fs::read_dir(FIXTURES).unwrap().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "jsonl") {
                let text = std::fs::read_to_string(&path).unwrap();
                for line in text.lines() {
                    parse(line).unwrap_or_else(|e| panic!("{}: {e}: {line}", path.display()));
                    read += 1;
                }
            }
        }
        assert!(read > 100, "only {read} frames");
    }

    #[test]
    fn picks_the_fields_that_matter() {
        let line = r#"{"type":"ChannelDestroyed","timestamp":"2026-11-22T13:34:01.061+0000","cause":16,"cause_txt":"Normal Clearing","channel":{"id":"1795354434.7","name":"Local/1001@agentphones-00000003;1","state":"Up","protocol_id":"","caller":{"name":"Sato","number":"5000"},"connected":{"name":"Sato","number":"0312345678"},"accountcode":"","dialplan":{"context":"agentphones","exten":"","priority":1,"app_name":"AppDial","app_data":"(Outgoing Line)"},"creationtime":"2026-11-22T13:33:54.832+0000","language":"en"},"asterisk_id":"02:fc:00:00:00:01","application":"callguard-floor"}"#;
        let Event::ChannelDestroyed {
            channel,
            at,
            cause,
            cause_txt,
        } = parse(line).unwrap()
        else {
            panic!("wrong event");
        };
        assert_eq!(channel.id, "1795354434.7");
        assert_eq!(channel.caller_number(), "0312345678");
        assert_eq!(channel.direction(), "inbound");
        assert_eq!((cause, cause_txt.as_str()), (16, "Normal Clearing"));
        assert!(at.is_some());
    }

    #[test]
    fn a_snoop_entering_the_application_is_read() {
        let text =
            std::fs::read_to_string(format!("{FIXTURES}/ari-observed-bridged.jsonl")).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains(r#""type":"StasisStart""#))
            .unwrap();
        assert_eq!(
            parse(line).unwrap(),
            Event::StasisStart {
                channel_id: "cg-snoop-1795354434.7".into()
            }
        );
    }

    #[test]
    fn unknown_types_are_ignored_and_garbage_is_refused() {
        assert_eq!(
            parse(r#"{"type":"BrandNewThing","x":{"y":[1,2]}}"#).unwrap(),
            Event::Ignored("BrandNewThing".into())
        );
        assert_eq!(parse(r#"{"x":1}"#).unwrap_err(), EventError::NoType);
        assert!(matches!(parse("{nope"), Err(EventError::Json(_))));
        assert!(matches!(
            parse(r#"{"type":"ChannelDestroyed","channel":42}"#),
            Err(EventError::Bad { .. })
        ));
    }
}
