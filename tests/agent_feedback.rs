//! What the agent sees after a keystroke, through the real `callguard` binary: a desktop
//! confirmation of every mark, note and call for help on the test's notification server (each
//! replacing the one before), answers in the configured language, quotes without doubled 「」,
//! and a critical notification when no daemon answers.

mod common;

use common::dbus::{cli_on_bus as hotkey, next_of};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::FakePbx;
use common::dbus::{SessionBus, serve_notifications};
use common::http::Receiver;
use serde_json::json;

struct Daemon(Child);

impl Daemon {
    fn stop(mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.0),
            rustix::process::Signal::TERM,
        );
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &Path, pbx: &str, hook: &str, lang: &str) -> PathBuf {
    common::ConfigFile::new(dir, pbx)
        .language(lang)
        .extension("1001")
        .agent_name("佐藤")
        .evidence_off()
        .control_socket()
        .coalesce("0s")
        .webhook(hook, "json")
        .write()
}

fn daemon(config: &Path, bus: &SessionBus) -> Daemon {
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_callguard"))
            .args(["run", "--config"])
            .arg(config)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env_remove("CALLGUARD_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test]
async fn every_hotkey_is_confirmed_on_the_desktop_in_japanese_and_a_dead_daemon_is_shouted() {
    let bus = SessionBus::start();
    let (_conn, mut notes) = serve_notifications(&bus, &["body"]).await;
    let mut pbx = FakePbx::start().await;
    let mut lead = Receiver::start(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &pbx.url, &lead.url("/lead"), "ja");
    let d = daemon(&config, &bus);
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-4711","agent":"1001","caller":"0312345678"}))
        .await;
    common::status_until(&config, |v| {
        v["tracker"]["calls"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
    })
    .await;

    // First mark: Japanese answer, quote once, a confirmation on the desktop.
    let (code, out, err) = hotkey(
        &config,
        &bus,
        &["mark", "abuse", "--quote", "「お前は無能だ」"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("「暴言・人格否定」を記録しました（通話 c-4711、"),
        "{out}"
    );
    assert!(
        out.contains("1 回目）。レベル 3（カスハラの兆候）"),
        "{out}"
    );
    assert!(
        out.contains("発動したルール：「暴言・人格否定」1 回目：上長に連絡"),
        "{out}"
    );
    assert!(!out.contains("abuse#1"), "{out}");
    let first = next_of(&mut notes, "callguard.confirm").await;
    assert_eq!(first.summary, "暴言を記録しました（1 回目）");
    assert!(first.body.contains("上長に連絡しました"), "{}", first.body);
    assert!(
        first.body.contains("発言：「お前は無能だ」"),
        "{}",
        first.body
    );
    assert!(!first.body.contains("「「"), "{}", first.body);
    let ping = lead.next().await.json();
    assert_eq!(ping["quote"], "お前は無能だ");
    assert!(!ping["text"].as_str().unwrap().contains("「「"), "{ping}");

    // The second replaces the first.
    let (code, _, err) = hotkey(&config, &bus, &["mark", "abuse"]).await;
    assert_eq!(code, 0, "{err}");
    let second = next_of(&mut notes, "callguard.confirm").await;
    assert_eq!(second.summary, "暴言を記録しました（2 回目）");
    assert_eq!(second.replaces_id, first.id);

    // A call for help and a note are confirmed in the same place.
    let (code, out, err) = hotkey(&config, &bus, &["escalate"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("上長に連絡しました（通話 c-4711、お客様 0312345678、"),
        "{out}"
    );
    let called = next_of(&mut notes, "callguard.confirm").await;
    assert_eq!(called.summary, "上長に連絡しました");
    assert_eq!(called.replaces_id, first.id);
    let (code, out, err) = hotkey(
        &config,
        &bus,
        &["note", "--response", "上長に代わると伝えました"],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "通話 c-4711 の記録に担当者の対応を追加しました");
    let noted = next_of(&mut notes, "callguard.confirm").await;
    assert_eq!(noted.summary, "記録に担当者の対応を追加しました");
    assert_eq!(noted.body, "上長に代わると伝えました");

    // No call: a Japanese refusal, exit 2.
    conn.send(json!({"type":"call.end","call_id":"c-4711","cause":"normal"}))
        .await;
    common::status_until(&config, |v| {
        v["tracker"]["calls"]
            .as_array()
            .is_some_and(|c| c.is_empty())
    })
    .await;
    let (code, _, err) = hotkey(&config, &bus, &["mark", "abuse"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("通話中ではありません"), "{err}");

    // The daemon is gone: the hotkey says so on the screen, critically, and fails.
    d.stop();
    for args in [&["escalate"][..], &["mark", "threat"][..]] {
        let (code, _, err) = hotkey(&config, &bus, args).await;
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(err.contains("callguard が動いていません"), "{err}");
        let alarm = next_of(&mut notes, "callguard.not_running").await;
        assert_eq!(
            alarm.summary,
            "callguard が動いていません。上長に直接連絡してください"
        );
        assert_eq!(alarm.urgency, Some(2), "critical");
        assert_eq!(alarm.expire_timeout, 0, "stays until closed");
    }
}

#[tokio::test]
async fn english_configuration_answers_in_english_and_help_stays_english() {
    let bus = SessionBus::start();
    let (_conn, mut notes) = serve_notifications(&bus, &["body"]).await;
    let mut pbx = FakePbx::start().await;
    let lead = Receiver::start(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &pbx.url, &lead.url("/lead"), "en");
    let _d = daemon(&config, &bus);
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-9","agent":"1001","caller":"0312345678"}))
        .await;
    common::status_until(&config, |v| {
        v["tracker"]["calls"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
    })
    .await;
    let (code, out, err) = hotkey(
        &config,
        &bus,
        &["mark", "manager", "--quote", "\"Get me your manager\""],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("marked manager (demands a manager) on call c-9 at "),
        "{out}"
    );
    let n = next_of(&mut notes, "callguard.confirm").await;
    assert_eq!(n.summary, "Marked: demands a manager (×1)");
    assert!(
        n.body.contains("Said: \"Get me your manager\""),
        "{}",
        n.body
    );
    assert!(!n.body.contains("\"\""), "{}", n.body);
    for args in [&["--help"][..], &["mark", "--help"][..]] {
        let (code, out, _) = hotkey(&config, &bus, args).await;
        assert_eq!(code, 0);
        assert!(out.contains("Usage: callguard"), "{out}");
    }
    let (code, out, _) = hotkey(&config, &bus, &["keys"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("Super+0   call the team lead"), "{out}");
}
