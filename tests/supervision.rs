//! Supervision through the real binary: a part that dies before shutdown stops the daemon with a
//! non-zero exit and the part's name in the log, after the other parts have flushed (an open
//! call is sealed); a clean SIGTERM still exits 0; `status` shows every part's state.
//!
//! The faults come from the `fault-injection` feature, which only test builds have (the crate's
//! dev-dependency on itself turns it on); a release build has no such switch.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::FakePbx;
use serde_json::json;

fn spawn(cfg: &Path, log: &Path, fault: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callguard"));
    cmd.arg("run")
        .arg("--config")
        .arg(cfg)
        .env_remove("CALLGUARD_CONFIG")
        .env_remove("CALLGUARD_FAULT")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    if let Some(f) = fault {
        cmd.env("CALLGUARD_FAULT", f);
    }
    cmd.spawn().unwrap()
}

/// Waits (bounded) for the process to exit by itself.
async fn exited(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("callguard did not exit");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs the daemon with `cfg` and `fault` until it exits by itself: its status and its log.
async fn run_faulted(tmp: &Path, cfg: &Path, fault: &str) -> (ExitStatus, String) {
    let log = tmp.join("run.log");
    let mut child = spawn(cfg, &log, Some(fault));
    let status = exited(&mut child).await;
    (status, std::fs::read_to_string(&log).unwrap())
}

fn find(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_panics_mid_call_stops_the_daemon_non_zero_after_sealing_the_call() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let cfg = common::config_file(tmp.path(), &pbx.url);
    let log = tmp.path().join("run.log");
    let mut child = spawn(&cfg, &log, Some("alerts:panic-on-call"));
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-fault",
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),
        "agent":"1001","caller":"0312345678","direction":"inbound"}))
        .await;
    let status = exited(&mut child).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "exit status {status:?}; log:\n{text}"
    );
    assert!(
        text.contains("part `alerts` panicked"),
        "the log must name the dead part:\n{text}"
    );
    // The evidence sink flushed: the call it had open is sealed.
    let manifests = find(&tmp.path().join("evidence"), "manifest.json");
    assert_eq!(manifests.len(), 1, "log:\n{text}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifests[0]).unwrap()).unwrap();
    assert_eq!(m["call_id"], "c-fault");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_on_the_floors_own_thread_stops_the_daemon_non_zero_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let pbx = FakePbx::start().await;
    let cfg = common::config_file(tmp.path(), &pbx.url);
    // Nothing listens there: the thread panics before it connects.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("\n[floor]\nnats_url = \"nats://127.0.0.1:9\"\nsite = \"t\"\n");
    std::fs::write(&cfg, text).unwrap();
    let (status, text) = run_faulted(tmp.path(), &cfg, "floor:panic-in-thread").await;
    assert_eq!(status.code(), Some(1), "log:\n{text}");
    assert!(
        text.contains("part `floor` panicked: injected fault in the floor's thread"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracker_that_panics_stops_the_daemon_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let pbx = FakePbx::start().await;
    let cfg = common::config_file(tmp.path(), &pbx.url);
    let (status, text) = run_faulted(tmp.path(), &cfg, "tracker:panic").await;
    assert_eq!(status.code(), Some(1), "log:\n{text}");
    assert!(text.contains("part `tracker` panicked"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_returns_early_stops_the_daemon_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let pbx = FakePbx::start().await;
    let cfg = common::config_file(tmp.path(), &pbx.url);
    let (status, text) = run_faulted(tmp.path(), &cfg, "control:return").await;
    assert_eq!(status.code(), Some(1), "log:\n{text}");
    assert!(
        text.contains("part `control` stopped before shutdown"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_every_part_running_and_sigterm_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let cfg = common::config_file(tmp.path(), &pbx.url);
    let log = tmp.path().join("run.log");
    let mut child = spawn(&cfg, &log, None);
    let _conn = pbx.accept().await;
    let v = common::status_until(&cfg, |v| {
        v["parts"].as_array().is_some_and(|a| a.len() == 8)
    })
    .await;
    let names: Vec<&str> = v["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for want in [
        "connector",
        "tracker",
        "alerts",
        "escalation",
        "evidence",
        "tray",
        "control",
        "reload",
    ] {
        assert!(names.contains(&want), "{names:?}");
    }
    assert!(
        v["parts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "running" && p["since"].is_string()),
        "{v}"
    );
    let (code, text, _) = common::cli(&cfg, &["status"]).await;
    assert_eq!(code, 0);
    assert!(
        text.contains("Parts:\n  connector: running since "),
        "{text}"
    );

    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = exited(&mut child).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "log:\n{text}");
    assert!(!text.contains("DIED"), "{text}");
}
