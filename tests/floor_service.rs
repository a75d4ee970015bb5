//! `callguard floor` as a process against a real nats-server (JetStream): restart at any time
//! without losing or double-counting events, the history and ledger-head replies from the store,
//! leads' acks back to the workstation, sessions/CSRF/visibility/audit over HTTP, and two
//! instances on one PostgreSQL sharing the consumer and pinging once about a dead workstation.

mod common;

use async_nats::jetstream;
use callguard::floor::contract::{
    self, AckMessage, CallerRef, EventBody, HistoryReply, HistoryRequest, LedgerHeadReply,
    LedgerHeadRequest, PbxState, SCHEMA,
};
use callguard::floor::service::store::{Store, call_key};
use common::floor::{
    Floor, Session, Workstations, call_end, call_start, escalation, event, eventually, heartbeat,
    login_status, mark,
};
use common::http::Receiver;
use common::nats::NatsServer;
use common::postgres::PgCluster;
use futures_util::StreamExt;

async fn count(store: &Store, n: i64) -> Option<()> {
    (store.event_count().await.ok()? == n).then_some(())
}

#[tokio::test]
async fn a_floor_killed_at_any_time_resumes_without_loss_or_double_counting() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    let mut floor = Floor::start(dir.path(), &nats.url(), &db, "").await;
    let ws = Workstations::connect(&nats.url()).await;
    ws.wait_for_stream().await;
    let store = Store::open(&db).await.unwrap();

    let caller = |i: u32| format!("+8130000{i:04}");
    for i in 0..20u32 {
        let call = format!("c{i}");
        ws.publish(&call_start(&format!("s{i}"), "1001", &call, &caller(i)))
            .await;
        ws.publish(&mark(
            &format!("m{i}"),
            "1001",
            &call,
            &caller(i),
            2,
            "ふざけるな",
        ))
        .await;
    }
    eventually("40 events stored", || count(&store, 40)).await;

    // Killed; the workstations go on publishing; some events arrive twice under other message
    // ids (a workstation that lost its confirmation past the server's dedupe window).
    floor.kill9();
    for i in 0..20u32 {
        let call = format!("c{i}");
        ws.publish(&call_end(&format!("e{i}"), "1001", &call, &caller(i), 300))
            .await;
    }
    for i in 0..5u32 {
        let again = mark(
            &format!("m{i}"),
            "1001",
            &format!("c{i}"),
            &caller(i),
            2,
            "ふざけるな",
        );
        ws.publish_as(&again, &format!("retry-{i}")).await;
    }
    floor.restart().await;
    eventually("60 distinct events stored", || count(&store, 60)).await;
    for i in 0..20u32 {
        let c = store
            .call(&call_key("tokyo", "1001", &format!("c{i}")))
            .await
            .unwrap()
            .expect("call stored");
        assert!(c.ended_ms.is_some(), "call c{i} ended");
        assert_eq!(c.marks, 1, "call c{i}: a duplicate mark is not counted");
        assert_eq!(c.level, 2);
    }
    // The consumer acknowledged everything: nothing left pending on the server.
    let js = jetstream::new(ws.client.clone());
    let mut stream = js.get_stream(contract::STREAM).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 65);
    let consumer: jetstream::consumer::PullConsumer =
        stream.get_consumer("callguard-floor").await.unwrap();
    eventually("the consumer has nothing pending", || {
        let mut consumer = consumer.clone();
        async move {
            let info = consumer.info().await.ok()?;
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn history_ledger_head_acks_sessions_and_audit() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    let floor = Floor::start(dir.path(), &nats.url(), &db, "").await;
    floor.add_user("tanaka", "田中", &["a"], false);
    floor.add_user("kimura", "木村", &["b"], false);
    floor.add_user("admin", "管理者", &[], true);
    let ws = Workstations::connect(&nats.url()).await;
    ws.wait_for_stream().await;
    let store = Store::open(&db).await.unwrap();
    let caller = "+81312345678";

    // A past call with a threat, and one in progress with an escalation.
    ws.publish(&call_start("p1", "1001", "old", caller)).await;
    ws.publish(&mark("p2", "1001", "old", caller, 3, "殺すぞ"))
        .await;
    ws.publish(&call_end("p3", "1001", "old", caller, 600))
        .await;
    ws.publish(&call_start("n1", "1002", "now", caller)).await;
    ws.publish(&escalation("n2", "1002", "now", caller, 1))
        .await;
    eventually("5 events", || count(&store, 5)).await;

    // No session: no page, no API, no SSE.
    let anon = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = anon.get(format!("{}/", floor.url())).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    for path in ["/api/board", "/events"] {
        let r = anon
            .get(format!("{}{path}", floor.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = anon
        .post(format!("{}/ack", floor.url()))
        .form(&[("csrf", "x"), ("call", "tokyo/1002/now")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Visibility: team a sees 1001 and 1002, team b sees neither.
    let lead = Session::login(&floor.url(), "tanaka").await;
    let other = Session::login(&floor.url(), "kimura").await;
    let b = lead.board().await;
    assert_eq!(b["calls"].as_array().unwrap().len(), 2, "{b}");
    assert_eq!(other.board().await["calls"].as_array().unwrap().len(), 0);
    let r = other.get("/call?key=tokyo%2F1002%2Fnow").await;
    assert_eq!(r.status(), 403);

    // The ack: a bad CSRF token is refused; the right one reaches the agent's subject.
    let mut acks = ws
        .client
        .subscribe(contract::ack_subject("tokyo", "1002"))
        .await
        .unwrap();
    let r = lead
        .post("/ack", &[("csrf", "0000"), ("call", "tokyo/1002/now")])
        .await;
    assert_eq!(r.status(), 403, "bad CSRF");
    let r = lead
        .post("/ack", &[("csrf", &lead.csrf), ("call", "tokyo/1002/now")])
        .await;
    assert_eq!(r.status(), 303);
    let msg = tokio::time::timeout(common::floor::PATIENCE, acks.next())
        .await
        .expect("the ack within patience")
        .expect("an ack message");
    let ack = AckMessage::from_json(&msg.payload).unwrap();
    assert_eq!((ack.call_id.as_str(), ack.lead.as_str()), ("now", "田中"));
    assert_eq!(ack.escalation_id.as_deref(), Some("esc-n2"));
    let b = lead.board().await;
    assert_eq!(b["acks"][0]["lead"], "田中");

    // A forged conclusion and a forged logout are refused as the forged ack was.
    let r = lead
        .post(
            "/caller/conclusion",
            &[
                ("csrf", "0000"),
                ("key", caller),
                ("text", "forged"),
                ("phrase", "forged"),
            ],
        )
        .await;
    assert_eq!(r.status(), 403, "bad CSRF on the conclusion");
    let r = lead.post("/logout", &[("csrf", "0000")]).await;
    assert_eq!(r.status(), 403, "bad CSRF on the logout");
    assert_eq!(lead.board().await["calls"].as_array().unwrap().len(), 2);

    // The organisation's conclusion, recorded on the caller page, then answered to a daemon.
    let r = lead
        .post(
            "/caller/conclusion",
            &[
                ("csrf", &lead.csrf),
                ("key", caller),
                ("text", "返金には応じない。決定は変わらない。"),
                ("phrase", "先日お伝えしたとおり、結論は変わりません。"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let page = lead
        .get("/caller?key=%2B81312345678")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("結論は変わりません") && page.contains("殺すぞ"),
        "{page}"
    );
    let req = HistoryRequest {
        schema: SCHEMA.into(),
        site: "tokyo".into(),
        agent: "2001".into(),
        host: "ws-2001".into(),
        call_id: Some("next".into()),
        caller: CallerRef {
            caller: Some(caller.into()),
            caller_hash: None,
        },
    };
    let reply = ws
        .client
        .request(contract::history_subject("tokyo"), req.to_json().into())
        .await
        .expect("a history reply");
    let h = HistoryReply::from_json(&reply.payload).unwrap();
    assert!(h.known);
    assert_eq!((h.calls_30d, h.calls_365d), (2, 2));
    assert_eq!(h.highest_level, Some(3));
    assert_eq!(h.last_marks[0].quote.as_deref(), Some("殺すぞ"));
    let c = h.conclusion.expect("the conclusion");
    assert_eq!(c.phrase, "先日お伝えしたとおり、結論は変わりません。");
    assert_eq!((c.by.as_str(), c.version), ("田中", 1));

    // An unknown caller: known = false.
    let unknown = HistoryRequest {
        caller: CallerRef {
            caller: Some("+81399999999".into()),
            caller_hash: None,
        },
        ..req
    };
    let reply = ws
        .client
        .request(contract::history_subject("tokyo"), unknown.to_json().into())
        .await
        .unwrap();
    assert!(!HistoryReply::from_json(&reply.payload).unwrap().known);

    // The ledger head: the highest line the floor has seen.
    for seq in [1u64, 2, 3] {
        let ev = event(
            &format!("l{seq}"),
            "1001",
            None,
            None,
            None,
            None,
            EventBody::Ledger {
                seq,
                manifest_sha256: format!("m{seq}"),
                line_sha256: format!("h{seq}"),
                prev: String::new(),
                dir: String::new(),
                public_key: String::new(),
            },
        );
        ws.publish(&ev).await;
    }
    eventually("ledger lines stored", || count(&store, 8)).await;
    let req = LedgerHeadRequest {
        schema: SCHEMA.into(),
        site: "tokyo".into(),
        agent: "1001".into(),
        host: "ws-1001".into(),
    };
    let reply = ws
        .client
        .request(contract::ledger_head_subject("tokyo"), req.to_json().into())
        .await
        .unwrap();
    let head = LedgerHeadReply::from_json(&reply.payload).unwrap();
    assert!(head.known);
    assert_eq!(
        (head.seq, head.line_sha256.as_deref()),
        (Some(3), Some("h3"))
    );

    // The audit log: the ack, the caller view and the conclusion; admins only.
    assert_eq!(lead.get("/audit").await.status(), 403);
    let admin = Session::login(&floor.url(), "admin").await;
    let audit = admin.get("/audit").await.text().await.unwrap();
    for action in ["ack", "view.caller", "conclusion", "login"] {
        assert!(
            audit.contains(&format!("<td>{action}</td>")),
            "{action}: {audit}"
        );
    }
    assert_eq!(admin.board().await["calls"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn two_instances_share_one_postgresql_and_ping_once_about_a_dead_workstation() {
    let pg = PgCluster::start();
    let db = pg.database("floor_two").await;
    let nats = NatsServer::start().await;
    let mut hook = Receiver::start(vec![]).await;
    let extra = format!("[[escalation.webhook]]\nurl = \"{}\"\n", hook.url("/hook"));
    let dir = tempfile::tempdir().unwrap();
    let a = Floor::start(&dir.path().join("a"), &nats.url(), &db, &extra).await;
    let b = Floor::start(&dir.path().join("b"), &nats.url(), &db, &extra).await;
    a.add_user("tanaka", "田中", &["a", "b"], false);
    let ws = Workstations::connect(&nats.url()).await;
    ws.wait_for_stream().await;
    let store = Store::open(&db).await.unwrap();

    for i in 0..50u32 {
        let caller = format!("+8190000{i:04}");
        ws.publish(&call_start(
            &format!("s{i}"),
            "2001",
            &format!("k{i}"),
            &caller,
        ))
        .await;
        ws.publish(&mark(
            &format!("m{i}"),
            "2001",
            &format!("k{i}"),
            &caller,
            1,
            "q",
        ))
        .await;
    }
    eventually("100 events stored once", || count(&store, 100)).await;
    let (sa, sb) = (
        Session::login(&a.url(), "tanaka").await,
        Session::login(&b.url(), "tanaka").await,
    );
    for s in [&sa, &sb] {
        let board = s.board().await;
        let calls = board["calls"].as_array().unwrap();
        assert_eq!(calls.len(), 50);
        assert!(calls.iter().all(|c| c["marks"] == 1));
    }
    // An ack taken on A shows on B (it travels through the stream).
    let r = sa
        .post("/ack", &[("csrf", &sa.csrf), ("call", "tokyo/2001/k7")])
        .await;
    assert_eq!(r.status(), 303);
    eventually("B shows A's ack", || {
        let sb = &sb;
        async move {
            let b = sb.board().await;
            (b["acks"].as_array()?.len() == 1).then_some(())
        }
    })
    .await;

    // A workstation beating every second goes silent: one ping between the two instances.
    ws.publish(&heartbeat("h1", "1002", 1, PbxState::Up)).await;
    let first = hook.next().await;
    let text = first.json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(text.contains("ws-1002"), "{text}");
    // Another one loses its PBX link; its ping comes after the fleet was checked again by both
    // instances, and the silent one was not pinged a second time.
    ws.publish(&heartbeat("h2", "2001", 30, PbxState::Down))
        .await;
    let second = hook.next().await;
    let text = second.json()["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(text.contains("ws-2001") && text.contains("PBX"), "{text}");
    assert_eq!(hook.requests(), 2, "one ping per outage");
    let ws_rows = store.workstations().await.unwrap();
    assert!(ws_rows.iter().all(|w| w.pinged_ms.is_some()));
    drop((a, b));
}

#[tokio::test]
async fn sigterm_stops_the_floor_also_when_nats_is_gone() {
    let mut nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    let mut floor = Floor::start(dir.path(), &nats.url(), &db, "").await;
    let ws = Workstations::connect(&nats.url()).await;
    ws.wait_for_stream().await;
    let status = floor.terminate().await;
    assert!(status.success(), "{status}:\n{}", floor.log());

    // NATS stopped first (as with Ctrl-C in a terminal): the floor still stops, at once.
    floor.restart().await;
    nats.kill();
    let status = floor.terminate().await;
    assert!(status.success(), "{status}:\n{}", floor.log());
}

/// Publishes `ev` on the subject of workstation `agent`, whatever its body says (as a
/// workstation's own credentials allow it to).
async fn publish_on(ws: &Workstations, agent: &str, ev: &contract::FloorEvent) {
    let mut h = async_nats::HeaderMap::new();
    h.insert(contract::MSG_ID_HEADER, ev.id.as_str());
    ws.js
        .publish_with_headers(ev.subject("tokyo", agent), h, ev.to_json().into())
        .await
        .expect("publish")
        .await
        .expect("PubAck");
}

#[tokio::test]
async fn a_workstation_speaks_only_for_itself() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    let _floor = Floor::start(dir.path(), &nats.url(), &db, "").await;
    let ws = Workstations::connect(&nats.url()).await;
    ws.wait_for_stream().await;
    let store = Store::open(&db).await.unwrap();

    ws.publish(&call_start("s1", "1001", "c-own", "+81312345678"))
        .await;
    eventually("1001's call", || count(&store, 1)).await;
    // 1002, on its own subject: ends 1001's call, marks 1001 alive, moves nothing of 1001's.
    publish_on(
        &ws,
        "1002",
        &call_end("f1", "1001", "c-own", "+81312345678", 5),
    )
    .await;
    publish_on(&ws, "1002", &heartbeat("f2", "1001", 30, PbxState::Up)).await;
    // Then 1002's own heartbeat: once it is stored, the forged ones were handled before it.
    publish_on(&ws, "1002", &heartbeat("g1", "1002", 30, PbxState::Up)).await;
    eventually("1002's heartbeat", || count(&store, 2)).await;

    let call = store
        .call(&call_key("tokyo", "1001", "c-own"))
        .await
        .unwrap()
        .expect("1001's call");
    assert_eq!(call.ended_ms, None, "another workstation ended 1001's call");
    assert_eq!(call.ws_agent, "1001");
    let agents: Vec<String> = store
        .workstations()
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.agent)
        .collect();
    assert_eq!(agents, vec!["1002"], "1002 marked 1001 alive");
}

#[tokio::test]
async fn logins_sent_at_once_cannot_pass_the_limit_together() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    let floor = Floor::start(dir.path(), &nats.url(), &db, "").await;
    floor.add_user("tanaka", "田中", &["a"], false);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (cookie, csrf) = common::floor::login_form(&http, &floor.url()).await;
    // Twelve wrong passwords at once: each takes the server about half a second to check.
    let tries = (0..12).map(|_| {
        let (http, url, cookie, csrf) = (http.clone(), floor.url(), cookie.clone(), csrf.clone());
        async move {
            http.post(format!("{url}/login"))
                .header("cookie", format!("cg_login={cookie}"))
                .form(&[
                    ("name", "tanaka"),
                    ("password", "wrong wrong"),
                    ("csrf", &csrf),
                ])
                .send()
                .await
                .expect("POST /login")
                .status()
                .as_u16()
        }
    });
    let mut codes = futures_util::future::join_all(tries).await;
    codes.sort();
    assert_eq!(
        codes,
        [[401; 5].as_slice(), &[429; 7]].concat(),
        "{codes:?}"
    );
}

/// Reads a board's live stream until an event named `name` (or fails the test after 20 s:
/// the stream checks its session every few seconds).
async fn sse_until(live: &mut reqwest::Response, name: &str) {
    let want = format!("event: {name}\n");
    let mut seen = String::new();
    let read = async {
        loop {
            match live.chunk().await {
                Ok(Some(c)) => {
                    seen.push_str(&String::from_utf8_lossy(&c));
                    if seen.contains(&want) {
                        return true;
                    }
                }
                _ => return false,
            }
        }
    };
    let got = tokio::time::timeout(std::time::Duration::from_secs(20), read).await;
    assert!(
        matches!(got, Ok(true)),
        "no `{name}` event on the live stream"
    );
}

#[tokio::test]
async fn accounts_are_listed_and_their_sessions_ended_from_the_command_line() {
    let nats = NatsServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    let floor = Floor::start(dir.path(), &nats.url(), &db, "").await;
    floor.add_user("tanaka", "田中", &["a"], false);
    floor.add_user("admin", "管理者", &[], true);
    let base = floor.url();
    async fn board(s: &Session) -> u16 {
        s.get("/api/board").await.status().as_u16()
    }

    let s1 = Session::login(&base, "tanaka").await;
    let (ok, out, err) = floor.user(&["list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("tanaka\t田中\tlead\tteams: a\tsessions: 1")
            && out.contains("admin\t管理者\tadmin\tteams: -\tsessions: 0"),
        "{out}"
    );

    // A lead made admin, then lead of other teams again: the open session follows at its
    // next page, with no new login.
    async fn audit(s: &Session) -> u16 {
        s.get("/audit").await.status().as_u16()
    }
    assert_eq!(audit(&s1).await, 403);
    let mut live = s1.get("/events").await;
    sse_until(&mut live, "board").await;
    let (ok, out, err) = floor.user(&["set", "tanaka", "--admin"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("user tanaka: admin; teams: a; shown as 田中"),
        "{out}"
    );
    assert_eq!(audit(&s1).await, 200);
    // The board already open gets the whole board again, as its account may now see it.
    sse_until(&mut live, "board").await;
    drop(live);
    let (ok, out, err) = floor.user(&[
        "set",
        "tanaka",
        "--lead",
        "--team",
        "b",
        "--team",
        " c,b",
        "--display-name",
        "田中 太郎",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("user tanaka: lead; teams: b, c; shown as 田中 太郎"),
        "{out}"
    );
    assert_eq!(audit(&s1).await, 403);
    assert_eq!(board(&s1).await, 200);
    let (_, out, _) = floor.user(&["list"]);
    assert!(
        out.contains("tanaka\t田中 太郎\tlead\tteams: b, c\tsessions: 1"),
        "{out}"
    );
    // Refused, and nothing changed: a lead with no team, nothing asked, no such account.
    let (ok, _, err) = floor.user(&["set", "admin", "--lead"]);
    assert!(!ok && err.contains("at least one --team"), "{err}");
    let (ok, _, err) = floor.user(&["set", "admin", "--lead", "--team", " ", "--team", ","]);
    assert!(!ok && err.contains("at least one --team"), "{err}");
    let (ok, _, err) = floor.user(&["set", "tanaka"]);
    assert!(!ok && err.contains("nothing to change"), "{err}");
    let (ok, _, err) = floor.user(&["set", "nobody", "--admin"]);
    assert!(
        !ok && err.contains("no board account named \"nobody\""),
        "{err}"
    );
    let (_, out, _) = floor.user(&["list"]);
    assert!(out.contains("admin\t管理者\tadmin\tteams: -"), "{out}");

    // A lost laptop: every session of the account ends at once, the live board's too.
    let mut live = s1.get("/events").await;
    sse_until(&mut live, "board").await;
    let (ok, out, err) = floor.user(&["logout", "tanaka"]);
    assert!(ok && out.contains("1 session(s) ended"), "{out}{err}");
    assert_eq!(board(&s1).await, 401);
    sse_until(&mut live, "ended").await;

    // A new password ends the sessions too, and the old one no longer logs in.
    let s2 = Session::login(&base, "tanaka").await;
    assert_eq!(board(&s2).await, 200);
    let pw = dir.path().join("new-pw");
    std::fs::write(&pw, "a new password 42\n").unwrap();
    let (ok, _, err) = floor.user(&["passwd", "tanaka", "--password-file", pw.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(board(&s2).await, 401);
    assert_eq!(
        login_status(&base, "tanaka", common::floor::PASSWORD).await,
        401
    );
    let s3 = Session::login_with(&base, "tanaka", "a new password 42").await;
    assert_eq!(board(&s3).await, 200);
    std::fs::write(&pw, "short\n").unwrap();
    let (ok, _, err) = floor.user(&["passwd", "tanaka", "--password-file", pw.to_str().unwrap()]);
    assert!(!ok && err.contains("password"), "{err}");

    // Removed: no session, no login; a name that does not exist says so.
    let (ok, _, err) = floor.user(&["remove", "tanaka"]);
    assert!(ok, "{err}");
    assert_eq!(board(&s3).await, 401);
    assert_eq!(
        login_status(&base, "tanaka", "a new password 42").await,
        401
    );
    let (ok, _, err) = floor.user(&["remove", "tanaka"]);
    assert!(
        !ok && err.contains("no board account named \"tanaka\""),
        "{err}"
    );
    let (ok, _, err) = floor.user(&["logout", "nobody"]);
    assert!(!ok && err.contains("nobody"), "{err}");
}
