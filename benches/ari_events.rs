//! Cost of reading ARI events: the flood callguard ignores (ChannelVarset, ChannelDialplan,
//! DeviceStateChanged) against the few it acts on, on the real Asterisk 22.10.1 capture.

use callguard::pbx::ari::event::{self, Event};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn capture() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/asterisk-22.10.1/ari-observed-bridged.jsonl"
    );
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .lines()
        .map(str::to_string)
        .collect()
}

fn bench(c: &mut Criterion) {
    let lines = capture();
    let (ignored, used): (Vec<&String>, Vec<&String>) = lines
        .iter()
        .partition(|l| matches!(event::parse(l), Ok(Event::Ignored(_))));
    let mut g = c.benchmark_group("ari_events");
    g.throughput(Throughput::Elements(ignored.len() as u64));
    g.bench_function("ignored_flood", |b| {
        b.iter(|| {
            for l in &ignored {
                std::hint::black_box(event::parse(l).ok());
            }
        })
    });
    g.throughput(Throughput::Elements(used.len() as u64));
    g.bench_function("acted_on", |b| {
        b.iter(|| {
            for l in &used {
                std::hint::black_box(event::parse(l).ok());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
