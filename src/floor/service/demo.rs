//! `callguard demo --floor`: a local `nats-server` (JetStream, temp dir), the floor service on
//! SQLite, and simulated workstations publishing contract events — calls with marks, levels and
//! escalations, a repeat caller with the organisation's conclusion, and one workstation that goes
//! silent. Prints the board's URL and a demo login; runs until Ctrl-C.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::HeaderMap;
use async_nats::jetstream;
use chrono::{FixedOffset, Utc};
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

struct NatsChild(Child);

impl Drop for NatsChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nats_server_binary() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    dirs.push("/usr/sbin".into());
    dirs.push("/usr/bin".into());
    dirs.into_iter()
        .map(|d| d.join("nats-server"))
        .find(|p| p.exists())
        .context("nats-server is not installed: run `make deps` (Debian package nats-server)")
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn start_nats(dir: &std::path::Path) -> anyhow::Result<(NatsChild, u16)> {
    let port = free_port()?;
    let child = Command::new(nats_server_binary()?)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("jetstream"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start nats-server")?;
    let child = NatsChild(child);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "nats-server did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((child, port))
}

/// Runs the floor demo until Ctrl-C.
pub async fn run(mut cfg: Config) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("callguard-floor-demo-")
        .tempdir()?;
    let mut log = cfg.log.clone();
    if std::env::var_os("RUST_LOG").is_none() {
        log.level = "warn".into();
    }
    crate::logging::init(&log);
    let (_nats, port) = start_nats(work.path()).await?;
    let nats_url = format!("nats://127.0.0.1:{port}");
    cfg.state.dir = work.path().join("state").display().to_string();
    // Never a real lead's chat: the demo's outage pings go nowhere.
    cfg.escalation.webhook.clear();
    let listen_port = if std::net::TcpListener::bind("127.0.0.1:8480").is_ok() {
        8480
    } else {
        free_port()?
    };
    cfg.floor = Some(FloorConfig {
        nats_url: nats_url.clone(),
        site: SITE.into(),
        db: format!("sqlite://{}", work.path().join("floor.db").display()),
        listen: format!("127.0.0.1:{listen_port}"),
        teams: [(
            "demo".to_string(),
            AGENTS.iter().map(|a| a.0.to_string()).collect(),
        )]
        .into_iter()
        .collect(),
        ..FloorConfig::default()
    });
    let store = Store::open(&super::db_url(&cfg)).await?;
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

    let stop = CancellationToken::new();
    crate::daemon::cancel_on_signals(stop.clone());
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let service = tokio::spawn(super::serve(cfg, stop.clone(), Some(ready_tx)));
    let running = ready_rx
        .recv()
        .await
        .context("the floor service did not start")?;
    println!("callguard floor demo");
    println!("  board:    http://{}/", running.addr);
    println!("  login:    {DEMO_USER} / {DEMO_PASSWORD}");
    println!("  workstations 1001–1004 are simulated; 1004 goes silent after 30 s.");
    println!("  Ctrl-C to stop.");

    let client = async_nats::connect(&nats_url).await?;
    let js = jetstream::new(client);
    let sim = tokio::spawn(simulate(js, stop.clone()));
    stop.cancelled().await;
    sim.abort();
    service.await??;
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

async fn publish(js: &jetstream::Context, ev: FloorEvent) {
    let mut h = HeaderMap::new();
    h.insert(contract::MSG_ID_HEADER, ev.id.as_str());
    let subject = ev.subject(SITE, &ev.agent);
    if let Ok(ack) = js
        .publish_with_headers(subject, h, ev.to_json().into())
        .await
    {
        let _ = ack.await;
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
async fn simulate(js: jetstream::Context, stop: CancellationToken) {
    // Wait for the floor to make the stream.
    while js.get_stream(contract::STREAM).await.is_err() {
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
        publish(&js, start(n % 3, c)).await;
        publish(
            &js,
            mark(n % 3, c, 300, 2, "demand", "返金しろ。今すぐだ。"),
        )
        .await;
        publish(&js, end(n % 3, c, 900)).await;
    }
    for (i, c) in calls.iter().enumerate() {
        publish(&js, start(i, *c)).await;
    }
    let mut tick = 0u64;
    loop {
        for agent in 0..AGENTS.len() {
            // 1004 goes silent after 30 s.
            if agent < 3 || tick * HEARTBEAT_SECS < 30 {
                publish(&js, heartbeat(agent)).await;
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
                .await
            }
            4 => {
                publish(
                    &js,
                    mark(1, calls[1], elapsed, 1, "abuse", "いい加減にしろ"),
                )
                .await
            }
            6 => {
                publish(
                    &js,
                    mark(0, calls[0], elapsed, 3, "threat", "お前の家に行くからな"),
                )
                .await
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
                .await
            }
            12 => publish(&js, end(2, calls[2], elapsed)).await,
            _ => {}
        }
        tick += 1;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(HEARTBEAT_SECS)) => {}
        }
    }
}
