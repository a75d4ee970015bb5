//! A flood of refused frames against the real binary: the log stays a few lines long, and says
//! how many were left out ("… 99,995 more …"), instead of one WARN line per frame.

mod common;

use std::process::{Command, Stdio};

use common::{FakePbx, status_until};

const FRAMES: u64 = 100_000;

#[tokio::test]
async fn a_flood_of_bad_frames_is_logged_in_a_bounded_number_of_lines_with_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let config = common::ConfigFile::new(dir.path(), &pbx.url)
        .evidence_off()
        .control_socket()
        .write();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .env("RUST_LOG", "info")
        .env_remove("CALLGUARD_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut conn = pbx.accept().await;
    for i in 0..FRAMES {
        conn.send_text(format!("{{not json {i}")).await;
    }
    // Every frame reached the tracker (and so passed the refusal site).
    let status = status_until(&config, |v| {
        v["tracker"]["bad_frames"].as_u64() == Some(FRAMES)
    })
    .await;
    assert_eq!(status["tracker"]["bad_frames"], FRAMES);
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "exit {exit}\n{text}");
    let refused: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("PBX frame refused"))
        .collect();
    assert!(
        refused.len() <= 10,
        "{} lines about refused frames:\n{}",
        refused.len(),
        refused[..refused.len().min(20)].join("\n")
    );
    let written = refused.iter().filter(|l| l.contains("reason=")).count() as u64;
    let summary = refused
        .iter()
        .find(|l| l.contains("more in the last"))
        .unwrap_or_else(|| panic!("no summary line:\n{}", refused.join("\n")));
    let left_out = callguard::logging::thousands(FRAMES - written);
    assert!(summary.contains(&format!("{left_out} more")), "{summary}");
    assert!(summary.contains("not JSON"), "the last reason: {summary}");
}

/// Issue 11, item 5 (the rest): the tracker's per-event warnings and the skipped snapshot
/// entries go through the same limiter. A snapshot of 2,000 bad entries, 500 calls that start
/// "tomorrow" and a snapshot that loses all of them cost a few lines each, with the counts.
#[tokio::test]
async fn a_flood_of_bad_events_and_snapshot_entries_is_logged_in_a_bounded_number_of_lines() {
    const BAD_ENTRIES: usize = 2_000;
    const CALLS: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let config = dir.path().join("callguard.toml");
    std::fs::write(
        &config,
        format!(
            "[pbx]\nurl = \"{}\"\n[prompt]\nlocal = false\n[state]\ndir = \"{}\"\n[evidence]\nsource = \"off\"\ndir = \"{}\"\n[control]\nsocket = \"{}\"\n",
            pbx.url,
            dir.path().join("state").display(),
            dir.path().join("evidence").display(),
            dir.path().join("control.sock").display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .env("RUST_LOG", "info")
        .env_remove("CALLGUARD_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut conn = pbx.accept().await;
    let bad: Vec<serde_json::Value> = (0..BAD_ENTRIES)
        .map(|i| serde_json::json!({"agent": "1001", "caller": i.to_string()}))
        .collect();
    conn.send(serde_json::json!({"type": "calls.snapshot", "calls": bad}))
        .await;
    let tomorrow = (chrono::Local::now() + chrono::Duration::days(1))
        .fixed_offset()
        .to_rfc3339();
    for i in 0..CALLS {
        conn.send(
            serde_json::json!({"type": "call.start", "call_id": format!("f-{i}"),
            "at": tomorrow, "agent": "1001", "caller": "0312345678"}),
        )
        .await;
    }
    status_until(&config, |v| {
        v["tracker"]["calls"]
            .as_array()
            .is_some_and(|c| c.len() == CALLS)
    })
    .await;
    conn.send(serde_json::json!({"type": "calls.snapshot", "calls": []}))
        .await;
    status_until(&config, |v| {
        v["tracker"]["calls"]
            .as_array()
            .is_some_and(|c| c.is_empty())
    })
    .await;
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "exit {exit}\n{text}");
    for (what, total) in [
        ("snapshot entry skipped", BAD_ENTRIES),
        ("call start time is in the future", CALLS),
        ("call missing from the PBX snapshot", CALLS),
    ] {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(what)).collect();
        assert!(
            lines.len() <= 10,
            "{} lines for `{what}`:\n{}",
            lines.len(),
            lines[..lines.len().min(20)].join("\n")
        );
        let written = lines.iter().filter(|l| l.contains("reason=")).count();
        let left_out = callguard::logging::thousands((total - written) as u64);
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("{left_out} more in the last"))),
            "no summary with {left_out} for `{what}`:\n{}",
            lines.join("\n")
        );
    }
}
