//! The server configuration shipped in deploy/nats/ enforces DESIGN's "who may do what" on a
//! real `nats-server`: workstation users are made by deploy/nats/add-workstation.sh, and
//! workstation 1001 (connected the way the daemon connects) cannot publish as 1002, cannot read
//! 1002's acks, cannot fake an ack, and cannot create, delete or purge the stream; what it may
//! do (publish its own events, read its own acks) works, so every refusal is a real one.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use callguard::floor::config::FloorConfig;
use callguard::floor::contract::{self, EventKind};
use callguard::floor::link::{ConnectMode, Link};
use common::nats::NatsServer;
use futures_util::StreamExt;

const SITE: &str = "tokyo-1";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats")
}

/// users.conf as shipped, with the floor's password replaced and the example workstation
/// blocks replaced by blocks the script makes for 1001 and 1002.
fn users_conf(dir: &Path) -> (String, String) {
    let shipped = std::fs::read_to_string(deploy().join("users.conf")).expect("users.conf");
    let marker = "  # One block per workstation";
    let head = shipped
        .split(marker)
        .next()
        .expect("users.conf has the workstation marker");
    assert_ne!(
        head.len(),
        shipped.len(),
        "users.conf lost its workstation marker"
    );
    let floor_password = "floor-test-password-7f3a";
    let mut conf = head.replace("change-me-floor", floor_password);
    for agent in ["1001", "1002"] {
        let out = std::process::Command::new(deploy().join("add-workstation.sh"))
            .args([SITE, agent])
            .arg(dir.join(format!("{agent}.password")))
            .output()
            .expect("run add-workstation.sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        conf.push_str(&String::from_utf8(out.stdout).expect("utf-8 block"));
    }
    conf.push_str("]\n");
    (conf, floor_password.to_string())
}

fn workstation(server: &NatsServer, dir: &Path, agent: &str) -> FloorConfig {
    FloorConfig {
        nats_url: server.url(),
        site: SITE.into(),
        user: format!("{SITE}.{agent}"),
        password_file: dir.join(format!("{agent}.password")).display().to_string(),
        ..FloorConfig::default()
    }
}

fn short_js(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(client)
}

#[tokio::test]
async fn a_workstation_can_act_only_as_itself() {
    let keys = tempfile::tempdir().expect("temp dir");
    let (users, floor_password) = users_conf(keys.path());
    let main = std::fs::read_to_string(deploy().join("callguard.conf")).expect("callguard.conf");
    let server = NatsServer::start_with_files(&main, &[("users.conf", &users)]).await;

    // The floor creates the stream (a workstation cannot, see below).
    let floor = async_nats::ConnectOptions::with_user_and_password("floor".into(), floor_password)
        .connect(server.url())
        .await
        .expect("floor connects");
    let floor_js = jetstream::new(floor.clone());
    let mut stream = floor_js
        .create_stream(jetstream::stream::Config {
            name: contract::STREAM.into(),
            subjects: contract::stream_subjects(),
            duplicate_window: contract::DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .expect("the floor user creates the stream");

    let ws1 = Link::connect(
        &workstation(&server, keys.path(), "1001"),
        "1001",
        "ws-1001",
        ConnectMode::Once,
    )
    .await
    .expect("1001 connects with its password file");
    let ws2 = Link::connect(
        &workstation(&server, keys.path(), "1002"),
        "1002",
        "ws-1002",
        ConnectMode::Once,
    )
    .await
    .expect("1002 connects");

    // Allowed: its own events, and asking whether the stream exists.
    ws1.publish(
        contract::event_subject(SITE, "1001", EventKind::Heartbeat),
        "own-1",
        b"{}".to_vec(),
    )
    .await
    .expect("1001 publishes its own event");
    ws1.check_stream()
        .await
        .expect("1001 may look the stream up");

    // Refused: publishing as 1002, and faking an ack to itself.
    for (subject, id) in [
        (
            contract::event_subject(SITE, "1002", EventKind::CallStart),
            "as-1002",
        ),
        (contract::ack_subject(SITE, "1001"), "fake-ack"),
    ] {
        let r = ws1.publish(subject.clone(), id, b"{}".to_vec()).await;
        assert!(r.is_err(), "1001 could publish on {subject}");
    }
    let seen = ws1.status().snapshot().last_error.unwrap_or_default();
    assert!(
        seen.to_lowercase().contains("permissions violation"),
        "the server did not report a permissions violation: {seen:?}"
    );
    assert_eq!(
        stream.info().await.expect("info").state.messages,
        1,
        "only 1001's own event is in the stream"
    );

    // Refused: reading 1002's acks. The floor sends an ack to 1002 and then one to 1001 on one
    // connection; 1001 gets its own, by which time 1002's would have arrived if it could.
    let mut spy = ws1
        .client()
        .subscribe(contract::ack_subject(SITE, "1002"))
        .await
        .expect("the client accepts the subscription (the server refuses it)");
    let mut own = ws1.subscribe_acks().await.expect("own acks");
    let mut victim = ws2.subscribe_acks().await.expect("1002's acks");
    // A round trip on each connection: the server has taken their subscriptions before the
    // floor publishes (a flush only empties the client's buffer).
    ws1.check_stream().await.expect("round trip");
    ws2.check_stream().await.expect("round trip");
    floor
        .publish(contract::ack_subject(SITE, "1002"), "for-1002".into())
        .await
        .expect("ack to 1002");
    floor
        .publish(contract::ack_subject(SITE, "1001"), "for-1001".into())
        .await
        .expect("ack to 1001");
    floor.flush().await.expect("flush");
    let got = tokio::time::timeout(Duration::from_secs(30), own.next())
        .await
        .expect("1001 receives its own ack")
        .expect("subscription open");
    assert_eq!(&got.payload[..], b"for-1001");
    let got = tokio::time::timeout(Duration::from_secs(30), victim.next())
        .await
        .expect("1002 receives its ack")
        .expect("subscription open");
    assert_eq!(&got.payload[..], b"for-1002");
    assert!(
        futures_util::FutureExt::now_or_never(spy.next())
            .flatten()
            .is_none(),
        "1001 read 1002's ack"
    );

    // Refused: deleting, purging or creating streams. (The two acks are in the stream too.)
    let before = stream.info().await.expect("info").state.messages;
    assert_eq!(before, 3);
    let js1 = short_js(ws1.client().clone());
    assert!(
        js1.delete_stream(contract::STREAM).await.is_err(),
        "1001 deleted the stream"
    );
    let st1 = js1
        .get_stream(contract::STREAM)
        .await
        .expect("1001 may look the stream up");
    assert!(st1.purge().await.is_err(), "1001 purged the stream");
    assert!(
        js1.create_stream(jetstream::stream::Config {
            name: "EVIL".into(),
            subjects: vec!["evil.>".into()],
            ..Default::default()
        })
        .await
        .is_err(),
        "1001 created a stream"
    );
    let info = stream
        .info()
        .await
        .expect("the stream is still there")
        .clone();
    assert_eq!(info.state.messages, before, "the stream lost messages");
    assert!(floor_js.get_stream("EVIL").await.is_err());
}
