//! Warning lateness (fired − due) for 1,000 concurrent calls on real time with a 2-second
//! threshold. Each call carries its PBX start time (`at`), as real PBX events do, so "due" is
//! `at` + threshold whatever the queueing at start. Two figures: as the tracker fires it
//! (call time at firing − threshold), and end to end, where a sink receives the warning.
//! Target: p99 under 5 ms.
//! Run: `cargo bench --bench warning_lateness`.

use std::time::{Duration, Instant};

use callguard::bus::Bus;
use callguard::calls::{self, Step, TrackerOptions, memory::Memory};
use callguard::config::WarningKind;
use callguard::events::{Action, CallStart, PbxEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CALLS: usize = 1000;
const THRESHOLD: Duration = Duration::from_secs(2);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rounds = 3;
    let mut at_sink = Vec::new();
    let mut at_fire = Vec::new();
    for _ in 0..rounds {
        let (sink, fire) = rt.block_on(round());
        at_sink.extend(sink);
        at_fire.extend(fire);
    }
    report("fired by the tracker", &mut at_fire, rounds);
    report("received by a sink", &mut at_sink, rounds);
}

fn report(what: &str, all: &mut [Duration], rounds: usize) {
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "warning lateness {what}, {CALLS} concurrent calls × {rounds} rounds, threshold {THRESHOLD:?}: \
         p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms (n = {})",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*all.last().unwrap_or(&Duration::ZERO)),
        all.len()
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn round() -> (Vec<Duration>, Vec<Duration>) {
    let mut bus = Bus::new();
    let mut actions = bus.subscribe(false);
    let (events, events_rx) = mpsc::channel(4096);
    let (_commands, commands_rx) = mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let opts = TrackerOptions {
        ladder: vec![Step {
            after: THRESHOLD,
            kind: WarningKind::Escalate,
            notify_lead: false,
        }],
        agent: None,
        time_scale: 1.0,
        memory: Memory::volatile(),
        rules: Vec::new(),
    };
    let tracker = tokio::spawn(calls::run(
        opts,
        events_rx,
        commands_rx,
        bus,
        shutdown.clone(),
    ));
    let mut sent = std::collections::HashMap::with_capacity(CALLS);
    for i in 0..CALLS {
        let id = format!("c-{i}");
        // Taken before the send: the tracker's clock for the call starts no earlier.
        sent.insert(id.clone(), Instant::now());
        let start = CallStart {
            call_id: id,
            at: Some(chrono::Local::now().fixed_offset()),
            agent: "1001".into(),
            caller: "0312345678".into(),
            direction: "inbound".into(),
            channel: String::new(),
        };
        events
            .send(PbxEvent::CallStart(start))
            .await
            .expect("tracker");
        // Spread the starts over about a second, as a floor's calls would be.
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut late = Vec::with_capacity(CALLS);
    let mut fired = Vec::with_capacity(CALLS);
    while late.len() < CALLS {
        match actions.recv().await {
            Some(Action::Warning(call, w)) => {
                let due = sent[&call.call_id] + THRESHOLD;
                late.push(Instant::now().saturating_duration_since(due));
                fired.push(w.elapsed.saturating_sub(w.after));
            }
            Some(_) => {}
            None => break,
        }
    }
    shutdown.cancel();
    let _ = tracker.await;
    (late, fired)
}
