//! Health-check rows: what `callguard doctor` prints, and what each sink's
//! [`healthcheck`](crate::sink::Sink::healthcheck) returns.

use std::time::Duration;

use serde::Serialize;

use crate::config::Language;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Works.
    Pass,
    /// Works, but something is doubtful or cannot be told.
    Warn,
    /// Does not work: the agent loses a function.
    Fail,
}

impl Status {
    /// The word printed in the doctor's table.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked (`config`, `pbx`, `clock`, `notifications`, `audio`, `evidence`,
    /// `disk`, `signing-key`, `webhook[i]`).
    pub check: String,
    /// Pass, warn or fail.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about it; empty when it passes.
    pub fix: String,
}

impl Check {
    /// A row.
    pub fn new(
        check: &str,
        status: Status,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            check: check.to_string(),
            status,
            // HTTP client errors repeat the full URL, token included.
            detail: crate::redact::redact(&detail.into()),
            fix: fix.into(),
        }
    }

    /// A passing row.
    pub fn pass(check: &str, detail: impl Into<String>) -> Check {
        Check::new(check, Status::Pass, detail, "")
    }
}

impl Status {
    /// The word printed in the doctor's table, in `lang`.
    pub fn label_in(self, lang: Language) -> &'static str {
        match lang {
            Language::En => self.label(),
            Language::Ja => match self {
                Status::Pass => "正常",
                Status::Warn => "注意",
                Status::Fail => "異常",
            },
        }
    }
}

/// The text in `lang`: a check's detail and fix are written in both languages where they are
/// made, so each sink's rows read in the agent's language without a lookup table to drift.
pub fn say(lang: Language, ja: impl Into<String>, en: impl Into<String>) -> String {
    match lang {
        Language::Ja => ja.into(),
        Language::En => en.into(),
    }
}

/// How long one network or D-Bus probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a blocking probe on a thread of its own, giving up after [`PROBE_TIMEOUT`]. A detached
/// thread, not `spawn_blocking`, so a hung probe (a stuck session bus) cannot hold the process
/// at exit.
pub async fn off_thread<T, F>(f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("callguard-health-probe".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    tokio::time::timeout(PROBE_TIMEOUT, rx).await.ok()?.ok()
}
