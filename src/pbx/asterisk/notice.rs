//! The recording notice whispered into a new call: a snoop with `whisper=in` on the agent
//! channel (so the customer hears it), and a playback on that snoop once it is in the
//! application. A notice that cannot be played is a problem the agent and the lead hear of at
//! once: the customer was not told the call is recorded.

use tokio::sync::mpsc;

use super::NOTICE_PREFIX;
use super::snoop::{SnoopSpec, StasisGate, snoop_then};
use crate::events::{PbxEvent, Problem};
use crate::pbx::ari::rest::{Rest, RestError};

/// Problem kind of a notice that was not played.
pub(super) const PROBLEM_KIND: &str = "pbx.notice";

/// Plays `sound` into call `call_id` in the background; a failure is reported on `events`.
pub(super) fn spawn(
    rest: Rest,
    gate: StasisGate,
    app: String,
    call_id: String,
    sound: String,
    events: mpsc::Sender<PbxEvent>,
) {
    tokio::spawn(async move {
        if let Err(e) = play(&rest, &gate, &app, &call_id, &sound).await {
            let text = format!(
                "the recording notice could not be played into call {call_id} on Asterisk: {e}"
            );
            tracing::error!(call_id = %call_id, error = %e, "cannot play the notice into the call");
            let _ = events
                .send(PbxEvent::Problem(Problem {
                    call_id: Some(call_id),
                    kind: PROBLEM_KIND.into(),
                    text,
                }))
                .await;
        }
    });
}

async fn play(
    rest: &Rest,
    gate: &StasisGate,
    app: &str,
    call_id: &str,
    sound: &str,
) -> Result<(), RestError> {
    let snoop_id = format!("{NOTICE_PREFIX}{call_id}");
    let media = format!("sound:{sound}");
    let spec = SnoopSpec {
        channel_id: call_id,
        spy: "none",
        whisper: "in",
        app,
        snoop_id: &snoop_id,
    };
    snoop_then(rest, gate, spec, || rest.play(&snoop_id, &media)).await
}
