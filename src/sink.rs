//! The one shape of a sink: a consumer of the call tracker's actions (desktop alerts, team-lead
//! pings, evidence, and later a bus publisher). Each runs as its own supervised part; the
//! daemon builds the list from the configuration in [`crate::daemon::sinks`], so adding a sink
//! is its module plus one line there.

use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::calls::Command;
use crate::events::{Action, Report};
use crate::health::Check;

/// What the tracker sends a sink: its ordered stream of actions.
pub type Actions = mpsc::UnboundedReceiver<Action>;

/// A sink at work: resolves when it has stopped (an error, or an early `Ok`, stops the daemon).
pub type Running = BoxFuture<'static, anyhow::Result<()>>;

/// A sink's doctor rows, being worked out.
pub type Checks<'a> = BoxFuture<'a, Vec<Check>>;

/// What every sink gets when it starts.
#[derive(Clone)]
pub struct SinkContext {
    /// Reports for people (status, demo timeline, tests); lossy.
    pub reports: broadcast::Sender<Report>,
    /// Commands to the tracker (problems, the agent's own escalation).
    pub commands: mpsc::Sender<Command>,
    /// Cancelled at shutdown. A sink must still drain its action queue until it closes (the
    /// tracker closes it last), so nothing the tracker decided is lost.
    pub shutdown: CancellationToken,
    /// The evidence followers' durable hand-off (used by the evidence sink).
    pub handoff: crate::evidence::followers::Handoff,
}

/// How far a health check may go.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// Send a real test message to each receiver (`doctor --send-test-ping`).
    pub send_test_ping: bool,
    /// The language of the rows' details and fixes (the doctor's `--json` asks for English).
    pub language: crate::config::Language,
}

/// A consumer of the tracker's actions.
///
/// `run` returns once its action queue has closed and its work is flushed (open recordings
/// sealed, pending deliveries on disk). Returning (or panicking) earlier is a failure of the
/// whole daemon: the supervisor stops everything and the process exits non-zero.
pub trait Sink: Send + Sync {
    /// The part's name in logs, `status` and `doctor` (`alerts`, `escalation`, `evidence`).
    fn name(&self) -> &str;

    /// Whether the sink also wants audio frames (the recorder); most do not.
    fn wants_media(&self) -> bool {
        false
    }

    /// Runs the sink until `actions` closes.
    fn run(self: Box<Self>, actions: Actions, ctx: SinkContext) -> Running;

    /// The doctor's rows for this sink, checked with the same client, secrets and signing as
    /// production uses.
    fn healthcheck<'a>(&'a self, opts: &'a HealthOptions) -> Checks<'a> {
        let _ = opts;
        Box::pin(async { Vec::new() })
    }
}
