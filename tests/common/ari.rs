//! A fake Asterisk ARI on 127.0.0.1:0: the events websocket and the few REST endpoints callguard
//! uses, behind HTTP Basic. It replays the real Asterisk 22.10.1 captures in
//! `tests/fixtures/asterisk-22.10.1/` unchanged and answers REST calls as `rest-responses.json`
//! records.
//!
//! Snoops behave as on the real Asterisk 22.10.1 (see the fixtures' README, "Snoop-then-record
//! race"): the snoop request is answered `200` *before* the snoop enters the application; its
//! `StasisStart` is sent on the events websockets a little later (30 ms here, about 2 ms there),
//! and a record or play on the snoop before that is refused with `409 Channel not in Stasis
//! application` and does nothing. The fixtures' own `StasisStart` lines of callguard's snoops are
//! therefore not replayed (see [`is_own_snoop_stasis_start`]): the fake sends them when the snoop
//! is really made.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

/// The fixture folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/asterisk-22.10.1")
}

/// A fixture line that is the `StasisStart` of one of callguard's snoops (`cg-snoop-…`,
/// `cg-notice-…`): the fake sends those itself when the snoop is made.
pub fn is_own_snoop_stasis_start(line: &str) -> bool {
    line.contains(r#""type":"StasisStart""#)
        && (line.contains(r#""id":"cg-snoop-"#) || line.contains(r#""id":"cg-notice-"#))
}

/// How long after its `200` a snoop enters the application, unless changed.
pub const STASIS_DELAY: Duration = Duration::from_millis(30);

/// The lines of a fixture `.jsonl`, exactly as Asterisk sent them.
pub fn fixture_lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(fixtures().join(name))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A fixture file's bytes.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(name)).unwrap()
}

/// `rest-responses.json`.
pub fn rest_responses() -> serde_json::Value {
    serde_json::from_slice(&fixture_bytes("rest-responses.json")).unwrap()
}

/// How the next download goes wrong.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    /// Answer with this status.
    Status(u16),
    /// Send the headers and half the body, then drop the connection.
    CutOff,
}

/// One REST request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Raw path, percent-encoding untouched.
    pub path: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    pub status: u16,
    /// When it was answered.
    pub at: Instant,
}

impl Seen {
    pub fn q(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    /// Body of `GET /ari/channels`.
    channels: String,
    /// Stored recordings by (decoded) name.
    stored: HashMap<String, Vec<u8>>,
    failures: VecDeque<Failure>,
    /// Answer snoop requests with 404, as for a channel that is already gone.
    refuse_snoops: bool,
    requests: Vec<Seen>,
    /// Websocket upgrade targets, and whether they were let in.
    upgrades: Vec<(String, bool)>,
    /// Snoops made, and whether each has entered the application.
    snoops: HashMap<String, bool>,
    /// When the StasisStart of each snoop was sent.
    stasis_sent: HashMap<String, Instant>,
    /// How long after its `200` a snoop enters the application.
    stasis_delay: Duration,
    /// Snoops enter the application, but their StasisStart never reaches the websockets.
    lose_stasis_events: bool,
    /// Refuse every record with this status and message.
    record_refusal: Option<(u16, String)>,
    /// Recording names in use (a second record of one is `409 … already exists`).
    recordings: HashSet<String>,
    /// The open events websockets.
    sinks: Vec<Weak<tokio::sync::Mutex<WsSink>>>,
}

/// The sending half of an events websocket.
pub type WsSink = SplitSink<WebSocketStream<TcpStream>, Message>;

/// The fake server.
pub struct FakeAri {
    /// `ws://127.0.0.1:PORT` as `pbx.url` takes it.
    pub url: String,
    conns: mpsc::Receiver<AriConn>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
}

/// One events websocket.
pub struct AriConn {
    sink: Arc<tokio::sync::Mutex<WsSink>>,
    stream: SplitStream<WebSocketStream<TcpStream>>,
}

impl AriConn {
    /// Sends one fixture line unchanged.
    pub async fn send_line(&mut self, line: &str) {
        self.sink
            .lock()
            .await
            .send(Message::Text(line.to_string().into()))
            .await
            .unwrap();
    }

    /// The sending half, held for as long as the guard lives: for a caller that writes many
    /// messages at once (`feed` them, then one `flush`), as a busy Asterisk's writes arrive.
    pub async fn sink(&self) -> tokio::sync::MutexGuard<'_, WsSink> {
        self.sink.lock().await
    }

    /// Drops the TCP connection without a close handshake.
    pub fn drop_hard(self) {
        drop(self.sink);
        drop(self.stream);
    }

    /// Waits for the client to close or go away.
    pub async fn closed(mut self) {
        while let Some(Ok(m)) = self.stream.next().await {
            if m.is_close() {
                return;
            }
        }
    }
}

impl FakeAri {
    /// Starts on 127.0.0.1:0 with ARI user `user` / `password`.
    pub async fn start(user: &str, password: &str) -> FakeAri {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::channel(8);
        let state = Arc::new(Mutex::new(State {
            channels: "[]".into(),
            stasis_delay: STASIS_DELAY,
            ..State::default()
        }));
        let changed = Arc::new(Notify::new());
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let (st, ch) = (state.clone(), changed.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, st, ch, expected) = (tx.clone(), st.clone(), ch.clone(), expected.clone());
                tokio::spawn(async move {
                    serve(stream, tx, st, ch, expected).await;
                });
            }
        });
        FakeAri {
            url,
            conns,
            state,
            changed,
        }
    }

    /// The next accepted events websocket (waits up to 30 s).
    pub async fn accept(&mut self) -> AriConn {
        tokio::time::timeout(Duration::from_secs(30), self.conns.recv())
            .await
            .expect("callguard did not connect")
            .expect("listener stopped")
    }

    /// The next accepted events websocket within `limit`, if any.
    pub async fn accept_within(&mut self, limit: Duration) -> Option<AriConn> {
        tokio::time::timeout(limit, self.conns.recv())
            .await
            .ok()
            .flatten()
    }

    /// Sets the body of `GET /ari/channels`.
    pub fn set_channels(&self, body: &str) {
        self.state.lock().unwrap().channels = body.to_string();
    }

    /// Stores a recording under `name`.
    pub fn store(&self, name: &str, bytes: Vec<u8>) {
        self.state
            .lock()
            .unwrap()
            .stored
            .insert(name.to_string(), bytes);
    }

    /// Makes the next downloads fail, in order.
    pub fn fail_downloads(&self, failures: &[Failure]) {
        self.state.lock().unwrap().failures.extend(failures);
    }

    /// Refuses every snoop from now on (404 Channel not found).
    pub fn refuse_snoops(&self) {
        self.state.lock().unwrap().refuse_snoops = true;
    }

    /// Snoops enter the application `delay` after their `200`.
    pub fn set_stasis_delay(&self, delay: Duration) {
        self.state.lock().unwrap().stasis_delay = delay;
    }

    /// Snoops still enter the application, but their StasisStart events are lost.
    pub fn lose_stasis_events(&self) {
        self.state.lock().unwrap().lose_stasis_events = true;
    }

    /// Refuses every record from now on with `status` and `{"message": message}`.
    pub fn refuse_records(&self, status: u16, message: &str) {
        self.state.lock().unwrap().record_refusal = Some((status, message.to_string()));
    }

    /// When the StasisStart of `snoop_id` was sent, if it was.
    pub fn stasis_sent(&self, snoop_id: &str) -> Option<Instant> {
        self.state
            .lock()
            .unwrap()
            .stasis_sent
            .get(snoop_id)
            .copied()
    }

    /// Every REST request so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Every websocket upgrade so far (target, admitted).
    pub fn upgrades(&self) -> Vec<(String, bool)> {
        self.state.lock().unwrap().upgrades.clone()
    }

    /// Waits (up to 30 s) until `pred` holds for the requests seen.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&[Seen], &[(String, bool)]) -> bool) {
        let fut = async {
            loop {
                let notified = self.changed.notified();
                {
                    let s = self.state.lock().unwrap();
                    if pred(&s.requests, &s.upgrades) {
                        return;
                    }
                }
                notified.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), fut)
            .await
            .unwrap_or_else(|_| panic!("waited in vain for {what}: {:?}", self.requests()));
    }
}

async fn serve(
    stream: TcpStream,
    tx: mpsc::Sender<AriConn>,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    expected_auth: String,
) {
    // Peek the head: a websocket upgrade goes to tungstenite untouched, the rest is REST.
    let mut buf = vec![0u8; 8192];
    let head = loop {
        let Ok(n) = stream.peek(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            break text[..end + 4].to_string();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    if head.to_ascii_lowercase().contains("upgrade: websocket") {
        let (st, ch) = (state.clone(), changed.clone());
        // The callback's type is tungstenite's; its large error is not ours to shrink.
        #[allow(clippy::result_large_err)]
        let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            let target = req.uri().to_string();
            let ok = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                == Some(expected_auth.as_str())
                && req.uri().path() == "/ari/events";
            st.lock().unwrap().upgrades.push((target, ok));
            ch.notify_waiters();
            if ok {
                Ok(resp)
            } else {
                let mut e = ErrorResponse::new(None);
                *e.status_mut() = StatusCode::UNAUTHORIZED;
                Err(e)
            }
        };
        if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await {
            let (sink, stream) = ws.split();
            let sink = Arc::new(tokio::sync::Mutex::new(sink));
            state.lock().unwrap().sinks.push(Arc::downgrade(&sink));
            let _ = tx.send(AriConn { sink, stream }).await;
        }
        return;
    }
    rest(stream, head, state, changed, expected_auth).await;
}

async fn rest(
    mut stream: TcpStream,
    head: String,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    expected_auth: String,
) {
    let mut consumed = vec![0u8; head.len()];
    if stream.read_exact(&mut consumed).await.is_err() {
        return;
    }
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let auth_ok = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.eq_ignore_ascii_case("authorization") && v.trim() == expected_auth
        })
    });
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let responses = rest_responses();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();

    // A snoop made by this request: it enters the application after the answer is sent.
    let mut made_snoop: Option<(String, String)> = None;
    let (status, ctype, body, failure): (u16, &str, Vec<u8>, Option<Failure>) = if !auth_ok {
        (
            401,
            "application/json",
            br#"{"message":"Authentication required"}"#.to_vec(),
            None,
        )
    } else {
        let mut st = state.lock().unwrap();
        match (method.as_str(), segs.as_slice()) {
            ("GET", ["ari", "channels"]) => (
                200,
                "application/json",
                st.channels.clone().into_bytes(),
                None,
            ),
            ("POST", ["ari", "channels", _, "snoop"]) if st.refuse_snoops => (
                404,
                "application/json",
                br#"{"message":"Channel not found"}"#.to_vec(),
                None,
            ),
            ("POST", ["ari", "channels", id, "snoop"]) => {
                let snoop_id = query
                    .iter()
                    .find(|(k, _)| k == "snoopId")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let status = status_of(&responses, "/snoop?");
                let body = serde_json::json!({"id": snoop_id, "name": format!("Snoop/{id}-00000001"), "state": "Up"});
                if !st.snoops.contains_key(&snoop_id) {
                    st.snoops.insert(snoop_id.clone(), false);
                    let app = query
                        .iter()
                        .find(|(k, _)| k == "app")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    made_snoop = Some((snoop_id.clone(), app));
                }
                (
                    status,
                    "application/json",
                    body.to_string().into_bytes(),
                    None,
                )
            }
            ("POST", ["ari", "channels", id, "record" | "play"])
                if st.snoops.get(*id) == Some(&false) =>
            {
                (
                    409,
                    "application/json",
                    br#"{"message":"Channel not in Stasis application"}"#.to_vec(),
                    None,
                )
            }
            ("POST", ["ari", "channels", _, "record"]) if st.record_refusal.is_some() => {
                let (status, message) = st.record_refusal.clone().unwrap();
                let body = serde_json::json!({ "message": message });
                (
                    status,
                    "application/json",
                    body.to_string().into_bytes(),
                    None,
                )
            }
            ("POST", ["ari", "channels", _, "record"])
                if query
                    .iter()
                    .any(|(k, v)| k == "name" && st.recordings.contains(v)) =>
            {
                let name = query.iter().find(|(k, _)| k == "name").unwrap().1.clone();
                let body = serde_json::json!({
                    "message": format!("Recording '{name}' already exists and can not be overwritten")
                });
                (409, "application/json", body.to_string().into_bytes(), None)
            }
            ("POST", ["ari", "channels", id, "record"]) => {
                let name = query
                    .iter()
                    .find(|(k, _)| k == "name")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let entry = entry_of(&responses, "/record?");
                let mut body = entry["body"].clone();
                st.recordings.insert(name.clone());
                body["name"] = name.into();
                body["target_uri"] = format!("channel:{id}").into();
                (
                    entry["status"].as_u64().unwrap() as u16,
                    "application/json",
                    body.to_string().into_bytes(),
                    None,
                )
            }
            ("POST", ["ari", "channels", id, "play"]) => {
                let media = query
                    .iter()
                    .find(|(k, _)| k == "media")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                let body = serde_json::json!({"id": "pb-1", "media_uri": media, "target_uri": format!("channel:{id}"), "state": "queued"});
                (201, "application/json", body.to_string().into_bytes(), None)
            }
            ("GET", ["ari", "recordings", "stored", name, "file"]) => {
                let name = percent_decode(name);
                match st.stored.get(&name).cloned() {
                    Some(bytes) => {
                        let failure = st.failures.pop_front();
                        match failure {
                            Some(Failure::Status(s)) => (
                                s,
                                "application/json",
                                br#"{"message":"busy"}"#.to_vec(),
                                None,
                            ),
                            f => {
                                let entry = entry_of(&responses, "%2F");
                                let ctype = if entry["content-type"] == "audio/wav" {
                                    "audio/wav"
                                } else {
                                    "application/octet-stream"
                                };
                                (200, ctype, bytes, f)
                            }
                        }
                    }
                    None => (
                        404,
                        "application/json",
                        br#"{"message":"Recording not found"}"#.to_vec(),
                        None,
                    ),
                }
            }
            // Anything else, including a stored name with a raw `/` (more segments), is 404 as
            // on the real Asterisk.
            _ => (
                404,
                "application/json",
                br#"{"message":"Resource not found"}"#.to_vec(),
                None,
            ),
        }
    };
    {
        let mut st = state.lock().unwrap();
        st.requests.push(Seen {
            method,
            path: path.to_string(),
            query,
            status,
            at: Instant::now(),
        });
    }
    changed.notify_waiters();
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        StatusCode::from_u16(status)
            .map(|s| s.canonical_reason().unwrap_or(""))
            .unwrap_or(""),
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    match failure {
        Some(Failure::CutOff) => {
            let _ = stream.write_all(&body[..body.len() / 2]).await;
            let _ = stream.flush().await;
            // Dropping the socket mid-body is what a dying Asterisk looks like.
        }
        _ => {
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
    }
    if let Some((snoop_id, app)) = made_snoop {
        tokio::spawn(enter_stasis(state, changed, snoop_id, app));
    }
}

/// The snoop enters the application: after the delay, its StasisStart goes to every open
/// events websocket (unless events are being lost), and from then on it can be recorded.
async fn enter_stasis(
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    snoop_id: String,
    app: String,
) {
    let delay = state.lock().unwrap().stasis_delay;
    tokio::time::sleep(delay).await;
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3f+0000");
    let line = serde_json::json!({
        "type": "StasisStart",
        "timestamp": now.to_string(),
        "args": [],
        "channel": {
            "id": snoop_id,
            "name": format!("Snoop/{}-00000001", snoop_id.rsplit('-').next().unwrap_or("")),
            "state": "Up",
            "protocol_id": "",
            "caller": {"name": "", "number": ""},
            "connected": {"name": "", "number": ""},
            "accountcode": "",
            "dialplan": {"context": "default", "exten": "s", "priority": 1, "app_name": "Stasis", "app_data": app},
            "creationtime": now.to_string(),
            "language": "en"
        },
        "asterisk_id": "02:fc:00:00:00:01",
        "application": app
    })
    .to_string();
    let (sinks, lose) = {
        let mut st = state.lock().unwrap();
        st.snoops.insert(snoop_id.clone(), true);
        st.sinks.retain(|w| w.strong_count() > 0);
        (st.sinks.clone(), st.lose_stasis_events)
    };
    if !lose {
        for sink in sinks.iter().filter_map(Weak::upgrade) {
            let _ = sink
                .lock()
                .await
                .send(Message::Text(line.clone().into()))
                .await;
        }
        state
            .lock()
            .unwrap()
            .stasis_sent
            .insert(snoop_id, Instant::now());
    }
    changed.notify_waiters();
}

fn entry_of<'a>(responses: &'a serde_json::Value, key_part: &str) -> &'a serde_json::Value {
    responses
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.contains(key_part))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no fixture response with {key_part}"))
}

fn status_of(responses: &serde_json::Value, key_part: &str) -> u16 {
    entry_of(responses, key_part)["status"].as_u64().unwrap() as u16
}

/// Decodes `%XX` escapes of a path segment.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
