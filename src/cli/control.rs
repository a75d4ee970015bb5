//! The CLI commands that talk to the running daemon (`status`, `mark`, `note`, `escalate`):
//! one request through [`crate::control::client`], printing and exit codes here.

use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::control::{ClientError, DaemonStatus, EscalateResult, Request, request};

fn client_runtime() -> Option<tokio::runtime::Runtime> {
    super::start_runtime(false)
}

/// `callguard status [--json]`: 0 when the daemon answered, 1 when it is not running.
pub fn status_command(cfg: &Config, json: bool) -> ExitCode {
    let Some(rt) = client_runtime() else {
        return ExitCode::FAILURE;
    };
    let path = cfg.control_socket();
    let response = match rt.block_on(request(&path, &Request::Status)) {
        Ok(r) => r,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"running": false, "error": e.to_string()})
                );
                eprintln!("callguard: {e}");
            } else if let ClientError::NotRunning(path) = &e {
                eprintln!(
                    "callguard: {}",
                    crate::messages::status_not_running(path, cfg.language)
                );
            } else {
                eprintln!("callguard: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let status = match (response.ok, response.result) {
        (true, Some(v)) => match serde_json::from_value::<DaemonStatus>(v) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("callguard: unexpected status from the daemon: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => {
            eprintln!(
                "callguard: the daemon refused: {}",
                response.error.unwrap_or_default()
            );
            return ExitCode::FAILURE;
        }
    };
    if json {
        let mut v = serde_json::to_value(&status).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.insert("running".into(), true.into());
            if let Some(b) = crate::archive::status(cfg) {
                o.insert("archive".into(), b);
            }
        }
        println!("{v}");
    } else {
        print!("{}", super::status::render(&status, cfg.language));
        if let Some(line) = crate::archive::status_line(cfg) {
            println!("{line}");
        }
    }
    ExitCode::SUCCESS
}

/// `callguard reload`: 0 when the daemon runs the files' configuration now (or already did),
/// 2 when it refused them as invalid (it keeps the configuration it has), 3 when they are valid
/// but change keys that only a restart applies (nothing applied), 1 when no daemon answers.
/// The socket is found even when the new files are broken.
pub fn reload_command(explicit: Option<&std::path::Path>) -> ExitCode {
    use crate::config::Sources;
    use crate::reload::{Outcome, Record};
    // The files may be the broken ones being refused: read them leniently for the socket and
    // the language of the answer.
    let (path, lang) = match Sources::discover(explicit) {
        Ok(sources) => match Config::load(&sources) {
            Ok(cfg) => (cfg.control_socket(), cfg.language),
            Err(_) => {
                let loose = sources.leniently();
                (loose.control_socket(), loose.language)
            }
        },
        Err(e) => {
            eprintln!("callguard: configuration error: {e}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let Some(rt) = client_runtime() else {
        return ExitCode::FAILURE;
    };
    let response = match rt.block_on(request(&path, &Request::Reload)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("callguard: {e}");
            return ExitCode::FAILURE;
        }
    };
    let record = response
        .result
        .clone()
        .and_then(|v| serde_json::from_value::<Record>(v).ok());
    match (response.ok, record) {
        (true, Some(r)) if r.outcome == Outcome::Unchanged => {
            println!("{}", crate::messages::reload_unchanged(lang));
            ExitCode::SUCCESS
        }
        (true, Some(r)) => {
            println!("{}", crate::messages::reload_applied(lang, &r.keys));
            ExitCode::SUCCESS
        }
        (false, Some(r)) if r.outcome == Outcome::Refused => {
            eprintln!(
                "callguard: {}",
                crate::messages::reload_refused(lang, &r.detail)
            );
            ExitCode::from(super::EXIT_USAGE)
        }
        (false, Some(r)) if r.outcome == Outcome::NeedsRestart => {
            eprintln!(
                "callguard: {}",
                crate::messages::reload_needs_restart(lang, &r.detail)
            );
            ExitCode::from(super::EXIT_NEEDS_RESTART)
        }
        _ => {
            eprintln!(
                "callguard: the daemon did not reload: {}",
                response.error.unwrap_or_default()
            );
            ExitCode::FAILURE
        }
    }
}

/// Sends one request and maps a refusal to an exit code: 2 for "no such call" and bad
/// requests (the agent can fix them), 1 for everything else (no daemon, shutting down).
/// `alert`: when no daemon answers, also show a critical desktop notification (a hotkey's
/// output goes nowhere, so the agent must see it on the screen).
fn call_request(cfg: &Config, req: &Request, alert: bool) -> Result<serde_json::Value, ExitCode> {
    let rt = client_runtime().ok_or(ExitCode::FAILURE)?;
    let path = cfg.control_socket();
    let lang = cfg.language;
    let response = match rt.block_on(request(&path, req)) {
        Ok(r) => r,
        Err(e @ ClientError::NotRunning(_)) => {
            eprintln!("callguard: {}", crate::messages::not_running(lang));
            tracing::debug!(error = %e, "no daemon");
            if alert && let Err(why) = rt.block_on(crate::alerts::desktop::show_not_running(lang)) {
                eprintln!("callguard: {why}");
            }
            return Err(ExitCode::FAILURE);
        }
        Err(e) => {
            eprintln!("callguard: {e}");
            if alert {
                let _ = rt.block_on(crate::alerts::desktop::show_not_running(lang));
            }
            return Err(ExitCode::FAILURE);
        }
    };
    if !response.ok {
        eprintln!(
            "callguard: {}",
            crate::messages::refused(
                response.code.as_deref(),
                response.error.as_deref().unwrap_or("request refused"),
                lang
            )
        );
        return Err(match response.code.as_deref() {
            Some("no_current_call") | Some("not_in_progress") | Some("bad_request") => {
                ExitCode::from(super::EXIT_USAGE)
            }
            _ => ExitCode::FAILURE,
        });
    }
    Ok(response.result.unwrap_or_default())
}

/// `callguard mark KIND [--quote TEXT]`: 0 when marked, 2 for an unknown kind or no current
/// call, 1 when the daemon is not running (a critical desktop notification says so too).
pub fn mark_command(cfg: &Config, kind: &str, quote: Option<String>) -> ExitCode {
    let lang = cfg.language;
    let kind = match kind.parse::<crate::harassment::MarkKind>() {
        Ok(k) => k,
        Err(_) => {
            eprintln!("callguard: {}", crate::messages::unknown_kind(kind, lang));
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    let req = Request::Mark {
        kind: kind.as_str().to_string(),
        quote,
        call: None,
    };
    let value = match call_request(cfg, &req, true) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match serde_json::from_value::<crate::calls::MarkReceipt>(value) {
        Ok(r) => {
            for line in crate::messages::marked(kind, &r, lang) {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("callguard: unexpected answer from the daemon: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `callguard note [--call ID] --witness/--response/--quote/--next TEXT`: each given item is
/// added to the call's record (a signed addendum once the call is sealed).
pub fn note_command(
    cfg: &Config,
    call: Option<String>,
    items: Vec<(crate::events::NoteField, String)>,
) -> ExitCode {
    let lang = cfg.language;
    if items.is_empty() {
        eprintln!("callguard: {}", crate::messages::nothing_to_note(lang));
        return ExitCode::from(super::EXIT_USAGE);
    }
    for (field, text) in items {
        let req = Request::Note {
            call: call.clone(),
            field: field.clone(),
            text,
        };
        match call_request(cfg, &req, true) {
            Ok(v) => println!(
                "{}",
                crate::messages::noted(&field, v.as_str().unwrap_or("?"), lang)
            ),
            Err(code) => return code,
        }
    }
    ExitCode::SUCCESS
}

/// `callguard escalate [--note TEXT]`: 0 when the lead is being pinged, 2 when there is no
/// current call, 1 when the daemon is not running (a critical desktop notification says so
/// too) or no receiver is configured.
pub fn escalate_command(cfg: &Config, note: Option<String>) -> ExitCode {
    let lang = cfg.language;
    let value = match call_request(cfg, &Request::Escalate { note }, true) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let result = serde_json::from_value::<EscalateResult>(value).ok();
    match result {
        Some(r) if r.receivers == 0 => {
            eprintln!(
                "callguard: {}",
                crate::messages::no_receivers(&r.call.call_id, lang)
            );
            ExitCode::FAILURE
        }
        Some(r) => {
            let elapsed =
                crate::alerts::text::format_elapsed(Duration::from_secs(r.call.elapsed_secs), lang);
            println!(
                "{}",
                crate::messages::escalated(
                    &r.call.call_id,
                    &r.call.caller,
                    &elapsed,
                    r.receivers,
                    lang
                )
            );
            ExitCode::SUCCESS
        }
        None => {
            eprintln!("callguard: unexpected answer from the daemon");
            ExitCode::FAILURE
        }
    }
}
