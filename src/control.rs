//! The control socket: how `callguard status` and `callguard escalate` (and later `mark` and
//! `note`) talk to the running daemon.
//!
//! A unix socket, `$XDG_RUNTIME_DIR/callguard/control.sock` by default, mode 0600, that refuses
//! peers running as another user. Line-delimited JSON: each request is one object with a `cmd`
//! field, each answer one object `{"ok":true,"result":…}` or
//! `{"ok":false,"code":"…","error":"…"}`. New commands are new `cmd` values; unknown ones get
//! `code: "unknown_command"`, so old clients and new daemons can tell what is missing.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::calls::{CallError, CallStatus, Command, TrackerStatus};
use crate::config::Config;
use crate::escalation::outbox::{Outbox, OutboxStatus};
use crate::events::Report;

/// Longest request line accepted.
pub const MAX_LINE: u64 = 64 * 1024;
/// How long the daemon waits for a client to send its request, and a client for the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How many recent errors `status` keeps.
pub const RECENT_ERRORS: usize = 20;

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// The daemon's state.
    Status,
    /// Call the team lead to the agent's current call.
    Escalate {
        /// A note for the lead.
        #[serde(default)]
        note: Option<String>,
    },
    /// Mark what the caller does on the current call (or `call`).
    Mark {
        /// `abuse`, `threat`, … (see [`crate::harassment::MarkKind`]).
        kind: String,
        /// The caller's words, verbatim.
        #[serde(default)]
        quote: Option<String>,
        /// A specific call; absent = the agent's current call.
        #[serde(default)]
        call: Option<String>,
    },
    /// Add to the record of the current call, or of a past one by id.
    Note {
        /// A specific call; absent = the agent's current call.
        #[serde(default)]
        call: Option<String>,
        /// Which item of the record.
        field: crate::events::NoteField,
        /// The text, verbatim.
        text: String,
    },
}

/// An answer on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    /// Whether the request was carried out.
    pub ok: bool,
    /// The answer's data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Machine-readable reason when not ok: `no_current_call`, `bad_request`,
    /// `unknown_command`, `refused`, `unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Reason for people when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    fn ok(result: impl Serialize) -> Response {
        Response {
            ok: true,
            result: Some(serde_json::to_value(result).unwrap_or_default()),
            code: None,
            error: None,
        }
    }

    fn err(code: &str, error: impl Into<String>) -> Response {
        Response {
            ok: false,
            result: None,
            code: Some(code.into()),
            error: Some(error.into()),
        }
    }
}

/// The answer to `escalate`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EscalateResult {
    /// The call the lead is called to.
    pub call: CallStatus,
    /// How many receivers are pinged (0 = none configured).
    pub receivers: usize,
}

/// The answer to `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DaemonStatus {
    /// Software version.
    pub version: String,
    /// Daemon process id.
    pub pid: u32,
    /// When the daemon started (RFC 3339).
    pub started_at: String,
    /// PBX connection and calls, from the tracker; `None` if it did not answer.
    pub tracker: Option<TrackerStatusView>,
    /// Receivers of team-lead pings (secrets in URLs masked).
    pub webhooks: Vec<String>,
    /// The ping outbox.
    pub outbox: OutboxStatus,
    /// What this workstation can do.
    pub capabilities: Capabilities,
    /// Latest problems, oldest first.
    pub recent_errors: Vec<ErrorEntry>,
    /// The daemon's parts (connector, tracker, sinks, control) and their states.
    #[serde(default)]
    pub parts: Vec<crate::supervisor::PartStatus>,
}

/// [`TrackerStatus`], (de)serializable for clients.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrackerStatusView {
    /// `connected`, `disconnected` or `connecting`.
    pub pbx: String,
    /// Endpoint or last reason.
    pub pbx_detail: String,
    /// Calls in progress.
    pub calls: Vec<CallStatus>,
    /// Refused frames since start.
    pub bad_frames: u64,
    /// The last refused frame's reason.
    pub last_bad_frame: Option<String>,
}

impl From<TrackerStatus> for TrackerStatusView {
    fn from(t: TrackerStatus) -> Self {
        TrackerStatusView {
            pbx: t.pbx,
            pbx_detail: t.pbx_detail,
            calls: t.calls,
            bad_frames: t.bad_frames,
            last_bad_frame: t.last_bad_frame,
        }
    }
}

/// What this workstation can do.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Capabilities {
    /// Desktop notifications.
    pub notifications: NotificationCapability,
    /// Local audio output.
    pub audio: AudioCapability,
    /// Evidence storage.
    pub evidence: EvidenceCapability,
}

/// The notification server on the session bus.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NotificationCapability {
    /// A server answered.
    pub present: bool,
    /// Its name and version.
    pub server: Option<String>,
    /// It supports action buttons (「上長を呼ぶ」).
    pub actions: bool,
    /// Why none answered.
    pub error: Option<String>,
}

/// The audio output, as last seen by the player.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AudioCapability {
    /// `ok`, `missing`, `off` or `unknown` (nothing played yet).
    pub state: String,
    /// Device, or why it is missing.
    pub detail: Option<String>,
}

/// The evidence folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EvidenceCapability {
    /// Folder.
    pub dir: String,
    /// Free space there (MiB), if known.
    pub free_mb: Option<u64>,
    /// The configured minimum to start a recording.
    pub min_free_mb: u64,
    /// Why the free space is unknown.
    pub error: Option<String>,
}

/// One recent problem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorEntry {
    /// When (RFC 3339).
    pub at: String,
    /// What.
    pub what: String,
    /// How many times more it happened in a row (`at` is the latest).
    #[serde(default)]
    pub repeats: u32,
}

/// What the daemon saw happen, collected from the sinks' reports.
#[derive(Debug, Default)]
struct Observed {
    audio: Option<Result<String, String>>,
    errors: VecDeque<ErrorEntry>,
}

impl Observed {
    fn error(&mut self, what: String) {
        let at = chrono::Local::now().fixed_offset().to_rfc3339();
        // A PBX that stays down reports each failed reconnect: one line, counted.
        if let Some(last) = self.errors.back_mut()
            && last.what == what
        {
            last.at = at;
            last.repeats += 1;
            return;
        }
        if self.errors.len() == RECENT_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(ErrorEntry {
            at,
            what,
            repeats: 0,
        });
    }

    fn on_report(&mut self, r: Report) {
        match r {
            Report::Disconnected(why) => self.error(format!("PBX disconnected: {why}")),
            Report::Sound { outcome, what, .. } => {
                if let Err(e) = &outcome {
                    self.error(format!("{what} not played: {e}"));
                }
                self.audio = Some(outcome);
            }
            Report::Notification {
                outcome: Err(e),
                summary,
                ..
            } => self.error(format!("notification `{summary}` not shown: {e}")),
            Report::Note(text) if text.starts_with("team-lead ping") && text.contains("FAILED") => {
                self.error(text)
            }
            _ => {}
        }
    }
}

/// Everything the control server needs.
pub struct ControlContext {
    socket: PathBuf,
    commands: mpsc::Sender<Command>,
    /// Taken by the observer; subscribed at wiring time so nothing before `serve` is missed.
    reports: Option<broadcast::Receiver<Report>>,
    outbox: Outbox,
    webhooks: Vec<String>,
    evidence_dir: PathBuf,
    min_free_mb: u64,
    local_sound: bool,
    started_at: String,
    parts: crate::supervisor::Parts,
}

impl ControlContext {
    /// From the configuration; `bus` is only used to listen to reports.
    pub fn new(cfg: &Config, commands: mpsc::Sender<Command>, bus: &Bus) -> ControlContext {
        ControlContext {
            socket: cfg.control_socket(),
            commands,
            reports: Some(bus.reports()),
            outbox: Outbox::new(crate::escalation::outbox_dir(cfg)),
            webhooks: cfg
                .escalation
                .webhook
                .iter()
                .map(|h| crate::config::mask_url(&h.url))
                .collect(),
            evidence_dir: cfg.evidence_dir(),
            min_free_mb: cfg.evidence.min_free_mb,
            local_sound: cfg.prompt.local,
            started_at: chrono::Local::now().fixed_offset().to_rfc3339(),
            parts: Default::default(),
        }
    }

    /// Shows these parts' states in `status`.
    pub fn with_parts(mut self, parts: crate::supervisor::Parts) -> ControlContext {
        self.parts = parts;
        self
    }
}

struct Shared {
    ctx: ControlContext,
    observed: Mutex<Observed>,
}

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another daemon answers on it.
    #[error("another callguard daemon is already listening on {0}")]
    InUse(PathBuf),
    /// Disk or permission trouble.
    #[error("{path}: {source}")]
    Io {
        /// Socket or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Binds `path`: folder created 0700 if missing, a stale socket replaced, the socket 0600.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BindError::Io { path, source }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Only a folder we create is made private; an existing one (a configured /run/…)
        // is left as its owner set it.
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir))?;
        }
    }
    if path.exists() || std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(path.to_path_buf()));
        }
        // Left behind by a daemon that was killed.
        std::fs::remove_file(path).map_err(io(path))?;
    }
    let listener = UnixListener::bind(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    Ok(listener)
}

/// Serves the control socket until `shutdown`. Without a socket the daemon goes on (logged):
/// status and escalate are then unavailable, the warnings are not.
pub async fn serve(mut ctx: ControlContext, shutdown: CancellationToken) {
    let listener = match bind(&ctx.socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "control socket unavailable: `callguard status` and `callguard escalate` will not reach this daemon");
            return;
        }
    };
    tracing::info!(socket = %ctx.socket.display(), "control socket ready");
    let reports = ctx.reports.take();
    let shared = Arc::new(Shared {
        ctx,
        observed: Mutex::new(Observed::default()),
    });
    let observer = {
        let shared = shared.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let Some(mut reports) = reports else { return };
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    r = reports.recv() => match r {
                        Ok(r) => {
                            if let Ok(mut o) = shared.observed.lock() {
                                o.on_report(r);
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        })
    };
    let me = rustix::process::getuid().as_raw();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, shared, me).await {
                            tracing::debug!(error = %e, "control connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    observer.abort();
    let _ = std::fs::remove_file(&shared.ctx.socket);
}

async fn handle(stream: UnixStream, shared: Arc<Shared>, me: u32) -> io::Result<()> {
    let peer = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    if peer.uid() != me {
        tracing::warn!(
            peer_uid = peer.uid(),
            "control socket: refused a client running as another user"
        );
        let r = Response::err("refused", "the control socket serves only its own user");
        write_line(&mut write, &r).await?;
        return Ok(());
    }
    let mut lines = BufReader::new(read);
    loop {
        let mut line = String::new();
        // The limit is per request, so a client may keep its connection for many requests.
        let mut one = (&mut lines).take(MAX_LINE);
        let n = match tokio::time::timeout(IO_TIMEOUT, one.read_line(&mut line)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') {
            let r = Response::err("bad_request", "request too long or not ended by a newline");
            return write_line(&mut write, &r).await;
        }
        let response = answer(line.trim(), &shared).await;
        write_line(&mut write, &response).await?;
    }
}

async fn write_line(w: &mut tokio::net::unix::OwnedWriteHalf, r: &Response) -> io::Result<()> {
    let mut text = serde_json::to_string(r).map_err(io::Error::other)?;
    text.push('\n');
    w.write_all(text.as_bytes()).await?;
    w.flush().await
}

async fn answer(line: &str, shared: &Shared) -> Response {
    let value: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return Response::err("bad_request", format!("not a JSON object: {e}")),
    };
    let cmd = value
        .get("cmd")
        .and_then(|c| c.as_str())
        .unwrap_or_default()
        .to_string();
    let req: Request = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) if matches!(cmd.as_str(), "status" | "escalate" | "mark" | "note") => {
            return Response::err("bad_request", format!("bad `{cmd}` request: {e}"));
        }
        Err(_) => {
            return Response::err(
                "unknown_command",
                format!("this daemon does not know the command `{cmd}`"),
            );
        }
    };
    match req {
        Request::Status => Response::ok(status(shared).await),
        Request::Mark { kind, quote, call } => {
            let kind = match kind.parse::<crate::harassment::MarkKind>() {
                Ok(k) => k,
                Err(e) => return Response::err("bad_request", e.to_string()),
            };
            let (reply, rx) = oneshot::channel();
            let cmd = Command::Mark {
                kind,
                quote,
                call_id: call,
                reply,
            };
            tracker_answer(shared, cmd, rx).await
        }
        Request::Note { call, field, text } => {
            if text.trim().is_empty() {
                return Response::err("bad_request", "the note is empty");
            }
            let (reply, rx) = oneshot::channel();
            let cmd = Command::Note {
                call_id: call,
                field,
                text,
                reply,
            };
            tracker_answer(shared, cmd, rx).await
        }
        Request::Escalate { note } => {
            let (reply, rx) = oneshot::channel();
            let cmd = Command::Escalate {
                call_id: None,
                note,
                source: "cli".into(),
                reply,
            };
            if shared.ctx.commands.send(cmd).await.is_err() {
                return Response::err("unavailable", "the daemon is shutting down");
            }
            match tokio::time::timeout(IO_TIMEOUT, rx).await {
                Ok(Ok(Ok(call))) => Response::ok(EscalateResult {
                    call,
                    receivers: shared.ctx.webhooks.len(),
                }),
                Ok(Ok(Err(CallError::NoCall))) => Response::err(
                    "no_current_call",
                    "no current call: there is no call in progress to escalate",
                ),
                Ok(Ok(Err(e))) => Response::err("not_in_progress", e.to_string()),
                _ => Response::err("unavailable", "the call tracker did not answer"),
            }
        }
    }
}

/// Sends a request about a call to the tracker and turns its answer into a response.
async fn tracker_answer<T: Serialize>(
    shared: &Shared,
    cmd: Command,
    rx: oneshot::Receiver<Result<T, CallError>>,
) -> Response {
    if shared.ctx.commands.send(cmd).await.is_err() {
        return Response::err("unavailable", "the daemon is shutting down");
    }
    match tokio::time::timeout(IO_TIMEOUT, rx).await {
        Ok(Ok(Ok(answer))) => Response::ok(answer),
        Ok(Ok(Err(CallError::NoCall))) => Response::err("no_current_call", "no call in progress"),
        Ok(Ok(Err(e))) => Response::err("not_in_progress", e.to_string()),
        _ => Response::err("unavailable", "the call tracker did not answer"),
    }
}

async fn status(shared: &Shared) -> DaemonStatus {
    let ctx = &shared.ctx;
    let (tx, rx) = oneshot::channel();
    let tracker = if ctx.commands.send(Command::Status(tx)).await.is_ok() {
        tokio::time::timeout(IO_TIMEOUT, rx)
            .await
            .ok()
            .and_then(Result::ok)
            .map(TrackerStatusView::from)
    } else {
        None
    };
    let outbox = {
        let ob = ctx.outbox.clone();
        tokio::task::spawn_blocking(move || ob.status())
            .await
            .unwrap_or_default()
    };
    let (audio, recent_errors) = match shared.observed.lock() {
        Ok(o) => (o.audio.clone(), o.errors.iter().cloned().collect()),
        Err(_) => (None, Vec::new()),
    };
    let audio = match (ctx.local_sound, audio) {
        (false, _) => AudioCapability {
            state: "off".into(),
            detail: Some("prompt.local = false".into()),
        },
        (true, None) => AudioCapability {
            state: "unknown".into(),
            detail: Some("nothing played yet".into()),
        },
        (true, Some(Ok(dev))) => AudioCapability {
            state: "ok".into(),
            detail: Some(dev),
        },
        (true, Some(Err(e))) => AudioCapability {
            state: "missing".into(),
            detail: Some(e),
        },
    };
    DaemonStatus {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        started_at: ctx.started_at.clone(),
        tracker,
        webhooks: ctx.webhooks.clone(),
        outbox,
        capabilities: Capabilities {
            notifications: probe_notifications().await,
            audio,
            evidence: evidence(&ctx.evidence_dir, ctx.min_free_mb),
        },
        recent_errors,
        parts: ctx.parts.snapshot(),
    }
}

/// Asks the session bus's notification server who it is and whether it shows action buttons.
pub async fn probe_notifications() -> NotificationCapability {
    let probe = tokio::task::spawn_blocking(|| {
        let info = notify_rust::get_server_information()?;
        let caps = notify_rust::get_capabilities()?;
        Ok::<_, notify_rust::error::Error>((info, caps))
    });
    match tokio::time::timeout(Duration::from_secs(5), probe).await {
        Ok(Ok(Ok((info, caps)))) => NotificationCapability {
            present: true,
            server: Some(format!("{} {}", info.name, info.version)),
            actions: caps.iter().any(|c| c == "actions"),
            error: None,
        },
        Ok(Ok(Err(e))) => NotificationCapability {
            error: Some(e.to_string()),
            ..Default::default()
        },
        _ => NotificationCapability {
            error: Some("the session bus did not answer".into()),
            ..Default::default()
        },
    }
}

fn evidence(dir: &Path, min_free_mb: u64) -> EvidenceCapability {
    // Not created yet: the space that counts is that of the nearest existing parent.
    let existing = dir.ancestors().find(|p| p.exists()).unwrap_or(dir);
    let (free_mb, error) = match rustix::fs::statvfs(existing) {
        Ok(s) => (
            Some(s.f_bavail.saturating_mul(s.f_frsize) / (1024 * 1024)),
            None,
        ),
        Err(e) => (None, Some(format!("{}: {e}", existing.display()))),
    };
    EvidenceCapability {
        dir: dir.display().to_string(),
        free_mb,
        min_free_mb,
        error,
    }
}

/// Why a client could not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens on the socket.
    #[error("callguard is not running (no daemon answers on {0})")]
    NotRunning(PathBuf),
    /// Talking to it failed.
    #[error("control socket {path}: {source}")]
    Io {
        /// Socket.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// It did not answer in time.
    #[error("the daemon did not answer within {0:?}")]
    Timeout(Duration),
    /// The answer is not a response.
    #[error("unexpected answer from the daemon: {0}")]
    BadAnswer(String),
}

/// Sends one request and reads its answer.
pub async fn request(path: &Path, req: &Request) -> Result<Response, ClientError> {
    let io = |source: io::Error| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let stream = match UnixStream::connect(path).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NotRunning(path.to_path_buf()));
        }
        Err(e) => return Err(io(e)),
    };
    let exchange = async {
        let (read, mut write) = stream.into_split();
        let mut text = serde_json::to_string(req).map_err(|e| io(io::Error::other(e)))?;
        text.push('\n');
        write.write_all(text.as_bytes()).await.map_err(io)?;
        let mut line = String::new();
        BufReader::new(read.take(16 * 1024 * 1024))
            .read_line(&mut line)
            .await
            .map_err(io)?;
        serde_json::from_str::<Response>(&line).map_err(|e| ClientError::BadAnswer(e.to_string()))
    };
    // The status probe of the notification server may take a few seconds on a busy desktop.
    let limit = IO_TIMEOUT * 2;
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| ClientError::Timeout(limit))?
}

fn client_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("callguard: cannot start the async runtime: {e}");
            None
        }
    }
}

/// `callguard status [--json]`: 0 when the daemon answered, 1 when it is not running.
pub fn status_command(cfg: &Config, json: bool) -> ExitCode {
    let Some(rt) = client_runtime() else {
        return ExitCode::FAILURE;
    };
    let path = cfg.control_socket();
    let response = match rt.block_on(request(&path, &Request::Status)) {
        Ok(r) => r,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"running": false, "error": e.to_string()})
                );
            }
            eprintln!("callguard: {e}");
            return ExitCode::FAILURE;
        }
    };
    let status = match (response.ok, response.result) {
        (true, Some(v)) => match serde_json::from_value::<DaemonStatus>(v) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("callguard: unexpected status from the daemon: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => {
            eprintln!(
                "callguard: the daemon refused: {}",
                response.error.unwrap_or_default()
            );
            return ExitCode::FAILURE;
        }
    };
    if json {
        let mut v = serde_json::to_value(&status).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("running".into(), true.into());
            if let Some(b) = crate::archive::status(cfg) {
                o.insert("archive".into(), b);
            }
        }
        println!("{v}");
    } else {
        print!("{}", render_status(&status));
        if let Some(line) = crate::archive::status_line(cfg) {
            println!("{line}");
        }
    }
    ExitCode::SUCCESS
}

fn secs(s: u64) -> String {
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

/// `callguard status` for people.
pub fn render_status(s: &DaemonStatus) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "callguard {} — running (pid {}, since {})",
        s.version, s.pid, s.started_at
    );
    match &s.tracker {
        Some(t) => {
            let _ = writeln!(o, "PBX: {} ({})", t.pbx, t.pbx_detail);
            if t.bad_frames > 0 {
                let _ = writeln!(
                    o,
                    "  {} frames refused; last: {}",
                    t.bad_frames,
                    t.last_bad_frame.as_deref().unwrap_or("")
                );
            }
            let _ = writeln!(o, "Calls in progress: {}", t.calls.len());
            for c in &t.calls {
                let next = match (&c.next_warning, c.next_warning_after_secs) {
                    (Some(k), Some(a)) => format!(
                        "next: {k} at {} (in {})",
                        secs(a),
                        secs(a.saturating_sub(c.elapsed_secs))
                    ),
                    _ => "no warning left".into(),
                };
                let _ = writeln!(
                    o,
                    "  {}  agent {}  caller {}  elapsed {}  {next}  level {} ({} marks)",
                    c.call_id,
                    c.agent,
                    c.caller,
                    secs(c.elapsed_secs),
                    c.level,
                    c.marks
                );
            }
        }
        None => {
            let _ = writeln!(o, "PBX: unknown (the call tracker did not answer)");
        }
    }
    let _ = writeln!(
        o,
        "Team-lead pings: {} receiver(s){}",
        s.webhooks.len(),
        if s.webhooks.is_empty() {
            " — none configured, leads are not pinged".to_string()
        } else {
            format!(": {}", s.webhooks.join(", "))
        }
    );
    let _ = writeln!(
        o,
        "  outbox {}: {} pending, {} failed",
        s.outbox.dir,
        s.outbox.pending.len(),
        s.outbox.failed.len()
    );
    for e in &s.outbox.pending {
        let _ = writeln!(
            o,
            "  PENDING {} {} call {} → {} ({} attempts; last error: {})",
            e.ping_id,
            e.kind,
            e.call_id,
            e.receiver,
            e.attempts,
            e.error.as_deref().unwrap_or("none yet")
        );
    }
    for e in &s.outbox.failed {
        let _ = writeln!(
            o,
            "  FAILED  {} {} call {} → {}: {}",
            e.ping_id,
            e.kind,
            e.call_id,
            e.receiver,
            e.error.as_deref().unwrap_or("")
        );
    }
    for u in &s.outbox.unreadable {
        let _ = writeln!(o, "  UNREADABLE {u}");
    }
    if !s.parts.is_empty() {
        let _ = writeln!(o, "Parts:");
        for p in &s.parts {
            let _ = writeln!(o, "  {}: {}", p.name, p.describe());
        }
    }
    let n = &s.capabilities.notifications;
    let _ = writeln!(o, "Capabilities:");
    if n.present {
        let _ = writeln!(
            o,
            "  notifications: yes ({}), action buttons: {}",
            n.server.as_deref().unwrap_or("?"),
            if n.actions { "yes" } else { "no" }
        );
    } else {
        let _ = writeln!(
            o,
            "  notifications: NO ({})",
            n.error.as_deref().unwrap_or("no server")
        );
    }
    let a = &s.capabilities.audio;
    let _ = writeln!(
        o,
        "  audio: {} ({})",
        a.state,
        a.detail.as_deref().unwrap_or("")
    );
    let ev = &s.capabilities.evidence;
    match ev.free_mb {
        Some(free) => {
            let low = if free < ev.min_free_mb {
                " — BELOW the minimum, calls are not recorded"
            } else {
                ""
            };
            let _ = writeln!(
                o,
                "  evidence: {} — {free} MiB free (minimum {}){low}",
                ev.dir, ev.min_free_mb
            );
        }
        None => {
            let _ = writeln!(
                o,
                "  evidence: {} — free space unknown ({})",
                ev.dir,
                ev.error.as_deref().unwrap_or("")
            );
        }
    }
    if s.recent_errors.is_empty() {
        let _ = writeln!(o, "Recent errors: none");
    } else {
        let _ = writeln!(o, "Recent errors:");
        for e in &s.recent_errors {
            let again = if e.repeats > 0 {
                format!(" (×{})", e.repeats + 1)
            } else {
                String::new()
            };
            let _ = writeln!(o, "  {} {}{again}", e.at, e.what);
        }
    }
    o
}

/// Sends one request and maps a refusal to an exit code: 2 for "no such call" and bad
/// requests (the agent can fix them), 1 for everything else (no daemon, shutting down).
fn call_request(cfg: &Config, req: &Request) -> Result<serde_json::Value, ExitCode> {
    let rt = client_runtime().ok_or(ExitCode::FAILURE)?;
    let path = cfg.control_socket();
    let response = rt.block_on(request(&path, req)).map_err(|e| {
        eprintln!("callguard: {e}");
        ExitCode::FAILURE
    })?;
    if !response.ok {
        eprintln!(
            "callguard: {}",
            response.error.as_deref().unwrap_or("request refused")
        );
        return Err(match response.code.as_deref() {
            Some("no_current_call") | Some("not_in_progress") | Some("bad_request") => {
                ExitCode::from(crate::cli::EXIT_USAGE)
            }
            _ => ExitCode::FAILURE,
        });
    }
    Ok(response.result.unwrap_or_default())
}

/// `callguard mark KIND [--quote TEXT]`: 0 when marked, 2 for an unknown kind or no current
/// call, 1 when the daemon is not running.
pub fn mark_command(cfg: &Config, kind: &str, quote: Option<String>) -> ExitCode {
    let kind = match kind.parse::<crate::harassment::MarkKind>() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("callguard: {e}");
            return ExitCode::from(crate::cli::EXIT_USAGE);
        }
    };
    let req = Request::Mark {
        kind: kind.as_str().to_string(),
        quote,
        call: None,
    };
    let value = match call_request(cfg, &req) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match serde_json::from_value::<crate::calls::MarkReceipt>(value) {
        Ok(r) => {
            let level = crate::harassment::Level(r.level);
            let label = match cfg.language {
                crate::config::Language::Ja => level.label_ja(),
                crate::config::Language::En => level.label_en(),
            };
            println!(
                "marked {kind} ({}) on call {} at {} — {} so far; level {} ({label})",
                kind.label_ja(),
                r.call_id,
                r.offset,
                r.count,
                r.level
            );
            if !r.fired.is_empty() {
                println!("rules fired: {}", r.fired.join(", "));
            }
            if r.grounds_to_end {
                println!(
                    "grounds to end the call are met: 「{}」",
                    crate::alerts::text::END_PHRASE_JA
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("callguard: unexpected answer from the daemon: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `callguard note [--call ID] --witness/--response/--quote/--next TEXT`: each given item is
/// added to the call's record (a signed addendum once the call is sealed).
pub fn note_command(
    cfg: &Config,
    call: Option<String>,
    items: Vec<(crate::events::NoteField, String)>,
) -> ExitCode {
    if items.is_empty() {
        eprintln!("callguard: nothing to add: give --witness, --response, --quote or --next");
        return ExitCode::from(crate::cli::EXIT_USAGE);
    }
    for (field, text) in items {
        let req = Request::Note {
            call: call.clone(),
            field: field.clone(),
            text,
        };
        match call_request(cfg, &req) {
            Ok(v) => println!(
                "added {:?} to the record of call {}",
                field,
                v.as_str().unwrap_or("?")
            ),
            Err(code) => return code,
        }
    }
    ExitCode::SUCCESS
}

/// `callguard escalate [--note TEXT]`: 0 when the lead is being pinged, 2 when there is no
/// current call, 1 when the daemon is not running or no receiver is configured.
pub fn escalate_command(cfg: &Config, note: Option<String>) -> ExitCode {
    let value = match call_request(cfg, &Request::Escalate { note }) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let result = serde_json::from_value::<EscalateResult>(value).ok();
    match result {
        Some(r) if r.receivers == 0 => {
            eprintln!(
                "callguard: call {} noted, but no [[escalation.webhook]] is configured: nobody was pinged",
                r.call.call_id
            );
            ExitCode::FAILURE
        }
        Some(r) => {
            println!(
                "team lead called to call {} (caller {}, {}); {} receiver(s)",
                r.call.call_id,
                r.call.caller,
                secs(r.call.elapsed_secs),
                r.receivers
            );
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("callguard: unexpected answer from the daemon");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_future_commands_are_told_apart() {
        let line = serde_json::to_string(&Request::Escalate {
            note: Some("助けて".into()),
        })
        .unwrap();
        assert_eq!(line, r#"{"cmd":"escalate","note":"助けて"}"#);
        let r: Request = serde_json::from_str(r#"{"cmd":"status"}"#).unwrap();
        assert_eq!(r, Request::Status);
        let r: Request = serde_json::from_str(r#"{"cmd":"escalate"}"#).unwrap();
        assert_eq!(r, Request::Escalate { note: None });
    }

    #[tokio::test]
    async fn socket_is_private_and_answers_unknown_commands() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("run").join("control.sock");
        let mut cfg = Config::default();
        cfg.state.dir = tmp.path().join("state").display().to_string();
        cfg.control.socket = path.display().to_string();
        let (tx, _rx) = mpsc::channel(4);
        let bus = Bus::new();
        let stop = CancellationToken::new();
        let ctx = ControlContext::new(&cfg, tx, &bus);
        let server = tokio::spawn(serve(ctx, stop.clone()));
        let resp = loop {
            match UnixStream::connect(&path).await {
                Ok(mut s) => {
                    s.write_all(b"{\"cmd\":\"frobnicate\"}\n").await.unwrap();
                    let mut line = String::new();
                    BufReader::new(s).read_line(&mut line).await.unwrap();
                    break serde_json::from_str::<Response>(&line).unwrap();
                }
                Err(_) => tokio::task::yield_now().await,
            }
        };
        assert!(!resp.ok);
        assert_eq!(resp.code.as_deref(), Some("unknown_command"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        // A second daemon must not take over a live socket.
        assert!(matches!(bind(&path), Err(BindError::InUse(_))));
        stop.cancel();
        server.await.unwrap();
        assert!(!path.exists());
    }
}
