//! `callguard demo --floor` as a user runs it: it prints the board's URL and a login, the board
//! fills with the simulated workstations' calls (the repeat caller with the organisation's
//! conclusion among them), and Ctrl-C (SIGINT) stops it cleanly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::floor::{Session, eventually};

#[tokio::test]
async fn the_floor_demo_serves_a_board_with_simulated_workstations() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["demo", "--floor"])
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("CALLGUARD_SYSTEM_DIR", home.path().join("etc"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (url, login) = tokio::task::spawn_blocking(move || {
        let mut url = None;
        let mut login = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(u) = line.trim().strip_prefix("board:") {
                url = Some(u.trim().trim_end_matches('/').to_string());
            }
            if let Some(l) = line.trim().strip_prefix("login:") {
                login = Some(l.trim().to_string());
            }
            if url.is_some() && login.is_some() {
                break;
            }
        }
        (url.expect("the board's URL"), login.expect("a demo login"))
    })
    .await
    .unwrap();
    let (user, password) = login.split_once(" / ").expect("user / password");
    assert_eq!(password, callguard::floor::service::demo::DEMO_PASSWORD);
    let s = Session::login_with(&url, user, password).await;
    let board = eventually("three open calls and four workstations", || {
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

    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "demo exited with {status}");
}
