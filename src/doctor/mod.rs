//! `callguard doctor`: checks everything a workstation needs and says, line by line, what passes,
//! what is doubtful and what fails, with the fix for each. Exit 1 on any failure, so fleet tooling
//! can run it on every machine (`--json` for machines, a table for people).
//!
//! The rows come from their owners: the configuration and the PBX side ([`pbx`]) are the
//! doctor's own; every sink the daemon would run answers for itself through
//! [`Sink::healthcheck`](crate::sink::Sink::healthcheck) (the same client, secret reading and
//! signing as in production), then the evidence followers; a running daemon adds its parts'
//! states ([`parts`]).
//!
//! The checks are read-only: the evidence folder is checked where it is and probed with a hidden
//! file that is removed at once; `--send-test-ping` sends a real test ping to each webhook.
//! The table follows `language`; `--json` stays English (it is for machines).

pub mod parts;
pub mod pbx;

use std::path::Path;

use serde::Serialize;
use unicode_width::UnicodeWidthStr;

use crate::config::{Config, Language, Sources};
use crate::sink::HealthOptions;

pub use crate::escalation::health::TEST_EVENT;
pub use crate::health::{Check, Status};

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No check failed.
    pub ok: bool,
    /// This machine's host name.
    pub host: String,
    /// callguard's version.
    pub version: &'static str,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// The language the rows were written in (and the table's headings are).
    #[serde(skip)]
    pub language: Language,
}

/// `text` padded with spaces to `width` columns of a terminal (CJK characters take two).
fn pad(text: &str, width: usize) -> String {
    let w = UnicodeWidthStr::width(text);
    format!("{text}{}", " ".repeat(width.saturating_sub(w)))
}

impl Report {
    /// The report of `checks` on this machine (`ok` when none failed).
    pub fn new(checks: Vec<Check>, language: Language) -> Report {
        Report {
            ok: !checks.iter().any(|c| c.status == Status::Fail),
            host: hostname(),
            version: env!("CARGO_PKG_VERSION"),
            checks,
            language,
        }
    }

    /// The table for people: status, check, detail, and the fix under each line that needs one.
    pub fn table(&self) -> String {
        let lang = self.language;
        let (check_head, detail_head, fix_word) = match lang {
            Language::En => ("CHECK", "DETAIL", "fix: "),
            Language::Ja => ("項目", "内容", "対処："),
        };
        let width = self
            .checks
            .iter()
            .map(|c| UnicodeWidthStr::width(c.check.as_str()))
            .max()
            .unwrap_or(5)
            .max(5);
        // The status column: six columns in English (`pass  `), the labels' width + 2 in Japanese.
        let status_width = [Status::Pass, Status::Warn, Status::Fail]
            .iter()
            .map(|s| UnicodeWidthStr::width(s.label_in(lang)))
            .max()
            .unwrap_or(4)
            .max(4)
            + 2;
        let mut out = format!(
            "{}{}  {detail_head}\n",
            pad("", status_width),
            pad(check_head, width)
        );
        for c in &self.checks {
            out.push_str(&format!(
                "{}{}  {}\n",
                pad(c.status.label_in(lang), status_width),
                pad(&c.check, width),
                c.detail,
            ));
            if !c.fix.is_empty() {
                out.push_str(&format!(
                    "{}{}  {fix_word}{}\n",
                    pad("", status_width),
                    pad("", width),
                    c.fix
                ));
            }
        }
        let fails = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        let warns = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Warn)
            .count();
        let passed = self.checks.len() - fails - warns;
        out.push_str(&match lang {
            Language::En => format!(
                "\n{}: {passed} passed, {warns} warnings, {fails} failed\n",
                self.host
            ),
            Language::Ja => format!(
                "\n{}：正常 {passed} 件、注意 {warns} 件、異常 {fails} 件\n",
                self.host
            ),
        });
        out
    }
}

/// What the run may do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Send a real test ping to each webhook (else only check it is reachable).
    pub send_test_ping: bool,
    /// The rows' language; `None` = the configuration's `language` (English when the
    /// configuration does not load). `--json` asks for English.
    pub language: Option<Language>,
}

/// Loads the configuration the daemon would and runs every check.
pub async fn diagnose(explicit: Option<&Path>, opts: &Options) -> Report {
    let (cfg, lang, row) = match load(explicit, opts.language) {
        Ok(v) => v,
        Err(report) => return report,
    };
    let mut checks = vec![row];
    checks.extend(run_checks(&cfg, opts.send_test_ping, lang).await);
    Report::new(checks, lang)
}

/// The configuration as the daemon (or the floor service) loads it, the language of the rows
/// (`language`, else the configuration's), and the `config` row; a report of that one failed
/// row when it does not load (the other checks need it).
pub fn load(
    explicit: Option<&Path>,
    language: Option<Language>,
) -> Result<(Config, Language, Check), Report> {
    let loaded = Sources::discover(explicit).and_then(|s| Config::load(&s).map(|c| (c, s)));
    let (cfg, sources) = match loaded {
        Ok(v) => v,
        Err(e) => {
            // The configuration's errors are English; its language is not known.
            let lang = language.unwrap_or(Language::En);
            return Err(Report::new(
                vec![Check::new(
                    "config",
                    Status::Fail,
                    format!("{e}"),
                    crate::health::say(
                        lang,
                        "上に示した設定項目を直してください（どのファイルが設定しているかは `callguard config check --origin` でわかります）。ほかの確認には正しい設定が必要です",
                        "fix the key named above (`callguard config check --origin` shows which file sets it); the other checks need a valid configuration",
                    ),
                )],
                lang,
            ));
        }
    };
    let lang = language.unwrap_or(cfg.language);
    let layers: Vec<String> = sources
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let row = if layers.is_empty() {
        Check::new(
            "config",
            Status::Warn,
            crate::health::say(
                lang,
                "正しい設定ですが、設定ファイルが見つかりません：既定値で動きます",
                "valid, but no configuration file was found: built-in defaults",
            ),
            crate::health::say(
                lang,
                "/etc/callguard/callguard.toml を置くか（パッケージが入れます）、--config を指定してください",
                "install /etc/callguard/callguard.toml (the package does) or pass --config",
            ),
        )
    } else {
        Check::pass(
            "config",
            crate::health::say(
                lang,
                format!("正しい設定です（{}）", layers.join("、")),
                format!("valid ({})", layers.join(", ")),
            ),
        )
    };
    Ok((cfg, lang, row))
}

/// Sinks whose rows come first, in this order.
const SINK_ORDER: [&str; 3] = ["alerts", "evidence", "escalation"];

/// Every check after the configuration, in report order: the PBX side, each sink the daemon
/// would run, the evidence followers, then the running daemon's parts.
pub async fn run_checks(cfg: &Config, send_test_ping: bool, language: Language) -> Vec<Check> {
    let health = HealthOptions {
        send_test_ping,
        language,
    };
    let mut checks = pbx::checks(cfg, language).await;
    let mut sinks = crate::daemon::checked_sinks(cfg);
    // The rows keep the order the doctor has always printed; sinks it does not know follow
    // in registration order.
    sinks.sort_by_key(|s| {
        SINK_ORDER
            .iter()
            .position(|n| *n == s.name())
            .unwrap_or(SINK_ORDER.len())
    });
    for sink in sinks {
        checks.extend(sink.healthcheck(&health).await);
    }
    for follower in crate::evidence::followers::from_config(cfg) {
        checks.extend(follower.healthcheck().await);
    }
    // The archive follower exists only after the daemon's start-up preflight; its rows are the
    // ones its `healthcheck` returns.
    checks.extend(crate::archive::doctor::checks(cfg, language).await);
    checks.extend(parts::checks(cfg, language).await);
    checks
}

/// This machine's name, for the report and test pings.
pub fn hostname() -> String {
    crate::host::name()
}
