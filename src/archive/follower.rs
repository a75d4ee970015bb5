//! The archive as a follower of sealed evidence: each sealed folder and chained addendum comes
//! through the follower's durable queue (`<data dir>/followers/archive/`) and is delivered when
//! its ledger line and every object it names are archived and confirmed.

use futures_util::future::BoxFuture;

use super::SharedArchiver;
use crate::config::Config;
use crate::evidence::followers::{EvidenceFollower, Sealed};
use crate::health::Check;
use crate::queue::{Outcome, RetryPolicy};

/// Archives what the sealer hands over.
pub struct ArchiveFollower {
    archiver: SharedArchiver,
    cfg: Config,
}

impl ArchiveFollower {
    /// A follower over the shared archiver.
    pub fn new(cfg: &Config, archiver: SharedArchiver) -> ArchiveFollower {
        ArchiveFollower {
            archiver,
            cfg: cfg.clone(),
        }
    }
}

impl EvidenceFollower for ArchiveFollower {
    fn name(&self) -> &str {
        "archive"
    }

    fn deliver<'a>(&'a self, item: &'a Sealed) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let mut a = self.archiver.lock().await;
            match a.archive_through(item.ledger_seq).await {
                Ok(true) => Outcome::Delivered(format!(
                    "s3://{}/{}ledger/{}.json",
                    self.cfg.archive.bucket,
                    a.host_prefix(),
                    item.ledger_seq
                )),
                // A conflict on this line (or an earlier one): kept, retried, shown by status.
                Ok(false) => Outcome::Retry {
                    after: None,
                    error: a
                        .state()
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "not archived yet".into()),
                },
                Err(e) => Outcome::Retry {
                    after: None,
                    error: e.to_string(),
                },
            }
        })
    }

    fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            initial: std::time::Duration::from_secs(1),
            max: self.cfg.archive.retry_max,
            // Evidence is never given up on: an outage of any length ends in the archive.
            retry_for: std::time::Duration::from_secs(10 * 365 * 24 * 3600),
        }
    }

    fn healthcheck(&self) -> BoxFuture<'_, Vec<Check>> {
        Box::pin(super::doctor::checks(&self.cfg, self.cfg.language))
    }
}
