//! `[floor]`: the workstation's link to the floor bus (daemon side) and the `callguard floor`
//! service's own settings (service side). One table for both, so a site can ship one file; the
//! daemon ignores the service keys and the service ignores the workstation-only ones.
//!
//! Without a `[floor]` table the daemon works alone exactly as before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::contract::CallerIdMode;
use crate::config::ConfigError;

/// Smallest accepted `caller_key_file` content, bytes (after trimming whitespace).
pub const MIN_CALLER_KEY: usize = 16;

/// `[floor]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FloorConfig {
    // ---- both sides -------------------------------------------------------------------------
    /// NATS server URL(s), comma-separated: `nats://host:4222`, `tls://host:4222`.
    pub nats_url: String,
    /// Site id: the third subject token (`callguard.v1.<site>.…`).
    pub site: String,
    /// NATS user (with `password_file`).
    pub user: String,
    /// File holding the NATS password (first line).
    pub password_file: String,
    /// NATS password, normally only from `CALLGUARD__FLOOR__PASSWORD`.
    pub password: String,
    /// File holding an NKey seed (`SU…`).
    pub nkey_file: String,
    /// NATS `.creds` file (JWT + seed).
    pub creds_file: String,
    /// PEM file with the CA of the NATS server's certificate (enables TLS verification).
    pub ca_file: String,

    // ---- workstation (daemon) side ----------------------------------------------------------
    /// This workstation's agent id on the bus (its subject token and credentials); empty =
    /// `agent.extension`, else `agent.endpoint`, else the host name.
    pub agent: String,
    /// Interval of the workstation's heartbeat.
    #[serde(with = "crate::config::duration")]
    pub heartbeat: Duration,
    /// Largest on-disk backlog of unsent events; beyond it the oldest heartbeats are dropped,
    /// never call events.
    pub max_backlog_mb: u64,
    /// How long call start waits at most for the floor's caller history (never blocks the call).
    #[serde(with = "crate::config::duration")]
    pub history_timeout: Duration,
    /// `plain` (the number) or `hashed` (HMAC-SHA256 of the E.164 number with the site key).
    pub caller_id: CallerIdMode,
    /// The site key for `hashed` (at least 16 bytes); the floor needs the same file to look
    /// callers up by number.
    pub caller_key_file: String,
    /// Country calling code used to bring national numbers to E.164 before hashing.
    pub country_code: String,
    /// Show the floor's caller history at call start.
    pub show_history: bool,

    // ---- service (`callguard floor`) side ---------------------------------------------------
    /// Store: `sqlite://PATH` or `postgres://…`; empty = `sqlite://<data dir>/floor.db`.
    pub db: String,
    /// Address of the board's HTTP(S) server.
    pub listen: String,
    /// PEM certificate chain of the board (with `tls_key`; plain HTTP only on loopback).
    pub tls_cert: String,
    /// PEM private key of the board.
    pub tls_key: String,
    /// The board's public URL, for links in pings and reports; empty = derived from `listen`.
    pub public_url: String,
    /// Durable JetStream consumer name shared by every floor instance of the site.
    pub consumer: String,
    /// Whether the floor creates (or updates) the `CALLGUARD` stream at start.
    pub create_stream: bool,
    /// How long the stream keeps events (the store keeps them for good).
    #[serde(with = "crate::config::duration")]
    pub stream_max_age: Duration,
    /// A workstation is shown as stale ("protection off") when its last heartbeat is older;
    /// `0s` = two of its own heartbeat intervals.
    #[serde(with = "crate::config::duration")]
    pub stale_after: Duration,
    /// Ping the team leads once when a workstation goes stale or loses its PBX link.
    pub ping_on_stale: bool,
    /// Lifetime of a lead's board session.
    #[serde(with = "crate::config::duration")]
    pub session_ttl: Duration,
    /// Scheduled reports.
    pub report: FloorReportConfig,
    /// Team → the agent ids in it (`[floor.teams]`); a lead sees the agents of their teams.
    pub teams: std::collections::BTreeMap<String, Vec<String>>,
    /// The floor (with `[archive]`): a folder of `<host>.pub` files, each the public key a
    /// workstation's `callguard key show` prints; archived folders are verified with them.
    pub evidence_keys: String,
    /// The floor: how long after a failed check of an archived folder (store unreachable, not
    /// archived yet) it is checked again.
    #[serde(with = "crate::config::duration")]
    pub evidence_retry: Duration,
}

/// `[floor.report]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FloorReportConfig {
    /// On the 1st of each month, post the previous month's report link and summary line to the
    /// team-lead webhooks.
    pub monthly: bool,
    /// The site's UTC offset for report days, weekdays and hours (`+09:00`); empty = this
    /// machine's local offset.
    pub utc_offset: String,
    /// TrueType font embedded (as a subset) in report PDFs; empty = IPA Gothic
    /// (`fonts-ipafont-gothic`).
    pub font: String,
}

impl Default for FloorConfig {
    fn default() -> Self {
        FloorConfig {
            nats_url: "nats://127.0.0.1:4222".into(),
            site: String::new(),
            user: String::new(),
            password_file: String::new(),
            password: String::new(),
            nkey_file: String::new(),
            creds_file: String::new(),
            ca_file: String::new(),
            agent: String::new(),
            heartbeat: Duration::from_secs(30),
            max_backlog_mb: 200,
            history_timeout: Duration::from_millis(300),
            caller_id: CallerIdMode::Plain,
            caller_key_file: String::new(),
            country_code: "81".into(),
            show_history: true,
            db: String::new(),
            listen: "127.0.0.1:8480".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
            public_url: String::new(),
            consumer: "callguard-floor".into(),
            create_stream: true,
            stream_max_age: Duration::from_secs(30 * 24 * 3600),
            stale_after: Duration::ZERO,
            ping_on_stale: true,
            session_ttl: Duration::from_secs(12 * 3600),
            report: FloorReportConfig::default(),
            teams: Default::default(),
            evidence_keys: String::new(),
            evidence_retry: Duration::from_secs(30),
        }
    }
}

/// How the workstation (or the floor) proves who it is to NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorAuth {
    /// No credentials (a server without authorization: tests, a lab).
    None,
    /// User and password (from `password_file` or `password`).
    UserPassword {
        /// User.
        user: String,
        /// Password.
        password: String,
    },
    /// NKey seed file.
    Nkey(PathBuf),
    /// `.creds` file.
    Creds(PathBuf),
}

fn invalid(key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        msg: msg.into(),
    }
}

impl FloorConfig {
    /// Checks the values that can be checked without touching the network or the files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.site.trim().is_empty() {
            return Err(invalid("floor.site", "a site id is required with [floor]"));
        }
        if self.nats_url.trim().is_empty() {
            return Err(invalid(
                "floor.nats_url",
                "a NATS URL is required with [floor]",
            ));
        }
        for url in self.nats_urls() {
            let parsed = url::Url::parse(&url)
                .map_err(|e| invalid("floor.nats_url", format!("`{url}` is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "nats" | "tls" | "ws" | "wss") {
                return Err(invalid(
                    "floor.nats_url",
                    format!("`{url}`: expected nats://, tls://, ws:// or wss://"),
                ));
            }
        }
        let ways = [
            !self.user.is_empty(),
            !self.nkey_file.is_empty(),
            !self.creds_file.is_empty(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if ways > 1 {
            return Err(invalid(
                "floor.user",
                "give one of `user` (+ `password_file`), `nkey_file` or `creds_file`",
            ));
        }
        if !self.user.is_empty() && self.password_file.is_empty() && self.password.is_empty() {
            return Err(invalid(
                "floor.password_file",
                "`user` needs `password_file` (or CALLGUARD__FLOOR__PASSWORD)",
            ));
        }
        if self.heartbeat < Duration::from_secs(1) {
            return Err(invalid("floor.heartbeat", "must be at least 1s"));
        }
        if self.max_backlog_mb == 0 {
            return Err(invalid("floor.max_backlog_mb", "must be at least 1"));
        }
        if self.history_timeout.is_zero() || self.history_timeout > Duration::from_secs(10) {
            return Err(invalid(
                "floor.history_timeout",
                "must be between 1ms and 10s (call start never waits longer)",
            ));
        }
        if self.caller_id == CallerIdMode::Hashed && self.caller_key_file.is_empty() {
            return Err(invalid(
                "floor.caller_key_file",
                "`caller_id = \"hashed\"` needs the site key file",
            ));
        }
        if self.country_code.is_empty() || !self.country_code.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid("floor.country_code", "digits only, e.g. \"81\""));
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(invalid(
                "floor.tls_cert",
                "`tls_cert` and `tls_key` go together",
            ));
        }
        let known_db = ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| self.db.starts_with(p));
        if !self.db.is_empty() && !known_db {
            return Err(invalid(
                "floor.db",
                "expected sqlite://PATH or postgres://…",
            ));
        }
        Ok(())
    }

    /// The configured server URLs.
    pub fn nats_urls(&self) -> Vec<String> {
        self.nats_url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// The credentials to present, reading the password file if there is one.
    pub fn auth(&self) -> Result<FloorAuth, ConfigError> {
        if !self.creds_file.is_empty() {
            return Ok(FloorAuth::Creds(PathBuf::from(&self.creds_file)));
        }
        if !self.nkey_file.is_empty() {
            return Ok(FloorAuth::Nkey(PathBuf::from(&self.nkey_file)));
        }
        if self.user.is_empty() {
            return Ok(FloorAuth::None);
        }
        let password = if !self.password.is_empty() {
            self.password.clone()
        } else {
            first_line(&self.password_file, "floor.password_file")?
        };
        Ok(FloorAuth::UserPassword {
            user: self.user.clone(),
            password,
        })
    }

    /// The site key for hashed caller ids (trimmed file content); `None` in plain mode.
    pub fn caller_key(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        if self.caller_id != CallerIdMode::Hashed {
            return Ok(None);
        }
        let raw = std::fs::read(&self.caller_key_file).map_err(|e| {
            invalid(
                "floor.caller_key_file",
                format!("cannot read {}: {e}", self.caller_key_file),
            )
        })?;
        let key = raw.trim_ascii().to_vec();
        if key.len() < MIN_CALLER_KEY {
            return Err(invalid(
                "floor.caller_key_file",
                format!("the key must be at least {MIN_CALLER_KEY} bytes"),
            ));
        }
        Ok(Some(key))
    }

    /// The workstation's agent id on the bus (before sanitizing into a subject token).
    pub fn agent_id(&self, agent: &crate::config::AgentConfig, host: &str) -> String {
        [&self.agent, &agent.extension, &agent.endpoint]
            .into_iter()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| host.to_string())
    }

    /// The store URL: `floor.db`, else `sqlite://<data dir>/floor.db`.
    pub fn db_url(&self, data_dir: &Path) -> String {
        if self.db.is_empty() {
            format!("sqlite://{}", data_dir.join("floor.db").display())
        } else {
            self.db.clone()
        }
    }

    /// When a workstation counts as stale, given its own heartbeat interval.
    pub fn stale_after_for(&self, interval: Duration) -> Duration {
        if self.stale_after.is_zero() {
            interval.saturating_mul(2)
        } else {
            self.stale_after
        }
    }

    /// Where the daemon keeps its floor backlog.
    pub fn backlog_dir(data_dir: &Path) -> PathBuf {
        data_dir.join("floor-outbox")
    }

    /// A copy safe to show: the password and URL credentials masked.
    pub fn masked(&self) -> FloorConfig {
        let mut shown = self.clone();
        if !shown.password.is_empty() {
            shown.password = "********".into();
        }
        shown.nats_url = shown
            .nats_urls()
            .iter()
            .map(|u| mask_userinfo(u))
            .collect::<Vec<_>>()
            .join(",");
        if shown.db.contains('@') {
            shown.db = mask_userinfo(&shown.db);
        }
        shown
    }
}

/// `scheme://user:pass@host…` → `scheme://********@host…`.
fn mask_userinfo(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let _ = u.set_password(None);
            let _ = u.set_username("********");
            u.to_string()
        }
        _ => raw.to_string(),
    }
}

fn first_line(path: &str, key: &str) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(key, format!("cannot read {path}: {e}")))?;
    Ok(text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> FloorConfig {
        FloorConfig {
            site: "tokyo-1".into(),
            ..FloorConfig::default()
        }
    }

    #[test]
    fn defaults_follow_the_issue() {
        let c = FloorConfig::default();
        assert_eq!(c.heartbeat, Duration::from_secs(30));
        assert_eq!(c.max_backlog_mb, 200);
        assert_eq!(c.history_timeout, Duration::from_millis(300));
        assert_eq!(c.caller_id, CallerIdMode::Plain);
        assert_eq!(
            c.db_url(Path::new("/d")),
            "sqlite:///d/floor.db".to_string()
        );
        assert_eq!(
            c.stale_after_for(Duration::from_secs(30)),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn validation_names_the_key() {
        assert!(base().validate().is_ok());
        let err = FloorConfig::default().validate().unwrap_err().to_string();
        assert!(err.contains("floor.site"), "{err}");
        let c = FloorConfig {
            caller_id: CallerIdMode::Hashed,
            ..base()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("caller_key_file")
        );
        let c = FloorConfig {
            user: "u".into(),
            creds_file: "x.creds".into(),
            ..base()
        };
        assert!(c.validate().is_err());
        let c = FloorConfig {
            nats_url: "http://x".into(),
            ..base()
        };
        assert!(c.validate().unwrap_err().to_string().contains("nats_url"));
    }

    #[test]
    fn toml_table_parses() {
        let c: FloorConfig = toml::from_str(
            "nats_url = \"nats://a:4222,nats://b:4222\"\nsite = \"s\"\nheartbeat = \"10s\"\n\
             caller_id = \"hashed\"\ncaller_key_file = \"/k\"\n[report]\nmonthly = true\n",
        )
        .unwrap();
        assert_eq!(c.nats_urls().len(), 2);
        assert_eq!(c.heartbeat, Duration::from_secs(10));
        assert!(c.report.monthly);
    }

    #[test]
    fn masking_hides_secrets() {
        let c = FloorConfig {
            nats_url: "nats://u:secret@h:4222".into(),
            password: "pw".into(),
            db: "postgres://floor:dbpw@db/floor".into(),
            ..base()
        };
        let m = c.masked();
        assert!(!m.nats_url.contains("secret"));
        assert_eq!(m.password, "********");
        assert!(!m.db.contains("dbpw"));
    }
}
