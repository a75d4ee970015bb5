//! Shared test parts: a PBX played by a real websocket server on 127.0.0.1:0, and the real daemon
//! started in-process against it.
#![allow(dead_code)]

pub mod ari;
pub mod browser;
pub mod daemon;
pub mod dbus;
pub mod floor;
pub mod http;
pub mod nats;
pub mod pdf;
pub mod postgres;
pub mod s3;

use std::time::Duration;

use callguard::config::Config;
use callguard::daemon::{Daemon, RunOptions};
use callguard::events::Report;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// A PBX: every accepted websocket connection is handed to the test.
pub struct FakePbx {
    pub url: String,
    conns: mpsc::Receiver<PbxConn>,
}

/// One client connection as the PBX sees it.
pub struct PbxConn {
    ws: WebSocketStream<TcpStream>,
}

impl FakePbx {
    pub async fn start() -> FakePbx {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                    continue;
                };
                if tx.send(PbxConn { ws }).await.is_err() {
                    return;
                }
            }
        });
        FakePbx { url, conns }
    }

    /// The next client connection (waits up to a minute of test time).
    pub async fn accept(&mut self) -> PbxConn {
        tokio::time::timeout(Duration::from_secs(60), self.conns.recv())
            .await
            .expect("daemon did not connect")
            .expect("listener stopped")
    }
}

impl PbxConn {
    pub async fn send(&mut self, v: serde_json::Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_text(&mut self, text: String) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    pub async fn send_message(&mut self, m: Message) {
        self.ws.send(m).await.unwrap();
    }

    /// Drops the TCP connection without a close handshake, as a crashing PBX would.
    pub fn drop_hard(self) {
        drop(self.ws);
    }

    /// Reads (and discards) client frames until the client goes away.
    pub async fn drain(mut self) {
        while let Some(Ok(_)) = self.ws.next().await {}
    }
}

/// A daemon running in-process against `cfg.pbx.url`.
pub struct RunningDaemon {
    pub reports: broadcast::Receiver<Report>,
    pub shutdown: CancellationToken,
    pub commands: mpsc::Sender<callguard::calls::Command>,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A configuration for tests: state and evidence in `dir`, the given PBX.
pub fn test_config(dir: &std::path::Path, url: &str) -> Config {
    let mut cfg = Config::default();
    cfg.pbx.url = url.to_string();
    cfg.state.dir = dir.join("state").display().to_string();
    cfg.evidence.dir = dir.join("evidence").display().to_string();
    cfg.prompt.local = false;
    cfg.control.socket = dir.join("control.sock").display().to_string();
    // Each ping on its own, at once: the tests that merge pings set a coalesce of their own.
    cfg.escalation.coalesce = Duration::ZERO;
    cfg
}

/// How an in-process test daemon runs, built from the one default the tests share: headless
/// (no desktop notifications, no tray), fired warnings kept in memory only, real time.
#[derive(Debug, Clone)]
pub struct TestRun {
    opts: RunOptions,
}

impl TestRun {
    /// The shared default.
    pub fn headless() -> TestRun {
        TestRun {
            opts: RunOptions {
                time_scale: 1.0,
                volatile: true,
                desktop: false,
            },
        }
    }

    /// Thresholds divided by `scale` (`--time-scale`).
    pub fn time_scale(mut self, scale: f64) -> TestRun {
        self.opts.time_scale = scale;
        self
    }

    /// Fired warnings kept on disk, as in production.
    pub fn remembering(mut self) -> TestRun {
        self.opts.volatile = false;
        self
    }

    /// The options, for [`Daemon::new`].
    pub fn opts(self) -> RunOptions {
        self.opts
    }

    /// Starts a daemon with `cfg` in-process.
    pub fn start(self, cfg: Config) -> RunningDaemon {
        start_daemon(cfg, self.opts)
    }
}

pub fn start_daemon(cfg: Config, opts: RunOptions) -> RunningDaemon {
    let daemon = Daemon::new(cfg, opts);
    let reports = daemon.reports();
    let commands = daemon.commands();
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(daemon.run(shutdown.clone()));
    RunningDaemon {
        reports,
        shutdown,
        commands,
        handle,
    }
}

impl RunningDaemon {
    /// The next report for which `pick` returns something (waits up to an hour of test time).
    pub async fn next<T>(&mut self, mut pick: impl FnMut(&Report) -> Option<T>) -> T {
        let fut = async {
            loop {
                match self.reports.recv().await {
                    Ok(r) => {
                        if let Some(t) = pick(&r) {
                            return t;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => panic!("daemon stopped"),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(3600), fut)
            .await
            .expect("report did not come")
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.await.unwrap().unwrap();
    }
}

/// Runs the real `callguard ARGS --config CONFIG`; (exit code, stdout, stderr).
pub async fn cli(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("CALLGUARD_CONFIG")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// `callguard status --json` once the daemon answers and `ready` holds (bounded: a minute).
pub async fn status_until(
    config: &std::path::Path,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, err) = cli(config, &["status", "--json"]).await;
        if code == 0 {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            if ready(&v) {
                return v;
            }
        } else {
            assert!(
                err.contains("not running"),
                "unexpected status failure: {err}"
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "status never became ready"
        );
        // Poll interval only: each round is a real exchange with the daemon.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The configuration file of a real-binary test, as TOML: the PBX, state and evidence under the
/// test's folder, no local sound; everything else only when a test asks for it.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    dir: std::path::PathBuf,
    pbx: String,
    language: Option<String>,
    agent: Vec<String>,
    local_sound: bool,
    evidence: Vec<String>,
    control: bool,
    coalesce: Option<String>,
    webhooks: Vec<(String, String)>,
}

impl ConfigFile {
    /// PBX at `url`, `state/` and `evidence/` under `dir`.
    pub fn new(dir: &std::path::Path, url: &str) -> ConfigFile {
        ConfigFile {
            dir: dir.to_path_buf(),
            pbx: url.to_string(),
            language: None,
            agent: Vec::new(),
            local_sound: false,
            evidence: Vec::new(),
            control: false,
            coalesce: None,
            webhooks: Vec::new(),
        }
    }

    /// `language = LANG` (else the default, Japanese).
    pub fn language(mut self, lang: &str) -> ConfigFile {
        self.language = Some(lang.to_string());
        self
    }

    /// `agent.extension`.
    pub fn extension(mut self, ext: &str) -> ConfigFile {
        self.agent.push(format!("extension = \"{ext}\""));
        self
    }

    /// `agent.name`.
    pub fn agent_name(mut self, name: &str) -> ConfigFile {
        self.agent.push(format!("name = \"{name}\""));
        self
    }

    /// `prompt.local = true`: sounds on this machine.
    pub fn local_sound(mut self) -> ConfigFile {
        self.local_sound = true;
        self
    }

    /// `evidence.source = "off"`.
    pub fn evidence_off(mut self) -> ConfigFile {
        self.evidence.push("source = \"off\"".into());
        self
    }

    /// `evidence.min_free_mb`.
    pub fn min_free_mb(mut self, mb: u64) -> ConfigFile {
        self.evidence.push(format!("min_free_mb = {mb}"));
        self
    }

    /// The control socket at `DIR/control.sock`.
    pub fn control_socket(mut self) -> ConfigFile {
        self.control = true;
        self
    }

    /// `escalation.coalesce`.
    pub fn coalesce(mut self, window: &str) -> ConfigFile {
        self.coalesce = Some(window.to_string());
        self
    }

    /// One more `[[escalation.webhook]]`.
    pub fn webhook(mut self, url: &str, format: &str) -> ConfigFile {
        self.webhooks.push((url.to_string(), format.to_string()));
        self
    }

    /// The TOML.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let d = self.dir.display();
        let mut t = String::new();
        if let Some(l) = &self.language {
            let _ = writeln!(t, "language = \"{l}\"");
        }
        let _ = writeln!(t, "[pbx]\nurl = \"{}\"", self.pbx);
        if !self.agent.is_empty() {
            let _ = writeln!(t, "[agent]\n{}", self.agent.join("\n"));
        }
        let _ = writeln!(t, "[prompt]\nlocal = {}", self.local_sound);
        let _ = writeln!(t, "[state]\ndir = \"{d}/state\"");
        let _ = writeln!(t, "[evidence]\ndir = \"{d}/evidence\"");
        for line in &self.evidence {
            let _ = writeln!(t, "{line}");
        }
        if self.control {
            let _ = writeln!(t, "[control]\nsocket = \"{d}/control.sock\"");
        }
        if let Some(c) = &self.coalesce {
            let _ = writeln!(t, "[escalation]\ncoalesce = \"{c}\"");
        }
        for (url, format) in &self.webhooks {
            let _ = writeln!(
                t,
                "[[escalation.webhook]]\nurl = \"{url}\"\nformat = \"{format}\""
            );
        }
        t
    }

    /// Writes `DIR/callguard.toml`.
    pub fn write(&self) -> std::path::PathBuf {
        let path = self.dir.join("callguard.toml");
        std::fs::write(&path, self.text()).unwrap();
        path
    }
}

/// A configuration file for the real binary: PBX at `url`, state, control socket and evidence
/// under `tmp`, no local sound, English answers (what the tests read).
pub fn config_file(tmp: &std::path::Path, url: &str) -> std::path::PathBuf {
    ConfigFile::new(tmp, url)
        .language("en")
        .min_free_mb(0)
        .control_socket()
        .write()
}
