//! The daemon as a systemd unit: `Type=notify` (the real daemon tells a notify socket, played by
//! the test as systemd would, that it is ready, feeds the watchdog, says it is stopping on
//! SIGTERM) and logging to the journal when stderr is the journal stream.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_callguard");

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = sock
        .recv(&mut buf)
        .expect("no message from the daemon in time");
    // One state per datagram; systemd accepts a trailing newline after each assignment.
    String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()
}

#[test]
fn ready_watchdog_and_stopping_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let config = dir.path().join("callguard.toml");
    // Nothing listens on port 1: the daemon runs and retries, which is all this test needs.
    std::fs::write(
        &config,
        format!(
            "[pbx]\nurl = \"ws://127.0.0.1:1/\"\n[prompt]\nlocal = false\n[state]\ndir = \"{}\"\n",
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    // stderr is "the journal stream" systemd would hand over: JOURNAL_STREAM names its inode.
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let stream = {
        use std::os::unix::fs::MetadataExt;
        let m = log.metadata().unwrap();
        format!("{}:{}", m.dev(), m.ino())
    };
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .env("JOURNAL_STREAM", &stream)
        .env_remove("RUST_LOG")
        .env(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}/no-bus", dir.path().display()),
        )
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();

    assert_eq!(recv(&sock), "READY=1");
    assert_eq!(recv(&sock), "WATCHDOG=1");
    assert_eq!(recv(&sock), "WATCHDOG=1");

    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let mut last = String::new();
    while last != "STOPPING=1" {
        last = recv(&sock);
        assert!(last == "WATCHDOG=1" || last == "STOPPING=1", "{last}");
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");

    let stderr = std::fs::read_to_string(&log_path).unwrap();
    if std::path::Path::new("/run/systemd/journal/socket").exists() {
        // The lines went to the journal natively, not to the stream.
        assert!(!stderr.contains("callguard starting"), "{stderr}");
    } else {
        // No journal socket: text on stderr, saying why.
        assert!(stderr.contains("journal socket unavailable"), "{stderr}");
        assert!(stderr.contains("callguard starting"), "{stderr}");
    }
}
