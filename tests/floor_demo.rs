//! `callguard demo --floor` as a user runs it: it prints the board's URL and a login, the board
//! fills with the simulated workstations' calls (the repeat caller with the organisation's
//! conclusion among them), and Ctrl-C (SIGINT) stops it cleanly. When port 8480 is taken it
//! serves on another port and prints that one; when `--listen` names a taken port it fails at
//! once with a message instead of hanging.
//!
//! Every wait is bounded and the demo (with its nats-server, in its own process group) is killed
//! on every way out of a test, so a broken demo fails the suite and never hangs it.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::floor::{Session, eventually};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long the demo may take to print its URL (nats-server, migrations, the board's bind).
const START: Duration = Duration::from_secs(60);

/// A running demo; its whole process group is killed when the test ends, however it ends.
struct Demo {
    child: Child,
    pid: i32,
    stderr: PathBuf,
    _home: tempfile::TempDir,
}

impl Demo {
    fn spawn(args: &[&str]) -> Demo {
        let home = tempfile::tempdir().expect("temp home");
        let stderr = home.path().join("demo.stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_callguard"))
            .args(["demo", "--floor"])
            .args(args)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("CALLGUARD_SYSTEM_DIR", home.path().join("etc"))
            .env_remove("CALLGUARD_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            // Its own group: the guard reaches the demo's nats-server too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("start callguard demo --floor");
        let pid = child.id().expect("a pid") as i32;
        Demo {
            child,
            pid,
            stderr,
            _home: home,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The board's URL and the demo login from the demo's output, within [`START`].
    async fn url_and_login(&mut self) -> (String, String) {
        let stdout = self.child.stdout.take().expect("piped stdout");
        match tokio::time::timeout(START, read_url_and_login(stdout)).await {
            Ok(Some(found)) => found,
            Ok(None) => panic!(
                "the demo ended its output without a board URL and login; exit {:?}; stderr:\n{}",
                self.child.try_wait(),
                self.stderr()
            ),
            Err(_) => panic!("no board URL within {START:?}; stderr:\n{}", self.stderr()),
        }
    }

    /// Its exit status within [`START`].
    async fn exit(&mut self) -> std::process::ExitStatus {
        match tokio::time::timeout(START, self.child.wait()).await {
            Ok(s) => s.expect("wait for the demo"),
            Err(_) => panic!(
                "the demo did not exit within {START:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    /// SIGINT to the demo alone.
    fn interrupt(&self) {
        let pid = rustix::process::Pid::from_raw(self.pid).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    }

    /// SIGINT to the demo and its nats-server at once, as Ctrl-C in a terminal does.
    fn ctrl_c(&self) {
        let pid = rustix::process::Pid::from_raw(self.pid).expect("pid");
        rustix::process::kill_process_group(pid, rustix::process::Signal::INT).expect("SIGINT");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(group) = rustix::process::Pid::from_raw(self.pid) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
    }
}

async fn read_url_and_login(stdout: ChildStdout) -> Option<(String, String)> {
    let mut lines = BufReader::new(stdout).lines();
    let (mut url, mut login) = (None, None);
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(u) = line.trim().strip_prefix("board:") {
            url = Some(u.trim().trim_end_matches('/').to_string());
        }
        if let Some(l) = line.trim().strip_prefix("login:") {
            login = Some(l.trim().to_string());
        }
        if let (Some(u), Some(l)) = (&url, &login) {
            return Some((u.clone(), l.clone()));
        }
    }
    None
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// Logs in with the printed login; the login page is served first. A failure shows what the
/// demo wrote to stderr.
async fn log_in(demo: &mut Demo, url: &str, login: &str) -> Session {
    let (user, password) = login.split_once(" / ").expect("user / password");
    assert_eq!(password, callguard::floor::service::demo::DEMO_PASSWORD);
    let page = reqwest::Client::builder()
        .timeout(common::floor::PATIENCE)
        .build()
        .expect("client")
        .get(format!("{url}/login"))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "GET /login: {e}; the demo: {:?}; its stderr:\n{}",
                demo.child.try_wait(),
                demo.stderr()
            )
        });
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("login page").contains("csrf"));
    Session::login_with(url, user, password).await
}

#[tokio::test]
async fn the_floor_demo_serves_a_board_with_simulated_workstations() {
    let mut demo = Demo::spawn(&[]);
    let (url, login) = demo.url_and_login().await;
    let s = log_in(&mut demo, &url, &login).await;
    let board = eventually("open calls from three and four workstations", || {
        let s = &s;
        async move {
            let b = s.board().await;
            let open = b["calls"]
                .as_array()?
                .iter()
                .filter(|c| c["ended_ms"].is_null())
                .count();
            (open >= 2 && b["workstations"].as_array()?.len() == 4).then_some(b)
        }
    })
    .await;
    assert!(
        board["calls"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["caller"] == "+81312345678"),
        "{board}"
    );
    let page = s
        .get("/caller?key=%2B81312345678")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("結論は変わりません"), "{page}");

    demo.interrupt();
    let status = demo.exit().await;
    assert!(
        status.success(),
        "demo exited with {status}; stderr:\n{}",
        demo.stderr()
    );
}

#[tokio::test]
async fn with_8480_taken_the_demo_serves_on_another_port_and_says_which() {
    // Held by this test if it can be: another demo holding it (the test next to this one) may
    // let it go at any time, and this demo would then take 8480. Something else that holds it
    // all along does as well.
    let mut held = std::net::TcpListener::bind("127.0.0.1:8480");
    let deadline = std::time::Instant::now() + START;
    while held.is_err() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        held = std::net::TcpListener::bind("127.0.0.1:8480");
    }
    let _held = held;
    assert!(
        std::net::TcpListener::bind("127.0.0.1:8480").is_err(),
        "8480 should be taken for this test"
    );
    let mut demo = Demo::spawn(&[]);
    let (url, login) = demo.url_and_login().await;
    assert_ne!(port_of(&url), 8480, "{url}");
    let s = log_in(&mut demo, &url, &login).await;
    assert_eq!(s.get("/").await.status(), 200);
    // Ctrl-C stops nats-server too: still a clean stop, and no hang on the lost connection.
    demo.ctrl_c();
    assert!(demo.exit().await.success(), "{}", demo.stderr());
}

#[tokio::test]
async fn a_taken_listen_address_fails_at_once_and_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut demo = Demo::spawn(&["--listen", &addr]);
    let status = demo.exit().await;
    assert!(!status.success(), "the demo must fail: {status}");
    let err = demo.stderr();
    assert!(
        err.contains("the floor service did not start") && err.contains(&addr),
        "no reason given:\n{err}"
    );
    assert!(!err.contains("board:"), "{err}");
}

#[tokio::test]
async fn listen_needs_an_address() {
    let mut demo = Demo::spawn(&["--listen", "not-an-address"]);
    let status = demo.exit().await;
    assert!(!status.success());
    assert!(
        demo.stderr().contains("not an address:port"),
        "{}",
        demo.stderr()
    );
}
