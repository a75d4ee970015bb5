//! Configuration: the contract keys of DESIGN.md, loaded from layered TOML files and
//! `CALLGUARD__SECTION__KEY` environment overrides, then validated.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub mod duration;
pub mod origin;
mod report;

pub use report::env_warnings;

/// Environment prefix for overrides (`CALLGUARD__PBX__URL=…`).
pub const ENV_PREFIX: &str = "CALLGUARD";
/// System-wide configuration file, overlaid by the user's.
pub const SYSTEM_CONFIG: &str = "/etc/callguard/callguard.toml";
/// Folder of fleet drop-ins read after [`SYSTEM_CONFIG`], in name order.
pub const SYSTEM_CONFIG_DIR: &str = "/etc/callguard/conf.d";
/// Moves the system folder (`/etc/callguard`) elsewhere: tests, and images staged before install.
pub const SYSTEM_DIR_ENV: &str = "CALLGUARD_SYSTEM_DIR";

/// The system folder holding `callguard.toml` and `conf.d/`: `$CALLGUARD_SYSTEM_DIR`, else
/// `/etc/callguard`.
pub fn system_dir() -> PathBuf {
    std::env::var_os(SYSTEM_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/callguard"))
}

/// Why a configuration could not be used. The message always names the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an override could not be read or does not fit the schema.
    #[error("{0}")]
    Load(String),
    /// A value is readable but not usable.
    #[error("invalid value for `{key}`: {msg}")]
    Invalid {
        /// Dotted key, e.g. `pbx.url`.
        key: String,
        /// What is wrong and what is expected.
        msg: String,
    },
    /// A value is wrong where it was set: `at` is the absolute file (and line) or the
    /// environment variable, `value` the value as written there.
    #[error("{at}: {}{msg}", report::key_value(key, value.as_deref()))]
    At {
        /// The file, `path, line N`, or `environment variable NAME`.
        at: String,
        /// Full dotted key, e.g. `marks.rule[0].mark`.
        key: String,
        /// The offending value as TOML, when there is one.
        value: Option<String>,
        /// What is accepted.
        msg: String,
    },
    /// `--config` or `$CALLGUARD_CONFIG` names a file that does not exist.
    #[error("config file {0} does not exist")]
    Missing(PathBuf),
}

/// Which PBX dialect the connector speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PbxKind {
    /// callguard's own protocol v1 (DESIGN.md).
    #[default]
    Generic,
    /// Asterisk REST Interface.
    Asterisk,
}

/// What a warning step means for the call (defined with the harassment rules that also end in
/// one, so they need not depend on the configuration).
pub use crate::harassment::WarningKind;

/// Language of prompts, notifications and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Japanese (default).
    #[default]
    Ja,
    /// English.
    En,
}

/// Where a call's audio comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceSource {
    /// `media` frames of protocol v1.
    #[default]
    Stream,
    /// Recording made and stored by the PBX, downloaded at call end (config value `asterisk`,
    /// the one PBX that records today).
    #[serde(rename = "asterisk")]
    Pbx,
    /// No recording.
    Off,
}

impl EvidenceSource {
    /// The former name of [`EvidenceSource::Pbx`], kept so callers written against it build.
    #[allow(non_upper_case_globals)]
    pub const Asterisk: EvidenceSource = EvidenceSource::Pbx;

    /// The config value, also written as `source` in a call's `meta.json` and manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceSource::Stream => "stream",
            EvidenceSource::Pbx => "asterisk",
            EvidenceSource::Off => "off",
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for collectors.
    Json,
}

/// Webhook body flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The contract JSON body.
    #[default]
    Json,
    /// Slack incoming-webhook message.
    Slack,
    /// Microsoft Teams card.
    Teams,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Language of prompts and messages.
    pub language: Language,
    /// PBX connection.
    pub pbx: PbxConfig,
    /// Whose calls this daemon follows.
    pub agent: AgentConfig,
    /// The threshold ladder, ascending by `after`.
    pub warning: Vec<WarningConfig>,
    /// Sounds.
    pub prompt: PromptConfig,
    /// Team-lead pings.
    pub escalation: EscalationConfig,
    /// Recording and sealing.
    pub evidence: EvidenceConfig,
    /// Logging.
    pub log: LogConfig,
    /// Where the daemon keeps its own state (keys, outbox, fired warnings).
    pub state: StateConfig,
    /// The control socket (`callguard status`, `escalate`).
    pub control: ControlConfig,
    /// Agent marks and the harassment rules.
    pub marks: MarksConfig,
    /// The floor bus and the `callguard floor` service; absent = this workstation works alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<crate::floor::config::FloorConfig>,
    /// Copies of sealed evidence in S3-compatible object storage (off when `bucket` is empty).
    pub archive: crate::archive::config::ArchiveConfig,
}

/// `[marks]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarksConfig {
    /// The rule table (`[[marks.rule]]`); giving any rule replaces the whole default table.
    pub rule: Vec<crate::harassment::Rule>,
}

impl Default for MarksConfig {
    fn default() -> Self {
        MarksConfig {
            rule: crate::harassment::default_rules(),
        }
    }
}

/// `[pbx]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PbxConfig {
    /// `generic` or `asterisk`.
    pub kind: PbxKind,
    /// Websocket URL (`ws://` or `wss://`).
    pub url: String,
    /// Asterisk ARI application name; empty means `callguard-<hostname>`.
    pub app: String,
    /// User for HTTP Basic authentication.
    pub username: String,
    /// File holding the password (first line).
    pub password_file: String,
    /// Password, normally only from `CALLGUARD__PBX__PASSWORD`.
    pub password: String,
    /// PEM file with a private CA for `wss://`.
    pub ca_file: String,
}

/// `[agent]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Generic protocol: only calls of this agent; empty = every call (floor mode).
    pub extension: String,
    /// Asterisk: channel-name prefix of the agent's phone, e.g. `PJSIP/1001`.
    pub endpoint: String,
    /// Asterisk floor mode: several endpoints (`PJSIP/1001`, or a prefix `PJSIP/10*`); with
    /// `endpoint` also empty, every channel is a call.
    pub endpoints: Vec<String>,
    /// Display name used in pings.
    pub name: String,
}

/// One `[[warning]]` step.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WarningConfig {
    /// Call time after which it fires, e.g. "15m".
    #[serde(with = "duration")]
    pub after: Duration,
    /// `escalate` or `terminate`.
    pub kind: WarningKind,
    /// Whether the team lead is pinged.
    #[serde(default = "yes")]
    pub notify_lead: bool,
    /// Notification title; empty = the default of `kind` in `language`.
    #[serde(default)]
    pub title: String,
    /// Notification body; empty = the default of `kind` in `language`.
    #[serde(default)]
    pub body: String,
}

fn yes() -> bool {
    true
}

/// `[prompt]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptConfig {
    /// WAV played at call start; empty = the built-in notice of `language`.
    pub notice: String,
    /// WAV played with each warning; empty = the built-in chime.
    pub chime: String,
    /// Play the notice and chimes on this workstation.
    pub local: bool,
    /// Asterisk: also play the notice into the call so the customer hears it.
    pub into_call: bool,
    /// Asterisk sound name for `into_call`.
    pub asterisk_sound: String,
}

/// `[escalation]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationConfig {
    /// `[[escalation.webhook]]` targets.
    pub webhook: Vec<WebhookConfig>,
    /// First retry delay of a ping; doubles (with jitter) up to `retry_max`.
    #[serde(with = "duration")]
    pub retry_initial: Duration,
    /// Largest retry delay.
    #[serde(with = "duration")]
    pub retry_max: Duration,
    /// How long a ping is retried before it is given up (and shown as failed).
    #[serde(with = "duration")]
    pub retry_for: Duration,
    /// Pings about one call raised within this time of the previous one are merged into one
    /// (sent when the time is up, with every reason); `0s` sends each at once.
    #[serde(with = "duration")]
    pub coalesce: Duration,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            webhook: Vec::new(),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(5 * 60),
            retry_for: Duration::from_secs(24 * 3600),
            coalesce: Duration::from_secs(60),
        }
    }
}

/// `[control]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Socket path; empty = `$XDG_RUNTIME_DIR/callguard/control.sock`, else
    /// `<data dir>/control.sock`.
    pub socket: String,
}

/// One `[[escalation.webhook]]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Receiver URL.
    pub url: String,
    /// `json`, `slack` or `teams`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// File holding the HMAC secret.
    #[serde(default)]
    pub secret_file: String,
}

/// `[evidence]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// Root of the evidence tree; empty = `<data dir>/evidence`.
    pub dir: String,
    /// `stream`, `asterisk` or `off`.
    pub source: EvidenceSource,
    /// Free space needed at call start to record.
    pub min_free_mb: u64,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `callguard=debug`.
    pub level: String,
}

/// `[state]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Data directory; empty = the platform's (`~/.local/share/callguard`).
    pub dir: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            language: Language::Ja,
            pbx: PbxConfig::default(),
            agent: AgentConfig::default(),
            warning: default_ladder(),
            prompt: PromptConfig::default(),
            escalation: EscalationConfig::default(),
            evidence: EvidenceConfig::default(),
            log: LogConfig::default(),
            state: StateConfig::default(),
            control: ControlConfig::default(),
            marks: MarksConfig::default(),
            floor: None,
            archive: Default::default(),
        }
    }
}

impl Default for PbxConfig {
    fn default() -> Self {
        PbxConfig {
            kind: PbxKind::Generic,
            url: "ws://127.0.0.1:8765/".into(),
            app: String::new(),
            username: String::new(),
            password_file: String::new(),
            password: String::new(),
            ca_file: String::new(),
        }
    }
}

impl Default for PromptConfig {
    fn default() -> Self {
        PromptConfig {
            notice: String::new(),
            chime: String::new(),
            local: true,
            into_call: false,
            asterisk_sound: "custom/recording-notice".into(),
        }
    }
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            dir: String::new(),
            source: EvidenceSource::Stream,
            min_free_mb: 500,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// The default ladder: 15 min escalate, 30 min terminate, both pinging the lead.
pub fn default_ladder() -> Vec<WarningConfig> {
    vec![
        WarningConfig {
            after: Duration::from_secs(15 * 60),
            kind: WarningKind::Escalate,
            notify_lead: true,
            title: String::new(),
            body: String::new(),
        },
        WarningConfig {
            after: Duration::from_secs(30 * 60),
            kind: WarningKind::Terminate,
            notify_lead: true,
            title: String::new(),
            body: String::new(),
        },
    ]
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Files read in order, later ones overriding earlier ones.
    pub files: Vec<PathBuf>,
    /// Whether `CALLGUARD__…` variables are applied.
    pub env: bool,
}

impl Sources {
    /// The lookup of DESIGN.md: `--config PATH`, else `$CALLGUARD_CONFIG`, else the system
    /// file, its `conf.d` drop-ins in name order, and the user's file; env always last.
    pub fn discover(explicit: Option<&Path>) -> Result<Sources, ConfigError> {
        let chosen = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CALLGUARD_CONFIG").map(PathBuf::from));
        if let Some(path) = chosen {
            if !path.is_file() {
                return Err(ConfigError::Missing(path));
            }
            return Ok(Sources {
                files: vec![absolute(&path)],
                env: true,
            });
        }
        let mut files = layered_system_files(&absolute(&system_dir()));
        if let Some(user) = user_config_path().filter(|p| p.is_file()) {
            files.push(user);
        }
        Ok(Sources { files, env: true })
    }
}

impl Sources {
    /// The control socket even when the configuration is invalid (`callguard reload` must
    /// reach a daemon whose new files are broken).
    pub fn control_socket_leniently(&self) -> PathBuf {
        self.leniently().control_socket()
    }

    /// What a client of the running daemon needs when the files are invalid (a bad drop-in
    /// the daemon refused to reload must not break `status` or the agent's hotkeys): the
    /// defaults with `control.socket`, `state.dir` and `language` as the layers set them,
    /// every other key ignored; a layer that is not TOML at all is skipped.
    pub fn leniently(&self) -> Config {
        let mut cfg = Config::default();
        for file in &self.files {
            let Some(table) = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
            else {
                continue;
            };
            let get = |section: &str, key: &str| {
                table
                    .get(section)
                    .and_then(|s| s.get(key))
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            };
            if let Some(v) = get("control", "socket") {
                cfg.control.socket = v;
            }
            if let Some(v) = get("state", "dir") {
                cfg.state.dir = v;
            }
            match table.get("language").and_then(|v| v.as_str()) {
                Some("en") => cfg.language = Language::En,
                Some("ja") => cfg.language = Language::Ja,
                _ => {}
            }
        }
        if self.env {
            if let Ok(v) = std::env::var(format!("{ENV_PREFIX}__CONTROL__SOCKET")) {
                cfg.control.socket = v;
            }
            if let Ok(v) = std::env::var(format!("{ENV_PREFIX}__STATE__DIR")) {
                cfg.state.dir = v;
            }
        }
        cfg
    }
}

/// `path` made absolute for messages, `..` resolved through its folder (which exists) while the
/// file name stays the one the administrator gave (a symlinked drop-in keeps its own name).
fn absolute(path: &Path) -> PathBuf {
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => (dir.to_path_buf(), Some(name)),
        (_, Some(name)) => (PathBuf::from("."), Some(name)),
        _ => (path.to_path_buf(), None),
    };
    let dir = std::fs::canonicalize(&dir)
        .or_else(|_| std::path::absolute(&dir))
        .unwrap_or(dir);
    match name {
        Some(name) => dir.join(name),
        None => dir,
    }
}

/// The fleet layers under `root`: `callguard.toml`, then `conf.d/*.toml` in name order.
/// Missing files are skipped; hidden files and other extensions (`.dpkg-old`, `.bak`) are not read.
pub fn layered_system_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let main = root.join("callguard.toml");
    if main.is_file() {
        files.push(main);
    }
    if let Ok(dir) = std::fs::read_dir(root.join("conf.d")) {
        let mut dropins: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "toml")
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    && p.is_file()
            })
            .collect();
        dropins.sort();
        files.extend(dropins);
    }
    files
}

/// `$XDG_CONFIG_HOME/callguard/callguard.toml` (or the platform's equivalent).
pub fn user_config_path() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|b| b.config_dir().join("callguard").join("callguard.toml"))
}

impl Config {
    /// Loads and validates the configuration from `sources`.
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        // Each layer alone first: a mistake is reported where it was made.
        for file in &sources.files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| ConfigError::Load(format!("cannot read {}: {e}", file.display())))?;
            report::check_toml(&text, Some(file))?;
        }
        if sources.env {
            report::check_env()?;
        }
        let mut builder = config::Config::builder();
        for file in &sources.files {
            builder = builder.add_source(
                config::File::from(file.as_path())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        if sources.env {
            builder = builder.add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__"),
            );
        }
        let raw = builder
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        let cfg: Config = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.validate()
            .map_err(|e| report::locate(e, &cfg, sources))?;
        Ok(cfg)
    }

    /// Parses one TOML text (tests, demo) without files or environment.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        report::check_toml(text, None)?;
        let raw = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        let cfg: Config = raw
            .try_deserialize()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what the schema alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, msg: String| ConfigError::Invalid {
            key: key.to_string(),
            msg,
        };
        if let Some(floor) = &self.floor {
            floor.validate()?;
        }
        match url::Url::parse(&self.pbx.url) {
            Ok(u) if matches!(u.scheme(), "ws" | "wss") => {
                if !u.username().is_empty() || u.password().is_some() {
                    return Err(invalid(
                        "pbx.url",
                        "credentials do not belong in the URL; use pbx.username and pbx.password_file".into(),
                    ));
                }
            }
            Ok(u) => {
                return Err(invalid(
                    "pbx.url",
                    format!(
                        "scheme `{}` is not supported; use ws:// or wss://",
                        u.scheme()
                    ),
                ));
            }
            Err(e) => {
                return Err(invalid(
                    "pbx.url",
                    format!("`{}` is not a URL: {e}", self.pbx.url),
                ));
            }
        }
        if self.warning.is_empty() {
            return Err(invalid(
                "warning",
                "at least one [[warning]] step is needed".into(),
            ));
        }
        let mut prev = Duration::ZERO;
        for (i, w) in self.warning.iter().enumerate() {
            if w.after.is_zero() {
                return Err(invalid(
                    &format!("warning[{i}].after"),
                    "must be more than 0".into(),
                ));
            }
            if w.after <= prev {
                return Err(invalid(
                    &format!("warning[{i}].after"),
                    format!(
                        "steps must be in ascending order ({} is not after {})",
                        duration::format(w.after),
                        duration::format(prev)
                    ),
                ));
            }
            prev = w.after;
        }
        for (i, h) in self.escalation.webhook.iter().enumerate() {
            match url::Url::parse(&h.url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(_) | Err(_) => {
                    return Err(invalid(
                        &format!("escalation.webhook[{i}].url"),
                        format!("`{}` is not an http(s) URL", h.url),
                    ));
                }
            }
        }
        let esc = &self.escalation;
        if esc.retry_initial.is_zero() || esc.retry_max < esc.retry_initial {
            return Err(invalid(
                "escalation.retry_initial",
                "must be more than 0 and not more than escalation.retry_max".into(),
            ));
        }
        for (i, r) in self.marks.rule.iter().enumerate() {
            if r.count == 0 {
                return Err(invalid(
                    &format!("marks.rule[{i}].count"),
                    "must be 1 or more (1 = the first mark)".into(),
                ));
            }
        }
        if self.pbx.kind == PbxKind::Asterisk && self.agent.endpoint.contains('-') {
            return Err(invalid(
                "agent.endpoint",
                "give the endpoint without the channel suffix, e.g. PJSIP/1001".into(),
            ));
        }
        if self.evidence.source == EvidenceSource::Pbx && self.pbx.kind != PbxKind::Asterisk {
            return Err(invalid(
                "evidence.source",
                "\"asterisk\" needs pbx.kind = \"asterisk\" (use \"stream\" with the generic protocol)".into(),
            ));
        }
        for (i, e) in self.agent.endpoints.iter().enumerate() {
            let star = e.find('*');
            if e.trim().is_empty() || star.is_some_and(|at| at + 1 != e.len()) {
                return Err(invalid(
                    &format!("agent.endpoints[{i}]"),
                    format!(
                        "`{e}` is not an endpoint (PJSIP/1001) or a prefix ending in * (PJSIP/10*)"
                    ),
                ));
            }
        }
        self.archive
            .validate()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                format!(
                    "`{}` is not a level or filter (try info, debug, callguard=debug)",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }

    /// The PBX password: `pbx.password` (env) wins, else the first line of `pbx.password_file`.
    pub fn pbx_password(&self) -> Result<Option<String>, ConfigError> {
        if !self.pbx.password.is_empty() {
            return Ok(Some(self.pbx.password.clone()));
        }
        if self.pbx.password_file.is_empty() {
            return Ok(None);
        }
        let text =
            std::fs::read_to_string(&self.pbx.password_file).map_err(|e| ConfigError::Invalid {
                key: "pbx.password_file".into(),
                msg: format!("cannot read {}: {e}", self.pbx.password_file),
            })?;
        Ok(Some(text.lines().next().unwrap_or_default().to_string()))
    }

    /// The configuration as TOML with secrets masked, for `config check`.
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(&self.masked()).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// A copy safe to show: the password and secret-bearing webhook URLs masked.
    pub fn masked(&self) -> Config {
        let mut shown = self.clone();
        if !shown.pbx.password.is_empty() {
            shown.pbx.password = "********".into();
        }
        for hook in &mut shown.escalation.webhook {
            hook.url = mask_url(&hook.url);
        }
        shown.floor = shown.floor.as_ref().map(|f| f.masked());
        shown
    }

    /// The data directory (keys, outbox, call memory).
    pub fn data_dir(&self) -> PathBuf {
        if !self.state.dir.is_empty() {
            return PathBuf::from(&self.state.dir);
        }
        directories::ProjectDirs::from("", "", "callguard")
            .map(|d| d.data_dir().to_path_buf())
            .unwrap_or_else(|| PathBuf::from("/var/lib/callguard"))
    }

    /// The control socket: `control.socket`, else `$XDG_RUNTIME_DIR/callguard/control.sock`,
    /// else `<data dir>/control.sock`.
    pub fn control_socket(&self) -> PathBuf {
        if !self.control.socket.is_empty() {
            return PathBuf::from(&self.control.socket);
        }
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir).join("callguard").join("control.sock"),
            None => self.data_dir().join("control.sock"),
        }
    }

    /// The evidence root.
    pub fn evidence_dir(&self) -> PathBuf {
        if self.evidence.dir.is_empty() {
            self.data_dir().join("evidence")
        } else {
            PathBuf::from(&self.evidence.dir)
        }
    }
}

/// Webhook URLs of Slack and Teams carry their secret in the path: see
/// [`crate::redact::mask_url`] for what is kept.
pub fn mask_url(raw: &str) -> String {
    crate::redact::mask_url(raw)
}
