//! Crash recovery with the real binary: `kill -9` mid-call, restart, and the recording left
//! behind is repaired, sealed with `"recovered": true`, and verifies — with every sample that
//! was on disk at the last header flush.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::FakePbx;
use serde_json::json;

fn config(tmp: &Path, url: &str) -> PathBuf {
    common::ConfigFile::new(tmp, url).min_free_mb(0).write()
}

fn spawn(cfg: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_callguard"))
        .arg("run")
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn find(root: &Path, name: &str) -> Option<PathBuf> {
    fn walk(d: &Path, name: &str) -> Option<PathBuf> {
        for e in std::fs::read_dir(d).ok()?.flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == name) {
                return Some(p);
            }
            if p.is_dir()
                && let Some(f) = walk(&p, name)
            {
                return Some(f);
            }
        }
        None
    }
    walk(root, name)
}

/// Waits (bounded) for a condition on the file system that the daemon brings about.
async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn header_data_len(path: &Path) -> Option<u32> {
    let b = std::fs::read(path).ok()?;
    (b.len() >= 44).then(|| u32::from_le_bytes([b[40], b[41], b[42], b[43]]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_call_then_restart_recovers_and_seals_the_recording() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let cfg = config(tmp.path(), &pbx.url);
    let evidence = tmp.path().join("evidence");
    let mut child = spawn(&cfg, &tmp.path().join("run1.log"));
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-crash",
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),
        "agent":"1001","caller":"0312345678","direction":"inbound"}))
        .await;
    conn.send(json!({"type":"media.start","call_id":"c-crash","encoding":"audio/x-mulaw","sample_rate":8000}))
        .await;
    // 3 s of audio on both tracks.
    const FRAMES: u64 = 150;
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    let mut left = Vec::new();
    for seq in 1..=FRAMES {
        let a: Vec<u8> = (0..160u64).map(|i| (i + seq) as u8).collect();
        let b: Vec<u8> = (0..160u64).map(|i| (i * 3 + seq) as u8).collect();
        left.extend(
            a.iter()
                .map(|&x| callguard::evidence::g711::mulaw_to_linear(x)),
        );
        conn.send(json!({"type":"media","call_id":"c-crash","track":"inbound","seq":seq,"payload":b64(&a)}))
            .await;
        conn.send(json!({"type":"media","call_id":"c-crash","track":"outbound","seq":seq,"payload":b64(&b)}))
            .await;
    }
    let want_bytes = (FRAMES * 160 * 4) as u32;
    // The header is made valid within a second or two of the last frame.
    let part = wait_for("the flushed header", || {
        let p = find(&evidence, "call.wav.part")?;
        (header_data_len(&p)? == want_bytes).then_some(p)
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(conn);
    let dir = part.parent().unwrap().to_path_buf();
    assert!(!dir.join("manifest.json").exists());
    assert!(dir.join("meta.json").exists());

    // Restart: recovery runs before anything else.
    let mut child = spawn(&cfg, &tmp.path().join("run2.log"));
    wait_for("the recovered seal", || {
        let ledger = std::fs::read_to_string(evidence.join("ledger.jsonl")).ok()?;
        (ledger.lines().count() == 1 && !dir.join("meta.json").exists()).then_some(())
    })
    .await;
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["recovered"], true, "{m}");
    assert_eq!(m["call_id"], "c-crash");
    assert_eq!(m["caller"], "0312345678");
    assert_eq!(m["audio"]["channels"], 2);
    assert!(!dir.join("call.wav.part").exists());
    let mut r = hound::WavReader::open(dir.join("call.wav")).unwrap();
    let samples: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    assert_eq!(
        samples.len(),
        (FRAMES * 160 * 2) as usize,
        "every flushed sample is kept"
    );
    let got_left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    assert_eq!(got_left, left);

    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["verify", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("OK {}", dir.display())), "{text}");

    // Stop the second daemon cleanly.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();
}

fn rel(root: &Path, dir: &Path) -> String {
    dir.strip_prefix(root)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

/// Issue 11, item 4: `kill -9` mid-call, restart, the PBX re-announces the call: the second
/// folder names the part it continues (folder and manifest SHA-256) and where its audio starts;
/// verify shows the parts as one call and the second part's incident record names the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_split_by_kill_9_is_sealed_as_linked_parts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let cfg = config(tmp.path(), &pbx.url);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[control]\nsocket = \"{}\"\n",
        tmp.path().join("control.sock").display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let evidence = tmp.path().join("evidence");
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    let started = chrono::Local::now().fixed_offset();
    let t0 = Instant::now();
    let start = json!({"type":"call.start","call_id":"c-split","at":started.to_rfc3339(),
        "agent":"1001","caller":"0312345678","direction":"inbound"});

    let mut child = spawn(&cfg, &tmp.path().join("run1.log"));
    let mut conn = pbx.accept().await;
    conn.send(start.clone()).await;
    conn.send(json!({"type":"media.start","call_id":"c-split","encoding":"audio/x-mulaw","sample_rate":8000}))
        .await;
    const FRAMES: u64 = 50;
    for seq in 1..=FRAMES {
        for track in ["inbound", "outbound"] {
            conn.send(
                json!({"type":"media","call_id":"c-split","track":track,"seq":seq,
                "payload":b64(&[seq as u8; 160])}),
            )
            .await;
        }
    }
    let part = wait_for("the flushed header", || {
        let p = find(&evidence, "call.wav.part")?;
        (header_data_len(&p)? == (FRAMES * 160 * 4) as u32).then_some(p)
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(conn);
    let first = part.parent().unwrap().to_path_buf();

    // Restart: the first part is recovered; the PBX re-announces the call still in progress.
    let mut child = spawn(&cfg, &tmp.path().join("run2.log"));
    let mut conn = pbx.accept().await;
    wait_for("the recovered seal", || {
        let ledger = std::fs::read_to_string(evidence.join("ledger.jsonl")).ok()?;
        (ledger.lines().count() == 1).then_some(())
    })
    .await;
    conn.send(
        json!({"type":"calls.snapshot","calls":[{"call_id":"c-split","at":started.to_rfc3339(),
        "agent":"1001","caller":"0312345678","direction":"inbound"}]}),
    )
    .await;
    conn.send(json!({"type":"media.start","call_id":"c-split","encoding":"audio/x-mulaw","sample_rate":8000}))
        .await;
    common::status_until(&cfg, |v| {
        v["tracker"]["calls"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
    })
    .await;
    let resumed_after = t0.elapsed().as_secs_f64();
    for seq in 1..=25u64 {
        for track in ["inbound", "outbound"] {
            conn.send(
                json!({"type":"media","call_id":"c-split","track":track,"seq":seq,
                "payload":b64(&[seq as u8; 160])}),
            )
            .await;
        }
    }
    let (code, _, err) = common::cli(&cfg, &["mark", "abuse", "--quote", "ふざけるな"]).await;
    assert_eq!(code, 0, "{err}");
    // The mark is in the call's record before the call ends.
    let second = wait_for("the second part's meta.json with the mark", || {
        let meta = std::fs::read_dir(first.parent()?)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| *p != first)?;
        std::fs::read_to_string(meta.join("meta.json"))
            .ok()?
            .contains("ふざけるな")
            .then_some(meta)
    })
    .await;
    let before_end = t0.elapsed().as_secs_f64();
    conn.send(json!({"type":"call.end","call_id":"c-split","cause":"normal"}))
        .await;
    wait_for("the second part's seal", || {
        let ledger = std::fs::read_to_string(evidence.join("ledger.jsonl")).ok()?;
        (ledger.lines().count() == 2).then_some(())
    })
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait().unwrap();

    assert!(
        second
            .file_name()
            .unwrap()
            .to_string_lossy()
            .ends_with(".2"),
        "{}",
        second.display()
    );
    let m1: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m1["recovered"], true, "{m1}");
    assert!(m1.get("continues").is_none(), "{m1}");
    let m2: serde_json::Value =
        serde_json::from_slice(&std::fs::read(second.join("manifest.json")).unwrap()).unwrap();
    let c = &m2["continues"];
    assert_eq!(c["dir"], rel(&evidence, &first), "{m2}");
    assert_eq!(
        c["manifest_sha256"],
        sha256_hex(&first.join("manifest.json")),
        "{m2}"
    );
    assert_eq!(c["part"], 2, "{m2}");
    let offset = c["audio_offset_secs"].as_f64().unwrap();
    // The second part's audio started after the restart and before the call ended.
    assert!(
        offset >= resumed_after - 1.0 && offset <= before_end + 1.0,
        "offset {offset}, resumed at {resumed_after}, ended by {before_end}: {m2}"
    );
    assert!(
        m2["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains("part 2 of call c-split")),
        "{m2}"
    );

    // The incident record of the second part names the first.
    let inc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(second.join("incident.json")).unwrap()).unwrap();
    assert_eq!(
        inc["evidence"]["continues"]["dir"],
        rel(&evidence, &first),
        "{inc}"
    );
    let md = std::fs::read_to_string(second.join("incident.md")).unwrap();
    assert!(
        md.contains("前の部分") && md.contains(&rel(&evidence, &first)),
        "{md}"
    );

    // verify: both parts OK, and one line groups them as one call.
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["verify", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let group = text
        .lines()
        .find(|l| l.starts_with("CALL c-split: one call in 2 parts"))
        .unwrap_or_else(|| panic!("no CALL line:\n{text}"));
    assert!(
        group.contains(&format!("{} + {}", first.display(), second.display())),
        "{group}"
    );

    // A copy without the first part: the second part says what it misses.
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("evidence");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&evidence)
            .arg(&copy)
            .status()
            .unwrap()
            .success()
    );
    std::fs::remove_dir_all(copy.join(rel(&evidence, &first))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["verify", "--pubkey"])
        .arg(tmp.path().join("state/keys/evidence.pub"))
        .arg(copy.join(rel(&evidence, &second)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("part 2 of call c-split: the part it continues")
            && text.contains("is missing"),
        "{text}"
    );
}
