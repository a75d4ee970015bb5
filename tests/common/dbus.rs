//! A private session bus (a real `dbus-daemon`) with a notification server registered by the test.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::mpsc;
use zbus::OwnedVariant as OwnedValue;

/// A `dbus-daemon --session` of the test's own; killed on drop. Its socket is in a temp dir
/// of its own, removed with it (the session default, `unix:tmpdir=/tmp`, leaves a socket in
/// /tmp for every bus ever started).
pub struct SessionBus {
    pub address: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl SessionBus {
    /// Starts the daemon, or returns why it cannot (the test then fails with that reason).
    pub fn start() -> SessionBus {
        let dir = tempfile::tempdir().expect("temp dir for the bus");
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address=1"])
            .arg(format!("--address=unix:dir={}", dir.path().display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dbus-daemon is needed for this test (apt-get install dbus-daemon; `make test` installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("dbus-daemon printed no address");
        SessionBus {
            address: line.trim().to_string(),
            child,
            _dir: dir,
        }
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `Notify` call as the server received it.
#[derive(Debug, Clone)]
pub struct Notified {
    pub id: u32,
    pub app_name: String,
    pub replaces_id: u32,
    pub summary: String,
    pub body: String,
    pub actions: Vec<String>,
    pub urgency: Option<u8>,
    pub category: Option<String>,
    pub expire_timeout: i32,
}

/// The test's org.freedesktop.Notifications.
pub struct NotificationServer {
    next_id: AtomicU32,
    tx: mpsc::UnboundedSender<Notified>,
    capabilities: Vec<String>,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl NotificationServer {
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        app_name: String,
        replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        hints: HashMap<String, OwnedValue>,
        expire_timeout: i32,
    ) -> u32 {
        let id = if replaces_id != 0 {
            replaces_id
        } else {
            self.next_id.fetch_add(1, Ordering::SeqCst)
        };
        let urgency = hints
            .get("urgency")
            .and_then(|v| u8::try_from(v.try_clone().ok()?).ok());
        let category = hints
            .get("category")
            .and_then(|v| String::try_from(v.try_clone().ok()?).ok());
        let _ = self.tx.send(Notified {
            id,
            app_name,
            replaces_id,
            summary,
            body,
            actions,
            urgency,
            category,
            expire_timeout,
        });
        id
    }

    fn get_capabilities(&self) -> Vec<String> {
        self.capabilities.clone()
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "callguard-test".into(),
            "test".into(),
            "1".into(),
            "1.2".into(),
        )
    }

    fn close_notification(&self, _id: u32) {}
}

/// Registers a notification server on `bus`; returns the connection (keep it alive) and the
/// stream of notifications.
pub async fn serve_notifications(
    bus: &SessionBus,
    capabilities: &[&str],
) -> (zbus::Connection, mpsc::UnboundedReceiver<Notified>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let server = NotificationServer {
        next_id: AtomicU32::new(7),
        tx,
        capabilities: capabilities.iter().map(|s| s.to_string()).collect(),
    };
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .serve_at("/org/freedesktop/Notifications", server)
        .name("org.freedesktop.Notifications")
        .build()
        .await
        .expect("cannot register the notification server");
    (conn, rx)
}

/// The test's org.kde.StatusNotifierWatcher: records each item that registers (its bus name)
/// and says a tray host is present.
pub struct TrayWatcher {
    items: std::sync::Mutex<Vec<String>>,
    tx: mpsc::UnboundedSender<String>,
}

#[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
impl TrayWatcher {
    fn register_status_notifier_item(&self, service: String) {
        if let Ok(mut items) = self.items.lock() {
            items.push(service.clone());
        }
        let _ = self.tx.send(service);
    }

    fn register_status_notifier_host(&self, _service: String) {}

    #[zbus(property)]
    fn registered_status_notifier_items(&self) -> Vec<String> {
        self.items.lock().map(|i| i.clone()).unwrap_or_default()
    }

    #[zbus(property)]
    fn is_status_notifier_host_registered(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn protocol_version(&self) -> i32 {
        0
    }
}

/// Registers a StatusNotifierWatcher on `bus`; returns the connection (keep it alive) and the
/// bus names of the items that register.
pub async fn serve_tray_watcher(
    bus: &SessionBus,
) -> (zbus::Connection, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = TrayWatcher {
        items: std::sync::Mutex::new(Vec::new()),
        tx,
    };
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .serve_at("/StatusNotifierWatcher", watcher)
        .name("org.kde.StatusNotifierWatcher")
        .build()
        .await
        .expect("cannot register the StatusNotifierWatcher");
    (conn, rx)
}

/// `callguard ARGS --config CONFIG` on the test's session bus (as a desktop shortcut runs it):
/// exit code, stdout, stderr.
pub async fn cli_on_bus(
    config: &std::path::Path,
    bus: &SessionBus,
    args: &[&str],
) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("CALLGUARD_CONFIG")
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .output()
        .await
        .expect("run callguard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// The next notification of `category` within a minute (else the test fails, naming it).
pub async fn next_of(notes: &mut mpsc::UnboundedReceiver<Notified>, category: &str) -> Notified {
    tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            let n = notes.recv().await.expect("notification server stopped");
            if n.category.as_deref() == Some(category) {
                return n;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {category} notification"))
}
