//! The threshold ladder on tokio's paused clock: the real tracker task, fed PBX events through its
//! channel, observed through the bus like any sink.

use std::time::Duration;

use callguard::bus::Bus;
use callguard::calls::{self, Command, Step, TrackerOptions, memory::Memory};
use callguard::config::WarningKind;
use callguard::events::{Action, CallStart, PbxEvent, WarningFired};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const MIN: Duration = Duration::from_secs(60);

fn ladder() -> Vec<Step> {
    vec![
        Step {
            after: 15 * MIN,
            kind: WarningKind::Escalate,
            notify_lead: true,
        },
        Step {
            after: 30 * MIN,
            kind: WarningKind::Terminate,
            notify_lead: true,
        },
    ]
}

struct Harness {
    events: mpsc::Sender<PbxEvent>,
    commands: mpsc::Sender<Command>,
    actions: mpsc::UnboundedReceiver<Action>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(agent: Option<&str>, time_scale: f64, memory: Memory) -> Harness {
    let mut bus = Bus::new();
    let actions = bus.subscribe(false);
    let (events, events_rx) = mpsc::channel(1024);
    let (commands, commands_rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let opts = TrackerOptions {
        ladder: ladder(),
        agent: agent.map(str::to_string),
        time_scale,
        memory,
        rules: callguard::harassment::default_rules(),
    };
    let task = tokio::spawn(calls::run(
        opts,
        events_rx,
        commands_rx,
        bus,
        shutdown.clone(),
    ));
    Harness {
        events,
        commands,
        actions,
        shutdown,
        task,
    }
}

fn start_event(
    id: &str,
    agent: &str,
    at: Option<chrono::DateTime<chrono::FixedOffset>>,
) -> PbxEvent {
    PbxEvent::CallStart(CallStart {
        call_id: id.into(),
        at,
        agent: agent.into(),
        caller: "0312345678".into(),
        direction: "inbound".into(),
        channel: String::new(),
    })
}

fn end_event(id: &str) -> PbxEvent {
    PbxEvent::CallEnd {
        call_id: id.into(),
        at: None,
        cause: "normal".into(),
    }
}

impl Harness {
    async fn send(&self, ev: PbxEvent) {
        self.events.send(ev).await.unwrap();
    }

    /// The next action that is not a connection change; time runs (auto-advance) until it comes.
    async fn next(&mut self) -> Action {
        loop {
            match self.actions.recv().await.expect("tracker stopped") {
                Action::Connection(_) | Action::LevelChanged { .. } => continue,
                a => return a,
            }
        }
    }

    async fn next_warning(&mut self) -> (String, WarningFired) {
        match self.next().await {
            Action::Warning(call, w) => (call.call_id.clone(), w),
            other => panic!("expected a warning, got {other:?}"),
        }
    }

    /// Lets the tracker handle everything queued, without moving the clock.
    async fn settle(&self) {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Status(tx)).await.unwrap();
        rx.await.unwrap();
    }

    /// Everything the tracker has published so far, without waiting.
    fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Ok(a) = self.actions.try_recv() {
            if !matches!(a, Action::Connection(_) | Action::LevelChanged { .. }) {
                out.push(a);
            }
        }
        out
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn warnings_fire_at_exactly_15_and_30_minutes_once_each() {
    let mut h = start(None, 1.0, Memory::volatile());
    let t0 = Instant::now();
    h.send(start_event("c-1", "1001", None)).await;
    assert!(matches!(h.next().await, Action::CallStarted(c) if c.call_id == "c-1"));

    let (id, w) = h.next_warning().await;
    assert_eq!(
        (id.as_str(), w.kind, w.step),
        ("c-1", WarningKind::Escalate, 0)
    );
    assert_eq!(Instant::now() - t0, 15 * MIN, "escalate fired off time");
    assert_eq!(w.elapsed, 15 * MIN);
    assert!(!w.late);

    let (_, w) = h.next_warning().await;
    assert_eq!(w.kind, WarningKind::Terminate);
    assert_eq!(Instant::now() - t0, 30 * MIN, "terminate fired off time");

    // Nothing more, however long the call goes on.
    tokio::time::advance(5 * 60 * MIN).await;
    h.settle().await;
    assert!(h.drain().is_empty());
    h.send(end_event("c-1")).await;
    match h.next().await {
        Action::CallEnded {
            duration, cause, ..
        } => {
            assert_eq!(duration, 30 * MIN + 5 * 60 * MIN);
            assert_eq!(cause, "normal");
        }
        other => panic!("{other:?}"),
    }
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_ended_at_14_59_gets_no_warning() {
    let mut h = start(None, 1.0, Memory::volatile());
    h.send(start_event("short", "1001", None)).await;
    assert!(matches!(h.next().await, Action::CallStarted(_)));
    h.settle().await;
    tokio::time::advance(14 * MIN + Duration::from_secs(59)).await;
    h.send(end_event("short")).await;
    assert!(matches!(h.next().await, Action::CallEnded { .. }));
    tokio::time::advance(60 * MIN).await;
    h.settle().await;
    assert!(h.drain().is_empty(), "a warning fired for an ended call");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_adopted_call_past_a_threshold_fires_once_at_once_marked_late() {
    let mut h = start(None, 1.0, Memory::volatile());
    let at = chrono::Local::now().fixed_offset() - chrono::Duration::minutes(20);
    h.send(PbxEvent::Snapshot(vec![CallStart {
        call_id: "old".into(),
        at: Some(at),
        agent: "1001".into(),
        caller: "0312345678".into(),
        direction: "inbound".into(),
        channel: String::new(),
    }]))
    .await;
    let t0 = Instant::now();
    match h.next().await {
        Action::CallStarted(c) => assert!(c.adopted),
        other => panic!("{other:?}"),
    }
    let (_, w) = h.next_warning().await;
    assert_eq!(w.kind, WarningKind::Escalate);
    assert!(w.late);
    assert_eq!(Instant::now(), t0, "a due warning must fire at once");
    assert!(
        w.elapsed >= 20 * MIN && w.elapsed < 21 * MIN,
        "{:?}",
        w.elapsed
    );

    // The 30-minute one comes ten minutes later (give or take the wall clock's second).
    let (_, w) = h.next_warning().await;
    assert_eq!(w.kind, WarningKind::Terminate);
    assert!(!w.late);
    let waited = Instant::now() - t0;
    assert!(waited > 9 * MIN && waited <= 10 * MIN, "{waited:?}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reconnect_with_snapshot_keeps_the_call_and_its_ladder() {
    let mut h = start(None, 1.0, Memory::volatile());
    let t0 = Instant::now();
    let at = chrono::Local::now().fixed_offset();
    h.send(start_event("c-9", "1001", Some(at))).await;
    assert!(matches!(h.next().await, Action::CallStarted(_)));
    tokio::time::advance(5 * MIN).await;
    h.send(PbxEvent::Disconnected {
        reason: "test".into(),
        retry_in: Duration::from_millis(500),
    })
    .await;
    h.send(PbxEvent::Connected {
        endpoint: "ws://pbx/".into(),
    })
    .await;
    // The PBX lists the call again and repeats its start: neither starts it a second time.
    h.send(PbxEvent::Snapshot(vec![CallStart {
        call_id: "c-9".into(),
        at: Some(at),
        agent: "1001".into(),
        caller: "0312345678".into(),
        direction: "inbound".into(),
        channel: String::new(),
    }]))
    .await;
    h.send(start_event("c-9", "1001", Some(at))).await;
    h.settle().await;
    assert!(h.drain().is_empty(), "the call was started twice");
    let (_, w) = h.next_warning().await;
    assert_eq!(w.kind, WarningKind::Escalate);
    assert_eq!(Instant::now() - t0, 15 * MIN);
    let (_, w) = h.next_warning().await;
    assert_eq!(w.kind, WarningKind::Terminate);
    assert_eq!(Instant::now() - t0, 30 * MIN);
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_ends_calls_it_no_longer_lists_as_lost() {
    let mut h = start(None, 1.0, Memory::volatile());
    h.send(start_event("gone", "1001", None)).await;
    assert!(matches!(h.next().await, Action::CallStarted(_)));
    h.send(PbxEvent::Snapshot(vec![])).await;
    match h.next().await {
        Action::CallEnded { call, cause, .. } => {
            assert_eq!((call.call_id.as_str(), cause.as_str()), ("gone", "lost"))
        }
        other => panic!("{other:?}"),
    }
    tokio::time::advance(60 * MIN).await;
    h.settle().await;
    assert!(h.drain().is_empty());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn agent_mode_follows_only_that_agents_calls() {
    let mut h = start(Some("1001"), 1.0, Memory::volatile());
    h.send(start_event("other", "1002", None)).await;
    h.send(start_event("mine", "1001", None)).await;
    match h.next().await {
        Action::CallStarted(c) => assert_eq!(c.call_id, "mine"),
        other => panic!("{other:?}"),
    }
    let (id, _) = h.next_warning().await;
    assert_eq!(id, "mine");
    let (id, _) = h.next_warning().await;
    assert_eq!(id, "mine");
    h.settle().await;
    assert!(h.drain().is_empty());
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn time_scale_divides_every_threshold() {
    let mut h = start(None, 60.0, Memory::volatile());
    let t0 = Instant::now();
    h.send(start_event("demo", "1001", None)).await;
    assert!(matches!(h.next().await, Action::CallStarted(_)));
    let (_, w) = h.next_warning().await;
    assert_eq!(Instant::now() - t0, Duration::from_secs(15));
    assert_eq!(w.elapsed, 15 * MIN, "call time is reported scaled back");
    let (_, _) = h.next_warning().await;
    assert_eq!(Instant::now() - t0, Duration::from_secs(30));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_thousand_concurrent_calls_each_warn_once_per_step() {
    let mut h = start(None, 1.0, Memory::volatile());
    let t0 = Instant::now();
    for i in 0..1000 {
        h.send(start_event(&format!("c-{i}"), "1001", None)).await;
    }
    let mut started = 0;
    let mut per_call = std::collections::HashMap::<String, Vec<WarningKind>>::new();
    while per_call.values().map(Vec::len).sum::<usize>() < 2000 {
        match h.next().await {
            Action::CallStarted(_) => started += 1,
            Action::Warning(c, w) => {
                let at = Instant::now() - t0;
                assert_eq!(at, w.after, "{} fired at {at:?}", c.call_id);
                per_call.entry(c.call_id.clone()).or_default().push(w.kind);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(started, 1000);
    assert_eq!(per_call.len(), 1000);
    assert!(
        per_call
            .values()
            .all(|k| k == &[WarningKind::Escalate, WarningKind::Terminate])
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_tracker_does_not_repeat_a_warning_that_already_fired() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("fired.jsonl");
    let at = chrono::Local::now().fixed_offset();
    {
        let mut h = start(None, 1.0, Memory::open(&journal));
        h.send(start_event("c-r", "1001", Some(at))).await;
        assert!(matches!(h.next().await, Action::CallStarted(_)));
        let (_, w) = h.next_warning().await;
        assert_eq!(w.kind, WarningKind::Escalate);
        h.stop().await; // the tracker and its journal writer finish here
    }
    // A new process adopts the same call 16 minutes in: the escalate step is not repeated.
    let mut h = start(None, 1.0, Memory::open(&journal));
    h.send(PbxEvent::Snapshot(vec![CallStart {
        call_id: "c-r".into(),
        at: Some(at - chrono::Duration::minutes(1)),
        agent: "1001".into(),
        caller: String::new(),
        direction: "inbound".into(),
        channel: String::new(),
    }]))
    .await;
    assert!(matches!(h.next().await, Action::CallStarted(_)));
    let (_, w) = h.next_warning().await;
    assert_eq!(
        w.kind,
        WarningKind::Terminate,
        "escalate repeated after restart"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn status_lists_calls_with_their_next_warning_and_counts_bad_frames() {
    let h = start(None, 1.0, Memory::volatile());
    h.send(start_event("c-s", "1001", None)).await;
    h.send(PbxEvent::BadFrame {
        reason: "not JSON".into(),
    })
    .await;
    h.settle().await;
    tokio::time::advance(16 * MIN).await;
    let (tx, rx) = oneshot::channel();
    h.commands.send(Command::Status(tx)).await.unwrap();
    let st = rx.await.unwrap();
    assert_eq!(st.bad_frames, 1);
    assert_eq!(st.calls.len(), 1);
    assert_eq!(st.calls[0].next_warning.as_deref(), Some("terminate"));
    assert_eq!(st.calls[0].elapsed_secs, 16 * 60);
    h.stop().await;
}

/// A start the PBX dates ten minutes back (replayed after our restart) is a call under way: it is
/// tracked from its real start, without a second recording notice (adopted).
#[tokio::test(start_paused = true)]
async fn a_start_long_past_is_taken_as_a_call_under_way() {
    let mut h = start(None, 1.0, Memory::volatile());
    let at = chrono::Local::now().fixed_offset() - chrono::Duration::minutes(10);
    h.send(start_event("replayed", "1001", Some(at))).await;
    match h.next().await {
        Action::CallStarted(c) => assert!(c.adopted, "a replayed start must not replay the notice"),
        other => panic!("{other:?}"),
    }
    let t0 = Instant::now();
    let (_, w) = h.next_warning().await;
    assert_eq!(w.kind, WarningKind::Escalate);
    let waited = Instant::now() - t0;
    assert!(waited > 4 * MIN && waited <= 5 * MIN, "{waited:?}");
    h.stop().await;
}

/// A call that ended while the daemon was away (absent from the snapshot) is forgotten by the
/// journal, so a new call reusing its id gets its warnings.
#[tokio::test(start_paused = true)]
async fn a_reused_call_id_is_not_silenced_by_an_old_journal_entry() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("fired.jsonl");
    {
        let mut h = start(None, 1.0, Memory::open(&journal));
        h.send(start_event("line-1", "1001", None)).await;
        assert!(matches!(h.next().await, Action::CallStarted(_)));
        let (_, w) = h.next_warning().await;
        assert_eq!(w.kind, WarningKind::Escalate);
        h.stop().await; // the daemon goes away mid-call; the call ends meanwhile
    }
    let mut h = start(None, 1.0, Memory::open(&journal));
    h.send(PbxEvent::Snapshot(vec![])).await;
    h.settle().await;
    h.send(start_event("line-1", "1001", None)).await;
    assert!(matches!(h.next().await, Action::CallStarted(_)));
    let (_, w) = h.next_warning().await;
    assert_eq!(
        w.kind,
        WarningKind::Escalate,
        "the new call's 15-minute warning was silenced"
    );
    h.stop().await;
}

/// A reload during a call (issue 11, item 8): a warning already given is not given again; the
/// next step takes its new time, to the second; the sinks hear of the new configuration before
/// any warning it causes.
#[tokio::test(start_paused = true)]
async fn a_reloaded_ladder_applies_to_the_call_in_progress_without_repeating_a_warning() {
    let mut h = start(None, 1.0, Memory::volatile());
    let t0 = Instant::now();
    h.send(start_event("c-r", "1001", None)).await;
    assert!(matches!(h.next().await, Action::CallStarted(_)));
    let (_, w) = h.next_warning().await;
    assert_eq!(w.kind, WarningKind::Escalate);
    tokio::time::advance(5 * MIN).await;
    h.settle().await;
    assert!(h.drain().is_empty());

    let cfg = callguard::config::Config::from_toml(
        "[[warning]]\nafter = \"5m\"\nkind = \"escalate\"\n\
         [[warning]]\nafter = \"25m\"\nkind = \"terminate\"\n",
    )
    .unwrap();
    let (reply, done) = oneshot::channel();
    h.commands
        .send(Command::Reconfigure {
            cfg: std::sync::Arc::new(cfg),
            reply,
        })
        .await
        .unwrap();
    done.await.unwrap();
    assert!(matches!(h.next().await, Action::Reconfigured(_)));
    let (_, w) = h.next_warning().await;
    assert_eq!((w.kind, w.step), (WarningKind::Terminate, 1));
    assert_eq!(Instant::now() - t0, 25 * MIN, "terminate off its new time");
    tokio::time::advance(60 * MIN).await;
    h.settle().await;
    assert!(h.drain().is_empty(), "a warning was repeated");

    // Lowered below the call's time: the step not yet given fires at once.
    h.send(start_event("c-s", "1001", None)).await;
    assert!(matches!(h.next().await, Action::CallStarted(_)));
    tokio::time::advance(3 * MIN).await;
    h.settle().await;
    let cfg =
        callguard::config::Config::from_toml("[[warning]]\nafter = \"2m\"\nkind = \"escalate\"\n")
            .unwrap();
    let (reply, done) = oneshot::channel();
    h.commands
        .send(Command::Reconfigure {
            cfg: std::sync::Arc::new(cfg),
            reply,
        })
        .await
        .unwrap();
    done.await.unwrap();
    let actions = h.drain();
    assert!(matches!(actions[0], Action::Reconfigured(_)), "{actions:?}");
    assert!(
        matches!(&actions[1], Action::Warning(c, w) if c.call_id == "c-s" && w.kind == WarningKind::Escalate),
        "{actions:?}"
    );
    assert_eq!(
        actions.len(),
        2,
        "c-r is past the whole new ladder: {actions:?}"
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_start_after_its_own_end_is_no_call_but_the_same_id_later_is() {
    let mut h = start(None, 1.0, Memory::volatile());
    // The end first (a PBX sending out of order), then its start: no call that never ends.
    h.send(end_event("c-late")).await;
    h.send(start_event("c-late", "1001", None)).await;
    h.settle().await;
    tokio::time::advance(31 * MIN).await;
    h.settle().await;
    assert!(h.drain().is_empty(), "a phantom call was tracked");
    // Another call meanwhile is tracked as ever.
    h.send(start_event("c-other", "1001", None)).await;
    assert!(matches!(h.next().await, Action::CallStarted(c) if c.call_id == "c-other"));
    // Past ten minutes, a PBX reusing the id starts a real call with it.
    h.send(start_event("c-late", "1001", None)).await;
    assert!(matches!(h.next().await, Action::CallStarted(c) if c.call_id == "c-late"));
    h.stop().await;
}
