//! Generic PBX protocol v1 over a websocket: the daemon is the client, reconnects with backoff,
//! and hands every frame to [`crate::protocol`].

use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use crate::config::Config;
use crate::events::PbxEvent;
use crate::protocol::{self, Parsed};

/// Hard limit of one websocket message; larger ones drop the connection. Frames between 1 MiB
/// and this are read and refused one by one, so a single oversized frame costs no reconnect.
const WS_MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// A PBX that does not complete the handshake in this time counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Keepalive ping period.
const PING_EVERY: Duration = Duration::from_secs(30);
/// No frame at all (pongs included) for this long: the connection is dead.
const SILENCE_LIMIT: Duration = Duration::from_secs(75);

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
    let mut backoff = Backoff::default();
    let mut last_failure: Option<String> = None;
    let mut attempts_failed: u64 = 0;
    loop {
        let started = Instant::now();
        let mut connected = false;
        let ended = connect_and_read(&opts, &shown, &events, &shutdown, &mut connected).await;
        if matches!(ended, Ended::Shutdown) || shutdown.is_cancelled() {
            return;
        }
        if connected {
            backoff.connection_ended(started.elapsed());
            attempts_failed = 0;
        } else {
            attempts_failed += 1;
        }
        let delay = backoff.next_delay();
        let reason = ended.to_string();
        // One log line and one event per change of state, not one per attempt.
        if connected || last_failure.as_deref() != Some(reason.as_str()) {
            tracing::warn!(url = %shown, %reason, retry_in = ?delay, "PBX connection down; retrying with backoff");
            if events
                .send(PbxEvent::Disconnected {
                    reason: reason.clone(),
                    retry_in: delay,
                })
                .await
                .is_err()
            {
                return;
            }
        } else {
            tracing::debug!(url = %shown, %reason, attempts_failed, retry_in = ?delay, "PBX still unreachable");
        }
        last_failure = if connected { None } else { Some(reason) };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
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
    let mut request = match opts.url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => return Ended::Connect(e.to_string()),
    };
    if !opts.username.is_empty() {
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            opts.username,
            opts.password.as_deref().unwrap_or("")
        ));
        match HeaderValue::from_str(&format!("Basic {token}")) {
            Ok(v) => {
                request.headers_mut().insert("Authorization", v);
            }
            Err(e) => return Ended::Connect(format!("bad credentials header: {e}")),
        }
    }
    let connector = if opts.url.starts_with("wss:") {
        match crate::tls::client_config(&opts.ca_file) {
            Ok(c) => Some(tokio_tungstenite::Connector::Rustls(c)),
            Err(e) => return Ended::Connect(e.to_string()),
        }
    } else {
        None
    };
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(WS_MAX_MESSAGE);
    config.max_frame_size = Some(WS_MAX_MESSAGE);
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    let ws = tokio::select! {
        _ = shutdown.cancelled() => return Ended::Shutdown,
        r = tokio::time::timeout(CONNECT_TIMEOUT, connect) => match r {
            Ok(Ok((ws, _))) => ws,
            Ok(Err(e)) => return Ended::Connect(describe(&e)),
            Err(_) => return Ended::Connect(format!("no answer within {CONNECT_TIMEOUT:?}")),
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
    tracing::warn!(%reason, "PBX frame refused");
    Some(PbxEvent::BadFrame { reason })
}

/// A short reason: HTTP status for a refused upgrade, else the error text.
fn describe(e: &WsError) -> String {
    match e {
        WsError::Http(resp) => format!("HTTP {} from the PBX", resp.status()),
        other => other.to_string(),
    }
}
