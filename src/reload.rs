//! Reloading the running daemon's configuration (`callguard reload`, SIGHUP).
//!
//! The files are read and validated in full first, exactly as at start. A configuration that
//! is invalid is refused as a whole: the daemon goes on with the one it has, and says so in the
//! log (file, line and key, from [`crate::config`]'s error reporting), on the desktop and in
//! `status` until a reload succeeds. A valid one is compared key by key with the running one:
//! when every changed key is one the parts take live ([`LIVE_KEYS`]), the call tracker switches
//! and tells every sink ([`crate::events::Action::Reconfigured`]) in order with the actions
//! around it; when any changed key needs a restart, nothing is applied (never half of a
//! configuration) and the answer names those keys. Nothing is restarted by a reload, so an
//! open call keeps recording into its folder and is sealed once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::calls::Command;
use crate::config::{Config, Sources};

/// Keys (and the tables or arrays under them) that a reload applies live:
/// - `language`: desktop texts, the escalate button, the tray, lead pings, and the incident
///   record of calls that start from now on;
/// - `warning`: the ladder, for calls in progress too (a warning already given is not given
///   again; the next one takes its new time, at once if the call is already past it);
/// - `prompt.notice`, `prompt.chime`, `prompt.local`: the sounds of this workstation;
/// - `escalation.webhook`, `escalation.coalesce`: pings raised from now on (those already in
///   the outbox go where they were meant to);
/// - `marks`: the rule table, from the next call on.
///
/// With `[floor]` configured, `language` and `escalation.webhook` also reach the floor link,
/// which takes them only at start: then they need a restart too.
pub const LIVE_KEYS: [&str; 8] = [
    "language",
    "warning",
    "prompt.notice",
    "prompt.chime",
    "prompt.local",
    "escalation.webhook",
    "escalation.coalesce",
    "marks",
];

/// Keys that are live only without `[floor]`.
const LIVE_WITHOUT_FLOOR: [&str; 2] = ["language", "escalation.webhook"];

/// How long the call tracker may take to switch.
const TRACKER_WAIT: Duration = Duration::from_secs(10);

/// What became of one reload.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new configuration runs.
    Applied,
    /// The files say what already runs.
    Unchanged,
    /// Invalid: the previous configuration still runs.
    Refused,
    /// Valid, but it changes keys that only a restart applies: nothing was applied.
    NeedsRestart,
}

/// The last reload, for the answer and for `status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// When (RFC 3339, local time).
    pub at: String,
    /// What became of it.
    pub outcome: Outcome,
    /// Why it was refused or not applied; for people.
    pub detail: String,
    /// The keys that changed (applied) or that need a restart.
    #[serde(default)]
    pub keys: Vec<String>,
}

impl Record {
    /// Whether the daemon runs what the files say.
    pub fn is_good(&self) -> bool {
        matches!(self.outcome, Outcome::Applied | Outcome::Unchanged)
    }

    /// The `status` line: `config: reload failed at 14:02: …`.
    pub fn describe(&self) -> String {
        let hhmm = chrono::DateTime::parse_from_rfc3339(&self.at)
            .map(|t| t.format("%H:%M").to_string())
            .unwrap_or_else(|_| self.at.clone());
        match self.outcome {
            Outcome::Applied => format!(
                "config: reloaded at {hhmm} ({} changed: {})",
                self.keys.len(),
                self.keys.join(", ")
            ),
            Outcome::Unchanged => format!("config: reloaded at {hhmm} (no change)"),
            Outcome::Refused => format!(
                "config: reload failed at {hhmm}: {} — running on the previous configuration",
                self.detail
            ),
            Outcome::NeedsRestart => {
                format!("config: reload at {hhmm} not applied: {}", self.detail)
            }
        }
    }
}

impl Record {
    /// [`Record::describe`] in Japanese, for `status` under `language = "ja"`.
    pub fn describe_ja(&self) -> String {
        let hhmm = chrono::DateTime::parse_from_rfc3339(&self.at)
            .map(|t| t.format("%H:%M").to_string())
            .unwrap_or_else(|_| self.at.clone());
        match self.outcome {
            Outcome::Applied => format!(
                "設定：{hhmm} に再読み込みしました（{} 件変更：{}）",
                self.keys.len(),
                self.keys.join("、")
            ),
            Outcome::Unchanged => format!("設定：{hhmm} に再読み込みしました（変更なし）"),
            Outcome::Refused => format!(
                "設定：{hhmm} の再読み込みは失敗しました：{}（以前の設定で動作中）",
                self.detail
            ),
            Outcome::NeedsRestart => {
                format!(
                    "設定：{hhmm} の再読み込みは適用されていません：{}",
                    self.detail
                )
            }
        }
    }
}

/// Reloads for one daemon; shared by the control socket and the SIGHUP listener.
pub struct Reloader {
    /// `--config PATH` of the daemon (else the usual lookup, done again at each reload so a
    /// new drop-in in `conf.d` is seen).
    explicit: Option<PathBuf>,
    current: Mutex<Arc<Config>>,
    last: Mutex<Option<Record>>,
    commands: mpsc::Sender<Command>,
    desktop: bool,
    /// One reload at a time: two at once could apply in the wrong order.
    serial: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// For a daemon running `cfg` (read from `explicit` or the usual lookup); the tracker takes
    /// new configurations through `commands`; `desktop`: say a refusal on the desktop.
    pub fn new(
        cfg: &Config,
        explicit: Option<PathBuf>,
        commands: mpsc::Sender<Command>,
        desktop: bool,
    ) -> Reloader {
        Reloader {
            explicit,
            current: Mutex::new(Arc::new(cfg.clone())),
            last: Mutex::new(None),
            commands,
            desktop,
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// The configuration that runs now.
    pub fn current(&self) -> Arc<Config> {
        match self.current.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The last reload, if any.
    pub fn last(&self) -> Option<Record> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Reads, validates and applies the configuration files; `trigger` (`reload`, `SIGHUP`)
    /// goes into the log.
    pub async fn reload(&self, trigger: &str) -> Record {
        let _one = self.serial.lock().await;
        let explicit = self.explicit.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            Sources::discover(explicit.as_deref()).and_then(|s| Config::load(&s))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        let current = self.current();
        let record = match loaded {
            Err(detail) => self.refused(&current, detail),
            Ok(new) => {
                let changed = changed_keys(&current, &new);
                let restart: Vec<String> = changed
                    .iter()
                    .filter(|k| needs_restart(k, &current, &new))
                    .cloned()
                    .collect();
                if changed.is_empty() {
                    record(Outcome::Unchanged, String::new(), Vec::new())
                } else if !restart.is_empty() {
                    let detail = format!(
                        "{} only change at a restart (systemctl --user restart callguard); \
                         nothing was applied",
                        restart.join(", ")
                    );
                    record(Outcome::NeedsRestart, detail, restart)
                } else {
                    self.apply(new, changed).await
                }
            }
        };
        match record.outcome {
            Outcome::Applied => tracing::info!(trigger, changed = %record.keys.join(", "),
                "configuration reloaded"),
            Outcome::Unchanged => {
                tracing::info!(trigger, "configuration reloaded: nothing changed")
            }
            Outcome::Refused => tracing::error!(
                trigger,
                "CONFIGURATION RELOAD REFUSED, keeping the running configuration: {}",
                record.detail
            ),
            Outcome::NeedsRestart => tracing::warn!(
                trigger,
                "configuration reload not applied: {}",
                record.detail
            ),
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(record.clone());
        }
        record
    }

    /// Hands a valid configuration with only live changes to the tracker (which tells the
    /// sinks), then makes it current.
    async fn apply(&self, new: Config, changed: Vec<String>) -> Record {
        let new = Arc::new(new);
        let (reply, done) = oneshot::channel();
        let cmd = Command::Reconfigure {
            cfg: new.clone(),
            reply,
        };
        let switched = match self.commands.send(cmd).await {
            Ok(()) => tokio::time::timeout(TRACKER_WAIT, done)
                .await
                .is_ok_and(|r| r.is_ok()),
            Err(_) => false,
        };
        if !switched {
            let current = self.current();
            return self.refused(
                &current,
                "the call tracker did not take the new configuration (shutting down?)".into(),
            );
        }
        if let Ok(mut c) = self.current.lock() {
            *c = new;
        }
        record(Outcome::Applied, String::new(), changed)
    }

    /// A refusal: said on the desktop (in the running configuration's language), not waited
    /// for.
    fn refused(&self, current: &Config, detail: String) -> Record {
        if self.desktop {
            let (summary, body) = crate::alerts::text::config_refused(current.language, &detail);
            tokio::spawn(async move {
                if let Err(e) =
                    crate::alerts::desktop::show_config_problem(&summary, &body, false).await
                {
                    tracing::warn!(error = %e, "the refused reload could not be shown on the desktop");
                }
            });
        }
        record(Outcome::Refused, detail, Vec::new())
    }
}

fn record(outcome: Outcome, detail: String, keys: Vec<String>) -> Record {
    Record {
        at: chrono::Local::now().fixed_offset().to_rfc3339(),
        outcome,
        detail: crate::redact::redact(&detail),
        keys,
    }
}

/// Whether a change to `key` needs a restart of the daemon.
pub fn needs_restart(key: &str, old: &Config, new: &Config) -> bool {
    let under = |p: &str| {
        key == p || key.starts_with(&format!("{p}.")) || key.starts_with(&format!("{p}["))
    };
    let floor = old.floor.is_some() || new.floor.is_some();
    !LIVE_KEYS
        .iter()
        .any(|p| under(p) && !(floor && LIVE_WITHOUT_FLOOR.contains(p)))
}

/// The dotted keys (`warning[0].after`) whose effective values differ, secrets included in
/// the comparison (a new token is a change) but never in the result.
pub fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let (Ok(a), Ok(b)) = (toml::Value::try_from(old), toml::Value::try_from(new)) else {
        // Not renderable: treat the whole as changed, so it is not half-applied.
        return vec!["(configuration)".into()];
    };
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    flatten("", &a, &mut fa);
    flatten("", &b, &mut fb);
    let mut keys: Vec<String> = fa
        .iter()
        .filter(|(k, v)| fb.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(fb.keys().filter(|k| !fa.contains_key(*k)).cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Leaves of a TOML value as dotted keys with `[i]` for arrays of tables.
fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                flatten(&join(k), v, out);
            }
        }
        toml::Value::Array(items) if !items.is_empty() && items.iter().all(|i| i.is_table()) => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// Reloads on every SIGHUP until `shutdown`. The listener is installed by the caller before
/// anything else runs: SIGHUP's default action would end the daemon.
pub async fn on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    reloader: Arc<Reloader>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            s = hangups.recv() => {
                if s.is_none() {
                    // The signal stream is gone; wait for the end like every other part.
                    shutdown.cancelled().await;
                    return;
                }
                reloader.reload("SIGHUP").await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::from_toml(text).unwrap()
    }

    #[test]
    fn changed_keys_are_dotted_and_classified() {
        let old = cfg("[[warning]]\nafter = \"15m\"\nkind = \"escalate\"\n");
        let new = cfg("language = \"en\"\n[pbx]\nurl = \"ws://10.0.0.1:9/\"\n\
             [[warning]]\nafter = \"5m\"\nkind = \"escalate\"\n");
        let keys = changed_keys(&old, &new);
        assert_eq!(keys, ["language", "pbx.url", "warning[0].after"]);
        let restart: Vec<&String> = keys
            .iter()
            .filter(|k| needs_restart(k, &old, &new))
            .collect();
        assert_eq!(restart, ["pbx.url"]);
        assert!(changed_keys(&old, &old.clone()).is_empty());
    }

    #[test]
    fn a_new_secret_is_a_change_but_never_shown() {
        let old = cfg("[[escalation.webhook]]\nurl = \"https://h.example/hooks/AAAA\"\n");
        let new = cfg("[[escalation.webhook]]\nurl = \"https://h.example/hooks/BBBB\"\n");
        let keys = changed_keys(&old, &new);
        assert_eq!(keys, ["escalation.webhook[0].url"]);
        assert!(!needs_restart(&keys[0], &old, &new));
    }

    #[test]
    fn with_a_floor_language_needs_a_restart() {
        let floor = "[floor]\nnats_url = \"nats://127.0.0.1:4222\"\nsite = \"s\"\n";
        let old = cfg(floor);
        let new = cfg(&format!("language = \"en\"\n{floor}"));
        assert_eq!(changed_keys(&old, &new), ["language"]);
        assert!(needs_restart("language", &old, &new));
        assert!(!needs_restart("warning[0].after", &old, &new));
        assert!(needs_restart("prompt.into_call", &old, &new));
        assert!(needs_restart("escalation.retry_max", &old, &new));
    }

    #[test]
    fn the_status_line_says_what_runs() {
        let r = Record {
            at: "2026-11-29T14:02:09+09:00".into(),
            outcome: Outcome::Refused,
            detail: "/etc/callguard/conf.d/10.toml, line 3: pbx.urll: unknown key".into(),
            keys: Vec::new(),
        };
        assert_eq!(
            r.describe(),
            "config: reload failed at 14:02: /etc/callguard/conf.d/10.toml, line 3: pbx.urll: \
             unknown key — running on the previous configuration"
        );
        assert!(!r.is_good());
    }
}
