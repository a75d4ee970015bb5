//! The real `callguard floor` binary for tests: its config in a temp dir, accounts made with the
//! real `callguard floor user add`, `kill -9` and restart; contract events published on the real
//! nats-server as a workstation would; a logged-in HTTP client for the board.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream;
use callguard::floor::contract::{
    self, CallerRef, Delivery, DeliveryState, EventBody, FloorEvent, PbxState, SCHEMA,
};
use chrono::{DateTime, FixedOffset, Utc};

/// How long a test waits for something that should happen within a second or two.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The password every test account gets.
pub const PASSWORD: &str = "correct horse battery";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A running `callguard floor`.
pub struct Floor {
    pub port: u16,
    pub config: PathBuf,
    pub dir: PathBuf,
    child: Option<Child>,
}

impl Floor {
    /// Writes a config (`[floor]` on `nats_url`, site `tokyo`, store `db`, teams a = 1001/1002,
    /// b = 2001, plus `extra` TOML) under `dir` and starts the binary.
    pub async fn start(dir: &Path, nats_url: &str, db: &str, extra: &str) -> Floor {
        Floor::start_with(dir, nats_url, db, extra, "").await
    }

    /// [`Floor::start`] with `floor_extra` lines inside the `[floor]` table.
    pub async fn start_with(
        dir: &Path,
        nats_url: &str,
        db: &str,
        extra: &str,
        floor_extra: &str,
    ) -> Floor {
        std::fs::create_dir_all(dir).expect("floor dir");
        let port = free_port();
        let config = dir.join("floor.toml");
        std::fs::write(
            &config,
            format!(
                "{extra}\n[state]\ndir = \"{state}\"\n[log]\nlevel = \"info\"\n\
                 [floor]\nnats_url = \"{nats_url}\"\nsite = \"tokyo\"\ndb = \"{db}\"\n\
                 listen = \"127.0.0.1:{port}\"\n{floor_extra}\n[floor.teams]\na = [\"1001\", \"1002\"]\n\
                 b = [\"2001\"]\n",
                state = dir.join("state").display(),
            ),
        )
        .expect("write floor.toml");
        let mut f = Floor {
            port,
            config,
            dir: dir.to_path_buf(),
            child: None,
        };
        f.spawn().await;
        f
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("floor.log"))
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_callguard"))
            .args(["floor", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start callguard floor");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the floor did not listen within 60 s:\n{}",
                self.log()
            );
            if let Some(c) = &mut self.child
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("the floor exited ({st}):\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The process id while running (for CPU and RSS figures).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The floor's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("floor.log")).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; the exit status within [`PATIENCE`] (a floor that does not stop fails the test).
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("a running floor");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the floor") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the floor did not stop within {PATIENCE:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the binary again with the same config.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// `callguard floor user add` through the real binary.
    pub fn add_user(&self, name: &str, display: &str, teams: &[&str], admin: bool) {
        add_user(&self.config, &self.dir, name, display, teams, admin);
    }

    /// `callguard floor user ARGS…` through the real binary: success, stdout, stderr.
    pub fn user(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
            .args(["floor", "user"])
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run floor user");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// The login form's cookie and CSRF token, as a browser gets them from `GET /login`.
pub async fn login_form(http: &reqwest::Client, base: &str) -> (String, String) {
    let res = http
        .get(format!("{base}/login"))
        .send()
        .await
        .expect("GET /login");
    let cookie = cookie_value(&res, "cg_login").expect("login cookie");
    let csrf = hidden_csrf(&res.text().await.expect("body"));
    (cookie, csrf)
}

/// The status of one login attempt.
pub async fn login_status(base: &str, name: &str, password: &str) -> u16 {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let (cookie, csrf) = login_form(&http, base).await;
    http.post(format!("{base}/login"))
        .header("cookie", format!("cg_login={cookie}"))
        .form(&[("name", name), ("password", password), ("csrf", &csrf)])
        .send()
        .await
        .expect("POST /login")
        .status()
        .as_u16()
}

impl Drop for Floor {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `callguard floor user add` with a password file.
pub fn add_user(config: &Path, dir: &Path, name: &str, display: &str, teams: &[&str], admin: bool) {
    let pw = dir.join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).expect("password file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callguard"));
    cmd.args([
        "floor",
        "user",
        "add",
        name,
        "--display-name",
        display,
        "--config",
    ])
    .arg(config)
    .arg("--password-file")
    .arg(&pw);
    for t in teams {
        cmd.args(["--team", t]);
    }
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().expect("run floor user add");
    assert!(
        out.status.success(),
        "floor user add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("user {name} added")));
}

/// Publishes contract events on JetStream as workstations would.
pub struct Workstations {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

fn now() -> DateTime<FixedOffset> {
    Utc::now().fixed_offset()
}

impl Workstations {
    pub async fn connect(nats_url: &str) -> Workstations {
        let client = async_nats::connect(nats_url)
            .await
            .expect("connect to nats");
        let js = jetstream::new(client.clone());
        Workstations { client, js }
    }

    /// Waits until the floor made the stream.
    pub async fn wait_for_stream(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self.js.get_stream(contract::STREAM).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the floor did not create the stream"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Publishes `ev` with its id as `Nats-Msg-Id` (or `msg_id`) and waits for the PubAck.
    pub async fn publish_as(&self, ev: &FloorEvent, msg_id: &str) {
        let mut h = HeaderMap::new();
        h.insert(contract::MSG_ID_HEADER, msg_id);
        self.js
            .publish_with_headers(ev.subject("tokyo", &ev.agent), h, ev.to_json().into())
            .await
            .expect("publish")
            .await
            .expect("PubAck");
    }

    pub async fn publish(&self, ev: &FloorEvent) {
        self.publish_as(ev, &ev.id.clone()).await;
    }
}

/// An event of `body` for agent `agent`'s call `call` from `caller`.
pub fn event(
    id: &str,
    agent: &str,
    call: Option<&str>,
    caller: Option<&str>,
    elapsed: Option<u64>,
    level: Option<u8>,
    body: EventBody,
) -> FloorEvent {
    FloorEvent {
        schema: SCHEMA.into(),
        id: id.into(),
        site: "tokyo".into(),
        host: format!("ws-{agent}"),
        agent: agent.into(),
        agent_name: match agent {
            "1001" => "佐藤".into(),
            "1002" => "鈴木".into(),
            _ => format!("Agent {agent}"),
        },
        call_id: call.map(String::from),
        caller: CallerRef {
            caller: caller.map(String::from),
            caller_hash: None,
        },
        at: now(),
        elapsed_secs: elapsed,
        level,
        body,
    }
}

pub fn call_start(id: &str, agent: &str, call: &str, caller: &str) -> FloorEvent {
    event(
        id,
        agent,
        Some(call),
        Some(caller),
        Some(0),
        None,
        EventBody::CallStart {
            direction: "inbound".into(),
            adopted: false,
        },
    )
}

pub fn call_end(id: &str, agent: &str, call: &str, caller: &str, secs: u64) -> FloorEvent {
    event(
        id,
        agent,
        Some(call),
        Some(caller),
        Some(secs),
        None,
        EventBody::CallEnd {
            started_at: now() - chrono::Duration::seconds(secs as i64),
            duration_secs: secs,
            cause: "normal".into(),
        },
    )
}

pub fn mark(id: &str, agent: &str, call: &str, caller: &str, level: u8, quote: &str) -> FloorEvent {
    event(
        id,
        agent,
        Some(call),
        Some(caller),
        Some(90),
        Some(level),
        EventBody::Mark {
            mark: "threat".into(),
            quote: Some(quote.into()),
            offset_secs: 90,
            rules: vec!["threat-escalate".into()],
            grounds_to_end: false,
        },
    )
}

pub fn escalation(id: &str, agent: &str, call: &str, caller: &str, level: u8) -> FloorEvent {
    event(
        id,
        agent,
        Some(call),
        Some(caller),
        Some(95),
        Some(level),
        EventBody::Escalation {
            escalation_id: format!("esc-{id}"),
            reason: "manual".into(),
            note: None,
            delivery: Delivery {
                state: DeliveryState::Delivered,
                targets: 1,
                delivered: 1,
                error: None,
            },
        },
    )
}

pub fn heartbeat(id: &str, agent: &str, interval_secs: u64, pbx: PbxState) -> FloorEvent {
    event(
        id,
        agent,
        None,
        None,
        None,
        None,
        EventBody::Heartbeat {
            pbx_state: pbx,
            pbx_detail: String::new(),
            open_calls: 0,
            version: "0.1.0".into(),
            interval_secs,
            backlog: 0,
            up_since: None,
        },
    )
}

/// A board session over plain HTTP (loopback), as a browser would hold it.
pub struct Session {
    pub base: String,
    pub cookie: String,
    pub csrf: String,
    pub http: reqwest::Client,
}

fn cookie_value(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

fn hidden_csrf(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let i = html.find(marker).expect("a csrf field") + marker.len();
    html[i..].split('"').next().expect("csrf value").to_string()
}

impl Session {
    pub async fn login(base: &str, name: &str) -> Session {
        Session::login_with(base, name, PASSWORD).await
    }

    pub async fn login_with(base: &str, name: &str, password: &str) -> Session {
        // A fresh connection per request, as the board's pages are used (no reliance on a kept-
        // alive connection surviving between requests).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            // A board that stops answering fails the test instead of hanging it.
            .timeout(PATIENCE)
            .build()
            .expect("client");
        let res = http
            .get(format!("{base}/login"))
            .send()
            .await
            .expect("GET /login");
        let login_cookie = cookie_value(&res, "cg_login").expect("login cookie");
        let csrf = hidden_csrf(&res.text().await.expect("body"));
        let res = http
            .post(format!("{base}/login"))
            .header("cookie", format!("cg_login={login_cookie}"))
            .form(&[("name", name), ("password", password), ("csrf", &csrf)])
            .send()
            .await
            .expect("POST /login");
        assert_eq!(res.status(), 303, "login of {name} refused");
        let cookie = format!(
            "cg_session={}",
            cookie_value(&res, "cg_session").expect("session cookie")
        );
        let page = http
            .get(format!("{base}/"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("GET /")
            .text()
            .await
            .expect("board");
        Session {
            base: base.to_string(),
            csrf: hidden_csrf(&page),
            cookie,
            http,
        }
    }

    pub async fn board(&self) -> serde_json::Value {
        let res = self
            .http
            .get(format!("{}/api/board", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("GET /api/board");
        assert_eq!(res.status(), 200);
        res.json().await.expect("board JSON")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("GET")
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .expect("POST")
    }
}

/// Polls `check` until it returns `Some`, for at most [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
