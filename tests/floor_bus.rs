//! The floor bus end to end: the real `callguard` daemon binary, a PBX on a loopback websocket,
//! Debian's real `nats-server` with JetStream (tests/common/nats.rs), and the test playing the
//! floor service (it creates the stream, reads it, sends acks, answers history and ledger-head
//! requests).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use callguard::floor::contract::{
    self, AckMessage, Conclusion, EventBody, EventKind, FloorEvent, HistoryMark, HistoryReply,
    HistoryRequest, LedgerHeadReply,
};
use common::FakePbx;
use common::daemon::DaemonProc;
use common::dbus::{SessionBus, serve_notifications};
use common::nats::NatsServer;
use futures_util::StreamExt;
use serde_json::json;

const SITE: &str = "tokyo-1";
const AGENT: &str = "1001";
/// Long enough to wait for anything the daemon does on loopback; never a sleep.
const DEADLINE: Duration = Duration::from_secs(30);

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// A workstation config: agent 1001 on site tokyo-1, evidence on, `[floor]` with `extra` keys.
fn setup(pbx_url: &str, nats_url: &str, extra: &str) -> Setup {
    setup_with(pbx_url, nats_url, extra, "")
}

/// [`setup`] with more top-level tables (`before`, e.g. webhooks) ahead of `[floor]`.
fn setup_with(pbx_url: &str, nats_url: &str, extra: &str, before: &str) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("callguard.toml");
    let text = format!(
        r#"
[pbx]
url = "{pbx_url}"

[agent]
extension = "{AGENT}"
name = "佐藤"

[prompt]
local = false

[state]
dir = "{state}"

[evidence]
dir = "{evidence}"
min_free_mb = 0

[control]
socket = "{socket}"

{before}

[floor]
nats_url = "{nats_url}"
site = "{SITE}"
{heartbeat}
{extra}
"#,
        heartbeat = if extra.contains("heartbeat") {
            ""
        } else {
            "heartbeat = \"1h\""
        },
        state = dir.path().join("state").display(),
        evidence = dir.path().join("evidence").display(),
        socket = dir.path().join("control.sock").display(),
    );
    std::fs::write(&config, text).expect("write config");
    Setup { dir, config }
}

/// The real daemon on this setup's configuration, its log in `<name>.log`.
fn spawn(s: &Setup, dbus: Option<&str>, name: &str) -> DaemonProc {
    DaemonProc::spawn(&s.config, s.dir.path().join(format!("{name}.log")), dbus)
}

/// The start then the end of calls `PREFIX-0` … `PREFIX-(n-1)`, in that order.
fn starts_and_ends(prefix: &str, n: usize) -> Vec<(EventKind, String)> {
    (0..n)
        .flat_map(|i| {
            [
                (EventKind::CallStart, format!("{prefix}-{i}")),
                (EventKind::CallEnd, format!("{prefix}-{i}")),
            ]
        })
        .collect()
}

async fn create_stream(client: &async_nats::Client) -> jetstream::stream::Stream {
    jetstream::new(client.clone())
        .create_stream(jetstream::stream::Config {
            name: contract::STREAM.into(),
            subjects: contract::stream_subjects(),
            duplicate_window: contract::DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .expect("create the stream as the floor does")
}

/// Every event in the stream so far, in stream order (acks left out).
async fn events(stream: &mut jetstream::stream::Stream) -> Vec<FloorEvent> {
    let last = stream
        .info()
        .await
        .expect("stream info")
        .state
        .last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let Ok(m) = stream.get_raw_message(seq).await else {
            continue;
        };
        if m.subject.ends_with(".ack") {
            continue;
        }
        let ev = FloorEvent::from_json(&m.payload).expect("every stored event fits the contract");
        assert_eq!(
            m.subject.as_str(),
            ev.subject(SITE, AGENT),
            "subject of {ev:?}"
        );
        let id = m
            .headers
            .get(contract::MSG_ID_HEADER)
            .map(|v| v.as_str().to_string());
        assert_eq!(id.as_deref(), Some(ev.id.as_str()), "Nats-Msg-Id");
        out.push(ev);
    }
    out
}

/// Waits (bounded) until `pick` finds what it wants in the stream's events.
async fn wait_events<T>(
    stream: &mut jetstream::stream::Stream,
    what: &str,
    mut pick: impl FnMut(&[FloorEvent]) -> Option<T>,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let evs = events(stream).await;
        if let Some(t) = pick(&evs) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; stream holds {:#?}",
            evs.iter()
                .map(|e| (e.kind(), e.call_id.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A round trip on `client`'s connection: the server has taken everything sent before (its
/// subscriptions included) when this returns; a flush only empties the client's buffer.
async fn round_trip(client: &async_nats::Client) {
    jetstream::new(client.clone())
        .get_stream(contract::STREAM)
        .await
        .expect("round trip to the server");
}

fn call_events(evs: &[FloorEvent]) -> Vec<(EventKind, String)> {
    evs.iter()
        .filter(|e| e.kind() != EventKind::Heartbeat && e.kind() != EventKind::Ledger)
        .map(|e| (e.kind(), e.call_id.clone().unwrap_or_default()))
        .collect()
}

fn start(call: &str) -> serde_json::Value {
    json!({"type":"call.start","call_id":call,"agent":AGENT,"caller":"0312345678",
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),"direction":"inbound"})
}

fn end(call: &str) -> serde_json::Value {
    json!({"type":"call.end","call_id":call,"cause":"normal"})
}

/// Events waiting in the daemon's backlog on disk.
fn pending_files(s: &Setup) -> usize {
    callguard::floor::backlog::disk_stats(&s.dir.path().join("state/floor-outbox"), u64::MAX).events
        as usize
}

/// Call events (starts and ends) in the backlog's log on disk: what a `kill -9` cannot take.
fn call_events_on_disk(s: &Setup) -> usize {
    let log = s.dir.path().join("state/floor-outbox/log");
    let Ok(rd) = std::fs::read_dir(log) else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| matches!(v["kind"].as_str(), Some("call.start" | "call.end")))
                .count()
        })
        .sum()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_events_reach_the_stream_in_order_with_their_ids() {
    let nats = NatsServer::start().await;
    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor connects");
    let mut stream = create_stream(&floor).await;
    let mut pbx = FakePbx::start().await;
    let s = setup(&pbx.url, &nats.url(), "");
    let d = spawn(&s, None, "run");
    let mut conn = pbx.accept().await;
    conn.send(start("c-1")).await;
    conn.send(end("c-1")).await;

    let evs = wait_events(&mut stream, "call.start and call.end", |evs| {
        let calls = call_events(evs);
        (calls.len() >= 2).then(|| evs.to_vec())
    })
    .await;
    assert_eq!(
        call_events(&evs),
        vec![
            (EventKind::CallStart, "c-1".to_string()),
            (EventKind::CallEnd, "c-1".to_string())
        ]
    );
    let first = evs
        .iter()
        .find(|e| e.kind() == EventKind::CallStart)
        .expect("call.start");
    assert_eq!(first.site, SITE);
    assert_eq!(first.agent, AGENT);
    assert_eq!(first.agent_name, "佐藤");
    assert_eq!(first.caller.caller.as_deref(), Some("0312345678"));
    let hb = evs
        .iter()
        .find(|e| e.kind() == EventKind::Heartbeat)
        .expect("a heartbeat at start");
    match &hb.body {
        EventBody::Heartbeat {
            version,
            interval_secs,
            ..
        } => {
            assert_eq!(version, env!("CARGO_PKG_VERSION"));
            assert_eq!(*interval_secs, 3600);
        }
        other => panic!("{other:?}"),
    }
    // The floor works on a thread of its own, beside the daemon's runtime.
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", d.child.id()))
        .expect("the daemon's threads")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect();
    assert!(
        threads.iter().any(|t| t == "callguard-floor"),
        "the daemon's threads: {threads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_outage_loses_nothing_and_repeats_nothing() {
    let mut nats = NatsServer::start().await;
    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor connects");
    create_stream(&floor).await;
    drop(floor);
    let mut pbx = FakePbx::start().await;
    let s = setup(&pbx.url, &nats.url(), "");
    let d = spawn(&s, None, "run");
    let mut conn = pbx.accept().await;

    nats.kill();
    for i in 0..5 {
        conn.send(start(&format!("c-{i}"))).await;
        conn.send(end(&format!("c-{i}"))).await;
    }
    // All ten call events wait on disk while the server is away.
    wait_until("ten call events in the backlog on disk", || {
        call_events_on_disk(&s) >= 10
    })
    .await;
    nats.restart().await;

    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor reconnects");
    let mut stream = jetstream::new(floor)
        .get_stream(contract::STREAM)
        .await
        .expect("the stream survived");
    let evs = wait_events(&mut stream, "ten call events after the outage", |evs| {
        (call_events(evs).len() >= 10).then(|| evs.to_vec())
    })
    .await;
    let want = starts_and_ends("c", 5);
    assert_eq!(call_events(&evs), want, "once each, in order");
    let mut ids: Vec<&str> = evs.iter().map(|e| e.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), evs.len(), "no event twice");
    wait_until("an empty backlog", || pending_files(&s) == 0).await;
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_a_backlog_and_no_stream_loses_nothing() {
    let nats = NatsServer::start().await;
    let mut pbx = FakePbx::start().await;
    let s = setup(&pbx.url, &nats.url(), "");
    // No stream yet: the daemon keeps its events queued and says so.
    let mut d = spawn(&s, None, "run1");
    let mut conn = pbx.accept().await;
    for i in 0..3 {
        conn.send(start(&format!("k-{i}"))).await;
        conn.send(end(&format!("k-{i}"))).await;
    }
    // On disk, not only queued: a group commit not done yet is what a `kill -9` may take.
    wait_until("six call events in the backlog on disk", || {
        call_events_on_disk(&s) >= 6
    })
    .await;
    let status = common::status_until(&s.config, |v| {
        v["floor"]["stream"] == "missing" && v["floor"]["backlog"]["events"].as_u64() >= Some(6)
    })
    .await;
    assert_eq!(status["floor"]["connected"], true, "{status}");
    wait_until("the missing stream said once in the log", || {
        d.log().matches("no CALLGUARD stream").count() == 1
    })
    .await;
    d.kill_9();
    drop(conn);

    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor connects");
    let mut stream = create_stream(&floor).await;
    let _d2 = spawn(&s, None, "run2");
    let _conn = pbx.accept().await;
    let evs = wait_events(&mut stream, "the six events of before the kill", |evs| {
        (call_events(evs).len() >= 6).then(|| evs.to_vec())
    })
    .await;
    let want = starts_and_ends("k", 3);
    assert_eq!(call_events(&evs), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leads_ack_shows_on_the_desktop_and_in_status() {
    let bus = SessionBus::start();
    let (_conn, mut notes) = serve_notifications(&bus, &["body"]).await;
    let nats = NatsServer::start().await;
    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor connects");
    let mut stream = create_stream(&floor).await;
    let mut pbx = FakePbx::start().await;
    let s = setup(&pbx.url, &nats.url(), "show_history = false");
    let _d = spawn(&s, Some(&bus.address), "run");
    let mut conn = pbx.accept().await;
    conn.send(start("c-ack")).await;
    wait_events(&mut stream, "call.start", |evs| {
        evs.iter()
            .any(|e| e.kind() == EventKind::CallStart)
            .then_some(())
    })
    .await;
    // A mark makes the call an incident with a record.
    let (code, _, err) = common::cli(&s.config, &["mark", "abuse"]).await;
    assert_eq!(code, 0, "{err}");

    let ack = AckMessage {
        schema: contract::SCHEMA.into(),
        id: "ack-1".into(),
        call_id: "c-ack".into(),
        lead: "田中".into(),
        at: chrono::Local::now().fixed_offset(),
        escalation_id: None,
    };
    floor
        .publish(contract::ack_subject(SITE, AGENT), ack.to_json().into())
        .await
        .expect("send the ack");
    let shown = tokio::time::timeout(DEADLINE, async {
        loop {
            let n = notes.recv().await.expect("notification server open");
            if n.summary.contains("対応中") {
                return n;
            }
        }
    })
    .await
    .expect("the ack reached the desktop");
    assert_eq!(shown.summary, "田中さんが対応中です");
    let status = common::status_until(&s.config, |v| !v["floor"]["last_ack"].is_null()).await;
    assert_eq!(status["floor"]["last_ack"]["lead"], "田中");
    assert_eq!(status["floor"]["last_ack"]["call_id"], "c-ack");
    assert_eq!(status["floor"]["last_ack"]["current"], true);

    // Recorded in the call's incident record (who, when).
    conn.send(end("c-ack")).await;
    let evidence = s.dir.path().join("evidence");
    wait_until("the incident record with the lead's ack", || {
        find_text(&evidence, "incident.md").is_some_and(|t| t.contains("田中"))
    })
    .await;
}

fn find_text(root: &Path, name: &str) -> Option<String> {
    for e in std::fs::read_dir(root).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return std::fs::read_to_string(p).ok();
        }
        if p.is_dir()
            && let Some(t) = find_text(&p, name)
        {
            return Some(t);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_caller_is_shown_at_call_start_and_a_silent_floor_delays_nothing() {
    let bus = SessionBus::start();
    let (_conn, mut notes) = serve_notifications(&bus, &["body"]).await;
    let nats = NatsServer::start().await;
    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor connects");
    let mut stream = create_stream(&floor).await;
    let mut requests = floor
        .subscribe(contract::history_subject(SITE))
        .await
        .expect("answer history requests");
    round_trip(&floor).await;
    let mut pbx = FakePbx::start().await;
    // The longest history wait there is: if call start waited for it, the test would see it.
    let s = setup(&pbx.url, &nats.url(), "history_timeout = \"10s\"");
    let _d = spawn(&s, Some(&bus.address), "run");
    let mut conn = pbx.accept().await;

    // 1. The floor holds the first request unanswered: call.start still reaches the stream,
    //    so nothing about the call start waited for the floor.
    conn.send(start("c-slow")).await;
    let held = tokio::time::timeout(DEADLINE, requests.next())
        .await
        .expect("a history request at call start")
        .expect("subscription open");
    let req = HistoryRequest::from_json(&held.payload).expect("request fits the contract");
    assert_eq!(req.caller.caller.as_deref(), Some("0312345678"));
    assert_eq!(req.call_id.as_deref(), Some("c-slow"));
    wait_events(&mut stream, "call.start while the floor is silent", |evs| {
        evs.iter()
            .any(|e| e.kind() == EventKind::CallStart)
            .then_some(())
    })
    .await;
    conn.send(end("c-slow")).await;

    // 2. The next call's request is answered: the agent sees the history.
    conn.send(start("c-known")).await;
    let msg = tokio::time::timeout(DEADLINE, async {
        loop {
            let m = requests.next().await.expect("subscription open");
            let r = HistoryRequest::from_json(&m.payload).expect("request");
            if r.call_id.as_deref() == Some("c-known") {
                return m;
            }
        }
    })
    .await
    .expect("the second request");
    let at = chrono::Local::now().fixed_offset();
    let reply = HistoryReply {
        schema: contract::SCHEMA.into(),
        known: true,
        calls_30d: 4,
        calls_365d: 52,
        highest_level: Some(4),
        last_call_at: Some(at),
        last_marks: vec![HistoryMark {
            mark: "demand".into(),
            quote: Some("社長を出せ".into()),
            at,
        }],
        conclusion: Some(Conclusion {
            text: "返金には応じない（2026年10月 書面回答済み）".into(),
            phrase: "先日書面でご回答したとおりです".into(),
            by: "田中".into(),
            at,
            version: 2,
        }),
    };
    floor
        .publish(
            msg.reply.clone().expect("a reply subject"),
            reply.to_json().into(),
        )
        .await
        .expect("reply");
    let shown = tokio::time::timeout(DEADLINE, async {
        loop {
            let n = notes.recv().await.expect("notification server open");
            if n.summary.contains("履歴") {
                return n;
            }
        }
    })
    .await
    .expect("the history reached the desktop");
    for want in [
        "30日 4件",
        "365日 52件",
        "最高レベル 4",
        "社長を出せ",
        "返金には応じない",
        "先日書面でご回答したとおりです",
        callguard::alerts::text::NOTICE_PHRASE_JA,
    ] {
        assert!(
            shown.body.contains(want),
            "missing {want} in {}",
            shown.body
        );
    }
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_caller_ids_never_put_the_number_on_the_bus() {
    let nats = NatsServer::start().await;
    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor connects");
    let mut stream = create_stream(&floor).await;
    let mut requests = floor
        .subscribe(contract::history_subject(SITE))
        .await
        .expect("history requests");
    round_trip(&floor).await;
    let mut pbx = FakePbx::start().await;
    let key_dir = tempfile::tempdir().expect("key dir");
    let key = key_dir.path().join("caller.key");
    std::fs::write(&key, "a-site-key-of-32-bytes-0123456789\n").expect("key");
    let s = setup(
        &pbx.url,
        &nats.url(),
        &format!(
            "caller_id = \"hashed\"\ncaller_key_file = \"{}\"",
            key.display()
        ),
    );
    let _d = spawn(&s, None, "run");
    let mut conn = pbx.accept().await;
    conn.send(start("c-h")).await;
    conn.send(end("c-h")).await;
    let req = tokio::time::timeout(DEADLINE, requests.next())
        .await
        .expect("history request")
        .expect("open");
    let text = String::from_utf8_lossy(&req.payload).to_string();
    assert!(!text.contains("312345678"), "{text}");
    let want = contract::caller_hash(
        b"a-site-key-of-32-bytes-0123456789",
        &contract::e164("0312345678", "81"),
    );
    assert!(text.contains(&want), "{text}");
    wait_events(&mut stream, "call.end", |evs| {
        evs.iter()
            .any(|e| e.kind() == EventKind::CallEnd)
            .then_some(())
    })
    .await;
    let last = stream.info().await.expect("info").state.last_sequence;
    for seq in 1..=last {
        let m = stream.get_raw_message(seq).await.expect("message");
        let body = String::from_utf8_lossy(&m.payload);
        assert!(!body.contains("312345678"), "raw number on the bus: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_lines_are_anchored_and_verify_against_floor_catches_a_lost_tail() {
    let nats = NatsServer::start().await;
    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor connects");
    let mut stream = create_stream(&floor).await;
    let mut pbx = FakePbx::start().await;
    let s = setup(&pbx.url, &nats.url(), "show_history = false");
    let mut d = spawn(&s, None, "run");
    let mut conn = pbx.accept().await;
    conn.send(start("c-l")).await;
    conn.send(end("c-l")).await;
    let (seq, line_sha) = wait_events(&mut stream, "the sealed call's ledger line", |evs| {
        evs.iter().find_map(|e| match &e.body {
            EventBody::Ledger {
                seq, line_sha256, ..
            } => Some((*seq, line_sha256.clone())),
            _ => None,
        })
    })
    .await;
    assert_eq!(seq, 1);
    d.stop();

    // The floor answers the ledger-head request: first with what it saw (ok), then with one
    // line more than the workstation has (its tail was lost).
    let mut heads = floor
        .subscribe(contract::ledger_head_subject(SITE))
        .await
        .expect("ledger head requests");
    round_trip(&floor).await;
    for (floor_seq, want_code, want_text) in [(1u64, 0, "matches"), (2, 1, "shorter")] {
        let answer = LedgerHeadReply {
            schema: contract::SCHEMA.into(),
            known: true,
            seq: Some(floor_seq),
            line_sha256: Some(line_sha.clone()),
            manifest_sha256: None,
            received_at: None,
        };
        let floor2 = floor.clone();
        let responder = async {
            let m = heads.next().await.expect("a ledger-head request");
            floor2
                .publish(
                    m.reply.clone().expect("reply subject"),
                    answer.to_json().into(),
                )
                .await
                .expect("answer");
            floor2.flush().await.expect("flush");
        };
        let verify = common::cli(&s.config, &["verify", "--against-floor"]);
        let ((code, out, err), ()) = tokio::join!(verify, responder);
        assert_eq!(code, want_code, "stdout: {out}\nstderr: {err}");
        assert!(
            out.contains(want_text) || err.contains(want_text),
            "stdout: {out}\nstderr: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_is_published_then_its_delivered_ping() {
    let nats = NatsServer::start().await;
    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor connects");
    let mut stream = create_stream(&floor).await;
    let mut hook = common::http::Receiver::start(vec![common::http::reply(200)]).await;
    let mut pbx = FakePbx::start().await;
    let s = setup_with(
        &pbx.url,
        &nats.url(),
        "show_history = false\nheartbeat = \"1s\"",
        &format!("[[escalation.webhook]]\nurl = \"{}\"\n", hook.url("/lead")),
    );
    let _d = spawn(&s, None, "run");
    let mut conn = pbx.accept().await;
    conn.send(start("c-esc")).await;
    wait_events(&mut stream, "call.start", |evs| {
        evs.iter()
            .any(|e| e.kind() == EventKind::CallStart)
            .then_some(())
    })
    .await;
    let (code, _, err) = common::cli(&s.config, &["escalate"]).await;
    assert_eq!(code, 0, "{err}");
    let _ = tokio::time::timeout(DEADLINE, hook.next())
        .await
        .expect("the lead's webhook got the ping");
    let states = wait_events(&mut stream, "the ping's delivered state", |evs| {
        let states: Vec<contract::DeliveryState> = evs
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Escalation { delivery, .. } => Some(delivery.state),
                _ => None,
            })
            .collect();
        states
            .contains(&contract::DeliveryState::Delivered)
            .then_some(states)
    })
    .await;
    assert_eq!(
        states.first(),
        Some(&contract::DeliveryState::Queued),
        "first the escalation as asked: {states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_backlog_drains_it_then_exits_0_and_nothing_comes_twice() {
    let nats = NatsServer::start().await;
    let mut pbx = FakePbx::start().await;
    let s = setup(&pbx.url, &nats.url(), "");
    // No stream yet: the events pile up on disk and the publisher backs off.
    let mut d = spawn(&s, None, "run1");
    let mut conn = pbx.accept().await;
    for i in 0..50 {
        conn.send(start(&format!("t-{i}"))).await;
        conn.send(end(&format!("t-{i}"))).await;
    }
    wait_until("a hundred call events in the backlog", || {
        pending_files(&s) >= 100
    })
    .await;
    common::status_until(&s.config, |v| v["floor"]["stream"] == "missing").await;

    // The floor comes up, and the daemon is told to stop at once: it drains before it exits.
    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor connects");
    let mut stream = create_stream(&floor).await;
    let status = d.terminate(DEADLINE).await;
    assert!(status.success(), "exit {status:?}; log:\n{}", d.log());
    assert_eq!(
        pending_files(&s),
        0,
        "backlog emptied before the exit; log:\n{}",
        d.log()
    );
    let want = starts_and_ends("t", 50);
    let evs = events(&mut stream).await;
    assert_eq!(call_events(&evs), want, "each once, in order");
    drop(conn);

    // The next start sends nothing again: only its own start-up heartbeat arrives.
    let before = evs.len();
    let _d2 = spawn(&s, None, "run2");
    let _conn = pbx.accept().await;
    wait_events(&mut stream, "the second run's heartbeat", |evs| {
        (evs.len() > before).then_some(())
    })
    .await;
    round_trip(&floor).await;
    let evs = events(&mut stream).await;
    assert_eq!(
        call_events(&evs),
        want,
        "nothing sent twice after the restart"
    );
}

/// The publisher on its own: while there is no stream the server refuses every event of a
/// round ("no responders"), and the publisher reads the first refusal and backs off; the others
/// are still on their way when the stream appears and the stop comes. The drain sends the same
/// events again and must never take one of those refusals for the answer to its own send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_never_takes_an_earlier_rounds_refusal_for_its_own() {
    use callguard::floor::backlog::Backlog;
    use callguard::floor::link::{ConnectMode, Link};
    use callguard::floor::state::{FloorState, StreamState};
    use std::sync::Arc;

    const N: usize = 200;
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let backlog = Arc::new(Backlog::open(dir.path().join("outbox"), 64 << 20).expect("backlog"));
    for i in 0..N {
        let ev = FloorEvent {
            schema: contract::SCHEMA.into(),
            id: format!("round-{i}"),
            site: SITE.into(),
            host: "ws".into(),
            agent: AGENT.into(),
            agent_name: String::new(),
            call_id: Some(format!("r-{i}")),
            caller: Default::default(),
            at: chrono::Local::now().fixed_offset(),
            elapsed_secs: None,
            level: None,
            body: EventBody::CallStart {
                direction: "inbound".into(),
                adopted: false,
            },
        };
        backlog
            .push(contract::event_subject(SITE, AGENT, ev.kind()), ev)
            .expect("queued");
    }
    wait_until("every event on disk", || backlog.front().is_some()).await;
    let cfg = callguard::floor::config::FloorConfig {
        nats_url: nats.url(),
        site: SITE.into(),
        ..Default::default()
    };
    let link = Link::connect(&cfg, AGENT, "ws", ConnectMode::Once)
        .await
        .expect("connects");
    let state = Arc::new(FloorState::new(SITE, AGENT, &nats.url()));
    let stop = tokio_util::sync::CancellationToken::new();
    let publisher = tokio::spawn(callguard::floor::publisher::run(
        backlog.clone(),
        link,
        state.clone(),
        stop.clone(),
    ));
    // The first refusal read: the publisher now backs off (at least 100 ms) with the rest of
    // the round's refusals unread.
    let deadline = Instant::now() + DEADLINE;
    while state.stream() != StreamState::Missing {
        assert!(
            Instant::now() < deadline,
            "the publisher never found the stream missing"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor connects");
    let mut stream = create_stream(&floor).await;
    stop.cancel();
    publisher.await.expect("the publisher ends");
    assert_eq!(
        backlog.stats().events,
        0,
        "the drain took the whole backlog"
    );
    let ids: Vec<String> = events(&mut stream)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    let want: Vec<String> = (0..N).map(|i| format!("round-{i}")).collect();
    assert_eq!(ids, want, "each once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_server_down_exits_0_and_the_backlog_goes_after_restart_once() {
    let mut nats = NatsServer::start().await;
    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor connects");
    create_stream(&floor).await;
    drop(floor);
    let mut pbx = FakePbx::start().await;
    let s = setup(&pbx.url, &nats.url(), "");
    let mut d = spawn(&s, None, "run1");
    let mut conn = pbx.accept().await;
    nats.kill();
    for i in 0..5 {
        conn.send(start(&format!("u-{i}"))).await;
        conn.send(end(&format!("u-{i}"))).await;
    }
    wait_until("ten call events in the backlog on disk", || {
        call_events_on_disk(&s) >= 10
    })
    .await;
    let status = d.terminate(DEADLINE).await;
    assert!(status.success(), "exit {status:?}; log:\n{}", d.log());
    assert!(call_events_on_disk(&s) >= 10, "the backlog stays on disk");
    drop(conn);

    nats.restart().await;
    let floor = async_nats::connect(nats.url())
        .await
        .expect("floor reconnects");
    let mut stream = jetstream::new(floor)
        .get_stream(contract::STREAM)
        .await
        .expect("the stream survived");
    let _d2 = spawn(&s, None, "run2");
    let _conn = pbx.accept().await;
    let evs = wait_events(&mut stream, "the ten events of before the stop", |evs| {
        (call_events(evs).len() >= 10).then(|| evs.to_vec())
    })
    .await;
    let want = starts_and_ends("u", 5);
    assert_eq!(call_events(&evs), want, "once each, in order");
    wait_until("an empty backlog", || pending_files(&s) == 0).await;
}
