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
