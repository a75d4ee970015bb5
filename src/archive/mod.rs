//! Evidence off the workstation: every sealed call, addendum and ledger line copied to
//! S3-compatible object storage under Object Lock (COMPLIANCE retention, legal hold on serious
//! incidents), each object written once with a checksum the store confirms; `verify s3://…`
//! checks the archive from any machine. Layout (DESIGN "The floor tier"):
//! `<prefix>/<host>/YYYY/MM/DD/<folder>/<file>` and `<prefix>/<host>/ledger/<seq>.json`.

pub mod archiver;
pub mod config;
pub mod doctor;
pub mod follower;
pub mod keep_local;
pub mod remote;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::calls::Command;
use crate::config::Config;
use crate::events::Problem;
use archiver::Archiver;
use store::{Store, StoreError};

/// The host name objects are filed under (the same as in each manifest).
pub fn host() -> String {
    crate::evidence::manifest::host_name()
}

/// The archive backlog for `callguard status --json` (read from the evidence root and the
/// archiver's state); `None` without `[archive]`.
pub fn status(cfg: &Config) -> Option<serde_json::Value> {
    cfg.archive.enabled().then(|| {
        serde_json::to_value(archiver::backlog(&cfg.evidence_dir(), &cfg.data_dir()))
            .unwrap_or_default()
    })
}

/// The archive line of `callguard status`.
pub fn status_line(cfg: &Config) -> Option<String> {
    cfg.archive.enabled().then(|| {
        let backlog = archiver::backlog(&cfg.evidence_dir(), &cfg.data_dir());
        let (bucket, prefix) = (&cfg.archive.bucket, cfg.archive.clean_prefix());
        match cfg.language {
            crate::config::Language::Ja => format!(
                "  保管先 s3://{bucket}/{prefix}：{}",
                doctor::describe_ja(&backlog)
            ),
            crate::config::Language::En => format!(
                "  archive s3://{bucket}/{prefix}: {}",
                doctor::describe(&backlog)
            ),
        }
    })
}

/// Why the daemon refuses to start with this `[archive]`.
#[derive(Debug, thiserror::Error)]
#[error("archive: {0}")]
pub struct PreflightError(String);

/// Checks at start-up that the store takes our credentials and the bucket exists. A store
/// that does not answer is no reason to refuse (the backlog waits for it); a store that
/// answers "no such bucket" or "access denied" is.
pub async fn preflight(cfg: &Config) -> Result<Option<Store>, PreflightError> {
    if !cfg.archive.enabled() {
        return Ok(None);
    }
    let store = Store::connect(&cfg.archive)
        .await
        .map_err(|e| PreflightError(e.to_string()))?;
    match store.check_bucket().await {
        Ok(()) => Ok(Some(store)),
        Err(e @ StoreError::Setup(_)) => Err(PreflightError(e.to_string())),
        Err(e) => {
            tracing::warn!(error = %e, "the archive store does not answer now; sealed calls wait in the backlog");
            Ok(Some(store))
        }
    }
}

/// The archiver shared by the follower (which archives what is sealed, through its durable
/// queue) and the archive part (catch-up passes, backlog alert, conflicts, local clean-up).
pub type SharedArchiver = Arc<tokio::sync::Mutex<Archiver>>;

/// The archiver of this workstation over `store`.
pub fn shared(cfg: &Config, store: Store) -> SharedArchiver {
    Arc::new(tokio::sync::Mutex::new(Archiver::new(
        store,
        &cfg.archive,
        &host(),
        &cfg.evidence_dir(),
        &cfg.data_dir(),
    )))
}

/// The archive part, until shutdown: at start it ends the uploads an earlier run left open,
/// then every `POLL` (sooner after a failure, with a growing delay up to `archive.retry_max`)
/// it catches up on anything the follower's queue has not archived, pings the lead about new
/// conflicts and, once, about a backlog older than `archive.alert_after`, and removes local
/// copies due under `archive.keep_local_days`.
pub async fn run(
    cfg: Config,
    archiver: SharedArchiver,
    commands: mpsc::Sender<Command>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    const POLL: Duration = Duration::from_secs(30);
    let a = &cfg.archive;
    let mut delay = Duration::from_secs(1);
    let mut leftovers_done = false;
    loop {
        let wait = {
            let mut archiver = archiver.lock().await;
            let mut failed = None;
            if !leftovers_done {
                match archiver.abort_leftover_uploads().await {
                    Ok(_) => leftovers_done = true,
                    Err(e) => {
                        archiver.record_error(&e);
                        failed = Some(e);
                    }
                }
            }
            if failed.is_none() {
                match archiver.pass().await {
                    Ok(r) => {
                        if r.lines > 0 {
                            tracing::info!(
                                lines = r.lines,
                                written = r.written,
                                already = r.already_there,
                                bytes = r.bytes,
                                "evidence archived"
                            );
                        }
                        if let Some(days) = a.keep_local_days {
                            keep_local::sweep(&mut archiver, &cfg, days).await;
                        }
                    }
                    Err(e) => failed = Some(e),
                }
            }
            for c in archiver.take_unreported_conflicts() {
                let _ = commands
                    .send(Command::Problem(Problem {
                        call_id: None,
                        kind: "archive.conflict".into(),
                        text: c,
                    }))
                    .await;
            }
            alert_if_old(&mut archiver, &cfg, &commands).await;
            match failed {
                None => {
                    delay = Duration::from_secs(1);
                    POLL
                }
                Some(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "archiving failed; the backlog waits");
                    let d = delay;
                    delay = (delay * 2).min(a.retry_max);
                    d
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn alert_if_old(archiver: &mut Archiver, cfg: &Config, commands: &mpsc::Sender<Command>) {
    let b = archiver::backlog(&cfg.evidence_dir(), &cfg.data_dir());
    let Some(oldest) = b.oldest.clone() else {
        return;
    };
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(&oldest) else {
        return;
    };
    let age = chrono::Local::now().fixed_offset() - at;
    let limit =
        chrono::Duration::from_std(cfg.archive.alert_after).unwrap_or(chrono::Duration::MAX);
    if age < limit {
        return;
    }
    if archiver.state().alerted_oldest.as_deref() == Some(oldest.as_str()) {
        return;
    }
    let text = format!(
        "evidence not archived for {}: {} call(s), {} bytes waiting; last error: {}",
        humantime::format_duration(age.to_std().unwrap_or_default()),
        b.folders,
        b.bytes,
        b.last_error.as_deref().unwrap_or("none")
    );
    tracing::error!(%text, "archive backlog too old");
    if commands
        .send(Command::Problem(Problem {
            call_id: None,
            kind: "archive.backlog".into(),
            text,
        }))
        .await
        .is_ok()
    {
        archiver.set_alerted(oldest);
    }
}
