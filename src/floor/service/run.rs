//! `callguard floor`: starts the store, the bus side, the fleet watcher and the board, and runs
//! them until a signal.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::store::Store;
use super::web::{self, AppState, WebOptions};
use super::{bus, fleet};
use crate::config::Config;
use crate::floor::config::FloorConfig;
use crate::floor::link::{ConnectMode, Link};

/// How long closing the NATS connection may take at shutdown.
const CLOSE_DEADLINE: Duration = Duration::from_secs(3);

/// The store URL of `cfg`: `floor.db`, else `sqlite://<data dir>/floor.db`.
pub fn db_url(cfg: &Config) -> String {
    match &cfg.floor {
        Some(f) => f.db_url(&cfg.data_dir()),
        None => format!("sqlite://{}", cfg.data_dir().join("floor.db").display()),
    }
}

/// What a running floor service exposes to whoever started it (tests, the demo).
#[derive(Debug, Clone)]
pub struct Running {
    /// The board's address.
    pub addr: SocketAddr,
    /// Whether the board speaks HTTPS.
    pub tls: bool,
}

/// Runs the floor service until SIGINT/SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    crate::logging::init(&cfg.log);
    let stop = CancellationToken::new();
    crate::daemon::cancel_on_signals(stop.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(serve(cfg, stop.clone(), Some(tx)));
    if let Some(r) = rx.recv().await {
        tracing::info!(url = %format!("{}://{}/", if r.tls { "https" } else { "http" }, r.addr),
            "floor board ready");
    }
    task.await.context("floor service task")?
}

/// Runs the floor service until `stop`; reports the board's address on `ready` once listening.
pub async fn serve(
    cfg: Config,
    stop: CancellationToken,
    ready: Option<mpsc::UnboundedSender<Running>>,
) -> anyhow::Result<()> {
    let fc: FloorConfig = cfg
        .floor
        .clone()
        .context("callguard floor needs a [floor] table in the configuration")?;
    let addr: SocketAddr = fc
        .listen
        .parse()
        .with_context(|| format!("floor.listen = {:?} is not an address:port", fc.listen))?;
    // Checked before binding: a board off loopback without TLS never listens at all.
    web::tls_config(addr, &fc.tls_cert, &fc.tls_key)?;
    // The store (and its migrations) first: whoever waits for the port may use the store then.
    let store = open_store(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    serve_with(cfg, store, listener, stop, ready).await
}

async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let url = db_url(cfg);
    let store = Store::open(&url).await?;
    tracing::info!(db = %super::store::mask_db_url(&url), "floor store open");
    Ok(store)
}

/// [`serve`] on a listener bound by the caller (`floor.listen` is not used): the demo binds its
/// port itself so that a busy default port can fall back without a race.
pub async fn serve_on(
    cfg: Config,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
    ready: Option<mpsc::UnboundedSender<Running>>,
) -> anyhow::Result<()> {
    let store = open_store(&cfg).await?;
    serve_with(cfg, store, listener, stop, ready).await
}

async fn serve_with(
    cfg: Config,
    store: Store,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
    ready: Option<mpsc::UnboundedSender<Running>>,
) -> anyhow::Result<()> {
    let fc: FloorConfig = cfg
        .floor
        .clone()
        .context("callguard floor needs a [floor] table in the configuration")?;
    let bound = listener.local_addr()?;
    let tls = web::tls_config(bound, &fc.tls_cert, &fc.tls_key)?;

    let link = Link::connect(
        &fc,
        "floor",
        &crate::escalation::hostname(),
        ConnectMode::Background,
    )
    .await
    .context("cannot set up the NATS connection")?;
    let client = link.client().clone();
    let js = async_nats::jetstream::new(client.clone());

    let (notify, _) = watch::channel(0u64);
    let (acks_tx, acks_rx) = mpsc::unbounded_channel();
    let state = AppState::new(
        store.clone(),
        WebOptions {
            language: cfg.language,
            secure_cookies: tls.is_some(),
            session_ttl: fc.session_ttl,
            stale_after: (!fc.stale_after.is_zero()).then_some(fc.stale_after),
            teams: fc.teams.clone(),
            login_limit: Default::default(),
        },
        notify.clone(),
        acks_tx,
    );
    let site = if fc.site.is_empty() {
        "*".to_string()
    } else {
        fc.site.clone()
    };

    let mut tasks = tokio::task::JoinSet::new();
    // Evidence at hand: archived folders are checked as their ledger events arrive.
    let evidence = super::evidence::access(&cfg)
        .await
        .context("the floor's [archive] (evidence at hand)")?
        .map(std::sync::Arc::new);
    if let Some(access) = evidence.clone() {
        let (store, updates, stop) = (store.clone(), notify.subscribe(), stop.clone());
        let retry = fc.evidence_retry;
        tasks.spawn(async move {
            super::evidence::run(store, (*access).clone(), retry, updates, stop).await;
            Ok(())
        });
    }
    {
        let (js, fc, store, notify, stop) = (
            js.clone(),
            fc.clone(),
            store.clone(),
            notify.clone(),
            stop.clone(),
        );
        let changes = state.changes();
        tasks.spawn(async move {
            // The stream may not be reachable yet (NATS down at start): keep trying.
            let stream = loop {
                match bus::ensure_stream(&js, &fc).await {
                    Ok(s) => break s,
                    Err(e) => {
                        tracing::warn!(error = %e, "floor: stream not available yet; retrying");
                        tokio::select! {
                            _ = stop.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        }
                    }
                }
            };
            bus::consume(stream, fc.consumer.clone(), store, notify, changes, stop).await?;
            Ok::<(), anyhow::Error>(())
        });
    }
    tasks.spawn({
        let (c, s, st, stop) = (client.clone(), site.clone(), store.clone(), stop.clone());
        async move { Ok(bus::answer_history(c, s, st, stop).await?) }
    });
    tasks.spawn({
        let (c, s, st, stop) = (client.clone(), site.clone(), store.clone(), stop.clone());
        async move { Ok(bus::answer_ledger_head(c, s, st, stop).await?) }
    });
    tasks.spawn({
        let stop = stop.clone();
        async move {
            bus::publish_acks(js, acks_rx, stop).await;
            Ok(())
        }
    });
    let (actions_tx, actions_rx) = mpsc::unbounded_channel();
    // Only the monthly post holds a second sender: a sender kept alive with nothing to send
    // would keep the ping sender (which ends when every sender is gone) from ever stopping.
    let report_actions = fc.report.monthly.then(|| actions_tx.clone());
    if fc.ping_on_stale || fc.report.monthly {
        let (reports, _) = broadcast::channel(64);
        let mut opts = crate::escalation::EscalationOptions::from_config(&cfg);
        opts.origin.agent_name = "callguard floor".into();
        opts.outbox_dir = cfg.data_dir().join("floor-pings");
        tasks.spawn({
            let stop = stop.clone();
            async move {
                crate::escalation::run(opts, actions_rx, reports, stop).await;
                Ok(())
            }
        });
    }
    tasks.spawn({
        let (store, notify, stop) = (store.clone(), notify.clone(), stop.clone());
        let stale = (!fc.stale_after.is_zero()).then_some(fc.stale_after.as_millis() as i64);
        let lang = cfg.language;
        async move {
            fleet::watch(store, stale, lang, actions_tx, notify, stop).await;
            Ok(())
        }
    });
    let report_settings = super::report::cli::settings(&fc, &cfg.data_dir())?;
    if let Some(actions) = report_actions {
        let (store, stop) = (store.clone(), stop.clone());
        let opts = report_settings.monthly(&fc, bound, tls.is_some());
        tasks.spawn(async move {
            super::report::schedule::run(
                store,
                opts,
                &super::report::schedule::WallClock,
                actions,
                stop,
            )
            .await;
            Ok(())
        });
    }
    tasks.spawn({
        let stop = stop.clone();
        let app = web::router(state)
            .layer(axum::Extension(report_settings.web()))
            .layer(axum::Extension(web::evidence::EvidenceAccess(evidence)));
        let tls = tls.clone();
        async move {
            web::serve(listener, tls, app, stop).await;
            Ok(())
        }
    });
    if let Some(ready) = ready {
        let _ = ready.send(Running {
            addr: bound,
            tls: tls.is_some(),
        });
    }
    let mut result = Ok(());
    tokio::select! {
        _ = stop.cancelled() => {}
        Some(r) = tasks.join_next() => {
            // A part that ends on its own is a failure: stop the rest, and say so in the exit
            // code (a service manager restarts a floor that failed, not one that finished).
            result = match r {
                Ok(Err(e)) => Err(e),
                Err(e) if e.is_panic() => {
                    Err(anyhow::anyhow!("a part of the floor service panicked: {e}"))
                }
                _ if stop.is_cancelled() => Ok(()),
                Ok(Ok(())) | Err(_) => {
                    Err(anyhow::anyhow!("a part of the floor service stopped on its own"))
                }
            };
            stop.cancel();
        }
    }
    while tasks.join_next().await.is_some() {}
    // A flush waits for the server: with NATS gone (stopped together with us) it would wait
    // forever, and a stopping floor must stop.
    if tokio::time::timeout(CLOSE_DEADLINE, link.close())
        .await
        .is_err()
    {
        tracing::warn!("floor: NATS unreachable at shutdown; closed without a flush");
    }
    store.close().await;
    result
}
