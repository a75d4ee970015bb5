//! Evidence off the workstation: every sealed call, addendum and ledger line copied to
//! S3-compatible object storage under Object Lock (COMPLIANCE retention, legal hold on serious
//! incidents), each object written once with a checksum the store confirms; `verify s3://…`
//! checks the archive from any machine. Layout (DESIGN "The floor tier"):
//! `<prefix>/<host>/YYYY/MM/DD/<folder>/<file>` and `<prefix>/<host>/ledger/<seq>.json`.

pub mod archiver;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod keep_local;
pub mod remote;
pub mod store;

use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::calls::Command;
use crate::config::Config;
use crate::events::{Problem, Report};
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
        format!(
            "  archive s3://{}/{}: {}",
            cfg.archive.bucket,
            cfg.archive.clean_prefix(),
            doctor::describe(&archiver::backlog(&cfg.evidence_dir(), &cfg.data_dir()))
        )
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

/// Runs the archiver until shutdown: a pass at start, then one after every seal (and every
/// `POLL` in case a seal was missed); while the store fails, passes are retried with a growing
/// delay up to `archive.retry_max`. The lead is pinged once when the oldest waiting call is
/// older than `archive.alert_after`.
pub async fn run(
    cfg: Config,
    store: Store,
    mut reports: broadcast::Receiver<Report>,
    commands: mpsc::Sender<Command>,
    shutdown: CancellationToken,
) {
    const POLL: Duration = Duration::from_secs(30);
    let a = &cfg.archive;
    let mut archiver = Archiver::new(
        store.clone(),
        a,
        &host(),
        &cfg.evidence_dir(),
        &cfg.data_dir(),
    );
    let mut delay = Duration::from_secs(1);
    let mut first = true;
    loop {
        let wait = if first {
            first = false;
            match archiver.abort_leftover_uploads().await {
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot end the uploads an earlier run left open; retrying");
                    archiver.record_error(&e);
                    Some(delay)
                }
            }
        } else {
            None
        };
        let wait = match wait {
            Some(w) => w,
            None => match archiver.pass().await {
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
                    for c in &r.conflicts {
                        let _ = commands
                            .send(Command::Problem(Problem {
                                call_id: None,
                                kind: "archive.conflict".into(),
                                text: c.clone(),
                            }))
                            .await;
                    }
                    delay = Duration::from_secs(1);
                    if let Some(days) = a.keep_local_days {
                        keep_local::sweep(&mut archiver, &cfg, days).await;
                    }
                    POLL
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "archiving failed; the backlog waits");
                    let d = delay;
                    delay = (delay * 2).min(a.retry_max);
                    d
                }
            },
        };
        alert_if_old(&mut archiver, &cfg, &commands).await;
        let sealed = async {
            loop {
                match reports.recv().await {
                    Ok(Report::Sealed { .. }) => return true,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return false,
                }
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            more = sealed => {
                if !more {
                    // No more reports (daemon stopping): keep going on the timer only.
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
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
