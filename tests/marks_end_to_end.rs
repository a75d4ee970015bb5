//! Issue 7 end to end: the real daemon, marks sent with the real `callguard mark` over the
//! control socket, the lead's pings on a loopback HTTP receiver, the sealed incident record,
//! an addendum after sealing, and `callguard verify` catching an edit.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::FakePbx;
use common::http::Receiver;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const PATIENCE: Duration = Duration::from_secs(60);

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new(pbx: &str, hook: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = common::ConfigFile::new(dir.path(), pbx)
            .agent_name("佐藤")
            .min_free_mb(1)
            .control_socket()
            .coalesce("0s")
            .webhook(hook, "json")
            .write();
        Setup { dir, config }
    }

    fn evidence(&self) -> PathBuf {
        self.dir.path().join("evidence")
    }

    async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        common::cli(&self.config, args).await
    }

    async fn status_until(&self, ready: impl Fn(&Value) -> bool) -> Value {
        common::status_until(&self.config, ready).await
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(find(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
    out
}

async fn wait_for_file(root: &Path, name: &str) -> PathBuf {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(p) = find(root, name).into_iter().next() {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never appeared under {}",
            root.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn marks_over_the_control_socket_ping_the_lead_and_seal_a_signed_incident_record() {
    let mut pbx = FakePbx::start().await;
    let mut lead = Receiver::start(Vec::new()).await;
    let s = Setup::new(&pbx.url, &lead.url("/hooks/leads"));
    let child = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["run", "--config"])
        .arg(&s.config)
        .env_remove("CALLGUARD_CONFIG")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let daemon = Daemon(child);
    let mut conn = pbx.accept().await;

    // No call yet: a mark is refused with exit 2; an unknown kind too, before any socket.
    s.status_until(|v| v["tracker"].is_object()).await;
    let (code, _, err) = s.cli(&["mark", "abuse"]).await;
    assert_eq!(code, 2, "{err}");
    // language = "ja" (the default): the agent reads Japanese.
    assert!(err.contains("通話中ではありません"), "{err}");
    let (code, _, err) = s.cli(&["mark", "yelling"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("「yelling」という記録の種類はありません") && err.contains("symptom"),
        "{err}"
    );

    conn.send(json!({"type":"call.start","call_id":"c-77","agent":"1001","caller":"0312345678"}))
        .await;
    conn.send(json!({"type":"media.start","call_id":"c-77","encoding":"audio/x-mulaw","sample_rate":8000})).await;
    let frame = base64::engine::general_purpose::STANDARD.encode([0x7fu8; 160]);
    for seq in 1..=50 {
        conn.send(
            json!({"type":"media","call_id":"c-77","track":"inbound","seq":seq,"payload":frame}),
        )
        .await;
    }
    s.status_until(|v| {
        v["tracker"]["calls"]
            .as_array()
            .is_some_and(|c| c.len() == 1)
    })
    .await;

    // First "manager": no rule yet, but signs of harassment (level 3) ping the lead at once.
    let (code, out, err) = s.cli(&["mark", "manager", "--quote", "責任者を出せ"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("レベル 3（カスハラの兆候）"), "{out}");
    let ping = lead.next().await.json();
    assert_eq!(
        (ping["kind"].as_str(), ping["level"].as_u64()),
        (Some("mark"), Some(3))
    );
    assert_eq!(ping["agent_name"], "佐藤");
    assert_eq!(ping["marks"].as_array().unwrap().len(), 1);

    // A threat: escalate and grounds to end, level 4; the ping carries the rules and all marks.
    let (code, out, err) = s.cli(&["mark", "threat", "--quote", "家に行くぞ"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("「脅迫」1 回目：通話を終了できる基準") && out.contains("恐れ入りますが"),
        "{out}"
    );
    let ping = lead.next().await.json();
    assert_eq!(ping["level"].as_u64(), Some(4));
    assert_eq!(ping["grounds_to_end"], true);
    let rules: Vec<&str> = ping["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(rules, ["threat#1:escalate", "threat#1:end"]);
    let marks = ping["marks"].as_array().unwrap();
    assert_eq!(marks.len(), 2);
    assert_eq!(marks[0]["quote"], "責任者を出せ");
    assert_eq!(marks[1]["quote"], "家に行くぞ");
    let st = s.status_until(|_| true).await;
    assert_eq!(st["tracker"]["calls"][0]["level"], 4);

    // While the call runs: a witness goes into the record itself.
    let (code, _, err) = s.cli(&["note", "--witness", "田中（隣席）"]).await;
    assert_eq!(code, 0, "{err}");

    conn.send(json!({"type":"call.end","call_id":"c-77","cause":"normal"}))
        .await;
    let sig = wait_for_file(&s.evidence(), "manifest.sig").await;
    let folder = sig.parent().unwrap().to_path_buf();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(folder.join("manifest.json")).unwrap()).unwrap();
    let records = manifest["records"]
        .as_array()
        .expect("records listed in the manifest");
    let names: Vec<&str> = records.iter().filter_map(|r| r["file"].as_str()).collect();
    assert_eq!(names, ["incident.json", "incident.md"]);
    for r in records {
        let bytes = std::fs::read(folder.join(r["file"].as_str().unwrap())).unwrap();
        assert_eq!(
            r["sha256"].as_str().unwrap(),
            hex::encode(Sha256::digest(&bytes))
        );
    }
    let incident = std::fs::read_to_string(folder.join("incident.json")).unwrap();
    for needle in [
        "家に行くぞ",
        "責任者を出せ",
        "田中（隣席）",
        "#9110",
        "刑法222条",
    ] {
        assert!(
            incident.contains(needle),
            "{needle} missing from incident.json"
        );
    }
    let md = std::fs::read_to_string(folder.join("incident.md")).unwrap();
    assert!(md.contains("家に行くぞ") && md.contains("#9110"), "{md}");
    let (code, out, err) = s.cli(&["verify", s.evidence().to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");

    // After sealing: a note is a signed addendum chained in the ledger; verify still passes.
    let (code, _, err) = s
        .cli(&["note", "--call", "c-77", "--next", "警察相談 #9110 に連絡"])
        .await;
    assert_eq!(code, 0, "{err}");
    wait_for_file(&folder, "addendum-1.sig").await;
    // The signature is written before the ledger line: wait (bounded) for the line too.
    let deadline = Instant::now() + PATIENCE;
    let ledger = loop {
        let text = std::fs::read_to_string(s.evidence().join("ledger.jsonl")).unwrap();
        if text.lines().count() >= 2 || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(ledger.lines().count(), 2, "{ledger}");
    let (code, out, err) = s.cli(&["verify", s.evidence().to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}{err}");

    // Editing the sealed record is caught.
    let edited = incident.replacen("家に行くぞ", "家に行くよ", 1);
    std::fs::write(folder.join("incident.json"), edited).unwrap();
    let (code, out, _) = s.cli(&["verify", s.evidence().to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL") && out.contains("incident.json"),
        "{out}"
    );

    // The call is over: marking now is refused.
    let (code, _, _) = s.cli(&["mark", "abuse"]).await;
    assert_eq!(code, 2);
    drop(daemon);
}
