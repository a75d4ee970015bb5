//! The connection loop: open `/ari/events`, resync with `GET /ari/channels`, read events and
//! hand them to the call table, the recordings and the snoop gate; reconnect with backoff.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::recording::{Recordings, SetupDone};
use super::snoop::StasisGate;
use super::{Gone, Options, notice};
use crate::events::{CallStart, PbxEvent};
use crate::logging::WarnLimiter;
use crate::pbx::ari::event::{self, Channel, Event};
use crate::pbx::ari::rest::{AriUrls, Rest, RestError};
use crate::pbx::backoff::Reconnect;
use crate::pbx::ws::{self, OpenError, PING_EVERY, SILENCE_LIMIT};

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

struct Connector {
    opts: Options,
    rest: Rest,
    events: mpsc::Sender<PbxEvent>,
    shutdown: CancellationToken,
    /// Agent calls announced and not yet ended (channel ids).
    live: HashSet<String>,
    /// Recordings of the calls (only with `record`).
    recs: Recordings,
    setups: mpsc::UnboundedReceiver<SetupDone>,
    /// Snoops waiting to enter the application.
    gate: StasisGate,
    /// Refused frames: logged with a limit, counted beyond it.
    refused: WarnLimiter,
}

/// Runs until `shutdown`: connect, resync, follow events, reconnect with backoff.
pub(super) async fn run(
    opts: Options,
    events: mpsc::Sender<PbxEvent>,
    shutdown: CancellationToken,
) {
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
    let shown = crate::pbx::display_url(urls.events.as_str());
    tracing::info!(url = %shown, app = %opts.app, user = %opts.creds.username,
        record = opts.record, into_call = opts.notice_sound.is_some(), "Asterisk connector starting");
    let gate = StasisGate::default();
    let (recs, setups) = Recordings::new(
        rest.clone(),
        gate.clone(),
        opts.app.clone(),
        opts.staging.clone(),
        events.clone(),
        shutdown.clone(),
    );
    let mut c = Connector {
        opts,
        rest,
        events,
        shutdown,
        live: HashSet::new(),
        recs,
        setups,
        gate,
        refused: WarnLimiter::per_minute("ARI frame refused"),
    };
    let mut reconnect = Reconnect::new(&shown, c.events.clone(), c.shutdown.clone());
    loop {
        let started = Instant::now();
        let mut connected = false;
        let ended = c.connect_and_read(&urls, &shown, &mut connected).await;
        c.refused.flush();
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
                Some(done) = self.setups.recv() => {
                    if self.recs.setup_done(done).await.is_err() {
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
                    self.refused.tick();
                    self.recs.fetch_unfinished(false);
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
        self.refused.warn(&reason);
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
            Event::StasisStart { channel_id } => self.gate.entered(&channel_id),
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
                    self.recs.call_ended(&channel.id).await?;
                }
            }
            Event::RecordingStarted(r) => self.recs.started(&r),
            Event::RecordingFinished(r) => self.recs.finished(&r).await?,
            Event::Playback { kind, playback } => {
                if let Some(call_id) = playback
                    .target_uri
                    .strip_prefix(&format!("channel:{}", super::NOTICE_PREFIX))
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
        if self.opts.record {
            self.recs.track(call_id);
        }
        // An adopted call is already under way: its notice was (or should have been) played.
        if let (Some(sound), false) = (self.opts.notice_sound.clone(), adopted) {
            notice::spawn(
                self.rest.clone(),
                self.gate.clone(),
                self.opts.app.clone(),
                call_id.to_string(),
                sound,
                self.events.clone(),
            );
        }
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
            } else {
                // Asterisk was unreachable when the call started: try the recording again.
                self.recs.retry_failed_setup(&ch.id);
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
            self.recs.call_ended(&id).await?;
        }
        self.recs.fetch_unfinished(true);
        Ok(())
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
