//! Desktop warnings as the agent's notification server receives them: the real `callguard`
//! binary on a private session D-Bus, a PBX on a loopback websocket.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use callguard::alerts::text::TERMINATE_PHRASE_JA;
use common::FakePbx;
use common::dbus::{SessionBus, serve_notifications};
use serde_json::json;

fn write_config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    common::ConfigFile::new(dir, url)
        .extension("1001")
        .evidence_off()
        .write()
}

#[tokio::test]
async fn warnings_reach_the_notification_server_and_the_30_minute_one_replaces_the_15() {
    let bus = SessionBus::start();
    let (_conn, mut notes) = serve_notifications(&bus, &["body", "actions"]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let config = write_config(dir.path(), &pbx.url);

    // 600×: the 15-minute warning after 1.5 s, the 30-minute one after 3 s.
    let mut child = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["run", "--time-scale", "600", "--config"])
        .arg(&config)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env_remove("CALLGUARD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-42","agent":"1001","caller":"0312345678"}))
        .await;

    let first = wait(&mut notes).await;
    assert_eq!(first.app_name, "callguard");
    assert_eq!(first.replaces_id, 0);
    assert_eq!(first.urgency, Some(1), "15 minutes: normal urgency");
    assert_eq!(
        first.expire_timeout, -1,
        "15 minutes: the server's default expiry"
    );
    assert!(first.summary.starts_with("通話 15分"), "{}", first.summary);
    assert!(
        first.body.contains("0312345678") && first.body.contains("上長"),
        "{}",
        first.body
    );
    assert_eq!(first.category.as_deref(), Some("callguard.warning"));

    let second = wait(&mut notes).await;
    assert_eq!(
        second.replaces_id, first.id,
        "the 30-minute warning must update the same notification"
    );
    assert_eq!(second.id, first.id);
    assert_eq!(second.urgency, Some(2), "30 minutes: critical urgency");
    assert_eq!(second.expire_timeout, 0, "30 minutes: never expires");
    assert!(
        second.summary.starts_with("通話 30分"),
        "{}",
        second.summary
    );
    assert!(second.body.contains(TERMINATE_PHRASE_JA), "{}", second.body);

    // SIGTERM ends the daemon cleanly.
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "daemon exited with {status}");
    assert!(
        notes.try_recv().is_err(),
        "no further notification expected"
    );
}

async fn wait(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<common::dbus::Notified>,
) -> common::dbus::Notified {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("no notification")
        .expect("server stopped")
}
