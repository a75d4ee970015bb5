//! The incident record through the real daemon: marks sent to the tracker, a time warning, the
//! call's end → `incident.json` / `incident.md` sealed in the signed manifest; `callguard verify`
//! (the real binary) checks them; a note after the seal becomes a signed addendum in the ledger.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use callguard::calls::{Command, MarkReceipt};
use callguard::config::{Config, Language, WarningConfig, WarningKind};
use callguard::events::{NoteField, Report};
use callguard::harassment::MarkKind;
use common::{FakePbx, PbxConn, RunningDaemon, TestRun, test_config};
use serde_json::json;
use sha2::Digest;
use tokio::sync::oneshot;

fn config(tmp: &Path, url: &str) -> Config {
    let mut cfg = test_config(tmp, url);
    cfg.evidence.min_free_mb = 0;
    cfg.agent.name = "山田 花子".into();
    // A one-second step so a warning fires during the test call (waited on as an event).
    cfg.warning = vec![WarningConfig {
        after: Duration::from_secs(1),
        kind: WarningKind::Escalate,
        notify_lead: true,
        title: String::new(),
        body: String::new(),
    }];
    cfg
}

async fn mark(d: &RunningDaemon, kind: MarkKind, quote: Option<&str>) -> MarkReceipt {
    let (reply, rx) = oneshot::channel();
    d.commands
        .send(Command::Mark {
            kind,
            quote: quote.map(str::to_string),
            call_id: None,
            reply,
        })
        .await
        .unwrap();
    rx.await.unwrap().unwrap()
}

async fn note(d: &RunningDaemon, call_id: Option<&str>, field: NoteField, text: &str) -> String {
    let (reply, rx) = oneshot::channel();
    d.commands
        .send(Command::Note {
            call_id: call_id.map(str::to_string),
            field,
            text: text.into(),
            reply,
        })
        .await
        .unwrap();
    rx.await.unwrap().unwrap()
}

/// A call with audio, a warning, three marks and a note; returns its sealed folder.
async fn incident_call(d: &mut RunningDaemon, conn: &mut PbxConn, id: &str) -> PathBuf {
    conn.send(json!({"type":"call.start","call_id":id,
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),
        "agent":"1001","caller":"0312345678","direction":"inbound"}))
        .await;
    let cid = id.to_string();
    d.next(|r| matches!(r, Report::CallStarted(c) if c.call_id == cid).then_some(()))
        .await;
    conn.send(
        json!({"type":"media.start","call_id":id,"encoding":"audio/x-mulaw","sample_rate":8000}),
    )
    .await;
    let b64 = base64::engine::general_purpose::STANDARD.encode([0x7fu8; 160]);
    for seq in 1..=25u64 {
        conn.send(json!({"type":"media","call_id":id,"track":"inbound","seq":seq,"payload":b64}))
            .await;
    }
    let r = mark(d, MarkKind::Abuse, Some("お前は無能だ、辞めちまえ")).await;
    assert_eq!(r.fired, ["abuse#1:escalate"]);
    let r = mark(d, MarkKind::Threat, Some("家に行くぞ 「覚えとけ」")).await;
    assert!(r.grounds_to_end);
    mark(d, MarkKind::Symptom, None).await;
    note(d, None, NoteField::Witness, "佐藤 (SV)").await;
    let cid = id.to_string();
    d.next(|r| matches!(r, Report::WarningDue { call_id, .. } if *call_id == cid).then_some(()))
        .await;
    conn.send(json!({"type":"call.end","call_id":id,"cause":"normal"}))
        .await;
    let cid = id.to_string();
    d.next(move |r| match r {
        Report::Sealed { call_id, dir, .. } if *call_id == cid => Some(dir.clone()),
        _ => None,
    })
    .await
}

fn verify(root: &Path, pubkey: &Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_callguard"))
        .arg("verify")
        .arg("--pubkey")
        .arg(pubkey)
        .arg(root)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

fn sha(path: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn json_of(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn an_incident_is_sealed_verified_and_added_to_after_the_seal() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let cfg = config(tmp.path(), &pbx.url);
    let root = PathBuf::from(&cfg.evidence.dir);
    let pubkey = tmp.path().join("state/keys/evidence.pub");
    let mut d = TestRun::headless().start(cfg);
    let mut conn = pbx.accept().await;
    let dir = incident_call(&mut d, &mut conn, "c-inc").await;

    // Listed in the signed manifest with their SHA-256 and length.
    let m = json_of(&dir.join("manifest.json"));
    let records = m["records"].as_array().unwrap();
    let names: Vec<&str> = records
        .iter()
        .map(|r| r["file"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["incident.json", "incident.md"]);
    for r in records {
        let p = dir.join(r["file"].as_str().unwrap());
        assert_eq!(r["sha256"].as_str().unwrap(), sha(&p));
        assert_eq!(
            r["bytes"].as_u64().unwrap(),
            std::fs::metadata(&p).unwrap().len()
        );
    }

    // The record's items.
    let inc = json_of(&dir.join("incident.json"));
    assert_eq!(inc["call_id"], "c-inc");
    assert_eq!(inc["customer"]["number"], "0312345678");
    assert_eq!(inc["agent"]["name"], "山田 花子");
    assert_eq!(inc["channel"]["medium"], "phone");
    assert_eq!(inc["channel"]["agent_endpoint"], "1001");
    assert_eq!(inc["level"], 4);
    assert_eq!(inc["level_label"], "明確なカスハラ");
    let quotes: Vec<&str> = inc["statements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["quote"].as_str().unwrap())
        .collect();
    assert_eq!(
        quotes,
        ["お前は無能だ、辞めちまえ", "家に行くぞ 「覚えとけ」"]
    );
    for s in inc["statements"].as_array().unwrap() {
        let off = s["offset"].as_str().unwrap();
        assert!(off.len() == 5 && off.starts_with("00:0"), "offset {off}");
    }
    assert_eq!(inc["agent_condition"][0]["kind"], "symptom");
    assert_eq!(inc["witnesses"], json!(["佐藤 (SV)"]));
    assert_eq!(inc["evidence"]["recording"], "call.wav");
    assert_eq!(
        inc["evidence"]["sha256"].as_str().unwrap(),
        sha(&dir.join("call.wav"))
    );
    assert_eq!(
        inc["evidence"]["kept_in"].as_str().unwrap(),
        dir.display().to_string()
    );
    let fired: Vec<&str> = inc["rules_fired"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        fired,
        [
            "abuse#1:escalate",
            "threat#1:escalate",
            "threat#1:end",
            "symptom#1:escalate",
            "symptom#1:end"
        ]
    );
    assert_eq!(inc["warnings"][0]["kind"], "escalate");
    assert_eq!(inc["grounds_to_end"]["met"], true);
    let esc = inc["escalations"].as_array().unwrap();
    assert!(
        esc.iter()
            .all(|e| e["target"] == "team lead" && e["delivery"] == "requested")
    );
    let kinds: Vec<&str> = esc.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in ["rule", "grounds_to_end", "level", "warning"] {
        assert!(kinds.contains(&k), "escalation kind {k} missing: {kinds:?}");
    }
    assert_eq!(
        inc["legal_information"]["provisions"][0]["provisions"],
        json!(["脅迫罪（刑法222条）"])
    );
    assert_eq!(inc["legal_information"]["police_consultation"], "#9110");
    let md = std::fs::read_to_string(dir.join("incident.md")).unwrap();
    for want in [
        "カスタマーハラスメント対応記録",
        "「お前は無能だ、辞めちまえ」",
        "脅迫罪（刑法222条）",
        "#9110",
        "法的助言ではありません",
    ] {
        assert!(md.contains(want), "incident.md lacks {want}:\n{md}");
    }
    let (code, out) = verify(&root, &pubkey);
    assert_eq!(code, 0, "{out}");

    // A note after the seal: a signed addendum chained in the ledger; the seal is untouched.
    let sealed_json = std::fs::read(dir.join("incident.json")).unwrap();
    let manifest_bytes = std::fs::read(dir.join("manifest.json")).unwrap();
    note(
        &d,
        Some("c-inc"),
        NoteField::Response,
        "書面での対応を案内した",
    )
    .await;
    d.next(|r| {
        matches!(r, Report::Note(t) if t.starts_with("evidence addendum written")).then_some(())
    })
    .await;
    note(&d, Some("c-inc"), NoteField::Next, "警察に相談 (#9110)").await;
    d.next(|r| matches!(r, Report::Note(t) if t.contains("addendum-2.json")).then_some(()))
        .await;
    let a1 = json_of(&dir.join("addendum-1.json"));
    assert_eq!(
        (a1["n"].as_u64(), a1["field"].as_str(), a1["text"].as_str()),
        (Some(1), Some("response"), Some("書面での対応を案内した"))
    );
    assert_eq!(
        a1["manifest_sha256"].as_str().unwrap(),
        sha(&dir.join("manifest.json"))
    );
    let a2 = json_of(&dir.join("addendum-2.json"));
    assert_eq!(
        a2["prev_addendum_sha256"].as_str().unwrap(),
        sha(&dir.join("addendum-1.json"))
    );
    assert!(dir.join("addendum-1.sig").is_file());
    assert_eq!(
        std::fs::read(dir.join("incident.json")).unwrap(),
        sealed_json
    );
    assert_eq!(
        std::fs::read(dir.join("manifest.json")).unwrap(),
        manifest_bytes
    );
    let ledger = std::fs::read_to_string(root.join("ledger.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = ledger
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[0].get("kind").is_none(),
        "the seal line keeps its old form"
    );
    assert_eq!(lines[1]["kind"], "addendum");
    assert_eq!(lines[1]["file"], "addendum-1.json");
    assert_eq!(
        lines[2]["file_sha256"].as_str().unwrap(),
        sha(&dir.join("addendum-2.json"))
    );
    let (code, out) = verify(&root, &pubkey);
    assert_eq!(code, 0, "{out}");

    // A note for a call nobody knows: reported, and the text kept.
    note(&d, Some("c-nobody"), NoteField::Quote, "誰の通話か不明").await;
    let problem = d
        .next(|r| match r {
            Report::Notification {
                call_id,
                summary,
                body,
                ..
            } if call_id == "c-nobody" && summary == "evidence.note_orphan" => Some(body.clone()),
            _ => None,
        })
        .await;
    assert!(problem.contains("orphan-notes.jsonl"), "{problem}");
    let orphans = std::fs::read_to_string(root.join("orphan-notes.jsonl")).unwrap();
    assert!(orphans.contains("誰の通話か不明"));
    d.stop().await;

    // Tampering, each on its own copy: verify fails and names the file.
    let cases: [(&str, &Tamper); 4] = [
        ("incident.json", &|d: &Path| {
            flip(&d.join("incident.json"), 40)
        }),
        ("incident.md", &|d: &Path| flip(&d.join("incident.md"), 10)),
        ("addendum-1.json", &|d: &Path| {
            flip(&d.join("addendum-1.json"), 30)
        }),
        ("addendum-2.json", &|d: &Path| {
            std::fs::remove_file(d.join("addendum-2.json")).unwrap();
            std::fs::remove_file(d.join("addendum-2.sig")).unwrap();
        }),
    ];
    for (i, (name, tamper)) in cases.iter().enumerate() {
        let copy = tmp.path().join(format!("copy-{i}"));
        let st = std::process::Command::new("cp")
            .arg("-a")
            .arg(&root)
            .arg(&copy)
            .status()
            .unwrap();
        assert!(st.success());
        let cdir = copy.join(dir.strip_prefix(&root).unwrap());
        tamper(&cdir);
        let (code, out) = verify(&copy, &pubkey);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("FAIL") && l.contains(name)),
            "{name} not named: {out}"
        );
    }
}

/// Changes a copied call folder.
type Tamper = dyn Fn(&Path);

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[tokio::test]
async fn the_record_is_in_english_with_language_en() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut cfg = config(tmp.path(), &pbx.url);
    cfg.language = Language::En;
    let mut d = TestRun::headless().start(cfg);
    let mut conn = pbx.accept().await;
    let dir = incident_call(&mut d, &mut conn, "c-en").await;
    d.stop().await;
    let inc = json_of(&dir.join("incident.json"));
    assert_eq!(inc["level_label"], "clear harassment");
    let md = std::fs::read_to_string(dir.join("incident.md")).unwrap();
    for want in [
        "Customer harassment incident record",
        "Customer's statements (verbatim)",
        "「家に行くぞ 「覚えとけ」」",
        "not legal advice",
        "#9110",
    ] {
        assert!(md.contains(want), "incident.md lacks {want}:\n{md}");
    }
    assert!(
        !md.contains("担当者の対応"),
        "Japanese headings in the English record"
    );
}

#[tokio::test]
async fn a_call_without_marks_or_warnings_has_no_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let mut cfg = config(tmp.path(), &pbx.url);
    cfg.warning.clear();
    let mut d = TestRun::headless().start(cfg);
    let mut conn = pbx.accept().await;
    conn.send(
        json!({"type":"call.start","call_id":"c-quiet","agent":"1001",
        "caller":"0312345678","direction":"inbound"}),
    )
    .await;
    d.next(|r| matches!(r, Report::CallStarted(_)).then_some(()))
        .await;
    conn.send(json!({"type":"call.end","call_id":"c-quiet","cause":"normal"}))
        .await;
    let dir = d
        .next(|r| match r {
            Report::Sealed { dir, .. } => Some(dir.clone()),
            _ => None,
        })
        .await;
    d.stop().await;
    assert!(!dir.join("incident.json").exists());
    assert!(json_of(&dir.join("manifest.json")).get("records").is_none());
}

#[test]
fn a_call_left_open_by_a_crash_gets_its_record_at_recovery() {
    use callguard::evidence::{incident, layout, recovery, seal};
    use callguard::harassment::Mark;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("evidence");
    let now = chrono::Local::now();
    std::fs::create_dir_all(&root).unwrap();
    let (dir, _) = layout::create_call_dir(&root, "c-crash", now).unwrap();
    let info = callguard::events::CallInfo {
        call_id: "c-crash".into(),
        agent: "1001".into(),
        caller: "0312345678".into(),
        direction: "inbound".into(),
        channel: String::new(),
        started_at: now.fixed_offset(),
        adopted: false,
    };
    // What meta.json held when the daemon was killed: a demand mark, nothing sealed.
    let mut rec = seal::CallRecord::from_call(&info, "stream");
    rec.incident.language = "ja".into();
    rec.incident
        .apply(incident::Update::Note(incident::NoteRecord {
            field: NoteField::Next,
            text: "上長に報告".into(),
            at: incident::rfc3339(now.fixed_offset()),
        }));
    rec.incident.marks.push(Mark {
        kind: MarkKind::Demand,
        quote: Some("土下座しろ".into()),
        at: now.fixed_offset(),
        offset_secs: 75,
    });
    rec.save(&dir).unwrap();
    let sealer = seal::Sealer::open(&root, &tmp.path().join("state")).unwrap();
    let out = recovery::recover(&sealer);
    assert_eq!(out.len(), 1);
    assert!(out[0].as_ref().unwrap().recovered);
    let inc = json_of(&dir.join("incident.json"));
    assert_eq!(inc["demands"][0]["quote"], "土下座しろ");
    assert_eq!(inc["demands"][0]["offset"], "01:15");
    assert_eq!(inc["next_steps"], json!(["上長に報告"]));
    assert_eq!(
        inc["legal_information"]["provisions"][0]["provisions"],
        json!(["強要罪（刑法223条）", "不退去罪（刑法130条）"])
    );
    let m = json_of(&dir.join("manifest.json"));
    assert_eq!(
        m["records"][0]["sha256"].as_str().unwrap(),
        sha(&dir.join("incident.json"))
    );
    let (code, out) = verify(&root, &tmp.path().join("state/keys/evidence.pub"));
    assert_eq!(code, 0, "{out}");
}
