//! A tiny PBX that speaks protocol v1 on 127.0.0.1: it plays one scripted call for the demo.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// The scripted call.
#[derive(Debug, Clone)]
pub struct Script {
    /// Call id.
    pub call_id: String,
    /// Agent extension.
    pub agent: String,
    /// Caller number.
    pub caller: String,
    /// Call length in call time.
    pub length: Duration,
    /// Call time runs this many times faster than real time.
    pub time_scale: f64,
    /// Real-time pause between connecting and the call starting.
    pub lead_in: Duration,
}

/// A running simulator.
pub struct Simulator {
    /// `ws://127.0.0.1:PORT/`.
    pub url: String,
}

impl Simulator {
    /// Binds 127.0.0.1:0 and serves the script to every client until `shutdown`.
    pub async fn start(script: Script, shutdown: CancellationToken) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ws://{}/", listener.local_addr()?);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let script = script.clone();
                        let shutdown = shutdown.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve(stream, script, shutdown).await {
                                tracing::debug!(error = %e, "simulator connection ended");
                            }
                        });
                    }
                }
            }
        });
        Ok(Simulator { url })
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    script: Script,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ws = tokio_tungstenite::accept_async(stream).await?;
    let (mut tx, mut rx) = ws.split();
    // Drain the client's frames (pings are answered by tungstenite while we read).
    tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
    let send = |v: serde_json::Value| Message::Text(v.to_string().into());
    tx.send(send(json!({"type": "calls.snapshot", "calls": []})))
        .await?;
    tokio::time::sleep(script.lead_in).await;
    let at = chrono::Local::now().fixed_offset();
    tx.send(send(json!({
        "type": "call.start", "call_id": script.call_id, "at": at.to_rfc3339(),
        "agent": script.agent, "caller": script.caller, "direction": "inbound"
    })))
    .await?;
    let real = script.length.div_f64(script.time_scale);
    tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        _ = tokio::time::sleep(real) => {}
    }
    let end = at + chrono::Duration::from_std(real).unwrap_or_default();
    tx.send(send(json!({
        "type": "call.end", "call_id": script.call_id, "at": end.to_rfc3339(), "cause": "normal"
    })))
    .await?;
    shutdown.cancelled().await;
    let _ = tx.send(Message::Close(None)).await;
    Ok(())
}
