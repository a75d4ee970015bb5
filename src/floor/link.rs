//! The workstation's connection to the floor bus: connect from `[floor]` (user + password file,
//! nkey, creds file, private CA), publish one event and wait for the server's PubAck, ask
//! whether the stream exists, follow the acks sent to this workstation, and the two requests
//! (caller history at call start, ledger head for `verify --against-floor`).

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::{ConnectOptions, HeaderMap, Subject};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::config::{FloorAuth, FloorConfig};
use super::contract::{self, HistoryReply, HistoryRequest, LedgerHeadReply, LedgerHeadRequest};
use crate::config::ConfigError;

/// How long one publish waits for the server's PubAck before it counts as not delivered (and is
/// sent again, with the same id, so the server drops it if the first one did arrive).
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long closing the connection may take.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the connection attempt of a one-shot check (doctor, verify) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The server's PubAcks for [`Link::send`], on an inbox of this connection's own: each
/// publish carries its backlog sequence number as the last token of its reply subject, so one
/// subscription takes every acknowledgement, with no reply inbox, channel or timer per publish
/// (a flood publishes thousands of events a second).
pub struct Acks {
    sub: async_nats::Subscriber,
    prefix: String,
}

/// One acknowledgement: the event's sequence number and `Ok(duplicate)` once the server has
/// stored it (or had it already), or why it refused.
pub type Acked = (u64, Result<bool, LinkError>);

impl Acks {
    /// The next acknowledgement; `None` once the connection is closed for good.
    pub async fn next(&mut self) -> Option<Acked> {
        loop {
            let m = self.sub.next().await?;
            if let Some(a) = self.read(&m) {
                return Some(a);
            }
        }
    }

    /// An acknowledgement that is already in, without waiting.
    pub fn ready(&mut self) -> Option<Acked> {
        loop {
            let m = futures_util::FutureExt::now_or_never(self.sub.next())??;
            if let Some(a) = self.read(&m) {
                return Some(a);
            }
        }
    }

    /// The reply subject of the event `seq` (every event has one: no formatter on that path).
    fn reply(&self, seq: u64) -> String {
        let mut n = itoa::Buffer::new();
        let n = n.format(seq);
        let mut s = String::with_capacity(self.prefix.len() + 1 + n.len());
        s.push_str(&self.prefix);
        s.push('.');
        s.push_str(n);
        s
    }

    fn read(&self, m: &async_nats::Message) -> Option<Acked> {
        let seq = m
            .subject
            .as_str()
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('.')?
            .parse()
            .ok()?;
        Some((seq, ack_result(m)))
    }
}

/// What a PubAck (or the server's "no responders" status) says.
fn ack_result(m: &async_nats::Message) -> Result<bool, LinkError> {
    if m.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
        return Err(LinkError::NoStream);
    }
    pub_ack(&m.payload)
}

/// Whether a PubAck's payload says stored (`Ok(duplicate)`) or why not. A stored event's
/// PubAck (`{"stream":…,"seq":…}`, maybe `"duplicate":true`) is read without the JSON
/// decoder: it is every event's answer in a flood. Anything else goes through it.
fn pub_ack(payload: &[u8]) -> Result<bool, LinkError> {
    let has = |needle: &[u8]| payload.windows(needle.len()).any(|w| w == needle);
    if payload.starts_with(br#"{"stream":""#) && payload.ends_with(b"}") && !has(br#""error""#) {
        return Ok(has(br#""duplicate":true"#));
    }
    #[derive(Deserialize)]
    struct PubAck {
        #[serde(default)]
        duplicate: bool,
        error: Option<jetstream::Error>,
    }
    match serde_json::from_slice::<PubAck>(payload) {
        Ok(PubAck {
            error: None,
            duplicate,
        }) => Ok(duplicate),
        Ok(PubAck { error: Some(e), .. })
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
        {
            Err(LinkError::NoStream)
        }
        Ok(PubAck { error: Some(e), .. }) => Err(LinkError::Other(e.to_string())),
        Err(e) => Err(LinkError::Other(format!("unreadable PubAck: {e}"))),
    }
}

/// Why the bus could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// `[floor]` is not usable (a credential file cannot be read…).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No connection (refused, TLS, DNS, timeout).
    #[error("cannot connect to {url}: {msg}")]
    Connect {
        /// The URL(s) tried, without credentials.
        url: String,
        /// Why.
        msg: String,
    },
    /// The server refused the credentials.
    #[error("the NATS server refused the credentials: {0}")]
    Credentials(String),
    /// The `CALLGUARD` stream does not exist (the floor creates it; a workstation never does).
    #[error(
        "the {} stream does not exist on the server (the floor service creates it)",
        contract::STREAM
    )]
    NoStream,
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Nobody answers this request subject.
    #[error("nobody answers {0}")]
    NoResponders(String),
    /// Anything else the client or server said.
    #[error("{0}")]
    Other(String),
}

/// What the daemon knows about its bus connection, shared with `status` and the heartbeat.
#[derive(Debug, Default)]
pub struct LinkStatus {
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// A snapshot of [`LinkStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSnapshot {
    /// Connected to a server now.
    pub connected: bool,
    /// The last server or client error, if any (authorization, permissions, TLS…).
    pub last_error: Option<String>,
}

impl LinkStatus {
    /// Now.
    pub fn snapshot(&self) -> LinkSnapshot {
        LinkSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            last_error: self.last_error.lock().map(|e| e.clone()).unwrap_or(None),
        }
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    fn set_error(&self, err: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(err);
        }
    }
}

/// A connection to the bus for one workstation (`site` + agent id).
#[derive(Clone)]
pub struct Link {
    client: async_nats::Client,
    js: jetstream::Context,
    site: String,
    agent: String,
    status: Arc<LinkStatus>,
}

/// How [`Link::connect`] behaves when the server is not there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectMode {
    /// Return at once and keep trying in the background (the daemon: it never waits for the
    /// bus, its events wait in the backlog).
    Background,
    /// Fail if the first attempt fails (doctor, verify).
    Once,
}

impl Link {
    /// Connects as the workstation `agent` of `cfg.site`.
    pub async fn connect(
        cfg: &FloorConfig,
        agent: &str,
        host: &str,
        mode: ConnectMode,
    ) -> Result<Link, LinkError> {
        let status = Arc::new(LinkStatus::default());
        let opts = options(cfg, agent, host, status.clone()).await?;
        let urls = cfg.nats_urls();
        let shown = cfg.masked().nats_url;
        let opts = match mode {
            ConnectMode::Background => opts.retry_on_initial_connect(),
            ConnectMode::Once => opts.max_reconnects(Some(1)),
        };
        let addrs: Vec<async_nats::ServerAddr> = urls
            .iter()
            .map(|u| u.parse())
            .collect::<Result<_, _>>()
            .map_err(|e: std::io::Error| LinkError::Connect {
                url: shown.clone(),
                msg: e.to_string(),
            })?;
        let connect = opts.connect(addrs);
        let client = match mode {
            ConnectMode::Background => connect.await,
            ConnectMode::Once => tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| LinkError::Connect {
                    url: shown.clone(),
                    msg: format!("no connection within {CONNECT_TIMEOUT:?}"),
                })?,
        }
        .map_err(|e| {
            let msg = e.to_string();
            if matches!(
                e.kind(),
                async_nats::ConnectErrorKind::AuthorizationViolation
                    | async_nats::ConnectErrorKind::Authentication
            ) {
                LinkError::Credentials(msg)
            } else {
                LinkError::Connect { url: shown, msg }
            }
        })?;
        if client.connection_state() == async_nats::connection::State::Connected {
            status.set_connected(true);
        }
        let mut js = jetstream::new(client.clone());
        // The PubAck wait's own bound (the client keeps one timer per publish anyway).
        js.set_timeout(ACK_TIMEOUT);
        Ok(Link {
            client,
            js,
            site: cfg.site.clone(),
            agent: agent.to_string(),
            status,
        })
    }

    /// The shared connection status.
    pub fn status(&self) -> Arc<LinkStatus> {
        self.status.clone()
    }

    /// Whether the client is connected now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The underlying client (tests, the floor service).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Publishes `payload` on `subject` with `id` as `Nats-Msg-Id` and waits for the server's
    /// PubAck. `Ok(duplicate)`: stored now (`false`) or already stored earlier (`true`).
    pub async fn publish(
        &self,
        subject: impl Into<Subject>,
        id: &str,
        payload: impl Into<bytes::Bytes>,
    ) -> Result<bool, LinkError> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        let ack = tokio::time::timeout(
            ACK_TIMEOUT,
            self.js
                .publish_with_headers(subject.into(), headers, payload.into()),
        )
        .await
        .map_err(|_| LinkError::Timeout(ACK_TIMEOUT))?
        .map_err(map_publish)?;
        ack.await.map(|a| a.duplicate).map_err(map_publish)
    }

    /// A subscription for the PubAcks of [`Link::send`] (one per round of the publisher: an
    /// answer to an earlier round never reaches it).
    pub async fn acks(&self) -> Result<Acks, LinkError> {
        let prefix = format!("{}.pub", self.client.new_inbox());
        let sub = self
            .client
            .subscribe(format!("{prefix}.*"))
            .await
            .map_err(|e| LinkError::Other(e.to_string()))?;
        Ok(Acks { sub, prefix })
    }

    /// Hands `payload` to the connection (with `id` as `Nats-Msg-Id`); its PubAck comes in on
    /// `acks` with `seq`. Several publishes can be on their way at once: the server stores and
    /// acknowledges them in the order they were sent. Handing over ends after at most
    /// [`ACK_TIMEOUT`] (it only waits when the connection's queue is full).
    pub async fn send(
        &self,
        acks: &Acks,
        seq: u64,
        subject: Subject,
        id: &str,
        payload: bytes::Bytes,
    ) -> Result<(), LinkError> {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
        let mut sent = std::pin::pin!(self.client.publish_with_reply_and_headers(
            subject,
            acks.reply(seq),
            headers,
            payload
        ));
        // Handing over is immediate unless the connection's queue is full: only then is a
        // timer worth its cost.
        let handed = match futures_util::FutureExt::now_or_never(sent.as_mut()) {
            Some(r) => r,
            None => tokio::time::timeout(ACK_TIMEOUT, sent)
                .await
                .map_err(|_| LinkError::Timeout(ACK_TIMEOUT))?,
        };
        handed.map_err(|e| LinkError::Other(e.to_string()))
    }

    /// Whether the `CALLGUARD` stream exists (`Err(NoStream)` when the server says it does not).
    pub async fn check_stream(&self) -> Result<(), LinkError> {
        let fut = self.js.get_stream(contract::STREAM);
        match tokio::time::timeout(ACK_TIMEOUT, fut).await {
            Err(_) => Err(LinkError::Timeout(ACK_TIMEOUT)),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => match e.kind() {
                jetstream::context::GetStreamErrorKind::JetStream(js)
                    if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND =>
                {
                    Err(LinkError::NoStream)
                }
                _ => Err(LinkError::Other(e.to_string())),
            },
        }
    }

    /// Subscribes to this workstation's acks.
    pub async fn subscribe_acks(&self) -> Result<async_nats::Subscriber, LinkError> {
        self.client
            .subscribe(contract::ack_subject(&self.site, &self.agent))
            .await
            .map_err(|e| LinkError::Other(e.to_string()))
    }

    /// Asks the floor about a caller; `None` for no answer within `timeout`, nobody answering,
    /// or an answer that does not parse. Never takes longer than `timeout`.
    pub async fn history(&self, req: &HistoryRequest, timeout: Duration) -> Option<HistoryReply> {
        let bytes = self
            .request(
                contract::history_subject(&self.site),
                req.to_json(),
                timeout,
            )
            .await
            .ok()?;
        HistoryReply::from_json(&bytes).ok()
    }

    /// Asks the floor for the last ledger line it has seen from `host`.
    pub async fn ledger_head(
        &self,
        host: &str,
        timeout: Duration,
    ) -> Result<LedgerHeadReply, LinkError> {
        let req = LedgerHeadRequest {
            schema: contract::SCHEMA.into(),
            site: self.site.clone(),
            agent: self.agent.clone(),
            host: host.to_string(),
        };
        let bytes = self
            .request(
                contract::ledger_head_subject(&self.site),
                req.to_json(),
                timeout,
            )
            .await?;
        LedgerHeadReply::from_json(&bytes).map_err(|e| LinkError::Other(e.to_string()))
    }

    async fn request(
        &self,
        subject: String,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, LinkError> {
        let fut = self.client.request(subject.clone(), payload.into());
        match tokio::time::timeout(timeout, fut).await {
            Err(_) => Err(LinkError::Timeout(timeout)),
            Ok(Ok(msg)) => Ok(msg.payload.to_vec()),
            Ok(Err(e)) => match e.kind() {
                async_nats::RequestErrorKind::NoResponders => Err(LinkError::NoResponders(subject)),
                async_nats::RequestErrorKind::TimedOut => Err(LinkError::Timeout(timeout)),
                _ => Err(LinkError::Other(e.to_string())),
            },
        }
    }

    /// Flushes and closes the connection; gives up after [`CLOSE_TIMEOUT`] (a server that is
    /// away never answers the flush, and a stopping daemon must not wait for it).
    pub async fn close(self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = self.client.flush().await;
            let _ = self.client.drain().await;
        })
        .await;
    }
}

fn map_publish(e: jetstream::context::PublishError) -> LinkError {
    match e.kind() {
        jetstream::context::PublishErrorKind::StreamNotFound => LinkError::NoStream,
        jetstream::context::PublishErrorKind::TimedOut => LinkError::Timeout(ACK_TIMEOUT),
        _ => LinkError::Other(e.to_string()),
    }
}

/// Client options from `[floor]`: credentials, TLS, the workstation's own inbox prefix (the
/// server lets it read only `_INBOX.<site>.<agent>.>`), and a status callback.
async fn options(
    cfg: &FloorConfig,
    agent: &str,
    host: &str,
    status: Arc<LinkStatus>,
) -> Result<ConnectOptions, LinkError> {
    let mut opts = match cfg.auth()? {
        FloorAuth::None => ConnectOptions::new(),
        FloorAuth::UserPassword { user, password } => {
            ConnectOptions::with_user_and_password(user, password)
        }
        FloorAuth::Nkey(path) => {
            let seed = std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                key: "floor.nkey_file".into(),
                msg: format!("cannot read {}: {e}", path.display()),
            })?;
            ConnectOptions::with_nkey(seed.trim().to_string())
        }
        FloorAuth::Creds(path) => {
            ConnectOptions::with_credentials_file(&path)
                .await
                .map_err(|e| ConfigError::Invalid {
                    key: "floor.creds_file".into(),
                    msg: format!("cannot read {}: {e}", path.display()),
                })?
        }
    };
    if !cfg.ca_file.is_empty() {
        if !std::path::Path::new(&cfg.ca_file).is_file() {
            return Err(ConfigError::Invalid {
                key: "floor.ca_file".into(),
                msg: format!("{} does not exist", cfg.ca_file),
            }
            .into());
        }
        opts = opts
            .add_root_certificates(cfg.ca_file.clone().into())
            .require_tls(true);
    }
    if cfg.nats_urls().iter().any(|u| u.starts_with("tls://")) {
        opts = opts.require_tls(true);
    }
    let cb_status = status.clone();
    Ok(opts
        .name(format!("callguard {host}"))
        // Every subject this connection publishes on is built from sanitized tokens
        // (`contract::subject_token`) or its own inbox: the client need not scan each one again.
        .skip_subject_validation(true)
        .custom_inbox_prefix(contract::inbox_prefix(&cfg.site, agent))
        .connection_timeout(CONNECT_TIMEOUT)
        .event_callback(move |ev| {
            let status = cb_status.clone();
            async move {
                match ev {
                    async_nats::Event::Connected => status.set_connected(true),
                    async_nats::Event::Disconnected | async_nats::Event::Closed => {
                        status.set_connected(false)
                    }
                    async_nats::Event::ServerError(e) => status.set_error(e.to_string()),
                    async_nats::Event::ClientError(e) => status.set_error(e.to_string()),
                    _ => {}
                }
            }
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pub_ack_reads_the_same_without_the_json_decoder() {
        let stored = br#"{"stream":"CALLGUARD","seq":42}"#;
        let dup = br#"{"stream":"CALLGUARD","seq":42,"duplicate":true}"#;
        let domain = br#"{"stream":"CALLGUARD","domain":"hub","seq":7}"#;
        assert!(matches!(pub_ack(stored), Ok(false)));
        assert!(matches!(pub_ack(dup), Ok(true)));
        assert!(matches!(pub_ack(domain), Ok(false)));
        let missing =
            br#"{"error":{"code":503,"err_code":10059,"description":"stream not found"}}"#;
        assert!(matches!(pub_ack(missing), Err(LinkError::NoStream)));
        let other =
            br#"{"error":{"code":400,"err_code":10054,"description":"maximum messages exceeded"}}"#;
        assert!(
            matches!(pub_ack(other), Err(LinkError::Other(m)) if m.contains("maximum messages"))
        );
        // An error with the stream named first still goes through the decoder.
        let named = br#"{"stream":"CALLGUARD","error":{"code":503,"err_code":10077,"description":"resource limits exceeded"}}"#;
        assert!(matches!(pub_ack(named), Err(LinkError::Other(_))));
        assert!(
            matches!(pub_ack(b"{\"stream\":\"C"), Err(LinkError::Other(m)) if m.contains("unreadable"))
        );
    }
}
