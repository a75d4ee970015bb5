//! The Asterisk connector against a fake ARI on 127.0.0.1:0 that replays the real Asterisk
//! 22.10.1 captures (`tests/fixtures/asterisk-22.10.1/`) unchanged. Real time: sockets and paused
//! time do not mix; every wait is on a real event with a bounded timeout.

mod common;

use std::time::Duration;

use callguard::calls::Command;
use callguard::config::{Config, EvidenceSource, PbxKind};
use callguard::events::{PbxEvent, RecordingOutcome, Report};
use callguard::pbx::ari::event::parse_time;
use callguard::pbx::asterisk::{self, Options};
use common::ari::{
    AriConn, Failure, FakeAri, fixture_bytes, fixture_lines, is_own_snoop_stasis_start,
    rest_responses,
};
use common::{TestRun, test_config};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

const USER: &str = "callguard";
const PASSWORD: &str = "s3cret-ari";
const WAV: &str = "stored-recording-snoop-1795354434.7.wav";
const AGENT_ID: &str = "1795354434.7";
const BRIDGED: &str = "ari-observed-bridged.jsonl";
const WHISPER: &str = "ari-observed-whisper-notice.jsonl";
const MIDCALL: &str = "ari-get-channels-midcall.json";

fn ari_config(dir: &std::path::Path, url: &str) -> Config {
    let mut cfg = test_config(dir, url);
    cfg.pbx.kind = PbxKind::Asterisk;
    cfg.pbx.username = USER.into();
    let pw = dir.join("ari.password");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    cfg.pbx.password_file = pw.display().to_string();
    cfg.pbx.app = "callguard-floor".into();
    cfg.agent.endpoint = "Local/1001@agentphones".into();
    cfg.evidence.source = EvidenceSource::Asterisk;
    cfg.validate().unwrap();
    cfg
}

/// The connector alone, its events in a channel.
struct Connector {
    events: mpsc::Receiver<PbxEvent>,
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl Connector {
    fn start(cfg: &Config) -> Connector {
        let (tx, events) = mpsc::channel(1024);
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(asterisk::run(
            Options::from_config(cfg),
            tx,
            shutdown.clone(),
        ));
        Connector {
            events,
            shutdown,
            handle,
        }
    }

    async fn next(&mut self) -> PbxEvent {
        tokio::time::timeout(Duration::from_secs(30), self.events.recv())
            .await
            .expect("no event came")
            .expect("connector stopped")
    }

    /// Events up to and including the first one `stop` accepts.
    async fn until(&mut self, stop: impl Fn(&PbxEvent) -> bool) -> Vec<PbxEvent> {
        let mut seen = Vec::new();
        loop {
            let ev = self.next().await;
            let done = stop(&ev);
            seen.push(ev);
            if done {
                return seen;
            }
        }
    }

    /// Connected, then the resync snapshot.
    async fn connected(&mut self) -> Vec<callguard::events::CallStart> {
        assert!(matches!(self.next().await, PbxEvent::Connected { .. }));
        match self.next().await {
            PbxEvent::Snapshot(list) => list,
            other => panic!("expected the resync snapshot, got {other:?}"),
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap();
    }
}

fn is_up_of(line: &str, id: &str) -> bool {
    line.contains(r#""type":"ChannelStateChange""#)
        && line.contains(&format!(r#""id":"{id}""#))
        && line.contains(r#""state":"Up""#)
}

/// Replays `lines`; after the agent channel comes up, waits until the connector's recording
/// request has been accepted (as the real Asterisk only made the snoop's recording once asked).
/// The fixtures' StasisStart of callguard's own snoops is left out: the fake sends it when the
/// snoop is really made, after the snoop's `200`.
async fn replay(ari: &FakeAri, conn: &mut AriConn, lines: &[String], agent_id: &str, record: bool) {
    for line in lines {
        if is_own_snoop_stasis_start(line) {
            continue;
        }
        conn.send_line(line).await;
        if record && is_up_of(line, agent_id) {
            let path = format!("/ari/channels/cg-snoop-{agent_id}/record");
            ari.wait_for("the accepted record request", |r, _| {
                r.iter().any(|s| s.path == path && s.status == 201)
            })
            .await;
        }
    }
}

/// The fixture's REST key for `what`, with `{agent_id}` filled in: (method, path, query pairs).
fn fixture_request(part: &str) -> (String, String, Vec<(String, String)>) {
    let responses = rest_responses();
    let key = responses
        .as_object()
        .unwrap()
        .keys()
        .find(|k| k.contains(part))
        .unwrap()
        .replace("{agent_id}", AGENT_ID);
    let (method, target) = key.split_once(' ').unwrap();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    (method.to_string(), path.to_string(), query)
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn bridged_call_starts_ends_and_its_recording_is_downloaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    ari.store("callguard/1795354434.7", fixture_bytes(WAV));
    let cfg = ari_config(dir.path(), &ari.url);
    let mut c = Connector::start(&cfg);
    let mut conn = ari.accept().await;
    assert_eq!(c.connected().await, vec![]);

    replay(&ari, &mut conn, &fixture_lines(BRIDGED), AGENT_ID, true).await;
    let events = c.until(|e| matches!(e, PbxEvent::Recording { .. })).await;

    // One call only: not the `;2` half of the Local pair, not the customer, not the snoop.
    let [
        PbxEvent::CallStart(start),
        PbxEvent::CallEnd { call_id, at, cause },
        PbxEvent::Recording {
            call_id: rec_id,
            outcome,
        },
    ] = events.as_slice()
    else {
        panic!("unexpected events: {events:#?}");
    };
    assert_eq!(start.call_id, AGENT_ID);
    assert_eq!(start.agent, "Local/1001@agentphones");
    assert_eq!(start.caller, "0312345678");
    assert_eq!(start.channel, "Local/1001@agentphones-00000003;1");
    assert_eq!(start.direction, "inbound");
    // Connected = the moment the agent channel went Up.
    assert_eq!(start.at, parse_time("2026-11-22T13:33:54.832+0000"));
    assert_eq!(call_id, AGENT_ID);
    assert_eq!(*at, parse_time("2026-11-22T13:34:01.061+0000"));
    assert_eq!(cause, "Normal Clearing (cause 16)");
    assert_eq!(rec_id, AGENT_ID);
    let RecordingOutcome::Downloaded { path, source } = outcome else {
        panic!("download failed: {outcome:?}");
    };
    assert_eq!(source, "callguard/1795354434.7");
    assert!(path.starts_with(dir.path().join("evidence").join(".staging")));
    assert_eq!(
        sha256(&std::fs::read(path).unwrap()),
        sha256(&fixture_bytes(WAV))
    );

    // The requests are the ones the real Asterisk answered in rest-responses.json.
    let seen = ari.requests();
    for part in ["/snoop?", "/record?"] {
        let (method, path, query) = fixture_request(part);
        let req = seen
            .iter()
            .find(|s| s.path == path)
            .unwrap_or_else(|| panic!("no {path}: {seen:?}"));
        assert_eq!((&req.method, &req.query), (&method, &query), "{path}");
    }
    let (_, download_path, _) = fixture_request("%2F");
    assert!(
        seen.iter()
            .any(|s| s.method == "GET" && s.path == download_path && s.status == 200),
        "{seen:?}"
    );
    // Credentials travel in the header only.
    let upgrades = ari.upgrades();
    assert_eq!(
        upgrades,
        vec![(
            "/ari/events?app=callguard-floor&subscribeAll=true".to_string(),
            true
        )]
    );
    c.stop().await;
}

#[tokio::test]
async fn the_daemon_tracks_the_bridged_call_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    let mut cfg = ari_config(dir.path(), &ari.url);
    cfg.evidence.source = EvidenceSource::Off;
    let mut d = TestRun::headless().start(cfg);
    let mut conn = ari.accept().await;
    d.next(|r| matches!(r, Report::Connected(_)).then_some(()))
        .await;
    replay(&ari, &mut conn, &fixture_lines(BRIDGED), AGENT_ID, false).await;
    let mut starts = Vec::new();
    let cause = d
        .next(|r| match r {
            Report::CallStarted(c) => {
                starts.push(c.clone());
                None
            }
            Report::CallEnded { call_id, cause, .. } => Some((call_id.clone(), cause.clone())),
            _ => None,
        })
        .await;
    assert_eq!(starts.len(), 1, "{starts:#?}");
    assert_eq!(
        (starts[0].call_id.as_str(), starts[0].caller.as_str()),
        (AGENT_ID, "0312345678")
    );
    assert_eq!(
        cause,
        (
            AGENT_ID.to_string(),
            "Normal Clearing (cause 16)".to_string()
        )
    );
    assert!(
        ari.requests().iter().all(|s| !s.path.contains("snoop")),
        "evidence.source = off must not record"
    );
    d.stop().await;
}

async fn status(d: &common::RunningDaemon) -> callguard::calls::TrackerStatus {
    let (tx, rx) = oneshot::channel();
    d.commands.send(Command::Status(tx)).await.unwrap();
    rx.await.unwrap()
}

#[tokio::test]
async fn reconnect_mid_call_resyncs_without_a_second_start_and_ends_gone_calls_as_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    let mut cfg = ari_config(dir.path(), &ari.url);
    // Floor mode: two agents.
    cfg.agent.endpoint = String::new();
    cfg.agent.endpoints = vec![
        "Local/1001@agentphones".into(),
        "Local/1001@agentphones2".into(),
    ];
    cfg.evidence.source = EvidenceSource::Off;
    let mut d = TestRun::headless().start(cfg);
    let mut conn = ari.accept().await;
    d.next(|r| matches!(r, Report::Connected(_)).then_some(()))
        .await;

    // Both calls come up on the first connection.
    let bridged = fixture_lines(BRIDGED);
    let up = bridged.iter().position(|l| is_up_of(l, AGENT_ID)).unwrap();
    replay(&ari, &mut conn, &bridged[..=up], AGENT_ID, false).await;
    let whisper = fixture_lines(WHISPER);
    let up2 = whisper
        .iter()
        .position(|l| is_up_of(l, "1795354516.24"))
        .unwrap();
    replay(&ari, &mut conn, &whisper[..=up2], "", false).await;
    let mut started = Vec::new();
    while started.len() < 2 {
        started.push(
            d.next(|r| match r {
                Report::CallStarted(c) => Some(c.call_id.clone()),
                _ => None,
            })
            .await,
        );
    }
    started.sort();
    assert_eq!(started, ["1795354434.7", "1795354516.24"]);

    // Asterisk goes away; when it is back, only the first call is still up.
    ari.set_channels(&String::from_utf8(fixture_bytes(MIDCALL)).unwrap());
    conn.drop_hard();
    d.next(|r| matches!(r, Report::Disconnected(_)).then_some(()))
        .await;
    let mut conn = ari.accept().await;
    let mut restarted = Vec::new();
    let lost = d
        .next(|r| match r {
            Report::CallStarted(c) => {
                restarted.push(c.call_id.clone());
                None
            }
            Report::CallEnded { call_id, cause, .. } => Some((call_id.clone(), cause.clone())),
            _ => None,
        })
        .await;
    assert_eq!(lost, ("1795354516.24".to_string(), "lost".to_string()));
    let st = status(&d).await;
    assert_eq!(
        st.calls
            .iter()
            .map(|c| c.call_id.as_str())
            .collect::<Vec<_>>(),
        [AGENT_ID]
    );

    // The rest of the first call arrives on the new connection.
    replay(&ari, &mut conn, &bridged[up + 1..], AGENT_ID, false).await;
    let end = d
        .next(|r| match r {
            Report::CallStarted(c) => {
                restarted.push(c.call_id.clone());
                None
            }
            Report::CallEnded { call_id, cause, .. } => Some((call_id.clone(), cause.clone())),
            _ => None,
        })
        .await;
    assert_eq!(
        end,
        (
            AGENT_ID.to_string(),
            "Normal Clearing (cause 16)".to_string()
        )
    );
    assert!(restarted.is_empty(), "second start: {restarted:?}");
    d.stop().await;
}

#[tokio::test]
async fn resync_after_a_restart_adopts_the_agent_call_with_its_creation_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    ari.set_channels(&String::from_utf8(fixture_bytes(MIDCALL)).unwrap());
    let mut cfg = ari_config(dir.path(), &ari.url);
    cfg.prompt.into_call = true;
    let mut c = Connector::start(&cfg);
    let _conn = ari.accept().await;
    let snapshot = c.connected().await;
    assert_eq!(snapshot.len(), 1, "{snapshot:#?}");
    assert_eq!(snapshot[0].call_id, AGENT_ID);
    assert_eq!(snapshot[0].caller, "0312345678");
    assert_eq!(snapshot[0].at, parse_time("2026-11-22T13:33:54.832+0000"));
    // An adopted call is recorded from now on, but hears no second notice.
    ari.wait_for("the record request", |r, _| {
        r.iter().any(|s| s.path.ends_with("/record"))
    })
    .await;
    assert!(
        ari.requests()
            .iter()
            .all(|s| s.q("whisper") != Some("in") && !s.path.ends_with("/play")),
        "{:?}",
        ari.requests()
    );
    c.stop().await;
}

#[tokio::test]
async fn wrong_password_gets_a_clear_error_and_backoff() {
    let dir = tempfile::tempdir().unwrap();
    let ari = FakeAri::start(USER, "the-right-one").await;
    let cfg = ari_config(dir.path(), &ari.url);
    let mut c = Connector::start(&cfg);
    let PbxEvent::Disconnected { reason, retry_in } = c.next().await else {
        panic!("expected a refusal");
    };
    assert!(reason.contains("ARI user `callguard`"), "{reason}");
    assert!(reason.contains("401"), "{reason}");
    assert!(reason.contains("ari.conf"), "{reason}");
    assert!(!reason.contains(PASSWORD), "{reason}");
    assert_eq!(retry_in, Duration::from_millis(500));
    // It tries again after the backoff, and again.
    ari.wait_for("three refused upgrades", |_, u| u.len() >= 3)
        .await;
    let upgrades = ari.upgrades();
    assert!(
        upgrades
            .iter()
            .all(|(target, ok)| !ok && !target.contains(PASSWORD) && !target.contains("api_key"))
    );
    c.stop().await;
}

#[tokio::test]
async fn application_replaced_stops_reconnecting() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    let mut cfg = ari_config(dir.path(), &ari.url);
    cfg.pbx.app = "callguard-dup".into();
    let mut c = Connector::start(&cfg);
    let mut conn = ari.accept().await;
    c.connected().await;
    for line in fixture_lines("ari-application-replaced.jsonl") {
        conn.send_line(&line).await;
    }
    let PbxEvent::Disconnected { reason, retry_in } = c.next().await else {
        panic!("expected the disconnect");
    };
    assert!(reason.contains("another instance"), "{reason}");
    assert!(reason.contains("`callguard-dup`"), "{reason}");
    assert_eq!(retry_in, Duration::MAX);
    conn.closed().await;
    // The first reconnect would come after 0.5 s: none comes within six times that.
    assert!(ari.accept_within(Duration::from_secs(3)).await.is_none());
    assert_eq!(ari.upgrades().len(), 1);
    c.stop().await;
}

#[tokio::test]
async fn unknown_event_types_are_ignored_and_garbage_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    let mut cfg = ari_config(dir.path(), &ari.url);
    cfg.evidence.source = EvidenceSource::Off;
    let mut c = Connector::start(&cfg);
    let mut conn = ari.accept().await;
    c.connected().await;
    // A type this version does not know, the Stasis/Playback events of an app-controlled call,
    // and a frame that is not JSON.
    conn.send_line(r#"{"type":"ChannelTransferWizardry","timestamp":"2026-11-22T13:40:00.000+0000","wizard":{"level":[1,2,3]},"application":"callguard-floor"}"#).await;
    for line in fixture_lines("ari-controlled.jsonl") {
        conn.send_line(&line).await;
    }
    conn.send_line("{not json").await;
    // The connection is still good: the bridged call comes through.
    replay(&ari, &mut conn, &fixture_lines(BRIDGED), AGENT_ID, false).await;
    let events = c.until(|e| matches!(e, PbxEvent::CallEnd { .. })).await;
    assert!(
        matches!(&events[0], PbxEvent::BadFrame { reason } if reason.starts_with("not JSON")),
        "{events:#?}"
    );
    assert!(matches!(&events[1], PbxEvent::CallStart(s) if s.call_id == AGENT_ID));
    assert_eq!(events.len(), 3, "{events:#?}");
    c.stop().await;
}

#[tokio::test]
async fn a_download_that_fails_twice_is_retried_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    ari.store("callguard/1795354434.7", fixture_bytes(WAV));
    ari.fail_downloads(&[Failure::Status(503), Failure::CutOff]);
    let cfg = ari_config(dir.path(), &ari.url);
    let mut c = Connector::start(&cfg);
    let mut conn = ari.accept().await;
    c.connected().await;
    replay(&ari, &mut conn, &fixture_lines(BRIDGED), AGENT_ID, true).await;
    let events = c.until(|e| matches!(e, PbxEvent::Recording { .. })).await;
    let Some(PbxEvent::Recording {
        outcome: RecordingOutcome::Downloaded { path, .. },
        ..
    }) = events.last()
    else {
        panic!("{events:#?}");
    };
    assert_eq!(
        sha256(&std::fs::read(path).unwrap()),
        sha256(&fixture_bytes(WAV))
    );
    let downloads: Vec<u16> = ari
        .requests()
        .iter()
        .filter(|s| s.path.starts_with("/ari/recordings/stored/"))
        .map(|s| s.status)
        .collect();
    // 503, then 200 cut off mid-body, then the whole file.
    assert_eq!(downloads, [503, 200, 200]);
    // No partial file is left behind.
    let staged: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(staged, vec![path.clone()]);
    c.stop().await;
}

#[tokio::test]
async fn a_recording_name_holding_a_slash_travels_as_one_segment() {
    use callguard::pbx::ari::rest::{AriUrls, Rest};
    use callguard::pbx::ws::Credentials;
    let dir = tempfile::tempdir().unwrap();
    let ari = FakeAri::start(USER, PASSWORD).await;
    ari.store("callguard/1795354434.7", fixture_bytes(WAV));
    ari.store("callguard/odd name%2F?#", b"RIFF".to_vec());
    let urls = AriUrls::derive(&ari.url, "callguard-floor").unwrap();
    let creds = Credentials {
        username: USER.into(),
        password: Some(PASSWORD.into()),
    };
    let rest = Rest::new(urls.rest, creds, "").unwrap();
    let dest = dir.path().join("a.wav");
    let n = rest
        .download("callguard/1795354434.7", &dest)
        .await
        .unwrap();
    assert_eq!(n, 64044);
    assert_eq!(std::fs::read(&dest).unwrap(), fixture_bytes(WAV));
    let dest = dir.path().join("b.wav");
    rest.download("callguard/odd name%2F?#", &dest)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"RIFF");
    let paths: Vec<String> = ari.requests().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/ari/recordings/stored/callguard%2F1795354434.7/file",
            "/ari/recordings/stored/callguard%2Fodd%20name%252F%3F%23/file"
        ]
    );
    // A file that exists is never overwritten.
    let err = rest
        .download("callguard/1795354434.7", &dest)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("b.wav"), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"RIFF");
    // A body larger than a recording can be is refused part-way, and nothing of it is kept.
    let dest = dir.path().join("c.wav");
    let err = rest
        .download_at_most("callguard/1795354434.7", &dest, 64043)
        .await
        .unwrap_err();
    assert!(
        err.is_too_large() && err.to_string().contains("more than 64043 bytes"),
        "{err}"
    );
    assert!(!dest.exists());
    assert_eq!(
        rest.download_at_most("callguard/1795354434.7", &dest, 64044)
            .await
            .unwrap(),
        64044
    );
}

#[tokio::test]
async fn a_failed_recording_is_reported_as_failed() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    let cfg = ari_config(dir.path(), &ari.url);
    let mut c = Connector::start(&cfg);
    let mut conn = ari.accept().await;
    c.connected().await;
    // The bridged call, as if the disk of the PBX had filled: the finish says `failed`.
    let lines: Vec<String> = fixture_lines(BRIDGED)
        .into_iter()
        .map(|l| {
            if l.contains(r#""type":"RecordingFinished""#) {
                l.replace(r#""state":"done""#, r#""state":"failed""#)
            } else {
                l
            }
        })
        .collect();
    replay(&ari, &mut conn, &lines, AGENT_ID, true).await;
    let events = c.until(|e| matches!(e, PbxEvent::Recording { .. })).await;
    let Some(PbxEvent::Recording {
        outcome: RecordingOutcome::Failed { reason },
        ..
    }) = events.last()
    else {
        panic!("{events:#?}");
    };
    assert!(reason.contains("callguard/1795354434.7 failed"), "{reason}");
    assert!(
        ari.requests()
            .iter()
            .all(|s| !s.path.starts_with("/ari/recordings"))
    );
    c.stop().await;
}

#[tokio::test]
async fn the_notice_is_whispered_into_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    let mut cfg = ari_config(dir.path(), &ari.url);
    cfg.agent.endpoint = "Local/1001@agentphones2".into();
    cfg.evidence.source = EvidenceSource::Off;
    cfg.prompt.into_call = true;
    let mut c = Connector::start(&cfg);
    let mut conn = ari.accept().await;
    c.connected().await;
    let id = "1795354516.24";
    let lines = fixture_lines(WHISPER);
    let up = lines.iter().position(|l| is_up_of(l, id)).unwrap();
    replay(&ari, &mut conn, &lines[..=up], id, false).await;
    let play = format!("/ari/channels/cg-notice-{id}/play");
    ari.wait_for("the accepted play request", |r, _| {
        r.iter().any(|s| s.path == play && s.status == 201)
    })
    .await;
    replay(&ari, &mut conn, &lines[up + 1..], id, false).await;
    let events = c.until(|e| matches!(e, PbxEvent::CallEnd { .. })).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let seen = ari.requests();
    let snoop = seen
        .iter()
        .find(|s| s.path == format!("/ari/channels/{id}/snoop"))
        .unwrap();
    let notice_id = format!("cg-notice-{id}");
    assert_eq!(
        (
            snoop.q("spy"),
            snoop.q("whisper"),
            snoop.q("app"),
            snoop.q("snoopId")
        ),
        (
            Some("none"),
            Some("in"),
            Some("callguard-floor"),
            Some(notice_id.as_str())
        )
    );
    let play = seen.iter().find(|s| s.path == play).unwrap();
    assert_eq!(play.q("media"), Some("sound:custom/recording-notice"));
    assert_eq!(seen.len(), 3, "GET channels, snoop, play: {seen:?}");
    c.stop().await;
}

#[tokio::test]
async fn a_call_that_ends_while_asterisk_is_unreachable_still_gets_its_recording() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    let cfg = ari_config(dir.path(), &ari.url);
    let mut c = Connector::start(&cfg);
    let mut conn = ari.accept().await;
    c.connected().await;
    let bridged = fixture_lines(BRIDGED);
    let up = bridged.iter().position(|l| is_up_of(l, AGENT_ID)).unwrap();
    replay(&ari, &mut conn, &bridged[..=up], AGENT_ID, true).await;
    assert!(matches!(c.next().await, PbxEvent::CallStart(s) if s.call_id == AGENT_ID));

    // The connection dies; the call ends meanwhile (no ChannelDestroyed, no RecordingFinished
    // reach callguard), and the first download attempt after the reconnect fails too.
    conn.drop_hard();
    assert!(matches!(c.next().await, PbxEvent::Disconnected { .. }));
    ari.set_channels("[]");
    ari.store("callguard/1795354434.7", fixture_bytes(WAV));
    ari.fail_downloads(&[Failure::Status(500)]);
    let _conn = ari.accept().await;
    assert!(matches!(c.next().await, PbxEvent::Connected { .. }));
    // The snapshot without the call (the tracker ends it as lost), then its recording.
    assert_eq!(c.next().await, PbxEvent::Snapshot(vec![]));
    let PbxEvent::Recording {
        call_id,
        outcome: RecordingOutcome::Downloaded { path, .. },
    } = c.next().await
    else {
        panic!("expected the recording");
    };
    assert_eq!(call_id, AGENT_ID);
    assert_eq!(std::fs::read(path).unwrap(), fixture_bytes(WAV));
    c.stop().await;
}

#[tokio::test]
async fn a_recording_that_cannot_be_set_up_is_reported_failed_after_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    ari.refuse_snoops();
    let cfg = ari_config(dir.path(), &ari.url);
    let mut c = Connector::start(&cfg);
    let mut conn = ari.accept().await;
    c.connected().await;
    // Without the snoop, none of its events (nor the recording's) happen.
    let lines: Vec<String> = fixture_lines(BRIDGED)
        .into_iter()
        .filter(|l| !l.contains("cg-snoop-"))
        .collect();
    replay(&ari, &mut conn, &lines, AGENT_ID, false).await;
    let events = c.until(|e| matches!(e, PbxEvent::Recording { .. })).await;
    // The failure is a problem at once (whenever the snoop's answer came), and the outcome at
    // the call's end.
    let (problems, events): (Vec<_>, Vec<_>) = events
        .into_iter()
        .partition(|e| matches!(e, PbxEvent::Problem(_)));
    let [
        PbxEvent::CallStart(_),
        PbxEvent::CallEnd { .. },
        PbxEvent::Recording {
            outcome: RecordingOutcome::Failed { reason },
            ..
        },
    ] = events.as_slice()
    else {
        panic!("{events:#?}");
    };
    assert_eq!(
        reason,
        "the recording was never started: snoop on channel 1795354434.7: HTTP 404 from Asterisk: Channel not found"
    );
    let [PbxEvent::Problem(p)] = problems.as_slice() else {
        panic!("{problems:#?}");
    };
    assert_eq!(
        (p.kind.as_str(), p.call_id.as_deref()),
        ("pbx.recording", Some(AGENT_ID))
    );
    assert!(p.text.contains("NOT being recorded"), "{p:?}");
    assert!(p.text.contains("HTTP 404"), "{p:?}");
    c.stop().await;
}

/// The bridged call's lines without what only a running recording produces.
fn bridged_without_recording() -> Vec<String> {
    fixture_lines(BRIDGED)
        .into_iter()
        .filter(|l| !l.contains(r#""type":"Recording"#))
        .collect()
}

#[tokio::test]
async fn the_snoop_is_recorded_only_once_it_has_entered_the_application() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    ari.store("callguard/1795354434.7", fixture_bytes(WAV));
    // Wider than on the real Asterisk (about 2 ms), so a record sent on the snoop's 200 always
    // loses the race.
    ari.set_stasis_delay(Duration::from_millis(150));
    let cfg = ari_config(dir.path(), &ari.url);
    let mut c = Connector::start(&cfg);
    let mut conn = ari.accept().await;
    c.connected().await;
    replay(&ari, &mut conn, &fixture_lines(BRIDGED), AGENT_ID, true).await;
    let events = c.until(|e| matches!(e, PbxEvent::Recording { .. })).await;
    assert!(
        matches!(
            events.last(),
            Some(PbxEvent::Recording {
                outcome: RecordingOutcome::Downloaded { .. },
                ..
            })
        ),
        "{events:#?}"
    );
    assert!(
        !events.iter().any(|e| matches!(e, PbxEvent::Problem(_))),
        "{events:#?}"
    );
    let entered = ari
        .stasis_sent(&format!("cg-snoop-{AGENT_ID}"))
        .expect("the snoop entered the application");
    let records: Vec<_> = ari
        .requests()
        .into_iter()
        .filter(|s| s.path.ends_with("/record"))
        .collect();
    // One record, after the StasisStart, accepted at once.
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].status, 201);
    assert!(records[0].at >= entered);
    c.stop().await;
}

#[tokio::test]
async fn a_lost_stasis_start_still_gets_the_call_recorded_after_a_bounded_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    ari.store("callguard/1795354434.7", fixture_bytes(WAV));
    // The event never comes, and the snoop enters only after the connector stopped waiting
    // for it (2 s): its first tries are refused as not in Stasis and retried.
    ari.lose_stasis_events();
    ari.set_stasis_delay(Duration::from_millis(2300));
    let cfg = ari_config(dir.path(), &ari.url);
    let mut c = Connector::start(&cfg);
    let mut conn = ari.accept().await;
    c.connected().await;
    replay(&ari, &mut conn, &fixture_lines(BRIDGED), AGENT_ID, true).await;
    let events = c.until(|e| matches!(e, PbxEvent::Recording { .. })).await;
    assert!(
        matches!(
            events.last(),
            Some(PbxEvent::Recording {
                outcome: RecordingOutcome::Downloaded { .. },
                ..
            })
        ),
        "{events:#?}"
    );
    let statuses: Vec<u16> = ari
        .requests()
        .iter()
        .filter(|s| s.path.ends_with("/record"))
        .map(|s| s.status)
        .collect();
    assert_eq!(statuses.last(), Some(&201), "{statuses:?}");
    assert!(statuses.len() >= 2, "{statuses:?}");
    assert!(
        statuses[..statuses.len() - 1].iter().all(|s| *s == 409),
        "{statuses:?}"
    );
    c.stop().await;
}

#[tokio::test]
async fn a_record_refused_with_422_is_a_problem_at_once_and_the_outcome_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut ari = FakeAri::start(USER, PASSWORD).await;
    ari.refuse_records(422, "specified format is unknown on this system");
    let cfg = ari_config(dir.path(), &ari.url);
    let mut c = Connector::start(&cfg);
    let mut conn = ari.accept().await;
    c.connected().await;
    let lines = bridged_without_recording();
    let up = lines.iter().position(|l| is_up_of(l, AGENT_ID)).unwrap();
    replay(&ari, &mut conn, &lines[..=up], AGENT_ID, false).await;
    // While the call is still going on.
    let events = c.until(|e| matches!(e, PbxEvent::Problem(_))).await;
    let [PbxEvent::CallStart(_), PbxEvent::Problem(p)] = events.as_slice() else {
        panic!("{events:#?}");
    };
    assert_eq!(p.kind, "pbx.recording");
    assert_eq!(p.call_id.as_deref(), Some(AGENT_ID));
    assert!(p.text.contains("NOT being recorded"), "{p:?}");
    assert!(p.text.contains("HTTP 422"), "{p:?}");
    assert!(p.text.contains("format is unknown"), "{p:?}");
    replay(&ari, &mut conn, &lines[up + 1..], AGENT_ID, false).await;
    let events = c.until(|e| matches!(e, PbxEvent::Recording { .. })).await;
    let [
        PbxEvent::CallEnd { .. },
        PbxEvent::Recording {
            outcome: RecordingOutcome::Failed { reason },
            ..
        },
    ] = events.as_slice()
    else {
        panic!("{events:#?}");
    };
    assert!(
        reason.starts_with("the recording was never started"),
        "{reason}"
    );
    assert!(reason.contains("HTTP 422"), "{reason}");
    // One try: a 422 is not retried, and no download is attempted.
    let seen = ari.requests();
    assert_eq!(
        seen.iter().filter(|s| s.path.ends_with("/record")).count(),
        1,
        "{seen:?}"
    );
    assert!(seen.iter().all(|s| !s.path.starts_with("/ari/recordings")));
    c.stop().await;
}
