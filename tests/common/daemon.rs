//! The real `callguard run` as a child process: its log in a file, SIGTERM or `kill -9`, and
//! `kill -9` when the test ends, however it ends.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `callguard run --config CONFIG`.
pub struct DaemonProc {
    /// The process.
    pub child: Child,
    log: PathBuf,
}

impl DaemonProc {
    /// Starts it with its stderr in `log`; `dbus` is the session bus (none: a bus that is not
    /// there).
    pub fn spawn(config: &Path, log: PathBuf, dbus: Option<&str>) -> DaemonProc {
        let child = Command::new(env!("CARGO_BIN_EXE_callguard"))
            .args(["run", "--config"])
            .arg(config)
            .env_remove("CALLGUARD_CONFIG")
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                dbus.unwrap_or("unix:path=/nonexistent"),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start callguard run");
        DaemonProc { child, log }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM; the exit status, or a panic with the log if it is still there after `patience`.
    pub async fn terminate(&mut self, patience: Duration) -> ExitStatus {
        self.signal_term();
        let deadline = Instant::now() + patience;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop within {patience:?} of SIGTERM; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGTERM and wait for it to exit.
    pub fn stop(&mut self) {
        self.signal_term();
        let _ = self.child.wait();
    }

    fn signal_term(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// A workstation's configuration for the floor tests (agent `agent`, named 佐藤, on site `tokyo`
/// as in `floor.rs`; heartbeats hourly), with `extra` appended; written as `dir/callguard.toml`.
pub fn floor_workstation_config(
    dir: &Path,
    agent: &str,
    pbx_url: &str,
    nats_url: &str,
    extra: &str,
) -> PathBuf {
    let config = dir.join("callguard.toml");
    std::fs::write(
        &config,
        format!(
            "[pbx]\nurl = \"{pbx_url}\"\n[agent]\nextension = \"{agent}\"\nname = \"佐藤\"\n\
             [prompt]\nlocal = false\n[state]\ndir = \"{state}\"\n\
             [evidence]\ndir = \"{evidence}\"\nmin_free_mb = 0\n\
             [control]\nsocket = \"{socket}\"\n\
             [floor]\nnats_url = \"{nats_url}\"\nsite = \"tokyo\"\nheartbeat = \"1h\"\n\
             {extra}",
            state = dir.join("state").display(),
            evidence = dir.join("evidence").display(),
            socket = dir.join("control.sock").display(),
        ),
    )
    .expect("write the daemon's config");
    config
}
