//! Wires the daemon together: PBX connector → call tracker → sinks (and evidence followers),
//! each a named part under one [`Supervisor`], one shutdown token.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::alerts::AlertOptions;
use crate::bus::Bus;
use crate::calls::{self, Command, TrackerOptions, memory::Memory};
use crate::config::Config;
use crate::events::{Action, Report};
use crate::evidence::followers::EvidenceFollower;
use crate::sink::{Sink, SinkContext};
use crate::supervisor::{Parts, Supervisor};

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

/// The sinks the configuration asks for, in the order they get each action. Adding a sink is
/// its own module (implementing [`Sink`]) plus one line here.
pub fn sinks(cfg: &Config, opts: &RunOptions) -> Vec<Box<dyn Sink>> {
    let mut alert_opts = AlertOptions::from_config(cfg);
    alert_opts.desktop = opts.desktop;
    alert_opts.sounds.quiet_probe = opts.volatile;
    let mut sinks: Vec<Box<dyn Sink>> = vec![
        Box::new(crate::alerts::AlertsSink::new(alert_opts)),
        Box::new(crate::escalation::EscalationSink::from_config(cfg)),
        Box::new(crate::evidence::EvidenceSink::new(
            crate::evidence::EvidenceOptions::from_config(cfg),
        )),
    ];
    // The call timer in the system tray; the demo (volatile) and headless runs have none.
    if opts.desktop && !opts.volatile {
        sinks.push(Box::new(crate::tray::TraySink::new(cfg.language)));
    }
    sinks
}

/// Every sink the daemon runs for `cfg` in production: [`sinks`] and the floor publisher. The
/// doctor asks each for its [`healthcheck`](Sink::healthcheck) rows.
pub fn checked_sinks(cfg: &Config) -> Vec<Box<dyn Sink>> {
    let opts = RunOptions::default();
    let mut all = sinks(cfg, &opts);
    if let Some(f) = crate::floor::sink::FloorSink::from_config(cfg, opts.desktop) {
        all.push(Box::new(f));
    }
    all
}

/// A daemon ready to run: the sinks are subscribed, reports can be listened to.
pub struct Daemon {
    cfg: Config,
    opts: RunOptions,
    bus: Bus,
    sinks: Vec<(Box<dyn Sink>, mpsc::UnboundedReceiver<Action>)>,
    followers: Vec<Arc<dyn EvidenceFollower>>,
    commands_tx: mpsc::Sender<Command>,
    commands_rx: mpsc::Receiver<Command>,
    parts: Parts,
    floor: Option<Arc<crate::floor::state::FloorState>>,
    /// Where a reload reads the configuration (`Some(None)`: the usual lookup); `None`: this
    /// daemon does not reload (tests, demo).
    reload_from: Option<Option<std::path::PathBuf>>,
}

impl Daemon {
    /// Subscribes every sink of [`sinks`] and every follower of the configuration; nothing runs
    /// yet.
    pub fn new(cfg: Config, opts: RunOptions) -> Daemon {
        let sinks = sinks(&cfg, &opts);
        let followers = crate::evidence::followers::from_config(&cfg);
        let floor = crate::floor::sink::FloorSink::from_config(&cfg, opts.desktop);
        let mut d = Daemon::with_sinks(cfg, opts, sinks);
        d.followers = followers;
        if let Some(f) = floor {
            d.floor = Some(f.state());
            d.add_sink(Box::new(f));
        }
        d
    }

    /// A daemon with exactly these sinks (tests, embedding).
    pub fn with_sinks(cfg: Config, opts: RunOptions, sinks: Vec<Box<dyn Sink>>) -> Daemon {
        let (commands_tx, commands_rx) = mpsc::channel(64);
        let mut d = Daemon {
            cfg,
            opts,
            bus: Bus::new(),
            sinks: Vec::new(),
            followers: Vec::new(),
            commands_tx,
            commands_rx,
            parts: Parts::default(),
            floor: None,
            reload_from: None,
        };
        for s in sinks {
            d.add_sink(s);
        }
        d
    }

    /// Reloads on `callguard reload` and SIGHUP from `explicit` (`--config PATH`), else from
    /// the usual lookup ([`crate::reload`]).
    pub fn reload_from(mut self, explicit: Option<std::path::PathBuf>) -> Daemon {
        self.reload_from = Some(explicit);
        self
    }

    /// Adds a sink; it gets every action published from now on.
    pub fn add_sink(&mut self, sink: Box<dyn Sink>) {
        let sink = crate::supervisor::fault::wrap_sink(sink);
        let rx = self.bus.subscribe_named(sink.name(), sink.wants_media());
        self.sinks.push((sink, rx));
    }

    /// Adds a follower of sealed evidence (it gets its own durable queue and part).
    pub fn add_follower(&mut self, follower: Arc<dyn EvidenceFollower>) {
        self.followers.push(follower);
    }

    /// What the sinks did, as it happens.
    pub fn reports(&self) -> broadcast::Receiver<Report> {
        self.bus.reports()
    }

    /// A handle for queries (status).
    pub fn commands(&self) -> mpsc::Sender<Command> {
        self.commands_tx.clone()
    }

    /// The parts' states (live once [`run`](Self::run) has started them).
    pub fn parts(&self) -> Parts {
        self.parts.clone()
    }

    /// Runs until `shutdown`, then lets every sink finish its queue before returning. A part
    /// that dies before shutdown stops the others (sinks still flush) and is the error.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Daemon {
            cfg,
            opts,
            bus,
            sinks,
            followers,
            commands_tx,
            commands_rx,
            parts,
            floor,
            reload_from,
        } = self;
        // One daemon per data and evidence folder: two would fork the ledger's chain and
        // recover each other's live recordings.
        let _locks = lock_folders(&cfg)?;
        raise_descriptor_limit();
        // Listening for SIGHUP before any part runs: its default action ends the process.
        let reloader = match reload_from {
            Some(explicit) => {
                let r = Arc::new(crate::reload::Reloader::new(
                    &cfg,
                    explicit,
                    commands_tx.clone(),
                    opts.desktop && !opts.volatile,
                ));
                let hangups =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                        .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP; `callguard reload` still works"))
                        .ok();
                Some((r, hangups))
            }
            None => None,
        };
        let memory = if opts.volatile {
            Memory::volatile()
        } else {
            Memory::open(&cfg.data_dir().join("state").join("fired.jsonl"))
        };
        let tracker_opts = TrackerOptions::from_config(&cfg, opts.time_scale, memory);
        let mut sup = Supervisor::with_parts(shutdown.clone(), parts.clone());
        // The archive (opt-in): refused at start on a missing bucket or wrong credentials.
        let archive = crate::archive::preflight(&cfg)
            .await?
            .map(|s| crate::archive::shared(&cfg, s));
        let mut followers = followers;
        if let Some(a) = &archive {
            followers.push(Arc::new(crate::archive::follower::ArchiveFollower::new(
                &cfg,
                a.clone(),
            )));
            sup.spawn(
                "archive",
                crate::archive::run(
                    cfg.clone(),
                    a.clone(),
                    commands_tx.clone(),
                    shutdown.clone(),
                ),
            );
        }
        let (handoff, workers) =
            crate::evidence::followers::start(followers, &cfg.data_dir(), shutdown.clone());
        for w in workers {
            sup.spawn(w.part, w.run);
        }
        let ctx = SinkContext {
            reports: bus.report_sender(),
            commands: commands_tx.clone(),
            shutdown: shutdown.clone(),
            handoff,
        };
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let conn_cfg = cfg.clone();
        let conn_stop = shutdown.clone();
        sup.spawn("connector", async move {
            crate::pbx::run(conn_cfg, events_tx, conn_stop).await;
            Ok(())
        });
        for (sink, rx) in sinks {
            let name = sink.name().to_string();
            sup.spawn(name, sink.run(rx, ctx.clone()));
        }
        drop(ctx);
        let mut control = crate::control::ControlContext::new(&cfg, commands_tx, &bus)
            .with_parts(parts.clone())
            .with_floor(floor);
        if let Some((reloader, hangups)) = reloader {
            control = control.with_reloader(reloader.clone());
            if let Some(hangups) = hangups {
                let stop = shutdown.clone();
                sup.spawn("reload", async move {
                    crate::reload::on_hangup(hangups, reloader, stop).await;
                    Ok(())
                });
            }
        }
        let control_stop = shutdown.clone();
        sup.spawn("control", async move {
            crate::control::serve(control, control_stop).await;
            Ok(())
        });
        // The tracker owns the bus; when it returns, every sink's queue closes.
        let tracker_stop = shutdown.clone();
        sup.spawn("tracker", async move {
            calls::run(tracker_opts, events_rx, commands_rx, bus, tracker_stop).await;
            Ok(())
        });
        let result = sup.run().await;
        match &result {
            Ok(()) => tracing::info!("callguard stopped"),
            Err(e) => tracing::error!("callguard stopped because {e}"),
        }
        result.map_err(anyhow::Error::from)
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

/// Raises the soft limit of open descriptors to the hard one (`LimitNOFILE` in the unit), so
/// recordings, the ledger, D-Bus and the webhook client have room beyond the control socket's
/// capped connections.
fn raise_descriptor_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = ?lim.current, to = ?lim.maximum, "descriptor limit raised")
            }
            Err(e) => tracing::debug!(error = %e, "descriptor limit not raised"),
        }
    }
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
