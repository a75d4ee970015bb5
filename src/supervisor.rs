//! One supervisor for every long-running part of the daemon (connector, tracker, each sink,
//! each evidence follower, control server). A part that returns or panics before shutdown is a
//! failure: the supervisor logs which part died and why, cancels the rest (so sinks flush: open
//! recordings are sealed, pending deliveries stay on disk), and [`Supervisor::run`] returns the
//! error, so the process exits non-zero and systemd restarts it.

use std::future::Future;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

/// What a part is doing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum PartState {
    /// Working.
    Running {
        /// Since when.
        since: DateTime<FixedOffset>,
    },
    /// Ended as asked, at shutdown.
    Stopped {
        /// When.
        since: DateTime<FixedOffset>,
    },
    /// Died: returned early, returned an error, or panicked.
    Failed {
        /// When.
        since: DateTime<FixedOffset>,
        /// Why.
        why: String,
    },
}

/// One part as `status` and `doctor` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartStatus {
    /// The part's name (`connector`, `tracker`, `alerts`, `escalation`, `evidence`,
    /// `control`, `follower:<name>`).
    pub name: String,
    /// Its state.
    #[serde(flatten)]
    pub state: PartState,
}

impl PartStatus {
    /// `running since …`, `stopped since …`, `FAILED since …: why`.
    pub fn describe(&self) -> String {
        match &self.state {
            PartState::Running { since } => format!("running since {}", since.to_rfc3339()),
            PartState::Stopped { since } => format!("stopped since {}", since.to_rfc3339()),
            PartState::Failed { since, why } => {
                format!("FAILED since {}: {why}", since.to_rfc3339())
            }
        }
    }
}

/// The parts' states, shared with the control server.
#[derive(Debug, Clone, Default)]
pub struct Parts(Arc<Mutex<Vec<PartStatus>>>);

impl Parts {
    /// Every part, in start order.
    pub fn snapshot(&self) -> Vec<PartStatus> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn set(&self, name: &str, state: PartState) {
        if let Ok(mut v) = self.0.lock() {
            match v.iter_mut().find(|p| p.name == name) {
                Some(p) => p.state = state,
                None => v.push(PartStatus {
                    name: name.to_string(),
                    state,
                }),
            }
        }
    }
}

/// A part died before shutdown (or failed while shutting down).
#[derive(Debug, thiserror::Error)]
#[error("part `{part}` {why}")]
pub struct PartFailed {
    /// The part's name.
    pub part: String,
    /// What happened.
    pub why: String,
}

/// Runs named parts until shutdown.
pub struct Supervisor {
    tasks: JoinSet<anyhow::Result<()>>,
    names: std::collections::HashMap<Id, String>,
    shutdown: CancellationToken,
    parts: Parts,
}

fn now() -> DateTime<FixedOffset> {
    chrono::Local::now().fixed_offset()
}

impl Supervisor {
    /// A supervisor whose parts stop when `shutdown` is cancelled; it cancels `shutdown` itself
    /// when a part dies.
    pub fn new(shutdown: CancellationToken) -> Supervisor {
        Supervisor {
            tasks: JoinSet::new(),
            names: Default::default(),
            shutdown,
            parts: Parts::default(),
        }
    }

    /// Like [`new`](Self::new), recording states into `parts`.
    pub fn with_parts(shutdown: CancellationToken, parts: Parts) -> Supervisor {
        Supervisor {
            parts,
            ..Supervisor::new(shutdown)
        }
    }

    /// The parts' states (live).
    pub fn parts(&self) -> Parts {
        self.parts.clone()
    }

    /// Starts `part` under `name`.
    pub fn spawn<F>(&mut self, name: impl Into<String>, part: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = name.into();
        let part = fault::wrap(&name, part);
        let handle = self.tasks.spawn(part);
        self.parts.set(&name, PartState::Running { since: now() });
        self.names.insert(handle.id(), name);
    }

    /// Waits for every part. `Ok` when all ended after shutdown was asked for and none failed;
    /// otherwise the first failure, after the rest have been stopped and have flushed.
    pub async fn run(mut self) -> Result<(), PartFailed> {
        // A part that panics takes the tracker's bus down with it, so sinks may return (early)
        // before the panic is joined: a panic or an error is the cause, an early return only
        // when nothing worse happened.
        let mut first: Option<(u8, PartFailed)> = None;
        while let Some(joined) = self.tasks.join_next_with_id().await {
            let (id, outcome) = match joined {
                Ok((id, r)) => (id, r.map_err(|e| format!("failed: {e:#}"))),
                Err(e) => {
                    let id = e.id();
                    let why = if e.is_panic() {
                        format!("panicked: {}", panic_text(e.into_panic()))
                    } else {
                        "was cancelled".to_string()
                    };
                    (id, Err(why))
                }
            };
            let name = self.names.remove(&id).unwrap_or_else(|| "unknown".into());
            let (rank, why) = match outcome {
                Ok(()) if self.shutdown.is_cancelled() => {
                    tracing::debug!(part = %name, "part stopped");
                    self.parts.set(&name, PartState::Stopped { since: now() });
                    continue;
                }
                Ok(()) => (
                    1,
                    "stopped before shutdown (returned without an error)".to_string(),
                ),
                Err(why) => (2, why),
            };
            tracing::error!(part = %name, why = %why,
                "PART `{name}` DIED: {why}; stopping callguard so it can be restarted");
            self.parts.set(
                &name,
                PartState::Failed {
                    since: now(),
                    why: why.clone(),
                },
            );
            self.shutdown.cancel();
            if first.as_ref().is_none_or(|(r, _)| rank > *r) {
                first = Some((rank, PartFailed { part: name, why }));
            }
        }
        match first {
            Some((_, f)) => Err(f),
            None => Ok(()),
        }
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    match p.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => match p.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "(no message)".to_string(),
        },
    }
}

/// Test-only faults, compiled in only with the `fault-injection` feature (never in a release
/// build): `CALLGUARD_FAULT=<part>:panic` or `<part>:return` makes that part panic or return
/// at once, `<part>:panic-on-call` once its first call has started (sinks only, see
/// [`crate::daemon`]), `floor:panic-in-thread` on the floor's own thread.
pub mod fault {
    use std::future::Future;

    /// The fault asked for `part`, if any.
    #[cfg(feature = "fault-injection")]
    pub fn for_part(part: &str) -> Option<String> {
        let spec = std::env::var("CALLGUARD_FAULT").ok()?;
        let (p, what) = spec.split_once(':')?;
        (p == part).then(|| what.to_string())
    }

    /// The fault asked for `part`, if any.
    #[cfg(not(feature = "fault-injection"))]
    pub fn for_part(_part: &str) -> Option<String> {
        None
    }

    /// `part`, or a stand-in that fails at once when a fault is asked for it.
    pub(super) fn wrap<F>(
        name: &str,
        part: F,
    ) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        match for_part(name).as_deref() {
            Some("panic") => {
                let name = name.to_string();
                Box::pin(async move {
                    drop(part);
                    panic!("injected fault in {name}")
                })
            }
            Some("return") => Box::pin(async move {
                drop(part);
                Ok(())
            }),
            _ => Box::pin(part),
        }
    }

    /// `sink`, or (with `<name>:panic-on-call`) a wrapper that passes every action on and
    /// panics once the first call has started.
    #[cfg(feature = "fault-injection")]
    pub fn wrap_sink(sink: Box<dyn crate::sink::Sink>) -> Box<dyn crate::sink::Sink> {
        if for_part(sink.name()).as_deref() == Some("panic-on-call") {
            Box::new(PanicOnCall(sink))
        } else {
            sink
        }
    }

    /// `sink` as it is (faults are compiled in only with `fault-injection`).
    #[cfg(not(feature = "fault-injection"))]
    pub fn wrap_sink(sink: Box<dyn crate::sink::Sink>) -> Box<dyn crate::sink::Sink> {
        sink
    }

    #[cfg(feature = "fault-injection")]
    struct PanicOnCall(Box<dyn crate::sink::Sink>);

    #[cfg(feature = "fault-injection")]
    impl crate::sink::Sink for PanicOnCall {
        fn name(&self) -> &str {
            self.0.name()
        }

        fn wants_media(&self) -> bool {
            self.0.wants_media()
        }

        fn run(
            self: Box<Self>,
            mut actions: crate::sink::Actions,
            ctx: crate::sink::SinkContext,
        ) -> crate::sink::Running {
            let name = self.0.name().to_string();
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let inner = self.0.run(rx, ctx);
            Box::pin(async move {
                let forward = async move {
                    while let Some(a) = actions.recv().await {
                        let start = matches!(a, crate::events::Action::CallStarted(_));
                        let _ = tx.send(a);
                        if start {
                            tokio::task::yield_now().await;
                            panic!("injected fault in {name} on the first call");
                        }
                    }
                };
                let (r, ()) = tokio::join!(inner, forward);
                r
            })
        }
    }
}
