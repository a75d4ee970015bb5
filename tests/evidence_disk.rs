//! A full disk: recording stops, what is there is sealed with `"truncated": true`, the agent is
//! warned (a Problem through the tracker), and tracking goes on. The disk is a real 1 MiB tmpfs
//! mounted by the test (it needs root; without it the test says so and skips). Low free space
//! at call start (`evidence.min_free_mb`) is tested on the ordinary temp dir.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use callguard::events::Report;
use common::{FakePbx, TestRun, test_config};
use serde_json::json;

/// A mounted tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Tmpfs(at.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

async fn sealed(d: &mut common::RunningDaemon, id: &str) -> (PathBuf, bool) {
    let id = id.to_string();
    d.next(move |r| match r {
        Report::Sealed {
            call_id,
            dir,
            truncated,
            ..
        } if *call_id == id => Some((dir.clone(), *truncated)),
        _ => None,
    })
    .await
}

fn verify(cfg_state: &Path, dir: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .arg("verify")
        .arg("--pubkey")
        .arg(cfg_state.join("keys/evidence.pub"))
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn enospc_mid_call_seals_what_is_there_as_truncated_and_tracking_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("small-disk");
    // Never skipped: a machine that cannot mount the small disk fails the test and says why.
    let _fs = Tmpfs::mount(&mnt, "1m").unwrap_or_else(|e| {
        panic!("cannot mount a 1 MiB tmpfs for the disk-full test ({e}); it needs root (CI runs as root)")
    });
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(tmp.path(), &pbx.url);
    cfg.evidence.dir = mnt.join("evidence").display().to_string();
    cfg.evidence.min_free_mb = 0;
    let state = PathBuf::from(&cfg.state.dir);
    let mut d = TestRun::headless().start(cfg);
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-full",
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),
        "agent":"1001","caller":"0312345678","direction":"inbound"}))
        .await;
    conn.send(json!({"type":"media.start","call_id":"c-full","encoding":"audio/x-mulaw","sample_rate":8000}))
        .await;
    // 40 s of stereo audio = 1.28 MB of PCM: more than the disk holds.
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    for seq in 1..=2000u64 {
        let f: Vec<u8> = (0..160u64).map(|i| (i + seq) as u8).collect();
        for track in ["inbound", "outbound"] {
            conn.send(json!({"type":"media","call_id":"c-full","track":track,"seq":seq,"payload":b64(&f)}))
                .await;
        }
    }
    // The agent is warned while the call goes on.
    let (kind, body) = d
        .next(|r| match r {
            Report::Notification {
                call_id,
                summary,
                body,
                ..
            } if call_id == "c-full" => Some((summary.clone(), body.clone())),
            _ => None,
        })
        .await;
    assert_eq!(kind, "evidence.truncated");
    assert!(body.contains("disk full"), "{body}");
    conn.send(json!({"type":"call.end","call_id":"c-full","cause":"normal"}))
        .await;
    let (dir, truncated) = sealed(&mut d, "c-full").await;
    assert!(truncated);
    let m = manifest(&dir);
    assert_eq!(m["truncated"], true);
    assert!(
        m["problems"][0].as_str().unwrap().contains("disk full"),
        "{m}"
    );
    // What reached the disk is a valid WAV, sealed and verifiable.
    let r = hound::WavReader::open(dir.join("call.wav")).unwrap();
    assert!(
        r.duration() > 8000,
        "some seconds were recorded: {}",
        r.duration()
    );
    assert!(r.duration() < 40 * 8000);
    let (code, out) = verify(&state, &dir);
    assert_eq!(code, 0, "{out}");

    // Tracking goes on: another call is tracked, ended, and sealed (truncated: no room).
    conn.send(json!({"type":"call.start","call_id":"c-next",
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),
        "agent":"1001","caller":"0398765432","direction":"inbound"}))
        .await;
    conn.send(json!({"type":"media","call_id":"c-next","track":"mixed","seq":1,"payload":b64(&[0xff; 160])}))
        .await;
    conn.send(json!({"type":"call.end","call_id":"c-next","cause":"normal"}))
        .await;
    d.next(|r| matches!(r, Report::CallEnded { call_id, .. } if call_id == "c-next").then_some(()))
        .await;
    let (dir2, _) = sealed(&mut d, "c-next").await;
    assert!(dir2.join("manifest.sig").exists());
    d.stop().await;
}

#[tokio::test]
async fn too_little_free_space_at_call_start_is_sealed_without_audio_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut cfg = test_config(tmp.path(), &pbx.url);
    cfg.evidence.min_free_mb = u64::MAX / (2 << 20); // more than any disk has
    let state = PathBuf::from(&cfg.state.dir);
    let mut d = TestRun::headless().start(cfg);
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-low",
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),
        "agent":"1001","caller":"0312345678","direction":"inbound"}))
        .await;
    let (kind, body) = d
        .next(|r| match r {
            Report::Notification {
                call_id,
                summary,
                body,
                ..
            } if call_id == "c-low" => Some((summary.clone(), body.clone())),
            _ => None,
        })
        .await;
    assert_eq!(kind, "evidence.low_disk");
    assert!(body.contains("min_free_mb"), "{body}");
    conn.send(json!({"type":"media","call_id":"c-low","track":"mixed","seq":1,"payload":"//8="}))
        .await;
    conn.send(json!({"type":"call.end","call_id":"c-low","cause":"normal"}))
        .await;
    let (dir, truncated) = sealed(&mut d, "c-low").await;
    assert!(truncated);
    let m = manifest(&dir);
    assert!(m["audio"].is_null(), "{m}");
    assert!(!dir.join("call.wav").exists());
    let (code, out) = verify(&state, &dir);
    assert_eq!(code, 0, "{out}");
    d.stop().await;
}
