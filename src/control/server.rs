//! The daemon's side of the control socket.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::protocol::*;
use crate::bus::Bus;
use crate::calls::{CallError, Command};
use crate::config::Config;
use crate::escalation::outbox::Outbox;
use crate::events::Report;

/// What the daemon saw happen, collected from the sinks' reports.
#[derive(Debug, Default)]
struct Observed {
    audio: Option<Result<String, String>>,
    errors: VecDeque<ErrorEntry>,
}

impl Observed {
    fn error(&mut self, what: String) {
        // Errors of HTTP clients and the PBX connection may carry a URL with its token.
        let what = crate::redact::redact(&what);
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
            Report::PingFailed(p) => self.error(p.to_string()),
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
    floor: Option<std::sync::Arc<crate::floor::state::FloorState>>,
    reloader: Option<Arc<crate::reload::Reloader>>,
}

impl ControlContext {
    /// From the configuration; `bus` is only used to listen to reports.
    pub fn new(cfg: &Config, commands: mpsc::Sender<Command>, bus: &Bus) -> ControlContext {
        ControlContext {
            socket: cfg.control_socket(),
            commands,
            reports: Some(bus.reports()),
            outbox: crate::escalation::outbox::of(cfg),
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
            floor: None,
            reloader: None,
        }
    }

    /// Serves `reload`; `status` then shows the receivers and sounds of the configuration
    /// that runs now, and the last reload.
    pub fn with_reloader(mut self, reloader: Arc<crate::reload::Reloader>) -> ControlContext {
        self.reloader = Some(reloader);
        self
    }

    /// The team-lead receivers as shown (masked), and whether sounds play here, as running now.
    fn live(&self) -> (Vec<String>, bool) {
        match &self.reloader {
            Some(r) => {
                let cfg = r.current();
                let hooks = cfg
                    .escalation
                    .webhook
                    .iter()
                    .map(|h| crate::config::mask_url(&h.url))
                    .collect();
                (hooks, cfg.prompt.local)
            }
            None => (self.webhooks.clone(), self.local_sound),
        }
    }

    /// Shows these parts' states in `status`.
    pub fn with_parts(mut self, parts: crate::supervisor::Parts) -> ControlContext {
        self.parts = parts;
        self
    }

    /// Shows the floor bus in `status`.
    pub fn with_floor(
        mut self,
        floor: Option<std::sync::Arc<crate::floor::state::FloorState>>,
    ) -> ControlContext {
        self.floor = floor;
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
    let slots = Arc::new(Slots::new(MAX_CONNECTIONS));
    let mut backoff = AcceptBackoff::default();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    backoff.reset();
                    let Some(permit) = slots.admit().await else {
                        refuse_busy(stream);
                        continue;
                    };
                    let shared = shared.clone();
                    let slots = slots.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, shared, me, &slots).await {
                            tracing::debug!(error = %e, "control connection ended with an error");
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE) or a transient error: wait longer each
                    // time, so a flood cannot turn the accept loop into a busy loop or a log
                    // flood.
                    let delay = backoff.next();
                    if backoff.should_log() {
                        tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64,
                            "control socket accept failed");
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            },
        }
    }
    observer.abort();
    let _ = std::fs::remove_file(&shared.ctx.socket);
}

/// Connections served at once. Each holds one descriptor; the cap keeps a flood of clients from
/// taking the descriptors that recordings, the ledger and D-Bus need.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a new client may wait for an evicted idle client's slot.
const ADMIT_WAIT: Duration = Duration::from_secs(1);

/// The connection slots, and the connections that are idle (waiting for a request) in the
/// order they became idle: at the cap, a new client takes the slot of the one idle longest, so
/// a pile of idle connections can never lock `status` out.
struct Slots {
    permits: Arc<tokio::sync::Semaphore>,
    idle: Mutex<VecDeque<(u64, CancellationToken)>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            permits: Arc::new(tokio::sync::Semaphore::new(n)),
            idle: Mutex::new(VecDeque::new()),
            next_id: Default::default(),
        }
    }

    /// A slot for a new connection: a free one, or the one of the longest-idle connection
    /// (closed for it); `None` when every slot is busy answering.
    async fn admit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        let evicted = self.idle.lock().ok().and_then(|mut q| q.pop_front());
        let (_, token) = evicted?;
        token.cancel();
        tokio::time::timeout(ADMIT_WAIT, self.permits.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Marks a connection idle; the token is cancelled if its slot is given away.
    fn idle(&self) -> (u64, CancellationToken) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = CancellationToken::new();
        if let Ok(mut q) = self.idle.lock() {
            q.push_back((id, token.clone()));
        }
        (id, token)
    }

    /// The connection is working on a request (or gone): no longer evictable.
    fn busy(&self, id: u64) {
        if let Ok(mut q) = self.idle.lock() {
            q.retain(|(i, _)| *i != id);
        }
    }
}

/// Turns a client away at once: a best-effort answer that never waits on it, then close.
fn refuse_busy(stream: UnixStream) {
    let r = Response::err(
        "busy",
        "too many control connections; try again in a moment",
    );
    if let Ok(mut text) = serde_json::to_string(&r) {
        text.push('\n');
        let _ = stream.try_write(text.as_bytes());
    }
    tracing::debug!("control socket: a client was turned away (all slots busy)");
}

/// Spacing of retries after failed accepts: 50 ms doubling to 5 s, back to 50 ms after a
/// success; logged at the first failure and then at most once per 64 failures.
#[derive(Default)]
struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    fn next(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(7);
        (Duration::from_millis(50) * (1u32 << exp)).min(Duration::from_secs(5))
    }

    fn should_log(&self) -> bool {
        self.failures == 1 || self.failures.is_multiple_of(64)
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

async fn handle(stream: UnixStream, shared: Arc<Shared>, me: u32, slots: &Slots) -> io::Result<()> {
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
        let (id, evicted) = slots.idle();
        let read = tokio::select! {
            _ = evicted.cancelled() => return Ok(()),
            r = tokio::time::timeout(IO_TIMEOUT, one.read_line(&mut line)) => r,
        };
        slots.busy(id);
        let n = match read {
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
        Err(e)
            if matches!(
                cmd.as_str(),
                "status" | "escalate" | "mark" | "note" | "reload"
            ) =>
        {
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
        Request::Reload => {
            let Some(reloader) = &shared.ctx.reloader else {
                return Response::err("unavailable", "this daemon cannot reload its configuration");
            };
            let record = reloader.reload("callguard reload").await;
            let code = match record.outcome {
                crate::reload::Outcome::Refused => "config_invalid",
                crate::reload::Outcome::NeedsRestart => "needs_restart",
                _ => return Response::ok(record),
            };
            let mut r = Response::err(code, record.detail.clone());
            r.result = serde_json::to_value(&record).ok();
            r
        }
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
                    receivers: shared.ctx.live().0.len(),
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
    let (webhooks, local_sound) = ctx.live();
    let audio = match (local_sound, audio) {
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
        webhooks,
        outbox,
        capabilities: Capabilities {
            notifications: probe_notifications().await,
            audio,
            evidence: evidence(&ctx.evidence_dir, ctx.min_free_mb),
        },
        recent_errors,
        parts: ctx.parts.snapshot(),
        floor: ctx.floor.as_ref().map(|f| f.snapshot()),
        config_reload: ctx.reloader.as_ref().and_then(|r| r.last()),
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
