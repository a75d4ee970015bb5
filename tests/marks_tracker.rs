//! Marks through the real tracker on paused time: offsets, rules fired once, levels, errors.

use std::time::Duration;

use callguard::bus::Bus;
use callguard::calls::{
    self, CallError, Command, MarkReceipt, Step, TrackerOptions, memory::Memory,
};
use callguard::config::WarningKind;
use callguard::events::{Action, CallStart, PbxEvent};
use callguard::harassment::{Level, MarkKind, RuleAction, default_rules};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

struct H {
    events: mpsc::Sender<PbxEvent>,
    commands: mpsc::Sender<Command>,
    actions: mpsc::UnboundedReceiver<Action>,
    shutdown: CancellationToken,
}

fn start() -> H {
    let mut bus = Bus::new();
    let actions = bus.subscribe(false);
    let (events, events_rx) = mpsc::channel(64);
    let (commands, commands_rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let opts = TrackerOptions {
        ladder: vec![
            Step {
                after: Duration::from_secs(900),
                kind: WarningKind::Escalate,
                notify_lead: true,
            },
            Step {
                after: Duration::from_secs(1800),
                kind: WarningKind::Terminate,
                notify_lead: true,
            },
        ],
        agent: None,
        time_scale: 1.0,
        memory: Memory::volatile(),
        rules: default_rules(),
    };
    tokio::spawn(calls::run(
        opts,
        events_rx,
        commands_rx,
        bus,
        shutdown.clone(),
    ));
    H {
        events,
        commands,
        actions,
        shutdown,
    }
}

impl H {
    async fn mark(&self, kind: MarkKind, quote: Option<&str>) -> Result<MarkReceipt, CallError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Mark {
                kind,
                quote: quote.map(str::to_string),
                call_id: None,
                reply,
            })
            .await
            .unwrap();
        rx.await.unwrap()
    }

    fn drain(&mut self) -> Vec<Action> {
        let mut v = Vec::new();
        while let Ok(a) = self.actions.try_recv() {
            v.push(a);
        }
        v
    }
}

#[tokio::test(start_paused = true)]
async fn marks_count_fire_rules_once_and_raise_the_level() {
    let mut h = start();
    assert_eq!(h.mark(MarkKind::Abuse, None).await, Err(CallError::NoCall));
    h.events
        .send(PbxEvent::CallStart(CallStart {
            call_id: "c-1".into(),
            at: None,
            agent: "1001".into(),
            caller: "0312345678".into(),
            direction: "inbound".into(),
            channel: String::new(),
        }))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(65)).await;
    let r = h
        .mark(MarkKind::Manager, Some("責任者を出せ"))
        .await
        .unwrap();
    assert_eq!((r.offset.as_str(), r.count, r.level), ("01:05", 1, 3));
    assert!(r.fired.is_empty());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let r = h
        .mark(MarkKind::Manager, Some("責任者を出せと言ってるだろ"))
        .await
        .unwrap();
    assert_eq!(r.fired, ["manager#2:escalate"]);
    assert_eq!(r.offset, "02:05");

    let actions = h.drain();
    let marked: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Marked(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(marked.len(), 2);
    assert_eq!(
        marked[1].marks.len(),
        2,
        "a mark event carries the marks so far"
    );
    assert_eq!(marked[1].marks[0].quote.as_deref(), Some("責任者を出せ"));
    assert_eq!(marked[1].fired[0].rule.action, RuleAction::Escalate);
    let levels: Vec<(Level, Level)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::LevelChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(levels, [(Level::NORMAL, Level::SIGNS)]);

    // A threat: escalate and end at once, level 4; a second threat fires nothing new.
    let r = h.mark(MarkKind::Threat, Some("家に行くぞ")).await.unwrap();
    assert_eq!(r.fired, ["threat#1:escalate", "threat#1:end"]);
    assert!(r.grounds_to_end);
    assert_eq!(r.level, 4);
    let r = h.mark(MarkKind::Threat, None).await.unwrap();
    assert!(r.fired.is_empty());

    // The 30-minute warning still fires on time and does not lower anything.
    h.drain();
    let w = loop {
        match h.actions.recv().await.unwrap() {
            Action::Warning(_, w) if w.kind == WarningKind::Terminate => break w,
            _ => {}
        }
    };
    assert_eq!(w.after, Duration::from_secs(1800));
    let (tx, rx) = oneshot::channel();
    h.commands.send(Command::Status(tx)).await.unwrap();
    let st = rx.await.unwrap();
    assert_eq!((st.calls[0].level, st.calls[0].marks), (4, 4));
    h.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn the_15_minute_warning_makes_a_quiet_call_level_2() {
    let mut h = start();
    h.events
        .send(PbxEvent::CallStart(CallStart {
            call_id: "c-2".into(),
            at: None,
            agent: "1001".into(),
            caller: String::new(),
            direction: "inbound".into(),
            channel: String::new(),
        }))
        .await
        .unwrap();
    let (from, to, reason) = loop {
        if let Action::LevelChanged {
            from, to, reason, ..
        } = h.actions.recv().await.unwrap()
        {
            break (from, to, reason);
        }
    };
    assert_eq!(
        (from, to, reason.as_str()),
        (Level::NORMAL, Level::EMOTIONAL, "escalate")
    );
    h.shutdown.cancel();
}
