//! `callguard doctor`: runs the checks of [`crate::doctor`], prints the table or JSON, and exits
//! 1 on any failure.

use std::path::Path;
use std::process::ExitCode;

use crate::doctor::{Options, diagnose};

/// Entry point of `callguard doctor`.
pub fn main(explicit: Option<&Path>, json: bool, send_test_ping: bool) -> ExitCode {
    let Some(rt) = super::start_runtime(true) else {
        return ExitCode::FAILURE;
    };
    // Machine output stays English whatever `language` says.
    let opts = Options {
        send_test_ping,
        language: json.then_some(crate::config::Language::En),
    };
    let report = rt.block_on(diagnose(explicit, &opts));
    finish(rt, &report, json)
}

/// Prints a doctor's `report` (JSON or the table), lets `rt` go, and gives the exit code: 1 on
/// any failure. Shared by `callguard doctor` and `callguard floor doctor`.
pub(super) fn finish(
    rt: tokio::runtime::Runtime,
    report: &crate::doctor::Report,
    json: bool,
) -> ExitCode {
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("callguard: cannot render the report: {e}"),
        }
    } else {
        print!("{}", report.table());
    }
    // Probes that hang (a stuck session bus) run on threads of their own: do not wait for them.
    rt.shutdown_background();
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
