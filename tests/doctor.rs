//! `callguard doctor` as IT runs it: the real binary against a PBX played by a loopback
//! websocket server, a notification server registered on a private session bus, and a loopback
//! webhook receiver.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::Engine;
use common::dbus::{SessionBus, serve_notifications};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_callguard");
const WAIT: Duration = Duration::from_secs(60);

/// How the loopback PBX answers the websocket upgrade.
#[derive(Clone)]
struct PbxBehaviour {
    /// Expected `Authorization` header; anything else gets 401.
    auth: Option<String>,
    /// Offset of the PBX's Date header against real time.
    clock_offset: chrono::TimeDelta,
}

/// A PBX accepting websocket upgrades on 127.0.0.1; returns its URL.
// The handshake callback's error type is tungstenite's, large by design.
#[allow(clippy::result_large_err)]
async fn start_pbx(behaviour: PbxBehaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let b = behaviour.clone();
            tokio::spawn(async move {
                let callback = move |req: &Request, mut resp: Response| {
                    let date = (chrono::Utc::now() + b.clock_offset)
                        .format("%a, %d %b %Y %H:%M:%S GMT")
                        .to_string();
                    let date = HeaderValue::from_str(&date).unwrap();
                    let given = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok());
                    if let Some(want) = &b.auth
                        && given != Some(want.as_str())
                    {
                        let mut err = ErrorResponse::new(Some("unauthorized".into()));
                        *err.status_mut() = StatusCode::UNAUTHORIZED;
                        err.headers_mut().insert("date", date);
                        return Err(err);
                    }
                    resp.headers_mut().insert("date", date);
                    Ok(resp)
                };
                if let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await {
                    use futures_util::StreamExt;
                    while let Some(Ok(_)) = ws.next().await {}
                }
            });
        }
    });
    url
}

/// A webhook receiver answering 200 to everything; hands each request (head and body) over.
async fn start_webhook() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/leads", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let len = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                reader.read_exact(&mut body).await.unwrap();
                let _ = tx.send(format!("{head}{}", String::from_utf8_lossy(&body)));
                let _ = reader
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, rx)
}

/// A scratch workstation: home, XDG folders, an empty system folder, a config file.
struct Workstation {
    dir: tempfile::TempDir,
}

impl Workstation {
    fn new() -> Workstation {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        Workstation { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Writes the config file with `pbx_url` and the extra TOML, in English (what most tests
    /// read).
    fn config(&self, pbx_url: &str, extra: &str) -> PathBuf {
        self.config_in("en", pbx_url, extra)
    }

    /// [`config`](Self::config) with `language = LANG`.
    fn config_in(&self, lang: &str, pbx_url: &str, extra: &str) -> PathBuf {
        let file = self.path().join(format!("callguard-{lang}.toml"));
        std::fs::write(
            &file,
            format!(
                "language = \"{lang}\"\n[pbx]\nurl = \"{pbx_url}\"\n{extra}\n[state]\ndir = \"{}\"\n",
                self.state().display()
            ),
        )
        .unwrap();
        file
    }

    /// The real binary with this workstation's environment (and no session bus).
    fn command(&self, args: &[&str], config: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.args(args).arg("--config").arg(config);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CALLGUARD") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("config"))
            .env("XDG_DATA_HOME", self.path().join("data"))
            .env("CALLGUARD_SYSTEM_DIR", self.path().join("etc"))
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}/no-bus", self.path().display()),
            )
            .kill_on_drop(true);
        cmd
    }

    /// A signing key with the given mode.
    fn key(&self, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let keys = self.state().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let key = keys.join("evidence.key");
        std::fs::write(&key, b"not a real key").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    async fn doctor(&self, config: &Path, bus: Option<&SessionBus>, args: &[&str]) -> Output {
        let mut cmd = self.command(&["doctor"], config);
        cmd.args(args);
        if let Some(b) = bus {
            cmd.env("DBUS_SESSION_BUS_ADDRESS", &b.address);
        }
        tokio::time::timeout(WAIT, cmd.output())
            .await
            .expect("doctor did not finish")
            .unwrap()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The table line of `check`, e.g. `pass  pbx  …`.
fn line<'a>(table: &'a str, check: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(check))
        .unwrap_or_else(|| panic!("no `{check}` line in:\n{table}"))
}

/// The `--json` row of `check`.
fn row<'a>(v: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("no {check} in {v}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_working_workstation_passes() {
    let bus = SessionBus::start();
    let _server = serve_notifications(&bus, &["body", "persistence", "actions"]).await;
    let token = base64::engine::general_purpose::STANDARD.encode("agent1001:s3cret");
    let pbx = start_pbx(PbxBehaviour {
        auth: Some(format!("Basic {token}")),
        clock_offset: chrono::TimeDelta::zero(),
    })
    .await;
    let (hook, mut pings) = start_webhook().await;
    let ws = Workstation::new();
    let pw = ws.path().join("pbx.password");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let secret = ws.path().join("hook.secret");
    std::fs::write(&secret, "hook-key\n").unwrap();
    ws.key(0o600);
    let config = ws.config(
        &pbx,
        &format!(
            "username = \"agent1001\"\npassword_file = \"{}\"\n[agent]\nextension = \"1001\"\n\
             [[escalation.webhook]]\nurl = \"{hook}\"\nsecret_file = \"{}\"\n",
            pw.display(),
            secret.display()
        ),
    );

    let out = ws.doctor(&config, Some(&bus), &["--send-test-ping"]).await;
    let table = stdout(&out);
    assert!(out.status.success(), "doctor failed:\n{table}");
    assert!(line(&table, "config").starts_with("pass"), "{table}");
    let pbx_line = line(&table, "pbx");
    assert!(
        pbx_line.starts_with("pass") && pbx_line.contains("credentials of `agent1001` accepted"),
        "{table}"
    );
    assert!(line(&table, "clock").starts_with("pass"), "{table}");
    let notes = line(&table, "notifications");
    assert!(
        notes.starts_with("pass")
            && notes.contains("callguard-test")
            && notes.contains("persistence"),
        "{table}"
    );
    assert!(line(&table, "evidence").starts_with("pass"), "{table}");
    assert!(line(&table, "signing-key").starts_with("pass"), "{table}");
    assert!(
        line(&table, "webhook[0]").contains("test ping delivered"),
        "{table}"
    );

    // The ping really arrived, as a signed JSON test event.
    let request = tokio::time::timeout(WAIT, pings.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(request.starts_with("POST /hooks/leads"), "{request}");
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["event"], "callguard.test");
    assert_eq!(v["agent"], "1001");
    let head = head.to_ascii_lowercase();
    assert!(head.contains("idempotency-key: test-"), "{head}");
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hook-key").unwrap();
    mac.update(body.as_bytes());
    let want = format!(
        "x-callguard-signature: sha256={}",
        hex::encode(mac.finalize().into_bytes())
    );
    assert!(head.contains(&want), "{head}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_pbx_fails_and_json_has_the_fleet_shape() {
    // A port that was just free: nothing listens there.
    let port = common::http::free_port().await;
    let ws = Workstation::new();
    let config = ws.config(&format!("ws://127.0.0.1:{port}/"), "");

    let out = ws.doctor(&config, None, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let table = stdout(&out);
    assert!(line(&table, "pbx").starts_with("FAIL"), "{table}");

    let out = ws.doctor(&config, None, &["--json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["host"].as_str().is_some_and(|h| !h.is_empty()));
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let checks = v["checks"].as_array().unwrap();
    for c in checks {
        assert!(
            ["pass", "warn", "fail"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
        assert!(c["check"].is_string() && c["detail"].is_string() && c["fix"].is_string());
        if c["status"] != "pass" {
            assert!(
                !c["fix"].as_str().unwrap().is_empty(),
                "a line without a fix: {c}"
            );
        }
    }
    let by_name = |name: &str| {
        checks
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no {name} in {v}"))
    };
    assert_eq!(by_name("pbx")["status"], "fail");
    assert_eq!(by_name("notifications")["status"], "fail");
    assert_eq!(by_name("signing-key")["status"], "warn");
    assert!(
        by_name("signing-key")["detail"]
            .as_str()
            .unwrap()
            .contains("created on first run")
    );
    assert_eq!(by_name("webhooks")["status"], "warn");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_credentials_and_a_skewed_clock_are_reported() {
    let pbx = start_pbx(PbxBehaviour {
        auth: Some("Basic nobody-gets-in".into()),
        clock_offset: chrono::TimeDelta::seconds(-120),
    })
    .await;
    let ws = Workstation::new();
    ws.key(0o644);
    let config = ws.config(&pbx, "username = \"agent1001\"\n");
    let out = ws.doctor(&config, None, &[]).await;
    let table = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let pbx_line = line(&table, "pbx");
    assert!(
        pbx_line.starts_with("FAIL") && pbx_line.contains("credentials refused (HTTP 401"),
        "{table}"
    );
    // The refusal still carries the PBX's Date: this clock is about two minutes ahead.
    let clock = line(&table, "clock");
    assert!(
        clock.starts_with("WARN") && clock.contains("+12"),
        "{table}"
    );
    assert!(line(&table, "signing-key").starts_with("FAIL"), "{table}");
    assert!(table.contains("chmod 600"), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_configuration_is_one_failing_line() {
    let ws = Workstation::new();
    let config = ws.config("http://not-a-websocket/", "");
    let out = ws.doctor(&config, None, &[]).await;
    let table = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let l = line(&table, "config");
    assert!(l.starts_with("FAIL") && l.contains("pbx.url"), "{table}");
}

/// Issue 11: with the receiver down, reqwest's error repeats the full URL; neither the table
/// nor `--json` may show the token, and the port stays so receivers can be told apart.
#[tokio::test(flavor = "multi_thread")]
async fn a_down_receiver_shows_no_token_and_keeps_the_port() {
    let port = common::http::free_port().await;
    let ws = Workstation::new();
    let config = ws.config(
        "ws://127.0.0.1:9/",
        &format!(
            "[[escalation.webhook]]\nurl = \"http://127.0.0.1:{port}/hooks/T0KEN5ecret/post\"\nformat = \"json\"\n"
        ),
    );
    let masked = format!("http://127.0.0.1:{port}/hooks/…(masked)");
    for args in [&[][..], &["--send-test-ping"][..]] {
        let out = ws.doctor(&config, None, args).await;
        let all = stdout(&out) + &String::from_utf8_lossy(&out.stderr);
        assert!(!all.contains("T0KEN5ecret"), "{all}");
        let l = line(&all, "webhook[0]");
        assert!(l.starts_with("FAIL"), "{all}");
        // Shown once, masked once: `…(masked): unreachable`, not `…(masked)): …`.
        assert!(l.contains(&format!("{masked}: unreachable")), "{l}");
    }
    let out = ws.doctor(&config, None, &["--json"]).await;
    let text = stdout(&out);
    assert!(!text.contains("T0KEN5ecret"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let hook = row(&v, "webhook[0]");
    assert_eq!(hook["status"], "fail", "{hook}");
    assert!(
        hook["detail"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{masked}: unreachable")),
        "{hook}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_changes_nothing_and_its_fixes_point_to_installed_files() {
    let port = common::http::free_port().await;
    let ws = Workstation::new();
    let config = ws.config(&format!("ws://127.0.0.1:{port}/"), "");
    let evidence = ws.state().join("evidence");

    let out = ws.doctor(&config, None, &[]).await;
    let table = stdout(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A check, not a set-up step: the evidence folder is left for the recorder to make.
    assert!(!evidence.exists(), "doctor created {}", evidence.display());
    let ev = line(&table, "evidence");
    assert!(
        ev.starts_with("pass") && ev.contains("not there yet"),
        "{table}"
    );
    // The fixes name files an installed system has, not the source tree's.
    let hooks = table
        .split_once(line(&table, "webhooks"))
        .map(|(_, rest)| rest.lines().nth(1).unwrap_or(""))
        .unwrap();
    assert!(
        hooks.contains("/usr/share/doc/callguard/examples/conf.d/50-team-leads.toml"),
        "{table}"
    );
    assert!(!table.contains(" config/callguard.toml"), "{table}");
    // The sound library's own lines (no sound card on a test machine) stay out of the report.
    assert!(
        !stderr.contains("ALSA lib"),
        "ALSA spilled into doctor:\n{stderr}"
    );
    assert!(!table.contains("ALSA lib"), "{table}");

    // An existing folder open to others is reported, and left as it is.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&evidence).unwrap();
        std::fs::set_permissions(&evidence, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = ws.doctor(&config, None, &[]).await;
        let table = stdout(&out);
        let ev = line(&table, "evidence");
        assert!(ev.starts_with("WARN") && ev.contains("mode 755"), "{table}");
        let mode = std::fs::metadata(&evidence).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "doctor changed the folder's mode");
    }
}

/// The status labels of the table in English; none may appear in the Japanese table.
const ENGLISH_WORDS: [&str; 8] = [
    "pass ",
    "WARN",
    "FAIL",
    "fix:",
    "CHECK",
    "DETAIL",
    "cannot",
    "not there yet",
];

/// Issue 12: with `language = "ja"` the table is Japanese (headings, states, details, fixes,
/// the summary), while `--json` stays English with the same keys for fleet tooling.
#[tokio::test(flavor = "multi_thread")]
async fn the_table_follows_language_ja_and_json_stays_english() {
    let port = common::http::free_port().await;
    let ws = Workstation::new();
    let config = ws.config_in("ja", &format!("ws://127.0.0.1:{port}/"), "");

    let out = ws.doctor(&config, None, &[]).await;
    let table = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{table}");
    let head = table.lines().next().unwrap();
    assert!(head.contains("項目") && head.contains("内容"), "{table}");
    let pbx = line(&table, "pbx");
    assert!(
        pbx.starts_with("異常") && pbx.contains("接続できません"),
        "{table}"
    );
    assert!(
        pbx.contains(&format!("ws://127.0.0.1:{port}/：")),
        "the URL stays whole before Japanese text: {table}"
    );
    let key = line(&table, "signing-key");
    assert!(
        key.starts_with("注意") && key.contains("最初の起動で作られます"),
        "{table}"
    );
    let key_fix = table
        .split_once(key)
        .and_then(|(_, rest)| rest.lines().nth(1))
        .unwrap();
    assert!(
        key_fix.trim_start().starts_with("対処：デーモンを一度起動"),
        "{table}"
    );
    assert!(line(&table, "evidence").starts_with("正常"), "{table}");
    assert!(
        table.contains("：正常 ") && table.contains("件、注意 ") && table.contains("件、異常 "),
        "{table}"
    );
    for word in ENGLISH_WORDS {
        assert!(
            !table.contains(word),
            "`{word}` in the Japanese table:\n{table}"
        );
    }
    // The status column stays aligned: each check name starts at the same display column.
    let column = |l: &str| {
        use unicode_width::UnicodeWidthStr;
        let name = l.split_whitespace().nth(1).unwrap();
        UnicodeWidthStr::width(&l[..l.find(name).unwrap()])
    };
    assert_eq!(column(pbx), column(key), "{table}");

    let out = ws.doctor(&config, None, &["--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_name = |name: &str| row(&v, name);
    assert_eq!(by_name("signing-key")["status"], "warn");
    assert!(
        by_name("signing-key")["detail"]
            .as_str()
            .unwrap()
            .contains("created on first run"),
        "{v}"
    );
    assert!(
        by_name("pbx")["fix"]
            .as_str()
            .unwrap()
            .starts_with("check pbx.url"),
        "{v}"
    );
}

/// Issue 10/11: a running daemon adds its own row and one per part, in the table (in the
/// configured language) and in `--json`; `status` speaks Japanese with `language = "ja"` and
/// English with `"en"`, its `--json` the same in both.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_daemons_parts_are_shown_in_doctor_and_status_in_both_languages() {
    let pbx = start_pbx(PbxBehaviour {
        auth: None,
        clock_offset: chrono::TimeDelta::zero(),
    })
    .await;
    let ws = Workstation::new();
    let extra = format!(
        "[prompt]\nlocal = false\n[control]\nsocket = \"{}\"\n[evidence]\ndir = \"{}\"\nmin_free_mb = 0\n",
        ws.path().join("control.sock").display(),
        ws.path().join("evidence").display()
    );
    let config = ws.config_in("ja", &pbx, &extra);
    let mut daemon = ws
        .command(&["run"], &config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Bounded wait for the control socket: each round is a real exchange.
    let deadline = std::time::Instant::now() + WAIT;
    let json = loop {
        let out = ws
            .command(&["status", "--json"], &config)
            .output()
            .await
            .unwrap();
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let parts = v["parts"].as_array().map_or(0, |p| p.len());
            if parts > 0 && v["tracker"]["pbx"] == "connected" {
                break v;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "daemon never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Machine output: the same keys and English values whatever `language` says.
    assert_eq!(json["running"], true);
    assert!(json["parts"][0]["state"].is_string(), "{json}");

    let out = ws.command(&["status"], &config).output().await.unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("— 動作中（pid "), "{text}");
    assert!(text.contains("PBX：接続済み"), "{text}");
    assert!(text.contains("通話中：0 件"), "{text}");
    assert!(text.contains("構成部分：\n  connector："), "{text}");
    assert!(text.contains("から動作中"), "{text}");
    assert!(text.contains("最近のエラー："), "{text}");
    for word in [
        "running",
        "Calls in progress",
        "Parts:",
        "Capabilities",
        "Recent errors",
    ] {
        assert!(
            !text.contains(word),
            "`{word}` in the Japanese status:\n{text}"
        );
    }

    let out = ws.doctor(&config, None, &[]).await;
    let table = stdout(&out);
    assert!(
        line(&table, "daemon").starts_with("正常") && table.contains("動作中（pid"),
        "{table}"
    );
    for part in [
        "part:connector",
        "part:tracker",
        "part:alerts",
        "part:escalation",
    ] {
        let l = line(&table, part);
        assert!(l.starts_with("正常") && l.contains("から動作中"), "{table}");
    }

    let out = ws.doctor(&config, None, &["--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let part = row(&v, "part:evidence");
    assert_eq!(part["status"], "pass", "{part}");
    assert!(
        part["detail"]
            .as_str()
            .unwrap()
            .starts_with("running since "),
        "{part}"
    );

    // The same daemon read with `language = "en"`: English for people too.
    let en = ws.config_in("en", &pbx, &extra);
    let out = ws.command(&["status"], &en).output().await.unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("Parts:\n  connector: running since ") && text.contains("PBX: connected"),
        "{text}"
    );
    let out = ws.doctor(&en, None, &[]).await;
    let table = stdout(&out);
    assert!(
        line(&table, "part:tracker").starts_with("pass")
            && line(&table, "part:tracker").contains("running since "),
        "{table}"
    );

    let _ = daemon.start_kill();
    let _ = daemon.wait().await;
}
