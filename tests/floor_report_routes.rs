//! The board's report downloads through a real `callguard floor` over HTTP, fed by a real
//! nats-server: `/report` as HTML, PDF and CSV for a logged-in admin (everyone's calls, with the
//! care list) and a lead (their teams' calls, never the care list); no report and no record
//! without a session; `/incident.pdf` for the leads who see the agent only. And the incident
//! record of a call made from a real sealed folder (the evidence sealer, its real key):
//! `callguard floor incident --folder --pubkey` prints the manifest's SHA-256, the key id, the
//! signature state and the verify command, and that command passes; a tampered copy is
//! reported as not matching.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use callguard::evidence::seal::{CallRecord, Sealer};
use callguard::floor::contract::EventBody;
use callguard::floor::service::report::html::heading;
use callguard::floor::service::store::Store;
use callguard::harassment::{Mark, MarkKind};
use common::floor::{
    Floor, Session, Workstations, call_end, call_start, escalation, event, eventually, mark,
};
use common::nats::NatsServer;
use sha2::Digest;

/// `YYYY-MM-DD_YYYY-MM-DD` from yesterday to tomorrow (UTC dates): the events published now
/// fall inside it whatever the machine's UTC offset.
fn period_around_now() -> String {
    let today = chrono::Utc::now().date_naive();
    let day = chrono::Duration::days(1);
    format!(
        "{}_{}",
        (today - day).format("%Y-%m-%d"),
        (today + day).format("%Y-%m-%d")
    )
}

fn symptom(
    id: &str,
    agent: &str,
    call: &str,
    caller: &str,
) -> callguard::floor::contract::FloorEvent {
    event(
        id,
        agent,
        Some(call),
        Some(caller),
        Some(60),
        Some(1),
        EventBody::Mark {
            mark: "symptom".into(),
            quote: Some("動悸がする".into()),
            offset_secs: 60,
            rules: Vec::new(),
            grounds_to_end: false,
        },
    )
}

/// The summary CSV's calls (通話件数) of this period.
fn calls_in_summary(csv_bytes: &[u8]) -> i64 {
    let mut r = csv::Reader::from_reader(csv_bytes);
    let head = r.headers().expect("CSV header").clone();
    assert_eq!(&head[0], "item");
    for row in r.records() {
        let row = row.expect("CSV row");
        if &row[0] == "通話件数" {
            return row[1].parse().expect("a number");
        }
    }
    panic!("the summary CSV has no 通話件数 (calls) row");
}

fn csv_rows(csv_bytes: &[u8]) -> Vec<Vec<String>> {
    csv::Reader::from_reader(csv_bytes)
        .records()
        .map(|r| r.expect("CSV row").iter().map(String::from).collect())
        .collect()
}

async fn get_ok(s: &Session, path: &str, mime: &str) -> Vec<u8> {
    let res = s.get(path).await;
    assert_eq!(res.status(), 200, "GET {path}");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with(mime), "GET {path}: content-type {ct}");
    res.bytes().await.expect("body").to_vec()
}

/// A WAV to seal: the Asterisk recording fixture.
fn wav_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/asterisk-22.10.1/stored-recording-snoop-1795354434.7.wav")
}

fn sealed_record(call_id: &str) -> CallRecord {
    let now = chrono::Local::now().fixed_offset();
    let mut rec = CallRecord {
        call_id: call_id.into(),
        agent: "1001".into(),
        caller: "+81312340001".into(),
        direction: "inbound".into(),
        channel: "PJSIP/1001-0000002a".into(),
        started_at: now - chrono::Duration::seconds(300),
        ended_at: Some(now),
        duration_secs: Some(300),
        end_cause: "normal".into(),
        warnings: Vec::new(),
        source: "asterisk".into(),
        source_name: "callguard/1795354434.7".into(),
        stream_encoding: String::new(),
        truncated: false,
        recovered: false,
        problems: Vec::new(),
        gaps: 0,
        late_frames: 0,
        incident: Default::default(),
        continues: None,
    };
    rec.incident.language = "ja".into();
    rec.incident.agent_name = "佐藤".into();
    rec.incident.marks.push(Mark {
        kind: MarkKind::Threat,
        quote: Some("殺すぞ".into()),
        at: now - chrono::Duration::seconds(200),
        offset_secs: 100,
    });
    rec
}

fn floor_incident(config: &Path, key: &str, out: &Path, folder: &Path, pubkey: &Path) {
    let res = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .arg("--config")
        .arg(config)
        .args(["floor", "incident", key, "--out"])
        .arg(out)
        .arg("--folder")
        .arg(folder)
        .arg("--pubkey")
        .arg(pubkey)
        .output()
        .expect("run callguard floor incident");
    assert!(
        res.status.success(),
        "floor incident failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
}

/// pdftotext lays a long value out on one line unless its cell wraps it; join the lines so a
/// 64-digit hash split by the table reads whole.
fn squeezed(text: &str) -> String {
    text.split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_downloads_follow_the_viewer_and_the_incident_record_carries_the_seal() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    let floor = Floor::start(dir.path(), &nats.url(), &db, "").await;
    floor.add_user("admin", "管理者", &[], true);
    floor.add_user("tanaka", "田中", &["a"], false);
    floor.add_user("kimura", "木村", &["b"], false);
    let ws = Workstations::connect(&nats.url()).await;
    ws.wait_for_stream().await;

    // Team a (1001, 1002) and team b (2001): a level-4 threat with an escalation on 1001, a
    // quiet call on 1002, a symptom mark on 2001.
    let (c1, c2, c3) = (
        "+81312340001".to_string(),
        "+81312340002".to_string(),
        "+81312340003".to_string(),
    );
    let events = vec![
        call_start("s1", "1001", "c1", &c1),
        mark("m1", "1001", "c1", &c1, 4, "殺すぞ"),
        escalation("e1", "1001", "c1", &c1, 4),
        call_end("x1", "1001", "c1", &c1, 300),
        call_start("s2", "1002", "c2", &c2),
        call_end("x2", "1002", "c2", &c2, 120),
        call_start("s3", "2001", "c3", &c3),
        symptom("m3", "2001", "c3", &c3),
        call_end("x3", "2001", "c3", &c3, 200),
    ];
    for ev in &events {
        ws.publish(ev).await;
    }
    let store = Store::open(&db).await.unwrap();
    let want = events.len() as i64;
    eventually("the events stored", || {
        let store = &store;
        async move { (store.event_count().await.ok()? == want).then_some(()) }
    })
    .await;

    let period = period_around_now();
    let report = format!("/report?period={period}");
    let admin = Session::login(&floor.url(), "admin").await;
    let lead = Session::login(&floor.url(), "tanaka").await;
    let other_lead = Session::login(&floor.url(), "kimura").await;

    // An admin: every call, and the care list naming the level-4 agent and the one with a
    // symptom mark — in the HTML, the PDF and the CSV.
    let html = String::from_utf8(get_ok(&admin, &report, "text/html").await).unwrap();
    assert!(html.contains(heading::SUMMARY), "{html}");
    assert!(
        html.contains(heading::CARE),
        "the admin's report has the care list"
    );
    assert!(
        html.contains("佐藤") && html.contains("Agent 2001"),
        "{html}"
    );
    let pdf = get_ok(&admin, &format!("{report}&format=pdf"), "application/pdf").await;
    let text = common::pdf::text_of(&pdf, dir.path(), "admin.pdf");
    for want in [heading::SUMMARY, heading::CARE, "佐藤", "Agent 2001"] {
        assert!(text.contains(want), "the admin's PDF lacks {want}:\n{text}");
    }
    let summary = get_ok(
        &admin,
        &format!("{report}&format=csv&table=summary"),
        "text/csv",
    )
    .await;
    assert_eq!(calls_in_summary(&summary), 3);
    let care = get_ok(
        &admin,
        &format!("{report}&format=csv&table=care"),
        "text/csv",
    )
    .await;
    let mut agents: Vec<String> = csv_rows(&care).into_iter().map(|r| r[0].clone()).collect();
    agents.sort();
    assert_eq!(agents, ["1001", "2001"]);

    // A lead: their team's calls only, and no care list anywhere.
    let html = String::from_utf8(get_ok(&lead, &report, "text/html").await).unwrap();
    assert!(html.contains(heading::SUMMARY));
    assert!(
        !html.contains(heading::CARE),
        "a lead's report has no care list"
    );
    assert!(!html.contains("Agent 2001"));
    let pdf = get_ok(&lead, &format!("{report}&format=pdf"), "application/pdf").await;
    let text = common::pdf::text_of(&pdf, dir.path(), "lead.pdf");
    assert!(text.contains(heading::SUMMARY), "{text}");
    assert!(
        !text.contains(heading::CARE),
        "a lead's PDF has no care list"
    );
    let summary = get_ok(
        &lead,
        &format!("{report}&format=csv&table=summary"),
        "text/csv",
    )
    .await;
    assert_eq!(calls_in_summary(&summary), 2, "team a's calls only");
    assert_eq!(
        lead.get(&format!("{report}&format=csv&table=care"))
            .await
            .status(),
        404
    );
    // Asking for another team's figures gives none of them.
    let summary = get_ok(
        &lead,
        &format!("{report}&format=csv&table=summary&team=b"),
        "text/csv",
    )
    .await;
    assert_eq!(calls_in_summary(&summary), 0);

    // No session, or a made-up one: sent to the login form, no report, no record.
    let anon = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let record = "/incident.pdf?key=tokyo/1001/c1";
    for path in [
        report.clone(),
        format!("{report}&format=pdf"),
        format!("{report}&format=csv&table=care"),
        record.to_string(),
    ] {
        for cookie in [None, Some("cg_session=not-a-session")] {
            let mut req = anon.get(format!("{}{path}", floor.url()));
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 303, "GET {path} without a session");
            assert_eq!(
                res.headers().get("location").and_then(|v| v.to_str().ok()),
                Some("/login")
            );
            let body = res.bytes().await.unwrap();
            assert!(!body.starts_with(b"%PDF") && body.len() < 200, "GET {path}");
        }
    }

    // The incident record from the board: the agent's lead and the admin get it; another
    // team's lead does not.
    for s in [&admin, &lead] {
        let pdf = get_ok(s, record, "application/pdf").await;
        let text = common::pdf::text_of(&pdf, dir.path(), "record.pdf");
        for want in [
            "インシデント記録",
            "tokyo/1001/c1",
            "殺すぞ",
            "callguard verify",
        ] {
            assert!(text.contains(want), "the record lacks {want}:\n{text}");
        }
    }
    assert_eq!(other_lead.get(record).await.status(), 403);
    assert_eq!(
        admin
            .get("/incident.pdf?key=tokyo/1001/none")
            .await
            .status(),
        404
    );

    // A real sealed folder of call c1 (the evidence sealer with its own key), its ledger line
    // published as the workstation does.
    let evidence = dir.path().join("ws/evidence");
    let sealer = Sealer::open(&evidence, &dir.path().join("ws/state")).unwrap();
    let wav = dir.path().join("c1.wav");
    std::fs::copy(wav_fixture(), &wav).unwrap();
    let sealed = sealer
        .seal_wav_as_new_call(&wav, &sealed_record("c1"))
        .unwrap();
    let pubkey = dir.path().join("ws/state/keys/evidence.pub");
    let manifest_bytes = std::fs::read(sealed.dir.join("manifest.json")).unwrap();
    let manifest_sha = hex::encode(sha2::Sha256::digest(&manifest_bytes));
    assert_eq!(manifest_sha, sealed.manifest_sha256);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let key_id = manifest["key_id"].as_str().unwrap().to_string();
    assert!(!key_id.is_empty());
    assert!(sealed.dir.join("incident.md").is_file());
    ws.publish(&event(
        "l1",
        "1001",
        None,
        None,
        None,
        None,
        EventBody::Ledger {
            seq: sealed.seq,
            manifest_sha256: manifest_sha.clone(),
            line_sha256: "0".repeat(64),
            prev: String::new(),
            dir: sealed.rel.clone(),
            public_key: String::new(),
        },
    ))
    .await;
    let want = want + 1;
    eventually("the ledger line stored", || {
        let store = &store;
        async move { (store.event_count().await.ok()? == want).then_some(()) }
    })
    .await;
    store.close().await;

    let out = dir.path().join("incident-c1.pdf");
    floor_incident(&floor.config, "tokyo/1001/c1", &out, &sealed.dir, &pubkey);
    let text = common::pdf::text(&out);
    let flat = squeezed(&text);
    for want in [
        "インシデント記録",
        "検証済み",
        "callguard verify --pubkey",
        "台帳の manifest SHA-256",
    ] {
        assert!(
            text.contains(want),
            "the sealed record lacks {want}:\n{text}"
        );
    }
    assert!(flat.contains(&manifest_sha), "no manifest SHA-256:\n{text}");
    assert!(flat.contains(&key_id), "no key id {key_id}:\n{text}");
    assert!(
        text.contains("殺すぞ"),
        "the sealed incident.md's words:\n{text}"
    );
    assert!(!text.contains("一致しません"), "{text}");
    // The printed command, run with the workstation's public key, passes.
    let target = sealed.dir.display().to_string();
    assert!(flat.contains(&squeezed(&format!(
        "callguard verify --pubkey <公開鍵.pem> {target}"
    ))));
    let verified = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["verify", "--pubkey"])
        .arg(&pubkey)
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );

    // A copy whose recording was changed: the record says the signature check failed.
    let copy = dir.path().join("tampered");
    std::fs::create_dir_all(&copy).unwrap();
    for f in std::fs::read_dir(&sealed.dir).unwrap().flatten() {
        std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
    }
    let audio = copy.join("call.wav");
    let mut bytes = std::fs::read(&audio).unwrap();
    let at = bytes.len() - 10;
    bytes[at] ^= 0xff;
    std::fs::write(&audio, bytes).unwrap();
    let out = dir.path().join("incident-tampered.pdf");
    floor_incident(&floor.config, "tokyo/1001/c1", &out, &copy, &pubkey);
    let text = common::pdf::text(&out);
    assert!(
        text.contains("不一致"),
        "a tampered copy is reported:\n{text}"
    );
    assert!(!text.contains("検証済み"), "{text}");
}
