//! Team-lead pings: the sink that turns warnings with `notify_lead`, the agent's own call for
//! help, marks that fire harassment rules and sink problems into webhook pings, stores each in the durable outbox before the first
//! send, and retries it until delivered, refused for good, or 24 h old.

pub mod health;
pub mod outbox;
pub mod payload;
pub mod sender;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Language, WebhookConfig};
use crate::events::{Action, CallInfo, EscalationReason, Report};
use crate::queue::{Deliver, Outcome as QueueOutcome};
use outbox::{Delivery, Outbox};
use payload::{Origin, Ping};
use sender::{Outcome, RetryPolicy};

/// What the sink needs from the configuration.
#[derive(Debug, Clone)]
pub struct EscalationOptions {
    /// Receivers.
    pub webhooks: Vec<WebhookConfig>,
    /// Facts shared by every ping.
    pub origin: Origin,
    /// Retry spacing and lifetime.
    pub retry: RetryPolicy,
    /// `<data dir>/outbox`.
    pub outbox_dir: PathBuf,
    /// Pings of one call within this time of the previous one are merged (`escalation.coalesce`).
    pub coalesce: Duration,
    /// Where sealed records go; `None` when nothing is recorded (`evidence.source = "off"`).
    pub evidence_dir: Option<PathBuf>,
}

impl EscalationOptions {
    /// From the configuration.
    pub fn from_config(cfg: &Config) -> EscalationOptions {
        EscalationOptions {
            webhooks: cfg.escalation.webhook.clone(),
            origin: Origin {
                agent_name: cfg.agent.name.clone(),
                host: hostname(),
                language: cfg.language,
            },
            retry: RetryPolicy {
                initial: cfg.escalation.retry_initial,
                max: cfg.escalation.retry_max,
                retry_for: cfg.escalation.retry_for,
            },
            outbox_dir: outbox_dir(cfg),
            coalesce: cfg.escalation.coalesce,
            evidence_dir: (cfg.evidence.source != crate::config::EvidenceSource::Off)
                .then(|| cfg.evidence_dir()),
        }
    }
}

/// Where the outbox lives for `cfg`.
pub fn outbox_dir(cfg: &Config) -> PathBuf {
    outbox::dir(cfg)
}

/// This machine's host name (as team leads see it).
pub fn hostname() -> String {
    crate::host::name()
}

/// A fresh ping id: 128 random bits, hex.
fn new_ping_id() -> String {
    let mut buf = [0u8; 16];
    if getrandom::fill(&mut buf).is_err() {
        // No randomness: time and process id still make a key unique on this workstation.
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        buf[..8].copy_from_slice(&nanos.to_le_bytes());
        buf[8..12].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex::encode(buf)
}

fn now() -> DateTime<FixedOffset> {
    chrono::Local::now().fixed_offset()
}

/// Delivers stored pings over HTTP and tells people how it went.
struct PingReceiver {
    client: reqwest::Client,
    reports: broadcast::Sender<Report>,
}

impl Deliver<Delivery> for PingReceiver {
    async fn deliver(&self, d: &Delivery) -> QueueOutcome {
        match sender::attempt(&self.client, d).await {
            Outcome::Delivered(status) => QueueOutcome::Delivered(status.to_string()),
            // HTTP client errors repeat the full URL, token included.
            Outcome::Retry { reason, after } => QueueOutcome::Retry {
                after,
                error: crate::redact::redact(&reason),
            },
            Outcome::Permanent(reason) => QueueOutcome::Permanent(crate::redact::redact(&reason)),
        }
    }

    fn on_delivered(&self, e: &outbox::Entry) {
        let d = &e.item;
        let receiver = crate::config::mask_url(&d.url);
        let status = e.receipt.as_deref().unwrap_or("?");
        tracing::info!(ping_id = %d.ping_id, kind = %d.kind, call_id = %d.call_id,
            receiver = %receiver, status, attempts = e.attempts, "team-lead ping delivered");
        let _ = self.reports.send(Report::Note(format!(
            "team-lead ping ({}) delivered to {receiver} (HTTP {status})",
            d.kind
        )));
    }

    fn on_retry(&self, e: &outbox::Entry, delay: std::time::Duration) {
        let d = &e.item;
        let receiver = crate::config::mask_url(&d.url);
        let reason = e.last_error.as_deref().unwrap_or_default();
        tracing::warn!(ping_id = %d.ping_id, receiver = %receiver, attempts = e.attempts,
            error = %reason, retry_in = %humantime::format_duration(round(delay)),
            "team-lead ping not delivered yet; will retry");
        let _ = self.reports.send(Report::Note(format!(
            "team-lead ping ({}) to {receiver} not delivered ({reason}); retry in {}",
            d.kind,
            humantime::format_duration(round(delay))
        )));
    }

    fn on_failed(&self, e: &outbox::Entry) {
        let d = &e.item;
        let receiver = crate::config::mask_url(&d.url);
        let reason = e.failed.clone().unwrap_or_default();
        tracing::error!(ping_id = %d.ping_id, kind = %d.kind, call_id = %d.call_id,
            receiver = %receiver, attempts = e.attempts, reason = %reason,
            "TEAM-LEAD PING FAILED PERMANENTLY: the lead was not told; check the webhook (see `callguard status`)");
        let _ = self
            .reports
            .send(Report::PingFailed(crate::events::PingFailure {
                ping_id: d.ping_id.clone(),
                kind: d.kind.clone(),
                call_id: d.call_id.clone(),
                receiver,
                reason,
            }));
    }

    fn on_resend(&self, e: &outbox::Entry) {
        let d = &e.item;
        tracing::info!(ping_id = %d.ping_id, kind = %d.kind, call_id = %d.call_id,
            attempts = e.attempts, "resending a ping left pending by the previous run");
    }
}

/// Runs until the tracker closes the queue. Pings still pending then stay in the outbox (they
/// are already on disk) and are sent again at the next start.
pub async fn run(
    opts: EscalationOptions,
    mut actions: mpsc::UnboundedReceiver<Action>,
    reports: broadcast::Sender<Report>,
    shutdown: CancellationToken,
) {
    let client = match sender::client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the HTTP client: team-lead pings are OFF");
            while actions.recv().await.is_some() {}
            return;
        }
    };
    let outbox = Outbox::new(opts.outbox_dir.clone());
    if let Err(e) = outbox.create() {
        tracing::error!(error = %e,
            "cannot create the ping outbox: pings are sent but do not survive a restart");
    }
    let pruned = outbox.prune_delivered(outbox::DELIVERED_KEEP, now());
    if pruned > 0 {
        tracing::debug!(pruned, "old delivery receipts removed");
    }
    let (tx, rx) = crate::queue::channel(outbox.queue().clone());
    // The evidence sink's seal tells where a call's record is, for its closing ping.
    let mut sealed = reports.subscribe();
    let receiver = Arc::new(PingReceiver { client, reports });
    let worker = crate::queue::run(rx, receiver, opts.retry, shutdown.clone());
    if opts.webhooks.is_empty() {
        tracing::info!("no [[escalation.webhook]] configured: team leads are not pinged");
    }
    let mut opts = opts;
    let intake = async move {
        let send = |mut ping: Ping, opts: &EscalationOptions| {
            payload::finish(&mut ping, opts.origin.language);
            for d in deliveries(&ping, &opts.webhooks, opts.origin.language) {
                // On disk before the first attempt, so a crash mid-send loses nothing.
                let ping_id = d.ping_id.clone();
                if let Err(e) = tx.send(d) {
                    tracing::error!(error = %e, ping_id = %ping_id,
                        "cannot store the ping in the outbox; sending it anyway");
                }
            }
        };
        let mut calls: HashMap<String, CallPings> = HashMap::new();
        // Calls that ended after pinging the lead: their closing ping waits for the seal (to
        // say where the record is), but never longer than SEAL_WAIT.
        let mut ending: HashMap<String, Ending> = HashMap::new();
        let mut sealed_open = true;
        loop {
            let next_due = calls
                .values()
                .filter_map(|c| c.flush_at)
                .chain(ending.values().map(|e| e.deadline))
                .min();
            tokio::select! {
                action = actions.recv() => {
                    let Some(action) = action else { break };
                    let ping = match action {
                        Action::CallStarted(call) => {
                            calls.insert(call.call_id.clone(), CallPings::new(call));
                            None
                        }
                        Action::CallEnded { call, duration, .. } => {
                            if let Some(mut c) = calls.remove(&call.call_id) {
                                // What was held back goes now, before the call's closing ping.
                                if let Some(p) = c.take_held(opts.origin.language) {
                                    send(p, &opts);
                                }
                                if c.pinged {
                                    let end = Ending {
                                        call: call.clone(),
                                        duration,
                                        level: c.level,
                                        deadline: Instant::now() + SEAL_WAIT,
                                    };
                                    match &opts.evidence_dir {
                                        Some(_) => {
                                            ending.insert(call.call_id.clone(), end);
                                        }
                                        None => send(end.ping(RecordPlace::Off, &opts), &opts),
                                    }
                                }
                            }
                            None
                        }
                        Action::Warning(call, w) if w.notify_lead => Some(payload::for_warning(
                            new_ping_id(),
                            &call,
                            &w,
                            &opts.origin,
                            now(),
                        )),
                        Action::Escalation {
                            call,
                            elapsed,
                            note,
                            source,
                        } => {
                            // The level rise of a call for help follows this action.
                            if let Some(c) = calls.get_mut(&call.call_id) {
                                c.level = c.level.max(crate::harassment::Level::EMOTIONAL.0);
                            }
                            Some(payload::for_escalation(
                                new_ping_id(),
                                &call,
                                elapsed,
                                note.as_deref(),
                                &source,
                                &opts.origin,
                                now(),
                            ))
                        }
                        // Each rule fires once per call, and the level crosses 3 once: either is
                        // news for the lead.
                        Action::Marked(ev) => {
                            if let Some(c) = calls.get_mut(&ev.call.call_id) {
                                c.level = c.level.max(ev.level.0);
                            }
                            ev.pings_lead()
                                .then(|| payload::for_mark(new_ping_id(), &ev, &opts.origin, now()))
                        }
                        // Pings from now on go to the new receivers, in the new language; those
                        // already in the outbox keep the receiver they were made for.
                        Action::Reconfigured(cfg) => {
                            opts.webhooks = cfg.escalation.webhook.clone();
                            opts.origin.language = cfg.language;
                            opts.coalesce = cfg.escalation.coalesce;
                            if opts.webhooks.is_empty() {
                                tracing::info!("no [[escalation.webhook]] configured any more: team leads are not pinged");
                            }
                            None
                        }
                        Action::LevelChanged { call, to, .. } => {
                            if let Some(c) = calls.get_mut(&call.call_id) {
                                c.level = c.level.max(to.0);
                            }
                            None
                        }
                        Action::Problem(p) => {
                            let call = p
                                .call_id
                                .as_ref()
                                .and_then(|id| calls.get(id))
                                .map(|c| c.info.clone());
                            Some(payload::for_problem(
                                new_ping_id(),
                                &p,
                                call.as_deref(),
                                &opts.origin,
                                now(),
                            ))
                        }
                        _ => None,
                    };
                    if let Some(mut ping) = ping {
                        ping.reasons = reasons(&ping);
                        match calls.get_mut(&ping.call_id) {
                            Some(c) => {
                                if ping.level.is_none() {
                                    ping.level = Some(c.level);
                                }
                                if let Some(p) = c.offer(ping, opts.coalesce) {
                                    send(p, &opts);
                                }
                            }
                            None => send(ping, &opts),
                        }
                    }
                }
                r = sealed.recv(), if sealed_open => {
                    match r {
                        Ok(Report::Sealed { call_id, dir, .. }) => {
                            if let Some(end) = ending.remove(&call_id) {
                                send(
                                    end.ping(RecordPlace::Sealed(dir.display().to_string()), &opts),
                                    &opts,
                                );
                            }
                        }
                        // Nobody reports seals any more: closing pings wait for their deadline
                        // (a closed receiver answers at once, and would spin this loop).
                        Err(broadcast::error::RecvError::Closed) => sealed_open = false,
                        _ => {}
                    }
                }
                _ = sleep_until(next_due), if next_due.is_some() => {
                    let t = Instant::now();
                    for c in calls.values_mut() {
                        if c.flush_at.is_some_and(|at| at <= t)
                            && let Some(p) = c.take_held(opts.origin.language)
                        {
                            send(p, &opts);
                        }
                    }
                    let due: Vec<String> = ending
                        .iter()
                        .filter(|(_, e)| e.deadline <= t)
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in due {
                        if let Some(end) = ending.remove(&id) {
                            send(end.ping(RecordPlace::NotYet, &opts), &opts);
                        }
                    }
                }
            }
        }
        // Shutting down: nothing held back is lost; it goes to the outbox now.
        for c in calls.values_mut() {
            if let Some(p) = c.take_held(opts.origin.language) {
                send(p, &opts);
            }
        }
        for (_, end) in ending.drain() {
            send(end.ping(RecordPlace::NotYet, &opts), &opts);
        }
        // Dropping the sender ends the worker once the tracker is gone.
        drop(tx);
    };
    tokio::join!(intake, worker);
    tracing::debug!("escalation sink stopped");
}

fn deliveries(ping: &Ping, hooks: &[WebhookConfig], lang: Language) -> Vec<Delivery> {
    hooks
        .iter()
        .map(|h| Delivery {
            ping_id: ping.id.clone(),
            kind: ping.kind.clone(),
            call_id: ping.call_id.clone(),
            url: h.url.clone(),
            format: h.format,
            secret_file: h.secret_file.clone(),
            body: payload::render(ping, h.format, lang),
            reasons: ping.reasons.clone(),
        })
        .collect()
}

/// The incident-record reasons a ping answers (see `evidence::incident`).
fn reasons(ping: &Ping) -> Vec<String> {
    let reasons = match ping.kind.as_str() {
        "escalate" | "terminate" => vec![EscalationReason::Warning {
            kind: ping.kind.clone(),
            after_secs: ping.after_secs.unwrap_or_default(),
        }],
        "manual" => vec![EscalationReason::Manual],
        "mark" => {
            let mut r: Vec<EscalationReason> = ping
                .rules
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(EscalationReason::Rule)
                .collect();
            if let (Some(to), Some(mark)) = (ping.level_raised_to, &ping.mark) {
                r.push(EscalationReason::Level {
                    to,
                    mark: mark.clone(),
                });
            }
            r
        }
        _ => Vec::new(),
    };
    reasons.iter().map(ToString::to_string).collect()
}

/// How long a call's closing ping waits for its seal before it goes without the folder.
const SEAL_WAIT: Duration = Duration::from_secs(30);

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The pings of one call in progress.
struct CallPings {
    info: Arc<CallInfo>,
    level: u8,
    /// The lead heard about this call (so its end closes it with a ping).
    pinged: bool,
    last_sent: Option<Instant>,
    /// Pings raised within `coalesce` of the last one sent, merged when `flush_at` comes.
    held: Vec<Ping>,
    flush_at: Option<Instant>,
}

impl CallPings {
    fn new(info: Arc<CallInfo>) -> CallPings {
        CallPings {
            info,
            level: 1,
            pinged: false,
            last_sent: None,
            held: Vec::new(),
            flush_at: None,
        }
    }

    /// The ping to send now, or `None` when it is held to be merged with what follows.
    fn offer(&mut self, ping: Ping, coalesce: Duration) -> Option<Ping> {
        self.pinged = true;
        let t = Instant::now();
        let quiet = self.last_sent.is_none_or(|last| t >= last + coalesce);
        if coalesce.is_zero() || (quiet && self.held.is_empty()) {
            self.last_sent = Some(t);
            return Some(ping);
        }
        self.held.push(ping);
        if self.flush_at.is_none() {
            self.flush_at = Some(self.last_sent.map_or(t, |last| last + coalesce));
        }
        None
    }

    /// The held pings merged into one (counts as sent now).
    fn take_held(&mut self, lang: Language) -> Option<Ping> {
        self.flush_at = None;
        let held = std::mem::take(&mut self.held);
        let mut merged = payload::merge(held, lang)?;
        merged.level = Some(merged.level.unwrap_or(1).max(self.level));
        self.last_sent = Some(Instant::now());
        Some(merged)
    }
}

/// A call that ended after pinging the lead, waiting for its seal.
struct Ending {
    call: Arc<CallInfo>,
    duration: Duration,
    level: u8,
    deadline: Instant,
}

enum RecordPlace {
    Sealed(String),
    NotYet,
    Off,
}

impl Ending {
    fn ping(&self, place: RecordPlace, opts: &EscalationOptions) -> Ping {
        let root = opts
            .evidence_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let (record, pending) = match &place {
            RecordPlace::Sealed(dir) => (Some(dir.as_str()), false),
            RecordPlace::NotYet => (Some(root.as_str()), true),
            RecordPlace::Off => (None, false),
        };
        let mut p = payload::for_call_end(
            new_ping_id(),
            &self.call,
            self.duration,
            self.level,
            record,
            pending,
            &opts.origin,
            now(),
        );
        p.reasons = reasons(&p);
        p
    }
}

fn round(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(d.as_millis() as u64)
}

/// Team-lead pings as a [`Sink`](crate::sink::Sink).
pub struct EscalationSink {
    opts: EscalationOptions,
    /// The agent's extension, which the doctor's test ping names (real pings take the call's).
    agent: String,
}

impl EscalationSink {
    /// With these options.
    pub fn new(opts: EscalationOptions) -> EscalationSink {
        EscalationSink {
            opts,
            agent: String::new(),
        }
    }

    /// The sink the daemon runs for `cfg`.
    pub fn from_config(cfg: &Config) -> EscalationSink {
        EscalationSink {
            opts: EscalationOptions::from_config(cfg),
            agent: cfg.agent.extension.clone(),
        }
    }
}

impl crate::sink::Sink for EscalationSink {
    fn name(&self) -> &str {
        "escalation"
    }

    fn run(
        self: Box<Self>,
        actions: crate::sink::Actions,
        ctx: crate::sink::SinkContext,
    ) -> crate::sink::Running {
        Box::pin(async move {
            run(self.opts, actions, ctx.reports, ctx.shutdown).await;
            Ok(())
        })
    }

    fn healthcheck<'a>(&'a self, opts: &'a crate::sink::HealthOptions) -> crate::sink::Checks<'a> {
        Box::pin(async move {
            let from = health::Sender {
                opts: &self.opts,
                agent: &self.agent,
            };
            health::checks(&from, opts.send_test_ping, opts.language).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_documents_the_defaults() {
        let cfg = Config::from_toml(include_str!("../../config/callguard.toml")).unwrap();
        let def = Config::default();
        assert_eq!(cfg.escalation.retry_initial, def.escalation.retry_initial);
        assert_eq!(cfg.escalation.retry_max, def.escalation.retry_max);
        assert_eq!(cfg.escalation.retry_for, def.escalation.retry_for);
        assert_eq!(cfg.control.socket, def.control.socket);
        let opts = EscalationOptions::from_config(&cfg);
        assert_eq!(opts.retry.max, std::time::Duration::from_secs(300));
        assert!(opts.outbox_dir.ends_with("outbox"));
    }

    #[test]
    fn ping_ids_are_unique_hex() {
        let (a, b) = (new_ping_id(), new_ping_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
