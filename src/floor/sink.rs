//! The floor sink: the workstation's side of the floor bus, one supervised part.
//!
//! - every call event (start, end, warning, mark, level, escalation, problem) and a heartbeat
//!   every `floor.heartbeat` go into the durable backlog first, then to JetStream in order
//!   ([`super::publisher`]);
//! - a lead's ack (`…<agent>.ack`) for the current call shows on the desktop
//!   (「田中さんが対応中です」), and every ack is recorded in the call's incident record through
//!   the tracker's note path (an addendum once the call is sealed);
//! - at call start the floor is asked about the caller (`…<site>.history`, at most
//!   `floor.history_timeout`), and a known caller's history is shown — in its own task, so
//!   nothing about the call start waits for it.
//!
//! All of it (this sink, the publisher, the NATS client's connection) runs on a thread of its
//! own, `callguard-floor`, with a single-threaded runtime: the bus's wakes and work never share
//! a worker with the tracker's timers, and its CPU can be told apart from the rest.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::backlog::Backlog;
use super::config::FloorConfig;
use super::contract::{self, AckMessage, HistoryRequest};
use super::link::{ConnectMode, Link, LinkError};
use super::mapping::{Identity, Mapper};
use super::state::{AckSeen, FloorState};
use super::texts;
use crate::calls::Command;
use crate::config::{Config, Language};
use crate::events::{Action, NoteField, Report};
use crate::health::{Check, Status};
use crate::sink::{Sink, SinkContext};

/// Most actions taken from the channel at once.
const ACTION_BATCH: usize = 1024;

/// Shortest time between two batches of actions while actions keep coming. In a flood each
/// action would otherwise wake the sink on its own and run its code cold; taken together they
/// cost a fraction of that, for at most this much more delay before their events are queued
/// (the backlog's group commits are 100 ms apart, so an event of a flood reaches the floor
/// within about 0.15 s, inside the board's 250 ms). An action after a
/// quiet spell is handled at once, and so is a batch with a call start whose caller history
/// is asked (a call start that comes in while a batch waits is asked with it, at most this
/// much later).
const ACTION_SPACING: Duration = Duration::from_millis(50);

/// How long a notification may take to show.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

fn now() -> chrono::DateTime<chrono::FixedOffset> {
    chrono::Local::now().fixed_offset()
}

/// The floor sink, built when `[floor]` is configured.
pub struct FloorSink {
    cfg: Config,
    floor: FloorConfig,
    desktop: bool,
    host: String,
    agent: String,
    state: Arc<FloorState>,
}

impl FloorSink {
    /// The sink for `cfg`, or `None` without `[floor]`.
    pub fn from_config(cfg: &Config, desktop: bool) -> Option<FloorSink> {
        let floor = cfg.floor.clone()?;
        let host = crate::host::name();
        let agent = floor.agent_id(&cfg.agent, &host);
        let state = Arc::new(FloorState::new(
            &floor.site,
            &agent,
            &floor.masked().nats_url,
        ));
        Some(FloorSink {
            cfg: cfg.clone(),
            floor,
            desktop,
            host,
            agent,
            state,
        })
    }

    /// The state `status` shows.
    pub fn state(&self) -> Arc<FloorState> {
        self.state.clone()
    }

    fn identity(&self, caller_key: Vec<u8>) -> Identity {
        Identity {
            site: self.floor.site.clone(),
            agent: self.agent.clone(),
            agent_name: self.cfg.agent.name.clone(),
            host: self.host.clone(),
            caller_mode: self.floor.caller_id,
            caller_key,
            country_code: self.floor.country_code.clone(),
            webhook_targets: u32::try_from(self.cfg.escalation.webhook.len()).unwrap_or(u32::MAX),
        }
    }

    async fn run_inner(
        self,
        mut actions: mpsc::UnboundedReceiver<Action>,
        ctx: SinkContext,
    ) -> anyhow::Result<()> {
        let setup = self.setup().await;
        let (backlog, link, mapper) = match setup {
            Ok(parts) => parts,
            Err(e) => {
                // Never a lost protection: the rest of the daemon goes on; the floor hears
                // nothing from this workstation, which its board shows as a stale row.
                tracing::error!(error = %e, "the floor bus is off on this workstation");
                self.state.error(e.to_string());
                let _ = ctx
                    .commands
                    .try_send(Command::Problem(crate::events::Problem {
                        call_id: None,
                        kind: "floor.off".into(),
                        text: format!("floor bus off: {e}"),
                    }));
                while actions.recv().await.is_some() {}
                return Ok(());
            }
        };
        let mut mapper = mapper;
        self.state.attach(link.status(), backlog.clone());
        let stop = CancellationToken::new();
        let publisher = tokio::spawn(super::publisher::run(
            backlog.clone(),
            link.clone(),
            self.state.clone(),
            stop.clone(),
        ));
        let mut acks = match link.subscribe_acks().await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow the floor's acks");
                None
            }
        };
        let up_since = now();
        // The first heartbeat goes before any call event: the floor sees the workstation up
        // (and its version) before its first call, whatever comes in first.
        let first = mapper.heartbeat(
            now(),
            self.floor.heartbeat,
            backlog.stats().events,
            up_since,
        );
        if let Err(e) = backlog.push(mapper.subject(&first), first) {
            tracing::warn!(error = %e, "cannot queue a floor event");
        }
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + self.floor.heartbeat,
            self.floor.heartbeat,
        );
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lang = self.cfg.language;
        // Calls whose team-lead pings may still change state: followed in the outbox until each
        // is delivered or failed, then published as an `escalation` event with that state.
        let mut pings = Pings::new(crate::escalation::outbox_dir(&self.cfg));
        let mut batch = Vec::with_capacity(ACTION_BATCH);
        let mut last_batch = None;
        loop {
            tokio::select! {
                // Whatever came in since the last wake, at once; while actions keep coming, at
                // most one batch per ACTION_SPACING (a flood wakes this task far less often
                // than it sends actions).
                n = actions.recv_many(&mut batch, ACTION_BATCH) => {
                    if n == 0 {
                        break;
                    }
                    let asks_history = self.floor.show_history
                        && batch.iter().any(|a| matches!(a, Action::CallStarted(_)));
                    let since = last_batch.map(|t: tokio::time::Instant| t.elapsed());
                    if !asks_history
                        && let Some(wait) = since.and_then(|d| ACTION_SPACING.checked_sub(d))
                    {
                        tokio::time::sleep(wait).await;
                        while batch.len() < ACTION_BATCH {
                            match actions.try_recv() {
                                Ok(a) => batch.push(a),
                                Err(_) => break,
                            }
                        }
                    }
                    last_batch = Some(tokio::time::Instant::now());
                    let at = now();
                    for a in batch.drain(..) {
                        if let Action::CallStarted(call) = &a
                            && self.floor.show_history
                        {
                            self.ask_history(&link, &mapper, call, &ctx);
                        }
                        pings.note(&a);
                        let mut evs = mapper.map(&a, at);
                        if let Action::CallEnded { .. } = &a {
                            evs.extend(pings.settled(&mapper));
                        }
                        for ev in evs {
                            let subject = mapper.subject(&ev);
                            if let Err(e) = backlog.push_at(subject, ev, at) {
                                tracing::error!(error = %e, "cannot queue a floor event on disk");
                                self.state.error(e.to_string());
                            }
                        }
                    }
                }
                m = next_ack(&mut acks) => match m {
                    Some(msg) => self.on_ack(&msg.payload, &mapper, &ctx, lang),
                    None => acks = None,
                },
                _ = heartbeat.tick() => {
                    let hb = mapper.heartbeat(now(), self.floor.heartbeat, backlog.stats().events, up_since);
                    for ev in std::iter::once(hb).chain(pings.settled(&mapper)) {
                        let subject = mapper.subject(&ev);
                        if let Err(e) = backlog.push(subject, ev) {
                            tracing::warn!(error = %e, "cannot queue a floor event");
                        }
                    }
                }
            }
        }
        // The publisher drains what it can (bounded); the rest waits on disk for the next start.
        stop.cancel();
        let _ = publisher.await;
        let b = backlog.clone();
        let _ = tokio::task::spawn_blocking(move || b.close()).await;
        link.close().await;
        Ok(())
    }

    async fn setup(&self) -> Result<(Arc<Backlog>, Link, Mapper), LinkError> {
        let key = self.floor.caller_key()?.unwrap_or_default();
        let dir = FloorConfig::backlog_dir(&self.cfg.data_dir());
        let backlog = Backlog::open(dir, self.floor.max_backlog_mb.saturating_mul(1024 * 1024))
            .map_err(|e| LinkError::Other(format!("floor backlog: {e}")))?;
        let link = Link::connect(
            &self.floor,
            &self.agent,
            &self.host,
            ConnectMode::Background,
        )
        .await?;
        Ok((Arc::new(backlog), link, Mapper::new(self.identity(key))))
    }

    /// Asks the floor about the caller in a task of its own; shows the answer if there is one.
    fn ask_history(
        &self,
        link: &Link,
        mapper: &Mapper,
        call: &crate::events::CallInfo,
        ctx: &SinkContext,
    ) {
        let id = mapper.identity();
        let caller = id.caller(&call.caller);
        if caller.is_empty() {
            return;
        }
        let req = HistoryRequest {
            schema: contract::SCHEMA.into(),
            site: id.site.clone(),
            agent: id.agent.clone(),
            host: id.host.clone(),
            call_id: Some(call.call_id.clone()),
            caller,
        };
        let link = link.clone();
        let timeout = self.floor.history_timeout;
        let lang = self.cfg.language;
        let desktop = self.desktop;
        let reports = ctx.reports.clone();
        let call_id = call.call_id.clone();
        tokio::spawn(async move {
            let Some(rep) = link.history(&req, timeout).await else {
                return;
            };
            let Some((summary, body)) = texts::history_texts(&rep, lang) else {
                return;
            };
            let outcome = notify(desktop, &summary, &body).await;
            let _ = reports.send(Report::Notification {
                call_id,
                summary,
                body,
                outcome,
            });
        });
    }

    fn on_ack(&self, payload: &[u8], mapper: &Mapper, ctx: &SinkContext, lang: Language) {
        let ack = match AckMessage::from_json(payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "ignored a malformed ack from the floor");
                return;
            }
        };
        let current = mapper
            .current_call()
            .is_some_and(|c| c.call_id == ack.call_id);
        tracing::info!(call_id = %ack.call_id, lead = %ack.lead, current, "a team lead took the call");
        self.state.ack(AckSeen {
            call_id: ack.call_id.clone(),
            lead: ack.lead.clone(),
            at: ack.at,
            current,
        });
        let desktop = self.desktop;
        let reports = ctx.reports.clone();
        let commands = ctx.commands.clone();
        let record = texts::ack_record(&ack, lang);
        tokio::spawn(async move {
            if current {
                let (summary, body) = texts::ack_texts(&ack, lang);
                let outcome = notify(desktop, &summary, &body).await;
                let _ = reports.send(Report::Notification {
                    call_id: ack.call_id.clone(),
                    summary,
                    body,
                    outcome,
                });
            }
            // In the call's record while it is open; an addendum once it is sealed.
            let (reply, rx) = tokio::sync::oneshot::channel();
            let note = Command::Note {
                call_id: Some(ack.call_id.clone()),
                field: NoteField::Response,
                text: record,
                reply,
            };
            if commands.send(note).await.is_err() {
                return;
            }
            match rx.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(call_id = %ack.call_id, error = %e, "the ack could not be recorded")
                }
                Err(_) => {}
            }
        });
    }
}

/// The calls whose team-lead pings are followed until their delivery is final.
struct Pings {
    outbox: crate::escalation::outbox::Outbox,
    calls: std::collections::HashMap<
        String,
        (
            std::sync::Arc<crate::events::CallInfo>,
            std::collections::HashSet<String>,
        ),
    >,
}

impl Pings {
    fn new(dir: std::path::PathBuf) -> Pings {
        Pings {
            outbox: crate::escalation::outbox::Outbox::new(dir),
            calls: Default::default(),
        }
    }

    /// Starts following a call when something pinged its lead.
    fn note(&mut self, a: &Action) {
        let call = match a {
            Action::Escalation { call, .. } => call,
            Action::Warning(call, w) if w.notify_lead => call,
            Action::Marked(m) if m.pings_lead() => &m.call,
            _ => return,
        };
        self.calls
            .entry(call.call_id.clone())
            .or_insert_with(|| (call.clone(), Default::default()));
    }

    /// The final delivery states not published yet; a call is dropped once every ping of it
    /// is final and the call is over.
    fn settled(&mut self, mapper: &Mapper) -> Vec<super::contract::FloorEvent> {
        let mut out = Vec::new();
        let at = now();
        self.calls.retain(|call_id, (call, done)| {
            let known = self.outbox.call_deliveries(call_id);
            let mut open = false;
            for (reason, state) in &known {
                if done.contains(reason) {
                    continue;
                }
                match mapper.delivery(call, reason, state, at) {
                    Some(ev) => {
                        done.insert(reason.clone());
                        out.push(ev);
                    }
                    None => open = true,
                }
            }
            open || mapper.is_open(call_id)
        });
        out
    }
}

async fn next_ack(acks: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match acks {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

/// Shows a notification; `Ok(where)` or why not.
async fn notify(desktop: bool, summary: &str, body: &str) -> Result<String, String> {
    if !desktop {
        return Err("desktop notifications are off".into());
    }
    let mut n = notify_rust::Notification::new();
    n.appname("callguard")
        .summary(summary)
        .body(body)
        .icon("dialog-information")
        .hint(notify_rust::Hint::Category("callguard.floor".into()));
    match tokio::time::timeout(NOTIFY_TIMEOUT, n.show_async()).await {
        Ok(Ok(h)) => Ok(format!("notification {}", h.id())),
        Ok(Err(e)) => Err(format!("no notification server on the session bus ({e})")),
        Err(_) => Err(format!(
            "the notification server did not answer within {NOTIFY_TIMEOUT:?}"
        )),
    }
}

impl Sink for FloorSink {
    fn name(&self) -> &str {
        "floor"
    }

    fn run(
        self: Box<Self>,
        actions: crate::sink::Actions,
        ctx: crate::sink::SinkContext,
    ) -> crate::sink::Running {
        Box::pin(async move {
            // The floor's tasks (this sink, the publisher, the NATS client's connection) run on a
            // thread and a single-threaded runtime of their own: whatever the bus does, none of
            // its work runs on the daemon's workers, so it never holds up a warning's timer, and
            // its CPU can be counted apart.
            let (done, result) = tokio::sync::oneshot::channel();
            let thread = std::thread::Builder::new()
                .name("callguard-floor".into())
                .spawn(move || {
                    if crate::supervisor::fault::for_part("floor").as_deref()
                        == Some("panic-in-thread")
                    {
                        panic!("injected fault in the floor's thread");
                    }
                    let r = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on((*self).run_inner(actions, ctx)),
                        Err(e) => Err(anyhow::anyhow!("cannot start the floor's runtime: {e}")),
                    };
                    let _ = done.send(r);
                })
                .map_err(|e| anyhow::anyhow!("cannot start the floor's thread: {e}"))?;
            match result.await {
                Ok(r) => r,
                // Its sender went without a word: the thread panicked. The panic goes on to
                // the supervisor, which names it.
                Err(_) => match tokio::task::spawn_blocking(move || thread.join()).await {
                    Ok(Err(panic)) => std::panic::resume_unwind(panic),
                    _ => Err(anyhow::anyhow!(
                        "the floor's thread stopped without a result"
                    )),
                },
            }
        })
    }

    fn healthcheck<'a>(&'a self, opts: &'a crate::sink::HealthOptions) -> crate::sink::Checks<'a> {
        Box::pin(async move {
            checks(
                &self.floor,
                &self.agent,
                &self.host,
                &self.cfg,
                opts.language,
            )
            .await
        })
    }
}

/// The doctor's floor rows for `cfg`: none without `[floor]`.
pub async fn doctor_checks(cfg: &Config) -> Vec<Check> {
    let Some(floor) = &cfg.floor else {
        return Vec::new();
    };
    let host = crate::host::name();
    let agent = floor.agent_id(&cfg.agent, &host);
    checks(floor, &agent, &host, cfg, cfg.language).await
}

/// The doctor's rows for the floor bus: reachability and credentials, the stream, a round
/// trip (a heartbeat published and acknowledged), and the backlog on disk.
pub async fn checks(
    floor: &FloorConfig,
    agent: &str,
    host: &str,
    cfg: &Config,
    lang: Language,
) -> Vec<Check> {
    use crate::health::say;
    let mut rows = Vec::new();
    let url = floor.masked().nats_url;
    let stats = backlog_stats(cfg, floor);
    let backlog_row = |rows: &mut Vec<Check>| {
        let status = if stats.bytes > stats.max_bytes {
            Status::Warn
        } else {
            Status::Pass
        };
        rows.push(Check::new(
            "floor-backlog",
            status,
            {
                let (events, kib) = (stats.events, stats.bytes.div_ceil(1024));
                let mib = stats.max_bytes / (1024 * 1024);
                let oldest = stats.oldest.map(|o| o.to_rfc3339());
                say(
                    lang,
                    format!(
                        "{events} 件が待機中（{kib} KiB／上限 {mib} MiB）{}",
                        oldest
                            .as_ref()
                            .map(|o| format!("、最も古いもの：{o}"))
                            .unwrap_or_default()
                    ),
                    format!(
                        "{events} events waiting ({kib} KiB of {mib} MiB){}",
                        oldest
                            .map(|o| format!(", oldest from {o}"))
                            .unwrap_or_default()
                    ),
                )
            },
            if status == Status::Pass {
                String::new()
            } else {
                say(
                    lang,
                    "フロアのバスが長い間イベントを受け取っていません。上の行を確かめてください",
                    "the bus has not taken events for a long time: check the rows above",
                )
            },
        ));
    };
    let link = match Link::connect(floor, agent, host, ConnectMode::Once).await {
        Ok(l) => l,
        Err(e) => {
            let fix = match e {
                LinkError::Credentials(_) => say(
                    lang,
                    "floor.user／password_file、nkey_file または creds_file をサーバーの利用者（deploy/nats/）と照らし合わせてください",
                    "check floor.user/password_file, nkey_file or creds_file against the server's users (deploy/nats/)",
                ),
                LinkError::Config(_) => say(
                    lang,
                    "上に示した [floor] のキーを直してください",
                    "fix the [floor] key named above",
                ),
                _ => say(
                    lang,
                    "floor.nats_url、ネットワーク、nats-server が動いていること（TLS なら floor.ca_file）を確かめてください",
                    "check floor.nats_url, the network, and that nats-server runs (and floor.ca_file for TLS)",
                ),
            };
            rows.push(Check::new("floor-bus", Status::Fail, e.to_string(), fix));
            backlog_row(&mut rows);
            return rows;
        }
    };
    rows.push(Check::pass(
        "floor-bus",
        say(
            lang,
            format!(
                "{url} に接続しました（拠点 {}、担当者 {agent}）",
                floor.site
            ),
            format!("connected to {url} as site {} agent {agent}", floor.site),
        ),
    ));
    match link.check_stream().await {
        Ok(()) => rows.push(Check::pass(
            "floor-stream",
            say(
                lang,
                format!("{} ストリームがあります", contract::STREAM),
                format!("the {} stream exists", contract::STREAM),
            ),
        )),
        Err(e) => rows.push(Check::new(
            "floor-stream",
            Status::Fail,
            e.to_string(),
            say(
                lang,
                "`callguard floor` を起動する（ストリームを作ります）か、deploy/nats/stream.json から作ってください。それまでイベントは待機します",
                "start `callguard floor` (it creates the stream) or create it from deploy/nats/stream.json; events stay queued meanwhile",
            ),
        )),
    }
    // A round trip: one heartbeat, published and acknowledged by the server.
    let key = floor.caller_key().ok().flatten().unwrap_or_default();
    let mapper = Mapper::new(Identity {
        site: floor.site.clone(),
        agent: agent.to_string(),
        agent_name: cfg.agent.name.clone(),
        host: host.to_string(),
        caller_mode: floor.caller_id,
        caller_key: key,
        country_code: floor.country_code.clone(),
        webhook_targets: 0,
    });
    let hb = mapper.heartbeat(now(), floor.heartbeat, stats.events, now());
    let started = std::time::Instant::now();
    match link
        .publish(mapper.subject(&hb), &hb.id, hb.to_json())
        .await
    {
        Ok(_) => rows.push(Check::pass(
            "floor-roundtrip",
            {
                let ms = started.elapsed().as_millis();
                say(
                    lang,
                    format!("ハートビートがサーバーに {ms} ms で保存されました"),
                    format!("a heartbeat was stored by the server in {ms} ms"),
                )
            },
        )),
        Err(e) => rows.push(Check::new(
            "floor-roundtrip",
            Status::Fail,
            e.to_string(),
            say(
                lang,
                "サーバーがハートビートを拒否したか、確認しませんでした。端末の送信権限（deploy/nats/）を確かめてください",
                "the server refused or did not confirm a heartbeat: check the workstation's publish permissions (deploy/nats/)",
            ),
        )),
    }
    link.close().await;
    backlog_row(&mut rows);
    rows
}

/// The backlog as it is on disk (for doctor, and `status` when the daemon is not running).
pub fn backlog_stats(cfg: &Config, floor: &FloorConfig) -> super::backlog::BacklogStats {
    super::backlog::disk_stats(
        &FloorConfig::backlog_dir(&cfg.data_dir()),
        floor.max_backlog_mb.saturating_mul(1024 * 1024),
    )
}
