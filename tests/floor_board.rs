//! The board in headless Chromium (chromedriver + fantoccini) against the real floor binary and a
//! real nats-server: log in, see a call appear live after its `call.start` is published, press
//! 「対応します」 and see the ack on the agent's subject, see a silent workstation turn red, record
//! the organisation's conclusion on the caller page, and have a forged POST and an anonymous
//! request refused. Contract events are published by the test as workstations would.
//!
//! With `CALLGUARD_UPDATE_DOCS=1` the screenshots are written to `docs/` (README).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use callguard::floor::contract::{self, AckMessage, PbxState};
use common::browser::Browser;
use common::floor::{
    Floor, PASSWORD, Workstations, call_end, call_start, escalation, heartbeat, mark,
};
use common::nats::NatsServer;
use fantoccini::{Client, Locator};
use futures_util::StreamExt;

const WAIT: Duration = Duration::from_secs(30);

async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no `{css}` within {WAIT:?}: {e}"))
}

async fn wait_for_text(c: &Client, css: &str, text: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await
            && let Ok(t) = e.text().await
            && t.contains(text)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "`{css}` never showed `{text}`: {}",
            c.source().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn screenshot_dir() -> PathBuf {
    if std::env::var_os("CALLGUARD_UPDATE_DOCS").is_some() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs")
    } else {
        std::env::temp_dir().join("callguard-floor-screenshots")
    }
}

#[tokio::test]
async fn a_lead_follows_the_floor_in_a_real_browser() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    let floor = Floor::start(dir.path(), &nats.url(), &db, "").await;
    floor.add_user("tanaka", "田中", &["a", "b"], false);
    let ws = Workstations::connect(&nats.url()).await;
    ws.wait_for_stream().await;
    // Healthy workstations; 1002 beats every second and will go silent.
    ws.publish(&heartbeat("hb-1001", "1001", 30, PbxState::Up))
        .await;
    ws.publish(&heartbeat("hb-2001", "2001", 30, PbxState::Up))
        .await;

    let browser = Browser::start("ja").await;
    let c = &browser.client;
    c.goto(&format!("{}/", floor.url())).await.unwrap();
    // No session: the login form.
    wait_for(c, "#name")
        .await
        .send_keys("tanaka")
        .await
        .unwrap();
    c.find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Css("#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(c, "#board").await;
    // The live stream is up (the page says so) before the call starts.
    wait_for_text(c, "#live", "ライブ").await;

    // A call starts on a workstation: it appears on the board without a reload.
    let caller = "+81312345678";
    let published = Instant::now();
    ws.publish(&call_start("c1-start", "1001", "c1", caller))
        .await;
    wait_for(c, "tr[data-call='tokyo/1001/c1']").await;
    let appeared = published.elapsed();
    ws.publish(&mark("c1-mark", "1001", "c1", caller, 3, "ぶっ殺すぞ"))
        .await;
    wait_for_text(c, "tr[data-call='tokyo/1001/c1']", "ぶっ殺すぞ").await;
    wait_for(c, "tr.l3[data-call='tokyo/1001/c1']").await;

    // More of a floor for the screenshot: calls at other levels, one ended.
    ws.publish(&call_start("c2-start", "1002", "c2", "+81698765432"))
        .await;
    ws.publish(&mark(
        "c2-mark",
        "1002",
        "c2",
        "+81698765432",
        1,
        "いい加減にしろ",
    ))
    .await;
    ws.publish(&call_start("c3-start", "2001", "c3", "+81522223333"))
        .await;
    ws.publish(&call_start("c4-start", "2001", "c4", "+81455556666"))
        .await;
    ws.publish(&call_end("c4-end", "2001", "c4", "+81455556666", 420))
        .await;
    wait_for(c, "#ended tr[data-call='tokyo/2001/c4']").await;

    // The agent calls for help: 「対応します」 sends the ack to the agent's workstation.
    ws.publish(&escalation("c1-esc", "1001", "c1", caller, 3))
        .await;
    let mut acks = ws
        .client
        .subscribe(contract::ack_subject("tokyo", "1001"))
        .await
        .unwrap();
    let take = wait_for(c, "tr[data-call='tokyo/1001/c1'] button.take").await;
    assert_eq!(take.text().await.unwrap(), "対応します");
    take.click().await.unwrap();
    let msg = tokio::time::timeout(WAIT, acks.next())
        .await
        .expect("the ack within patience")
        .expect("an ack");
    let ack = AckMessage::from_json(&msg.payload).unwrap();
    assert_eq!((ack.call_id.as_str(), ack.lead.as_str()), ("c1", "田中"));
    wait_for_text(c, "tr[data-call='tokyo/1001/c1']", "対応中 田中").await;

    // A workstation goes silent: after two missed heartbeats its row turns red.
    ws.publish(&heartbeat("hb-1002", "1002", 1, PbxState::Up))
        .await;
    wait_for(c, "tr.ws.off[data-ws='tokyo/1002']").await;
    wait_for_text(c, "tr.ws.off[data-ws='tokyo/1002']", "保護停止").await;

    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(shots.join("floor-board.png"), &png).unwrap();

    // A forged POST (wrong CSRF token) from the page is refused.
    let status = c
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch('/ack', {method: 'POST', headers: {'Content-Type': \
             'application/x-www-form-urlencoded'}, body: 'csrf=forged&call=tokyo%2F1001%2Fc1'})\
             .then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, serde_json::json!(403));

    // The caller page: history across agents, and the organisation's conclusion.
    c.goto(&format!("{}/caller?key=%2B81312345678", floor.url()))
        .await
        .unwrap();
    wait_for(c, "#text")
        .await
        .send_keys("返金には応じない。結論は変わらない。")
        .await
        .unwrap();
    c.find(Locator::Css("#phrase"))
        .await
        .unwrap()
        .send_keys("先日お伝えしたとおり、結論は変わりません。")
        .await
        .unwrap();
    c.find(Locator::Css("#save"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(c, "#conclusion", "結論は変わりません").await;
    wait_for_text(c, "#conclusion", "田中").await;
    wait_for_text(c, "#calls", "ぶっ殺すぞ").await;
    let png = c.screenshot().await.unwrap();
    std::fs::write(shots.join("floor-caller.png"), &png).unwrap();

    // No session, no data.
    let anon = reqwest::get(format!("{}/api/board", floor.url()))
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);

    eprintln!("call.start → row in the DOM: {appeared:?}");
    browser.close().await;
}
