//! Ledger anchoring, the publishing side: an evidence follower on the sealed seam that
//! publishes every ledger line (a sealed folder or a chained addendum) as a `ledger` event, so
//! the floor keeps a copy of each workstation's ledger head off the machine. The follower's own
//! durable queue holds a line until the server has acknowledged it; the event id is derived from
//! the line, so a line offered again after a crash is stored once.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;

use super::config::FloorConfig;
use super::contract::{self, EventBody, FloorEvent};
use super::link::{ConnectMode, Link, LinkError};
use crate::evidence::followers::{EvidenceFollower, Sealed};
use crate::queue::Outcome;

/// The follower's name (its queue is `<data dir>/followers/floor-ledger`).
pub const NAME: &str = "floor-ledger";

/// Publishes ledger lines to the floor bus.
pub struct LedgerAnchor {
    floor: FloorConfig,
    agent: String,
    agent_name: String,
    host: String,
    /// The evidence public key file (`evidence.pub` in the data dir).
    public_key_file: std::path::PathBuf,
    link: OnceCell<Link>,
}

impl LedgerAnchor {
    /// The follower for `cfg`, or `None` without `[floor]`.
    pub fn from_config(cfg: &crate::config::Config) -> Option<Arc<dyn EvidenceFollower>> {
        let floor = cfg.floor.clone()?;
        let host = crate::host::name();
        let agent = floor.agent_id(&cfg.agent, &host);
        Some(Arc::new(LedgerAnchor {
            floor,
            agent,
            agent_name: cfg.agent.name.clone(),
            host,
            public_key_file: crate::evidence::keys::key_paths(&cfg.data_dir()).1,
            link: OnceCell::new(),
        }))
    }

    /// The `ledger` event of one sealed item.
    pub fn event(&self, item: &Sealed) -> FloorEvent {
        let at = chrono::DateTime::parse_from_rfc3339(&item.at)
            .unwrap_or_else(|_| chrono::Local::now().fixed_offset());
        FloorEvent {
            schema: contract::SCHEMA.into(),
            id: contract::event_id(&[
                &self.floor.site,
                &self.agent,
                &self.host,
                "ledger",
                &item.ledger_seq.to_string(),
                &item.ledger_line_sha256,
            ]),
            site: self.floor.site.clone(),
            host: self.host.clone(),
            agent: self.agent.clone(),
            agent_name: self.agent_name.clone(),
            call_id: Some(item.call_id.clone()),
            caller: Default::default(),
            at,
            elapsed_secs: None,
            level: item.level,
            body: EventBody::Ledger {
                seq: item.ledger_seq,
                manifest_sha256: item.manifest_sha256.clone(),
                line_sha256: item.ledger_line_sha256.clone(),
                prev: String::new(),
                dir: item.rel.clone(),
                public_key: self.public_key(),
            },
        }
    }

    /// The key that signs this workstation's evidence (base64, as `callguard key show` prints
    /// it); empty when it cannot be read (the floor then needs a key file for this host).
    fn public_key(&self) -> String {
        use base64::Engine as _;
        crate::evidence::keys::read_public(&self.public_key_file)
            .map(|k| base64::engine::general_purpose::STANDARD.encode(k.as_bytes()))
            .unwrap_or_default()
    }

    async fn link(&self) -> Result<&Link, LinkError> {
        self.link
            .get_or_try_init(|| {
                Link::connect(
                    &self.floor,
                    &self.agent,
                    &self.host,
                    ConnectMode::Background,
                )
            })
            .await
    }
}

impl EvidenceFollower for LedgerAnchor {
    fn name(&self) -> &str {
        NAME
    }

    fn retry(&self) -> crate::queue::RetryPolicy {
        // Like the backlog: keep trying, never give up on an anchor line.
        crate::queue::RetryPolicy {
            initial: std::time::Duration::from_secs(1),
            max: std::time::Duration::from_secs(30),
            retry_for: std::time::Duration::from_secs(365 * 24 * 3600),
        }
    }

    fn deliver<'a>(&'a self, item: &'a Sealed) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            let link = match self.link().await {
                Ok(l) => l,
                Err(e) => {
                    return Outcome::Retry {
                        after: None,
                        error: e.to_string(),
                    };
                }
            };
            let ev = self.event(item);
            let subject = ev.subject(&self.floor.site, &self.agent);
            match link.publish(subject, &ev.id, ev.to_json()).await {
                Ok(dup) => Outcome::Delivered(if dup { "duplicate" } else { "stored" }.into()),
                Err(e) => Outcome::Retry {
                    after: None,
                    error: e.to_string(),
                },
            }
        })
    }
}
