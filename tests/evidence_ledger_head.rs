//! The signed ledger head (issue 11, item 7) with the real binary: the daemon seals calls, the
//! newest ledger lines and their folders are removed, and `callguard verify` on the workstation
//! names the missing tail; a copy checked with the public key alone says the head is unknown.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::FakePbx;
use serde_json::json;

fn config(tmp: &Path, url: &str) -> PathBuf {
    let path = tmp.join("callguard.toml");
    let text = format!(
        "[pbx]\nurl = \"{url}\"\n[prompt]\nlocal = false\n[state]\ndir = \"{state}\"\n\
         [control]\nsocket = \"{sock}\"\n[evidence]\ndir = \"{evidence}\"\nmin_free_mb = 0\n",
        state = tmp.join("state").display(),
        sock = tmp.join("control.sock").display(),
        evidence = tmp.join("evidence").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

struct Daemon(Child);

impl Daemon {
    fn spawn(cfg: &Path, log: &Path) -> Daemon {
        Daemon(
            Command::new(env!("CARGO_BIN_EXE_callguard"))
                .arg("run")
                .arg("--config")
                .arg(cfg)
                .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap(),
        )
    }

    /// SIGTERM, and wait for the exit.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) for a condition the daemon brings about.
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

fn verify(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .arg("verify")
        .args(args)
        .env_remove("CALLGUARD_CONFIG")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

fn copy_tree(from: &Path, to: &Path) {
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success()
    );
}

fn ledger_lines(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("ledger.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_newest_calls_is_caught_by_the_signed_ledger_head() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let cfg = config(tmp.path(), &pbx.url);
    let cfg_s = cfg.to_str().unwrap();
    let evidence = tmp.path().join("evidence");
    let daemon = Daemon::spawn(&cfg, &tmp.path().join("run1.log"));
    let mut conn = pbx.accept().await;
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    for i in 1..=4 {
        let id = format!("c-{i}");
        conn.send(json!({"type":"call.start","call_id":id,
            "at":chrono::Local::now().fixed_offset().to_rfc3339(),
            "agent":"1001","caller":"0312345678","direction":"inbound"}))
            .await;
        conn.send(json!({"type":"media.start","call_id":id,"encoding":"audio/x-mulaw","sample_rate":8000}))
            .await;
        for seq in 1..=10u64 {
            conn.send(
                json!({"type":"media","call_id":id,"track":"inbound","seq":seq,
                "payload":b64(&[seq as u8; 160])}),
            )
            .await;
        }
        conn.send(json!({"type":"call.end","call_id":id,"cause":"normal"}))
            .await;
        wait_for("the call's ledger line", || {
            (ledger_lines(&evidence).len() == i).then_some(())
        })
        .await;
    }
    daemon.stop();
    drop(conn);
    let head = std::fs::read_to_string(tmp.path().join("state/ledger-head.json")).unwrap();
    assert!(
        head.contains("\"seq\":4") && head.contains("\"sig\":"),
        "{head}"
    );

    // Untouched: the workstation's verify holds the ledger to its head.
    let (code, out) = verify(&["--config", cfg_s]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK ")).count(),
        4,
        "{out}"
    );
    assert!(!out.contains("NOTE"), "the head is known here: {out}");

    // The two newest calls removed: their ledger lines and their folders.
    let lines = ledger_lines(&evidence);
    let dir_of = |l: &str| -> String {
        serde_json::from_str::<serde_json::Value>(l).unwrap()["dir"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for l in &lines[2..] {
        std::fs::remove_dir_all(evidence.join(dir_of(l))).unwrap();
    }
    std::fs::write(evidence.join("ledger.jsonl"), lines[..2].join("\n") + "\n").unwrap();
    let (code, out) = verify(&["--config", cfg_s]);
    assert_eq!(code, 1, "{out}");
    let fail = out
        .lines()
        .find(|l| l.starts_with("FAIL ") && l.contains("ledger.jsonl"))
        .unwrap_or_else(|| panic!("no ledger FAIL line:\n{out}"));
    assert!(
        fail.contains("the newest 2 ledger line(s) are missing (lines 3–4)"),
        "{fail}"
    );
    assert!(fail.contains("last call was c-4"), "{fail}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK ")).count(),
        2,
        "{out}"
    );
    // `--json` carries it too.
    let (code, out) = verify(&["--json", "--config", cfg_s]);
    assert_eq!(code, 1, "{out}");
    let ledger: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v.get("ledger").is_some())
        .unwrap();
    assert_eq!(ledger["head"], "failed", "{ledger}");
    assert_eq!(ledger["ok"], false, "{ledger}");

    // A copy checked elsewhere with the public key alone works as before; it says the tail
    // could not be checked.
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("evidence");
    copy_tree(&evidence, &copy);
    let key = tmp.path().join("state/keys/evidence.pub");
    let key_s = key.to_str().unwrap();
    let (code, out) = verify(&["--pubkey", key_s, copy.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK ")).count(),
        2,
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("NOTE ") && l.contains("no ledger head")),
        "{out}"
    );
    // A single call folder: the tail is not in question, nothing is said of it.
    let one = copy.join(dir_of(&lines[0]));
    let (code, out) = verify(&["--pubkey", key_s, one.to_str().unwrap()]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("OK {}", one.display()).as_str())
    );
    // With a copy of the head, the copy is caught too.
    let head_copy = elsewhere.path().join("ledger-head.json");
    std::fs::copy(tmp.path().join("state/ledger-head.json"), &head_copy).unwrap();
    let (code, out) = verify(&[
        "--pubkey",
        key_s,
        "--head",
        head_copy.to_str().unwrap(),
        copy.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("lines 3–4"), "{out}");
    // A head edited to hide it does not pass either.
    let edited = std::fs::read_to_string(&head_copy)
        .unwrap()
        .replace("\"seq\":4", "\"seq\":2");
    std::fs::write(&head_copy, edited).unwrap();
    let (code, out) = verify(&[
        "--pubkey",
        key_s,
        "--head",
        head_copy.to_str().unwrap(),
        copy.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("signature invalid"), "{out}");

    // The head file removed on the workstation: that is reported, not taken as "nothing".
    let saved = std::fs::read(tmp.path().join("state/ledger-head.json")).unwrap();
    std::fs::remove_file(tmp.path().join("state/ledger-head.json")).unwrap();
    let (code, out) = verify(&["--config", cfg_s]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no signed ledger head"), "{out}");
    std::fs::write(tmp.path().join("state/ledger-head.json"), &saved).unwrap();

    // The daemon started on the cut ledger says so, and leaves the head where it was, so the
    // next seal does not hide the cut.
    let log = tmp.path().join("run2.log");
    let daemon = Daemon::spawn(&cfg, &log);
    let mut conn = pbx.accept().await;
    wait_for("the daemon's report of the cut ledger", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("evidence ledger: the newest 2 ledger line(s) are missing"))
    })
    .await;
    conn.send(json!({"type":"call.start","call_id":"c-5",
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),"agent":"1001","caller":"0312345678"}))
        .await;
    conn.send(json!({"type":"call.end","call_id":"c-5"})).await;
    wait_for("the next call's ledger line", || {
        (ledger_lines(&evidence).len() == 3).then_some(())
    })
    .await;
    daemon.stop();
    let (code, out) = verify(&["--config", cfg_s]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the newest 1 ledger line(s) are missing (line 4)"),
        "{out}"
    );
}
