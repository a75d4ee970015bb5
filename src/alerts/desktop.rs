//! Desktop notifications over D-Bus (org.freedesktop.Notifications) with notify-rust's async
//! API. One notification per call, updated in place through its id.

use std::collections::HashMap;

use notify_rust::{Notification, NotificationHandle, Timeout, Urgency};

use crate::config::WarningKind;

/// Application name shown by the notification server.
pub const APP_NAME: &str = "callguard";

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
    handles: HashMap<String, NotificationHandle>,
    warned: bool,
}

impl Desktop {
    /// A desktop with no notification shown yet.
    pub fn new() -> Desktop {
        Desktop::default()
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
        if let Some(prev) = self.handles.get(call_id) {
            note.id(prev.id());
        }
        match note.show_async().await {
            Ok(handle) => {
                if self.warned {
                    tracing::info!("notification server is available again");
                    self.warned = false;
                }
                let id = handle.id();
                self.handles.insert(call_id.to_string(), handle);
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

    /// Shows a problem a sink ran into (its own notification, critical: the agent must see it).
    pub async fn show_problem(&mut self, p: &crate::events::Problem) -> Result<u32, String> {
        let mut note = Notification::new();
        note.appname(APP_NAME)
            .summary(&format!("callguard: {}", p.kind))
            .body(&p.text)
            .icon("dialog-error")
            .urgency(Urgency::Critical)
            .timeout(Timeout::Never);
        note.show_async()
            .await
            .map(|h| h.id())
            .map_err(|e| format!("no notification server on the session bus ({e})"))
    }

    /// Forgets the call's notification; a critical one stays until the agent closes it, so the
    /// agent still sees what happened after hanging up.
    pub fn call_ended(&mut self, call_id: &str) {
        self.handles.remove(call_id);
        self.handles.remove(&rules_key(call_id));
    }
}

/// The key of a call's harassment-rule notification (separate from its time warning, which a
/// rule notice must not replace).
pub fn rules_key(call_id: &str) -> String {
    format!("{call_id}\u{1f}rules")
}
