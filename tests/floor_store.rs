//! The floor's store: one suite, run on SQLite in a temp dir and on PostgreSQL in a temp cluster
//! (`initdb` + `pg_ctl`): events counted once, calls, marks, escalations, acks, workstations'
//! health, versioned conclusions, accounts, sessions, the append-only audit and ledger heads;
//! then two stores on one database applying the same events at once, batches of bus messages
//! stored in one transaction, and (SQLite) several floors migrating one new file at once.

mod common;

use callguard::floor::service::store::{
    AckRow, Applied, BusAck, BusWrite, EventRecord, SessionRow, Store, UserRow, call_key,
};
use common::postgres::PgCluster;

const T0: i64 = 1_790_000_000_000;

fn ev(id: &str, kind: &str, agent: &str, call: Option<&str>, at: i64) -> EventRecord {
    EventRecord {
        id: id.into(),
        kind: kind.into(),
        site: "tokyo".into(),
        agent: agent.into(),
        agent_name: format!("Agent {agent}"),
        host: format!("ws-{agent}"),
        call_id: call.map(String::from),
        caller: Some("+81312345678".into()),
        at_ms: at,
        body: format!("{{\"id\":\"{id}\"}}"),
        ..EventRecord::default()
    }
}

fn mark(id: &str, call: &str, at: i64, level: i64, quote: &str) -> EventRecord {
    EventRecord {
        mark: Some("threat".into()),
        quote: Some(quote.into()),
        level: Some(level),
        rules: vec!["threat".into()],
        elapsed_secs: Some(60),
        ..ev(id, "mark", "1001", Some(call), at)
    }
}

fn heartbeat(id: &str, agent: &str, at: i64, pbx_up: bool) -> EventRecord {
    EventRecord {
        pbx_up: Some(pbx_up),
        interval_secs: Some(30),
        open_calls: Some(1),
        version: Some("0.1.0".into()),
        caller: None,
        ..ev(id, "heartbeat", agent, None, at)
    }
}

/// What one workstation's messages cannot do to another's rows, and numbers no arithmetic of
/// the store may overflow on.
async fn hostile(store: &Store) {
    // A call is spoken for by the workstation that reported it first.
    let own = EventRecord {
        ws_agent: "1003".into(),
        ..ev("x1", "call.start", "1003", Some("c9"), T0)
    };
    assert_eq!(store.apply(&own, T0).await.unwrap(), Applied::New);
    let forged = EventRecord {
        ws_agent: "1004".into(),
        host: "evil".into(),
        ..ev("x2", "call.end", "1003", Some("c9"), T0 + 1_000)
    };
    assert_eq!(
        store.apply(&forged, T0 + 1_000).await.unwrap(),
        Applied::Refused
    );
    let c9 = store
        .call(&call_key("tokyo", "1003", "c9"))
        .await
        .unwrap()
        .expect("call c9");
    assert_eq!(c9.ended_ms, None, "another workstation ended the call");
    assert_eq!(
        (c9.host.as_str(), c9.ws_agent.as_str()),
        ("ws-1003", "1003")
    );
    let own_end = EventRecord {
        ws_agent: "1003".into(),
        ..ev("x3", "call.end", "1003", Some("c9"), T0 + 2_000)
    };
    assert_eq!(
        store.apply(&own_end, T0 + 2_000).await.unwrap(),
        Applied::New
    );

    // An elapsed time of 9.3e15 s does not overflow the start's estimate.
    let absurd = EventRecord {
        ws_agent: "1003".into(),
        elapsed_secs: Some(i64::MAX / 1000 + 1),
        ..ev("x4", "mark", "1003", Some("c10"), T0)
    };
    assert_eq!(store.apply(&absurd, T0).await.unwrap(), Applied::New);

    // A heartbeat from 2099 is seen when it arrived, so the workstation still goes silent;
    // an absurd interval does not overflow the silence limit.
    let future = heartbeat("x5", "1005", 4_070_908_800_000, true);
    store.apply(&future, T0).await.unwrap();
    let huge = EventRecord {
        interval_secs: Some(i64::MAX),
        ..heartbeat("x6", "1006", T0, true)
    };
    store.apply(&huge, T0).await.unwrap();
    // Another workstation's ledger line naming 1001 is stored, but 1001's head stays.
    let before = store.ledger_head("tokyo", "1001").await.unwrap();
    let forged = EventRecord {
        ws_agent: "intruder".into(),
        seq: Some(i64::MAX),
        manifest_sha256: Some("m".into()),
        line_hash: Some("h".into()),
        caller: None,
        ..ev("x7", "ledger", "1001", None, T0)
    };
    assert_eq!(store.apply(&forged, T0).await.unwrap(), Applied::New);
    assert_eq!(store.ledger_head("tokyo", "1001").await.unwrap(), before);
    assert!(before.is_some(), "the suite left 1001 a ledger head");

    let ws = store.workstations().await.unwrap();
    let find = |agent: &str| {
        ws.iter()
            .find(|w| w.agent == agent)
            .unwrap_or_else(|| panic!("workstation {agent}"))
    };
    assert_eq!(find("1005").last_seen_ms, T0);
    assert_eq!(find("1005").off_since(T0 + 60_001, None), Some(T0));
    assert_eq!(find("1006").off_since(i64::MAX, None), None);
    assert_eq!(find("1006").off_since(i64::MIN, None), None);
}

async fn suite(store: &Store) {
    // Events: each id once.
    let start = ev("e1", "call.start", "1001", Some("c1"), T0);
    assert_eq!(store.apply(&start, T0).await.unwrap(), Applied::New);
    assert_eq!(store.apply(&start, T0).await.unwrap(), Applied::Duplicate);
    let m = mark("e2", "c1", T0 + 60_000, 2, "殺すぞ");
    assert_eq!(store.apply(&m, T0).await.unwrap(), Applied::New);
    assert_eq!(store.apply(&m, T0).await.unwrap(), Applied::Duplicate);
    let esc = EventRecord {
        detail: Some("manual".into()),
        delivery: Some("delivered".into()),
        level: Some(3),
        ..ev("e3", "escalation", "1001", Some("c1"), T0 + 61_000)
    };
    store.apply(&esc, T0).await.unwrap();
    // The same escalation, queued then delivered: one row, the final state.
    let queued = EventRecord {
        escalation_id: Some("p1".into()),
        delivery: Some("queued".into()),
        elapsed_secs: Some(61),
        ..ev("e6", "escalation", "1001", Some("c2"), T0 + 121_000)
    };
    let delivered = EventRecord {
        id: "e7".into(),
        delivery: Some("delivered".into()),
        ..queued.clone()
    };
    store.apply(&queued, T0).await.unwrap();
    store.apply(&delivered, T0).await.unwrap();
    store
        .apply(
            &EventRecord {
                id: "e8".into(),
                ..queued.clone()
            },
            T0,
        )
        .await
        .unwrap();
    // A call the floor first hears of by a mark (its start was lost before the floor existed):
    // started is estimated from elapsed.
    store
        .apply(&mark("e4", "c2", T0 + 120_000, 1, "bad words"), T0)
        .await
        .unwrap();
    assert_eq!(store.event_count().await.unwrap(), 7);

    let k1 = call_key("tokyo", "1001", "c1");
    let c1 = store.call(&k1).await.unwrap().expect("call c1");
    assert_eq!(c1.started_ms, Some(T0));
    assert_eq!(c1.ended_ms, None);
    assert_eq!(c1.level, 3, "level is the highest seen");
    assert_eq!(c1.marks, 1, "a duplicate mark is not counted twice");
    assert_eq!(c1.caller_key.as_deref(), Some("+81312345678"));
    let c2 = store
        .call(&call_key("tokyo", "1001", "c2"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c2.started_ms, Some(T0 + 60_000));

    // Board: open calls with marks (verbatim), escalations, acks.
    let ack = AckRow {
        id: "a1".into(),
        call_key: k1.clone(),
        lead: "田中".into(),
        user_name: "tanaka".into(),
        at_ms: T0 + 90_000,
    };
    assert_eq!(store.add_ack(&ack).await.unwrap(), Applied::New);
    assert_eq!(
        store.add_ack(&ack).await.unwrap(),
        Applied::Duplicate,
        "the same ack read back from the stream is one row"
    );
    let b = store.board(T0).await.unwrap();
    assert_eq!(b.calls.len(), 2);
    assert_eq!(b.marks.len(), 2);
    assert!(b.marks.iter().any(|m| m.quote == "殺すぞ"));
    assert_eq!(b.escalations.len(), 2);
    assert_eq!(b.escalations[0].delivery, "delivered");
    assert_eq!(b.escalations[1].id, "p1");
    assert_eq!(
        b.escalations[1].delivery, "delivered",
        "a late `queued` does not win"
    );
    assert_eq!(b.acks.len(), 1);
    assert_eq!(b.acks[0].lead, "田中");

    // The call ends: on the board while recent, gone after the cut-off.
    store
        .apply(&ev("e5", "call.end", "1001", Some("c1"), T0 + 300_000), T0)
        .await
        .unwrap();
    let c1 = store.call(&k1).await.unwrap().unwrap();
    assert_eq!(c1.ended_ms, Some(T0 + 300_000));
    assert_eq!(store.board(T0 + 300_000).await.unwrap().calls.len(), 2);
    let later = store.board(T0 + 300_001).await.unwrap();
    assert_eq!(later.calls.len(), 1);
    assert_eq!(later.marks.len(), 1);
    assert!(later.acks.is_empty());

    // Caller history, counts and the conclusion (versions kept).
    let h = store.caller_history("+81312345678", 100).await.unwrap();
    assert_eq!(h.calls.len(), 2);
    assert_eq!(h.calls[0].call_id, "c2", "newest first");
    assert_eq!(h.marks.len(), 2);
    assert!(h.conclusions.is_empty());
    assert_eq!(
        store.caller_counts("+81312345678", T0).await.unwrap(),
        (2, 3)
    );
    assert_eq!(
        store.caller_counts("+81312345678", T0 + 1).await.unwrap(),
        (1, 1)
    );
    let v1 = store
        .add_conclusion(
            "+81312345678",
            "返金不可",
            "返金はいたしかねます",
            "田中",
            T0,
        )
        .await
        .unwrap();
    let v2 = store
        .add_conclusion(
            "+81312345678",
            "返金不可（確定）",
            "結論は変わりません",
            "佐藤",
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!((v1, v2), (1, 2));
    let cs = store.conclusions("+81312345678").await.unwrap();
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0].version, 2);
    assert_eq!(cs[0].phrase, "結論は変わりません");
    assert_eq!(cs[1].text, "返金不可", "older versions are kept");

    // Workstations: silent for more than two intervals, or PBX down → protection off.
    store
        .apply(&heartbeat("h1", "1001", T0, true), T0)
        .await
        .unwrap();
    store
        .apply(&heartbeat("h2", "1002", T0, true), T0)
        .await
        .unwrap();
    store
        .apply(&heartbeat("h3", "1002", T0 + 30_000, false), T0 + 30_000)
        .await
        .unwrap();
    // An old heartbeat delivered late does not move the last-seen time back.
    store
        .apply(&heartbeat("h0", "1001", T0 - 30_000, true), T0)
        .await
        .unwrap();
    let ws = store.workstations().await.unwrap();
    assert_eq!(ws.len(), 2);
    let (w1, w2) = (&ws[0], &ws[1]);
    assert_eq!(w1.last_seen_ms, T0);
    assert_eq!(w1.off_since(T0 + 60_000, None), None);
    assert_eq!(w1.off_since(T0 + 60_001, None), Some(T0));
    assert!(!w2.pbx_up);
    assert_eq!(w2.off_since(T0 + 30_000, None), Some(T0 + 30_000));
    assert!(store.claim_outage_ping(&w2.key, T0 + 31_000).await.unwrap());
    assert!(
        !store.claim_outage_ping(&w2.key, T0 + 32_000).await.unwrap(),
        "one ping per outage"
    );
    store
        .apply(&heartbeat("h4", "1002", T0 + 60_000, true), T0 + 60_000)
        .await
        .unwrap();
    let w2 = store.workstations().await.unwrap().remove(1);
    assert!(w2.pbx_up && w2.pinged_ms.is_none() && w2.pbx_down_ms.is_none());

    // Ledger heads: the highest line wins.
    for (id, seq) in [("l1", 1), ("l3", 3), ("l2", 2)] {
        let e = EventRecord {
            seq: Some(seq),
            manifest_sha256: Some(format!("m{seq}")),
            line_hash: Some(format!("h{seq}")),
            caller: None,
            ..ev(id, "ledger", "1001", None, T0 + seq)
        };
        store.apply(&e, T0).await.unwrap();
    }
    let head = store.ledger_head("tokyo", "1001").await.unwrap().unwrap();
    assert_eq!((head.seq, head.line_hash.as_str()), (3, "h3"));
    assert!(store.ledger_head("tokyo", "9999").await.unwrap().is_none());

    // Accounts and sessions.
    let u = UserRow {
        name: "tanaka".into(),
        display_name: "田中".into(),
        teams: vec!["a".into(), "b".into()],
        admin: false,
        password_hash: "$argon2id$x".into(),
    };
    store.add_user(&u, T0).await.unwrap();
    assert!(store.add_user(&u, T0).await.is_err(), "names are unique");
    assert_eq!(store.user("tanaka").await.unwrap(), Some(u));
    assert_eq!(store.user("nobody").await.unwrap(), None);
    let s = SessionRow {
        user_name: "tanaka".into(),
        csrf: "tok".into(),
        expires_ms: T0 + 1000,
    };
    store.add_session("hash1", &s, T0).await.unwrap();
    assert_eq!(store.session("hash1", T0).await.unwrap(), Some(s));
    assert_eq!(store.session("hash1", T0 + 1000).await.unwrap(), None);
    store.remove_session("hash1", T0).await.unwrap();
    assert_eq!(store.session("hash1", T0).await.unwrap(), None);

    // Audit: append-only, newest first.
    store
        .audit("tanaka", "view.caller", "+81312345678", "", T0)
        .await
        .unwrap();
    store.audit("tanaka", "ack", &k1, "", T0 + 1).await.unwrap();
    store
        .audit("sato", "view.caller", "+81312345678", "", T0 + 2)
        .await
        .unwrap();
    let a = store.audit_lines(10, None, None).await.unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a[0].action, "view.caller");
    assert!(a[0].id > a[1].id && a[1].id > a[2].id);
    // Paging back, and one user's lines alone however many others wrote since.
    let older = store.audit_lines(10, Some(a[0].id), None).await.unwrap();
    assert_eq!(
        older.iter().map(|l| l.id).collect::<Vec<_>>(),
        [a[1].id, a[2].id]
    );
    let tanaka = store.audit_lines(1, None, Some("tanaka")).await.unwrap();
    assert_eq!((tanaka.len(), tanaka[0].action.as_str()), (1, "ack"));
    let before = store
        .audit_lines(1, Some(tanaka[0].id), Some("tanaka"))
        .await
        .unwrap();
    assert_eq!(before[0].action, "view.caller");
}

/// Two stores on one database (two floor instances) apply the same 200 events at once: each
/// is counted once.
async fn concurrent(url: &str) {
    let a = Store::open(url).await.unwrap();
    let b = Store::open(url).await.unwrap();
    let events: Vec<EventRecord> = (0..100)
        .flat_map(|i| {
            let call = format!("k{i}");
            [
                ev(&format!("s{i}"), "call.start", "2001", Some(&call), T0 + i),
                EventRecord {
                    agent: "2001".into(),
                    ..mark(&format!("m{i}"), &call, T0 + i + 1, 1, "q")
                },
            ]
        })
        .collect();
    let (ea, eb) = (events.clone(), events.clone());
    let ta = tokio::spawn(async move {
        let mut n = 0;
        for e in &ea {
            if a.apply(e, T0).await.unwrap() == Applied::New {
                n += 1;
            }
        }
        n
    });
    let tb = tokio::spawn(async move {
        let mut n = 0;
        for e in eb.iter().rev() {
            if b.apply(e, T0).await.unwrap() == Applied::New {
                n += 1;
            }
        }
        n
    });
    let (na, nb) = (ta.await.unwrap(), tb.await.unwrap());
    assert_eq!(na + nb, 200, "every event applied exactly once across both");
    let s = Store::open(url).await.unwrap();
    let board = s.board(T0).await.unwrap();
    let ours: Vec<_> = board.calls.iter().filter(|c| c.agent == "2001").collect();
    assert_eq!(ours.len(), 100);
    assert!(ours.iter().all(|c| c.marks == 1 && c.started_ms.is_some()));
}

/// A batch of bus messages is stored in one transaction with the same answers as one at a time:
/// a repeated id inside the batch and a whole batch delivered again count nothing twice, and an
/// ack finds the call started earlier in the same batch.
async fn batches(url: &str) {
    let s = Store::open(url).await.unwrap();
    let start = ev("b-s1", "call.start", "3001", Some("b1"), T0);
    let m = EventRecord {
        agent: "3001".into(),
        ..mark("b-m1", "b1", T0 + 1, 2, "batch quote")
    };
    let ack = BusAck {
        id: "b-ack1".into(),
        site: "tokyo".into(),
        ws_agent: "3001".into(),
        call_id: "b1".into(),
        lead: "田中".into(),
        at_ms: T0 + 2,
    };
    let batch = vec![
        BusWrite::Event(Box::new(start)),
        BusWrite::Event(Box::new(m.clone())),
        BusWrite::Event(Box::new(m)),
        BusWrite::Ack(ack),
    ];
    assert_eq!(
        s.apply_batch(&batch, T0).await.unwrap(),
        vec![Applied::New, Applied::New, Applied::Duplicate, Applied::New]
    );
    assert_eq!(
        s.apply_batch(&batch, T0).await.unwrap(),
        vec![Applied::Duplicate; 4],
        "a redelivered batch changes nothing"
    );
    let key = call_key("tokyo", "3001", "b1");
    let d = s.call_details(&key).await.unwrap();
    assert_eq!(d.calls.len(), 1);
    assert_eq!((d.calls[0].marks, d.calls[0].level), (1, 2));
    assert_eq!(d.marks.len(), 1);
    assert_eq!(
        d.acks.len(),
        1,
        "the ack is attached to the call: {:?}",
        d.acks
    );
    assert_eq!(d.acks[0].lead, "田中");
}

#[tokio::test]
async fn sqlite_stores_opened_at_once_on_a_new_file_migrate_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("new.db").display());
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Store::open(&url).await.map(|_| ()) })
        })
        .collect();
    for o in opens {
        if let Err(e) = o.await.unwrap() {
            panic!("a floor starting next to another one failed to migrate: {e}");
        }
    }
    let s = Store::open(&url).await.unwrap();
    assert_eq!(s.event_count().await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("floor.db").display());
    let store = Store::open(&url).await.unwrap();
    suite(&store).await;
    store.close().await;
    // Reopening runs the migrations again (a no-op) and keeps the data.
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.event_count().await.unwrap(), 16);
    hostile(&store).await;
    concurrent(&url).await;
    batches(&url).await;
}

#[tokio::test]
async fn postgres_store() {
    let pg = PgCluster::start();
    let url = pg.database("floor_suite").await;
    let store = match Store::open(&url).await {
        Ok(s) => s,
        Err(e) => panic!("{e}\n{}", pg.log()),
    };
    suite(&store).await;
    store.close().await;
    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.event_count().await.unwrap(), 16);
    hostile(&store).await;
    concurrent(&url).await;
    batches(&url).await;
}

#[tokio::test]
async fn a_url_that_is_neither_sqlite_nor_postgres_is_refused() {
    let err = Store::open("mysql://x").await.unwrap_err().to_string();
    assert!(
        err.contains("sqlite://") && err.contains("postgres://"),
        "{err}"
    );
}
