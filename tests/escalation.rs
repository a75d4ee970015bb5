//! Team-lead pings against a real HTTP receiver on 127.0.0.1: signature and idempotency, the
//! durable outbox (receiver down, 500, 429, 404, a `kill -9` of the real binary), `callguard
//! escalate` and `callguard status` over the control socket, and the notification's 「上長を呼ぶ」
//! button through the test's own notification server on a private session bus.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callguard::config::{WebhookConfig, WebhookFormat};
use callguard::daemon::RunOptions;
use callguard::events::Report;
use common::http::{Receiver, Reply, free_port, reply};
use common::{FakePbx, TestRun, start_daemon, test_config};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// How long a test waits for something that should happen within a few seconds.
const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// A webhook receiver: raw HTTP/1.1 on 127.0.0.1, one request per connection.

fn signature(secret: &[u8], body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn minutes_ago(m: i64) -> String {
    (chrono::Local::now() - chrono::Duration::minutes(m)).to_rfc3339()
}

/// A call that is already 16 minutes old: the 15-minute warning (notify_lead) fires at once.
fn old_call(id: &str) -> Value {
    json!({"type":"call.start","call_id":id,"agent":"1001","caller":"0312345678","at":minutes_ago(16)})
}

fn hook(url: String, format: WebhookFormat, secret_file: &str) -> WebhookConfig {
    WebhookConfig {
        url,
        format,
        secret_file: secret_file.to_string(),
    }
}

fn quiet() -> RunOptions {
    TestRun::headless().remembering().opts()
}

fn pending_files(state: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(state.join("outbox").join("pending")) {
        Ok(d) => d
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// In-process daemon.

#[tokio::test]
async fn each_ping_is_delivered_once_per_receiver_signed_and_with_its_idempotency_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("webhook.secret");
    std::fs::write(&secret_file, "s3cr3t\n").unwrap();
    let mut rx = Receiver::start(vec![]).await;
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(dir.path(), &pbx.url);
    cfg.agent.name = "佐藤".into();
    let secret = secret_file.display().to_string();
    cfg.escalation.webhook = vec![
        hook(rx.url("/json"), WebhookFormat::Json, &secret),
        hook(rx.url("/slack"), WebhookFormat::Slack, ""),
        hook(rx.url("/teams"), WebhookFormat::Teams, ""),
    ];
    let mut d = start_daemon(cfg, quiet());
    let mut conn = pbx.accept().await;
    conn.send(old_call("c-42")).await;

    let mut by_path = HashMap::new();
    for _ in 0..3 {
        let hit = rx.next().await;
        by_path.insert(hit.path.clone(), hit);
    }
    let j = &by_path["/json"];
    let body = j.json();
    assert_eq!(body["event"], "callguard.escalation");
    assert_eq!(body["kind"], "escalate");
    assert_eq!(body["after_secs"], 900);
    assert_eq!(body["call_id"], "c-42");
    assert_eq!(body["agent"], "1001");
    assert_eq!(body["agent_name"], "佐藤");
    assert_eq!(body["caller"], "0312345678");
    assert!(body["elapsed_secs"].as_u64().unwrap() >= 960);
    let key = j.headers["idempotency-key"].clone();
    assert_eq!(body["id"], key.as_str());
    assert_eq!(
        j.headers["x-callguard-signature"],
        signature(b"s3cr3t", &j.body),
        "HMAC-SHA256 of the exact body, secret without its newline"
    );
    assert!(j.headers["content-type"].starts_with("application/json"));
    // Same ping, same key, in every format; unsigned where no secret is set.
    let slack = &by_path["/slack"];
    assert_eq!(slack.headers["idempotency-key"], key);
    assert!(!slack.headers.contains_key("x-callguard-signature"));
    assert!(
        slack.json()["text"]
            .as_str()
            .unwrap()
            .contains("0312345678")
    );
    let teams = &by_path["/teams"];
    assert_eq!(teams.headers["idempotency-key"], key);
    assert_eq!(
        teams.json()["attachments"][0]["content"]["type"],
        "AdaptiveCard"
    );

    // Exactly once: the next requests are the next ping, not a repeat of the first.
    let (reply, answer) = tokio::sync::oneshot::channel();
    d.commands
        .send(callguard::calls::Command::Escalate {
            call_id: None,
            note: Some("怒鳴られています".into()),
            source: "cli".into(),
            reply,
        })
        .await
        .unwrap();
    assert_eq!(answer.await.unwrap().unwrap().call_id, "c-42");
    for _ in 0..3 {
        let hit = rx.next().await;
        assert_ne!(
            hit.headers["idempotency-key"], key,
            "a delivered ping was sent again"
        );
        if hit.path == "/json" {
            let b = hit.json();
            assert_eq!(b["kind"], "manual");
            assert_eq!(b["note"], "怒鳴られています");
            assert_eq!(b["source"], "cli");
            assert_eq!(
                hit.headers["x-callguard-signature"],
                signature(b"s3cr3t", &hit.body)
            );
        }
    }
    // Wait until the daemon has recorded all six deliveries, then nothing is left pending.
    let mut delivered = 0;
    while delivered < 6 {
        d.next(|r| match r {
            Report::Note(t) if t.contains("delivered to") => Some(()),
            _ => None,
        })
        .await;
        delivered += 1;
    }
    assert!(pending_files(&dir.path().join("state")).is_empty());
    assert_eq!(rx.requests(), 6);
    d.stop().await;
}

#[tokio::test]
async fn a_receiver_that_is_down_gets_the_ping_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().await;
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(dir.path(), &pbx.url);
    cfg.escalation.webhook = vec![hook(
        format!("http://127.0.0.1:{port}/hook"),
        WebhookFormat::Json,
        "",
    )];
    cfg.escalation.retry_initial = Duration::from_millis(20);
    cfg.escalation.retry_max = Duration::from_millis(200);
    let mut d = start_daemon(cfg, quiet());
    let mut conn = pbx.accept().await;
    conn.send(old_call("c-down")).await;

    // Three failed attempts, each recorded in the outbox before the next.
    for _ in 0..3 {
        let why = d
            .next(|r| match r {
                Report::Note(t) if t.contains("not delivered") => Some(t.clone()),
                _ => None,
            })
            .await;
        assert!(why.contains("cannot connect"), "{why}");
    }
    let files = pending_files(&dir.path().join("state"));
    assert_eq!(files.len(), 1);
    let stored: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    assert!(stored["attempts"].as_u64().unwrap() >= 3);

    let mut rx = Receiver::start_on(port, vec![]).await;
    let hit = rx.next().await;
    assert_eq!(hit.json()["call_id"], "c-down");
    assert_eq!(hit.json()["id"], stored["ping_id"]);
    d.next(|r| match r {
        Report::Note(t) if t.contains("delivered to") => Some(()),
        _ => None,
    })
    .await;
    assert!(pending_files(&dir.path().join("state")).is_empty());
    d.stop().await;
}

#[tokio::test]
async fn a_500_is_retried_with_the_same_body_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(vec![reply(500), reply(503), reply(200)]).await;
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(dir.path(), &pbx.url);
    cfg.escalation.webhook = vec![hook(rx.url("/h"), WebhookFormat::Json, "")];
    cfg.escalation.retry_initial = Duration::from_millis(10);
    cfg.escalation.retry_max = Duration::from_millis(50);
    let mut d = start_daemon(cfg, quiet());
    let mut conn = pbx.accept().await;
    conn.send(old_call("c-500")).await;

    let first = rx.next().await;
    let second = rx.next().await;
    let third = rx.next().await;
    assert_eq!(first.body, second.body);
    assert_eq!(second.body, third.body);
    assert_eq!(
        first.headers["idempotency-key"],
        third.headers["idempotency-key"]
    );
    d.next(|r| match r {
        Report::Note(t) if t.contains("delivered to") && t.contains("HTTP 200") => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(rx.requests(), 3);
    assert!(pending_files(&dir.path().join("state")).is_empty());
    d.stop().await;
}

#[tokio::test]
async fn a_429_waits_for_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(vec![Reply {
        status: 429,
        headers: vec![("Retry-After", "2".into())],
    }])
    .await;
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(dir.path(), &pbx.url);
    cfg.escalation.webhook = vec![hook(rx.url("/h"), WebhookFormat::Json, "")];
    // Our own backoff would retry after 10-20 ms: only Retry-After explains a longer wait.
    cfg.escalation.retry_initial = Duration::from_millis(20);
    cfg.escalation.retry_max = Duration::from_millis(20);
    let mut d = start_daemon(cfg, quiet());
    let mut conn = pbx.accept().await;
    conn.send(old_call("c-429")).await;

    let first = rx.next().await;
    let note = d
        .next(|r| match r {
            Report::Note(t) if t.contains("HTTP 429") => Some(t.clone()),
            _ => None,
        })
        .await;
    assert!(note.contains("retry in 2s"), "{note}");
    let second = rx.next().await;
    assert!(
        second.at.duration_since(first.at) >= Duration::from_millis(1900),
        "retried after {:?}, before Retry-After",
        second.at.duration_since(first.at)
    );
    assert_eq!(
        first.headers["idempotency-key"],
        second.headers["idempotency-key"]
    );
    d.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The real binary.

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(pbx_url: &str, hooks: &[(String, &str)], retry_initial: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let mut text = format!(
            "language = \"en\"\n[pbx]\nurl = \"{pbx_url}\"\n[agent]\nextension = \"1001\"\nname = \"Sato\"\n\
             [prompt]\nlocal = false\n[state]\ndir = \"{}\"\n[evidence]\ndir = \"{}\"\nsource = \"off\"\n\
             [control]\nsocket = \"{}\"\n[escalation]\nretry_initial = \"{retry_initial}\"\nretry_max = \"1h\"\ncoalesce = \"0s\"\n",
            dir.path().join("state").display(),
            dir.path().join("evidence").display(),
            dir.path().join("control.sock").display(),
        );
        for (url, format) in hooks {
            text.push_str(&format!(
                "[[escalation.webhook]]\nurl = \"{url}\"\nformat = \"{format}\"\n"
            ));
        }
        let config = dir.path().join("callguard.toml");
        std::fs::write(&config, text).unwrap();
        Setup { dir, config }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn daemon(&self, dbus: Option<&str>) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_callguard"));
        cmd.arg("run")
            .arg("--config")
            .arg(&self.config)
            .env_remove("CALLGUARD_CONFIG")
            .env("RUST_LOG", "callguard=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        match dbus {
            Some(addr) => cmd.env("DBUS_SESSION_BUS_ADDRESS", addr),
            // No session bus: the daemon must not find the developer's desktop.
            None => cmd.env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent"),
        };
        Daemon(Some(cmd.spawn().unwrap()))
    }

    /// Runs a `callguard` subcommand; (exit code, stdout, stderr).
    async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        common::cli(&self.config, args).await
    }

    async fn status_until(&self, ready: impl Fn(&Value) -> bool) -> Value {
        common::status_until(&self.config, ready).await
    }
}

/// The real daemon; killed if the test fails before stopping it.
struct Daemon(Option<Child>);

impl Daemon {
    fn kill_9(mut self) {
        let mut child = self.0.take().unwrap();
        child.kill().unwrap(); // SIGKILL: no chance to flush anything
        child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn stop(mut daemon: Daemon) {
    let mut child = daemon.0.take().unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "daemon exited with {status}");
}

fn calls(v: &Value) -> usize {
    v["tracker"]["calls"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn pings_pending_when_the_daemon_is_killed_are_sent_after_restart() {
    let port = free_port().await;
    let mut pbx = FakePbx::start().await;
    // A long first delay: the ping must still be pending when the daemon is killed.
    let setup = Setup::new(
        &pbx.url,
        &[(format!("http://127.0.0.1:{port}/h"), "json")],
        "1h",
    );
    let child = setup.daemon(None);
    let mut conn = pbx.accept().await;
    conn.send(old_call("c-kill")).await;
    let v = setup
        .status_until(|v| {
            v["outbox"]["pending"]
                .as_array()
                .and_then(|p| p.first())
                .is_some_and(|e| e["attempts"].as_u64() >= Some(1))
        })
        .await;
    let ping_id = v["outbox"]["pending"][0]["ping_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        v["outbox"]["pending"][0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect")
    );

    child.kill_9();
    conn.drain().await;
    assert_eq!(pending_files(&setup.state()).len(), 1);

    let mut rx = Receiver::start_on(port, vec![]).await;
    let child = setup.daemon(None);
    let hit = rx.next().await;
    assert_eq!(hit.headers["idempotency-key"], ping_id);
    assert_eq!(hit.json()["call_id"], "c-kill");
    setup
        .status_until(|v| v["outbox"]["pending"].as_array().is_some_and(Vec::is_empty))
        .await;
    assert!(pending_files(&setup.state()).is_empty());
    stop(child);
    assert_eq!(rx.requests(), 1);
}

#[tokio::test]
async fn a_404_is_a_permanent_failure_shown_by_status() {
    let rx = Receiver::start(vec![reply(404)]).await;
    let mut pbx = FakePbx::start().await;
    let setup = Setup::new(&pbx.url, &[(rx.url("/gone"), "slack")], "10ms");
    let child = setup.daemon(None);
    let mut conn = pbx.accept().await;
    conn.send(old_call("c-404")).await;

    // The outbox is on disk; the recent errors (the failed ping, and the desktop notification
    // that cannot be shown here) come a moment later from the daemon's reports.
    let v = setup
        .status_until(|v| {
            v["outbox"]["failed"]
                .as_array()
                .is_some_and(|f| !f.is_empty())
                && v["recent_errors"].as_array().is_some_and(|e| {
                    let has = |t: &str| e.iter().any(|e| e["what"].as_str().unwrap().contains(t));
                    has("FAILED: HTTP 404") && has("not shown")
                })
        })
        .await;
    let failed = &v["outbox"]["failed"][0];
    assert_eq!(failed["error"], "HTTP 404");
    assert_eq!(failed["call_id"], "c-404");
    assert_eq!(failed["attempts"], 1);
    assert!(v["outbox"]["pending"].as_array().unwrap().is_empty());
    assert!(
        v["recent_errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["what"].as_str().unwrap().contains("not shown")),
        "no desktop here: that is a recent error too: {v}"
    );
    // The same for people.
    let (code, text, _) = setup.cli(&["status"]).await;
    assert_eq!(code, 0);
    assert!(text.contains("1 failed"), "{text}");
    assert!(
        text.contains("FAILED") && text.contains("HTTP 404"),
        "{text}"
    );
    assert!(text.contains("PBX: connected"), "{text}");
    assert!(
        text.contains("c-404") && text.contains("next: terminate at 30m"),
        "{text}"
    );
    assert!(text.contains("notifications: NO"), "{text}");
    assert!(text.contains("MiB free"), "{text}");
    assert_eq!(rx.requests(), 1, "a 404 is not retried");
    stop(child);
}

#[tokio::test]
async fn callguard_escalate_reaches_the_receiver() {
    let mut rx = Receiver::start(vec![]).await;
    let mut pbx = FakePbx::start().await;
    let setup = Setup::new(&pbx.url, &[(rx.url("/lead"), "json")], "10ms");

    let (code, _, err) = setup.cli(&["escalate"]).await;
    assert_eq!(code, 1, "no daemon yet: {err}");
    assert!(err.contains("not running"), "{err}");

    let child = setup.daemon(None);
    let mut conn = pbx.accept().await;
    setup
        .status_until(|v| v["tracker"]["pbx"] == "connected")
        .await;

    let (code, _, err) = setup.cli(&["escalate", "--note", "x"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no current call"), "{err}");

    // Two calls: the one that started last is the agent's current call.
    conn.send(json!({"type":"call.start","call_id":"c-held","agent":"1001","caller":"111","at":minutes_ago(5)}))
        .await;
    conn.send(json!({"type":"call.start","call_id":"c-now","agent":"1001","caller":"0312345678","at":minutes_ago(2)}))
        .await;
    setup.status_until(|v| calls(v) == 2).await;

    let (code, out, err) = setup
        .cli(&["escalate", "--note", "Caller is shouting"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("c-now"), "{out}");
    let hit = rx.next().await;
    let b = hit.json();
    assert_eq!(b["kind"], "manual");
    assert_eq!(b["call_id"], "c-now");
    assert_eq!(b["note"], "Caller is shouting");
    assert_eq!(b["source"], "cli");
    assert_eq!(b["agent_name"], "Sato");
    assert!(b["after_secs"].is_null());
    assert!(b["elapsed_secs"].as_u64().unwrap() >= 120);
    assert!(b["text"].as_str().unwrap().contains("Caller is shouting"));
    stop(child);
    assert_eq!(rx.requests(), 1);
}

#[tokio::test]
async fn the_call_team_lead_button_pings_the_lead() {
    use common::dbus::{SessionBus, serve_notifications};
    let bus = SessionBus::start();
    let (server, mut notes) = serve_notifications(&bus, &["body", "actions"]).await;
    let mut rx = Receiver::start(vec![]).await;
    let mut pbx = FakePbx::start().await;
    let setup = Setup::new(&pbx.url, &[(rx.url("/lead"), "json")], "10ms");
    let child = setup.daemon(Some(&bus.address));
    let mut conn = pbx.accept().await;
    conn.send(old_call("c-btn")).await;

    let shown = tokio::time::timeout(PATIENCE, notes.recv())
        .await
        .expect("no notification")
        .unwrap();
    assert_eq!(
        shown.actions,
        vec![
            "callguard-escalate".to_string(),
            "Call team lead".to_string()
        ]
    );
    // The warning's own ping comes first.
    let warning = rx.next().await;
    assert_eq!(warning.json()["kind"], "escalate");

    // The daemon subscribes to ActionInvoked just after the notification is shown; the click is
    // repeated until it is heard (the daemon acts on the first one only).
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    let deadline = Instant::now() + PATIENCE;
    let hit = loop {
        tokio::select! {
            _ = ticker.tick() => {
                assert!(Instant::now() < deadline, "the click was never heard");
                server
                    .emit_signal(
                        None::<&str>,
                        "/org/freedesktop/Notifications",
                        "org.freedesktop.Notifications",
                        "ActionInvoked",
                        &(shown.id, "callguard-escalate"),
                    )
                    .await
                    .unwrap();
            }
            hit = rx.hits.recv() => break hit.unwrap(),
        }
    };
    let b = hit.json();
    assert_eq!(b["kind"], "manual");
    assert_eq!(b["source"], "notification");
    assert_eq!(b["call_id"], "c-btn");
    stop(child);
    assert_eq!(rx.requests(), 2, "one click, one ping");
}

#[tokio::test]
async fn a_sink_problem_pings_the_lead_with_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(vec![]).await;
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(dir.path(), &pbx.url);
    cfg.escalation.webhook = vec![hook(rx.url("/h"), WebhookFormat::Json, "")];
    let mut d = start_daemon(cfg, quiet());
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-disk","agent":"1001","caller":"0312345678"}))
        .await;
    d.next(|r| matches!(r, Report::CallStarted(_)).then_some(()))
        .await;
    d.commands
        .send(callguard::calls::Command::Problem(
            callguard::events::Problem {
                call_id: Some("c-disk".into()),
                kind: "evidence.truncated".into(),
                text: "disk full: the recording stopped".into(),
            },
        ))
        .await
        .unwrap();
    let b = rx.next().await.json();
    assert_eq!(b["kind"], "problem");
    assert_eq!(b["problem"], "evidence.truncated");
    assert_eq!(b["call_id"], "c-disk");
    assert_eq!(b["caller"], "0312345678");
    assert!(b["after_secs"].is_null());
    assert!(b["text"].as_str().unwrap().contains("disk full"));
    d.stop().await;
}

#[tokio::test]
async fn a_mark_that_fires_a_rule_pings_the_lead() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(vec![]).await;
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(dir.path(), &pbx.url);
    cfg.escalation.webhook = vec![hook(rx.url("/h"), WebhookFormat::Json, "")];
    let mut d = start_daemon(cfg, quiet());
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-mark","agent":"1001","caller":"0312345678"}))
        .await;
    d.next(|r| matches!(r, Report::CallStarted(_)).then_some(()))
        .await;
    let (reply, answer) = tokio::sync::oneshot::channel();
    d.commands
        .send(callguard::calls::Command::Mark {
            kind: callguard::harassment::MarkKind::Abuse,
            quote: Some("ふざけるな".into()),
            call_id: None,
            reply,
        })
        .await
        .unwrap();
    let receipt = answer.await.unwrap().unwrap();
    assert!(
        !receipt.fired.is_empty(),
        "the first abuse mark fires a rule"
    );
    let b = rx.next().await.json();
    assert_eq!(b["kind"], "mark");
    assert_eq!(b["mark"], "abuse");
    assert_eq!(b["quote"], "ふざけるな");
    assert_eq!(b["call_id"], "c-mark");
    assert_eq!(b["rules"].as_array().unwrap().len(), receipt.fired.len());
    assert_eq!(b["level"], receipt.level);
    d.stop().await;
}

#[tokio::test]
async fn the_sealed_incident_record_tells_whether_the_lead_was_reached() {
    let dir = tempfile::tempdir().unwrap();
    let mut rx = Receiver::start(vec![]).await;
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(dir.path(), &pbx.url);
    cfg.escalation.webhook = vec![hook(rx.url("/h"), WebhookFormat::Json, "")];
    let mut d = start_daemon(cfg, quiet());
    let mut conn = pbx.accept().await;
    conn.send(old_call("c-rec")).await;
    assert_eq!(rx.next().await.json()["kind"], "escalate");
    d.next(|r| match r {
        Report::Note(t) if t.contains("delivered to") => Some(()),
        _ => None,
    })
    .await;
    conn.send(json!({"type":"call.end","call_id":"c-rec","cause":"normal"}))
        .await;
    let sealed = d
        .next(|r| match r {
            Report::Sealed { call_id, dir, .. } if call_id == "c-rec" => Some(dir.clone()),
            _ => None,
        })
        .await;
    let inc: Value =
        serde_json::from_slice(&std::fs::read(sealed.join("incident.json")).unwrap()).unwrap();
    let esc = inc["escalations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "warning:escalate after 900 s")
        .unwrap_or_else(|| panic!("{inc}"));
    assert!(
        esc["delivery"].as_str().unwrap().starts_with("delivered "),
        "{esc}"
    );
    d.stop().await;
}

/// Issue 11: a ping that cannot reach its receiver shows in `status` (text and JSON) without
/// the token of the receiver's URL, and with its port, so several receivers can be told apart.
#[tokio::test]
async fn a_ping_failure_in_status_shows_no_token() {
    let port = free_port().await;
    let mut pbx = FakePbx::start().await;
    let setup = Setup::new(
        &pbx.url,
        &[(
            format!("http://127.0.0.1:{port}/hooks/T0KEN5ecret/post"),
            "json",
        )],
        "1h",
    );
    let child = setup.daemon(None);
    let mut conn = pbx.accept().await;
    conn.send(old_call("c-token")).await;
    let v = setup
        .status_until(|v| {
            v["outbox"]["pending"]
                .as_array()
                .and_then(|p| p.first())
                .is_some_and(|e| e["attempts"].as_u64() >= Some(1))
        })
        .await;
    let masked = format!("http://127.0.0.1:{port}/hooks/…(masked)");
    let json = v.to_string();
    assert!(!json.contains("T0KEN5ecret"), "{json}");
    assert!(!json.contains("(masked))"), "masked once: {json}");
    assert_eq!(v["webhooks"][0], masked.as_str(), "{v}");
    assert_eq!(
        v["outbox"]["pending"][0]["receiver"],
        masked.as_str(),
        "{v}"
    );
    assert!(
        v["outbox"]["pending"][0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{v}"
    );
    let (code, text, _) = setup.cli(&["status"]).await;
    assert_eq!(code, 0);
    assert!(!text.contains("T0KEN5ecret"), "{text}");
    assert!(
        text.contains(&masked) && !text.contains("(masked))"),
        "{text}"
    );
    // Nor in the outbox on disk, which `status` and people read.
    for f in pending_files(&setup.state()) {
        let body = std::fs::read_to_string(&f).unwrap();
        let d: Value = serde_json::from_str(&body).unwrap();
        assert!(
            !d["last_error"]
                .as_str()
                .unwrap_or("")
                .contains("T0KEN5ecret"),
            "{body}"
        );
    }
    stop(child);
}
