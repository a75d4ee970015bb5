//! The always-visible call timer: a StatusNotifierItem (the system-tray protocol that KDE, GNOME
//! with AppIndicator support, XFCE and most panels host) showing the current call's elapsed
//! time, level and next warning, with a menu to call the team lead, mark what the caller does
//! and see the state of things.
//!
//! The item asks the call tracker for its state once a second while a call is in progress, and
//! once after anything happens; with no call it sleeps. Where no tray host is present it says so
//! once in the log and goes on (it registers by itself when a panel starts later).

pub mod keys;
pub mod view;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ksni::menu::{StandardItem, SubMenu};
use ksni::{MenuItem, Tray, TrayMethods};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::calls::Command;
use crate::config::Language;
use crate::events::{Action, Report};
use crate::harassment::{ALL_KINDS, MarkKind};
pub use view::View;

/// How often the elapsed time is refreshed while a call is in progress.
pub const REFRESH: Duration = Duration::from_secs(1);

/// `source` of escalations and marks made from the tray menu.
pub const SOURCE: &str = "tray";

/// The item as the tray host sees it.
pub struct CallTray {
    lang: Language,
    view: View,
    commands: mpsc::Sender<Command>,
    /// Whether "no tray host" was already said (the watcher may come and go).
    said_offline: Arc<AtomicBool>,
}

impl CallTray {
    fn escalate(&mut self) {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Escalate {
            call_id: None,
            note: None,
            source: SOURCE.into(),
            reply,
        };
        self.send(cmd, async move {
            match rx.await {
                Ok(Ok(call)) => {
                    tracing::info!(call_id = %call.call_id, "tray: the agent called the team lead")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "tray: team lead not called"),
                Err(_) => {}
            }
        });
    }

    fn mark(&mut self, kind: MarkKind) {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Mark {
            kind,
            quote: None,
            call_id: None,
            reply,
        };
        self.send(cmd, async move {
            if let Ok(Err(e)) = rx.await {
                tracing::warn!(error = %e, mark = kind.as_str(), "tray: not marked");
            }
        });
    }

    /// Hands `cmd` to the tracker; the menu callback must not block, so a full queue is logged.
    fn send(&self, cmd: Command, then: impl std::future::Future<Output = ()> + Send + 'static) {
        match self.commands.try_send(cmd) {
            Ok(()) => {
                tokio::spawn(then);
            }
            Err(e) => tracing::warn!(error = %e, "tray: the call tracker did not take the request"),
        }
    }
}

impl Tray for CallTray {
    // A click on the timer opens the menu: the agent's hand is on the mouse anyway.
    const MENU_ON_ACTIVATE: bool = true;

    fn id(&self) -> String {
        "callguard".into()
    }

    fn title(&self) -> String {
        self.view.title(self.lang)
    }

    fn category(&self) -> ksni::Category {
        ksni::Category::Communications
    }

    fn status(&self) -> ksni::Status {
        if self.view.needs_attention() {
            ksni::Status::NeedsAttention
        } else {
            ksni::Status::Active
        }
    }

    fn icon_name(&self) -> String {
        "call-start".into()
    }

    fn attention_icon_name(&self) -> String {
        "dialog-warning".into()
    }

    fn icon_pixmap(&self) -> Vec<ksni::Icon> {
        vec![view::icon(self.view.level())]
    }

    fn attention_icon_pixmap(&self) -> Vec<ksni::Icon> {
        vec![view::icon(self.view.level())]
    }

    fn tool_tip(&self) -> ksni::ToolTip {
        let (title, description) = self.view.tooltip(self.lang);
        ksni::ToolTip {
            icon_name: String::new(),
            icon_pixmap: Vec::new(),
            title,
            description,
        }
    }

    fn menu(&self) -> Vec<MenuItem<Self>> {
        let lang = self.lang;
        let ja = lang == Language::Ja;
        let in_call = self.view.call.is_some();
        let mut items: Vec<MenuItem<Self>> = vec![
            StandardItem {
                label: self.view.headline(lang),
                enabled: false,
                ..Default::default()
            }
            .into(),
            MenuItem::Separator,
            StandardItem {
                label: if ja {
                    "上長を呼ぶ"
                } else {
                    "Call team lead"
                }
                .into(),
                icon_name: "call-start".into(),
                enabled: in_call,
                activate: Box::new(|t: &mut Self| t.escalate()),
                ..Default::default()
            }
            .into(),
        ];
        let marks = ALL_KINDS
            .iter()
            .map(|&kind| {
                let count = self.view.call.as_ref().map_or(0, |c| c.count(kind));
                let label = match (ja, count) {
                    (true, 0) => kind.label_ja().to_string(),
                    (true, n) => format!("{}（{n} 回）", kind.label_ja()),
                    (false, 0) => kind.label_en().to_string(),
                    (false, n) => format!("{} ({n})", kind.label_en()),
                };
                StandardItem {
                    label,
                    enabled: in_call,
                    activate: Box::new(move |t: &mut Self| t.mark(kind)),
                    ..Default::default()
                }
                .into()
            })
            .collect();
        items.push(
            SubMenu {
                label: if ja { "記録する" } else { "Mark" }.into(),
                enabled: in_call,
                submenu: marks,
                ..Default::default()
            }
            .into(),
        );
        let state = self
            .view
            .state_lines(lang)
            .into_iter()
            .map(|label| {
                StandardItem {
                    label,
                    enabled: false,
                    ..Default::default()
                }
                .into()
            })
            .collect();
        items.push(
            SubMenu {
                label: if ja { "状況" } else { "Status" }.into(),
                submenu: state,
                ..Default::default()
            }
            .into(),
        );
        items
    }

    fn watcher_online(&self) {
        tracing::info!("system tray found: the call timer is shown");
        self.said_offline.store(false, Ordering::Relaxed);
    }

    fn watcher_offline(&self, reason: ksni::OfflineReason) -> bool {
        if !self.said_offline.swap(true, Ordering::Relaxed) {
            tracing::warn!(reason = ?reason,
                "no system tray (StatusNotifierWatcher) on the session bus: the call timer is not shown; warnings and hotkeys work as before");
        }
        // Keep the item: it registers as soon as a tray host appears.
        true
    }
}

/// Runs the tray item until the tracker closes the queue or `shutdown`.
pub async fn run(
    lang: Language,
    commands: mpsc::Sender<Command>,
    mut actions: mpsc::UnboundedReceiver<Action>,
    reports: broadcast::Sender<Report>,
    shutdown: CancellationToken,
) {
    let said_offline = Arc::new(AtomicBool::new(false));
    let mut lang = lang;
    let tray = CallTray {
        lang,
        view: View::default(),
        commands: commands.clone(),
        said_offline: said_offline.clone(),
    };
    // `assume_sni_available`: a panel that starts after the daemon (a slow login) still gets
    // the item; its absence goes to `watcher_offline`, said once.
    let handle = match tray.assume_sni_available(true).spawn().await {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(error = %e,
                "no system tray: the call timer is not shown (no session bus?); warnings and hotkeys work as before");
            let _ = reports.send(Report::Note(format!("tray not shown: {e}")));
            None
        }
    };
    let mut active = false;
    // Marks by kind per call, for the counts in the menu (the tracker's status only has totals).
    let mut counts: HashMap<String, HashMap<MarkKind, u32>> = HashMap::new();
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut handle = handle;
    loop {
        tokio::select! {
            // The item goes at shutdown; the queue is still drained until the tracker closes it.
            _ = shutdown.cancelled(), if handle.is_some() => {
                if let Some(h) = handle.take() {
                    h.shutdown().await;
                }
                continue;
            }
            a = actions.recv() => match a {
                Some(Action::Marked(ev)) => {
                    let by_kind = counts.entry(ev.call.call_id.clone()).or_default();
                    by_kind.clear();
                    for m in &ev.marks {
                        *by_kind.entry(m.kind).or_default() += 1;
                    }
                }
                Some(Action::CallEnded { call, .. }) => {
                    counts.remove(&call.call_id);
                }
                Some(Action::Reconfigured(cfg)) => lang = cfg.language,
                Some(_) => {}
                None => break,
            },
            _ = tick.tick(), if active && handle.is_some() => {}
        }
        let Some(handle) = &handle else { continue };
        let mut view = query(&commands).await;
        if let Some(call) = view.call.as_mut() {
            call.by_kind = counts.get(&call.call_id).cloned().unwrap_or_default();
        }
        active = view.call.is_some();
        handle
            .update(|t| {
                t.view = view;
                t.lang = lang;
            })
            .await;
    }
    if let Some(handle) = handle {
        handle.shutdown().await;
    }
}

/// The tray item as a [`Sink`](crate::sink::Sink) of the daemon.
pub struct TraySink {
    lang: Language,
}

impl TraySink {
    /// In `lang`.
    pub fn new(lang: Language) -> TraySink {
        TraySink { lang }
    }
}

impl crate::sink::Sink for TraySink {
    fn name(&self) -> &str {
        "tray"
    }

    fn run(
        self: Box<Self>,
        actions: crate::sink::Actions,
        ctx: crate::sink::SinkContext,
    ) -> crate::sink::Running {
        Box::pin(async move {
            run(self.lang, ctx.commands, actions, ctx.reports, ctx.shutdown).await;
            Ok(())
        })
    }
}

/// The tracker's state, as the tray shows it.
async fn query(commands: &mpsc::Sender<Command>) -> View {
    let (tx, rx) = oneshot::channel();
    if commands.send(Command::Status(tx)).await.is_err() {
        return View::default();
    }
    match tokio::time::timeout(Duration::from_secs(5), rx).await {
        Ok(Ok(status)) => View::from_status(&status),
        _ => View::default(),
    }
}
