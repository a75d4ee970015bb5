//! Asterisk connector: follows a real Asterisk over ARI. It reads `/ari/events` (subscribed to
//! everything, so it observes calls without taking them into its application), turns the agent's
//! channels into call starts and ends, resynchronizes with `GET /ari/channels` after every
//! (re)connect (Asterisk keeps no backlog), and drives the PBX-side work of a call: the snoop that
//! records it, the download of that recording at the end, and the notice whispered into the call.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::ari::channels::AgentChannels;
use super::ari::event::{self, Channel, Event};
use super::ari::rest::{AriUrls, Rest, RestError};
use super::backoff::{Backoff, Reconnect};
use super::ws::{self, Credentials, OpenError, PING_EVERY, SILENCE_LIMIT};
use crate::config::{Config, EvidenceSource};
use crate::events::{CallStart, PbxEvent, RecordingOutcome};

/// Prefix of the recordings callguard makes: `callguard/<agent channel id>`.
pub const RECORDING_PREFIX: &str = "callguard/";
/// Id of the recording snoop of a channel: `cg-snoop-<channel id>`.
const SNOOP_PREFIX: &str = "cg-snoop-";
/// Id of the notice (whisper) snoop of a channel: `cg-notice-<channel id>`.
const NOTICE_PREFIX: &str = "cg-notice-";
/// A call ended but no `RecordingFinished` came (missed while disconnected, or lost): fetch the
/// recording anyway after this long.
const FINISH_GRACE: Duration = Duration::from_secs(20);
/// A stored recording that is still not there after this many tries is reported missing.
const NOT_FOUND_TRIES: u32 = 5;

/// What the connector needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `pbx.url`: `ws://HOST:8088` or `wss://…`.
    pub url: String,
    /// ARI application name.
    pub app: String,
    /// ARI user and password.
    pub creds: Credentials,
    /// Private CA for wss/https.
    pub ca_file: String,
    /// Which channels are agent calls.
    pub agents: AgentChannels,
    /// Record each call on Asterisk and download it at the end (`evidence.source = "asterisk"`).
    pub record: bool,
    /// Where downloads are written before the evidence sink takes them.
    pub staging: PathBuf,
    /// Sound to whisper into each new call (`prompt.into_call`).
    pub notice_sound: Option<String>,
}

impl Options {
    /// From the configuration. A password file that cannot be read is logged and skipped.
    pub fn from_config(cfg: &Config) -> Options {
        let password = cfg.pbx_password().unwrap_or_else(|e| {
            tracing::error!(error = %e, "PBX password unavailable");
            None
        });
        let app = if cfg.pbx.app.trim().is_empty() {
            default_app()
        } else {
            cfg.pbx.app.trim().to_string()
        };
        Options {
            url: cfg.pbx.url.clone(),
            app,
            creds: Credentials {
                username: cfg.pbx.username.clone(),
                password,
            },
            ca_file: cfg.pbx.ca_file.clone(),
            agents: AgentChannels::new(&cfg.agent.endpoint, &cfg.agent.endpoints),
            record: cfg.evidence.source == EvidenceSource::Asterisk,
            staging: staging_dir(cfg),
            notice_sound: (cfg.prompt.into_call && !cfg.prompt.asterisk_sound.trim().is_empty())
                .then(|| cfg.prompt.asterisk_sound.trim().to_string()),
        }
    }
}

/// `callguard-<hostname>`.
pub fn default_app() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into());
    format!("callguard-{host}")
}

/// Where downloaded PBX recordings wait for the evidence sink: `<evidence.dir>/.staging`
/// (inside the evidence tree, so moving them into a call's folder is a rename).
pub fn staging_dir(cfg: &Config) -> PathBuf {
    cfg.evidence_dir().join(".staging")
}

/// Why one connection ended.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error(
        "Asterisk refused ARI user `{0}` (HTTP 401): check pbx.username and the password (pbx.password_file or CALLGUARD__PBX__PASSWORD) against ari.conf"
    )]
    Unauthorized(String),
    #[error("resync failed: {0}")]
    Resync(RestError),
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("Asterisk closed the connection")]
    Closed,
    #[error("no data from Asterisk for {0:?}")]
    Silent(Duration),
    #[error(
        "another instance took over ARI application `{0}` (a second callguard with the same pbx.app?); not reconnecting, to avoid a tug of war — give each instance its own pbx.app and restart"
    )]
    Replaced(String),
    #[error("shutting down")]
    Shutdown,
}

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

/// Results of REST work done beside the event loop.
#[derive(Debug)]
enum Internal {
    /// The recording of `call_id` started, or why not.
    RecordingSetup {
        call_id: String,
        result: Result<(), String>,
    },
}

struct Connector {
    opts: Options,
    rest: Rest,
    events: mpsc::Sender<PbxEvent>,
    shutdown: CancellationToken,
    /// Agent calls announced and not yet ended (channel ids).
    live: HashSet<String>,
    /// Recordings by call id.
    recs: HashMap<String, Rec>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
}

/// The tracker has stopped: nothing more to do.
struct Gone;

/// Runs until `shutdown`: connect, resync, follow events, reconnect with backoff.
pub async fn run(opts: Options, events: mpsc::Sender<PbxEvent>, shutdown: CancellationToken) {
    let urls = match AriUrls::derive(&opts.url, &opts.app) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(error = %e, "Asterisk connector cannot start");
            shutdown.cancelled().await;
            return;
        }
    };
    let rest = match Rest::new(urls.rest.clone(), opts.creds.clone(), &opts.ca_file) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "Asterisk connector cannot start");
            shutdown.cancelled().await;
            return;
        }
    };
    let shown = super::display_url(urls.events.as_str());
    tracing::info!(url = %shown, app = %opts.app, user = %opts.creds.username,
        record = opts.record, into_call = opts.notice_sound.is_some(), "Asterisk connector starting");
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let mut c = Connector {
        opts,
        rest,
        events,
        shutdown,
        live: HashSet::new(),
        recs: HashMap::new(),
        internal_tx,
        internal_rx,
    };
    let mut reconnect = Reconnect::new(&shown, c.events.clone(), c.shutdown.clone());
    loop {
        let started = Instant::now();
        let mut connected = false;
        let ended = c.connect_and_read(&urls, &shown, &mut connected).await;
        if matches!(ended, Ended::Shutdown) || c.shutdown.is_cancelled() {
            return;
        }
        if let Ended::Replaced(_) = ended {
            let reason = ended.to_string();
            tracing::error!(url = %shown, %reason, "ARI application replaced");
            let _ = c
                .events
                .send(PbxEvent::Disconnected {
                    reason,
                    retry_in: Duration::MAX,
                })
                .await;
            // Pending downloads and calls keep their state; only the reconnect loop stops.
            c.shutdown.cancelled().await;
            return;
        }
        let severe = matches!(ended, Ended::Unauthorized(_));
        let (held, reason) = (started.elapsed(), ended.to_string());
        if !reconnect.ended(connected, held, reason, severe).await {
            return;
        }
    }
}

impl Connector {
    async fn send(&self, ev: PbxEvent) -> Result<(), Gone> {
        self.events.send(ev).await.map_err(|_| Gone)
    }

    async fn connect_and_read(
        &mut self,
        urls: &AriUrls,
        shown: &str,
        connected: &mut bool,
    ) -> Ended {
        let ws = tokio::select! {
            _ = self.shutdown.cancelled() => return Ended::Shutdown,
            r = ws::open(urls.events.as_str(), &self.opts.creds, &self.opts.ca_file) => match r {
                Ok(ws) => ws,
                Err(OpenError::Unauthorized) => return Ended::Unauthorized(self.opts.creds.username.clone()),
                Err(OpenError::Other(e)) => return Ended::Connect(e),
            }
        };
        *connected = true;
        tracing::info!(url = %shown, "Asterisk connected");
        if self
            .send(PbxEvent::Connected {
                endpoint: shown.to_string(),
            })
            .await
            .is_err()
        {
            return Ended::Shutdown;
        }
        // The websocket is open first, so nothing that happens during the resync is missed;
        // its events are read afterwards and are idempotent against the snapshot.
        let list = tokio::select! {
            _ = self.shutdown.cancelled() => return Ended::Shutdown,
            r = self.rest.channels() => match r {
                Ok(list) => list,
                Err(RestError::Unauthorized { user }) => return Ended::Unauthorized(user),
                Err(e) => return Ended::Resync(e),
            }
        };
        if self.resync(list).await.is_err() {
            return Ended::Shutdown;
        }
        let (mut sink, mut stream) = ws.split();
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let mut last_rx = Instant::now();
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    let _ = sink.send(Message::Close(None)).await;
                    return Ended::Shutdown;
                }
                Some(msg) = self.internal_rx.recv() => {
                    if self.on_internal(msg).await.is_err() {
                        return Ended::Shutdown;
                    }
                }
                _ = ping.tick() => {
                    if last_rx.elapsed() >= SILENCE_LIMIT {
                        return Ended::Silent(SILENCE_LIMIT);
                    }
                    if let Err(e) = sink.send(Message::Ping(Vec::new().into())).await {
                        return Ended::Lost(ws::describe(&e));
                    }
                    if self.fetch_unfinished(false).await.is_err() {
                        return Ended::Shutdown;
                    }
                }
                msg = stream.next() => {
                    last_rx = Instant::now();
                    let result = match msg {
                        None => return Ended::Closed,
                        Some(Err(e)) => return Ended::Lost(ws::describe(&e)),
                        Some(Ok(Message::Close(_))) => return Ended::Closed,
                        Some(Ok(Message::Text(text))) => self.on_frame(text.as_str()).await,
                        Some(Ok(Message::Binary(b))) => {
                            self.bad(format!("binary frame of {} bytes (ARI sends text)", b.len())).await.map(|_| None)
                        }
                        Some(Ok(_)) => Ok(None), // ping/pong: tungstenite answers pings itself
                    };
                    match result {
                        Err(Gone) => return Ended::Shutdown,
                        Ok(Some(ended)) => {
                            let _ = sink.send(Message::Close(None)).await;
                            return ended;
                        }
                        Ok(None) => {}
                    }
                }
            }
        }
    }

    async fn bad(&self, reason: String) -> Result<(), Gone> {
        tracing::warn!(%reason, "ARI frame refused");
        self.send(PbxEvent::BadFrame { reason }).await
    }

    /// Handles one text frame; `Some` ends the connection.
    async fn on_frame(&mut self, text: &str) -> Result<Option<Ended>, Gone> {
        let ev = match event::parse(text) {
            Ok(ev) => ev,
            Err(e) => {
                self.bad(e.to_string()).await?;
                return Ok(None);
            }
        };
        match ev {
            Event::Ignored(kind) => tracing::trace!(kind = %kind, "ARI event ignored"),
            Event::ChannelState { channel, at } => {
                if channel.is_up()
                    && !self.live.contains(&channel.id)
                    && let Some(agent) = self.opts.agents.agent_of(&channel.name)
                {
                    let start = call_start(&channel, agent, at);
                    self.track(&channel.id, false);
                    self.send(PbxEvent::CallStart(start)).await?;
                }
            }
            Event::ChannelDestroyed {
                channel,
                at,
                cause,
                cause_txt,
            } => {
                if self.live.remove(&channel.id) {
                    let cause = format!("{cause_txt} (cause {cause})");
                    tracing::info!(call_id = %channel.id, channel = %channel.name, %cause, "agent channel destroyed");
                    self.send(PbxEvent::CallEnd {
                        call_id: channel.id.clone(),
                        at,
                        cause,
                    })
                    .await?;
                    self.call_ended(&channel.id).await?;
                }
            }
            Event::RecordingStarted(r) => {
                if let Some(rec) = own_recording(&r.name).and_then(|id| self.recs.get(id)) {
                    tracing::info!(name = %rec.name, target = %r.target_uri, "Asterisk is recording the call");
                }
            }
            Event::RecordingFinished(r) => {
                let Some(call_id) = own_recording(&r.name).map(str::to_string) else {
                    return Ok(None);
                };
                let Some(rec) = self.recs.get_mut(&call_id) else {
                    return Ok(None);
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
                        r.cause.map(|c| format!(": {c}")).unwrap_or_default()
                    );
                    tracing::warn!(call_id = %call_id, reason = %why, "PBX recording not usable");
                    Err(why)
                });
                self.resolve(&call_id).await?;
            }
            Event::Playback { kind, playback } => {
                if let Some(call_id) = playback
                    .target_uri
                    .strip_prefix(&format!("channel:{NOTICE_PREFIX}"))
                {
                    if kind == "PlaybackFinished" && playback.state != "done" {
                        tracing::warn!(call_id, state = %playback.state, media = %playback.media_uri,
                            "notice into the call did not finish (the call may have ended first)");
                    } else {
                        tracing::info!(call_id, state = %playback.state, media = %playback.media_uri, "notice into the call");
                    }
                }
            }
            Event::ApplicationReplaced { application } => {
                let app = if application.is_empty() {
                    self.opts.app.clone()
                } else {
                    application
                };
                return Ok(Some(Ended::Replaced(app)));
            }
        }
        Ok(None)
    }

    /// Starts following an agent call: recording and notice on the PBX side.
    fn track(&mut self, call_id: &str, adopted: bool) {
        self.live.insert(call_id.to_string());
        if self.opts.record && !self.recs.contains_key(call_id) {
            self.recs.insert(
                call_id.to_string(),
                Rec {
                    name: format!("{RECORDING_PREFIX}{call_id}"),
                    setup: None,
                    finished: None,
                    ended: None,
                },
            );
            self.spawn_recording_setup(call_id);
        }
        // An adopted call is already under way: its notice was (or should have been) played.
        if let (Some(sound), false) = (self.opts.notice_sound.clone(), adopted) {
            let rest = self.rest.clone();
            let app = self.opts.app.clone();
            let id = call_id.to_string();
            tokio::spawn(async move {
                if let Err(e) = play_notice(&rest, &app, &id, &sound).await {
                    tracing::warn!(call_id = %id, error = %e, "cannot play the notice into the call");
                }
            });
        }
    }

    fn spawn_recording_setup(&self, call_id: &str) {
        let rest = self.rest.clone();
        let app = self.opts.app.clone();
        let id = call_id.to_string();
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let result = start_recording(&rest, &app, &id).await;
            let _ = tx.send(Internal::RecordingSetup {
                call_id: id,
                result,
            });
        });
    }

    async fn on_internal(&mut self, msg: Internal) -> Result<(), Gone> {
        match msg {
            Internal::RecordingSetup { call_id, result } => {
                match &result {
                    Ok(()) => tracing::debug!(call_id = %call_id, "recording snoop set up"),
                    Err(e) => {
                        tracing::error!(call_id = %call_id, error = %e, "cannot record the call on Asterisk")
                    }
                }
                if let Some(rec) = self.recs.get_mut(&call_id) {
                    rec.setup = Some(result);
                }
                self.resolve(&call_id).await
            }
        }
    }

    async fn call_ended(&mut self, call_id: &str) -> Result<(), Gone> {
        if let Some(rec) = self.recs.get_mut(call_id) {
            rec.ended = Some(Instant::now());
        }
        self.resolve(call_id).await
    }

    /// Hands on a recording's outcome once the call has ended and the outcome is known.
    async fn resolve(&mut self, call_id: &str) -> Result<(), Gone> {
        let Some(rec) = self.recs.get(call_id) else {
            return Ok(());
        };
        if rec.ended.is_none() {
            return Ok(());
        }
        let failed = match (&rec.finished, &rec.setup) {
            (Some(Ok(())), _) => None,
            (Some(Err(why)), _) | (None, Some(Err(why))) => Some(why.clone()),
            (None, _) => return Ok(()), // still waiting for RecordingFinished
        };
        let Some(rec) = self.recs.remove(call_id) else {
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
    async fn fetch_unfinished(&mut self, now: bool) -> Result<(), Gone> {
        let due: Vec<String> = self
            .recs
            .iter()
            .filter(|(_, r)| {
                r.finished.is_none()
                    && matches!(r.setup, Some(Ok(())))
                    && r.ended.is_some_and(|t| now || t.elapsed() >= FINISH_GRACE)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            if let Some(rec) = self.recs.remove(&id) {
                tracing::info!(call_id = %id, name = %rec.name, "no RecordingFinished seen for an ended call; fetching the recording anyway");
                self.spawn_download(id, rec.name);
            }
        }
        Ok(())
    }

    fn spawn_download(&self, call_id: String, name: String) {
        tokio::spawn(download(
            self.rest.clone(),
            call_id,
            name,
            self.opts.staging.clone(),
            self.events.clone(),
            self.shutdown.clone(),
        ));
    }

    /// After a (re)connect: the snapshot of agent calls that are up; calls gone meanwhile end.
    async fn resync(&mut self, list: Vec<Channel>) -> Result<(), Gone> {
        let mut snapshot = Vec::new();
        for ch in &list {
            if !ch.is_up() {
                continue;
            }
            let Some(agent) = self.opts.agents.agent_of(&ch.name) else {
                continue;
            };
            if !self.live.contains(&ch.id) {
                tracing::info!(call_id = %ch.id, channel = %ch.name, "agent call adopted from the resync");
                self.track(&ch.id, true);
            } else if let Some(rec) = self.recs.get_mut(&ch.id)
                && matches!(rec.setup, Some(Err(_)))
                && rec.finished.is_none()
            {
                // Asterisk was unreachable when the call started: try the recording again.
                tracing::info!(call_id = %ch.id, "retrying the recording set-up after the reconnect");
                rec.setup = None;
                self.spawn_recording_setup(&ch.id);
            }
            // The connect time is not in the list; the creation time is the closest known.
            snapshot.push(call_start(ch, agent, event::parse_time(&ch.creationtime)));
        }
        let present: HashSet<&str> = snapshot.iter().map(|c| c.call_id.as_str()).collect();
        let gone: Vec<String> = self
            .live
            .iter()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        tracing::info!(
            calls = snapshot.len(),
            gone = gone.len(),
            "resync with Asterisk"
        );
        // The tracker ends the missing calls (cause `lost`) on this snapshot; recording outcomes
        // of those calls follow it.
        self.send(PbxEvent::Snapshot(snapshot)).await?;
        for id in gone {
            self.live.remove(&id);
            self.call_ended(&id).await?;
        }
        self.fetch_unfinished(true).await
    }
}

/// The call start of an agent channel.
fn call_start(
    ch: &Channel,
    agent: String,
    at: Option<chrono::DateTime<chrono::FixedOffset>>,
) -> CallStart {
    CallStart {
        call_id: ch.id.clone(),
        at,
        agent,
        caller: ch.caller_number().to_string(),
        direction: ch.direction().to_string(),
        channel: ch.name.clone(),
    }
}

/// The call id of one of callguard's recordings.
fn own_recording(name: &str) -> Option<&str> {
    name.strip_prefix(RECORDING_PREFIX)
        .filter(|id| !id.is_empty())
}

/// Snoop on both directions of the agent channel and record the snoop.
async fn start_recording(rest: &Rest, app: &str, call_id: &str) -> Result<(), String> {
    let snoop_id = format!("{SNOOP_PREFIX}{call_id}");
    match rest.snoop(call_id, "both", "none", app, &snoop_id).await {
        Ok(()) => {}
        // A snoop with this id exists: a previous run of this daemon set it up.
        Err(RestError::Status { status: 409, .. }) => {
            tracing::info!(call_id, "recording snoop already exists")
        }
        Err(e) => return Err(e.to_string()),
    }
    match rest
        .record(&snoop_id, &format!("{RECORDING_PREFIX}{call_id}"))
        .await
    {
        Ok(()) => Ok(()),
        // `ifExists=fail`: the recording is already running (set up before a restart).
        Err(RestError::Status {
            status: 409 | 422, ..
        }) => {
            tracing::info!(call_id, "recording already running");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Whisper the notice into the agent channel so the customer hears it.
async fn play_notice(rest: &Rest, app: &str, call_id: &str, sound: &str) -> Result<(), RestError> {
    let snoop_id = format!("{NOTICE_PREFIX}{call_id}");
    rest.snoop(call_id, "none", "in", app, &snoop_id).await?;
    rest.play(&snoop_id, &format!("sound:{sound}")).await
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

/// One download attempt: `<staging>/asterisk-<safe id>-<nanos>.wav.part`, renamed to `.wav`.
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
    let stem = format!("asterisk-{}-{nanos}", safe_name(call_id));
    let part = staging.join(format!("{stem}.wav.part"));
    let done = staging.join(format!("{stem}.wav"));
    let bytes = rest.download(name, &part).await?;
    tokio::fs::rename(&part, &done)
        .await
        .map_err(|e| io(&done, e))?;
    Ok((done, bytes))
}

/// A file-name-safe form of a call id.
fn safe_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}
