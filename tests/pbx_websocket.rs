//! The real daemon against a PBX played by a websocket server on 127.0.0.1:0 (protocol v1).
//! Real time with a compressed ladder (`time_scale`), since sockets and paused time do not mix.

mod common;

use std::time::Duration;

use callguard::calls::Command;
use callguard::config::WarningKind;
use callguard::daemon::RunOptions;
use callguard::events::Report;
use common::{FakePbx, TestRun, start_daemon, test_config};
use serde_json::json;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

/// 15 minutes of call time in 1.5 s.
const SCALE: f64 = 600.0;

fn opts() -> RunOptions {
    TestRun::headless().time_scale(SCALE).opts()
}

fn start_frame(id: &str) -> serde_json::Value {
    json!({"type":"call.start","call_id":id,"at":chrono::Local::now().fixed_offset().to_rfc3339(),
           "agent":"1001","caller":"0312345678","direction":"inbound"})
}

async fn status(d: &common::RunningDaemon) -> callguard::calls::TrackerStatus {
    let (tx, rx) = oneshot::channel();
    d.commands.send(Command::Status(tx)).await.unwrap();
    rx.await.unwrap()
}

#[tokio::test]
async fn a_call_gets_its_notice_warnings_and_end_over_a_real_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut d = start_daemon(test_config(dir.path(), &pbx.url), opts());
    let mut conn = pbx.accept().await;
    d.next(|r| matches!(r, Report::Connected(_)).then_some(()))
        .await;

    conn.send(start_frame("c-42")).await;
    let call = d
        .next(|r| match r {
            Report::CallStarted(c) => Some(c.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        (
            call.call_id.as_str(),
            call.agent.as_str(),
            call.caller.as_str()
        ),
        ("c-42", "1001", "0312345678")
    );
    // prompt.local = false in tests: the sink says why no notice was played.
    let notice = d
        .next(|r| match r {
            Report::Sound {
                what: "notice",
                outcome,
                ..
            } => Some(outcome.clone()),
            _ => None,
        })
        .await;
    assert!(notice.unwrap_err().contains("prompt.local"));

    let w1 = d
        .next(|r| match r {
            Report::WarningDue { warning, .. } => Some(warning.clone()),
            _ => None,
        })
        .await;
    assert_eq!(w1.kind, WarningKind::Escalate);
    assert!(w1.elapsed >= Duration::from_secs(900) && !w1.late, "{w1:?}");
    let w2 = d
        .next(|r| match r {
            Report::WarningDue { warning, .. } => Some(warning.clone()),
            _ => None,
        })
        .await;
    assert_eq!(w2.kind, WarningKind::Terminate);
    assert!(
        w2.elapsed >= Duration::from_secs(1800) && !w2.late,
        "{w2:?}"
    );

    conn.send(json!({"type":"call.end","call_id":"c-42","cause":"normal"}))
        .await;
    let (cause, duration) = d
        .next(|r| match r {
            Report::CallEnded {
                cause, duration, ..
            } => Some((cause.clone(), *duration)),
            _ => None,
        })
        .await;
    assert_eq!(cause, "normal");
    assert!(duration >= Duration::from_secs(1800));
    d.stop().await;
}

#[tokio::test]
async fn reconnect_mid_call_with_snapshot_gives_no_second_notice_and_each_warning_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut d = start_daemon(test_config(dir.path(), &pbx.url), opts());
    let mut conn = pbx.accept().await;
    let start = start_frame("c-7");
    conn.send(start.clone()).await;
    d.next(|r| matches!(r, Report::CallStarted(_)).then_some(()))
        .await;

    // The PBX crashes mid-call; the daemon reconnects (first retry after 0.5 s).
    conn.drop_hard();
    d.next(|r| matches!(r, Report::Disconnected(_)).then_some(()))
        .await;
    let mut conn = pbx.accept().await;
    d.next(|r| matches!(r, Report::Connected(_)).then_some(()))
        .await;
    conn.send(json!({"type":"calls.snapshot","calls":[{
        "call_id":"c-7","at":start["at"],"agent":"1001","caller":"0312345678"}]}))
        .await;
    conn.send(start).await; // a PBX that also repeats the start

    let mut notices = 0;
    let mut warnings = Vec::new();
    let mut starts = 0;
    while warnings.len() < 2 {
        match d.next(|r| Some(r.clone())).await {
            Report::CallStarted(_) => starts += 1,
            Report::Sound { what: "notice", .. } => notices += 1,
            Report::WarningDue { warning, .. } => {
                assert!(
                    !warning.late && warning.elapsed >= warning.after,
                    "{warning:?}"
                );
                warnings.push(warning.kind);
            }
            _ => {}
        }
    }
    assert_eq!(
        (starts, notices),
        (0, 0),
        "the call was started again after the reconnect"
    );
    assert_eq!(warnings, [WarningKind::Escalate, WarningKind::Terminate]);
    conn.send(json!({"type":"call.end","call_id":"c-7"})).await;
    d.next(|r| matches!(r, Report::CallEnded { .. }).then_some(()))
        .await;
    d.stop().await;
}

#[tokio::test]
async fn bad_frames_are_survived_and_counted_on_the_same_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut d = start_daemon(test_config(dir.path(), &pbx.url), opts());
    let mut conn = pbx.accept().await;
    d.next(|r| matches!(r, Report::Connected(_)).then_some(()))
        .await;

    conn.send_text("{not json".into()).await; // 1
    conn.send(json!({"type":"call.transfer","call_id":"x"}))
        .await; // unknown type: ignored
    conn.send(json!({"type":"call.start","agent":"1001"})).await; // 2: no call_id
    let big = format!(
        r#"{{"type":"call.start","call_id":"big","pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    conn.send_text(big).await; // 3: over 1 MiB
    conn.send_message(Message::Binary(vec![0xff, 0x00, 0x13, 0x37].into()))
        .await; // 4
    conn.send(json!({"type":"call.end","call_id":"never-started"}))
        .await; // ignored
    conn.send(start_frame("dup")).await;
    conn.send(start_frame("dup")).await; // duplicate: no-op
    conn.send(json!({"type":"call.end","call_id":"dup"})).await;
    conn.send(json!({"type":"call.end","call_id":"dup"})).await; // idempotent

    let mut starts = 0;
    let mut ends = 0;
    loop {
        match d.next(|r| Some(r.clone())).await {
            Report::CallStarted(c) => {
                assert_eq!(c.call_id, "dup");
                starts += 1;
            }
            Report::CallEnded { .. } => {
                ends += 1;
                break;
            }
            Report::Disconnected(why) => panic!("a bad frame cost the connection: {why}"),
            _ => {}
        }
    }
    let st = status(&d).await;
    assert_eq!((starts, ends), (1, 1));
    assert_eq!(st.bad_frames, 4, "{st:?}");
    assert_eq!(st.pbx, "connected");
    assert!(st.calls.is_empty());
    // And the connection still carries calls.
    conn.send(start_frame("after")).await;
    let c = d
        .next(|r| match r {
            Report::CallStarted(c) => Some(c.call_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(c, "after");
    d.stop().await;
}

#[tokio::test]
async fn agent_mode_follows_only_that_agents_calls() {
    let dir = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(dir.path(), &pbx.url);
    cfg.agent.extension = "1002".into();
    let mut d = start_daemon(cfg, opts());
    let mut conn = pbx.accept().await;
    conn.send(start_frame("for-1001")).await;
    let mut other = start_frame("for-1002");
    other["agent"] = json!("1002");
    conn.send(other).await;
    let c = d
        .next(|r| match r {
            Report::CallStarted(c) => Some(c.call_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(c, "for-1002");
    let st = status(&d).await;
    assert_eq!(st.calls.len(), 1);
    d.stop().await;
}

#[tokio::test]
async fn shutdown_is_clean_while_the_pbx_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut d = start_daemon(
        test_config(dir.path(), &format!("ws://127.0.0.1:{port}/")),
        opts(),
    );
    let why = d
        .next(|r| match r {
            Report::Disconnected(w) => Some(w.clone()),
            _ => None,
        })
        .await;
    assert!(why.contains("cannot connect"), "{why}");
    tokio::time::timeout(Duration::from_secs(10), d.stop())
        .await
        .expect("shutdown hung");
}

/// Many failed attempts, one state change: the connector reports "down" once, not per attempt.
#[tokio::test(start_paused = true)]
async fn an_unreachable_pbx_is_reported_once_not_per_attempt() {
    use callguard::events::PbxEvent;
    use callguard::pbx::generic::{self, Options};
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let opts = Options {
        url: format!("ws://127.0.0.1:{port}/"),
        username: String::new(),
        password: None,
        ca_file: String::new(),
    };
    let task = tokio::spawn(generic::run(opts, tx, shutdown.clone()));
    // Ten minutes of backoff: 0.5 + 1 + 2 + … capped at 30 s is about two dozen attempts.
    tokio::time::sleep(Duration::from_secs(600)).await;
    shutdown.cancel();
    task.await.unwrap();
    let mut downs = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        if let PbxEvent::Disconnected { retry_in, .. } = ev {
            downs.push(retry_in);
        }
    }
    assert_eq!(
        downs,
        [Duration::from_millis(500)],
        "one report, at the first failure"
    );
}

/// A second daemon on the same data and evidence folders refuses to start, saying why.
#[tokio::test]
async fn a_second_daemon_on_the_same_folders_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut first = start_daemon(test_config(dir.path(), &pbx.url), opts());
    let _conn = pbx.accept().await;
    first
        .next(|r| matches!(r, Report::Connected(_)).then_some(()))
        .await;
    let second = start_daemon(test_config(dir.path(), &pbx.url), opts());
    let err = second.handle.await.unwrap().unwrap_err().to_string();
    assert!(
        err.contains("another callguard is already running"),
        "{err}"
    );
    first.stop().await;
}
