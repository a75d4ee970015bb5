//! Asterisk connector: follows a real Asterisk over ARI. It reads `/ari/events` (subscribed to
//! everything, so it observes calls without taking them into its application), turns the agent's
//! channels into call starts and ends, resynchronizes with `GET /ari/channels` after every
//! (re)connect (Asterisk keeps no backlog), and drives the PBX-side work of a call: the snoop that
//! records it, the download of that recording at the end, and the notice whispered into the call.
//!
//! The parts: [`connection`] holds the event loop and the reconnects; [`recording`] the state of
//! each call's recording from the snoop to the handed-on outcome; [`notice`] the whispered
//! notice; [`snoop`] what both need from a snoop channel — it can be recorded or played into
//! only once it has entered the application (its `StasisStart`), which comes after the `200`
//! that created it.

mod connection;
mod notice;
mod recording;
mod snoop;

use std::path::PathBuf;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ari::channels::AgentChannels;
use super::ws::Credentials;
use crate::config::{Config, EvidenceSource};
use crate::events::PbxEvent;

/// Prefix of the recordings callguard makes: `callguard/<agent channel id>`.
pub const RECORDING_PREFIX: &str = "callguard/";
/// Id of the recording snoop of a channel: `cg-snoop-<channel id>`.
const SNOOP_PREFIX: &str = "cg-snoop-";
/// Id of the notice (whisper) snoop of a channel: `cg-notice-<channel id>`.
const NOTICE_PREFIX: &str = "cg-notice-";

/// What the connector needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `pbx.url`: `ws://HOST:8088` or `wss://…`.
    pub url: String,
    /// ARI application name.
    pub app: String,
    /// ARI user and password.
    pub creds: Credentials,
    /// Private CA for wss/https.
    pub ca_file: String,
    /// Which channels are agent calls.
    pub agents: AgentChannels,
    /// Record each call on Asterisk and download it at the end (`evidence.source = "asterisk"`).
    pub record: bool,
    /// Where downloads are written before the evidence sink takes them.
    pub staging: PathBuf,
    /// Sound to whisper into each new call (`prompt.into_call`).
    pub notice_sound: Option<String>,
}

impl Options {
    /// From the configuration. A password file that cannot be read is logged and skipped.
    pub fn from_config(cfg: &Config) -> Options {
        let password = cfg.pbx_password().unwrap_or_else(|e| {
            tracing::error!(error = %e, "PBX password unavailable");
            None
        });
        let app = if cfg.pbx.app.trim().is_empty() {
            default_app()
        } else {
            cfg.pbx.app.trim().to_string()
        };
        Options {
            url: cfg.pbx.url.clone(),
            app,
            creds: Credentials {
                username: cfg.pbx.username.clone(),
                password,
            },
            ca_file: cfg.pbx.ca_file.clone(),
            agents: AgentChannels::new(&cfg.agent.endpoint, &cfg.agent.endpoints),
            record: cfg.evidence.source == EvidenceSource::Asterisk,
            staging: staging_dir(cfg),
            notice_sound: (cfg.prompt.into_call && !cfg.prompt.asterisk_sound.trim().is_empty())
                .then(|| cfg.prompt.asterisk_sound.trim().to_string()),
        }
    }
}

/// `callguard-<hostname>`.
pub fn default_app() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".into());
    format!("callguard-{host}")
}

/// Where downloaded PBX recordings wait for the evidence sink: `<evidence.dir>/.staging`
/// (inside the evidence tree, so moving them into a call's folder is a rename).
pub fn staging_dir(cfg: &Config) -> PathBuf {
    cfg.evidence_dir()
        .join(crate::evidence::layout::STAGING_DIR)
}

/// Runs until `shutdown`: connect, resync, follow events, reconnect with backoff.
pub async fn run(opts: Options, events: mpsc::Sender<PbxEvent>, shutdown: CancellationToken) {
    connection::run(opts, events, shutdown).await
}

/// The tracker has stopped: nothing more to do.
struct Gone;
