//! Generic PBX protocol v1 (DESIGN.md, contract): parses one text frame into a [`PbxEvent`].

use base64::Engine;
use chrono::{DateTime, FixedOffset};
use serde::Deserialize;

use crate::events::{CallStart, Encoding, PbxEvent, Track};

/// Largest accepted frame.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// Longest accepted call id.
pub const MAX_CALL_ID_BYTES: usize = 256;

/// Why a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    /// Over [`MAX_FRAME_BYTES`].
    #[error("frame of {0} bytes is over the 1 MiB limit")]
    TooLarge(usize),
    /// A binary websocket frame (the protocol is text only).
    #[error("binary frame of {0} bytes (protocol v1 is text frames only)")]
    Binary(usize),
    /// Not a JSON object.
    #[error("not JSON: {0}")]
    Json(String),
    /// A required field is absent or empty.
    #[error("`{frame}` frame without `{field}`")]
    Missing {
        /// Frame type.
        frame: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A field is present but unusable.
    #[error("`{frame}` frame: bad `{field}`: {msg}")]
    Bad {
        /// Frame type.
        frame: &'static str,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        msg: String,
    },
}

/// A parsed frame: an event, or a frame of a type this version ignores.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    /// Something for the tracker.
    Event(PbxEvent),
    /// An unknown `type` (ignored by contract).
    Ignored(String),
}

/// The fields of the known frame types. Text fields also take numbers (`"agent": 1001`), and
/// `at` is read as any JSON value: a PBX's odd timestamp must not cost the call.
#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "text")]
    call_id: Option<String>,
    #[serde(default)]
    at: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "text")]
    agent: Option<String>,
    #[serde(default, deserialize_with = "text")]
    caller: Option<String>,
    #[serde(default, deserialize_with = "text")]
    direction: Option<String>,
    #[serde(default, deserialize_with = "text")]
    cause: Option<String>,
    encoding: Option<String>,
    sample_rate: Option<u32>,
    track: Option<String>,
    seq: Option<u64>,
    payload: Option<String>,
    calls: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct RawCall {
    #[serde(default, deserialize_with = "text")]
    call_id: Option<String>,
    #[serde(default)]
    at: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "text")]
    agent: Option<String>,
    #[serde(default, deserialize_with = "text")]
    caller: Option<String>,
    #[serde(default, deserialize_with = "text")]
    direction: Option<String>,
}

/// A string, or a number taken as its decimal text (PBXs send extensions both ways).
fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

const KNOWN: [&str; 5] = [
    "call.start",
    "call.end",
    "calls.snapshot",
    "media.start",
    "media",
];

/// Parses one text frame.
pub fn parse_frame(text: &str) -> Result<Parsed, FrameError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(text.len()));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| FrameError::Json(e.to_string()))?;
    let Some(kind) = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_string)
    else {
        return Err(FrameError::Missing {
            frame: "?",
            field: "type",
        });
    };
    // Unknown types are ignored whatever their fields look like.
    if !KNOWN.contains(&kind.as_str()) {
        return Ok(Parsed::Ignored(kind));
    }
    let raw: RawFrame =
        serde_json::from_value(value).map_err(|e| FrameError::Json(e.to_string()))?;
    let kind = raw.kind.clone().unwrap_or_default();
    let kind = kind.as_str();
    let event = match kind {
        "call.start" => {
            let call = call_start(
                "call.start",
                raw.call_id,
                raw.at,
                raw.agent,
                raw.caller,
                raw.direction,
            )?;
            PbxEvent::CallStart(call)
        }
        "call.end" => PbxEvent::CallEnd {
            call_id: call_id("call.end", raw.call_id)?,
            at: parse_at("call.end", raw.at.as_ref()),
            cause: raw.cause.unwrap_or_else(|| "normal".into()),
        },
        "calls.snapshot" => {
            let calls = raw.calls.ok_or(FrameError::Missing {
                frame: "calls.snapshot",
                field: "calls",
            })?;
            // One bad entry costs that entry, not the snapshot (whose other calls must still
            // be adopted or ended).
            let calls = calls
                .into_iter()
                .filter_map(|c| {
                    let parsed = serde_json::from_value::<RawCall>(c)
                        .map_err(|e| FrameError::Json(e.to_string()))
                        .and_then(|c| {
                            call_start(
                                "calls.snapshot",
                                c.call_id,
                                c.at,
                                c.agent,
                                c.caller,
                                c.direction,
                            )
                        });
                    parsed
                        .map_err(|e| crate::pbx::generic::SNAPSHOT_SKIPPED.warn(&e.to_string()))
                        .ok()
                })
                .collect();
            PbxEvent::Snapshot(calls)
        }
        "media.start" => {
            let call_id = call_id("media.start", raw.call_id)?;
            let encoding = match raw.encoding.as_deref() {
                Some("audio/x-mulaw") | Some("audio/pcmu") => Encoding::Mulaw,
                Some("audio/x-alaw") | Some("audio/pcma") => Encoding::Alaw,
                Some("audio/l16") => Encoding::L16,
                Some(other) => {
                    return Err(FrameError::Bad {
                        frame: "media.start",
                        field: "encoding",
                        msg: format!(
                            "`{other}` (expected audio/x-mulaw, audio/x-alaw or audio/l16)"
                        ),
                    });
                }
                None => {
                    return Err(FrameError::Missing {
                        frame: "media.start",
                        field: "encoding",
                    });
                }
            };
            let sample_rate = match raw.sample_rate {
                Some(r) if (1000..=192_000).contains(&r) => r,
                Some(r) => {
                    return Err(FrameError::Bad {
                        frame: "media.start",
                        field: "sample_rate",
                        msg: format!("{r} Hz is out of range"),
                    });
                }
                None => 8000,
            };
            PbxEvent::MediaStart {
                call_id,
                encoding,
                sample_rate,
            }
        }
        "media" => {
            let call_id = call_id("media", raw.call_id)?;
            let track = match raw.track.as_deref() {
                Some("inbound") => Track::Inbound,
                Some("outbound") => Track::Outbound,
                Some("mixed") | None => Track::Mixed,
                Some(other) => {
                    return Err(FrameError::Bad {
                        frame: "media",
                        field: "track",
                        msg: format!("`{other}` (expected inbound, outbound or mixed)"),
                    });
                }
            };
            let payload = raw.payload.ok_or(FrameError::Missing {
                frame: "media",
                field: "payload",
            })?;
            let payload = base64::engine::general_purpose::STANDARD
                .decode(payload.as_bytes())
                .map_err(|e| FrameError::Bad {
                    frame: "media",
                    field: "payload",
                    msg: e.to_string(),
                })?;
            PbxEvent::Media {
                call_id,
                track,
                seq: raw.seq.unwrap_or(0),
                payload,
            }
        }
        other => return Ok(Parsed::Ignored(other.to_string())),
    };
    Ok(Parsed::Event(event))
}

fn call_id(frame: &'static str, id: Option<String>) -> Result<String, FrameError> {
    match id {
        None => Err(FrameError::Missing {
            frame,
            field: "call_id",
        }),
        Some(id) if id.is_empty() => Err(FrameError::Missing {
            frame,
            field: "call_id",
        }),
        Some(id) if id.len() > MAX_CALL_ID_BYTES => Err(FrameError::Bad {
            frame,
            field: "call_id",
            msg: format!(
                "{} bytes is over the {MAX_CALL_ID_BYTES}-byte limit",
                id.len()
            ),
        }),
        Some(id) => Ok(id),
    }
}

fn call_start(
    frame: &'static str,
    id: Option<String>,
    at: Option<serde_json::Value>,
    agent: Option<String>,
    caller: Option<String>,
    direction: Option<String>,
) -> Result<CallStart, FrameError> {
    Ok(CallStart {
        call_id: call_id(frame, id)?,
        at: parse_at(frame, at.as_ref()),
        agent: agent.unwrap_or_default(),
        caller: caller.unwrap_or_default(),
        direction: direction.unwrap_or_else(|| "inbound".into()),
        channel: String::new(),
    })
}

/// RFC 3339 timestamps as the generic protocol sends them. `at` is optional: one that cannot be
/// read is logged and the receipt time counts instead, so the event itself is never lost.
fn parse_at(frame: &'static str, at: Option<&serde_json::Value>) -> Option<DateTime<FixedOffset>> {
    match at {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(frame, at = %s, error = %e,
                    "`at` is not RFC 3339 with an offset; counting from receipt time");
                None
            }
        },
        Some(other) => {
            tracing::warn!(frame, at = %other, "`at` is not a string; counting from receipt time");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_examples() {
        let start = r#"{"type":"call.start","call_id":"c-42","at":"2026-11-22T10:00:00.000+09:00","agent":"1001","caller":"0312345678","direction":"inbound"}"#;
        let Ok(Parsed::Event(PbxEvent::CallStart(c))) = parse_frame(start) else {
            panic!("start not parsed");
        };
        assert_eq!(c.call_id, "c-42");
        assert_eq!(c.agent, "1001");
        assert_eq!(
            c.at.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-11-22T10:00:00+09:00")
        );

        let media =
            r#"{"type":"media","call_id":"c-42","track":"inbound","seq":1,"payload":"AAEC"}"#;
        assert_eq!(
            parse_frame(media),
            Ok(Parsed::Event(PbxEvent::Media {
                call_id: "c-42".into(),
                track: Track::Inbound,
                seq: 1,
                payload: vec![0, 1, 2]
            }))
        );
        let end = r#"{"type":"call.end","call_id":"c-42","at":"2026-11-22T10:31:05.250+09:00","cause":"normal","extra":1}"#;
        assert!(matches!(
            parse_frame(end),
            Ok(Parsed::Event(PbxEvent::CallEnd { .. }))
        ));
        let snap = r#"{"type":"calls.snapshot","calls":[{"call_id":"c-42","at":"2026-11-22T10:00:00+09:00","agent":"1001","caller":"0312345678"}]}"#;
        assert!(
            matches!(parse_frame(snap), Ok(Parsed::Event(PbxEvent::Snapshot(v))) if v.len() == 1)
        );
    }

    #[test]
    fn refuses_bad_frames_with_a_reason() {
        assert!(matches!(parse_frame("{not json"), Err(FrameError::Json(_))));
        assert!(matches!(
            parse_frame(r#"{"type":"call.start"}"#),
            Err(FrameError::Missing {
                field: "call_id",
                ..
            })
        ));
        assert_eq!(
            parse_frame(r#"{"type":"call.hold","call_id":"x"}"#),
            Ok(Parsed::Ignored("call.hold".into()))
        );
        let long = format!(r#"{{"type":"call.start","call_id":"{}"}}"#, "x".repeat(300));
        assert!(matches!(
            parse_frame(&long),
            Err(FrameError::Bad {
                field: "call_id",
                ..
            })
        ));
        let huge = " ".repeat(MAX_FRAME_BYTES + 1);
        assert_eq!(
            parse_frame(&huge),
            Err(FrameError::TooLarge(MAX_FRAME_BYTES + 1))
        );
        // An unreadable optional `at` costs the timestamp, not the call.
        assert!(matches!(
            parse_frame(r#"{"type":"call.end","call_id":"a","at":"2026-11-22T10:31:05"}"#),
            Ok(Parsed::Event(PbxEvent::CallEnd { at: None, .. }))
        ));
        // Numbers where text is expected, and odd fields on unknown types.
        assert!(matches!(
            parse_frame(r#"{"type":"call.start","call_id":42,"agent":1001}"#),
            Ok(Parsed::Event(PbxEvent::CallStart(c))) if c.agent == "1001" && c.call_id == "42"
        ));
        assert_eq!(
            parse_frame(r#"{"type":"dtmf","track":5,"at":1732240000}"#),
            Ok(Parsed::Ignored("dtmf".into()))
        );
        // One bad snapshot entry does not cost the others.
        let snap = format!(
            r#"{{"type":"calls.snapshot","calls":[{{"call_id":"{}"}},{{"call_id":"ok"}}]}}"#,
            "x".repeat(300)
        );
        assert!(
            matches!(parse_frame(&snap), Ok(Parsed::Event(PbxEvent::Snapshot(v))) if v.len() == 1)
        );
    }
}
