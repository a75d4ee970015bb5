//! Each call's PBX-side recording, from the snoop to the outcome handed on: set up (snoop, wait
//! for it to enter the application, record), wait for the call's end and `RecordingFinished`,
//! download the stored file into the staging folder, or say why there is none. A recording that
//! cannot be started is reported at once as a problem (the agent and the lead hear of it, the
//! evidence sink notes it in the call's record) and again as the call's outcome at its end.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::snoop::{SnoopSpec, StasisGate, snoop_then};
use super::{Gone, RECORDING_PREFIX, SNOOP_PREFIX};
use crate::events::{PbxEvent, Problem, RecordingOutcome};
use crate::pbx::ari::event::Recording;
use crate::pbx::ari::rest::{Rest, RestError};
use crate::pbx::backoff::Backoff;

/// A call ended but no `RecordingFinished` came (missed while disconnected, or lost): fetch the
/// recording anyway after this long.
const FINISH_GRACE: Duration = Duration::from_secs(20);
/// A stored recording that is still not there after this many tries is reported missing.
const NOT_FOUND_TRIES: u32 = 5;
/// Problem kind of a call that is not being recorded.
pub(super) const PROBLEM_KIND: &str = "pbx.recording";

/// A call's PBX-side recording, from the snoop until its outcome is handed on.
#[derive(Debug)]
struct Rec {
    /// `callguard/<channel id>`.
    name: String,
    /// Snoop and record requests: `None` while in flight.
    setup: Option<Result<(), String>>,
    /// `RecordingFinished`: `Ok` for done, `Err(why)` for failed/canceled.
    finished: Option<Result<(), String>>,
    /// When the call ended, once it has.
    ended: Option<Instant>,
}

/// The result of one recording set-up, done beside the event loop.
#[derive(Debug)]
pub(super) struct SetupDone {
    call_id: String,
    result: Result<(), String>,
}

/// The recordings of the calls followed, by call id.
pub(super) struct Recordings {
    rest: Rest,
    gate: StasisGate,
    app: String,
    staging: PathBuf,
    events: mpsc::Sender<PbxEvent>,
    shutdown: CancellationToken,
    setups: mpsc::UnboundedSender<SetupDone>,
    by_call: HashMap<String, Rec>,
}

impl Recordings {
    /// No recordings yet; set-up results come back on the returned receiver, for
    /// [`Recordings::setup_done`].
    pub(super) fn new(
        rest: Rest,
        gate: StasisGate,
        app: String,
        staging: PathBuf,
        events: mpsc::Sender<PbxEvent>,
        shutdown: CancellationToken,
    ) -> (Recordings, mpsc::UnboundedReceiver<SetupDone>) {
        let (setups, rx) = mpsc::unbounded_channel();
        let r = Recordings {
            rest,
            gate,
            app,
            staging,
            events,
            shutdown,
            setups,
            by_call: HashMap::new(),
        };
        (r, rx)
    }

    /// Starts recording `call_id` unless it already is.
    pub(super) fn track(&mut self, call_id: &str) {
        if self.by_call.contains_key(call_id) {
            return;
        }
        self.by_call.insert(
            call_id.to_string(),
            Rec {
                name: format!("{RECORDING_PREFIX}{call_id}"),
                setup: None,
                finished: None,
                ended: None,
            },
        );
        self.spawn_setup(call_id);
    }

    /// After a reconnect: a live call whose set-up failed (Asterisk unreachable then) is tried
    /// again.
    pub(super) fn retry_failed_setup(&mut self, call_id: &str) {
        if let Some(rec) = self.by_call.get_mut(call_id)
            && matches!(rec.setup, Some(Err(_)))
            && rec.finished.is_none()
        {
            tracing::info!(call_id, "retrying the recording set-up after the reconnect");
            rec.setup = None;
            self.spawn_setup(call_id);
        }
    }

    fn spawn_setup(&self, call_id: &str) {
        let rest = self.rest.clone();
        let gate = self.gate.clone();
        let app = self.app.clone();
        let id = call_id.to_string();
        let tx = self.setups.clone();
        tokio::spawn(async move {
            let result = start(&rest, &gate, &app, &id).await;
            let _ = tx.send(SetupDone {
                call_id: id,
                result,
            });
        });
    }

    /// A set-up finished. A failure is a problem at once: the call goes on unrecorded.
    pub(super) async fn setup_done(&mut self, done: SetupDone) -> Result<(), Gone> {
        let SetupDone { call_id, result } = done;
        match &result {
            Ok(()) => tracing::debug!(call_id = %call_id, "recording snoop set up"),
            Err(why) => {
                tracing::error!(call_id = %call_id, error = %why, "cannot record the call on Asterisk");
                if self.by_call.contains_key(&call_id) {
                    let text = format!("call {call_id} is NOT being recorded on Asterisk: {why}");
                    self.send(PbxEvent::Problem(Problem {
                        call_id: Some(call_id.clone()),
                        kind: PROBLEM_KIND.into(),
                        text,
                    }))
                    .await?;
                }
            }
        }
        if let Some(rec) = self.by_call.get_mut(&call_id) {
            rec.setup = Some(result);
        }
        self.resolve(&call_id).await
    }

    /// `RecordingStarted` of one of ours.
    pub(super) fn started(&self, r: &Recording) {
        if let Some(rec) = own_recording(&r.name).and_then(|id| self.by_call.get(id)) {
            tracing::info!(name = %rec.name, target = %r.target_uri, "Asterisk is recording the call");
        }
    }

    /// `RecordingFinished` (or failed).
    pub(super) async fn finished(&mut self, r: &Recording) -> Result<(), Gone> {
        let Some(call_id) = own_recording(&r.name).map(str::to_string) else {
            return Ok(());
        };
        let Some(rec) = self.by_call.get_mut(&call_id) else {
            return Ok(());
        };
        rec.finished = Some(if r.state == "done" {
            tracing::info!(name = %r.name, "Asterisk finished the recording");
            Ok(())
        } else {
            let why = format!(
                "Asterisk reports recording {} {}{}",
                r.name,
                if r.state.is_empty() {
                    "failed"
                } else {
                    &r.state
                },
                r.cause
                    .as_ref()
                    .map(|c| format!(": {c}"))
                    .unwrap_or_default()
            );
            tracing::warn!(call_id = %call_id, reason = %why, "PBX recording not usable");
            Err(why)
        });
        self.resolve(&call_id).await
    }

    /// The call is over.
    pub(super) async fn call_ended(&mut self, call_id: &str) -> Result<(), Gone> {
        if let Some(rec) = self.by_call.get_mut(call_id) {
            rec.ended = Some(Instant::now());
        }
        self.resolve(call_id).await
    }

    async fn send(&self, ev: PbxEvent) -> Result<(), Gone> {
        self.events.send(ev).await.map_err(|_| Gone)
    }

    /// Hands on a recording's outcome once the call has ended and the outcome is known.
    async fn resolve(&mut self, call_id: &str) -> Result<(), Gone> {
        let Some(rec) = self.by_call.get(call_id) else {
            return Ok(());
        };
        if rec.ended.is_none() {
            return Ok(());
        }
        let failed = match (&rec.finished, &rec.setup) {
            (Some(Ok(())), _) => None,
            (Some(Err(why)), _) => Some(why.clone()),
            (None, Some(Err(why))) => Some(format!("the recording was never started: {why}")),
            (None, _) => return Ok(()), // still waiting for RecordingFinished
        };
        let Some(rec) = self.by_call.remove(call_id) else {
            return Ok(());
        };
        match failed {
            Some(reason) => {
                self.send(PbxEvent::Recording {
                    call_id: call_id.to_string(),
                    outcome: RecordingOutcome::Failed { reason },
                })
                .await
            }
            None => {
                self.spawn_download(call_id.to_string(), rec.name);
                Ok(())
            }
        }
    }

    /// Fetches recordings of ended calls whose `RecordingFinished` never came (missed while
    /// disconnected): after [`FINISH_GRACE`], or at once when `now`.
    pub(super) fn fetch_unfinished(&mut self, now: bool) {
        let due: Vec<String> = self
            .by_call
            .iter()
            .filter(|(_, r)| {
                r.finished.is_none()
                    && matches!(r.setup, Some(Ok(())))
                    && r.ended.is_some_and(|t| now || t.elapsed() >= FINISH_GRACE)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(rec) = self.by_call.remove(&id) {
                tracing::info!(call_id = %id, name = %rec.name, "no RecordingFinished seen for an ended call; fetching the recording anyway");
                self.spawn_download(id, rec.name);
            }
        }
    }

    fn spawn_download(&self, call_id: String, name: String) {
        tokio::spawn(download(
            self.rest.clone(),
            call_id,
            name,
            self.staging.clone(),
            self.events.clone(),
            self.shutdown.clone(),
        ));
    }
}

/// The call id of one of callguard's recordings.
fn own_recording(name: &str) -> Option<&str> {
    name.strip_prefix(RECORDING_PREFIX)
        .filter(|id| !id.is_empty())
}

/// Snoop on both directions of the agent channel and, once the snoop is in the application,
/// record it. Only `Recording '…' already exists` means the recording is already running (set
/// up before a restart); every other refusal is a failure (`422`: the format is unknown to
/// that Asterisk; `409 Channel not in Stasis application` after the retries).
async fn start(rest: &Rest, gate: &StasisGate, app: &str, call_id: &str) -> Result<(), String> {
    let snoop_id = format!("{SNOOP_PREFIX}{call_id}");
    let name = format!("{RECORDING_PREFIX}{call_id}");
    let spec = SnoopSpec {
        channel_id: call_id,
        spy: "both",
        whisper: "none",
        app,
        snoop_id: &snoop_id,
    };
    match snoop_then(rest, gate, spec, || rest.record(&snoop_id, &name)).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_already_exists() => {
            tracing::info!(call_id, name = %name, "recording already running");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Downloads a stored recording into the staging folder and reports it, retrying with backoff
/// until it succeeds: an unreachable Asterisk never loses a recording while the daemon runs.
async fn download(
    rest: Rest,
    call_id: String,
    name: String,
    staging: PathBuf,
    events: mpsc::Sender<PbxEvent>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::default();
    let mut not_found = 0;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let outcome = match fetch_once(&rest, &call_id, &name, &staging).await {
            Ok((path, bytes)) => {
                tracing::info!(call_id = %call_id, name = %name, bytes, path = %path.display(), attempt, "PBX recording downloaded");
                Some(RecordingOutcome::Downloaded {
                    path,
                    source: name.clone(),
                })
            }
            Err(e) if e.is_not_found() => {
                not_found += 1;
                if not_found >= NOT_FOUND_TRIES {
                    let reason = format!("Asterisk has no stored recording {name}: {e}");
                    tracing::error!(call_id = %call_id, %reason, "PBX recording missing");
                    Some(RecordingOutcome::Failed { reason })
                } else {
                    None
                }
            }
            Err(e) if e.is_too_large() => {
                let reason = format!("{e} (no WAV file is that large)");
                tracing::error!(call_id = %call_id, %reason, "PBX recording refused");
                Some(RecordingOutcome::Failed { reason })
            }
            Err(e) => {
                tracing::warn!(call_id = %call_id, name = %name, attempt, error = %e, "PBX recording download failed; retrying with backoff");
                None
            }
        };
        if let Some(outcome) = outcome {
            let _ = events.send(PbxEvent::Recording { call_id, outcome }).await;
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {
                tracing::warn!(call_id = %call_id, name = %name,
                    "shutting down before the PBX recording was downloaded; it stays stored on Asterisk under this name");
                return;
            }
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

/// One download attempt: `<staging>/asterisk-<safe id>-<nanos>.wav.part`, renamed to `.wav`
/// ([`crate::evidence::layout::staged_name`]).
async fn fetch_once(
    rest: &Rest,
    call_id: &str,
    name: &str,
    staging: &Path,
) -> Result<(PathBuf, u64), RestError> {
    let io = |path: &Path, e: std::io::Error| RestError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    };
    crate::fsutil::create_private_dir(staging).map_err(|e| io(staging, e))?;
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let file = crate::evidence::layout::staged_name(call_id, nanos);
    let part = staging.join(format!("{file}.part"));
    let done = staging.join(file);
    let bytes = rest.download(name, &part).await?;
    tokio::fs::rename(&part, &done)
        .await
        .map_err(|e| io(&done, e))?;
    Ok((done, bytes))
}
