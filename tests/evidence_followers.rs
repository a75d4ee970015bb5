//! The durable "sealed" seam: a registered evidence follower is handed every sealed folder
//! through its own on-disk queue in the step that writes the ledger line (with the line's hash
//! and the manifest's hash), a follower that cannot take it keeps it pending and visible, and
//! at the next start anything sealed but not yet taken is offered again, once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use callguard::daemon::Daemon;
use callguard::evidence::followers::{self, EvidenceFollower, Sealed, SealedKind};
use callguard::queue::{Outcome, RetryPolicy};
use common::{FakePbx, TestRun, test_config};
use futures_util::future::BoxFuture;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A follower that records what it is handed; while `down`, it answers "try again".
struct Recorder {
    seen: mpsc::UnboundedSender<Sealed>,
    down: AtomicBool,
}

impl EvidenceFollower for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    fn deliver<'a>(&'a self, item: &'a Sealed) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Outcome::Retry {
                    after: None,
                    error: "receiver down".into(),
                };
            }
            let _ = self.seen.send(item.clone());
            Outcome::Delivered(format!("took {}", item.ledger_seq))
        })
    }

    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(50),
            retry_for: Duration::from_secs(3600),
        }
    }
}

struct Run {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    seen: mpsc::UnboundedReceiver<Sealed>,
    follower: Option<Arc<Recorder>>,
}

fn start(cfg: callguard::config::Config, follower: Option<bool>) -> Run {
    let (tx, seen) = mpsc::unbounded_channel();
    let mut d = Daemon::new(cfg, TestRun::headless().opts());
    let follower = follower.map(|down| {
        let f = Arc::new(Recorder {
            seen: tx,
            down: AtomicBool::new(down),
        });
        d.add_follower(f.clone());
        f
    });
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(d.run(shutdown.clone()));
    Run {
        shutdown,
        handle,
        seen,
        follower,
    }
}

impl Run {
    async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

async fn one_call(pbx: &mut FakePbx, id: &str) {
    let mut conn = pbx.accept().await;
    conn.send(json!({"type":"call.start","call_id":id,
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),
        "agent":"1001","caller":"0312345678","direction":"inbound"}))
        .await;
    conn.send(json!({"type":"call.end","call_id":id,
        "at":chrono::Local::now().fixed_offset().to_rfc3339(),"cause":"normal"}))
        .await;
    tokio::spawn(conn.drain());
}

async fn next(seen: &mut mpsc::UnboundedReceiver<Sealed>) -> Sealed {
    tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .expect("the follower was not handed the sealed folder")
        .unwrap()
}

fn ledger_lines(cfg: &callguard::config::Config) -> Vec<String> {
    std::fs::read_to_string(cfg.evidence_dir().join("ledger.jsonl"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_folder_is_handed_to_the_follower_with_its_ledger_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let cfg = test_config(tmp.path(), &pbx.url);
    let mut run = start(cfg.clone(), Some(false));
    one_call(&mut pbx, "c-follow").await;
    let item = next(&mut run.seen).await;
    assert_eq!(item.kind, SealedKind::Folder);
    assert_eq!(item.call_id, "c-follow");
    assert_eq!(item.ledger_seq, 1);
    let lines = ledger_lines(&cfg);
    assert_eq!(
        item.ledger_line_sha256,
        hex::encode(Sha256::digest(lines[0].as_bytes()))
    );
    let manifest = std::fs::read(item.dir.join("manifest.json")).unwrap();
    assert_eq!(item.manifest_sha256, hex::encode(Sha256::digest(&manifest)));
    assert_eq!(item.level, Some(1));
    // The receipt is kept in the follower's own queue folder.
    let q = followers::queue_of(&cfg.data_dir(), "recorder");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while q.stats().delivered != 1 {
        assert!(std::time::Instant::now() < deadline, "{:?}", q.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let got = q.entries_for("c-follow");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.receipt.as_deref(), Some("took 1"));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_but_not_taken_is_offered_again_at_start_and_only_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut pbx = FakePbx::start().await;
    let cfg = test_config(tmp.path(), &pbx.url);

    // 1. Sealed while no follower was registered (as after a crash between the ledger line
    //    and the hand-off): nothing is in any queue yet.
    let run = start(cfg.clone(), None);
    one_call(&mut pbx, "c-before").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(cfg.evidence_dir().join("ledger.jsonl").exists() && ledger_lines(&cfg).len() == 1) {
        assert!(std::time::Instant::now() < deadline, "never sealed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run.stop().await;

    // 2. The follower is registered but its receiver is down: the folder is offered at start
    //    and stays pending, visibly.
    let run = start(cfg.clone(), Some(true));
    let q = followers::queue_of(&cfg.data_dir(), "recorder");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let st = q.stats();
        if st.pending == 1 && st.last_error.as_deref() == Some("receiver down") {
            assert!(st.pending_bytes > 0 && st.oldest_pending.is_some());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{st:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run.stop().await;

    // 3. Next start, receiver up: the pending item is sent again; the ledger line is not
    //    offered a second time.
    let mut run = start(cfg.clone(), Some(false));
    let item = next(&mut run.seen).await;
    assert_eq!((item.call_id.as_str(), item.ledger_seq), ("c-before", 1));
    assert!(!run.follower.as_ref().unwrap().down.load(Ordering::SeqCst));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while q.stats().delivered != 1 {
        assert!(std::time::Instant::now() < deadline, "{:?}", q.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(q.stats().pending, 0);
    run.stop().await;
    let run = start(cfg.clone(), Some(false));
    run.stop().await;
    assert_eq!(q.stats().delivered, 1);
    assert_eq!(q.stats().pending, 0);
}
