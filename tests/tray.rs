//! The call timer in the system tray, as a tray host sees it: the real `callguard` binary on a
//! private session D-Bus with a StatusNotifierWatcher registered by the test, a PBX on a
//! loopback websocket and the lead's webhook on a loopback HTTP receiver.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::FakePbx;
use common::dbus::{SessionBus, serve_notifications, serve_tray_watcher};
use common::http::Receiver;
use serde_json::json;
use zbus::OwnedVariant;

const PATIENCE: Duration = Duration::from_secs(60);

/// `ToolTip` of the StatusNotifierItem spec: icon name, icon pixmaps, title, text.
type ToolTip = (String, Vec<(i32, i32, Vec<u8>)>, String, String);

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(dir: &std::path::Path, pbx: &str, hook: &str) -> std::path::PathBuf {
    let path = dir.join("callguard.toml");
    let d = dir.display();
    std::fs::write(
        &path,
        format!(
            "[pbx]\nurl = \"{pbx}\"\n[agent]\nextension = \"1001\"\nname = \"佐藤\"\n\
             [prompt]\nlocal = false\n[state]\ndir = \"{d}/state\"\n\
             [evidence]\ndir = \"{d}/evidence\"\nsource = \"off\"\n\
             [control]\nsocket = \"{d}/control.sock\"\n\
             [[escalation.webhook]]\nurl = \"{hook}\"\nformat = \"json\"\n"
        ),
    )
    .unwrap();
    path
}

async fn item_proxy<'a>(
    conn: &'a zbus::Connection,
    service: &'a str,
    path: &'a str,
    iface: &'a str,
) -> zbus::Proxy<'a> {
    zbus::proxy::Builder::new(conn)
        .destination(service)
        .path(path)
        .interface(iface)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap()
}

/// Reads the item's `Title` until `ready` holds (bounded; each read is a real D-Bus call).
async fn title_until(item: &zbus::Proxy<'_>, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let title: String = item.get_property("Title").await.unwrap();
        if ready(&title) {
            return title;
        }
        assert!(Instant::now() < deadline, "title stayed `{title}`");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The menu's items by label, with the ids a host gets from `GetLayout` (and uses in `Event`).
async fn menu_labels(menu: &zbus::Proxy<'_>) -> HashMap<String, i32> {
    type Layout = (i32, HashMap<String, OwnedVariant>, Vec<OwnedVariant>);
    let (_, (_, _, children)): (u32, Layout) = menu
        .call("GetLayout", &(0i32, -1i32, vec!["label".to_string()]))
        .await
        .unwrap();
    let mut out = HashMap::new();
    for child in &children {
        walk(child, &mut out);
    }
    out
}

/// One `(ia{sv}av)` menu node (wrapped in a variant) and its children.
fn walk(v: &zbus::Variant<'_>, out: &mut HashMap<String, i32>) {
    match v {
        zbus::Variant::Variant(inner) => walk(inner, out),
        zbus::Variant::Structure(s) => {
            let f = s.fields();
            let (Some(zbus::Variant::I32(id)), Some(zbus::Variant::Dict(props))) =
                (f.first(), f.get(1))
            else {
                panic!("unexpected menu node {v:?}");
            };
            if let Ok(Some(label)) = props.get::<&str, String>(&"label") {
                out.insert(label, *id);
            }
            if let Some(zbus::Variant::Array(children)) = f.get(2) {
                for c in children.inner() {
                    walk(c, out);
                }
            }
        }
        other => panic!("unexpected menu node {other:?}"),
    }
}

#[tokio::test]
async fn the_tray_item_shows_the_call_timer_and_its_menu_calls_the_lead() {
    let bus = SessionBus::start();
    let (watcher_conn, mut registered) = serve_tray_watcher(&bus).await;
    let (_notes_conn, _notes) = serve_notifications(&bus, &["body"]).await;
    let mut pbx = FakePbx::start().await;
    let mut lead = Receiver::start(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &pbx.url, &lead.url("/lead"));
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_callguard"))
            .args(["run", "--config"])
            .arg(&config)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env_remove("CALLGUARD_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );

    let service = tokio::time::timeout(PATIENCE, registered.recv())
        .await
        .expect("the tray item never registered with the watcher")
        .unwrap();
    assert!(
        service.starts_with("org.kde.StatusNotifierItem-"),
        "{service}"
    );
    let item = item_proxy(
        &watcher_conn,
        &service,
        "/StatusNotifierItem",
        "org.kde.StatusNotifierItem",
    )
    .await;
    let menu_path: zbus::OwnedObjectPath = item.get_property("Menu").await.unwrap();
    let menu = item_proxy(
        &watcher_conn,
        &service,
        menu_path.as_str(),
        "com.canonical.dbusmenu",
    )
    .await;
    assert_eq!(title_until(&item, |_| true).await, "callguard：通話なし");
    let labels = menu_labels(&menu).await;
    assert!(labels.contains_key("通話なし"), "{labels:?}");

    // A call started 12 minutes ago: the timer shows it at once, with level and next warning.
    let mut conn = pbx.accept().await;
    let at = chrono::Local::now() - chrono::Duration::minutes(12);
    conn.send(
        json!({"type":"call.start","call_id":"c-7","agent":"1001","caller":"0312345678",
                     "at": at.to_rfc3339()}),
    )
    .await;
    let title = title_until(&item, |t| t.starts_with("通話 12:")).await;
    assert!(title.ends_with("・レベル 1"), "{title}");
    let (_, _, tip_title, tip): ToolTip = item.get_property("ToolTip").await.unwrap();
    assert!(tip_title.starts_with("通話 12:"), "{tip_title}");
    assert!(tip.starts_with("レベル 1（通常）\n"), "{tip}");
    assert!(
        tip.ends_with("次の警告：15分（上長へ引き継ぎ）まで あと 3:00")
            || tip.contains("次の警告：15分（上長へ引き継ぎ）まで あと 2:"),
        "{tip}"
    );
    // The clock runs: a later read shows more time (the item refreshes every second).
    let later = title_until(&item, |t| t != title).await;
    assert!(
        later.starts_with("通話 12:") || later.starts_with("通話 13:"),
        "{later}"
    );

    // The agent opens the menu and picks 上長を呼ぶ: the lead is pinged for this call.
    let labels = menu_labels(&menu).await;
    for expected in ["上長を呼ぶ", "記録する", "状況", "暴言・人格否定"] {
        assert!(
            labels.contains_key(expected),
            "{expected} missing: {labels:?}"
        );
    }
    let escalate = labels["上長を呼ぶ"];
    let () = menu
        .call(
            "Event",
            &(escalate, "clicked", zbus::Variant::from(0i32), 0u32),
        )
        .await
        .unwrap();
    let hit = lead.next().await;
    let body = hit.json();
    assert_eq!(body["kind"], "manual", "{body}");
    assert_eq!(body["source"], "tray", "{body}");
    assert_eq!(body["call_id"], "c-7", "{body}");
    // Calling the lead raises the level to 2: the timer shows it.
    title_until(&item, |t| t.ends_with("・レベル 2")).await;

    // A mark from the menu counts, and the menu shows the count.
    let abuse = labels["暴言・人格否定"];
    let () = menu
        .call(
            "Event",
            &(abuse, "clicked", zbus::Variant::from(0i32), 0u32),
        )
        .await
        .unwrap();
    title_until(&item, |t| t.ends_with("・レベル 3")).await;
    let deadline = Instant::now() + PATIENCE;
    while !menu_labels(&menu)
        .await
        .contains_key("暴言・人格否定（1 回）")
    {
        assert!(Instant::now() < deadline, "the mark count never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    conn.send(json!({"type":"call.end","call_id":"c-7","cause":"normal"}))
        .await;
    title_until(&item, |t| t == "callguard：通話なし").await;
}

#[tokio::test]
async fn without_a_tray_host_the_daemon_says_so_once_and_goes_on() {
    let bus = SessionBus::start();
    let mut pbx = FakePbx::start().await;
    let lead = Receiver::start(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &pbx.url, &lead.url("/lead"));
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("RUST_LOG", "info")
        .env_remove("CALLGUARD_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // The daemon goes on: it takes a call and answers on the control socket.
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-8","agent":"1001","caller":"0312345678"}))
        .await;
    common::status_until(&config, |v| {
        v["tracker"]["calls"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
    })
    .await;
    let (code, _, err) = common::cli(&config, &["mark", "abuse"]).await;
    assert_eq!(code, 0, "{err}");
    conn.send(json!({"type":"call.end","call_id":"c-8","cause":"normal"}))
        .await;
    common::status_until(&config, |v| {
        v["tracker"]["calls"]
            .as_array()
            .is_some_and(|c| c.is_empty())
    })
    .await;
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    );
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("no system tray (StatusNotifierWatcher)")
            .count(),
        1,
        "{text}"
    );
}
