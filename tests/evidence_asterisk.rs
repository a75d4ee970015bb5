//! `evidence.source = "asterisk"`: the call's metadata is kept at its end and sealed when the
//! PBX recording arrives (the real Asterisk fixture, moved in byte for byte), or sealed without
//! audio saying why when the recording failed. First the evidence sink alone, driven with the
//! actions the tracker sends; then the whole daemon against a fake ARI replaying the real
//! Asterisk 22.10.1 capture.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use callguard::config::EvidenceSource;
use callguard::events::{Action, CallInfo, RecordingOutcome, Report};
use callguard::evidence::{EvidenceOptions, run};
use sha2::Digest;
use tokio::sync::{broadcast, mpsc};

/// The body of `GET /ari/recordings/stored/…/file` captured from Asterisk 22.10.1.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/asterisk-22.10.1/stored-recording-snoop-1795354434.7.wav")
}

fn call(id: &str) -> Arc<CallInfo> {
    Arc::new(CallInfo {
        call_id: id.into(),
        agent: "PJSIP/1001".into(),
        caller: "0312345678".into(),
        direction: "inbound".into(),
        channel: "PJSIP/1001-0000002a".into(),
        started_at: chrono::Local::now().fixed_offset(),
        adopted: false,
    })
}

async fn next_sealed(
    reports: &mut broadcast::Receiver<Report>,
) -> (String, PathBuf, Option<String>) {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Ok(Report::Sealed {
                call_id,
                dir,
                sha256,
                ..
            }) = reports.recv().await
            {
                return (call_id, dir, sha256);
            }
        }
    })
    .await
    .expect("no seal")
}

#[tokio::test]
async fn the_pbx_recording_is_sealed_after_the_call_end_with_its_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = EvidenceOptions {
        root: tmp.path().join("evidence"),
        data_dir: tmp.path().join("state"),
        source: EvidenceSource::Asterisk,
        min_free_mb: 0,
        language: Default::default(),
        agent_name: String::new(),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (reports_tx, mut reports) = broadcast::channel(64);
    let (problems_tx, _problems_rx) = mpsc::channel(8);
    let sink = tokio::spawn(run(opts, rx, reports_tx, problems_tx));

    let download = tmp.path().join("download.wav");
    std::fs::copy(fixture(), &download).unwrap();
    for id in ["1795354434.7", "1795354500.9"] {
        tx.send(Action::CallStarted(call(id))).unwrap();
        tx.send(Action::CallEnded {
            call: call(id),
            ended_at: chrono::Local::now().fixed_offset(),
            duration: Duration::from_secs(4),
            cause: "Normal Clearing".into(),
        })
        .unwrap();
    }
    tx.send(Action::Recording {
        call_id: "1795354434.7".into(),
        outcome: RecordingOutcome::Downloaded {
            path: download.clone(),
            source: "callguard/1795354434.7".into(),
        },
    })
    .unwrap();
    let (id, dir, sha) = next_sealed(&mut reports).await;
    assert_eq!(id, "1795354434.7");
    let want = hex::encode(sha2::Sha256::digest(std::fs::read(fixture()).unwrap()));
    assert_eq!(sha.as_deref(), Some(want.as_str()));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["audio"]["source"], "asterisk");
    assert_eq!(m["audio"]["source_name"], "callguard/1795354434.7");
    assert_eq!(m["caller"], "0312345678");
    assert_eq!(m["end_cause"], "Normal Clearing");
    assert_eq!(m["duration_secs"], 4);
    assert!(!download.exists());

    tx.send(Action::Recording {
        call_id: "1795354500.9".into(),
        outcome: RecordingOutcome::Failed {
            reason: "RecordingFailed: cause 21".into(),
        },
    })
    .unwrap();
    let (id, dir, sha) = next_sealed(&mut reports).await;
    assert_eq!((id.as_str(), sha), ("1795354500.9", None));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(m["audio"].is_null());
    assert!(
        m["problems"][0]
            .as_str()
            .unwrap()
            .contains("RecordingFailed: cause 21"),
        "{m}"
    );

    // A recording reported before the call's end is sealed at the end, with the end's data.
    tx.send(Action::CallStarted(call("early"))).unwrap();
    tx.send(Action::Recording {
        call_id: "early".into(),
        outcome: RecordingOutcome::Failed {
            reason: "canceled".into(),
        },
    })
    .unwrap();
    tx.send(Action::CallEnded {
        call: call("early"),
        ended_at: chrono::Local::now().fixed_offset(),
        duration: Duration::from_secs(61),
        cause: "Normal Clearing".into(),
    })
    .unwrap();
    let (id, dir, _) = next_sealed(&mut reports).await;
    assert_eq!(id, "early");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        (m["end_cause"].as_str(), m["duration_secs"].as_u64()),
        (Some("Normal Clearing"), Some(61))
    );
    assert_eq!(m["problems"].as_array().unwrap().len(), 1, "{m}");

    drop(tx);
    sink.await.unwrap();
    let key = callguard::evidence::keys::read_public(&tmp.path().join("state/keys/evidence.pub"))
        .unwrap();
    let out =
        callguard::evidence::verify::verify_paths(&[tmp.path().join("evidence")], &key).unwrap();
    assert!(out.ok(), "{out:?}");
    assert_eq!(out.calls.len(), 3);
}

#[tokio::test]
async fn the_daemon_seals_the_recording_asterisk_made_of_a_real_call() {
    use callguard::config::PbxKind;
    use common::ari::{FakeAri, fixture_bytes, fixture_lines, is_own_snoop_stasis_start};
    const AGENT_ID: &str = "1795354434.7";
    let tmp = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start("callguard", "s3cret-ari").await;
    ari.store(
        "callguard/1795354434.7",
        fixture_bytes("stored-recording-snoop-1795354434.7.wav"),
    );
    let mut cfg = common::test_config(tmp.path(), &ari.url);
    cfg.pbx.kind = PbxKind::Asterisk;
    cfg.pbx.username = "callguard".into();
    cfg.pbx.password = "s3cret-ari".into();
    cfg.pbx.app = "callguard-floor".into();
    cfg.agent.endpoint = "Local/1001@agentphones".into();
    cfg.evidence.source = EvidenceSource::Asterisk;
    cfg.evidence.min_free_mb = 0;
    let mut d = common::TestRun::headless().start(cfg);
    let mut conn = ari.accept().await;
    d.next(|r| matches!(r, Report::Connected(_)).then_some(()))
        .await;
    let record_path = format!("/ari/channels/cg-snoop-{AGENT_ID}/record");
    for line in fixture_lines("ari-observed-bridged.jsonl") {
        // The fake sends the snoop's StasisStart itself, once the snoop is made.
        if is_own_snoop_stasis_start(&line) {
            continue;
        }
        conn.send_line(&line).await;
        // The real Asterisk made the snoop's recording only once asked: wait for the request
        // to be accepted.
        if line.contains(r#""type":"ChannelStateChange""#)
            && line.contains(&format!(r#""id":"{AGENT_ID}""#))
            && line.contains(r#""state":"Up""#)
        {
            ari.wait_for("the accepted record request", |r, _| {
                r.iter().any(|s| s.path == record_path && s.status == 201)
            })
            .await;
        }
    }
    let (dir, sha) = d
        .next(|r| match r {
            Report::Sealed {
                call_id,
                dir,
                sha256,
                ..
            } if call_id == AGENT_ID => Some((dir.clone(), sha256.clone())),
            _ => None,
        })
        .await;
    let want = hex::encode(sha2::Sha256::digest(std::fs::read(fixture()).unwrap()));
    assert_eq!(sha.as_deref(), Some(want.as_str()));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["caller"], "0312345678");
    assert_eq!(m["end_cause"], "Normal Clearing (cause 16)");
    assert_eq!(m["audio"]["source"], "asterisk");
    // RFC 3339 with an offset. (Which instants depends on the capture's age: the tracker takes
    // receipt time for an `at` more than 24 h old.)
    let t = |k: &str| chrono::DateTime::parse_from_rfc3339(m[k].as_str().unwrap()).unwrap();
    assert!(t("ended_at") >= t("started_at"));
    let key = callguard::evidence::keys::read_public(&tmp.path().join("state/keys/evidence.pub"))
        .unwrap();
    let out =
        callguard::evidence::verify::verify_paths(&[tmp.path().join("evidence")], &key).unwrap();
    assert!(out.ok(), "{out:?}");
    d.stop().await;
}

#[tokio::test]
async fn a_recording_asterisk_never_started_is_loud_at_once_and_the_sealed_manifest_says_why() {
    use callguard::config::{PbxKind, WebhookConfig, WebhookFormat};
    use common::ari::{FakeAri, fixture_lines, is_own_snoop_stasis_start};
    use common::http::Receiver;
    const AGENT_ID: &str = "1795354434.7";
    let tmp = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start("callguard", "s3cret-ari").await;
    ari.refuse_records(422, "specified format is unknown on this system");
    let mut lead = Receiver::start(Vec::new()).await;
    let mut cfg = common::test_config(tmp.path(), &ari.url);
    cfg.pbx.kind = PbxKind::Asterisk;
    cfg.pbx.username = "callguard".into();
    cfg.pbx.password = "s3cret-ari".into();
    cfg.pbx.app = "callguard-floor".into();
    cfg.agent.endpoint = "Local/1001@agentphones".into();
    cfg.evidence.source = EvidenceSource::Asterisk;
    cfg.evidence.min_free_mb = 0;
    cfg.escalation.webhook = vec![WebhookConfig {
        url: lead.url("/lead"),
        format: WebhookFormat::Json,
        secret_file: String::new(),
    }];
    let mut d = common::TestRun::headless().start(cfg);
    let mut conn = ari.accept().await;
    d.next(|r| matches!(r, Report::Connected(_)).then_some(()))
        .await;
    // Nothing is recorded, so the capture's recording events never happen.
    let lines: Vec<String> = fixture_lines("ari-observed-bridged.jsonl")
        .into_iter()
        .filter(|l| !is_own_snoop_stasis_start(l) && !l.contains(r#""type":"Recording"#))
        .collect();
    let is_up = |l: &str| {
        l.contains(r#""type":"ChannelStateChange""#)
            && l.contains(&format!(r#""id":"{AGENT_ID}""#))
            && l.contains(r#""state":"Up""#)
    };
    let up = lines.iter().position(|l| is_up(l)).unwrap();
    for line in &lines[..=up] {
        conn.send_line(line).await;
    }
    // At once, during the call: the agent's desktop sink and the lead hear of it.
    let (summary, body) = d
        .next(|r| match r {
            Report::Notification {
                call_id,
                summary,
                body,
                ..
            } if call_id == AGENT_ID && summary.starts_with("pbx.") => {
                Some((summary.clone(), body.clone()))
            }
            _ => None,
        })
        .await;
    assert_eq!(summary, "pbx.recording");
    assert!(body.contains("NOT being recorded"), "{body}");
    assert!(body.contains("422"), "{body}");
    let ping = lead.next().await.json();
    assert_eq!(ping["kind"], "problem");
    assert_eq!(ping["problem"], "pbx.recording");
    assert_eq!(ping["call_id"], AGENT_ID);

    for line in &lines[up + 1..] {
        conn.send_line(line).await;
    }
    let (dir, sha) = d
        .next(|r| match r {
            Report::Sealed {
                call_id,
                dir,
                sha256,
                ..
            } if call_id == AGENT_ID => Some((dir.clone(), sha256.clone())),
            _ => None,
        })
        .await;
    assert_eq!(sha, None);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(m["audio"].is_null(), "{m}");
    let problems: Vec<&str> = m["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("NOT being recorded") && p.contains("422")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("never started") && p.contains("format is unknown")),
        "{problems:?}"
    );
    let key = callguard::evidence::keys::read_public(&tmp.path().join("state/keys/evidence.pub"))
        .unwrap();
    let out =
        callguard::evidence::verify::verify_paths(&[tmp.path().join("evidence")], &key).unwrap();
    assert!(out.ok(), "{out:?}");
    d.stop().await;
}

/// A recording downloaded just before callguard stopped, left in `.staging` as the downloader
/// names it, `secs_ago` before now.
fn staged(root: &Path, call_id: &str, secs_ago: i64) -> PathBuf {
    let staging = root.join(callguard::evidence::layout::STAGING_DIR);
    std::fs::create_dir_all(&staging).unwrap();
    let nanos = (chrono::Utc::now() - chrono::Duration::seconds(secs_ago))
        .timestamp_nanos_opt()
        .unwrap();
    let path = staging.join(callguard::evidence::layout::staged_name(call_id, nanos));
    std::fs::copy(fixture(), &path).unwrap();
    path
}

/// The folder a stop left for a call that ended and was waiting for its PBX recording.
fn waiting_folder(root: &Path, id: &str, started_secs_ago: i64) -> PathBuf {
    let started = chrono::Local::now() - chrono::Duration::seconds(started_secs_ago);
    let (dir, _) = callguard::evidence::layout::create_call_dir(root, id, started).unwrap();
    let mut info = (*call(id)).clone();
    info.started_at = started.fixed_offset();
    let mut rec = callguard::evidence::record::CallRecord::from_call(&info, "asterisk");
    rec.ended_at = Some(chrono::Local::now().fixed_offset());
    rec.duration_secs = Some(40);
    rec.end_cause = "Normal Clearing".into();
    rec.save(&dir).unwrap();
    dir
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

#[tokio::test]
async fn a_recording_downloaded_before_a_stop_is_sealed_with_its_call_at_the_next_start() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("evidence");
    let opts = EvidenceOptions {
        root: root.clone(),
        data_dir: tmp.path().join("state"),
        source: EvidenceSource::Asterisk,
        min_free_mb: 0,
        language: Default::default(),
        agent_name: String::new(),
    };
    let want = hex::encode(sha2::Sha256::digest(std::fs::read(fixture()).unwrap()));
    let start = |opts: EvidenceOptions| {
        let (tx, rx) = mpsc::unbounded_channel::<Action>();
        let (reports_tx, reports) = broadcast::channel(64);
        let (problems_tx, _problems_rx) = mpsc::channel(8);
        let sink = tokio::spawn(run(opts, rx, reports_tx, problems_tx));
        (tx, reports, sink)
    };

    // First run: a call ended, its recording never came; it is sealed without audio.
    waiting_folder(&root, "1795354500.9", 120);
    let (tx, mut reports, sink) = start(opts.clone());
    let (id, first, sha) = next_sealed(&mut reports).await;
    assert_eq!((id.as_str(), sha), ("1795354500.9", None));
    drop(tx);
    sink.await.unwrap();

    // What the next stop left: a call waiting for its recording, downloaded just before the
    // stop; the recording of the call sealed without it (whose folder still has its meta.json,
    // as after a stop between the seal and its clean-up); a recording of a call with no trace;
    // a whole download not renamed yet; one cut short; and a download of this run, not to be
    // touched.
    let waiting = waiting_folder(&root, "1795354434.7", 60);
    staged(&root, "1795354434.7", 5);
    let mut leftover =
        callguard::evidence::record::CallRecord::from_call(&call("1795354500.9"), "asterisk");
    leftover.ended_at = Some(chrono::Local::now().fixed_offset());
    leftover.save(&first).unwrap();
    staged(&root, "1795354500.9", 4);
    staged(&root, "1795399999.1", 3);
    let as_part = |p: PathBuf| {
        let part = p.with_extension("wav.part");
        std::fs::rename(&p, &part).unwrap();
        part
    };
    let whole = as_part(staged(&root, "1795388888.2", 2));
    let cut = as_part(staged(&root, "1795366666.4", 2));
    let len = std::fs::metadata(&cut).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let current = staged(&root, "1795377777.3", -600);

    let (tx, mut reports, sink) = start(opts.clone());
    let mut sealed = std::collections::HashMap::new();
    for _ in 0..4 {
        let (id, dir, sha) = next_sealed(&mut reports).await;
        assert_eq!(
            sha.as_deref(),
            Some(want.as_str()),
            "{id}: the recording as downloaded"
        );
        sealed.insert(id, dir);
    }
    // Into the folder that waited for it, its call's details kept.
    assert_eq!(sealed["1795354434.7"], waiting);
    let m = manifest(&waiting);
    assert_eq!(
        (m["caller"].as_str(), m["recovered"].as_bool()),
        (Some("0312345678"), Some(true))
    );
    assert!(m["problems"].to_string().contains("downloaded"), "{m}");
    // The call sealed without it gets a second part, linked to the first.
    let m = manifest(&sealed["1795354500.9"]);
    let rel = first
        .strip_prefix(&root)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        (
            m["continues"]["dir"].as_str(),
            m["continues"]["part"].as_u64()
        ),
        (Some(rel.as_str()), Some(2))
    );
    assert_eq!(m["caller"], "0312345678");
    // No trace of the call: its id from the file name, sealed all the same.
    let m = manifest(&sealed["1795399999.1"]);
    assert!(
        m["problems"].to_string().contains("no record of its call"),
        "{m}"
    );
    // The whole download is sealed too; the one cut short is gone (the PBX still has it);
    // this run's download is untouched.
    assert!(sealed.contains_key("1795388888.2") && !whole.exists());
    assert!(!cut.exists());
    assert!(current.exists());
    assert!(
        !first.join("call.wav").exists(),
        "a sealed folder never takes a recording"
    );
    drop(tx);
    sink.await.unwrap();

    std::fs::remove_file(&current).unwrap();
    let key = callguard::evidence::keys::read_public(&tmp.path().join("state/keys/evidence.pub"))
        .unwrap();
    let out = callguard::evidence::verify::verify_paths(&[root], &key).unwrap();
    assert!(out.ok(), "{out:?}");
    assert!(out.stray.is_empty(), "{:?}", out.stray);
    assert_eq!(out.calls.len(), 5);
    assert_eq!(out.split_calls.len(), 1, "{:?}", out.split_calls);
}
