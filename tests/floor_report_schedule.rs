//! `floor.report.monthly`: on the 1st the floor reports the month before and posts the summary
//! line and the download link through the project's ping sink to a real webhook receiver on
//! loopback. The schedule's clock jumps to the due time (no sleeping); a second floor instance
//! reaching the same 1st posts nothing (the run is claimed once in the store).

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use callguard::config::{Language, WebhookConfig, WebhookFormat};
use callguard::escalation::payload::Origin;
use callguard::escalation::sender::RetryPolicy;
use callguard::escalation::{self, EscalationOptions};
use callguard::floor::service::report::sample::{SampleSpec, fill};
use callguard::floor::service::report::schedule::{self, Clock, MonthlyOptions};
use callguard::floor::service::report::{DEFAULT_FONT, Period, ReportOptions, build};
use callguard::floor::service::store::Store;
use common::http::Receiver;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

const JST: i32 = 9 * 3600;

/// A clock that jumps to the first due time asked for, then waits for ever; it tells the test
/// how many times it was asked to wait.
struct JumpClock {
    now: AtomicI64,
    waits: watch::Sender<u32>,
}

impl Clock for JumpClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
    fn sleep_until(&self, at_ms: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut first = false;
        self.waits.send_modify(|n| {
            *n += 1;
            first = *n == 1;
        });
        if first {
            self.now.store(at_ms, Ordering::SeqCst);
            Box::pin(async {})
        } else {
            Box::pin(std::future::pending())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monthly_report_posted_on_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    let store = Store::open(&db).await.unwrap();
    let nov = Period::month("2026-11", JST).unwrap();
    fill(store.pool(), &SampleSpec::over(&nov, 2_000, 20, 7), "nov")
        .await
        .unwrap();
    let expected = build(
        &store,
        &ReportOptions {
            period: nov.clone(),
            agents: None,
            team: None,
            care: false,
            top_callers: 10,
        },
    )
    .await
    .unwrap()
    .summary_line();

    let mut receiver = Receiver::start(vec![]).await;
    let opts = EscalationOptions {
        webhooks: vec![WebhookConfig {
            url: receiver.url("/leads"),
            format: WebhookFormat::Json,
            secret_file: String::new(),
        }],
        origin: Origin {
            agent_name: "callguard floor".into(),
            host: "floor-1".into(),
            language: Language::Ja,
        },
        retry: RetryPolicy {
            initial: std::time::Duration::from_millis(100),
            max: std::time::Duration::from_secs(1),
            retry_for: std::time::Duration::from_secs(60),
        },
        outbox_dir: dir.path().join("floor-pings"),
        coalesce: std::time::Duration::ZERO,
        evidence_dir: None,
    };
    let stop = CancellationToken::new();
    let (actions_tx, actions_rx) = mpsc::unbounded_channel();
    let (reports, _) = broadcast::channel(16);
    tokio::spawn(escalation::run(opts, actions_rx, reports, stop.clone()));

    let monthly = MonthlyOptions {
        offset_secs: JST,
        dir: dir.path().join("reports"),
        font: DEFAULT_FONT.into(),
        public_url: "https://floor.example.jp".into(),
    };
    let start = |actions: mpsc::UnboundedSender<_>| {
        let (waits, seen) = watch::channel(0u32);
        let clock = Arc::new(JumpClock {
            now: AtomicI64::new(nov.from_ms + 19 * 86_400_000),
            waits,
        });
        let (store, monthly, stop) = (store.clone(), monthly.clone(), stop.clone());
        tokio::spawn(async move {
            schedule::run(store, monthly, &*clock, actions, stop).await;
        });
        seen
    };
    let mut first = start(actions_tx);
    let hit = receiver.next().await;
    let body = hit.json();
    assert_eq!(body["kind"], "problem");
    assert_eq!(body["problem"], schedule::KIND);
    let text = body["text"].as_str().unwrap();
    assert!(text.contains(&expected), "{text}\nwanted {expected}");
    assert!(
        text.contains("https://floor.example.jp/report?period=2026-11&format=pdf"),
        "{text}"
    );
    // The schedule went back to waiting for January's 1st, with November's files written.
    first.wait_for(|n| *n >= 2).await.unwrap();
    assert!(dir.path().join("reports/report-2026-11.pdf").exists());
    assert!(dir.path().join("reports/report-2026-11.html").exists());

    // A second instance on the same store reaches the same 1st and posts nothing.
    let (tx2, mut rx2) = mpsc::unbounded_channel();
    let mut second = start(tx2);
    second.wait_for(|n| *n >= 2).await.unwrap();
    assert!(rx2.try_recv().is_err(), "the month was already posted");
    assert_eq!(receiver.requests(), 1);
    stop.cancel();
}
