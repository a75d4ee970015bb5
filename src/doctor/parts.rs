//! The running daemon as the doctor sees it: when a daemon answers on the control socket, one
//! row for it and one per part (`part:connector`, `part:tracker`, …) with the state its
//! supervisor keeps. No daemon, no rows: the doctor also runs before the first start.

use std::time::Duration;

use crate::config::{Config, Language};
use crate::control::{DaemonStatus, Request};
use crate::health::{Check, Status, say};
use crate::supervisor::{PartState, PartStatus};

/// How long the doctor waits for a daemon's status (it probes the notification server first).
const STATUS_WAIT: Duration = Duration::from_secs(10);

/// The daemon's rows, or none when no daemon answers on `control.socket`.
pub async fn checks(cfg: &Config, lang: Language) -> Vec<Check> {
    let socket = cfg.control_socket();
    let asked = crate::control::request(&socket, &Request::Status);
    let status = match tokio::time::timeout(STATUS_WAIT, asked).await {
        Ok(Ok(r)) if r.ok => r
            .result
            .and_then(|v| serde_json::from_value::<DaemonStatus>(v).ok()),
        _ => None,
    };
    match status {
        Some(s) => rows(&s, lang),
        None => Vec::new(),
    }
}

/// `callguard 0.1.0 — running (pid 4711, since …)`: the first line of `status` and the
/// detail of the doctor's `daemon` row.
pub fn daemon_line(s: &DaemonStatus, lang: Language) -> String {
    say(
        lang,
        format!(
            "callguard {} — 動作中（pid {}、{} から）",
            s.version, s.pid, s.started_at
        ),
        format!(
            "callguard {} — running (pid {}, since {})",
            s.version, s.pid, s.started_at
        ),
    )
}

/// The rows for a daemon's status.
pub fn rows(s: &DaemonStatus, lang: Language) -> Vec<Check> {
    let mut out = vec![Check::pass("daemon", daemon_line(s, lang))];
    out.extend(s.parts.iter().map(|p| part_row(p, lang)));
    out
}

fn part_row(p: &PartStatus, lang: Language) -> Check {
    let name = format!("part:{}", p.name);
    let detail = describe(p, lang);
    match &p.state {
        PartState::Running { .. } => Check::pass(&name, detail),
        PartState::Stopped { .. } => Check::new(
            &name,
            Status::Warn,
            detail,
            say(
                lang,
                "デーモンは停止処理中です。終わったら起動し直してください（systemctl --user restart callguard）",
                "the daemon is shutting down; start it again once it has stopped (systemctl --user restart callguard)",
            ),
        ),
        PartState::Failed { .. } => Check::new(
            &name,
            Status::Fail,
            detail,
            say(
                lang,
                "デーモンは止まり、systemd が起動し直します。原因はログにあります（journalctl --user -u callguard）",
                "the daemon stops and systemd restarts it; the log says why (journalctl --user -u callguard)",
            ),
        ),
    }
}

/// A part's state in `lang`: what `status` and the doctor show.
pub fn describe(p: &PartStatus, lang: Language) -> String {
    match lang {
        Language::En => p.describe(),
        Language::Ja => match &p.state {
            PartState::Running { since } => format!("{} から動作中", since.to_rfc3339()),
            PartState::Stopped { since } => format!("{} に停止", since.to_rfc3339()),
            PartState::Failed { since, why } => {
                format!("異常終了（{}）：{why}", since.to_rfc3339())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_part_is_a_failing_row_with_its_reason() {
        let since = chrono::Local::now().fixed_offset();
        let p = PartStatus {
            name: "escalation".into(),
            state: PartState::Failed {
                since,
                why: "panicked: boom".into(),
            },
        };
        let row = part_row(&p, Language::Ja);
        assert_eq!(row.check, "part:escalation");
        assert_eq!(row.status, Status::Fail);
        assert!(row.detail.contains("異常終了") && row.detail.contains("boom"));
        assert!(!row.fix.is_empty());
        let en = part_row(&p, Language::En);
        assert!(en.detail.starts_with("FAILED since "), "{}", en.detail);
    }
}
