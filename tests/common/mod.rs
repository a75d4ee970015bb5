//! Shared test parts: a PBX played by a real websocket server on 127.0.0.1:0, and the real daemon
//! started in-process against it.
#![allow(dead_code)]

pub mod ari;
pub mod browser;
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

/// A configuration file for the real binary: PBX at `url`, state, control socket and evidence
/// under `tmp`, no local sound.
pub fn config_file(tmp: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = tmp.join("callguard.toml");
    let text = format!(
        r#"
[pbx]
url = "{url}"

[prompt]
local = false

[state]
dir = "{state}"

[control]
socket = "{socket}"

[evidence]
dir = "{evidence}"
min_free_mb = 0
"#,
        state = tmp.join("state").display(),
        evidence = tmp.join("evidence").display(),
        socket = tmp.join("control.sock").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}
