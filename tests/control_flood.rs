//! A flood of idle control-socket connections (the same user, 1,100 of them) against the real
//! binary held to 1,024 descriptors: `status` still answers every time and a call's evidence is
//! still sealed, because the socket serves a capped number of clients (the longest-idle one
//! gives its slot to a new client) and backs off on accept errors.

mod common;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::FakePbx;
use serde_json::json;

const FLOOD: usize = 1100;

/// The daemon with soft and hard descriptor limits of 1,024 (util-linux `prlimit`).
fn spawn(cfg: &Path, log: &Path) -> Child {
    Command::new("prlimit")
        .arg("--nofile=1024:1024")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_callguard"))
        .arg("run")
        .arg("--config")
        .arg(cfg)
        .env_remove("CALLGUARD_CONFIG")
        .env_remove("CALLGUARD_FAULT")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("prlimit (util-linux) is needed for this test")
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
async fn a_thousand_idle_connections_starve_neither_status_nor_evidence() {
    // This test holds the flood's client ends itself.
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    )
    .unwrap();
    assert!(
        lim.maximum.is_none_or(|m| m > 2 * FLOOD as u64),
        "the test needs a hard descriptor limit above {}",
        2 * FLOOD
    );

    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let cfg = common::config_file(tmp.path(), &pbx.url);
    let log = tmp.path().join("run.log");
    let mut child = spawn(&cfg, &log);
    let mut conn = pbx.accept().await;
    common::status_until(&cfg, |v| v["running"] == true).await;

    let socket = tmp.path().join("control.sock");
    let flood: Vec<UnixStream> = tokio::task::spawn_blocking(move || {
        (0..FLOOD)
            .map(|_| UnixStream::connect(&socket).unwrap())
            .collect()
    })
    .await
    .unwrap();

    // A call recorded and sealed while the flood's connections are still open.
    let now = || chrono::Local::now().fixed_offset().to_rfc3339();
    conn.send(json!({"type":"call.start","call_id":"c-flood","at":now(),
        "agent":"1001","caller":"0312345678","direction":"inbound"}))
        .await;
    conn.send(json!({"type":"media.start","call_id":"c-flood","encoding":"audio/x-mulaw","sample_rate":8000}))
        .await;
    let payload = base64::engine::general_purpose::STANDARD.encode([0x55u8; 160]);
    for seq in 1..=50 {
        conn.send(json!({"type":"media","call_id":"c-flood","track":"inbound","seq":seq,"payload":payload}))
            .await;
    }
    conn.send(json!({"type":"call.end","call_id":"c-flood","at":now(),"cause":"normal"}))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let manifest = loop {
        if let Some(m) = find(&tmp.path().join("evidence"), "manifest.json").pop() {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the call was not sealed during the flood; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(m["call_id"], "c-flood");
    assert!(m["audio"]["sha256"].is_string(), "{m}");
    assert_eq!(m["problems"], json!([]), "{m}");
    for i in 0..12 {
        let (code, out, err) = common::cli(&cfg, &["status", "--json"]).await;
        assert_eq!(
            code,
            0,
            "status #{i} failed during the flood: {err}\nlog:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["running"], true);
    }

    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log_text.contains("control socket accept failed"),
        "the daemon ran out of descriptors:\n{log_text}"
    );

    drop(flood);
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "callguard did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
}
