//! A real S3 server for tests (`s3s-fs` on 127.0.0.1, port chosen at run time, data in a temp
//! dir, SigV4 with fixed keys) and a recording HTTP proxy of our own between the daemon and the
//! server, so a test sees every request on the wire and can make the "store" fail or hang.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// Access key of the test server.
pub const ACCESS_KEY: &str = "callguard-test-access";
/// Secret key of the test server.
pub const SECRET_KEY: &str = "callguard-test-secret-0123456789abcdef";
/// How long a test waits for the server to come up.
const PATIENCE: Duration = Duration::from_secs(60);

/// Where the Makefile (`make s3-tools`) installs s3s-fs; `CALLGUARD_S3S_FS` overrides it.
pub fn s3s_fs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("CALLGUARD_S3S_FS") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    let tools = std::env::var_os("CALLGUARD_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(home).join(".cache/callguard-tools"));
    let bin = tools.join("s3s-fs/bin/s3s-fs");
    assert!(
        bin.is_file(),
        "the S3 test server is missing: {} — run `make s3-tools` (or `make test`), which builds \
         s3s-fs once per machine",
        bin.display()
    );
    bin
}

/// A running s3s-fs.
pub struct S3Server {
    /// The folder it serves: `<data>/<bucket>/<key>`.
    pub data: PathBuf,
    /// Its port on 127.0.0.1 (kept across restarts).
    pub port: u16,
    child: Option<Child>,
}

impl S3Server {
    /// Starts s3s-fs on a free port with a data dir under `dir`, and creates `bucket`.
    pub async fn start(dir: &Path, bucket: &str) -> S3Server {
        let data = dir.join("s3-data");
        std::fs::create_dir_all(data.join(bucket)).unwrap();
        let (child, port) = spawn(&data, 0).await;
        S3Server {
            data,
            port,
            child: Some(child),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: the store vanishes mid-request).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
            let _ = c.wait().await;
        }
    }

    /// Starts it again on the same port and data.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (child, port) = spawn(&self.data, self.port).await;
        assert_eq!(port, self.port);
        self.child = Some(child);
    }

    /// The stored bytes of `bucket/key`, read directly from the data dir.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.data.join(bucket).join(key)
    }

    /// Every object key under `bucket/prefix`, read from the data dir (s3s-fs keeps its own
    /// bookkeeping in dot-files, skipped).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        fn walk(base: &Path, d: &Path, out: &mut Vec<String>) {
            let Ok(rd) = std::fs::read_dir(d) else { return };
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let base = self.data.join(bucket);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }

    /// Multipart uploads the server still holds open (its `.upload-<id>.json` files).
    pub fn open_uploads(&self) -> Vec<String> {
        std::fs::read_dir(&self.data)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".upload-") && n.ends_with(".json"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

async fn spawn(data: &Path, port: u16) -> (Child, u16) {
    let mut child = Command::new(s3s_fs_binary())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(data)
        .env("RUST_LOG", "s3s_fs=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start s3s-fs");
    let stdout = child.stdout.take().unwrap();
    // The server logs "server is running at http://127.0.0.1:PORT" once it listens.
    let found = tokio::time::timeout(PATIENCE, async move {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(i) = line.find("server is running at http://") {
                let rest = &line[i + "server is running at http://".len()..];
                let port: String = rest
                    .rsplit(':')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                // Keep draining so the server never blocks on a full pipe.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                return port.parse::<u16>().ok();
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("s3s-fs did not report its listening address");
    (child, found)
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    /// Status returned to the client (0 when the connection was closed or hung).
    pub status: u16,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    /// The object key (path without the leading `/<bucket>/` and the query).
    pub fn key(&self, bucket: &str) -> String {
        let p = self.path.split('?').next().unwrap_or("");
        let p = p.trim_start_matches('/');
        let p = p.strip_prefix(bucket).unwrap_or(p).trim_start_matches('/');
        percent_decode(p)
    }
    pub fn query(&self) -> &str {
        self.path.split_once('?').map(|(_, q)| q).unwrap_or("")
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the proxy does with the next requests.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Forward to the server.
    Pass,
    /// Answer this status without forwarding (the store is "down").
    Fail(u16),
    /// Close the connection without an answer.
    Close,
    /// Requests whose path-and-query contains this text are held forever (never answered,
    /// never forwarded); others pass.
    HoldMatching(String),
}

struct ProxyState {
    seen: Vec<Seen>,
    mode: Mode,
    /// Headers added to the answers of HEAD and GET requests whose path contains the text;
    /// later rules win.
    add_headers: Vec<(String, Vec<(String, String)>)>,
}

/// The recording proxy.
pub struct Proxy {
    pub port: u16,
    state: Arc<Mutex<ProxyState>>,
    tls: bool,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

impl Proxy {
    /// Listens on 127.0.0.1:0 and forwards to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Proxy {
        Proxy::start_with(upstream, None).await
    }

    /// The same, speaking HTTPS to its clients with `tls` (the step that terminates TLS in
    /// front of a store); it still forwards plain HTTP to the server.
    pub async fn start_tls(upstream: u16, tls: Arc<tokio_rustls::rustls::ServerConfig>) -> Proxy {
        Proxy::start_with(upstream, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(upstream: u16, tls: Option<tokio_rustls::TlsAcceptor>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState {
            seen: Vec::new(),
            mode: Mode::Pass,
            add_headers: Vec::new(),
        }));
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build_http();
        let st = state.clone();
        let secure = tls.is_some();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let st = st.clone();
                let client = client.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let st = st.clone();
                        let client = client.clone();
                        async move { handle(req, upstream, st, client).await }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        // A client that does not trust the certificate ends the handshake.
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        Proxy {
            port,
            state,
            tls: secure,
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` when it speaks TLS).
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Adds `headers` to the answers to HEAD and GET requests whose path contains `path_part`
    /// ("" for all); a later rule overrides an earlier one for the same header. This is how
    /// a test makes the store report Object Lock retention, which s3s-fs does not keep.
    pub fn add_response_headers(&self, path_part: &str, headers: &[(&str, &str)]) {
        self.state.lock().unwrap().add_headers.push((
            path_part.to_string(),
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ));
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Waits (bounded) until a request satisfying `f` was seen.
    pub async fn wait_for(&self, what: &str, f: impl Fn(&Seen) -> bool) -> Seen {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(s) = self.seen().into_iter().find(|s| f(s)) {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "proxy never saw {what}"
            );
            // Poll interval only; each round looks at what really crossed the wire.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// New requests pass again; requests already held stay unanswered (their client has to
    /// give up on them, as it would with a dead connection).
    pub fn release(&self) {
        self.set_mode(Mode::Pass);
    }
}

async fn handle(
    mut req: Request<Incoming>,
    upstream: u16,
    st: Arc<Mutex<ProxyState>>,
    client: Client<HttpConnector, Incoming>,
) -> Result<Response<ProxyBody>, std::io::Error> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let method = req.method().as_str().to_string();
    let extra: Vec<(String, String)> = if matches!(method.as_str(), "GET" | "HEAD") {
        let s = st.lock().unwrap();
        s.add_headers
            .iter()
            .filter(|(part, _)| path.contains(part.as_str()))
            .flat_map(|(_, h)| h.iter().cloned())
            .collect()
    } else {
        Vec::new()
    };
    let idx;
    let mode;
    {
        let mut s = st.lock().unwrap();
        s.seen.push(Seen {
            method,
            path: path.clone(),
            headers,
            status: 0,
        });
        idx = s.seen.len() - 1;
        mode = s.mode.clone();
    }
    let set_status = |code: u16| st.lock().unwrap().seen[idx].status = code;
    match mode {
        Mode::Fail(code) => {
            set_status(code);
            let body = Full::new(Bytes::from_static(b"store unavailable (test proxy)"))
                .map_err(|never: Infallible| match never {})
                .boxed();
            let mut r = Response::new(body);
            *r.status_mut() = StatusCode::from_u16(code).unwrap();
            return Ok(r);
        }
        Mode::Close => {
            return Err(std::io::Error::other("test proxy closes the connection"));
        }
        Mode::HoldMatching(ref m) if path.contains(m.as_str()) => {
            // Held: the client waits on an answer that never comes.
            return std::future::pending().await;
        }
        _ => {}
    }
    let uri = format!("http://127.0.0.1:{upstream}{path}");
    *req.uri_mut() = uri.parse().unwrap();
    match client.request(req).await {
        Ok(mut resp) => {
            set_status(resp.status().as_u16());
            if resp.status().is_success() {
                for (k, v) in extra {
                    resp.headers_mut().insert(
                        hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        hyper::header::HeaderValue::from_str(&v).unwrap(),
                    );
                }
            }
            Ok(resp.map(|b| b.boxed()))
        }
        Err(_) => {
            set_status(502);
            let body = Full::new(Bytes::from_static(b"upstream down (test proxy)"))
                .map_err(|never: Infallible| match never {})
                .boxed();
            let mut r = Response::new(body);
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            Ok(r)
        }
    }
}
