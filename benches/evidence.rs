//! Evidence benchmarks (figures in the README, `scripts/bench-evidence.sh` prints the ratios):
//!
//! - `seal/callguard_60min` vs `seal/sha256sum_60min`: sealing a 60-minute stereo 8 kHz call
//!   (115 MB WAV: hash, manifest, signature, ledger line, fsyncs) against `sha256sum` of the
//!   same file, page cache warm for both. Target: ≤ 1.3×.
//! - `recorder/*_60s`: the CPU one stream costs for 60 s of real-time audio (20 ms μ-law
//!   frames on two tracks → 16-bit stereo WAV), without and with the protocol frame parsing.
//!   Streams per core = 60 s / time. Target: 200.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use callguard::events::{Encoding, PbxEvent, Track};
use callguard::evidence::recorder::Recorder;
use callguard::evidence::seal::{CallRecord, Sealer};
use criterion::{Criterion, criterion_group, criterion_main};

fn write_wav(path: &Path, secs: u32) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let mut x: u32 = 1;
    for _ in 0..secs * 8000 * 2 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        w.write_sample((x >> 16) as i16).unwrap();
    }
    w.finalize().unwrap();
}

fn record() -> CallRecord {
    let now = chrono::Local::now().fixed_offset();
    CallRecord {
        call_id: "bench".into(),
        agent: "1001".into(),
        caller: "0312345678".into(),
        direction: "inbound".into(),
        channel: String::new(),
        started_at: now,
        ended_at: Some(now),
        duration_secs: Some(3600),
        end_cause: "normal".into(),
        warnings: Vec::new(),
        source: "stream".into(),
        source_name: String::new(),
        stream_encoding: "audio/x-mulaw".into(),
        truncated: false,
        recovered: false,
        problems: Vec::new(),
        gaps: 0,
        late_frames: 0,
        incident: Default::default(),
        continues: None,
    }
}

fn seal(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let wav = tmp.path().join("60min.wav");
    // `cargo test --all-targets` runs each benchmark once, unoptimized: a minute is enough there.
    let bench_run = std::env::args().any(|a| a == "--bench");
    write_wav(&wav, if bench_run { 3600 } else { 60 });
    let sealer = Sealer::open(&tmp.path().join("evidence"), &tmp.path().join("state")).unwrap();
    let mut n = 0u32;
    let mut g = c.benchmark_group("seal");
    g.sample_size(20);
    g.bench_function("callguard_60min", |b| {
        b.iter(|| {
            n += 1;
            let dir: PathBuf = tmp.path().join("evidence").join(format!("call-{n}"));
            std::fs::create_dir(&dir).unwrap();
            // A hard link: the same bytes in the page cache, no copy in the timing.
            std::fs::hard_link(&wav, dir.join("call.wav")).unwrap();
            sealer.seal(&dir, &record()).unwrap()
        })
    });
    g.bench_function("sha256sum_60min", |b| {
        b.iter(|| {
            let out = Command::new("sha256sum").arg(&wav).output().unwrap();
            assert!(out.status.success());
            out
        })
    });
    g.finish();
}

fn frames(secs: u64) -> Vec<(Track, u64, Vec<u8>)> {
    let mut v = Vec::new();
    for seq in 1..=secs * 50 {
        for track in [Track::Inbound, Track::Outbound] {
            let f: Vec<u8> = (0..160u64).map(|i| (i * 7 + seq) as u8).collect();
            v.push((track, seq, f));
        }
    }
    v
}

fn recorder(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let input = frames(60);
    let json: Vec<String> = input
        .iter()
        .map(|(t, seq, p)| {
            serde_json::json!({"type":"media","call_id":"c-42",
                "track": if *t == Track::Inbound { "inbound" } else { "outbound" },
                "seq": seq, "payload": base64::engine::general_purpose::STANDARD.encode(p)})
            .to_string()
        })
        .collect();
    let mut n = 0u32;
    let mut g = c.benchmark_group("recorder");
    g.sample_size(20);
    g.bench_function("stream_60s", |b| {
        b.iter(|| {
            n += 1;
            let path = tmp.path().join(format!("r{n}.wav.part"));
            let mut r = Recorder::new(path.clone(), Encoding::Mulaw, 8000);
            for (t, seq, p) in &input {
                r.push(*t, *seq, p).unwrap();
            }
            let stats = r.finish().unwrap();
            std::fs::remove_file(path).unwrap();
            stats
        })
    });
    g.bench_function("parse_and_stream_60s", |b| {
        b.iter(|| {
            n += 1;
            let path = tmp.path().join(format!("r{n}.wav.part"));
            let mut r = Recorder::new(path.clone(), Encoding::Mulaw, 8000);
            for text in &json {
                if let Ok(callguard::pbx::generic::protocol::Parsed::Event(PbxEvent::Media {
                    track,
                    seq,
                    payload,
                    ..
                })) = callguard::pbx::generic::protocol::parse_frame(text)
                {
                    r.push(track, seq, &payload).unwrap();
                }
            }
            let stats = r.finish().unwrap();
            std::fs::remove_file(path).unwrap();
            stats
        })
    });
    g.finish();
}

criterion_group!(benches, seal, recorder);
criterion_main!(benches);
