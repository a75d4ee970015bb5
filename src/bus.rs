//! Fan-out from the call tracker to its sinks. Every sink gets its own unbounded queue so a slow
//! sink (a D-Bus call, a disk flush) never delays the tracker or another sink, and no action is
//! ever dropped: warnings are too important for a lossy broadcast.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{broadcast, mpsc};

use crate::events::{Action, Report};

/// Capacity of the report broadcast; reports are for people and may be dropped by laggards.
const REPORT_CAPACITY: usize = 1024;

/// The tracker's side of the fan-out.
#[derive(Clone)]
pub struct Bus {
    subscribers: Vec<Subscriber>,
    reports: broadcast::Sender<Report>,
}

#[derive(Clone)]
struct Subscriber {
    name: String,
    tx: mpsc::UnboundedSender<Action>,
    wants_media: bool,
    /// Set once its death has been logged (the supervisor stops the daemon).
    dead: Arc<AtomicBool>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Bus {
        let (reports, _) = broadcast::channel(REPORT_CAPACITY);
        Bus {
            subscribers: Vec::new(),
            reports,
        }
    }

    /// Adds a sink. `wants_media`: also receive audio frames (the recorder).
    pub fn subscribe(&mut self, wants_media: bool) -> mpsc::UnboundedReceiver<Action> {
        self.subscribe_named("sink", wants_media)
    }

    /// Adds a sink under its part name (the name a dead sink is reported by).
    pub fn subscribe_named(
        &mut self,
        name: &str,
        wants_media: bool,
    ) -> mpsc::UnboundedReceiver<Action> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push(Subscriber {
            name: name.to_string(),
            tx,
            wants_media,
            dead: Arc::new(AtomicBool::new(false)),
        });
        rx
    }

    /// A receiver of reports (demo timeline, status, tests).
    pub fn reports(&self) -> broadcast::Receiver<Report> {
        self.reports.subscribe()
    }

    /// A sender for sinks to publish their reports.
    pub fn report_sender(&self) -> broadcast::Sender<Report> {
        self.reports.clone()
    }

    /// Sends an action to every interested sink. A sink that has stopped is an error, logged
    /// once with its name (the supervisor stops the daemon when a sink dies); the others still
    /// get the action.
    pub fn publish(&self, action: Action) {
        let media = action.is_media();
        for sub in &self.subscribers {
            if media && !sub.wants_media {
                continue;
            }
            if sub.tx.send(action.clone()).is_err() && !sub.dead.swap(true, Ordering::Relaxed) {
                tracing::error!(sink = %sub.name,
                    "sink `{}` has stopped: its actions are lost until callguard restarts", sub.name);
            }
        }
    }

    /// Names of the sinks that have stopped taking actions.
    pub fn dead_sinks(&self) -> Vec<String> {
        self.subscribers
            .iter()
            .filter(|s| s.tx.is_closed())
            .map(|s| s.name.clone())
            .collect()
    }

    /// Publishes a report; nobody listening is fine.
    pub fn report(&self, report: Report) {
        let _ = self.reports.send(report);
    }
}
