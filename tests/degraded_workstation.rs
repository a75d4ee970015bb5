//! A workstation without a notification server: the real binary warns once, plays the notice
//! and the chimes through rodio on an ALSA file device, and tracks the call to its end.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::FakePbx;
use serde_json::json;
use tokio::sync::mpsc;

#[tokio::test]
async fn no_notification_server_one_warning_and_sound_still_plays() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("audio-out.raw");
    // An ALSA default device that writes what it is given to a file.
    let asound = dir.path().join("asound.conf");
    std::fs::write(
        &asound,
        format!(
            "pcm.!default {{\n type file\n slave.pcm \"null\"\n file \"{}\"\n format \"raw\"\n}}\npcm.null {{\n type null\n}}\n",
            raw.display()
        ),
    )
    .unwrap();
    let mut pbx = FakePbx::start().await;
    let config = common::ConfigFile::new(dir.path(), &pbx.url)
        .local_sound()
        .evidence_off()
        .write();
    let mut child = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["run", "--time-scale", "600", "--config"])
        .arg(&config)
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}", dir.path().join("no-bus").display()),
        )
        .env("ALSA_CONFIG_PATH", &asound)
        .env("RUST_LOG", "info")
        .env_remove("CALLGUARD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, mut lines) = mpsc::unbounded_channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-1","caller":"0312345678","agent":"1001"}))
        .await;

    let mut log = Vec::new();
    let mut wait_for = async |needle: &str, log: &mut Vec<String>| loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.recv())
            .await
            .unwrap_or_else(|_| panic!("no `{needle}` in the log:\n{}", log.join("\n")))
            .expect("daemon stderr closed");
        log.push(line.clone());
        if line.contains(needle) {
            return;
        }
    };
    wait_for("kind=\"terminate\"", &mut log).await;
    conn.send(json!({"type":"call.end","call_id":"c-1"})).await;
    wait_for("call ended", &mut log).await;
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    reader.join().unwrap();
    while let Ok(l) = lines.try_recv() {
        log.push(l);
    }
    assert!(status.success(), "exit {status}\n{}", log.join("\n"));
    let desktop_warnings = log
        .iter()
        .filter(|l| l.contains("cannot show desktop notifications"))
        .count();
    assert_eq!(
        desktop_warnings,
        1,
        "exactly one clear warning:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("kind=\"escalate\"")),
        "{}",
        log.join("\n")
    );
    assert!(
        !log.iter().any(|l| l.contains("no audio output device")),
        "{}",
        log.join("\n")
    );

    // The notice reached the audio device: the file holds non-silent samples.
    let bytes = std::fs::read(&raw).expect("nothing was played on the ALSA device");
    let loud = bytes
        .chunks_exact(4)
        .filter(|c| c.iter().any(|b| *b != 0))
        .count();
    assert!(loud > 1000, "only {loud} non-silent frames written");
}
