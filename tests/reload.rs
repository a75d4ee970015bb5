//! Reloading the configuration of the real daemon (issue 11, item 8): `callguard reload` and
//! SIGHUP apply a good configuration live (a new threshold and a new lead receiver take effect
//! on a call in progress), refuse a bad one as a whole (the old one keeps running; the
//! desktop, the log and `status` say so; `reload` exits 2), never split a recorded call, and an
//! invalid configuration at start exits 2 with a desktop notice.

mod common;

use common::dbus::{cli_on_bus as cli, next_of};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::FakePbx;
use common::dbus::{SessionBus, serve_notifications};
use common::http::Receiver;
use serde_json::json;

const PATIENCE: Duration = Duration::from_secs(60);

struct Daemon(Child);

impl Daemon {
    fn signal(&self, sig: rustix::process::Signal) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.0), sig).unwrap();
    }

    /// Still running (a SIGHUP without a handler would have ended it).
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }

    fn stop(mut self) -> std::process::ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        self.0.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test's own parts of the configuration (the rest: PBX, folders, socket).
fn write_config(dir: &Path, pbx: &str, extra: &str) -> PathBuf {
    let path = dir.join("callguard.toml");
    let d = dir.display();
    std::fs::write(
        &path,
        format!(
            "[pbx]\nurl = \"{pbx}\"\n[prompt]\nlocal = false\n[state]\ndir = \"{d}/state\"\n\
             [evidence]\ndir = \"{d}/evidence\"\nmin_free_mb = 0\n\
             [control]\nsocket = \"{d}/control.sock\"\n\
             [escalation]\ncoalesce = \"0s\"\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// A ladder of one step.
fn ladder(after: &str, title: &str) -> String {
    format!(
        "[[warning]]\nafter = \"{after}\"\nkind = \"escalate\"\nnotify_lead = true\ntitle = \"{title}\"\n"
    )
}

fn daemon(config: &Path, bus: &SessionBus, log: &Path) -> Daemon {
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_callguard"))
            .args(["run", "--config"])
            .arg(config)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("RUST_LOG", "info")
            .env_remove("CALLGUARD_CONFIG")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn one_call(v: &serde_json::Value) -> bool {
    v["tracker"]["calls"]
        .as_array()
        .is_some_and(|c| c.len() == 1)
}

/// A good reload during a call: the new ladder applies to it at once (its notification with the
/// new title reaches the desktop) and the new lead receiver gets the ping; `status` says what
/// was reloaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_reload_applies_the_new_threshold_and_receiver_to_the_call_in_progress() {
    let bus = SessionBus::start();
    let (_conn, mut notes) = serve_notifications(&bus, &["body"]).await;
    let mut pbx = FakePbx::start().await;
    let mut lead = Receiver::start(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write_config(d, &pbx.url, &ladder("1h", "old ladder"));
    let log = d.join("run.log");
    let daemon = daemon(&config, &bus, &log);
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-1","agent":"1001","caller":"0312345678"}))
        .await;
    let v = common::status_until(&config, one_call).await;
    assert_eq!(v["tracker"]["calls"][0]["next_warning_after_secs"], 3600);
    assert_eq!(v["webhooks"].as_array().unwrap().len(), 0);

    // A threshold of 1 s, which the call is (nearly) past: the warning comes at once.
    write_config(
        d,
        &pbx.url,
        &format!(
            "{}[[escalation.webhook]]\nurl = \"{}\"\nformat = \"json\"\n",
            ladder("1s", "new ladder"),
            lead.url("/hooks/SECRET/lead")
        ),
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("language = \"en\"\n{text}")).unwrap();
    let (code, out, err) = cli(&config, &bus, &["reload"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("warning[0].after"), "{out}");
    assert!(out.contains("language"), "{out}");
    assert!(out.contains("escalation.webhook[0].url"), "{out}");
    assert!(!out.contains("SECRET"), "{out}");

    let n = next_of(&mut notes, "callguard.warning").await;
    assert_eq!(n.summary, "new ladder", "{n:?}");
    // The body is the built-in text, now in English.
    assert!(
        n.body.starts_with("The call with 0312345678 has run"),
        "{n:?}"
    );
    let hit = lead.next().await;
    assert_eq!(hit.path, "/hooks/SECRET/lead");
    assert_eq!(hit.json()["call_id"], "c-1", "{}", hit.body);

    let (code, text, _) = cli(&config, &bus, &["status"]).await;
    assert_eq!(code, 0);
    assert!(text.contains("config: reloaded at "), "{text}");
    assert!(text.contains("no warning left"), "{text}");
    assert!(text.contains("1 receiver(s)"), "{text}");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("configuration reloaded"), "{log_text}");
    assert!(daemon.stop().success());
}

/// A bad reload, by `callguard reload` and by SIGHUP: refused as a whole, the old configuration
/// keeps running, the desktop, the log (file, line, key) and `status` say so until a good
/// reload; a valid configuration that changes a restart-only key applies nothing and exits 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_keeps_the_running_configuration_and_says_so_everywhere() {
    let bus = SessionBus::start();
    let (_conn, mut notes) = serve_notifications(&bus, &["body"]).await;
    let mut pbx = FakePbx::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = ladder("1h", "old ladder");
    let config = write_config(d, &pbx.url, &good);
    let log = d.join("run.log");
    let mut daemon = daemon(&config, &bus, &log);
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-2","agent":"1001","caller":"0312345678"}))
        .await;
    common::status_until(&config, one_call).await;

    // A typo: an unknown key on line 2 of the file. `reload` still finds the socket.
    let text = std::fs::read_to_string(&config).unwrap();
    let typo = text.replacen("url = ", "urll = ", 1);
    assert_ne!(typo, text);
    std::fs::write(&config, &typo).unwrap();
    let (code, out, err) = cli(&config, &bus, &["reload"]).await;
    assert_eq!(code, 2, "{out}{err}");
    let file = config.display().to_string();
    // No `language` in these files: the answer is Japanese.
    assert!(
        err.contains("新しい設定は受け付けられませんでした"),
        "{err}"
    );
    assert!(err.contains(&format!("{file}, line 2: pbx.urll")), "{err}");
    let n = next_of(&mut notes, "callguard.config").await;
    assert!(n.body.contains("pbx.urll"), "{n:?}");
    // The agent's hotkeys and `status` reach the daemon with the broken file too.
    let (code, out, err) = cli(&config, &bus, &["mark", "abuse"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("pbx.urll"), "the file's own mistake: {err}");
    let v = status_json(&config, &bus).await;
    let line = v["config_reload"].clone();
    assert_eq!(line["outcome"], "refused", "{v}");
    assert!(line["detail"].as_str().unwrap().contains("pbx.urll"), "{v}");
    assert_eq!(v["tracker"]["calls"][0]["next_warning_after_secs"], 3600);
    let log_text = std::fs::read_to_string(&log).unwrap();
    let refused = log_text
        .lines()
        .find(|l| l.contains("CONFIGURATION RELOAD REFUSED"))
        .unwrap_or_else(|| panic!("{log_text}"));
    assert!(
        refused.contains(&format!("{file}, line 2: pbx.urll")),
        "{refused}"
    );

    // SIGHUP with another mistake (a rule, not the schema): same refusal, and the daemon lives.
    std::fs::write(&config, text.replace("after = \"1h\"", "after = \"0s\"")).unwrap();
    daemon.signal(rustix::process::Signal::HUP);
    let n = next_of(&mut notes, "callguard.config").await;
    assert!(n.body.contains("warning[0].after"), "{n:?}");
    let v = status_json(&config, &bus).await;
    assert!(
        v["config_reload"]["detail"]
            .as_str()
            .unwrap()
            .contains("warning[0].after"),
        "{v}"
    );
    let (code, shown, err) = cli(&config, &bus, &["status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning[0].after"),
        "the file's own mistake: {err}"
    );
    // No `language` in these files: status speaks Japanese.
    assert!(shown.contains("の再読み込みは失敗しました"), "{shown}");
    assert!(shown.contains("warning[0].after"), "{shown}");
    assert!(daemon.alive());

    // Valid, but the PBX address changes only at a restart: nothing is applied, exit 3.
    let moved = text.replacen(&pbx.url, "ws://127.0.0.1:9/", 1);
    std::fs::write(&config, moved.replace("after = \"1h\"", "after = \"2h\"")).unwrap();
    let (code, out, err) = cli(&config, &bus, &["reload"]).await;
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("pbx.url"), "{err}");
    let v = status_json(&config, &bus).await;
    assert_eq!(v["config_reload"]["outcome"], "needs_restart", "{v}");
    assert_eq!(v["tracker"]["calls"][0]["next_warning_after_secs"], 3600);
    assert_eq!(v["tracker"]["pbx"], "connected");

    // Fixed, by SIGHUP: the failure line goes, the new ladder runs.
    std::fs::write(&config, text.replace("after = \"1h\"", "after = \"2h\"")).unwrap();
    daemon.signal(rustix::process::Signal::HUP);
    let v = common::status_until(&config, |v| v["config_reload"]["outcome"] == "applied").await;
    assert_eq!(v["tracker"]["calls"][0]["next_warning_after_secs"], 7200);
    let (_, shown, _) = cli(&config, &bus, &["status"]).await;
    assert!(
        !shown.contains("reload failed") && !shown.contains("再読み込みは失敗"),
        "{shown}"
    );
    assert!(daemon.alive());
    assert!(daemon.stop().success());
}

/// `callguard status --json`, answered.
async fn status_json(config: &Path, bus: &SessionBus) -> serde_json::Value {
    let (code, out, err) = cli(config, bus, &["status", "--json"]).await;
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).unwrap()
}

/// Reloads (one by `callguard reload`, one by SIGHUP) in the middle of a recorded call: the
/// call is recorded on into the same folder, sealed once, and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_a_recorded_call_leaves_one_sealed_folder_that_verifies() {
    let bus = SessionBus::start();
    let (_conn, _notes) = serve_notifications(&bus, &["body"]).await;
    let mut pbx = FakePbx::start().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = write_config(d, &pbx.url, &ladder("1h", "a"));
    let log = d.join("run.log");
    let daemon = daemon(&config, &bus, &log);
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":"c-rec",
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),
        "agent":"1001","caller":"0312345678","direction":"inbound"}))
        .await;
    conn.send(json!({"type":"media.start","call_id":"c-rec","encoding":"audio/x-mulaw","sample_rate":8000}))
        .await;
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    let mut seq = 0u64;
    let mut frames = |conn_frames: u64| {
        let mut out = Vec::new();
        for _ in 0..conn_frames {
            seq += 1;
            let a: Vec<u8> = (0..160u64).map(|i| (i + seq) as u8).collect();
            for track in ["inbound", "outbound"] {
                out.push(json!({"type":"media","call_id":"c-rec","track":track,"seq":seq,"payload":b64(&a)}));
            }
        }
        out
    };
    for f in frames(50) {
        conn.send(f).await;
    }
    common::status_until(&config, one_call).await;
    write_config(d, &pbx.url, &ladder("2h", "b"));
    let (code, out, err) = cli(&config, &bus, &["reload"]).await;
    assert_eq!(code, 0, "{out}{err}");
    for f in frames(50) {
        conn.send(f).await;
    }
    write_config(d, &pbx.url, &ladder("3h", "c"));
    daemon.signal(rustix::process::Signal::HUP);
    common::status_until(&config, |v| {
        v["tracker"]["calls"][0]["next_warning_after_secs"] == 3 * 3600
    })
    .await;
    for f in frames(50) {
        conn.send(f).await;
    }
    conn.send(json!({"type":"call.end","call_id":"c-rec","cause":"normal"}))
        .await;
    let evidence = d.join("evidence");
    let deadline = std::time::Instant::now() + PATIENCE;
    let ledger = loop {
        if let Ok(l) = std::fs::read_to_string(evidence.join("ledger.jsonl"))
            && !l.is_empty()
        {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "never sealed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(daemon.stop().success());
    let ledger = std::fs::read_to_string(evidence.join("ledger.jsonl")).unwrap_or(ledger);
    assert_eq!(ledger.lines().count(), 1, "sealed once: {ledger}");
    let manifests = find_all(&evidence, "manifest.json");
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    let folder = manifests[0].parent().unwrap();
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifests[0]).unwrap()).unwrap();
    assert_eq!(m["call_id"], "c-rec");
    assert!(m.get("continues").is_none_or(|c| c.is_null()), "{m}");
    let wav = hound::WavReader::open(folder.join("call.wav")).unwrap();
    assert_eq!(
        wav.len(),
        150 * 160 * 2,
        "every frame, before and after both reloads, in the one file"
    );
    let (code, out, err) = cli(&config, &bus, &["verify"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("OK {}", folder.display())), "{out}");
}

fn find_all(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
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

/// Invalid at start: exit 2 (the unit does not restart on it), the reason on stderr and as a
/// critical desktop notice; the unit says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_configuration_at_start_exits_2_and_says_why_on_the_desktop() {
    let bus = SessionBus::start();
    let (_conn, mut notes) = serve_notifications(&bus, &["body"]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "ws://127.0.0.1:9/", "[marks]\nfrobnicate = 1\n");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["run", "--config"])
        .arg(&config)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env_remove("CALLGUARD_CONFIG")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("marks.frobnicate"), "{err}");
    let n = next_of(&mut notes, "callguard.config").await;
    assert_eq!(n.urgency, Some(2), "critical: {n:?}");
    assert!(n.body.contains("marks.frobnicate"), "{n:?}");

    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/callguard.service"),
    )
    .unwrap();
    let keys: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(keys.contains(&"RestartPreventExitStatus=2"), "{unit}");
    assert!(
        keys.contains(&"ExecReload=/usr/bin/callguard reload"),
        "{unit}"
    );
}
