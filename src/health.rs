//! Health-check rows: what `callguard doctor` prints, and what each sink's
//! [`healthcheck`](crate::sink::Sink::healthcheck) returns.

use serde::Serialize;

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
            detail: detail.into(),
            fix: fix.into(),
        }
    }

    /// A passing row.
    pub fn pass(check: &str, detail: impl Into<String>) -> Check {
        Check::new(check, Status::Pass, detail, "")
    }
}
