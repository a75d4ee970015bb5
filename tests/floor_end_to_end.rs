//! The whole floor tier with real parts only: the real `callguard` daemon (its PBX a loopback
//! websocket, its desktop a test notification server on a private session bus) publishes to
//! Debian's real `nats-server`, and the real `callguard floor` serves the board from SQLite, and
//! from a throwaway PostgreSQL cluster for the same story:
//! a call started at the PBX shows on the board, a lead's 「対応します」 on the board reaches the
//! agent's desktop, the call's end shows, and the organisation's conclusion recorded on the
//! caller page shows on the desktop at the caller's next call.

mod common;

use common::FakePbx;
use common::daemon::{DaemonProc, floor_workstation_config};
use common::dbus::{Notified, SessionBus, serve_notifications};
use common::floor::{Floor, PATIENCE, Session, Workstations, eventually};
use common::nats::NatsServer;
use common::postgres::PgCluster;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const AGENT: &str = "1001";
const CALLER: &str = "0312345678";

fn start(call: &str) -> Value {
    json!({"type":"call.start","call_id":call,"agent":AGENT,"caller":CALLER,
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),"direction":"inbound"})
}

fn end(call: &str) -> Value {
    json!({"type":"call.end","call_id":call,"cause":"normal"})
}

/// The board's row for PBX call `call_id` once `ready` holds for it (bounded).
async fn board_call(s: &Session, call_id: &str, what: &str, ready: fn(&Value) -> bool) -> Value {
    eventually(what, || async {
        s.board().await["calls"]
            .as_array()?
            .iter()
            .find(|c| c["call_id"] == call_id && ready(c))
            .cloned()
    })
    .await
}

/// The next desktop notification whose summary contains `needle` (bounded).
async fn desktop(notes: &mut mpsc::UnboundedReceiver<Notified>, needle: &str) -> Notified {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let n = notes.recv().await.expect("notification server open");
            if n.summary.contains(needle) {
                return n;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no desktop notification with {needle:?} within {PATIENCE:?}"))
}

/// The story, against a floor on store `db`.
async fn the_daemon_feeds_the_floor_and_the_floor_answers(db: &str) {
    let bus = SessionBus::start();
    let (_conn, mut notes) = serve_notifications(&bus, &["body"]).await;
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let floor = Floor::start(&dir.path().join("floor"), &nats.url(), db, "").await;
    floor.add_user("tanaka", "田中", &["a"], false);
    Workstations::connect(&nats.url())
        .await
        .wait_for_stream()
        .await;
    let mut pbx = FakePbx::start().await;
    let ws_dir = dir.path().join("ws");
    std::fs::create_dir_all(&ws_dir).expect("workstation dir");
    let daemon = DaemonProc::spawn(
        &floor_workstation_config(&ws_dir, AGENT, &pbx.url, &nats.url(), ""),
        ws_dir.join("daemon.log"),
        Some(&bus.address),
    );
    let mut conn = pbx.accept().await;
    let s = Session::login(&floor.url(), "tanaka").await;

    // 1. A call started at the PBX shows on the lead's board.
    conn.send(start("c-1")).await;
    let call = board_call(&s, "c-1", "the daemon's call on the board", |c| {
        c["ended_ms"].is_null()
    })
    .await;
    assert_eq!(call["agent"], AGENT, "{call}");
    assert_eq!(call["agent_name"], "佐藤", "{call}");
    let key = call["key"].as_str().expect("call key").to_string();
    let caller_key = call["caller_key"].as_str().expect("caller key").to_string();

    // 2. The lead takes it on the board: the agent's desktop says who.
    let r = s
        .post("/ack", &[("csrf", s.csrf.as_str()), ("call", &key)])
        .await;
    assert_eq!(r.status(), 303, "ack refused");
    let shown = desktop(&mut notes, "対応中").await;
    assert_eq!(shown.summary, "田中さんが対応中です", "{shown:?}");
    let board = s.board().await;
    assert!(
        board["acks"].as_array().is_some_and(|a| a
            .iter()
            .any(|x| x["call_key"] == key.as_str() && x["lead"] == "田中")),
        "the board shows who took the call: {board}"
    );

    // 3. The call's end shows.
    conn.send(end("c-1")).await;
    let ended = board_call(&s, "c-1", "the call's end on the board", |c| {
        !c["ended_ms"].is_null()
    })
    .await;
    assert_eq!(ended["key"], key.as_str());

    // 4. The organisation's conclusion, recorded on the caller page, shows on the desktop when
    //    the caller rings again.
    let r = s
        .post(
            "/caller/conclusion",
            &[
                ("csrf", s.csrf.as_str()),
                ("key", &caller_key),
                ("text", "返金には応じないことを決定済み"),
                ("phrase", "先日お伝えしたとおりです"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303, "conclusion refused");
    conn.send(start("c-2")).await;
    let history = tokio::time::timeout(PATIENCE, async {
        loop {
            let n = desktop(&mut notes, "履歴").await;
            if n.body.contains("先日お伝えしたとおりです") {
                return n;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the conclusion never reached the desktop; daemon log:\n{}\nfloor log:\n{}",
            daemon.log(),
            floor.log()
        )
    });
    assert!(
        history.body.contains("返金には応じないことを決定済み"),
        "{}",
        history.body
    );
    board_call(&s, "c-2", "the second call on the board", |c| {
        c["ended_ms"].is_null()
    })
    .await;
    conn.send(end("c-2")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_daemon_feeds_the_real_floor_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    the_daemon_feeds_the_floor_and_the_floor_answers(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_daemon_feeds_the_real_floor_on_postgresql() {
    let pg = PgCluster::start();
    let db = pg.database("floor_e2e").await;
    the_daemon_feeds_the_floor_and_the_floor_answers(&db).await;
}
