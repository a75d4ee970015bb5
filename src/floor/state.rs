//! What the workstation knows about its floor link right now, for `status`, `doctor` and the
//! log: connection, stream, backlog, what was published, the last lead's ack.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use super::backlog::{Backlog, BacklogStats};
use super::link::LinkStatus;

/// Whether the `CALLGUARD` stream exists, as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    /// Not asked yet (or no connection since start).
    #[default]
    Unknown,
    /// The server stored an event, or said the stream exists.
    Present,
    /// The server says there is no such stream: events stay queued.
    Missing,
}

/// A lead's ack as the workstation received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckSeen {
    /// The call.
    pub call_id: String,
    /// The lead's display name.
    pub lead: String,
    /// When the lead took it.
    pub at: DateTime<FixedOffset>,
    /// Whether it was for the agent's current call (shown on the desktop).
    pub current: bool,
}

/// The floor link for `status` (serialized over the control socket).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FloorStatus {
    /// `floor.site`.
    pub site: String,
    /// The workstation's agent id on the bus.
    pub agent: String,
    /// The server URL(s), credentials masked.
    pub url: String,
    /// Connected now.
    pub connected: bool,
    /// The stream as last seen.
    pub stream: StreamState,
    /// The backlog.
    pub backlog: BacklogStats,
    /// Events the server has acknowledged since start.
    pub published: u64,
    /// When the server last acknowledged one.
    pub last_published: Option<DateTime<FixedOffset>>,
    /// The last error of the link or of a publish.
    pub last_error: Option<String>,
    /// The last lead's ack received.
    pub last_ack: Option<AckSeen>,
}

#[derive(Debug, Default)]
struct Inner {
    stream: StreamState,
    published: u64,
    last_published: Option<DateTime<FixedOffset>>,
    last_error: Option<String>,
    last_ack: Option<AckSeen>,
}

/// Shared between the floor sink's tasks and the control server.
#[derive(Debug)]
pub struct FloorState {
    site: String,
    agent: String,
    url: String,
    inner: Mutex<Inner>,
    link: Mutex<Option<Arc<LinkStatus>>>,
    backlog: Mutex<Option<Arc<Backlog>>>,
}

impl FloorState {
    /// A state for this workstation, nothing known yet.
    pub fn new(site: &str, agent: &str, url: &str) -> FloorState {
        FloorState {
            site: site.into(),
            agent: agent.into(),
            url: url.into(),
            inner: Mutex::new(Inner::default()),
            link: Mutex::new(None),
            backlog: Mutex::new(None),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The link and backlog this state reports on.
    pub fn attach(&self, link: Arc<LinkStatus>, backlog: Arc<Backlog>) {
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(link);
        *self.backlog.lock().unwrap_or_else(|p| p.into_inner()) = Some(backlog);
    }

    /// Records the stream's state; `true` when it just became missing (to say so once).
    pub fn set_stream(&self, s: StreamState) -> bool {
        let mut i = self.inner();
        let newly_missing = s == StreamState::Missing && i.stream != StreamState::Missing;
        i.stream = s;
        newly_missing
    }

    /// The stream as last seen.
    pub fn stream(&self) -> StreamState {
        self.inner().stream
    }

    /// One event acknowledged by the server.
    pub fn published(&self, at: DateTime<FixedOffset>) {
        self.published_many(1, at);
    }

    /// `n` events acknowledged by the server together.
    pub fn published_many(&self, n: u64, at: DateTime<FixedOffset>) {
        let mut i = self.inner();
        i.published += n;
        i.last_published = Some(at);
        i.stream = StreamState::Present;
        i.last_error = None;
    }

    /// A publish or link error.
    pub fn error(&self, e: String) {
        self.inner().last_error = Some(e);
    }

    /// A lead's ack.
    pub fn ack(&self, a: AckSeen) {
        self.inner().last_ack = Some(a);
    }

    /// Now.
    pub fn snapshot(&self) -> FloorStatus {
        let link = self
            .link
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|l| l.snapshot())
            .unwrap_or_default();
        let backlog = self
            .backlog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|b| b.stats())
            .unwrap_or_default();
        let i = self.inner();
        FloorStatus {
            site: self.site.clone(),
            agent: self.agent.clone(),
            url: self.url.clone(),
            connected: link.connected,
            stream: i.stream,
            backlog,
            published: i.published,
            last_published: i.last_published,
            last_error: i.last_error.clone().or(link.last_error),
            last_ack: i.last_ack.clone(),
        }
    }
}

impl FloorStatus {
    /// One line for `callguard status`.
    pub fn describe(&self) -> String {
        let link = if self.connected {
            "connected"
        } else {
            "NOT CONNECTED"
        };
        let stream = match self.stream {
            StreamState::Unknown => "stream not checked yet",
            StreamState::Present => "stream ok",
            StreamState::Missing => "STREAM MISSING (events stay queued)",
        };
        let mut s = format!(
            "{} ({}, site {}, agent {}), {stream}; backlog {} events / {} KiB of {} MiB; {} published",
            link,
            self.url,
            self.site,
            self.agent,
            self.backlog.events,
            self.backlog.bytes.div_ceil(1024),
            self.backlog.max_bytes / (1024 * 1024),
            self.published
        );
        if self.backlog.dropped_heartbeats > 0 {
            s.push_str(&format!(
                "; {} old heartbeats dropped",
                self.backlog.dropped_heartbeats
            ));
        }
        if let Some(e) = &self.backlog.not_on_disk {
            s.push_str(&format!(
                "; BACKLOG NOT ON DISK ({e}): events are sent from memory and written again when the disk takes them"
            ));
        }
        if let Some(e) = &self.last_error {
            s.push_str(&format!("; last error: {e}"));
        }
        if let Some(a) = &self.last_ack {
            s.push_str(&format!(
                "; ack: {} took {} at {}",
                a.lead,
                a.call_id,
                a.at.format("%H:%M:%S")
            ));
        }
        s
    }
}
