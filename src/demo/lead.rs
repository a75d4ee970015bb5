//! The team lead's side of the demo: a webhook receiver on 127.0.0.1 that accepts the pings and
//! hands their JSON bodies to the timeline.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Largest ping body read.
const MAX_BODY: usize = 1024 * 1024;

/// A running receiver.
pub struct LeadInbox {
    /// `http://127.0.0.1:PORT/lead`.
    pub url: String,
    /// Bodies of the pings received, with their `Idempotency-Key`.
    pub pings: mpsc::UnboundedReceiver<(serde_json::Value, String)>,
}

impl LeadInbox {
    /// Binds 127.0.0.1:0 and answers every request 200 until the process ends.
    pub async fn start() -> std::io::Result<LeadInbox> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/lead", listener.local_addr()?);
        let (tx, pings) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Some(ping) = read_ping(&mut stream).await {
                        let _ = tx.send(ping);
                    }
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        )
                        .await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(LeadInbox { url, pings })
    }
}

async fn read_ping(stream: &mut tokio::net::TcpStream) -> Option<(serde_json::Value, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > MAX_BODY {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let len: usize = header("content-length")?.parse().ok()?;
    if len > MAX_BODY {
        return None;
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let json = serde_json::from_slice(&body[..len]).ok()?;
    Some((json, header("idempotency-key").unwrap_or_default()))
}
