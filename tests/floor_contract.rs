//! The floor bus contract against a real `nats-server` (JetStream): the stream as the floor
//! creates it dedupes by `Nats-Msg-Id`, keeps events across a server kill and restart, and does
//! not swallow the request/reply subjects (history, ledger head).

mod common;

use std::time::Duration;

use async_nats::jetstream;
use callguard::floor::contract::{self, EventKind};
use common::nats::NatsServer;
use futures_util::StreamExt;

async fn create_stream(js: &jetstream::Context) -> jetstream::stream::Stream {
    js.create_stream(jetstream::stream::Config {
        name: contract::STREAM.into(),
        subjects: contract::stream_subjects(),
        storage: jetstream::stream::StorageType::File,
        duplicate_window: contract::DUPLICATE_WINDOW,
        ..Default::default()
    })
    .await
    .expect("create the CALLGUARD stream")
}

#[tokio::test]
async fn stream_dedupes_by_msg_id_and_survives_a_server_kill() {
    let mut server = NatsServer::start().await;
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client);
    create_stream(&js).await;

    let subject = contract::event_subject("tokyo-1", "1001", EventKind::CallStart);
    for _ in 0..2 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(contract::MSG_ID_HEADER, "id-1");
        let ack = js
            .publish_with_headers(subject.clone(), headers, "{}".into())
            .await
            .expect("publish")
            .await
            .expect("puback");
        assert_eq!(ack.stream, contract::STREAM);
    }
    let mut stream = js.get_stream(contract::STREAM).await.expect("stream");
    let messages = stream.info().await.expect("info").state.messages;
    assert_eq!(messages, 1, "the duplicate was not dropped");

    server.restart().await;
    let client = async_nats::connect(server.url()).await.expect("reconnect");
    let js = jetstream::new(client);
    let mut stream = js
        .get_stream(contract::STREAM)
        .await
        .expect("stream after restart");
    assert_eq!(stream.info().await.expect("info").state.messages, 1);
    let msg = stream.get_raw_message(1).await.expect("message 1");
    assert_eq!(msg.subject.as_str(), subject);
}

#[tokio::test]
async fn requests_reach_the_responder_not_the_stream() {
    let server = NatsServer::start().await;
    let client = async_nats::connect(server.url()).await.expect("connect");
    let js = jetstream::new(client.clone());
    create_stream(&js).await;

    for subject in [
        contract::history_subject("tokyo-1"),
        contract::ledger_head_subject("tokyo-1"),
    ] {
        let mut sub = client.subscribe(subject.clone()).await.expect("subscribe");
        let responder = client.clone();
        let task = tokio::spawn(async move {
            if let Some(req) = sub.next().await
                && let Some(reply) = req.reply
            {
                responder
                    .publish(reply, "from-the-floor".into())
                    .await
                    .expect("reply");
            }
        });
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            client.request(subject.clone(), "{}".into()),
        )
        .await
        .expect("no reply in time")
        .expect("request");
        assert_eq!(&answer.payload[..], b"from-the-floor", "{subject}");
        task.await.expect("responder");
    }
    let mut stream = js.get_stream(contract::STREAM).await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 0);
}
