//! Team-lead pings: the sink that turns warnings with `notify_lead`, the agent's own call for
//! help, marks that fire harassment rules and sink problems into webhook pings, stores each in the durable outbox before the first
//! send, and retries it until delivered, refused for good, or 24 h old.

pub mod outbox;
pub mod payload;
pub mod sender;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, Utc};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Language, WebhookConfig};
use crate::events::{Action, CallInfo, Report};
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
        }
    }
}

/// Where the outbox lives for `cfg`.
pub fn outbox_dir(cfg: &Config) -> PathBuf {
    outbox::dir(cfg)
}

/// This machine's host name (as team leads see it).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
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
            Outcome::Retry { reason, after } => QueueOutcome::Retry {
                after,
                error: reason,
            },
            Outcome::Permanent(reason) => QueueOutcome::Permanent(reason),
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
        let _ = self.reports.send(Report::Note(format!(
            "team-lead ping ({}) to {receiver} FAILED: {reason}",
            d.kind
        )));
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
    let receiver = Arc::new(PingReceiver { client, reports });
    let worker = crate::queue::run(rx, receiver, opts.retry, shutdown.clone());
    if opts.webhooks.is_empty() {
        tracing::info!("no [[escalation.webhook]] configured: team leads are not pinged");
    }
    let intake = async move {
        let mut calls: HashMap<String, Arc<CallInfo>> = HashMap::new();
        // Each call's harassment level, so every ping about it carries the level.
        let mut levels: HashMap<String, u8> = HashMap::new();
        while let Some(action) = actions.recv().await {
            let ping = match action {
                Action::CallStarted(call) => {
                    calls.insert(call.call_id.clone(), call);
                    None
                }
                Action::CallEnded { call, .. } => {
                    calls.remove(&call.call_id);
                    levels.remove(&call.call_id);
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
                } => Some(payload::for_escalation(
                    new_ping_id(),
                    &call,
                    elapsed,
                    note.as_deref(),
                    &source,
                    &opts.origin,
                    now(),
                )),
                // Each rule fires once per call, and the level crosses 3 once: either is news
                // for the lead.
                Action::Marked(ev) => {
                    levels.insert(ev.call.call_id.clone(), ev.level.0);
                    ev.pings_lead()
                        .then(|| payload::for_mark(new_ping_id(), &ev, &opts.origin, now()))
                }
                Action::LevelChanged { call, to, .. } => {
                    levels.insert(call.call_id.clone(), to.0);
                    None
                }
                Action::Problem(p) => {
                    let call = p.call_id.as_ref().and_then(|id| calls.get(id)).cloned();
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
                if ping.level.is_none() {
                    ping.level = levels.get(&ping.call_id).copied();
                }
                for d in deliveries(&ping, &opts.webhooks, opts.origin.language) {
                    // On disk before the first attempt, so a crash mid-send loses nothing.
                    let ping_id = d.ping_id.clone();
                    if let Err(e) = tx.send(d) {
                        tracing::error!(error = %e, ping_id = %ping_id,
                            "cannot store the ping in the outbox; sending it anyway");
                    }
                }
            }
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
            reasons: reasons(ping),
        })
        .collect()
}

/// The incident-record reasons a ping answers (see `evidence::incident`).
fn reasons(ping: &Ping) -> Vec<String> {
    match ping.kind.as_str() {
        "escalate" | "terminate" => vec![format!(
            "warning:{} after {} s",
            ping.kind,
            ping.after_secs.unwrap_or_default()
        )],
        "manual" => vec!["manual".into()],
        "mark" => {
            let mut r = ping.rules.clone().unwrap_or_default();
            if let (Some(to), Some(mark)) = (ping.level_raised_to, &ping.mark) {
                r.push(format!("level {to} ({mark})"));
            }
            r
        }
        _ => Vec::new(),
    }
}

fn round(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(d.as_millis() as u64)
}

/// Team-lead pings as a [`Sink`](crate::sink::Sink).
pub struct EscalationSink {
    opts: EscalationOptions,
}

impl EscalationSink {
    /// With these options.
    pub fn new(opts: EscalationOptions) -> EscalationSink {
        EscalationSink { opts }
    }
}

impl crate::sink::Sink for EscalationSink {
    fn name(&self) -> &str {
        "escalation"
    }

    fn run(
        self: Box<Self>,
        actions: mpsc::UnboundedReceiver<Action>,
        ctx: crate::sink::SinkContext,
    ) -> futures_util::future::BoxFuture<'static, anyhow::Result<()>> {
        Box::pin(async move {
            run(self.opts, actions, ctx.reports, ctx.shutdown).await;
            Ok(())
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
