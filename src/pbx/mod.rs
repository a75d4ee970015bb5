//! PBX connectors: each turns one PBX's wire protocol into [`PbxEvent`]s for the tracker.

pub mod ari;
pub mod asterisk;
pub mod backoff;
pub mod generic;
pub mod ws;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, PbxKind};
use crate::events::PbxEvent;

/// Runs the connector the configuration asks for, until `shutdown`.
pub async fn run(cfg: Config, events: mpsc::Sender<PbxEvent>, shutdown: CancellationToken) {
    match cfg.pbx.kind {
        PbxKind::Generic => {
            generic::run(generic::Options::from_config(&cfg), events, shutdown).await
        }
        PbxKind::Asterisk => {
            asterisk::run(asterisk::Options::from_config(&cfg), events, shutdown).await
        }
    }
}

/// The URL without user info, for logs and status.
pub fn display_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}
