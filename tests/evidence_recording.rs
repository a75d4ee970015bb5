//! Audio frames over a real websocket → the sealed `call.wav`: its samples equal an independent
//! G.711 decode (tables written here from the standard, not the crate's), gaps are silence,
//! folders and files are private, hostile call ids stay inside `evidence.dir`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use callguard::events::Report;
use common::{FakePbx, PbxConn, TestRun, test_config};
use serde_json::json;

/// μ-law decode per ITU-T G.711 by the classic exponent table (independent of the crate's code).
fn ulaw(b: u8) -> i16 {
    const EXP: [i32; 8] = [0, 132, 396, 924, 1980, 4092, 8316, 16764];
    let b = !b;
    let sign = b & 0x80;
    let exponent = ((b >> 4) & 7) as usize;
    let mantissa = (b & 0x0f) as i32;
    let sample = EXP[exponent] + (mantissa << (exponent + 3));
    (if sign != 0 { -sample } else { sample }) as i16
}

/// A-law decode per ITU-T G.711 (segment-by-segment, as in the reference C code).
fn alaw(b: u8) -> i16 {
    let a = b ^ 0x55;
    let mut t = ((a & 0x0f) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn start_call(conn: &mut PbxConn, id: &str) {
    conn.send(json!({"type":"call.start","call_id":id,
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),
        "agent":"1001","caller":"0312345678","direction":"inbound"}))
        .await;
}

async fn sealed(d: &mut common::RunningDaemon, id: &str) -> (PathBuf, Option<String>) {
    let id = id.to_string();
    d.next(move |r| match r {
        Report::Sealed {
            call_id,
            dir,
            sha256,
            ..
        } if *call_id == id => Some((dir.clone(), sha256.clone())),
        _ => None,
    })
    .await
}

fn read_wav(path: &Path) -> (hound::WavSpec, Vec<i16>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    let samples = r.samples::<i16>().map(|s| s.unwrap()).collect();
    (spec, samples)
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn stereo_mulaw_frames_become_the_samples_of_an_independent_decode() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(tmp.path(), &pbx.url);
    cfg.evidence.min_free_mb = 0;
    let root = PathBuf::from(&cfg.evidence.dir);
    let mut d = TestRun::headless().start(cfg);
    let mut conn = pbx.accept().await;
    start_call(&mut conn, "c-stereo").await;
    conn.send(
        json!({"type":"media.start","call_id":"c-stereo","encoding":"audio/x-mulaw",
        "sample_rate":8000,"channels":1}),
    )
    .await;
    // Every μ-law code on both tracks; outbound misses frames 4 and 5 (a seq gap).
    let frame = |track: u8, seq: u64| -> Vec<u8> {
        (0..160u32)
            .map(|i| (i as u64 * 7 + seq * 13 + u64::from(track) * 101) as u8)
            .collect()
    };
    let mut left = Vec::new();
    let mut right = Vec::new();
    for seq in 1..=60u64 {
        let a = frame(0, seq);
        conn.send(json!({"type":"media","call_id":"c-stereo","track":"inbound","seq":seq,"payload":b64(&a)}))
            .await;
        left.extend(a.iter().map(|&b| ulaw(b)));
        if seq == 4 || seq == 5 {
            right.extend(std::iter::repeat_n(0i16, 160));
            continue;
        }
        let b = frame(1, seq);
        conn.send(json!({"type":"media","call_id":"c-stereo","track":"outbound","seq":seq,"payload":b64(&b)}))
            .await;
        right.extend(b.iter().map(|&b| ulaw(b)));
    }
    conn.send(json!({"type":"call.end","call_id":"c-stereo","cause":"normal"}))
        .await;
    let (dir, sha) = sealed(&mut d, "c-stereo").await;

    let (spec, samples) = read_wav(&dir.join("call.wav"));
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let got_left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let got_right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(got_left, left, "customer channel (left)");
    assert_eq!(got_right, right, "agent channel (right), gap as silence");

    let m = manifest(&dir);
    assert_eq!(m["schema"], "callguard.evidence/1");
    assert_eq!(m["audio"]["gaps"], 2);
    assert_eq!(m["audio"]["channels"], 2);
    assert_eq!(m["audio"]["stream_encoding"], "audio/x-mulaw");
    assert_eq!(m["audio"]["sha256"].as_str(), sha.as_deref());
    assert_eq!(m["recovered"], false);
    assert_eq!(m["truncated"], false);
    let wav_bytes = std::fs::read(dir.join("call.wav")).unwrap();
    use sha2::Digest;
    assert_eq!(Some(hex::encode(sha2::Sha256::digest(&wav_bytes))), sha);
    // RFC 3339 with an offset.
    for k in ["started_at", "ended_at"] {
        chrono::DateTime::parse_from_rfc3339(m[k].as_str().unwrap()).unwrap();
    }

    // Private modes all the way down; nothing of the recording left behind.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["call.wav", "manifest.json", "manifest.sig"]);
    for f in &names {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let mut p = dir.as_path();
    while p != root.parent().unwrap() {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", p.display());
        p = p.parent().unwrap();
    }
    let ledger = std::fs::read_to_string(root.join("ledger.jsonl")).unwrap();
    assert_eq!(ledger.lines().count(), 1);
    d.stop().await;
}

#[tokio::test]
async fn alaw_and_l16_mono_calls_decode_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(tmp.path(), &pbx.url);
    cfg.evidence.min_free_mb = 0;
    let mut d = TestRun::headless().start(cfg);
    let mut conn = pbx.accept().await;

    // A-law, mixed track, 16 kHz.
    start_call(&mut conn, "c-alaw").await;
    conn.send(json!({"type":"media.start","call_id":"c-alaw","encoding":"audio/x-alaw","sample_rate":16000}))
        .await;
    let mut want = Vec::new();
    for seq in 1..=20u64 {
        let f: Vec<u8> = (0..320u32).map(|i| (i as u64 + seq * 31) as u8).collect();
        want.extend(f.iter().map(|&b| alaw(b)));
        conn.send(
            json!({"type":"media","call_id":"c-alaw","track":"mixed","seq":seq,"payload":b64(&f)}),
        )
        .await;
    }
    conn.send(json!({"type":"call.end","call_id":"c-alaw","cause":"normal"}))
        .await;
    let (dir, _) = sealed(&mut d, "c-alaw").await;
    let (spec, got) = read_wav(&dir.join("call.wav"));
    assert_eq!((spec.channels, spec.sample_rate), (1, 16000));
    assert_eq!(got, want);

    // L16 on the inbound track only: mono after a second of audio; odd frame lengths carried.
    start_call(&mut conn, "c-l16").await;
    conn.send(
        json!({"type":"media.start","call_id":"c-l16","encoding":"audio/l16","sample_rate":8000}),
    )
    .await;
    let mut want = Vec::new();
    let mut stream = Vec::new();
    for i in 0..12_000i32 {
        let s = ((i * 37) % 65536 - 32768) as i16;
        want.push(s);
        stream.extend_from_slice(&s.to_le_bytes());
    }
    for (n, chunk) in stream.chunks(321).enumerate() {
        conn.send(json!({"type":"media","call_id":"c-l16","track":"inbound","seq":n + 1,"payload":b64(chunk)}))
            .await;
    }
    conn.send(json!({"type":"call.end","call_id":"c-l16","cause":"normal"}))
        .await;
    let (dir, _) = sealed(&mut d, "c-l16").await;
    let (spec, got) = read_wav(&dir.join("call.wav"));
    assert_eq!(spec.channels, 1);
    assert_eq!(got, want);
    d.stop().await;
}

#[tokio::test]
async fn hostile_call_ids_stay_inside_the_evidence_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(tmp.path(), &pbx.url);
    cfg.evidence.min_free_mb = 0;
    let root = PathBuf::from(&cfg.evidence.dir);
    let mut d = TestRun::headless().start(cfg);
    let mut conn = pbx.accept().await;
    let long = "x/".repeat(128); // 256 bytes, the protocol's limit
    let ids = [
        "../../etc/x",
        "a/b\u{0}c",
        "/etc/passwd",
        "..",
        long.as_str(),
    ];
    for id in ids {
        start_call(&mut conn, id).await;
        conn.send(json!({"type":"media","call_id":id,"track":"mixed","seq":1,"payload":b64(&[0xff; 160])}))
            .await;
        conn.send(json!({"type":"call.end","call_id":id,"cause":"normal"}))
            .await;
        let (dir, _) = sealed(&mut d, id).await;
        let canon = dir.canonicalize().unwrap();
        assert!(
            canon.starts_with(root.canonicalize().unwrap()),
            "{id:?} → {}",
            canon.display()
        );
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.len() <= 6 + 1 + 64 + 9 + 4, "{name}");
        assert_eq!(
            manifest(&dir)["call_id"],
            id,
            "the manifest keeps the id as given"
        );
    }
    assert!(!tmp.path().join("etc").exists());
    // The same id twice the same second never reuses a folder.
    for _ in 0..2 {
        start_call(&mut conn, "dup").await;
        conn.send(json!({"type":"call.end","call_id":"dup","cause":"normal"}))
            .await;
    }
    let (a, _) = sealed(&mut d, "dup").await;
    let (b, _) = sealed(&mut d, "dup").await;
    assert_ne!(a, b);
    d.stop().await;
}

#[tokio::test]
async fn stopping_the_daemon_mid_call_seals_the_open_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(tmp.path(), &pbx.url);
    cfg.evidence.min_free_mb = 0;
    let root = PathBuf::from(&cfg.evidence.dir);
    let mut d = TestRun::headless().start(cfg);
    let mut conn = pbx.accept().await;
    start_call(&mut conn, "c-open").await;
    for seq in 1..=10u64 {
        conn.send(json!({"type":"media","call_id":"c-open","track":"mixed","seq":seq,"payload":b64(&[0x55; 160])}))
            .await;
    }
    // Events are handled in order: once a later call is tracked, the frames are in the sink's queue.
    start_call(&mut conn, "c-marker").await;
    d.next(|r| matches!(r, Report::CallStarted(c) if c.call_id == "c-marker").then_some(()))
        .await;
    let mut reports = d.reports.resubscribe();
    d.stop().await;
    let dir = loop {
        match reports.recv().await {
            Ok(Report::Sealed { call_id, dir, .. }) if call_id == "c-open" => break dir,
            Ok(_) => continue,
            Err(e) => panic!("no seal before the daemon stopped: {e}"),
        }
    };
    let m = manifest(&dir);
    assert_eq!(m["end_cause"], "shutdown");
    assert_eq!(m["audio"]["audio_secs"], 0.2);
    assert!(dir.starts_with(&root));
    assert!(!dir.join("meta.json").exists());
}

/// The audio length in the manifest, the call's length, and its problems.
fn lengths(dir: &Path) -> (f64, f64, Vec<String>) {
    let m = manifest(dir);
    let started = chrono::DateTime::parse_from_rfc3339(m["started_at"].as_str().unwrap()).unwrap();
    let ended = chrono::DateTime::parse_from_rfc3339(m["ended_at"].as_str().unwrap()).unwrap();
    let call = (ended - started).num_milliseconds() as f64 / 1000.0;
    let problems = m["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    (m["audio"]["audio_secs"].as_f64().unwrap(), call, problems)
}

#[tokio::test]
async fn silence_filling_is_bounded_by_the_calls_real_time() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(tmp.path(), &pbx.url);
    cfg.evidence.min_free_mb = 0;
    let mut d = TestRun::headless().start(cfg);
    let mut conn = pbx.accept().await;

    // A PBX that puts an RTP timestamp into seq: +160 per 20 ms frame of μ-law.
    start_call(&mut conn, "c-rtp").await;
    conn.send(json!({"type":"media.start","call_id":"c-rtp","encoding":"audio/x-mulaw","sample_rate":8000}))
        .await;
    for i in 0..50u64 {
        conn.send(json!({"type":"media","call_id":"c-rtp","track":"mixed","seq":1 + 160 * i,"payload":b64(&[0x7f; 160])}))
            .await;
    }
    conn.send(json!({"type":"call.end","call_id":"c-rtp","cause":"normal"}))
        .await;
    let (dir, _) = sealed(&mut d, "c-rtp").await;
    let (audio, call, problems) = lengths(&dir);
    assert!(
        audio <= call + 2.0,
        "{audio} s of audio for a {call} s call"
    );
    assert!(
        std::fs::metadata(dir.join("call.wav")).unwrap().len() < 100_000,
        "call.wav too large"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("jumped further forward")),
        "{problems:?}"
    );

    // L16 at 192 kHz with seq = 1 + i·1,000,000 and 3-byte payloads.
    start_call(&mut conn, "c-l16-jumps").await;
    conn.send(json!({"type":"media.start","call_id":"c-l16-jumps","encoding":"audio/l16","sample_rate":192000}))
        .await;
    for i in 0..5u64 {
        conn.send(json!({"type":"media","call_id":"c-l16-jumps","track":"mixed","seq":1 + i * 1_000_000,"payload":b64(&[1, 2, 3])}))
            .await;
    }
    conn.send(json!({"type":"call.end","call_id":"c-l16-jumps","cause":"normal"}))
        .await;
    let (dir, _) = sealed(&mut d, "c-l16-jumps").await;
    let (audio, call, problems) = lengths(&dir);
    assert!(
        audio <= call + 2.0,
        "{audio} s of audio for a {call} s call"
    );
    assert!(
        problems.iter().any(|p| p.contains("4 times")),
        "{problems:?}"
    );
    d.stop().await;
}
