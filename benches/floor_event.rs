//! The workstation's own cost per floor event, without the bus: turning a call's start and end
//! into events ([`Mapper::map`]), their JSON ([`FloorEvent::encode`], against serde's `to_vec`
//! as the peer in the same run), and queueing them in the durable backlog
//! ([`Backlog::push_at`]; its writer thread's writes and commits run beside and are not
//! counted here). Each iteration is one call: two events.
//!
//! Run: `cargo bench --bench floor_event`.

use std::sync::Arc;
use std::time::Duration;

use callguard::events::{Action, CallInfo};
use callguard::floor::backlog::Backlog;
use callguard::floor::contract::{CallerIdMode, FloorEvent};
use callguard::floor::mapping::{Identity, Mapper};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

fn identity() -> Identity {
    Identity {
        site: "tokyo-1".into(),
        agent: "1001".into(),
        agent_name: "佐藤".into(),
        host: "ws-017".into(),
        caller_mode: CallerIdMode::Plain,
        caller_key: Vec::new(),
        country_code: "81".into(),
        webhook_targets: 1,
    }
}

/// A call's start and end, as the tracker sends them.
fn call_actions(i: u64) -> [Action; 2] {
    let now = chrono::Local::now().fixed_offset();
    let call = Arc::new(CallInfo {
        call_id: format!("1795354434.{i}"),
        agent: "PJSIP/1001".into(),
        caller: "0312345678".into(),
        direction: "inbound".into(),
        channel: format!("PJSIP/1001-{i:08x}"),
        started_at: now,
        adopted: false,
    });
    [
        Action::CallStarted(call.clone()),
        Action::CallEnded {
            call,
            ended_at: now,
            duration: Duration::from_secs(61),
            cause: "normal".into(),
        },
    ]
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor_event");
    g.throughput(Throughput::Elements(2));

    let mut mapper = Mapper::new(identity());
    let mut i = 0u64;
    g.bench_function("map", |b| {
        b.iter_batched(
            || {
                i += 1;
                call_actions(i)
            },
            |actions| {
                let now = chrono::Local::now().fixed_offset();
                for a in &actions {
                    std::hint::black_box(mapper.map(a, now));
                }
            },
            BatchSize::SmallInput,
        )
    });

    let now = chrono::Local::now().fixed_offset();
    let events: Vec<FloorEvent> = call_actions(0)
        .iter()
        .flat_map(|a| mapper.map(a, now))
        .collect();
    g.bench_function("encode", |b| {
        b.iter(|| {
            for ev in &events {
                std::hint::black_box(ev.encode().ok());
            }
        })
    });
    g.bench_function("encode_serde_peer", |b| {
        b.iter(|| {
            for ev in &events {
                std::hint::black_box(serde_json::to_vec(ev).ok());
            }
        })
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let backlog = Backlog::open(dir.path().join("floor-outbox"), u64::MAX).expect("backlog");
    let subjects: Vec<_> = events.iter().map(|e| mapper.subject(e)).collect();
    g.bench_function("push", |b| {
        b.iter_batched(
            || events.clone(),
            |evs| {
                for (ev, subject) in evs.into_iter().zip(&subjects) {
                    let _ = backlog.push_at(subject.clone(), ev, now);
                }
                // Everything taken at once, as the server would, so the backlog stays small.
                backlog.confirm_through(u64::MAX);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    backlog.close();
}

criterion_group!(benches, bench);
criterion_main!(benches);
