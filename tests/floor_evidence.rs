//! Evidence at hand, with real parts only: the real `callguard` daemon records a call from its
//! PBX (a loopback websocket), seals it, publishes the ledger line on Debian's real
//! `nats-server` and archives the folder to a real S3 server (s3s-fs); the real `callguard
//! floor` (SQLite, and a throwaway PostgreSQL cluster) learns of the folder from the bus,
//! downloads and verifies it with the workstation's key from `floor.evidence_keys`, and serves
//! the evidence page and the recording — only to a session that may see the call.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use common::FakePbx;
use common::daemon::{DaemonProc, floor_workstation_config};
use common::dbus::{SessionBus, serve_notifications};
use common::floor::{Floor, Session, Workstations, eventually};
use common::nats::NatsServer;
use common::postgres::PgCluster;
use common::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use serde_json::json;

const AGENT: &str = "1001";
const BUCKET: &str = "evidence";
/// What the caller said, as the agent marked it.
const QUOTE: &str = "家に行くぞ <b>本気だ</b>";

/// The `[archive]` table, for the daemon (writes) and the floor (reads) alike.
fn archive_toml(dir: &Path, endpoint: &str) -> String {
    let ak = dir.join("access.key");
    let sk = dir.join("secret.key");
    std::fs::write(&ak, format!("{ACCESS_KEY}\n")).expect("access key file");
    std::fs::write(&sk, format!("{SECRET_KEY}\n")).expect("secret key file");
    format!(
        "[archive]\nendpoint = \"{endpoint}\"\nbucket = \"{BUCKET}\"\npath_style = true\n\
         access_key_file = \"{}\"\nsecret_key_file = \"{}\"\nretry_max = \"500ms\"\n",
        ak.display(),
        sk.display()
    )
}

/// `callguard key show` of the workstation, as IT hands it to the floor.
fn key_show(config: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["key", "show", "--config"])
        .arg(config)
        .env_remove("CALLGUARD_CONFIG")
        .output()
        .expect("callguard key show");
    assert!(out.status.success(), "key show failed: {out:?}");
    String::from_utf8(out.stdout).expect("key show prints text")
}

/// The one sealed folder under `evidence` (relative path, as in the ledger).
fn sealed_folder(evidence: &Path) -> Option<String> {
    let mut stack = vec![evidence.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "manifest.sig") {
                let dir = p.parent()?.strip_prefix(evidence).ok()?;
                return Some(dir.to_string_lossy().into_owned());
            }
        }
    }
    None
}

/// The `data-state` of the first folder on the evidence page.
fn shown_state(html: &str) -> Option<String> {
    let marker = "id=\"state-0\" data-state=\"";
    let i = html.find(marker)? + marker.len();
    html[i..].split('"').next().map(str::to_string)
}

async fn evidence_response(s: &Session, key: &str) -> reqwest::Response {
    s.get(&format!(
        "/evidence?key={}",
        url::form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>()
    ))
    .await
}

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Everything a story needs, running: the daemon has recorded, sealed and archived call
/// `c-ev`, and its end is on the board.
struct Rig {
    _bus: SessionBus,
    nats: NatsServer,
    s3: S3Server,
    floor: Floor,
    daemon: DaemonProc,
    host: String,
    /// The call's key on the board.
    key: String,
    /// The sealed folder, relative to the evidence root.
    folder: String,
    sealed_wav: Vec<u8>,
    /// The workstation's evidence root.
    evidence: PathBuf,
    /// The workstation's public key file.
    public_key: PathBuf,
    lead: Session,
    _pbx: FakePbx,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// With `key_file`, the floor's keys folder holds the workstation's `callguard key show`;
    /// without, the floor has no key file for it.
    async fn start(db: &str, key_file: bool) -> Rig {
        let bus = SessionBus::start();
        let (conn, notes) = serve_notifications(&bus, &["body"]).await;
        // The notification server lives as long as the test.
        std::mem::forget((conn, notes));
        let nats = NatsServer::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let s3 = S3Server::start(dir.path(), BUCKET).await;
        let archive = archive_toml(dir.path(), &s3.endpoint());
        let mut pbx = FakePbx::start().await;
        let ws_dir = dir.path().join("ws");
        std::fs::create_dir_all(&ws_dir).expect("workstation dir");
        let keys = dir.path().join("floor-keys");
        std::fs::create_dir_all(&keys).expect("keys dir");
        let floor = Floor::start_with(
            &dir.path().join("floor"),
            &nats.url(),
            db,
            &archive,
            &format!(
                "evidence_keys = \"{}\"\nevidence_retry = \"200ms\"\n",
                keys.display()
            ),
        )
        .await;
        floor.add_user("tanaka", "田中", &["a"], false);
        floor.add_user("kimura", "木村", &["b"], false);
        floor.add_user("admin", "管理者", &[], true);
        Workstations::connect(&nats.url())
            .await
            .wait_for_stream()
            .await;
        let config = floor_workstation_config(&ws_dir, AGENT, &pbx.url, &nats.url(), &archive);
        // IT runs `callguard key show` on the workstation (it makes the key) before the
        // daemon's first start, and copies its output to the floor's keys folder.
        let shown = key_show(&config);
        let host = callguard::evidence::manifest::host_name();
        if key_file {
            std::fs::write(keys.join(format!("{host}.pub")), shown).expect("key file");
        }
        let daemon = DaemonProc::spawn(&config, ws_dir.join("daemon.log"), Some(&bus.address));
        let mut conn = pbx.accept().await;

        // A recorded call: 100 frames each way, then its end; the daemon seals and archives it.
        let at = chrono::Local::now().fixed_offset().to_rfc3339();
        conn.send(
            json!({"type":"call.start","call_id":"c-ev","at":at,"agent":AGENT,
            "caller":"0312345678","direction":"inbound"}),
        )
        .await;
        conn.send(
            json!({"type":"media.start","call_id":"c-ev","encoding":"audio/x-mulaw",
            "sample_rate":8000}),
        )
        .await;
        let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
        for seq in 1..=100u64 {
            let a: Vec<u8> = (0..160u64).map(|i| (i * 7 + seq) as u8).collect();
            for track in ["inbound", "outbound"] {
                conn.send(
                    json!({"type":"media","call_id":"c-ev","track":track,"seq":seq,
                    "payload":b64(&a)}),
                )
                .await;
            }
        }
        // The agent marks a threat: the call gets an incident record (incident.md). The quote
        // holds markup, which the page must show as text.
        common::status_until(&config, |v| {
            v["tracker"]["calls"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
        })
        .await;
        let (code, out, err) = common::cli(&config, &["mark", "threat", "--quote", QUOTE]).await;
        assert_eq!(code, 0, "callguard mark: {out}{err}");
        conn.send(json!({"type":"call.end","call_id":"c-ev","cause":"normal"}))
            .await;

        let lead = Session::login(&floor.url(), "tanaka").await;
        let call = eventually("the call's end on the board", || async {
            lead.board().await["calls"]
                .as_array()?
                .iter()
                .find(|c| c["call_id"] == "c-ev" && !c["ended_ms"].is_null())
                .cloned()
        })
        .await;
        let key = call["key"].as_str().expect("call key").to_string();
        let evidence = ws_dir.join("evidence");
        let deadline = std::time::Instant::now() + common::floor::PATIENCE;
        let folder = loop {
            if let Some(f) = sealed_folder(&evidence) {
                break f;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never sealed; daemon log:\n{}",
                daemon.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let sealed_wav =
            std::fs::read(evidence.join(&folder).join("call.wav")).expect("sealed WAV");
        assert!(sealed_wav.len() > 60_000, "{} bytes", sealed_wav.len());
        Rig {
            _bus: bus,
            nats,
            s3,
            floor,
            daemon,
            host,
            key,
            folder,
            sealed_wav,
            evidence,
            public_key: ws_dir.join("state/keys/evidence.pub"),
            lead,
            _pbx: pbx,
            _dir: dir,
        }
    }

    /// The evidence page of `key` once its first folder shows `state` (bounded; the logs are
    /// shown when it does not).
    async fn page_in_state(&self, key: &str, state: &str) -> String {
        let deadline = std::time::Instant::now() + common::floor::PATIENCE;
        loop {
            // A call published a moment ago may not be on the floor yet: 404 until it is.
            let res = evidence_response(&self.lead, key).await;
            let status = res.status();
            let html = res.text().await.unwrap_or_default();
            if status == 200 && shown_state(&html).as_deref() == Some(state) {
                return html;
            }
            assert!(
                status == 200 || status == 404,
                "evidence page refused ({status}): {html}"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "not {state} in time:\n{html}\nfloor log:\n{}\ndaemon log:\n{}",
                self.floor.log(),
                self.daemon.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// In headless Chromium: a lead logs in, opens the evidence page, and the page's player loads
/// the recording through the floor (its metadata: the sealed call's length). With
/// `CALLGUARD_UPDATE_DOCS=1` the screenshot goes to `docs/floor-evidence.png` (README).
async fn the_player_loads_in_a_browser(floor_url: &str, key: &str, secs: f64) {
    use fantoccini::Locator;
    const WAIT: std::time::Duration = std::time::Duration::from_secs(30);
    let browser = common::browser::Browser::start("ja").await;
    let c = &browser.client;
    c.goto(&format!("{floor_url}/login"))
        .await
        .expect("login page");
    let field = |css: &'static str| async move {
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}`: {e}"))
    };
    field("#name")
        .await
        .send_keys("tanaka")
        .await
        .expect("name");
    field("#password")
        .await
        .send_keys(common::floor::PASSWORD)
        .await
        .expect("password");
    field("#login").await.click().await.expect("log in");
    field("#board").await;
    c.goto(&format!("{floor_url}/evidence?key={}", q(key)))
        .await
        .expect("evidence page");
    field("#audio-0").await;
    let deadline = std::time::Instant::now() + WAIT;
    let duration = loop {
        let v = c
            .execute(
                "const a = document.getElementById('audio-0');\
                 return [a.readyState, a.duration, a.error ? a.error.code : 0];",
                vec![],
            )
            .await
            .expect("read the player");
        let ready = v[0].as_u64().unwrap_or(0);
        assert_eq!(v[2], 0, "the player reports an error: {v}");
        if ready >= 1 {
            break v[1].as_f64().expect("a duration");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the player never loaded the recording: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        (duration - secs).abs() < 0.05,
        "the player's duration {duration} s, the sealed call's {secs} s"
    );
    let shots = if std::env::var_os("CALLGUARD_UPDATE_DOCS").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs")
    } else {
        std::env::temp_dir().join("callguard-floor-screenshots")
    };
    std::fs::create_dir_all(&shots).expect("screenshot folder");
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(shots.join("floor-evidence.png"), &png).expect("write the screenshot");
    browser.close().await;
}

async fn the_floor_verifies_and_serves_archived_evidence(db: &str, browser: bool) {
    let rig = Rig::start(db, true).await;
    let Rig {
        ref s3,
        ref floor,
        ref host,
        ref key,
        ref folder,
        ref sealed_wav,
        ref lead,
        ..
    } = rig;

    // 1. The page shows "verified" once the floor has checked the archived folder.
    let page = rig.page_in_state(key, "verified").await;
    assert!(page.contains("検証済み"), "{page}");
    assert!(
        page.contains(folder.as_str()),
        "the folder is named: {page}"
    );
    assert!(
        page.contains(&format!(
            "src=\"/evidence/recording?key={}&amp;dir={}\"",
            q(key),
            q(folder)
        )),
        "an audio player fed by the floor: {page}"
    );
    // In English for a browser that prefers it.
    let en = lead
        .http
        .get(format!("{}/evidence?key={}", floor.url(), q(key)))
        .header("cookie", &lead.cookie)
        .header("accept-language", "en-US,en;q=0.9")
        .send()
        .await
        .expect("evidence page in English")
        .text()
        .await
        .expect("page");
    assert!(
        en.contains("verified (signature and hashes hold)") && en.contains("Incident record"),
        "{en}"
    );
    // The incident record, rendered; the caller's words with markup shown as text.
    let i = page
        .find("id=\"incident-0\"")
        .expect("the incident record on the page");
    let record = &page[i..];
    assert!(record.contains("家に行くぞ"), "{record}");
    assert!(
        record.contains("&lt;b&gt;") && !record.contains("<b>本気だ</b>"),
        "markup in the record is text: {record}"
    );
    // The board links the call to it.
    let board = lead.get("/").await.text().await.expect("board page");
    assert!(
        board.contains(&format!("/evidence?key={}", q(key))),
        "{board}"
    );

    if browser {
        let wav = hound::WavReader::new(std::io::Cursor::new(&sealed_wav[..])).expect("a WAV");
        let secs = f64::from(wav.duration()) / f64::from(wav.spec().sample_rate);
        the_player_loads_in_a_browser(&floor.url(), key, secs).await;
    }

    // 2. The recording over HTTP with a session is the sealed WAV, whole and by range.
    let rec_path = format!("/evidence/recording?key={}&dir={}", q(key), q(folder));
    let res = lead.get(&rec_path).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "audio/wav");
    assert_eq!(res.headers()["accept-ranges"], "bytes");
    let bytes = res.bytes().await.expect("recording");
    assert!(
        bytes[..] == sealed_wav[..],
        "the streamed recording is the sealed WAV"
    );
    let res = lead
        .http
        .get(format!("{}{rec_path}", floor.url()))
        .header("cookie", &lead.cookie)
        .header("range", "bytes=1000-4999")
        .send()
        .await
        .expect("range request");
    assert_eq!(res.status(), 206);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes 1000-4999/{}", sealed_wav.len()).as_str()
    );
    let part = res.bytes().await.expect("range body");
    assert!(
        part[..] == sealed_wav[1000..5000],
        "the range is the right slice"
    );

    // 3. Without a session: sent to the login page, no audio.
    let anon = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for path in [rec_path.clone(), format!("/evidence?key={}", q(key))] {
        let res = anon
            .get(format!("{}{path}", floor.url()))
            .send()
            .await
            .expect("anonymous request");
        assert_eq!(res.status(), 303, "{path} without a session");
        assert_eq!(res.headers()["location"], "/login");
        assert!(res.bytes().await.expect("body").len() < 100);
    }

    // 4. A lead of another team: refused.
    let other = Session::login(&floor.url(), "kimura").await;
    for path in [rec_path.clone(), format!("/evidence?key={}", q(key))] {
        let res = other.get(&path).await;
        assert_eq!(res.status(), 403, "{path} for another team's lead");
        let body = res.bytes().await.expect("body");
        assert!(!body.starts_with(b"RIFF"), "no audio for another team");
    }

    // 5. The views are in the audit table.
    let admin = Session::login(&floor.url(), "admin").await;
    let audit = admin.get("/audit").await.text().await.expect("audit page");
    for action in ["view.evidence", "view.record", "view.recording"] {
        assert!(
            audit.contains(&format!(">tanaka</a></td><td>{action}</td>")),
            "{action} by the lead audited: {audit}"
        );
    }

    // 6. A changed byte in the archived recording: after a new check the floor shows
    //    "altered", says which file, logs it and audits it.
    let object = s3.object_path(BUCKET, &format!("callguard/{host}/{folder}/call.wav"));
    let mut stored = std::fs::read(&object).expect("the archived WAV in s3s-fs's folder");
    assert!(stored == *sealed_wav, "s3s-fs stores the object as is");
    stored[2000] ^= 0x55;
    std::fs::write(&object, &stored).expect("tamper with the archived WAV");
    let r = lead
        .post(
            "/evidence/recheck",
            &[("csrf", lead.csrf.as_str()), ("key", key.as_str())],
        )
        .await;
    assert_eq!(r.status(), 303, "recheck refused");
    let bad = lead
        .post(
            "/evidence/recheck",
            &[("csrf", "forged"), ("key", key.as_str())],
        )
        .await;
    assert_eq!(bad.status(), 403, "a recheck without the CSRF token");
    let page = rig.page_in_state(key, "altered").await;
    assert!(page.contains("改ざんあり"), "{page}");
    assert!(
        page.contains("call.wav: SHA-256 mismatch"),
        "which file: {page}"
    );
    assert!(
        floor
            .log()
            .contains("ARCHIVED EVIDENCE FAILED VERIFICATION"),
        "{}",
        floor.log()
    );
    let audit = admin.get("/audit").await.text().await.expect("audit page");
    assert!(audit.contains("evidence.altered"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_verifies_and_serves_archived_evidence_on_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    the_floor_verifies_and_serves_archived_evidence(&db, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_verifies_and_serves_archived_evidence_on_postgresql() {
    let pg = PgCluster::start();
    let db = pg.database("floor_evidence").await;
    the_floor_verifies_and_serves_archived_evidence(&db, false).await;
}

/// Without a key file the floor pins the key the workstation published with its first ledger
/// line, and says so on the page; a ledger event for the same host that carries another key
/// (somebody signing as this workstation) fails, shown as a signature failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_file_the_first_key_seen_is_pinned_and_another_key_fails() {
    use sha2::Digest as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    let rig = Rig::start(&db, false).await;
    let page = rig.page_in_state(&rig.key, "verified").await;
    assert!(
        page.contains("に初めて受信した鍵（鍵ファイルなし）"),
        "{page}"
    );

    // The genuine ledger line, published again for another call with a key of somebody else's.
    let ledger = std::fs::read_to_string(rig.evidence.join("ledger.jsonl")).expect("ledger");
    let line = ledger.lines().next().expect("a ledger line");
    let parsed: serde_json::Value = serde_json::from_str(line).expect("ledger JSON");
    let forged = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]).verifying_key();
    let ev = callguard::floor::contract::FloorEvent {
        schema: callguard::floor::contract::SCHEMA.into(),
        id: "forged-ledger-1".into(),
        site: "tokyo".into(),
        host: rig.host.clone(),
        agent: AGENT.into(),
        agent_name: "佐藤".into(),
        call_id: Some("c-forged".into()),
        caller: Default::default(),
        at: chrono::Utc::now().fixed_offset(),
        elapsed_secs: None,
        level: None,
        body: callguard::floor::contract::EventBody::Ledger {
            seq: parsed["seq"].as_u64().expect("seq"),
            manifest_sha256: parsed["manifest_sha256"]
                .as_str()
                .expect("manifest_sha256")
                .into(),
            line_sha256: hex::encode(sha2::Sha256::digest(line.as_bytes())),
            prev: String::new(),
            dir: rig.folder.clone(),
            public_key: base64::engine::general_purpose::STANDARD.encode(forged.as_bytes()),
        },
    };
    let ws = Workstations::connect(&rig.nats.url()).await;
    ws.publish(&ev).await;
    let key = format!("tokyo/{AGENT}/c-forged");
    let page = rig.page_in_state(&key, "signature").await;
    assert!(page.contains("not the key first seen for"), "{page}");
    assert!(page.contains("ev-bad"), "shown in red: {page}");

    // The genuine key too, but published by another workstation (another subject, as its own
    // NATS credentials allow) naming this host: not vouched for by the pin either.
    let genuine = base64::engine::general_purpose::STANDARD.encode(
        callguard::evidence::keys::read_public(&rig.public_key)
            .expect("the workstation's public key")
            .as_bytes(),
    );
    let mut other = ev.clone();
    other.id = "intruder-ledger-1".into();
    other.call_id = Some("c-intruder".into());
    if let callguard::floor::contract::EventBody::Ledger { public_key, .. } = &mut other.body {
        *public_key = genuine;
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(callguard::floor::contract::MSG_ID_HEADER, other.id.as_str());
    ws.js
        .publish_with_headers(
            other.subject("tokyo", "intruder"),
            headers,
            other.to_json().into(),
        )
        .await
        .expect("publish")
        .await
        .expect("PubAck");
    let page = rig
        .page_in_state(&format!("tokyo/{AGENT}/c-intruder"), "signature")
        .await;
    assert!(
        page.contains("by workstation intruder") && page.contains("first seen from workstation"),
        "{page}"
    );
    // The genuine call is still verified with the pinned key.
    rig.page_in_state(&rig.key, "verified").await;
}

/// `callguard floor doctor --json` on `config`: its exit status and each row's check → status.
fn floor_doctor(config: &Path) -> (bool, std::collections::BTreeMap<String, (String, String)>) {
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["floor", "doctor", "--json", "--config"])
        .arg(config)
        .output()
        .expect("run callguard floor doctor");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "floor doctor printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        report["ok"].as_bool(),
        Some(out.status.success()),
        "{report}"
    );
    let rows = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap_or_default().to_string(),
                (
                    c["status"].as_str().unwrap_or_default().to_string(),
                    c["detail"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect();
    (out.status.success(), rows)
}

#[tokio::test]
async fn floor_doctor_checks_the_store_the_bus_the_stream_and_the_archive() {
    let mut nats = NatsServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let s3 = S3Server::start(dir.path(), BUCKET).await;
    let keys = dir.path().join("floor-keys");
    std::fs::create_dir_all(&keys).expect("keys dir");
    let floor_dir = dir.path().join("floor");
    std::fs::create_dir_all(&floor_dir).expect("floor dir");
    let db = format!("sqlite://{}", floor_dir.join("floor.db").display());
    let write = |archive: &str| {
        let path = floor_dir.join("doctor.toml");
        std::fs::write(
            &path,
            format!(
                "{archive}\n[state]\ndir = \"{}\"\n[floor]\nnats_url = \"{}\"\nsite = \"tokyo\"\n\
                 db = \"{db}\"\nlisten = \"127.0.0.1:0\"\nevidence_keys = \"{}\"\n",
                floor_dir.join("state").display(),
                nats.url(),
                keys.display()
            ),
        )
        .expect("doctor.toml");
        path
    };
    let archive = archive_toml(dir.path(), &s3.endpoint());
    let config = write(&archive);

    // Before the floor service ever ran: no stream yet (it makes it at start) and no key.
    let (ok, rows) = floor_doctor(&config);
    assert!(ok, "{rows:?}");
    for (check, status) in [
        ("config", "pass"),
        ("board", "pass"),
        ("store", "pass"),
        ("bus", "pass"),
        ("stream", "warn"),
        ("archive", "pass"),
        ("evidence-keys", "warn"),
    ] {
        assert_eq!(rows[check].0, status, "{check}: {rows:?}");
    }
    assert!(rows["stream"].1.contains("creates it at start"), "{rows:?}");

    // The floor has run (the stream exists) and a workstation's key is in place.
    let floor = Floor::start(&dir.path().join("running"), &nats.url(), &db, "").await;
    Workstations::connect(&nats.url())
        .await
        .wait_for_stream()
        .await;
    std::fs::write(keys.join("ws-1.pub"), "key\n").expect("a key file");
    let (ok, rows) = floor_doctor(&config);
    assert!(ok, "{rows:?}");
    assert_eq!(rows["stream"].0, "pass", "{rows:?}");
    assert!(rows["stream"].1.starts_with("CALLGUARD: "), "{rows:?}");
    assert_eq!(rows["evidence-keys"].0, "pass", "{rows:?}");
    assert!(
        rows["evidence-keys"]
            .1
            .ends_with(": 1 workstation public key")
    );
    drop(floor);

    // Credentials the archive refuses: the archive row fails, and so does the doctor.
    let wrong = archive.replace(&dir.path().join("secret.key").display().to_string(), &{
        let p = dir.path().join("wrong.key");
        std::fs::write(&p, "not-the-secret\n").expect("wrong key");
        p.display().to_string()
    });
    assert_ne!(wrong, archive);
    let config = write(&wrong);
    let (ok, rows) = floor_doctor(&config);
    assert!(!ok, "{rows:?}");
    assert_eq!(rows["archive"].0, "fail", "{rows:?}");
    assert_eq!(rows["bus"].0, "pass", "{rows:?}");

    // NATS gone: the bus row fails and says where it tried.
    let config = write(&archive);
    nats.kill();
    let (ok, rows) = floor_doctor(&config);
    assert!(!ok, "{rows:?}");
    assert_eq!(rows["bus"].0, "fail", "{rows:?}");
    assert!(rows["bus"].1.contains(&nats.url()), "{rows:?}");
    assert!(!rows.contains_key("stream"), "{rows:?}");
}
