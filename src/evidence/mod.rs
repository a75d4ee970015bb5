//! Evidence: each call's audio recorded to WAV and sealed (SHA-256, Ed25519-signed manifest,
//! hash-chained signed ledger), recovered after a crash, and verified.
//!
//! The sink task only routes actions: every call gets its own writer thread, so disk I/O never
//! blocks the async runtime and a slow disk on one call never holds back another.

pub mod addendum;
pub mod disk;
pub mod followers;
pub mod g711;
pub mod health;
pub mod incident;
pub mod keys;
pub mod layout;
pub mod ledger;
pub mod ledger_head;
pub mod manifest;
pub mod record;
pub mod recorder;
pub mod recovery;
pub mod seal;
pub mod staging;
pub mod verify;
pub mod wav;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use chrono::{FixedOffset, Local};
use tokio::sync::{broadcast, mpsc};

use crate::calls::Command;
use crate::config::{Config, EvidenceSource, Language};
use crate::events::{Action, CallInfo, Encoding, Problem, RecordingOutcome, Report, Track};
use manifest::WarningRecord;
use recorder::Recorder;
use seal::{CallRecord, Sealed, Sealer};

/// Audio queued for a call's writer beyond which the disk is reported as not keeping up
/// (about 30 s of 8 kHz stereo μ-law).
const BACKLOG_WARN_BYTES: usize = 512 * 1024;
/// Space kept back in each call folder so a full disk still leaves room to seal.
const RESERVE_BYTES: usize = 64 * 1024;

/// What the evidence sink needs from the configuration.
#[derive(Debug, Clone)]
pub struct EvidenceOptions {
    /// Evidence root.
    pub root: PathBuf,
    /// Data dir (keys).
    pub data_dir: PathBuf,
    /// Where audio comes from.
    pub source: EvidenceSource,
    /// Free space needed at call start.
    pub min_free_mb: u64,
    /// Language of the incident record (`incident.md`).
    pub language: Language,
    /// The agent's display name for the incident record (`agent.name`).
    pub agent_name: String,
}

impl EvidenceOptions {
    /// From the configuration.
    pub fn from_config(cfg: &Config) -> EvidenceOptions {
        EvidenceOptions {
            root: cfg.evidence_dir(),
            data_dir: cfg.data_dir(),
            source: cfg.evidence.source,
            min_free_mb: cfg.evidence.min_free_mb,
            language: cfg.language,
            agent_name: cfg.agent.name.clone(),
        }
    }
}

/// Shared by the call threads.
struct Ctx {
    sealer: Option<Sealer>,
    opts: EvidenceOptions,
    reports: broadcast::Sender<Report>,
    problems: mpsc::Sender<Command>,
    /// The incident record's language for calls starting now (`language` can be reloaded).
    language: std::sync::RwLock<Language>,
}

impl Ctx {
    fn problem(&self, call_id: &str, kind: &str, text: String) {
        tracing::warn!(call_id, kind, "{text}");
        let p = Problem {
            call_id: Some(call_id.to_string()),
            kind: kind.to_string(),
            text,
        };
        // From a plain thread; the tracker may already be gone at shutdown.
        if let Err(e) = self.problems.blocking_send(Command::Problem(p)) {
            tracing::debug!(error = %e, "problem not delivered: the tracker has stopped");
        }
    }

    fn sealed(&self, s: &Sealed) {
        tracing::info!(call_id = %s.call_id, dir = %s.dir.display(), sha256 = ?s.sha256,
            seq = s.seq, truncated = s.truncated, recovered = s.recovered, "evidence sealed");
        let _ = self.reports.send(Report::Sealed {
            call_id: s.call_id.clone(),
            dir: s.dir.clone(),
            sha256: s.sha256.clone(),
            seq: s.seq,
            truncated: s.truncated,
            recovered: s.recovered,
        });
    }
}

/// What the sink tells a call's thread.
enum Msg {
    MediaStart(Encoding, u32),
    Media(Track, u64, Vec<u8>),
    Warning(WarningRecord),
    Incident(incident::Update),
    End {
        ended_at: chrono::DateTime<FixedOffset>,
        duration: Duration,
        cause: String,
    },
    Recording(RecordingOutcome),
    /// A PBX-side problem of the call (its recording not started…), for its record at once.
    Problem(String),
}

struct CallHandle {
    tx: std_mpsc::Sender<Msg>,
    backlog: Arc<AtomicUsize>,
    backlog_reported: bool,
    /// `evidence.source = asterisk`: the call has ended / its recording has arrived; the
    /// thread seals once both are true.
    ended: bool,
    recording: bool,
    thread: std::thread::JoinHandle<()>,
}

/// Recording and sealing as a [`Sink`](crate::sink::Sink); the only sink that takes audio.
pub struct EvidenceSink {
    opts: EvidenceOptions,
}

impl EvidenceSink {
    /// With these options; sealed evidence goes to the daemon's followers (see
    /// [`SinkContext::handoff`](crate::sink::SinkContext::handoff)).
    pub fn new(opts: EvidenceOptions) -> EvidenceSink {
        EvidenceSink { opts }
    }
}

impl crate::sink::Sink for EvidenceSink {
    fn name(&self) -> &str {
        "evidence"
    }

    fn wants_media(&self) -> bool {
        true
    }

    fn run(
        self: Box<Self>,
        actions: crate::sink::Actions,
        ctx: crate::sink::SinkContext,
    ) -> crate::sink::Running {
        Box::pin(async move {
            run_with_handoff(self.opts, ctx.handoff, actions, ctx.reports, ctx.commands).await;
            Ok(())
        })
    }

    fn healthcheck<'a>(&'a self, opts: &'a crate::sink::HealthOptions) -> crate::sink::Checks<'a> {
        let rows = health::checks(&self.opts, opts.language);
        Box::pin(async move { rows })
    }
}

/// Runs the evidence sink until the tracker closes its queue, then seals every open call.
pub async fn run(
    opts: EvidenceOptions,
    actions: mpsc::UnboundedReceiver<Action>,
    reports: broadcast::Sender<Report>,
    problems: mpsc::Sender<Command>,
) {
    run_with_handoff(
        opts,
        followers::Handoff::default(),
        actions,
        reports,
        problems,
    )
    .await
}

/// [`run`], handing every sealed folder and chained addendum to `handoff`'s followers.
pub async fn run_with_handoff(
    opts: EvidenceOptions,
    handoff: followers::Handoff,
    mut actions: mpsc::UnboundedReceiver<Action>,
    reports: broadcast::Sender<Report>,
    problems: mpsc::Sender<Command>,
) {
    // Recordings staged before now are an earlier run's: this run downloads only recordings of
    // calls that end after its PBX connection is up.
    let started = chrono::Utc::now();
    let open_opts = opts.clone();
    let sealer = tokio::task::spawn_blocking(move || {
        Sealer::open(&open_opts.root, &open_opts.data_dir).map(|s| s.with_handoff(handoff))
    })
    .await;
    let sealer = match sealer {
        Ok(Ok(s)) => {
            if let Some(why) = s.head_problem() {
                let text = format!("evidence ledger: {why} (run callguard verify)");
                tracing::error!("{text}");
                let p = Problem {
                    call_id: None,
                    kind: "evidence.ledger_head".into(),
                    text,
                };
                if problems.send(Command::Problem(p)).await.is_err() {
                    tracing::debug!("problem not delivered: the tracker has stopped");
                }
            }
            Some(s)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %format!("{e:#}"), "evidence cannot be sealed; recordings are kept unsealed for the next start");
            let _ = reports.send(Report::Note(format!("evidence cannot be sealed: {e:#}")));
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "evidence set-up failed");
            None
        }
    };
    let ctx = Arc::new(Ctx {
        sealer,
        language: std::sync::RwLock::new(opts.language),
        opts,
        reports,
        problems,
    });
    // Recovery before the first call, so a new call never races a repair.
    let rctx = ctx.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(s) = &rctx.sealer {
            for a in staging::adopt(s, started) {
                match a {
                    Ok(a) => tracing::warn!(call_id = %a.call_id, file = %a.file.display(), dir = %a.dir.display(),
                        "a PBX recording an earlier run downloaded but did not seal is sealed now"),
                    Err(e) => tracing::error!(error = %e,
                        "a PBX recording an earlier run downloaded cannot be put in a call folder; it stays staged for the next start"),
                }
            }
            for r in recovery::recover(s) {
                match r {
                    Ok(sealed) => rctx.sealed(&sealed),
                    Err(e) => tracing::error!(error = %e, "recovery failed"),
                }
            }
            // Anything sealed (by this recovery or a previous run) but not yet handed to a
            // follower is offered again.
            s.handoff().reoffer(s.root());
        }
    })
    .await;

    let mut calls: HashMap<String, CallHandle> = HashMap::new();
    let mut finishing: Vec<(String, std::thread::JoinHandle<()>)> = Vec::new();
    let recording = ctx.opts.source != EvidenceSource::Off;
    while let Some(action) = actions.recv().await {
        finishing.retain(|(_, t)| !t.is_finished());
        match action {
            // A call in progress keeps the language its record started in.
            Action::Reconfigured(cfg) => {
                if let Ok(mut l) = ctx.language.write() {
                    *l = cfg.language;
                }
            }
            Action::CallStarted(call) if recording => {
                if calls.contains_key(&call.call_id) {
                    continue;
                }
                match spawn_call(ctx.clone(), call.clone()) {
                    Ok(h) => {
                        calls.insert(call.call_id.clone(), h);
                    }
                    Err(e) => ctx_problem_async(
                        &ctx,
                        &call.call_id,
                        "evidence.error",
                        format!("cannot start the recorder thread: {e}"),
                    ),
                }
            }
            Action::MediaStart {
                call_id,
                encoding,
                sample_rate,
            } => {
                if let Some(h) = calls.get(&call_id) {
                    let _ = h.tx.send(Msg::MediaStart(encoding, sample_rate));
                }
            }
            Action::Media {
                call_id,
                track,
                seq,
                payload,
            } => {
                if let Some(h) = calls.get_mut(&call_id) {
                    let n = payload.len();
                    let queued = h.backlog.fetch_add(n, Ordering::Relaxed) + n;
                    if h.tx.send(Msg::Media(track, seq, payload)).is_err() {
                        h.backlog.fetch_sub(n, Ordering::Relaxed);
                    }
                    if queued > BACKLOG_WARN_BYTES && !h.backlog_reported {
                        h.backlog_reported = true;
                        ctx_problem_async(
                            &ctx,
                            &call_id,
                            "evidence.slow_disk",
                            format!(
                                "the disk is not keeping up with the recording of call {call_id}: {} KiB of audio waiting (kept in memory, nothing dropped)",
                                queued / 1024
                            ),
                        );
                    } else if queued < BACKLOG_WARN_BYTES / 4 {
                        h.backlog_reported = false;
                    }
                }
            }
            Action::Warning(call, w) => {
                if let Some(h) = calls.get(&call.call_id) {
                    let _ = h.tx.send(Msg::Warning(WarningRecord {
                        kind: w.kind.as_str().to_string(),
                        after_secs: w.after.as_secs(),
                        fired_at: w
                            .fired_at
                            .with_timezone(&Local)
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
                    }));
                    if w.notify_lead {
                        let _ = h.tx.send(Msg::Incident(incident::Update::Warning {
                            kind: w.kind.as_str().to_string(),
                            after_secs: w.after.as_secs(),
                            at: w.fired_at,
                        }));
                    }
                }
            }
            Action::Escalation { call, .. } => {
                if let Some(h) = calls.get(&call.call_id) {
                    let _ = h.tx.send(Msg::Incident(incident::Update::Manual {
                        at: Local::now().fixed_offset(),
                    }));
                }
            }
            Action::Marked(ev) => {
                if let Some(h) = calls.get(&ev.call.call_id) {
                    let _ = h.tx.send(Msg::Incident(incident::Update::Marked(ev)));
                }
            }
            Action::LevelChanged {
                call,
                from,
                to,
                reason,
            } => {
                if let Some(h) = calls.get(&call.call_id) {
                    let _ = h.tx.send(Msg::Incident(incident::Update::Level {
                        from,
                        to,
                        reason,
                        at: Local::now().fixed_offset(),
                    }));
                }
            }
            Action::Noted(note) => {
                // Not sealed yet (in progress, or waiting for the PBX recording): it goes into
                // the record itself.
                if let Some(h) = calls.get(&note.call_id) {
                    let _ = h.tx.send(Msg::Incident(incident::Update::Note(
                        incident::NoteRecord {
                            field: note.field.clone(),
                            text: note.text.clone(),
                            at: incident::rfc3339(note.at),
                        },
                    )));
                    continue;
                }
                // The call is sealed, or being sealed: wait for its seal, then add to it.
                let sealing = finishing
                    .iter()
                    .position(|(id, _)| *id == note.call_id)
                    .map(|i| finishing.swap_remove(i).1);
                let actx = ctx.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Some(t) = sealing {
                        let _ = t.join();
                    }
                    add_after_seal(&actx, &note);
                })
                .await;
            }
            Action::CallEnded {
                call,
                ended_at,
                duration,
                cause,
            } => {
                let asterisk = ctx.opts.source == EvidenceSource::Pbx;
                let done = match calls.get_mut(&call.call_id) {
                    Some(h) => {
                        let _ = h.tx.send(Msg::End {
                            ended_at,
                            duration,
                            cause,
                        });
                        h.ended = true;
                        // With the PBX recording, the call waits for Action::Recording.
                        !asterisk || h.recording
                    }
                    None => false,
                };
                if done && let Some(h) = calls.remove(&call.call_id) {
                    finishing.push((call.call_id.clone(), h.thread));
                }
            }
            Action::Problem(p) if p.kind.starts_with("pbx.") => {
                if let Some(h) = p.call_id.as_ref().and_then(|id| calls.get(id)) {
                    let _ = h.tx.send(Msg::Problem(p.text));
                }
            }
            Action::Recording { call_id, outcome } => {
                if ctx.opts.source != EvidenceSource::Pbx {
                    tracing::debug!(call_id = %call_id, "PBX recording ignored (evidence.source is not asterisk)");
                    continue;
                }
                let handle = match calls.remove(&call_id) {
                    Some(mut h) if !h.ended => {
                        // Before the call's end: the thread seals when the end comes.
                        let _ = h.tx.send(Msg::Recording(outcome));
                        h.recording = true;
                        calls.insert(call_id, h);
                        continue;
                    }
                    Some(h) => Some(h),
                    None => {
                        // A recording of a call this daemon did not see (e.g. started before a restart).
                        let info = Arc::new(CallInfo {
                            call_id: call_id.clone(),
                            agent: String::new(),
                            caller: String::new(),
                            direction: String::new(),
                            channel: String::new(),
                            started_at: Local::now().fixed_offset(),
                            adopted: true,
                        });
                        let h = spawn_call(ctx.clone(), info).ok();
                        if let Some(h) = &h {
                            let _ = h.tx.send(Msg::End {
                                ended_at: Local::now().fixed_offset(),
                                duration: Duration::ZERO,
                                cause: "unknown (call not seen by this daemon)".into(),
                            });
                        }
                        h
                    }
                };
                if let Some(h) = handle {
                    let _ = h.tx.send(Msg::Recording(outcome));
                    finishing.push((call_id, h.thread));
                }
            }
            _ => {}
        }
    }
    // Shutdown: closing each channel tells its thread to seal what it has.
    let threads: Vec<_> = calls
        .into_values()
        .map(|h| h.thread)
        .chain(finishing.into_iter().map(|(_, t)| t))
        .collect();
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    tracing::debug!("evidence sink stopped");
}

/// A note for a sealed call: a signed addendum; for a call that cannot be found, kept in
/// `orphan-notes.jsonl` and reported.
fn add_after_seal(ctx: &Ctx, note: &crate::events::CallNote) {
    let id = note.call_id.as_str();
    let result = match &ctx.sealer {
        Some(s) => addendum::add(s, note).map_err(|e| e.to_string()),
        None => Err("no signing key: the addendum cannot be signed".to_string()),
    };
    match result {
        Ok(path) => {
            tracing::info!(call_id = id, file = %path.display(), "evidence addendum written");
            let _ = ctx.reports.send(Report::Note(format!(
                "evidence addendum written: {}",
                path.display()
            )));
        }
        Err(why) => {
            tracing::error!(call_id = id, error = %why, "note not added to a sealed call");
            let kept = match addendum::keep_orphan(&ctx.opts.root, note, &why) {
                Ok(p) => format!("the text is kept in {}", p.display()),
                Err(e) => {
                    tracing::error!(call_id = id, text = %note.text, error = %e, "orphan note not written");
                    format!("the text could not be kept either ({e}); it is in the log")
                }
            };
            ctx.problem(
                id,
                "evidence.note_orphan",
                format!("a note for call {id} was not added to its record: {why}; {kept}"),
            );
        }
    }
}

fn ctx_problem_async(ctx: &Arc<Ctx>, call_id: &str, kind: &str, text: String) {
    tracing::warn!(call_id, kind, "{text}");
    let p = Problem {
        call_id: Some(call_id.to_string()),
        kind: kind.to_string(),
        text,
    };
    if ctx.problems.try_send(Command::Problem(p)).is_err() {
        tracing::debug!("problem not delivered: tracker busy or stopped");
    }
}

fn spawn_call(ctx: Arc<Ctx>, call: Arc<CallInfo>) -> std::io::Result<CallHandle> {
    let (tx, rx) = std_mpsc::channel();
    let backlog = Arc::new(AtomicUsize::new(0));
    let b = backlog.clone();
    let thread = std::thread::Builder::new()
        .name("callguard-rec".into())
        .spawn(move || call_thread(&ctx, &call, rx, &b))?;
    Ok(CallHandle {
        tx,
        backlog,
        backlog_reported: false,
        ended: false,
        recording: false,
        thread,
    })
}

/// The life of one call's evidence, on its own thread.
fn call_thread(ctx: &Ctx, call: &CallInfo, rx: std_mpsc::Receiver<Msg>, backlog: &AtomicUsize) {
    // A call is recorded from the stream or by the PBX; `off` never gets here.
    let source = match ctx.opts.source {
        EvidenceSource::Pbx => EvidenceSource::Pbx,
        _ => EvidenceSource::Stream,
    };
    let mut rec = CallRecord::from_call(call, source.as_str());
    let language = ctx.language.read().map_or(ctx.opts.language, |l| *l);
    rec.incident.language = match language {
        Language::En => "en",
        Language::Ja => "ja",
    }
    .into();
    rec.incident.agent_name = ctx.opts.agent_name.clone();
    let id = call.call_id.as_str();
    let started = call.started_at.with_timezone(&Local);
    let dir = match layout::create_call_dir(&ctx.opts.root, id, started) {
        Ok((d, _)) => d,
        Err(e) => {
            ctx.problem(id, "evidence.error", format!(
                "cannot create the evidence folder for call {id} under {}: {e}; the call is not recorded",
                ctx.opts.root.display()
            ));
            // Keep draining so the sink never blocks on this call.
            for _ in rx.iter() {}
            return;
        }
    };
    let save = |rec: &CallRecord| {
        if let Err(e) = rec.save(&dir) {
            tracing::warn!(call_id = id, error = %e, "cannot write meta.json");
        }
    };
    // A call already sealed in part (callguard restarted during it) goes on in a new folder
    // that names the part before it.
    if let Some(c) = ctx
        .sealer
        .as_ref()
        .and_then(|s| recovery::earlier_part(s, id, call.started_at))
    {
        tracing::info!(call_id = id, earlier = %c.dir, part = c.part, "call continues an earlier part");
        rec.problems.push(format!(
            "part {} of call {id}: callguard restarted during the call, and the audio between the end of the part before and the start of this one is missing; the part before is sealed in {}",
            c.part, c.dir
        ));
        rec.continues = Some(c);
    }
    save(&rec);
    // May we record at all?
    let mut allowed = source == EvidenceSource::Stream;
    if allowed {
        let need = ctx.opts.min_free_mb.saturating_mul(1024 * 1024);
        match disk::free_bytes(&dir) {
            Ok(free) if free < need => {
                allowed = false;
                rec.truncated = true;
                let text = format!(
                    "only {} MB free for evidence (evidence.min_free_mb = {}): call {id} is not recorded",
                    free / (1024 * 1024),
                    ctx.opts.min_free_mb
                );
                rec.problems.push(text.clone());
                save(&rec);
                ctx.problem(id, "evidence.low_disk", text);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(call_id = id, error = %e, "cannot read free disk space"),
        }
    }
    if allowed && let Err(e) = write_reserve(&dir) {
        allowed = false;
        rec.truncated = true;
        let text = format!("no room to record call {id}: {e}");
        rec.problems.push(text.clone());
        save(&rec);
        ctx.problem(id, "evidence.low_disk", text);
    }

    let part = dir.join(layout::PART_FILE);
    let mut media: Option<(Encoding, u32)> = None;
    let mut recorder: Option<Recorder> = None;
    let mut outcome: Option<RecordingOutcome> = None;
    let mut ended = false;
    loop {
        let msg = match rx.recv_timeout(recorder::FLUSH_EVERY) {
            Ok(m) => Some(m),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut failed = None;
        match msg {
            None => {
                if let Some(r) = recorder.as_mut() {
                    failed = r.tick().err();
                }
            }
            Some(Msg::MediaStart(enc, rate)) => match media {
                None => media = Some((enc, rate)),
                Some(m) if m != (enc, rate) => tracing::warn!(
                    call_id = id,
                    "a second media.start with another format is ignored: the WAV keeps the first"
                ),
                Some(_) => {}
            },
            Some(Msg::Media(track, seq, payload)) => {
                backlog.fetch_sub(payload.len(), Ordering::Relaxed);
                if allowed {
                    let r = recorder.get_or_insert_with(|| {
                        let (enc, rate) = media.unwrap_or_else(|| {
                            tracing::warn!(
                                call_id = id,
                                "audio before media.start: taken as 8 kHz μ-law"
                            );
                            (Encoding::Mulaw, 8000)
                        });
                        rec.stream_encoding = enc.as_str().to_string();
                        if let Some(c) = rec.continues.as_mut() {
                            let ms = (Local::now().fixed_offset() - call.started_at)
                                .num_milliseconds()
                                .max(0);
                            c.audio_offset_secs = Some(ms as f64 / 1000.0);
                        }
                        save(&rec);
                        Recorder::new(part.clone(), enc, rate)
                    });
                    failed = r.push(track, seq, &payload).err();
                }
            }
            Some(Msg::Warning(w)) => {
                rec.warnings.push(w);
                save(&rec);
            }
            Some(Msg::Incident(u)) => {
                rec.incident.apply(u);
                save(&rec);
            }
            Some(Msg::End {
                ended_at,
                duration,
                cause,
            }) => {
                rec.ended_at = Some(ended_at);
                rec.duration_secs = Some(duration.as_secs());
                rec.end_cause = cause;
                ended = true;
                save(&rec);
                if source == EvidenceSource::Stream || outcome.is_some() {
                    break;
                }
            }
            Some(Msg::Problem(text)) => {
                rec.problems.push(text);
                save(&rec);
            }
            Some(Msg::Recording(o)) => {
                outcome = Some(o);
                if ended {
                    break;
                }
            }
        }
        if let Some(e) = failed {
            allowed = false;
            rec.truncated = true;
            let mut stream_problems = Vec::new();
            if let Some(r) = recorder.take() {
                let stats = r.abandon();
                rec.gaps = stats.gaps;
                rec.late_frames = stats.late_frames;
                stream_problems = stats.problems;
            }
            let at = format!(
                "{:.0} s",
                (Local::now().fixed_offset() - call.started_at).num_milliseconds() as f64 / 1000.0
            );
            let text = if e.is_disk_full() {
                format!(
                    "disk full: the recording of call {id} stopped after {at}; what was recorded will be sealed"
                )
            } else {
                format!(
                    "write error: the recording of call {id} stopped after {at} ({e}); what was recorded will be sealed"
                )
            };
            rec.problems.push(text.clone());
            rec.problems.extend(stream_problems);
            save(&rec);
            ctx.problem(id, "evidence.truncated", text);
        }
    }
    if !ended {
        let now = Local::now().fixed_offset();
        rec.ended_at = Some(now);
        rec.duration_secs = Some((now - call.started_at).num_seconds().max(0) as u64);
        rec.end_cause = "shutdown".into();
        rec.problems
            .push("callguard was stopped during the call; the recording ends there".into());
    }
    if let Some(r) = recorder.take() {
        match r.finish() {
            Ok(stats) => {
                rec.gaps = stats.gaps;
                rec.late_frames = stats.late_frames;
                rec.problems.extend(stats.problems);
                if stats.ignored_frames > 0 {
                    rec.problems.push(format!(
                        "{} frames of a second track came after the file was made mono and are not in it",
                        stats.ignored_frames
                    ));
                }
            }
            Err(e) => {
                rec.truncated = true;
                let text = format!("finishing the recording of call {id} failed: {e}");
                rec.problems.push(text.clone());
                ctx.problem(id, "evidence.truncated", text);
                if part.exists()
                    && let Err(e) = wav::repair(&part)
                {
                    tracing::warn!(call_id = id, error = %e, "cannot repair the WAV header");
                }
            }
        }
    }
    let Some(sealer) = &ctx.sealer else {
        save(&rec);
        tracing::error!(call_id = id, dir = %dir.display(), "not sealed: no signing key; it is sealed at the next start");
        return;
    };
    let result = match outcome {
        Some(RecordingOutcome::Downloaded { path, source: name }) => {
            rec.source_name = name;
            save(&rec);
            sealer.seal_wav_file(&dir, &path, &rec)
        }
        Some(RecordingOutcome::Failed { reason }) => {
            rec.problems
                .push(format!("the PBX recording is not available: {reason}"));
            sealer.seal(&dir, &rec)
        }
        None => {
            if source == EvidenceSource::Pbx {
                rec.problems
                    .push("callguard stopped before the PBX recording arrived".into());
            }
            sealer.seal(&dir, &rec)
        }
    };
    match result {
        Ok(s) => ctx.sealed(&s),
        Err(e) => ctx.problem(
            id,
            "evidence.error",
            format!(
                "sealing call {id} failed: {e}; the folder {} is sealed at the next start",
                dir.display()
            ),
        ),
    }
}

fn write_reserve(dir: &Path) -> std::io::Result<()> {
    let mut f = crate::fsutil::create_private_file(&dir.join(layout::RESERVE_FILE))?;
    f.write_all(&[0u8; RESERVE_BYTES])?;
    f.sync_all()
}
