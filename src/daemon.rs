//! Wires the daemon together: PBX connector → call tracker → sinks, one shutdown token.

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::alerts::{self, AlertOptions};
use crate::bus::Bus;
use crate::calls::{self, Command, TrackerOptions, memory::Memory};
use crate::config::Config;
use crate::events::{Action, Report};

/// Capacity of the connector → tracker queue; a full queue slows the socket read, never drops.
const EVENT_QUEUE: usize = 4096;

/// How this run differs from production.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Thresholds divided by this (`--time-scale`).
    pub time_scale: f64,
    /// Keep fired warnings only in memory (demo).
    pub volatile: bool,
    /// Show desktop notifications.
    pub desktop: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            time_scale: 1.0,
            volatile: false,
            desktop: true,
        }
    }
}

/// A daemon ready to run: the sinks are subscribed, reports can be listened to.
pub struct Daemon {
    cfg: Config,
    opts: RunOptions,
    bus: Bus,
    alerts_rx: mpsc::UnboundedReceiver<Action>,
    escalation_rx: mpsc::UnboundedReceiver<Action>,
    evidence_rx: mpsc::UnboundedReceiver<Action>,
    commands_tx: mpsc::Sender<Command>,
    commands_rx: mpsc::Receiver<Command>,
}

impl Daemon {
    /// Subscribes every sink; nothing runs yet.
    pub fn new(cfg: Config, opts: RunOptions) -> Daemon {
        let mut bus = Bus::new();
        let alerts_rx = bus.subscribe(false);
        let escalation_rx = bus.subscribe(false);
        let evidence_rx = bus.subscribe(true);
        let (commands_tx, commands_rx) = mpsc::channel(64);
        Daemon {
            cfg,
            opts,
            bus,
            alerts_rx,
            escalation_rx,
            evidence_rx,
            commands_tx,
            commands_rx,
        }
    }

    /// What the sinks did, as it happens.
    pub fn reports(&self) -> broadcast::Receiver<Report> {
        self.bus.reports()
    }

    /// A handle for queries (status).
    pub fn commands(&self) -> mpsc::Sender<Command> {
        self.commands_tx.clone()
    }

    /// Runs until `shutdown`, then lets every sink finish its queue before returning.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Daemon {
            cfg,
            opts,
            bus,
            alerts_rx,
            escalation_rx,
            evidence_rx,
            commands_tx,
            commands_rx,
        } = self;
        // One daemon per data and evidence folder: two would fork the ledger's chain and
        // recover each other's live recordings.
        let _locks = lock_folders(&cfg)?;
        let memory = if opts.volatile {
            Memory::volatile()
        } else {
            Memory::open(&cfg.data_dir().join("state").join("fired.jsonl"))
        };
        let tracker_opts = TrackerOptions::from_config(&cfg, opts.time_scale, memory);
        let mut alert_opts = AlertOptions::from_config(&cfg);
        alert_opts.desktop = opts.desktop;
        alert_opts.sounds.quiet_probe = opts.volatile;
        alert_opts.escalate = Some(commands_tx.clone());
        let reports = bus.report_sender();
        let archive_store = crate::archive::preflight(&cfg).await?;

        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let connector = tokio::spawn(crate::pbx::run(cfg.clone(), events_tx, shutdown.clone()));
        let alerts = tokio::spawn(alerts::run(alert_opts, alerts_rx, reports.clone()));
        let escalation = tokio::spawn(crate::escalation::run(
            crate::escalation::EscalationOptions::from_config(&cfg),
            escalation_rx,
            reports.clone(),
            shutdown.clone(),
        ));
        let control = tokio::spawn(crate::control::serve(
            crate::control::ControlContext::new(&cfg, commands_tx.clone(), &bus),
            shutdown.clone(),
        ));
        let archive = archive_store.map(|store| {
            tokio::spawn(crate::archive::run(
                cfg.clone(),
                store,
                reports.subscribe(),
                commands_tx.clone(),
                shutdown.clone(),
            ))
        });
        // The evidence sink reports problems (disk full) back through the tracker.
        let evidence = tokio::spawn(crate::evidence::run(
            crate::evidence::EvidenceOptions::from_config(&cfg),
            evidence_rx,
            reports,
            commands_tx,
        ));
        // The tracker owns the bus; when it returns, every sink's queue closes.
        let tracker = tokio::spawn(calls::run(
            tracker_opts,
            events_rx,
            commands_rx,
            bus,
            shutdown.clone(),
        ));
        let _ = tracker.await;
        shutdown.cancel();
        let _ = alerts.await;
        let _ = escalation.await;
        let _ = control.await;
        let _ = evidence.await;
        if let Some(a) = archive {
            let _ = a.await;
        }
        let _ = connector.await;
        tracing::info!("callguard stopped");
        Ok(())
    }
}

/// Locks the data and evidence folders for this process, or says who holds them.
fn lock_folders(cfg: &Config) -> anyhow::Result<Vec<crate::fsutil::ExclusiveLock>> {
    let mut locks = Vec::new();
    for (dir, name) in [
        (cfg.data_dir(), "callguard.lock"),
        (cfg.evidence_dir(), ".lock"),
    ] {
        crate::fsutil::create_private_dir(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let path = dir.join(name);
        match crate::fsutil::lock_exclusive(&path) {
            Ok(l) => locks.push(l),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => anyhow::bail!(
                "another callguard is already running with {} (lock {}); stop it first",
                dir.display(),
                path.display()
            ),
            Err(e) => anyhow::bail!("cannot lock {}: {e}", path.display()),
        }
    }
    Ok(locks)
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = tokio::signal::ctrl_c().await;
                    token.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        }
        token.cancel();
    });
}
