//! Desktop notifications over D-Bus (org.freedesktop.Notifications) with notify-rust's async
//! API. One notification per call, updated in place through its id.

use std::collections::HashMap;

use notify_rust::{Notification, NotificationHandle, NotificationResponse, Timeout, Urgency};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::calls::Command;
use crate::config::{Language, WarningKind};

/// A notification server that has not answered in this time counts as absent for that
/// notification: a frozen desktop must not hold back the next warning or the shutdown.
pub const DBUS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Application name shown by the notification server.
pub const APP_NAME: &str = "callguard";
/// Action key of the 「上長を呼ぶ」 / "Call team lead" button.
pub const ESCALATE_ACTION: &str = "callguard-escalate";

/// Label of the escalate button.
pub fn escalate_label(lang: Language) -> &'static str {
    match lang {
        Language::Ja => "上長を呼ぶ",
        Language::En => "Call team lead",
    }
}

/// The escalate button: its label, and where a click goes (the call tracker).
#[derive(Clone)]
pub struct EscalateButton {
    /// Button text.
    pub label: String,
    /// The tracker's command queue.
    pub commands: mpsc::Sender<Command>,
}

/// What a warning notification shows.
#[derive(Debug, Clone)]
pub struct Shown {
    /// Title.
    pub summary: String,
    /// Body.
    pub body: String,
    /// Critical (terminate) or normal (escalate).
    pub kind: WarningKind,
}

/// The notifications of the calls in progress.
#[derive(Default)]
pub struct Desktop {
    ids: HashMap<String, u32>,
    warned: bool,
    button: Option<EscalateButton>,
    /// Whether the server shows action buttons; asked once it has answered.
    actions: Option<bool>,
    /// One listener per call for a click on its button (an updated notification keeps its id,
    /// so one listener covers every update).
    listeners: HashMap<String, (u32, JoinHandle<()>)>,
}

impl Desktop {
    /// A desktop with no notification shown yet.
    pub fn new() -> Desktop {
        Desktop::default()
    }

    /// Warnings carry the escalate button where the server supports actions.
    pub fn with_button(button: EscalateButton) -> Desktop {
        Desktop {
            button: Some(button),
            ..Desktop::default()
        }
    }

    /// The escalate button's label from now on (a reloaded `language`).
    pub fn set_button_label(&mut self, label: &str) {
        if let Some(b) = &mut self.button {
            b.label = label.to_string();
        }
    }

    async fn server_has_actions(&mut self) -> bool {
        if let Some(a) = self.actions {
            return a;
        }
        // The capability query is blocking D-Bus I/O: keep it off the runtime's workers.
        // A detached thread, not the runtime's blocking pool: a hung server must not hold up
        // the shutdown of the runtime.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = std::thread::Builder::new()
            .name("callguard-notify-caps".into())
            .spawn(move || {
                let _ = tx.send(notify_rust::get_capabilities());
            });
        match tokio::time::timeout(DBUS_TIMEOUT, rx).await {
            Ok(Ok(Ok(caps))) => {
                let a = caps.iter().any(|c| c == "actions");
                if !a {
                    tracing::info!(
                        "the notification server shows no action buttons: escalate with `callguard escalate` instead"
                    );
                }
                self.actions = Some(a);
                a
            }
            // No server (yet): ask again next time.
            _ => false,
        }
    }

    /// Shows (or updates) the notification under `key` (the call id for warnings, so each call
    /// has one). `Ok(id)` or the reason it is not shown.
    pub async fn show(&mut self, call_id: &str, n: &Shown) -> Result<u32, String> {
        let mut note = Notification::new();
        note.appname(APP_NAME)
            .summary(&n.summary)
            .body(&n.body)
            .icon("dialog-warning")
            .hint(notify_rust::Hint::Category("callguard.warning".into()));
        match n.kind {
            WarningKind::Escalate => {
                note.urgency(Urgency::Normal).timeout(Timeout::Default);
            }
            WarningKind::Terminate => {
                note.urgency(Urgency::Critical).timeout(Timeout::Never);
            }
        }
        if let Some(prev) = self.ids.get(call_id) {
            note.id(*prev);
        }
        let button = match self.button.clone() {
            Some(b) if self.server_has_actions().await => {
                note.action(ESCALATE_ACTION, &b.label);
                Some(b)
            }
            _ => None,
        };
        let shown = match tokio::time::timeout(DBUS_TIMEOUT, note.show_async()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "the notification server did not answer within {DBUS_TIMEOUT:?}"
            )),
        };
        match shown {
            Ok(handle) => {
                if self.warned {
                    tracing::info!("notification server is available again");
                    self.warned = false;
                }
                let id = handle.id();
                self.ids.insert(call_id.to_string(), id);
                if let Some(b) = button {
                    self.listen(call_id, handle, b);
                }
                Ok(id)
            }
            Err(e) => {
                let reason = format!("no notification server on the session bus ({e})");
                if !self.warned {
                    tracing::warn!(error = %e,
                        "cannot show desktop notifications: warnings go to the log (and the lead, if configured) only");
                    self.warned = true;
                }
                Err(reason)
            }
        }
    }

    /// Shows a short confirmation of what the agent just did (a mark, a note, a call for help).
    /// There is one confirmation at a time: each replaces the one before.
    pub async fn confirm(&mut self, summary: &str, body: &str) -> Result<u32, String> {
        let mut note = Notification::new();
        note.appname(APP_NAME)
            .summary(summary)
            .body(body)
            .icon("emblem-ok-symbolic")
            .hint(notify_rust::Hint::Category("callguard.confirm".into()))
            .urgency(Urgency::Normal)
            .timeout(Timeout::Milliseconds(CONFIRM_MS));
        if let Some(prev) = self.ids.get(CONFIRM_KEY) {
            note.id(*prev);
        }
        match tokio::time::timeout(DBUS_TIMEOUT, note.show_async()).await {
            Ok(Ok(h)) => {
                self.ids.insert(CONFIRM_KEY.to_string(), h.id());
                Ok(h.id())
            }
            Ok(Err(e)) => Err(format!("no notification server on the session bus ({e})")),
            Err(_) => Err(format!(
                "the notification server did not answer within {DBUS_TIMEOUT:?}"
            )),
        }
    }

    /// Shows a problem a sink ran into (its own notification, critical: the agent must see it).
    pub async fn show_problem(&mut self, p: &crate::events::Problem) -> Result<u32, String> {
        let mut note = Notification::new();
        note.appname(APP_NAME)
            .summary(&format!("callguard: {}", p.kind))
            .body(&crate::redact::redact(&p.text))
            .icon("dialog-error")
            .urgency(Urgency::Critical)
            .timeout(Timeout::Never);
        match tokio::time::timeout(DBUS_TIMEOUT, note.show_async()).await {
            Ok(r) => r
                .map(|h| h.id())
                .map_err(|e| format!("no notification server on the session bus ({e})")),
            Err(_) => Err(format!(
                "the notification server did not answer within {DBUS_TIMEOUT:?}"
            )),
        }
    }

    /// Forgets the call's notification; a critical one stays until the agent closes it, so the
    /// agent still sees what happened after hanging up.
    pub fn call_ended(&mut self, call_id: &str) {
        // The call is over: its buttons no longer call anyone.
        for key in [call_id.to_string(), rules_key(call_id), end_key(call_id)] {
            self.ids.remove(&key);
            if let Some((_, task)) = self.listeners.remove(&key) {
                task.abort();
            }
        }
    }

    fn listen(&mut self, key: &str, handle: NotificationHandle, button: EscalateButton) {
        let id = handle.id();
        if let Some((listening, task)) = self.listeners.get(key)
            && *listening == id
            && !task.is_finished()
        {
            return;
        }
        // A rule notice's key is the call id plus a suffix: the button is about the call.
        let call = key
            .strip_suffix("\u{1f}rules")
            .or_else(|| key.strip_suffix("\u{1f}end"))
            .unwrap_or(key)
            .to_string();
        let task = tokio::spawn(async move {
            let mut clicked = false;
            handle
                .wait_for_action_async(|r| {
                    clicked = matches!(r, NotificationResponse::Action(a) if a == ESCALATE_ACTION);
                })
                .await;
            if !clicked {
                return;
            }
            tracing::info!(call_id = %call, "the agent pressed the escalate button");
            let (reply, rx) = oneshot::channel();
            let cmd = Command::Escalate {
                call_id: Some(call.clone()),
                note: None,
                source: "notification".into(),
                reply,
            };
            if button.commands.send(cmd).await.is_err() {
                return;
            }
            match rx.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(call_id = %call, error = %e, "escalate button: not escalated")
                }
                Err(_) => {}
            }
        });
        self.listeners.insert(key.to_string(), (id, task));
    }
}

/// How long a confirmation stays on screen.
pub const CONFIRM_MS: u32 = 6000;

/// The key of the agent's confirmation (one for all calls: the latest replaces the previous).
const CONFIRM_KEY: &str = "\u{1f}confirm";

/// The critical notice `callguard escalate` / `mark` show by themselves when no daemon answers:
/// under a desktop shortcut nobody sees the command's own output.
pub async fn show_not_running(lang: Language) -> Result<u32, String> {
    let (summary, body) = crate::alerts::text::not_running(lang);
    let mut note = Notification::new();
    note.appname(APP_NAME)
        .summary(summary)
        .body(body)
        .icon("dialog-error")
        .hint(notify_rust::Hint::Category("callguard.not_running".into()))
        .urgency(Urgency::Critical)
        .timeout(Timeout::Never);
    match tokio::time::timeout(DBUS_TIMEOUT, note.show_async()).await {
        Ok(r) => r.map(|h| h.id()).map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "the notification server did not answer within {DBUS_TIMEOUT:?}"
        )),
    }
}

/// A configuration problem for the agent's screen: a reload refused (`critical` false: the
/// daemon goes on as before) or a start refused (`critical`: nothing runs). Never expires, so
/// it is there when someone looks.
pub async fn show_config_problem(summary: &str, body: &str, critical: bool) -> Result<u32, String> {
    let mut note = Notification::new();
    note.appname(APP_NAME)
        .summary(summary)
        .body(body)
        .icon(if critical {
            "dialog-error"
        } else {
            "dialog-warning"
        })
        .hint(notify_rust::Hint::Category("callguard.config".into()))
        .urgency(if critical {
            Urgency::Critical
        } else {
            Urgency::Normal
        })
        .timeout(Timeout::Never);
    match tokio::time::timeout(DBUS_TIMEOUT, note.show_async()).await {
        Ok(r) => r.map(|h| h.id()).map_err(|e| e.to_string()),
        Err(_) => Err(format!(
            "the notification server did not answer within {DBUS_TIMEOUT:?}"
        )),
    }
}

/// The key of a call's harassment-rule notification (separate from its time warning, which a
/// rule notice must not replace).
pub fn rules_key(call_id: &str) -> String {
    format!("{call_id}\u{1f}rules")
}

/// The key of a call's "grounds to end" notice.
pub fn end_key(call_id: &str) -> String {
    format!("{call_id}\u{1f}end")
}
