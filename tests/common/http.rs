//! A webhook receiver for tests: raw HTTP/1.1 on 127.0.0.1, one request per connection,
//! answering scripted statuses.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long a test waits for something that should happen within a few seconds.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Hit {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("body is JSON")
    }
}

#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
}

pub fn reply(status: u16) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
    }
}

pub struct Receiver {
    pub port: u16,
    pub hits: mpsc::UnboundedReceiver<Hit>,
    count: Arc<Mutex<usize>>,
}

impl Receiver {
    /// Answers the scripted replies in order, then 200.
    pub async fn start(script: Vec<Reply>) -> Receiver {
        Receiver::start_on(0, script).await
    }

    pub async fn start_on(port: u16, script: Vec<Reply>) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, hits) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let count = Arc::new(Mutex::new(0));
        let counter = count.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, script, counter) = (tx.clone(), script.clone(), counter.clone());
                tokio::spawn(async move {
                    if let Some(hit) = read_request(stream, &script, &counter).await {
                        let _ = tx.send(hit);
                    }
                });
            }
        });
        Receiver { port, hits, count }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn next(&mut self) -> Hit {
        tokio::time::timeout(PATIENCE, self.hits.recv())
            .await
            .expect("no request reached the receiver")
            .expect("receiver stopped")
    }

    pub fn requests(&self) -> usize {
        *self.count.lock().unwrap()
    }
}

async fn read_request(
    mut stream: TcpStream,
    script: &Mutex<VecDeque<Reply>>,
    count: &Mutex<usize>,
) -> Option<Hit> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let hit = Hit {
        path: request_line.split(' ').nth(1).unwrap_or("").to_string(),
        headers,
        body: String::from_utf8(body).ok()?,
        at: Instant::now(),
    };
    assert!(request_line.starts_with("POST "), "{request_line}");
    *count.lock().unwrap() += 1;
    let r = script.lock().unwrap().pop_front().unwrap_or(reply(200));
    let mut answer = format!(
        "HTTP/1.1 {} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n",
        r.status
    );
    for (k, v) in &r.headers {
        answer.push_str(&format!("{k}: {v}\r\n"));
    }
    answer.push_str("\r\n");
    stream.write_all(answer.as_bytes()).await.ok()?;
    let _ = stream.shutdown().await;
    Some(hit)
}

/// A loopback port with nobody listening (the receiver is "down").
pub async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}
