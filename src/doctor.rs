//! `callguard doctor`: checks everything a workstation needs and says, line by line, what passes,
//! what is doubtful and what fails, with the fix for each. Exit 1 on any failure, so fleet tooling
//! can run it on every machine (`--json` for machines, a table for people).
//!
//! The checks are read-only except where noted: the evidence folder is created if missing (as
//! the daemon would) and probed with a hidden file that is removed at once; `--send-test-ping`
//! sends a real test ping to each webhook.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue};

use crate::config::{Config, EvidenceSource, PbxKind, Sources, WebhookConfig, WebhookFormat};

/// How long one network or D-Bus probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Clock offsets up to this are fine (the HTTP Date header has one-second resolution).
const CLOCK_OK: Duration = Duration::from_secs(2);
/// Event name of a test ping; receivers can drop it.
pub const TEST_EVENT: &str = "callguard.test";

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
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        Report {
            ok: !checks.iter().any(|c| c.status == Status::Fail),
            host: hostname(),
            version: env!("CARGO_PKG_VERSION"),
            checks,
        }
    }

    /// The table for people: status, check, detail, and the fix under each line that needs one.
    pub fn table(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|c| c.check.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let mut out = format!("{:<6}{:<w$}  DETAIL\n", "", "CHECK", w = width);
        for c in &self.checks {
            out.push_str(&format!(
                "{:<6}{:<w$}  {}\n",
                c.status.label(),
                c.check,
                c.detail,
                w = width
            ));
            if !c.fix.is_empty() {
                out.push_str(&format!("{:<6}{:<w$}  fix: {}\n", "", "", c.fix, w = width));
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
        out.push_str(&format!(
            "\n{}: {} passed, {} warnings, {} failed\n",
            self.host,
            self.checks.len() - fails - warns,
            warns,
            fails
        ));
        out
    }
}

/// What the run may do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Send a real test ping to each webhook (else only check it is reachable).
    pub send_test_ping: bool,
}

/// Loads the configuration the daemon would and runs every check.
pub async fn diagnose(explicit: Option<&Path>, opts: &Options) -> Report {
    let loaded = Sources::discover(explicit).and_then(|s| Config::load(&s).map(|c| (c, s)));
    let (cfg, sources) = match loaded {
        Ok(v) => v,
        Err(e) => {
            return Report::new(vec![Check::new(
                "config",
                Status::Fail,
                format!("{e}"),
                "fix the key named above (`callguard config check --origin` shows which file sets it); the other checks need a valid configuration",
            )]);
        }
    };
    let layers: Vec<String> = sources
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    let mut checks = vec![if layers.is_empty() {
        Check::new(
            "config",
            Status::Warn,
            "valid, but no configuration file was found: built-in defaults",
            "install /etc/callguard/callguard.toml (the package does) or pass --config",
        )
    } else {
        Check::pass("config", format!("valid ({})", layers.join(", ")))
    }];
    checks.extend(run_checks(&cfg, opts).await);
    Report::new(checks)
}

/// Every check after the configuration, in report order.
pub async fn run_checks(cfg: &Config, opts: &Options) -> Vec<Check> {
    let (pbx, date) = check_pbx(cfg).await;
    let answered = date.is_some() || pbx.status == Status::Pass;
    let clock = if answered {
        check_clock(date)
    } else {
        Check::new(
            "clock",
            Status::Warn,
            "cannot tell: the PBX did not answer",
            "fix the pbx line first",
        )
    };
    let mut checks = vec![pbx, clock];
    checks.push(check_notifications().await);
    checks.push(check_audio(cfg).await);
    checks.extend(check_evidence(cfg));
    checks.push(check_key(&cfg.data_dir()));
    checks.extend(check_webhooks(cfg, opts).await);
    checks.extend(crate::floor::sink::doctor_checks(cfg).await);
    checks.extend(crate::archive::doctor::checks(cfg).await);
    checks
}

/// The websocket URL the connector opens: `pbx.url`, or for Asterisk the ARI events socket
/// under it (with an application name of the doctor's own, so a running daemon keeps its events).
pub fn pbx_probe_url(cfg: &Config) -> Result<url::Url, String> {
    let mut u = url::Url::parse(&cfg.pbx.url).map_err(|e| e.to_string())?;
    if cfg.pbx.kind == PbxKind::Asterisk {
        let base = u.path().trim_end_matches('/').to_string();
        u.set_path(&format!("{base}/ari/events"));
        u.set_query(None);
        u.query_pairs_mut()
            .append_pair("app", &format!("callguard-doctor-{}", std::process::id()))
            .append_pair("subscribeAll", "false");
    }
    Ok(u)
}

/// Opens the PBX websocket with the configured credentials and closes it again. Returns the
/// check and the PBX's `Date` header, if any, for the clock check.
async fn check_pbx(cfg: &Config) -> (Check, Option<String>) {
    const NAME: &str = "pbx";
    let url = match pbx_probe_url(cfg) {
        Ok(u) => u,
        Err(e) => return (Check::new(NAME, Status::Fail, e, "fix pbx.url"), None),
    };
    let shown = crate::pbx::display_url(url.as_str());
    let password = match cfg.pbx_password() {
        Ok(p) => p,
        Err(e) => {
            return (
                Check::new(
                    NAME,
                    Status::Fail,
                    e.to_string(),
                    "make pbx.password_file readable by the agent's user (mode 0600, owned by them) or set CALLGUARD__PBX__PASSWORD",
                ),
                None,
            );
        }
    };
    let mut request = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => {
            return (
                Check::new(NAME, Status::Fail, e.to_string(), "fix pbx.url"),
                None,
            );
        }
    };
    let authenticated = !cfg.pbx.username.is_empty();
    if authenticated {
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            cfg.pbx.username,
            password.as_deref().unwrap_or("")
        ));
        match HeaderValue::from_str(&format!("Basic {token}")) {
            Ok(v) => {
                request.headers_mut().insert("Authorization", v);
            }
            Err(e) => {
                return (
                    Check::new(
                        NAME,
                        Status::Fail,
                        format!("the credentials cannot be sent: {e}"),
                        "pbx.username and the password must be plain text without line breaks",
                    ),
                    None,
                );
            }
        }
    }
    let connector = if url.scheme() == "wss" {
        match crate::tls::client_config(&cfg.pbx.ca_file) {
            Ok(c) => Some(tokio_tungstenite::Connector::Rustls(c)),
            Err(e) => {
                return (
                    Check::new(
                        NAME,
                        Status::Fail,
                        e.to_string(),
                        "point pbx.ca_file at the PEM certificate of the CA that signed the PBX's certificate",
                    ),
                    None,
                );
            }
        }
    } else {
        None
    };
    let connect = tokio_tungstenite::connect_async_tls_with_config(request, None, true, connector);
    match tokio::time::timeout(PROBE_TIMEOUT, connect).await {
        Err(_) => (
            Check::new(
                NAME,
                Status::Fail,
                format!("{shown}: no answer within {}s", PROBE_TIMEOUT.as_secs()),
                "check pbx.url and that a firewall lets this machine reach the PBX's port",
            ),
            None,
        ),
        Ok(Ok((mut ws, response))) => {
            let date = date_header(response.headers());
            let _ = tokio::time::timeout(PROBE_TIMEOUT, ws.close(None)).await;
            let auth = if authenticated {
                format!("credentials of `{}` accepted", cfg.pbx.username)
            } else {
                "no credentials configured".to_string()
            };
            (
                Check::pass(NAME, format!("{shown}: websocket open, {auth}")),
                date,
            )
        }
        Ok(Err(WsError::Http(response))) => {
            let date = date_header(response.headers());
            let status = response.status();
            let check = if status.as_u16() == 401 || status.as_u16() == 403 {
                Check::new(
                    NAME,
                    Status::Fail,
                    format!("{shown}: credentials refused (HTTP {status})"),
                    match cfg.pbx.kind {
                        PbxKind::Asterisk => {
                            "check pbx.username and pbx.password_file against the user in the PBX's ari.conf"
                        }
                        PbxKind::Generic => "check pbx.username and pbx.password_file",
                    },
                )
            } else {
                Check::new(
                    NAME,
                    Status::Fail,
                    format!("{shown}: the PBX answered HTTP {status} instead of a websocket"),
                    match cfg.pbx.kind {
                        PbxKind::Asterisk => {
                            "pbx.url must be the ARI base (ws://HOST:8088); check that ARI and its HTTP server are enabled"
                        }
                        PbxKind::Generic => {
                            "pbx.url must be the PBX's protocol v1 websocket endpoint"
                        }
                    },
                )
            };
            (check, date)
        }
        Ok(Err(e)) => (
            Check::new(
                NAME,
                Status::Fail,
                format!("{shown}: cannot connect: {e}"),
                "check pbx.url (host and port), that the PBX is up, and that a firewall lets this machine reach it",
            ),
            None,
        ),
    }
}

fn date_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("date")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The offset of this machine's clock against the PBX's `Date` header.
fn check_clock(date: Option<String>) -> Check {
    const NAME: &str = "clock";
    let Some(date) = date else {
        return Check::new(
            NAME,
            Status::Warn,
            "cannot tell: the PBX's answer carried no Date header",
            "make sure this machine syncs its clock (timedatectl set-ntp true)",
        );
    };
    let theirs = match chrono::DateTime::parse_from_rfc2822(&date) {
        Ok(t) => t.with_timezone(&chrono::Utc),
        Err(e) => {
            return Check::new(
                NAME,
                Status::Warn,
                format!("cannot tell: the PBX's Date header `{date}` does not parse ({e})"),
                "make sure this machine syncs its clock (timedatectl set-ntp true)",
            );
        }
    };
    clock_verdict(chrono::Utc::now() - theirs)
}

/// Pass within [`CLOCK_OK`] (Date has one-second resolution), else warn with the offset.
pub fn clock_verdict(offset: chrono::TimeDelta) -> Check {
    let ms = offset.num_milliseconds();
    let shown = format!("{:+.1}s against the PBX", ms as f64 / 1000.0);
    if ms.unsigned_abs() <= CLOCK_OK.as_millis() as u64 {
        Check::pass("clock", shown)
    } else {
        Check::new(
            "clock",
            Status::Warn,
            format!("{shown}: call times in evidence and pings are off by as much"),
            "sync this machine's clock with NTP (timedatectl set-ntp true), and the PBX's",
        )
    }
}

/// Runs a blocking probe on a thread of its own, giving up after [`PROBE_TIMEOUT`]. A detached
/// thread, not `spawn_blocking`, so a hung probe cannot hold the process at exit.
async fn off_thread<T, F>(f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("callguard-doctor-probe".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    tokio::time::timeout(PROBE_TIMEOUT, rx).await.ok()?.ok()
}

/// The notification server on the session bus and what it can show.
async fn check_notifications() -> Check {
    const NAME: &str = "notifications";
    let probe = off_thread(|| {
        let info = notify_rust::get_server_information().map_err(|e| e.to_string())?;
        let caps = notify_rust::get_capabilities().map_err(|e| e.to_string())?;
        Ok::<_, String>((info, caps))
    })
    .await;
    let fix_missing = "run doctor inside the agent's desktop session (it needs DBUS_SESSION_BUS_ADDRESS) and make sure a notification daemon runs there (GNOME and KDE have one; else e.g. dunst or xfce4-notifyd)";
    match probe {
        None => Check::new(
            NAME,
            Status::Fail,
            format!(
                "the session bus did not answer within {}s",
                PROBE_TIMEOUT.as_secs()
            ),
            fix_missing,
        ),
        Some(Err(e)) => Check::new(
            NAME,
            Status::Fail,
            format!("no notification server: {e}"),
            fix_missing,
        ),
        Some(Ok((info, caps))) => {
            let detail = format!(
                "{} {} ({}, spec {}); capabilities: {}",
                info.name,
                info.version,
                info.vendor,
                info.spec_version,
                if caps.is_empty() {
                    "none".to_string()
                } else {
                    caps.join(", ")
                }
            );
            if caps.iter().any(|c| c == "body") {
                Check::pass(NAME, detail)
            } else {
                Check::new(
                    NAME,
                    Status::Warn,
                    format!("{detail}: warnings show their title only"),
                    "use a notification daemon that shows message bodies",
                )
            }
        }
    }
}

/// The default audio output, opened as the sound thread would.
async fn check_audio(cfg: &Config) -> Check {
    const NAME: &str = "audio";
    if !cfg.prompt.local {
        return Check::pass(NAME, "not used (prompt.local = false)");
    }
    // ALSA writes its own complaints straight to stderr; the check's line says what matters.
    let open = || crate::alerts::sound::without_stderr(rodio::DeviceSinkBuilder::open_default_sink);
    let probe = off_thread(move || match open() {
        Ok(mut sink) => {
            sink.log_on_drop(false);
            let c = sink.config();
            Ok(format!(
                "default output open ({} Hz, {} channels)",
                c.sample_rate(),
                c.channel_count()
            ))
        }
        Err(e) => Err(e.to_string()),
    })
    .await;
    let fix = "connect speakers or a headset and check the session's sound server (pactl info); the daemon works without, but the agent hears no notice or chime";
    match probe {
        Some(Ok(detail)) => Check::pass(NAME, detail),
        Some(Err(e)) => Check::new(NAME, Status::Warn, format!("no audio output: {e}"), fix),
        None => Check::new(
            NAME,
            Status::Warn,
            format!(
                "the audio device did not open within {}s",
                PROBE_TIMEOUT.as_secs()
            ),
            fix,
        ),
    }
}

/// The evidence folder: there (or creatable), private, writable, and its free space.
fn check_evidence(cfg: &Config) -> Vec<Check> {
    if cfg.evidence.source == EvidenceSource::Off {
        return vec![Check::pass(
            "evidence",
            "recording off (evidence.source = off)",
        )];
    }
    let dir = cfg.evidence_dir();
    let shown = dir.display().to_string();
    // Checked where it is, never made here: the recorder makes it (mode 0700) on the first call.
    let Some(base) = dir.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf) else {
        return vec![Check::new(
            "evidence",
            Status::Fail,
            format!("{shown}: no existing parent folder"),
            "set evidence.dir to a folder on a local disk the agent's user owns",
        )];
    };
    let mut checks = vec![if base != dir {
        match rustix::fs::access(
            &base,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        ) {
            Ok(()) => Check::pass(
                "evidence",
                format!("{shown}: not there yet; the first recorded call makes it (mode 0700)"),
            ),
            Err(e) => Check::new(
                "evidence",
                Status::Fail,
                format!(
                    "{shown}: cannot be made: {} is not writable ({e})",
                    base.display()
                ),
                "set evidence.dir to a folder on a local disk the agent's user owns",
            ),
        }
    } else {
        let probe = dir.join(format!(".callguard-doctor-{}", std::process::id()));
        let writable = crate::fsutil::create_new_private_file(&probe).and_then(|mut f| {
            use std::io::Write;
            f.write_all(b"probe")?;
            f.sync_all()
        });
        let _ = std::fs::remove_file(&probe);
        let mode = {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(&dir).map_or(0o700, |m| m.permissions().mode() & 0o777)
        };
        match writable {
            Ok(()) if mode & 0o077 != 0 => Check::new(
                "evidence",
                Status::Warn,
                format!("{shown}: writable, but open to other users (mode {mode:o})"),
                format!("chmod 700 {shown} (the recorder also tightens it at the next call)"),
            ),
            Ok(()) => Check::pass("evidence", format!("{shown}: writable, mode 0700")),
            Err(e) => Check::new(
                "evidence",
                Status::Fail,
                format!("{shown}: not writable: {e}"),
                format!("give the agent's user ownership of {shown} (chown -R USER {shown})"),
            ),
        }
    }];
    checks.push(match rustix::fs::statvfs(&base) {
        Ok(st) => disk_verdict(
            st.f_bavail.saturating_mul(st.f_frsize) / (1024 * 1024),
            cfg.evidence.min_free_mb,
        ),
        Err(e) => Check::new(
            "disk",
            Status::Warn,
            format!("cannot tell the free space of {shown}: {e}"),
            "check the file system of evidence.dir",
        ),
    });
    checks
}

/// Fail below `evidence.min_free_mb` (calls would not be recorded), warn below twice that.
pub fn disk_verdict(free_mb: u64, min_free_mb: u64) -> Check {
    let detail = format!("{free_mb} MB free (evidence.min_free_mb = {min_free_mb})");
    if free_mb < min_free_mb {
        Check::new(
            "disk",
            Status::Fail,
            format!("{detail}: new calls are not recorded"),
            "free disk space, collect and move old evidence off this machine, or set evidence.dir to a larger disk",
        )
    } else if free_mb < min_free_mb.saturating_mul(2) {
        Check::new(
            "disk",
            Status::Warn,
            format!("{detail}: recording stops soon"),
            "collect and move old evidence off this machine, or free disk space",
        )
    } else {
        Check::pass("disk", detail)
    }
}

/// `<data dir>/keys/evidence.key`: missing is fine (made on first run), otherwise private.
pub fn check_key(data_dir: &Path) -> Check {
    use std::os::unix::fs::MetadataExt;
    const NAME: &str = "signing-key";
    let path: PathBuf = data_dir.join("keys").join("evidence.key");
    let shown = path.display().to_string();
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Check::new(
                NAME,
                Status::Warn,
                format!("{shown}: not there yet; created on first run"),
                "start the daemon once (systemctl --user start callguard), then run doctor again",
            );
        }
        Err(e) => {
            return Check::new(
                NAME,
                Status::Fail,
                format!("{shown}: {e}"),
                "the agent's user must own its data folder",
            );
        }
    };
    if !meta.file_type().is_file() {
        return Check::new(
            NAME,
            Status::Fail,
            format!("{shown}: not a regular file"),
            "remove it and start the daemon to make a new key (the old evidence keeps verifying with the old evidence.pub)",
        );
    }
    let mode = meta.mode() & 0o777;
    let me = rustix::process::getuid().as_raw();
    if meta.uid() != me {
        return Check::new(
            NAME,
            Status::Fail,
            format!(
                "{shown}: owned by uid {}, not by this user ({me})",
                meta.uid()
            ),
            format!("chown {me} {shown}"),
        );
    }
    if mode & 0o077 != 0 {
        return Check::new(
            NAME,
            Status::Fail,
            format!("{shown}: mode {mode:04o}: other users can read the key and forge evidence"),
            format!("chmod 600 {shown}"),
        );
    }
    match std::fs::File::open(&path) {
        Ok(_) => Check::pass(NAME, format!("{shown}: present, mode {mode:04o}")),
        Err(e) => Check::new(
            NAME,
            Status::Fail,
            format!("{shown}: cannot read: {e}"),
            format!("chmod 600 {shown}"),
        ),
    }
}

/// Each team-lead webhook: reachable, or with `--send-test-ping` a real test ping accepted.
async fn check_webhooks(cfg: &Config, opts: &Options) -> Vec<Check> {
    if cfg.escalation.webhook.is_empty() {
        return vec![Check::new(
            "webhooks",
            Status::Warn,
            "no [[escalation.webhook]]: escalations reach no team lead",
            "add the team leads' webhook in /etc/callguard/conf.d/ (example: /usr/share/doc/callguard/examples/conf.d/50-team-leads.toml; every key: /etc/callguard/callguard.toml)",
        )];
    }
    // The client pings are sent with (no redirects), with the probe's shorter timeout.
    let client = match crate::escalation::sender::client_with_timeout(PROBE_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            return vec![Check::new(
                "webhooks",
                Status::Fail,
                format!("cannot set up HTTP: {e}"),
                "check the system's TLS certificates (ca-certificates)",
            )];
        }
    };
    let masked = cfg.masked();
    let mut checks = Vec::new();
    for (i, hook) in cfg.escalation.webhook.iter().enumerate() {
        let name = format!("webhook[{i}]");
        let shown = masked
            .escalation
            .webhook
            .get(i)
            .map(|h| h.url.clone())
            .unwrap_or_default();
        checks.push(if opts.send_test_ping {
            test_ping(&client, cfg, hook, &name, &shown).await
        } else {
            reachable(&client, hook, &name, &shown).await
        });
    }
    checks
}

async fn reachable(
    client: &reqwest::Client,
    hook: &WebhookConfig,
    name: &str,
    shown: &str,
) -> Check {
    // Any HTTP answer (405 to a HEAD included) proves the path; only a test ping proves the body.
    match client.head(&hook.url).send().await {
        Ok(resp) => Check::pass(
            name,
            format!(
                "{shown}: reachable (HTTP {}); --send-test-ping sends a real ping",
                resp.status().as_u16()
            ),
        ),
        Err(e) => Check::new(
            name,
            Status::Fail,
            format!("{shown}: unreachable: {}", crate::host::error_chain(&e)),
            "check the URL, DNS, proxy and firewall between this machine and the receiver",
        ),
    }
}

/// The body of a test ping: the contract's shape with `"event": "callguard.test"` for `json`,
/// a plain text message for Slack and Teams.
pub fn test_body(cfg: &Config, format: WebhookFormat, id: &str) -> serde_json::Value {
    let host = hostname();
    let text = format!(
        "callguard test ping from {host}: team-lead pings from this workstation arrive here"
    );
    match format {
        WebhookFormat::Json => serde_json::json!({
            "event": TEST_EVENT,
            "id": id,
            "kind": "test",
            "agent": cfg.agent.extension,
            "agent_name": cfg.agent.name,
            "sent_at": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, false),
            "host": host,
            "text": text,
        }),
        WebhookFormat::Slack | WebhookFormat::Teams => serde_json::json!({ "text": text }),
    }
}

async fn test_ping(
    client: &reqwest::Client,
    cfg: &Config,
    hook: &WebhookConfig,
    name: &str,
    shown: &str,
) -> Check {
    let mut raw = [0u8; 8];
    let id = match getrandom::fill(&mut raw) {
        Ok(()) => format!("test-{}", hex::encode(raw)),
        Err(_) => format!(
            "test-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        ),
    };
    let body = test_body(cfg, hook.format, &id).to_string();
    let mut req = client
        .post(&hook.url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", &id);
    if !hook.secret_file.is_empty() {
        // The secret is read and the body signed exactly as a real ping's.
        match crate::escalation::sender::read_secret(&hook.secret_file) {
            Ok(secret) => {
                req = req.header(
                    crate::escalation::sender::SIGNATURE_HEADER,
                    crate::escalation::sender::signature(&secret, body.as_bytes()),
                )
            }
            Err(e) => {
                return Check::new(
                    name,
                    Status::Fail,
                    format!("{shown}: {e}"),
                    "make the secret file readable by the agent's user",
                );
            }
        }
    }
    match req.body(body).send().await {
        Ok(resp) if resp.status().is_success() => Check::pass(
            name,
            format!(
                "{shown}: test ping delivered (HTTP {})",
                resp.status().as_u16()
            ),
        ),
        Ok(resp) => Check::new(
            name,
            Status::Fail,
            format!(
                "{shown}: test ping refused (HTTP {})",
                resp.status().as_u16()
            ),
            "check the URL (a Slack/Teams URL carries its token), the format and the secret",
        ),
        Err(e) => Check::new(
            name,
            Status::Fail,
            format!("{shown}: unreachable: {}", crate::host::error_chain(&e)),
            "check the URL, DNS, proxy and firewall between this machine and the receiver",
        ),
    }
}

/// This machine's name, for the report and test pings.
pub fn hostname() -> String {
    crate::host::name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asterisk_probe_uses_the_ari_events_socket() {
        let mut cfg = Config::default();
        cfg.pbx.kind = PbxKind::Asterisk;
        cfg.pbx.url = "ws://pbx.example:8088".into();
        let u = pbx_probe_url(&cfg).unwrap();
        assert_eq!(u.path(), "/ari/events");
        assert!(u.query().unwrap().contains("app=callguard-doctor-"));
    }

    #[test]
    fn disk_thresholds() {
        assert_eq!(disk_verdict(100, 500).status, Status::Fail);
        assert_eq!(disk_verdict(700, 500).status, Status::Warn);
        assert_eq!(disk_verdict(5000, 500).status, Status::Pass);
    }

    #[test]
    fn clock_thresholds() {
        assert_eq!(
            clock_verdict(chrono::TimeDelta::milliseconds(1500)).status,
            Status::Pass
        );
        assert_eq!(
            clock_verdict(chrono::TimeDelta::seconds(-40)).status,
            Status::Warn
        );
    }

    #[test]
    fn key_mode_is_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_key(dir.path()).status, Status::Warn);
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        let key = keys.join("evidence.key");
        std::fs::write(&key, b"k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let c = check_key(dir.path());
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.contains("chmod 600"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(check_key(dir.path()).status, Status::Pass);
    }

    #[test]
    fn test_ping_body_is_marked_as_a_test() {
        let v = test_body(&Config::default(), WebhookFormat::Json, "test-1");
        assert_eq!(v["event"], TEST_EVENT);
        assert_eq!(v["id"], "test-1");
    }
}
