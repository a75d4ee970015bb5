//! A call in progress for the tray's screenshot (`scripts/tray-screenshot.sh`): a PBX on
//! 127.0.0.1 that starts one call 12 minutes old, the real daemon with its tray item, and two
//! 「責任者を出せ」 marks. Runs until killed.

use std::time::Duration;

use callguard::calls::Command;
use callguard::config::Config;
use callguard::daemon::{Daemon, RunOptions};
use callguard::harassment::MarkKind;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let mut cfg = Config::default();
    cfg.pbx.url = format!("ws://{}/", listener.local_addr()?);
    cfg.agent.extension = "1001".into();
    cfg.agent.name = "佐藤".into();
    cfg.prompt.local = false;
    cfg.state.dir = dir.path().join("state").display().to_string();
    cfg.evidence.dir = dir.path().join("evidence").display().to_string();
    cfg.evidence.source = callguard::config::EvidenceSource::Off;
    cfg.control.socket = dir.path().join("control.sock").display().to_string();
    let daemon = Daemon::new(cfg, RunOptions::default());
    let commands = daemon.commands();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(daemon.run(shutdown.clone()));
    let (stream, _) = listener.accept().await?;
    let mut ws = tokio_tungstenite::accept_async(stream).await?;
    let at = chrono::Local::now() - chrono::Duration::seconds(12 * 60 + 26);
    let start = serde_json::json!({"type":"call.start","call_id":"c-4711","agent":"1001",
        "caller":"0312345678","at":at.to_rfc3339()});
    ws.send(Message::Text(start.to_string().into())).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        let (reply, rx) = tokio::sync::oneshot::channel();
        commands
            .send(Command::Mark {
                kind: MarkKind::Manager,
                quote: Some("責任者を出せ".into()),
                call_id: None,
                reply,
            })
            .await?;
        let _ = rx.await;
    }
    println!("ready");
    while let Some(Ok(_)) = ws.next().await {}
    shutdown.cancel();
    let _ = run.await;
    Ok(())
}
