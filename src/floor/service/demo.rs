//! `callguard demo --floor`: a local `nats-server` (JetStream, temp dir), the floor service on
//! SQLite, and simulated workstations publishing contract events — calls with marks, levels and
//! escalations, a repeat caller with the organisation's conclusion, and one workstation that goes
//! silent. Prints the board's URL and a demo login; runs until Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use chrono::{FixedOffset, Utc};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::accounts::{self, NewUser};
use super::store::Store;
use crate::config::Config;
use crate::floor::config::FloorConfig;
use crate::floor::contract::{
    self, CallerRef, Delivery, DeliveryState, EventBody, FloorEvent, PbxState, SCHEMA,
};

/// The demo account.
pub const DEMO_USER: &str = "demo";
/// Its password.
pub const DEMO_PASSWORD: &str = "callguard-demo";
/// The repeat caller of the demo.
pub const REPEAT_CALLER: &str = "+81312345678";
const SITE: &str = "demo";
/// (agent, display name); the last one goes silent.
const AGENTS: [(&str, &str); 4] = [
    ("1001", "佐藤"),
    ("1002", "鈴木"),
    ("1003", "高橋"),
    ("1004", "伊藤"),
];
const HEARTBEAT_SECS: u64 = 5;

/// How long each part of the demo may take to come up before the demo gives up loudly.
const START_DEADLINE: Duration = Duration::from_secs(30);
/// The board's usual port; another one is taken when it is busy (unless `--listen` is given).
const DEFAULT_LISTEN: &str = "127.0.0.1:8480";

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// `nats-server` could not be started or did not listen.
    #[error("nats-server: {0}")]
    Nats(String),
    /// `nats-server` ended while the demo ran.
    #[error("nats-server exited ({status}); its last output:\n{log}")]
    NatsExited {
        /// Its exit status.
        status: String,
        /// The tail of its log.
        log: String,
    },
    /// The floor service failed to start or stopped on its own.
    #[error("the floor service {0}")]
    Floor(String),
    /// The simulated workstations could not publish.
    #[error("the simulated workstations: {0}")]
    Simulator(String),
    /// `--listen` is not an address:port.
    #[error("--listen {0:?} is not an address:port such as 127.0.0.1:8480")]
    Listen(String),
}

fn nats_server_binary() -> Result<PathBuf, DemoError> {
    let mut dirs: Vec<PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    dirs.push("/usr/sbin".into());
    dirs.push("/usr/bin".into());
    dirs.into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            DemoError::Nats(
                "not installed: run `make deps` (Debian package nats-server)".to_string(),
            )
        })
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A local `nats-server` with JetStream in `dir`, killed when dropped (and with the demo).
async fn start_nats(dir: &Path) -> Result<(Child, u16), DemoError> {
    let port = free_port().map_err(|e| DemoError::Nats(format!("no free port: {e}")))?;
    let log_path = dir.join("nats.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| DemoError::Nats(format!("{}: {e}", log_path.display())))?;
    let log2 = log
        .try_clone()
        .map_err(|e| DemoError::Nats(format!("{}: {e}", log_path.display())))?;
    let mut child = Command::new(nats_server_binary()?)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("jetstream"))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DemoError::Nats(format!("cannot start it: {e}")))?;
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(DemoError::NatsExited {
                status: status.to_string(),
                log: log_tail(&log_path),
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DemoError::Nats(format!(
                "did not listen on 127.0.0.1:{port} within {}s; its last output:\n{}",
                START_DEADLINE.as_secs(),
                log_tail(&log_path)
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((child, port))
}

/// The board's listener: on `listen` when given (the floor binds it and fails loudly when it
/// cannot), else bound here on 8480 on loopback, or on a port the system picks when 8480 is
/// taken (the URL printed is the one really bound).
async fn board_listener(
    listen: Option<&str>,
) -> Result<(String, Option<tokio::net::TcpListener>), DemoError> {
    if let Some(l) = listen {
        l.parse::<std::net::SocketAddr>()
            .map_err(|_| DemoError::Listen(l.to_string()))?;
        return Ok((l.to_string(), None));
    }
    let listener = match tokio::net::TcpListener::bind(DEFAULT_LISTEN).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| DemoError::Floor(format!("cannot listen on loopback: {e}")))?,
    };
    let addr = listener
        .local_addr()
        .map_err(|e| DemoError::Floor(format!("cannot listen on loopback: {e}")))?;
    Ok((addr.to_string(), Some(listener)))
}

/// Runs the floor demo until Ctrl-C; the board listens on `listen` (see [`board_listener`]).
/// `ready` is told the board's address once it listens (the CLI shows it). Any part that fails
/// (nats-server, the floor, the simulated workstations) ends the demo with an error instead of
/// leaving a board that never fills.
pub async fn run(
    mut cfg: Config,
    listen: Option<String>,
    ready: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("callguard-floor-demo-")
        .tempdir()?;
    let mut log = cfg.log.clone();
    if std::env::var_os("RUST_LOG").is_none() {
        log.level = "warn".into();
    }
    crate::logging::init(&log);
    let (listen, listener) = board_listener(listen.as_deref()).await?;
    let (mut nats, port) = start_nats(work.path()).await?;
    let nats_url = format!("nats://127.0.0.1:{port}");
    cfg.state.dir = work.path().join("state").display().to_string();
    // Never a real lead's chat: the demo's outage pings go nowhere.
    cfg.escalation.webhook.clear();
    cfg.floor = Some(FloorConfig {
        nats_url: nats_url.clone(),
        site: SITE.into(),
        db: format!("sqlite://{}", work.path().join("floor.db").display()),
        listen,
        teams: [(
            "demo".to_string(),
            AGENTS.iter().map(|a| a.0.to_string()).collect(),
        )]
        .into_iter()
        .collect(),
        ..FloorConfig::default()
    });
    seed(&cfg).await?;

    let stop = CancellationToken::new();
    crate::daemon::cancel_on_signals(stop.clone());
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut service = match listener {
        Some(l) => tokio::spawn(super::serve_on(cfg, l, stop.clone(), Some(ready_tx))),
        None => tokio::spawn(super::serve(cfg, stop.clone(), Some(ready_tx))),
    };
    let running = match tokio::time::timeout(START_DEADLINE, ready_rx.recv()).await {
        Ok(Some(r)) => r,
        // The service ended before it listened: its error says why (e.g. the port is taken).
        Ok(None) => {
            return Err(match (&mut service).await {
                Ok(Err(e)) => e.context("the floor service did not start"),
                Ok(Ok(())) => DemoError::Floor("stopped before it listened".into()).into(),
                Err(e) => DemoError::Floor(format!("failed: {e}")).into(),
            });
        }
        Err(_) => {
            stop.cancel();
            return Err(DemoError::Floor(format!(
                "did not listen within {}s",
                START_DEADLINE.as_secs()
            ))
            .into());
        }
    };
    ready(running.addr);

    let client = async_nats::connect(&nats_url).await?;
    let js = jetstream::new(client);
    let mut sim = tokio::spawn(simulate(js, stop.clone()));
    // Whatever ends first decides: Ctrl-C is a clean stop, anything else is a failure.
    let outcome: anyhow::Result<()> = tokio::select! {
        _ = stop.cancelled() => Ok(()),
        status = nats.wait() => {
            // Ctrl-C in a terminal reaches nats-server (same process group) as well as us: an
            // exit that comes with our own stop is the clean end, not a failure.
            let ours = tokio::time::timeout(Duration::from_secs(1), stop.cancelled()).await;
            match ours {
                Ok(()) => Ok(()),
                Err(_) => Err(DemoError::NatsExited {
                    status: status.map_or_else(|e| e.to_string(), |s| s.to_string()),
                    log: log_tail(&work.path().join("nats.log")),
                }
                .into()),
            }
        }
        r = &mut sim => match r {
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(())) => Ok(()),
            Err(e) => Err(DemoError::Simulator(format!("failed: {e}")).into()),
        },
        r = &mut service => {
            let e = match r {
                Ok(Err(e)) => e.context("the floor service stopped"),
                Ok(Ok(())) => DemoError::Floor("stopped on its own".into()).into(),
                Err(e) => DemoError::Floor(format!("failed: {e}")).into(),
            };
            return Err(e);
        }
    };
    stop.cancel();
    sim.abort();
    let stopped = match tokio::time::timeout(START_DEADLINE, service).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(DemoError::Floor(format!("failed: {e}")).into()),
        Err(_) => Err(DemoError::Floor("did not stop".into()).into()),
    };
    outcome.and(stopped)
}

/// The demo account and the repeat caller's conclusion, written before the floor starts.
async fn seed(cfg: &Config) -> anyhow::Result<()> {
    let store = Store::open(&super::db_url(cfg)).await?;
    let now_ms = Utc::now().timestamp_millis();
    accounts::add_user(
        &store,
        &NewUser {
            name: DEMO_USER.into(),
            display_name: "デモ リーダー".into(),
            teams: vec!["demo".into()],
            admin: true,
        },
        DEMO_PASSWORD,
        now_ms,
    )
    .await?;
    store
        .add_conclusion(
            REPEAT_CALLER,
            "同じ返金要求で今年 6 回目。返金には応じないことを組織として決定済み。",
            "先日お伝えしたとおり、結論は変わりません。",
            "デモ リーダー",
            now_ms - 20 * 24 * 3600 * 1000,
        )
        .await?;
    store.close().await;
    Ok(())
}

fn now() -> chrono::DateTime<FixedOffset> {
    Utc::now().fixed_offset()
}

fn new_id() -> String {
    let mut b = [0u8; 16];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

fn event(
    agent: usize,
    call: Option<(&str, &str)>,
    elapsed: u64,
    level: Option<u8>,
    body: EventBody,
) -> FloorEvent {
    let (id, name) = AGENTS[agent];
    FloorEvent {
        schema: SCHEMA.into(),
        id: new_id(),
        site: SITE.into(),
        host: format!("ws-{id}"),
        agent: id.into(),
        agent_name: name.into(),
        call_id: call.map(|c| c.0.to_string()),
        caller: CallerRef {
            caller: call.map(|c| c.1.to_string()),
            caller_hash: None,
        },
        at: now(),
        elapsed_secs: call.map(|_| elapsed),
        level,
        body,
    }
}

/// Publishes one simulated event and waits for the server's PubAck. A refusal for "no stream"
/// is tried again for a while, as a workstation's publisher does: on a loaded machine the
/// server has refused a publish right after the stream was found (with several demos at once,
/// about one run in fifty).
async fn publish(js: &jetstream::Context, ev: FloorEvent) -> Result<(), DemoError> {
    let subject = ev.subject(SITE, &ev.agent);
    let payload = bytes::Bytes::from(ev.to_json());
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    loop {
        let mut h = HeaderMap::new();
        h.insert(contract::MSG_ID_HEADER, ev.id.as_str());
        let ack = js
            .publish_with_headers(subject.clone(), h, payload.clone())
            .await
            .map_err(|e| DemoError::Simulator(format!("publish: {e}")))?
            .await;
        match ack {
            Ok(_) => return Ok(()),
            Err(e)
                if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(DemoError::Simulator(format!("no PubAck: {e}"))),
        }
    }
}

fn heartbeat(agent: usize) -> FloorEvent {
    event(
        agent,
        None,
        0,
        None,
        EventBody::Heartbeat {
            pbx_state: PbxState::Up,
            pbx_detail: String::new(),
            open_calls: 1,
            version: env!("CARGO_PKG_VERSION").into(),
            interval_secs: HEARTBEAT_SECS,
            backlog: 0,
            up_since: None,
        },
    )
}

fn mark(
    agent: usize,
    call: (&str, &str),
    elapsed: u64,
    level: u8,
    kind: &str,
    quote: &str,
) -> FloorEvent {
    event(
        agent,
        Some(call),
        elapsed,
        Some(level),
        EventBody::Mark {
            mark: kind.into(),
            quote: Some(quote.into()),
            offset_secs: elapsed,
            rules: if level >= 2 {
                vec![format!("{kind}-escalate")]
            } else {
                Vec::new()
            },
            grounds_to_end: level >= 4,
        },
    )
}

fn start(agent: usize, call: (&str, &str)) -> FloorEvent {
    event(
        agent,
        Some(call),
        0,
        None,
        EventBody::CallStart {
            direction: "inbound".into(),
            adopted: false,
        },
    )
}

fn end(agent: usize, call: (&str, &str), secs: u64) -> FloorEvent {
    event(
        agent,
        Some(call),
        secs,
        None,
        EventBody::CallEnd {
            started_at: now() - chrono::Duration::seconds(secs as i64),
            duration_secs: secs,
            cause: "normal".into(),
        },
    )
}

/// The simulated floor: heartbeats, calls with marks and escalations, the repeat caller.
async fn simulate(js: jetstream::Context, stop: CancellationToken) -> Result<(), DemoError> {
    // Wait (bounded) for the floor to make the stream.
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    while js.get_stream(contract::STREAM).await.is_err() {
        if tokio::time::Instant::now() >= deadline {
            return Err(DemoError::Simulator(format!(
                "the floor did not create the stream {} within {}s",
                contract::STREAM,
                START_DEADLINE.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = [
        ("d-1001-1", REPEAT_CALLER),
        ("d-1002-1", "+81698765432"),
        ("d-1003-1", "+81522223333"),
    ];
    // The repeat caller's earlier calls (ended).
    for n in 0..3 {
        let past = (format!("d-past-{n}"), REPEAT_CALLER);
        let c = (past.0.as_str(), past.1);
        publish(&js, start(n % 3, c)).await?;
        publish(
            &js,
            mark(n % 3, c, 300, 2, "demand", "返金しろ。今すぐだ。"),
        )
        .await?;
        publish(&js, end(n % 3, c, 900)).await?;
    }
    for (i, c) in calls.iter().enumerate() {
        publish(&js, start(i, *c)).await?;
    }
    let mut tick = 0u64;
    loop {
        for agent in 0..AGENTS.len() {
            // 1004 goes silent after 30 s.
            if agent < 3 || tick * HEARTBEAT_SECS < 30 {
                publish(&js, heartbeat(agent)).await?;
            }
        }
        let elapsed = tick * HEARTBEAT_SECS;
        match tick {
            2 => {
                publish(
                    &js,
                    mark(
                        0,
                        calls[0],
                        elapsed,
                        2,
                        "demand",
                        "返金しろって言ってるだろ",
                    ),
                )
                .await?
            }
            4 => {
                publish(
                    &js,
                    mark(1, calls[1], elapsed, 1, "abuse", "いい加減にしろ"),
                )
                .await?
            }
            6 => {
                publish(
                    &js,
                    mark(0, calls[0], elapsed, 3, "threat", "お前の家に行くからな"),
                )
                .await?
            }
            7 => {
                publish(
                    &js,
                    event(
                        0,
                        Some(calls[0]),
                        elapsed,
                        Some(3),
                        EventBody::Escalation {
                            escalation_id: new_id(),
                            reason: "manual".into(),
                            note: Some("脅迫されています".into()),
                            delivery: Delivery {
                                state: DeliveryState::NoTargets,
                                targets: 0,
                                delivered: 0,
                                error: None,
                            },
                        },
                    ),
                )
                .await?
            }
            12 => publish(&js, end(2, calls[2], elapsed)).await?,
            _ => {}
        }
        tick += 1;
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(HEARTBEAT_SECS)) => {}
        }
    }
}
