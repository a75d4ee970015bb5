//! A tiny PBX that speaks protocol v1 on 127.0.0.1: it plays one scripted call for the demo.

use std::time::Duration;

use base64::Engine;
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
    tx.send(send(json!({
        "type": "media.start", "call_id": script.call_id, "encoding": "audio/x-mulaw",
        "sample_rate": 8000, "channels": 1
    })))
    .await?;
    // 20 ms frames in real time on both tracks until the call ends.
    let stop = tokio::time::Instant::now() + real;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut voice = Voice::default();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(stop) => break,
            _ = tick.tick() => {
                seq += 1;
                let (customer, agent) = voice.frame();
                for (track, payload) in [("inbound", customer), ("outbound", agent)] {
                    tx.send(send(json!({
                        "type": "media", "call_id": script.call_id, "track": track, "seq": seq,
                        "payload": base64::engine::general_purpose::STANDARD.encode(payload),
                    })))
                    .await?;
                }
            }
        }
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

/// A synthetic conversation: the customer (inbound) talks in long, loud phrases at a high,
/// wavering pitch; the agent (outbound) answers in the pauses, lower and quieter. Vowel-like
/// harmonics with a syllable rhythm, so it sounds like speech rather than a tone.
#[derive(Default)]
struct Voice {
    n: u64,
    phase_c: f64,
    phase_a: f64,
}

impl Voice {
    const RATE: f64 = 8000.0;

    /// One 20 ms frame per track, μ-law.
    fn frame(&mut self) -> (Vec<u8>, Vec<u8>) {
        let mut customer = Vec::with_capacity(160);
        let mut agent = Vec::with_capacity(160);
        for _ in 0..160 {
            let t = self.n as f64 / Self::RATE;
            self.n += 1;
            // A 6 s turn cycle: the customer talks 4 s, the agent 2 s.
            let turn = t % 6.0;
            let syllable = (std::f64::consts::TAU * 4.0 * t).sin().max(0.0).powf(0.6);
            let (c_on, a_on) = if turn < 4.0 { (1.0, 0.0) } else { (0.0, 1.0) };
            let f_c = 210.0 + 40.0 * (std::f64::consts::TAU * 0.7 * t).sin();
            let f_a = 120.0 + 10.0 * (std::f64::consts::TAU * 0.5 * t).sin();
            self.phase_c = (self.phase_c + f_c / Self::RATE) % 1.0;
            self.phase_a = (self.phase_a + f_a / Self::RATE) % 1.0;
            let c = harmonics(self.phase_c) * syllable * c_on * 12000.0;
            let a = harmonics(self.phase_a) * syllable * a_on * 5000.0;
            customer.push(crate::evidence::g711::linear_to_mulaw(c as i16));
            agent.push(crate::evidence::g711::linear_to_mulaw(a as i16));
        }
        (customer, agent)
    }
}

/// A vowel: harmonics weighted around formants near 700 Hz and 1200 Hz.
fn harmonics(phase: f64) -> f64 {
    let weights = [1.0, 0.8, 0.6, 0.5, 0.35, 0.25, 0.15];
    let sum: f64 = weights
        .iter()
        .enumerate()
        .map(|(k, w)| w * (std::f64::consts::TAU * phase * (k as f64 + 1.0)).sin())
        .sum();
    sum / 3.0
}
