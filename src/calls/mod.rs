//! The call tracker: the one task that owns the call table. It turns PBX events into actions,
//! runs each call's threshold ladder on the monotonic clock, and answers status queries.

pub mod clock;
pub mod memory;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::config::{Config, WarningKind};
use crate::events::{
    Action, CallInfo, CallNote, CallStart, MarkEvent, NoteField, PbxEvent, Report, WarningFired,
};
use crate::harassment::{self, CallRules, Level, Mark, MarkKind, Rule};
use crate::logging::WarnLimiter;
use clock::{Origin, Refused};
use memory::Memory;

/// The tracker's warnings that a PBX can repeat once per event: a few lines a minute each, then
/// a count, however many events a broken or hostile PBX sends.
static START_IN_FUTURE: WarnLimiter =
    WarnLimiter::per_minute("call start time is in the future; counting from receipt");
static START_TOO_OLD: WarnLimiter =
    WarnLimiter::per_minute("call start time is more than 24 h old; counting from receipt");
static FIRED_LATE: WarnLimiter = WarnLimiter::per_minute(
    "warning fired late: the call was already past the threshold when it became known",
);
static LOST_FROM_SNAPSHOT: WarnLimiter =
    WarnLimiter::per_minute("call missing from the PBX snapshot: ended as lost");
static PBX_PROBLEM: WarnLimiter = WarnLimiter::per_minute("PBX problem");
static SINK_PROBLEM: WarnLimiter = WarnLimiter::per_minute("problem reported");
const LIMITERS: [&WarnLimiter; 6] = [
    &START_IN_FUTURE,
    &START_TOO_OLD,
    &FIRED_LATE,
    &LOST_FROM_SNAPSHOT,
    &PBX_PROBLEM,
    &SINK_PROBLEM,
];
/// How often the limiters write the count of what they left out.
const LIMITER_TICK: Duration = Duration::from_secs(10);

/// One step of the threshold ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Call time after which it fires.
    pub after: Duration,
    /// What it means.
    pub kind: WarningKind,
    /// Whether the team lead is pinged.
    pub notify_lead: bool,
}

/// How the tracker behaves.
pub struct TrackerOptions {
    /// The ladder, ascending.
    pub ladder: Vec<Step>,
    /// Only this agent's calls; `None` = floor mode (every call).
    pub agent: Option<String>,
    /// Thresholds are divided by this (training, demo). 1.0 in production.
    pub time_scale: f64,
    /// Fired-warning memory across restarts.
    pub memory: Memory,
    /// The harassment rule table.
    pub rules: Vec<Rule>,
}

/// The threshold ladder of `cfg`.
pub fn ladder(cfg: &Config) -> Vec<Step> {
    cfg.warning
        .iter()
        .map(|w| Step {
            after: w.after,
            kind: w.kind,
            notify_lead: w.notify_lead,
        })
        .collect()
}

impl TrackerOptions {
    /// Options from the configuration.
    pub fn from_config(cfg: &Config, time_scale: f64, memory: Memory) -> TrackerOptions {
        let agent = match cfg.pbx.kind {
            crate::config::PbxKind::Generic => cfg.agent.extension.trim(),
            crate::config::PbxKind::Asterisk => cfg.agent.endpoint.trim(),
        };
        TrackerOptions {
            ladder: ladder(cfg),
            // The Asterisk connector filters by channel name itself.
            agent: (!agent.is_empty() && cfg.pbx.kind == crate::config::PbxKind::Generic)
                .then(|| agent.to_string()),
            time_scale: if time_scale > 0.0 { time_scale } else { 1.0 },
            memory,
            rules: cfg.marks.rule.clone(),
        }
    }
}

/// Requests to the tracker from the control socket and the demo.
#[derive(Debug)]
pub enum Command {
    /// Current state, for `callguard status`.
    Status(oneshot::Sender<TrackerStatus>),
    /// A sink's problem, to be published to every sink (desktop, lead).
    Problem(crate::events::Problem),
    /// The agent calls the team lead to a call: the given one, else the current one (the most
    /// recently started call in progress).
    Escalate {
        /// A specific call (the notification's button); `None` = the current call.
        call_id: Option<String>,
        /// The agent's note.
        note: Option<String>,
        /// Who asked: `cli` or `notification`.
        source: String,
        /// The call escalated, or why none was.
        reply: oneshot::Sender<Result<CallStatus, CallError>>,
    },
    /// The agent marks what the caller does on the current call (or `call_id`).
    Mark {
        /// What.
        kind: MarkKind,
        /// The caller's words.
        quote: Option<String>,
        /// A specific call; `None` = the agent's current call.
        call_id: Option<String>,
        /// The answer for the agent.
        reply: oneshot::Sender<Result<MarkReceipt, CallError>>,
    },
    /// A note for the current call's record, or a past call's (by id).
    Note {
        /// A specific call; `None` = the agent's current call.
        call_id: Option<String>,
        /// Which item.
        field: NoteField,
        /// Text.
        text: String,
        /// The answer for the agent.
        reply: oneshot::Sender<Result<String, CallError>>,
    },
    /// A reloaded configuration, already validated and holding changes to live keys only
    /// ([`crate::reload`]): the ladder and the mark rules change here, and every sink hears
    /// of it through [`Action::Reconfigured`]. Answered once the sinks have it queued.
    Reconfigure {
        /// The new configuration.
        cfg: Arc<Config>,
        /// Done.
        reply: oneshot::Sender<()>,
    },
}

/// Why a request about "the current call" cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum CallError {
    /// No call is in progress.
    #[error("no call in progress")]
    NoCall,
    /// The named call is not in progress.
    #[error("call `{0}` is not in progress")]
    NotTracked(String),
}

/// What the agent is told after a mark.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct MarkReceipt {
    /// The call marked.
    pub call_id: String,
    /// Offset into the call, `mm:ss`.
    pub offset: String,
    /// How many marks of this kind the call has now.
    pub count: u32,
    /// The call's level now.
    pub level: u8,
    /// Names of the rules the mark fired.
    pub fired: Vec<String>,
    /// Whether grounds to end the call are met.
    pub grounds_to_end: bool,
}

/// The tracker's view for `callguard status`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrackerStatus {
    /// `connected`, `disconnected` or `connecting`.
    pub pbx: String,
    /// Last connection change, human readable.
    pub pbx_detail: String,
    /// Calls in progress.
    pub calls: Vec<CallStatus>,
    /// Frames refused since start.
    pub bad_frames: u64,
    /// The last refused frame's reason.
    pub last_bad_frame: Option<String>,
}

/// One call in `callguard status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct CallStatus {
    /// Call id.
    pub call_id: String,
    /// Agent.
    pub agent: String,
    /// Caller.
    pub caller: String,
    /// RFC 3339 start.
    pub started_at: String,
    /// Call time so far.
    pub elapsed_secs: u64,
    /// Next warning kind, if any.
    pub next_warning: Option<String>,
    /// Call time at which it fires.
    pub next_warning_after_secs: Option<u64>,
    /// Harassment level 1–4.
    pub level: u8,
    /// Marks so far.
    pub marks: usize,
}

struct Call {
    info: Arc<CallInfo>,
    origin: Origin,
    /// Index of the next ladder step to fire.
    next: usize,
    /// Start order, to find the agent's current (latest) call.
    order: u64,
    /// Marks, rules fired and level.
    rules: CallRules,
    /// The mark rules the call started with: `rules` counts against these, so a reload that
    /// changes the rule table applies from the next call on.
    table: Arc<Vec<Rule>>,
}

/// Timer key: due instant, then a sequence number so equal instants stay distinct and ordered.
type TimerKey = (Instant, u64);

/// The tracker state; [`run`] drives it.
pub struct Tracker {
    opts: TrackerOptions,
    /// The current mark rules (`opts.rules`), shared with the calls started under them.
    table: Arc<Vec<Rule>>,
    calls: HashMap<String, Call>,
    timers: BTreeMap<TimerKey, (String, usize)>,
    timer_seq: u64,
    start_seq: u64,
    bus: Bus,
    pbx: String,
    pbx_detail: String,
    bad_frames: u64,
    last_bad_frame: Option<String>,
    /// Calls whose end came while they were not tracked, newest last (at most
    /// [`ENDED_UNTRACKED`], for [`ENDED_UNTRACKED_FOR`]): a start that comes after its own end
    /// is no call to warn about for ever.
    ended_untracked: std::collections::VecDeque<(String, Instant)>,
}

/// Most call ids remembered as ended before their start.
const ENDED_UNTRACKED: usize = 1024;
/// How long an end that came first cancels its call's start.
const ENDED_UNTRACKED_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs the tracker until `shutdown` or until the event channel closes. On return every sink's
/// queue is closed (the tracker owned the only senders), which is their signal to finish.
pub async fn run(
    opts: TrackerOptions,
    mut events: mpsc::Receiver<PbxEvent>,
    mut commands: mpsc::Receiver<Command>,
    bus: Bus,
    shutdown: CancellationToken,
) {
    let mut t = Tracker::new(opts, bus);
    let mut commands_open = true;
    let mut limiter_tick = tokio::time::interval(LIMITER_TICK);
    limiter_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_due = t.next_due();
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = limiter_tick.tick() => LIMITERS.iter().for_each(|l| l.tick()),
            // Due warnings go before a burst of events or audio.
            _ = sleep_until_opt(next_due), if next_due.is_some() => t.fire_due(Instant::now()),
            ev = events.recv() => match ev {
                Some(ev) => t.on_event(ev, Instant::now()),
                None => break,
            },
            cmd = commands.recv(), if commands_open => match cmd {
                Some(cmd) => t.on_command(cmd),
                None => commands_open = false,
            },
        }
    }
    LIMITERS.iter().for_each(|l| l.flush());
    tracing::debug!(calls = t.calls.len(), "call tracker stopped");
}

async fn sleep_until_opt(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

impl Tracker {
    /// A tracker with no calls.
    pub fn new(opts: TrackerOptions, bus: Bus) -> Tracker {
        Tracker {
            table: Arc::new(opts.rules.clone()),
            opts,
            calls: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            start_seq: 0,
            bus,
            pbx: "connecting".into(),
            pbx_detail: String::new(),
            bad_frames: 0,
            last_bad_frame: None,
            ended_untracked: std::collections::VecDeque::new(),
        }
    }

    /// Whether `call_id` ended, untracked, within [`ENDED_UNTRACKED_FOR`] before `now`.
    fn ended_before_start(&mut self, call_id: &str, now: Instant) -> bool {
        while self
            .ended_untracked
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) > ENDED_UNTRACKED_FOR)
        {
            self.ended_untracked.pop_front();
        }
        self.ended_untracked.iter().any(|(id, _)| id == call_id)
    }

    fn next_due(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|((at, _), _)| *at)
    }

    /// Handles one PBX event received at monotonic `now`.
    pub fn on_event(&mut self, ev: PbxEvent, now: Instant) {
        match ev {
            PbxEvent::Connected { endpoint } => {
                self.pbx = "connected".into();
                self.pbx_detail = endpoint.clone();
                self.bus.report(Report::Connected(endpoint.clone()));
                self.bus
                    .publish(Action::Connection(PbxEvent::Connected { endpoint }));
            }
            PbxEvent::Disconnected { reason, retry_in } => {
                self.pbx = "disconnected".into();
                self.pbx_detail = reason.clone();
                self.bus.report(Report::Disconnected(reason.clone()));
                self.bus.publish(Action::Connection(PbxEvent::Disconnected {
                    reason,
                    retry_in,
                }));
            }
            PbxEvent::CallStart(start) => {
                if self.wanted(&start) && self.ended_before_start(&start.call_id, now) {
                    // Its end came first (a PBX sending out of order): tracked now, the call
                    // would warn, ping leads and take marks for ever.
                    tracing::warn!(call_id = %start.call_id, "start of a call whose end came first: ignored");
                } else if self.wanted(&start) && !self.calls.contains_key(&start.call_id) {
                    // A start that is long past (a PBX replaying its starts after our restart)
                    // is a call already under way: no second recording notice.
                    let under_way = start.at.is_some_and(|at| {
                        clock::wall_now().signed_duration_since(at) > chrono::Duration::seconds(30)
                    });
                    self.start_call(start, under_way, now);
                } else if self.calls.contains_key(&start.call_id) {
                    tracing::debug!(call_id = %start.call_id, "start for a call already tracked: ignored");
                }
            }
            PbxEvent::CallEnd { call_id, at, cause } => self.end_call(&call_id, at, &cause, now),
            PbxEvent::Snapshot(list) => self.apply_snapshot(list, now),
            PbxEvent::MediaStart {
                call_id,
                encoding,
                sample_rate,
            } => {
                if self.calls.contains_key(&call_id) {
                    self.bus.publish(Action::MediaStart {
                        call_id,
                        encoding,
                        sample_rate,
                    });
                }
            }
            PbxEvent::Media {
                call_id,
                track,
                seq,
                payload,
            } => {
                if self.calls.contains_key(&call_id) {
                    self.bus.publish(Action::Media {
                        call_id,
                        track,
                        seq,
                        payload,
                    });
                }
            }
            PbxEvent::BadFrame { reason } => {
                self.bad_frames += 1;
                self.last_bad_frame = Some(reason);
            }
            PbxEvent::Recording { call_id, outcome } => {
                self.bus.publish(Action::Recording { call_id, outcome });
            }
            PbxEvent::Problem(p) => {
                PBX_PROBLEM.warn(&problem_line(&p));
                self.bus.publish(Action::Problem(p));
            }
        }
    }

    fn wanted(&self, start: &CallStart) -> bool {
        match &self.opts.agent {
            Some(agent) => &start.agent == agent,
            None => true,
        }
    }

    fn start_call(&mut self, start: CallStart, adopted: bool, now: Instant) {
        let origin = clock::origin(start.at, clock::wall_now(), now);
        match origin.refused {
            Some(Refused::Future) => START_IN_FUTURE.warn(&start_line(&start)),
            Some(Refused::TooOld) => START_TOO_OLD.warn(&start_line(&start)),
            None => {}
        }
        let info = Arc::new(CallInfo {
            call_id: start.call_id.clone(),
            agent: start.agent,
            caller: start.caller,
            direction: start.direction,
            channel: start.channel,
            started_at: origin.wall,
            adopted,
        });
        tracing::info!(call_id = %info.call_id, agent = %info.agent, caller = %info.caller,
            adopted, started_at = %info.started_at.to_rfc3339(), "call started");
        self.start_seq += 1;
        let mut call = Call {
            info: info.clone(),
            origin,
            next: 0,
            order: self.start_seq,
            rules: CallRules::new(&self.table),
            table: self.table.clone(),
        };
        // Steps that fired before a restart are not repeated.
        while let Some(step) = self.opts.ladder.get(call.next) {
            if self.opts.memory.has_fired(&info.call_id, step_key(step)) {
                call.next += 1;
                // The level and grounds to end that step gave still hold.
                call.rules.warning(step.kind);
            } else {
                break;
            }
        }
        self.bus.report(Report::CallStarted((*info).clone()));
        self.bus.publish(Action::CallStarted(info));
        self.calls.insert(start.call_id.clone(), call);
        self.schedule(&start.call_id);
        // Steps already due (an adopted call, a late start) fire now, in order, once.
        self.fire_due(now);
    }

    /// Arms the timer for the call's next step.
    fn schedule(&mut self, call_id: &str) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let Some(step) = self.opts.ladder.get(call.next) else {
            return;
        };
        let real = step.after.div_f64(self.opts.time_scale);
        let due = call.origin.when(real);
        self.timer_seq += 1;
        self.timers
            .insert((due, self.timer_seq), (call_id.to_string(), call.next));
    }

    /// Fires every warning due at `now`.
    pub fn fire_due(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (call_id, step_idx) = entry.remove();
            self.fire(&call_id, step_idx, now);
        }
    }

    fn fire(&mut self, call_id: &str, step_idx: usize, now: Instant) {
        let scale = self.opts.time_scale;
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.next != step_idx {
            return; // stale timer
        }
        let Some(step) = self.opts.ladder.get(step_idx).cloned() else {
            return;
        };
        call.next += 1;
        // Fired before a restart (the ladder may have gained a step since): not again.
        if self.opts.memory.has_fired(call_id, step_key(&step)) {
            call.rules.warning(step.kind);
            self.schedule(call_id);
            return;
        }
        let elapsed = call.origin.elapsed(now).mul_f64(scale);
        // Late: the call was already past the threshold when it became known to us.
        let late = step.after.div_f64(scale) <= call.origin.age;
        let warning = WarningFired {
            step: step_idx,
            kind: step.kind,
            after: step.after,
            elapsed,
            fired_at: clock::wall_now(),
            late,
            notify_lead: step.notify_lead,
        };
        let info = call.info.clone();
        let raised = call.rules.warning(step.kind);
        if late {
            FIRED_LATE.warn(&format!(
                "call {call_id}: {} after {} s, at {} s",
                step.kind.as_str(),
                step.after.as_secs(),
                elapsed.as_secs()
            ));
        } else {
            tracing::info!(call_id = %call_id, kind = step.kind.as_str(),
                after_secs = step.after.as_secs(), "warning fired");
        }
        self.opts.memory.fired(call_id, step_key(&step));
        self.bus.report(Report::WarningDue {
            call_id: call_id.to_string(),
            warning: warning.clone(),
        });
        // The level first, so every sink knows it when the warning comes.
        if let Some((from, to)) = raised {
            self.level_changed(info.clone(), from, to, step.kind.as_str());
        }
        self.bus.publish(Action::Warning(info, warning));
        self.schedule(call_id);
    }

    fn end_call(
        &mut self,
        call_id: &str,
        at: Option<chrono::DateTime<chrono::FixedOffset>>,
        cause: &str,
        now: Instant,
    ) {
        let Some(call) = self.calls.remove(call_id) else {
            tracing::info!(call_id = %call_id, "end for a call not tracked: ignored");
            if self.ended_untracked.len() >= ENDED_UNTRACKED {
                self.ended_untracked.pop_front();
            }
            self.ended_untracked.push_back((call_id.to_string(), now));
            return;
        };
        // Timers of this call become stale; drop them so the timer map stays small.
        self.timers.retain(|_, (id, _)| id != call_id);
        let duration = call.origin.elapsed(now).mul_f64(self.opts.time_scale);
        let ended_at = clock::end_time(at, call.info.started_at, clock::wall_now());
        tracing::info!(call_id = %call_id, cause, duration_secs = duration.as_secs(), "call ended");
        self.opts.memory.ended(call_id);
        self.bus.report(Report::CallEnded {
            call_id: call_id.to_string(),
            duration,
            cause: cause.to_string(),
        });
        self.bus.publish(Action::CallEnded {
            call: call.info,
            ended_at,
            duration,
            cause: cause.to_string(),
        });
    }

    fn apply_snapshot(&mut self, list: Vec<CallStart>, now: Instant) {
        let wanted: Vec<CallStart> = list.into_iter().filter(|c| self.wanted(c)).collect();
        let present: std::collections::HashSet<&str> =
            wanted.iter().map(|c| c.call_id.as_str()).collect();
        let lost: Vec<String> = self
            .calls
            .keys()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect();
        for id in lost {
            LOST_FROM_SNAPSHOT.warn(&format!("call {id}"));
            self.end_call(&id, None, "lost", now);
        }
        for c in wanted {
            if !self.calls.contains_key(&c.call_id) {
                self.start_call(c, true, now);
            }
        }
        // Calls that ended while we were away are not in the snapshot: their journal entries
        // go, so a PBX that reuses an id does not silence the new call's warnings.
        let calls = &self.calls;
        self.opts.memory.forget_unless(|id| calls.contains_key(id));
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status(reply) => {
                let _ = reply.send(self.status(Instant::now()));
            }
            Command::Problem(p) => {
                SINK_PROBLEM.warn(&problem_line(&p));
                self.bus.publish(Action::Problem(p));
            }
            Command::Mark {
                kind,
                quote,
                call_id,
                reply,
            } => {
                let _ = reply.send(self.mark(kind, quote, call_id.as_deref(), Instant::now()));
            }
            Command::Note {
                call_id,
                field,
                text,
                reply,
            } => {
                // A quote is the caller's words: the record adds its own 「」.
                let text = match field {
                    NoteField::Quote => harassment::unquote(&text).to_string(),
                    _ => text,
                };
                let _ = reply.send(self.note(call_id, field, text));
            }
            Command::Escalate {
                call_id,
                note,
                source,
                reply,
            } => {
                let _ = reply.send(self.escalate(call_id, note, source, Instant::now()));
            }
            Command::Reconfigure { cfg, reply } => {
                self.reconfigure(cfg, Instant::now());
                let _ = reply.send(());
            }
        }
    }

    /// Takes a reloaded configuration's ladder and mark rules. A call in progress keeps the
    /// warnings it already had (a step is kept as fired where the new ladder has the same kind
    /// at a position that fired, or its exact step fired before a restart); its next step takes
    /// the new time, and fires at once if the call is already past it. Mark rules apply from the
    /// next call (a call's rule counts belong to the table it started with).
    pub fn reconfigure(&mut self, cfg: Arc<Config>, now: Instant) {
        let old = std::mem::replace(&mut self.opts.ladder, ladder(&cfg));
        self.opts.rules = cfg.marks.rule.clone();
        self.table = Arc::new(self.opts.rules.clone());
        for (id, call) in &mut self.calls {
            let fired = call.next;
            let mut next = 0;
            while let Some(step) = self.opts.ladder.get(next) {
                let same_kind_fired =
                    next < fired && old.get(next).is_some_and(|o| o.kind == step.kind);
                if same_kind_fired || self.opts.memory.has_fired(id, step_key(step)) {
                    next += 1;
                } else {
                    break;
                }
            }
            call.next = next;
        }
        self.timers.clear();
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for id in &ids {
            self.schedule(id);
        }
        tracing::info!(
            steps = self.opts.ladder.len(),
            calls = ids.len(),
            "configuration reloaded: the ladder applies to the calls in progress"
        );
        // Before any warning the new ladder fires, so the sinks show it with its own texts.
        self.bus.publish(Action::Reconfigured(cfg));
        self.fire_due(now);
    }

    /// The agent calls the lead to the current call (or `call_id`): published for the
    /// escalation sink, and the call's level rises as for a time warning.
    fn escalate(
        &mut self,
        call_id: Option<String>,
        note: Option<String>,
        source: String,
        now: Instant,
    ) -> Result<CallStatus, CallError> {
        let id = self.current(call_id.as_deref())?;
        let Some(call) = self.calls.get_mut(&id) else {
            return Err(CallError::NotTracked(id));
        };
        let raised = call.rules.manual_escalation();
        let info = call.info.clone();
        let elapsed = call.origin.elapsed(now).mul_f64(self.opts.time_scale);
        tracing::info!(call_id = %id, source = %source, "escalation requested by the agent");
        self.bus.publish(Action::Escalation {
            call: info.clone(),
            elapsed,
            note,
            source,
        });
        if let Some((from, to)) = raised {
            self.level_changed(info, from, to, "manual");
        }
        let call = self
            .calls
            .get(&id)
            .ok_or(CallError::NotTracked(id.clone()))?;
        Ok(self.call_status(call, now))
    }

    fn call_status(&self, c: &Call, now: Instant) -> CallStatus {
        let step = self.opts.ladder.get(c.next);
        CallStatus {
            call_id: c.info.call_id.clone(),
            agent: c.info.agent.clone(),
            caller: c.info.caller.clone(),
            started_at: c.info.started_at.to_rfc3339(),
            elapsed_secs: c
                .origin
                .elapsed(now)
                .mul_f64(self.opts.time_scale)
                .as_secs(),
            next_warning: step.map(|s| s.kind.as_str().to_string()),
            next_warning_after_secs: step.map(|s| s.after.as_secs()),
            level: c.rules.level().0,
            marks: c.rules.marks.len(),
        }
    }

    /// The call a request without an id means: the latest call still in progress.
    fn current(&self, call_id: Option<&str>) -> Result<String, CallError> {
        match call_id {
            Some(id) if self.calls.contains_key(id) => Ok(id.to_string()),
            Some(id) => Err(CallError::NotTracked(id.to_string())),
            None => self
                .calls
                .iter()
                .max_by_key(|(_, c)| c.order)
                .map(|(id, _)| id.clone())
                .ok_or(CallError::NoCall),
        }
    }

    /// Records a mark, fires the rules it completes, raises the level.
    pub fn mark(
        &mut self,
        kind: MarkKind,
        quote: Option<String>,
        call_id: Option<&str>,
        now: Instant,
    ) -> Result<MarkReceipt, CallError> {
        let id = self.current(call_id)?;
        let scale = self.opts.time_scale;
        let Some(call) = self.calls.get_mut(&id) else {
            return Err(CallError::NotTracked(id));
        };
        let elapsed = call.origin.elapsed(now).mul_f64(scale);
        let mark = Mark {
            kind,
            quote: quote
                .map(|q| harassment::unquote(&q).to_string())
                .filter(|q| !q.is_empty()),
            at: clock::wall_now(),
            offset_secs: harassment::offset_secs(elapsed),
        };
        let change = call.rules.mark(&call.table, mark.clone());
        let info = call.info.clone();
        let event = MarkEvent {
            call: info.clone(),
            mark: mark.clone(),
            fired: change.fired.clone(),
            level: call.rules.level(),
            marks: call.rules.marks.clone(),
            grounds_to_end: call.rules.grounds_to_end(),
            level_raised: change.level_raised,
        };
        let receipt = MarkReceipt {
            call_id: id.clone(),
            offset: mark.offset(),
            count: call.rules.count(kind),
            level: call.rules.level().0,
            fired: change.fired.iter().map(|f| f.name.clone()).collect(),
            grounds_to_end: call.rules.grounds_to_end(),
        };
        tracing::info!(call_id = %id, mark = %kind, offset = %mark.offset(), level = receipt.level,
            fired = ?receipt.fired, "mark");
        self.bus.publish(Action::Marked(Arc::new(event)));
        if let Some((from, to)) = change.level_raised {
            self.level_changed(info, from, to, kind.as_str());
        }
        Ok(receipt)
    }

    fn level_changed(&self, call: Arc<CallInfo>, from: Level, to: Level, reason: &str) {
        tracing::info!(call_id = %call.call_id, from = from.0, to = to.0, reason, "level raised");
        self.bus.publish(Action::LevelChanged {
            call,
            from,
            to,
            reason: reason.to_string(),
        });
    }

    /// A note for the record: of the current call, or of any call named by id (an addendum
    /// when the call is already over).
    fn note(
        &mut self,
        call_id: Option<String>,
        field: NoteField,
        text: String,
    ) -> Result<String, CallError> {
        let (id, in_progress) = match call_id {
            Some(id) => {
                let live = self.calls.contains_key(&id);
                (id, live)
            }
            None => (self.current(None)?, true),
        };
        self.bus.publish(Action::Noted(Arc::new(CallNote {
            call_id: id.clone(),
            in_progress,
            field,
            text,
            at: clock::wall_now(),
        })));
        Ok(id)
    }

    /// The current state.
    pub fn status(&self, now: Instant) -> TrackerStatus {
        let mut calls: Vec<CallStatus> = self
            .calls
            .values()
            .map(|c| self.call_status(c, now))
            .collect();
        calls.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        TrackerStatus {
            pbx: self.pbx.clone(),
            pbx_detail: self.pbx_detail.clone(),
            calls,
            bad_frames: self.bad_frames,
            last_bad_frame: self.last_bad_frame.clone(),
        }
    }
}

/// The reason field of a limited warning about a call's start time.
fn start_line(start: &CallStart) -> String {
    match start.at {
        Some(at) => format!("call {}: start {}", start.call_id, at.to_rfc3339()),
        None => format!("call {}", start.call_id),
    }
}

/// The reason field of a limited warning about a problem.
fn problem_line(p: &crate::events::Problem) -> String {
    match &p.call_id {
        Some(id) => format!("call {id}: {}: {}", p.kind, p.text),
        None => format!("{}: {}", p.kind, p.text),
    }
}

fn step_key(step: &Step) -> memory::StepKey {
    (step.kind, step.after.as_secs())
}
