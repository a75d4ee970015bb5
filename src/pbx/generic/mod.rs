//! Generic PBX protocol v1 over a websocket: the daemon is the client, reconnects with backoff,
//! and hands every frame to [`protocol`] (the wire format).

pub mod protocol;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::backoff::Reconnect;
use crate::config::Config;
use crate::events::PbxEvent;
use protocol::Parsed;

use super::ws::{PING_EVERY, SILENCE_LIMIT, describe};

/// Refused frames: a broken or hostile PBX costs a few log lines a minute, not one per frame.
static REFUSED: crate::logging::WarnLimiter =
    crate::logging::WarnLimiter::per_minute("PBX frame refused");
/// Snapshot entries that do not parse (`crate::protocol`): limited like refused frames.
pub(crate) static SNAPSHOT_SKIPPED: crate::logging::WarnLimiter =
    crate::logging::WarnLimiter::per_minute("snapshot entry skipped");

/// What the connector needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// HTTP Basic user, if any.
    pub username: String,
    /// HTTP Basic password, if any.
    pub password: Option<String>,
    /// Private CA for wss.
    pub ca_file: String,
}

impl Options {
    /// From the configuration. A password file that cannot be read is logged and skipped.
    pub fn from_config(cfg: &Config) -> Options {
        let password = cfg.pbx_password().unwrap_or_else(|e| {
            tracing::error!(error = %e, "PBX password unavailable");
            None
        });
        Options {
            url: cfg.pbx.url.clone(),
            username: cfg.pbx.username.clone(),
            password,
            ca_file: cfg.pbx.ca_file.clone(),
        }
    }
}

/// Why one connection ended.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("connection lost: {0}")]
    Lost(String),
    #[error("the PBX closed the connection")]
    Closed,
    #[error("no data from the PBX for {0:?}")]
    Silent(Duration),
    #[error("shutting down")]
    Shutdown,
}

/// Runs until `shutdown`: connect, read, reconnect.
pub async fn run(opts: Options, events: mpsc::Sender<PbxEvent>, shutdown: CancellationToken) {
    let shown = super::display_url(&opts.url);
    let mut reconnect = Reconnect::new(&shown, events.clone(), shutdown.clone());
    loop {
        let started = Instant::now();
        let mut connected = false;
        let ended = connect_and_read(&opts, &shown, &events, &shutdown, &mut connected).await;
        REFUSED.flush();
        SNAPSHOT_SKIPPED.flush();
        if matches!(ended, Ended::Shutdown) || shutdown.is_cancelled() {
            return;
        }
        let (held, reason) = (started.elapsed(), ended.to_string());
        if !reconnect.ended(connected, held, reason, false).await {
            return;
        }
    }
}

async fn connect_and_read(
    opts: &Options,
    shown: &str,
    events: &mpsc::Sender<PbxEvent>,
    shutdown: &CancellationToken,
    connected: &mut bool,
) -> Ended {
    let creds = super::ws::Credentials {
        username: opts.username.clone(),
        password: opts.password.clone(),
    };
    let ws = tokio::select! {
        _ = shutdown.cancelled() => return Ended::Shutdown,
        r = super::ws::open(&opts.url, &creds, &opts.ca_file) => match r {
            Ok(ws) => ws,
            Err(e) => return Ended::Connect(e.to_string()),
        }
    };
    *connected = true;
    tracing::info!(url = %shown, "PBX connected");
    if events
        .send(PbxEvent::Connected {
            endpoint: shown.to_string(),
        })
        .await
        .is_err()
    {
        return Ended::Shutdown;
    }
    let (mut sink, mut stream) = ws.split();
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut last_rx = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = sink.send(Message::Close(None)).await;
                return Ended::Shutdown;
            }
            _ = ping.tick() => {
                if last_rx.elapsed() >= SILENCE_LIMIT {
                    return Ended::Silent(SILENCE_LIMIT);
                }
                if let Err(e) = sink.send(Message::Ping(Vec::new().into())).await {
                    return Ended::Lost(describe(&e));
                }
                REFUSED.tick();
                SNAPSHOT_SKIPPED.tick();
            }
            msg = stream.next() => {
                last_rx = Instant::now();
                let event = match msg {
                    None => return Ended::Closed,
                    Some(Err(e)) => return Ended::Lost(describe(&e)),
                    Some(Ok(Message::Close(_))) => return Ended::Closed,
                    Some(Ok(Message::Text(text))) => frame_event(text.as_str()),
                    Some(Ok(Message::Binary(b))) => bad(protocol::FrameError::Binary(b.len()).to_string()),
                    Some(Ok(_)) => None, // ping/pong: tungstenite answers pings itself
                };
                if let Some(ev) = event
                    && events.send(ev).await.is_err()
                {
                    return Ended::Shutdown;
                }
            }
        }
    }
}

fn frame_event(text: &str) -> Option<PbxEvent> {
    match protocol::parse_frame(text) {
        Ok(Parsed::Event(ev)) => Some(ev),
        Ok(Parsed::Ignored(kind)) => {
            tracing::debug!(kind, "frame of unknown type ignored");
            None
        }
        Err(e) => bad(e.to_string()),
    }
}

fn bad(reason: String) -> Option<PbxEvent> {
    REFUSED.warn(&reason);
    Some(PbxEvent::BadFrame { reason })
}
