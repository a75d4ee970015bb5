//! A real NATS server for the floor tests: Debian's `nats-server` with JetStream, its store in a
//! temp dir, on a loopback port chosen at run time; it can be killed (`SIGKILL`) and restarted
//! on the same port and store. A missing `nats-server` fails the test with what to install.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start may take before the test fails.
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// A running (or killed) `nats-server`.
pub struct NatsServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    monitor_port: u16,
    config: Option<PathBuf>,
    binary: PathBuf,
}

/// The `nats-server` binary: `$NATS_SERVER`, else `nats-server` on `PATH`, else Debian's
/// `/usr/sbin/nats-server`. Panics (a test failure, never a skip) when there is none.
pub fn nats_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER").filter(|v| !v.is_empty()) {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin")]) {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "nats-server is not installed: the floor-bus tests need Debian's `nats-server` \
         (run `make deps`, or `apt-get install nats-server`, or set NATS_SERVER=/path/to/it)"
    );
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

impl NatsServer {
    /// JetStream on, no authorization.
    pub async fn start() -> NatsServer {
        Self::start_inner(None).await
    }

    /// JetStream on, with `config` (nats-server's config syntax) as its config file; the port,
    /// monitor port, store dir and JetStream are set on the command line and win over the file.
    pub async fn start_with_config(config: &str) -> NatsServer {
        Self::start_with_files(config, &[]).await
    }

    /// Like [`start_with_config`](Self::start_with_config), with more files written beside the
    /// config file first (what it `include`s, password files…), as `(name, content)`.
    pub async fn start_with_files(config: &str, files: &[(&str, &str)]) -> NatsServer {
        Self::start_inner(Some((config, files))).await
    }

    async fn start_inner(config: Option<(&str, &[(&str, &str)])>) -> NatsServer {
        let binary = nats_server_binary();
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config.map(|(text, files)| {
            for (name, content) in files {
                std::fs::write(dir.path().join(name), content).expect("write a config file");
            }
            let p = dir.path().join("nats.conf");
            std::fs::write(&p, text).expect("write nats.conf");
            p
        });
        let mut server = NatsServer {
            child: None,
            dir,
            port: free_port(),
            monitor_port: free_port(),
            config,
            binary,
        };
        server.spawn().await;
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir (JetStream store under `store/`, log in `nats.log`); files a test writes here
    /// (credentials, keys) live as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats.log")).unwrap_or_default()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// `SIGKILL`, and wait until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port with the same store (after [`kill`](Self::kill)).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let store = self.dir.path().join("store");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats.log"))
            .expect("open nats.log");
        let log2 = log.try_clone().expect("clone log handle");
        let mut cmd = Command::new(&self.binary);
        if let Some(conf) = &self.config {
            cmd.arg("-c").arg(conf);
        }
        cmd.args(["-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-m")
            .arg(self.monitor_port.to_string())
            .arg("-js")
            .arg("-sd")
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        self.wait_ready().await;
    }

    /// Waits until the monitor's `/healthz` says the server (JetStream included) is ok.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if !self.is_running() {
                panic!("nats-server exited at start; its log:\n{}", self.log());
            }
            if healthz_ok(self.monitor_port) {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "nats-server not ready after {READY_DEADLINE:?}; its log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn healthz_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.starts_with("HTTP/1.0 200") || resp.starts_with("HTTP/1.1 200")
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
