//! The systemd notification protocol (`Type=notify`): `READY=1` once the daemon runs,
//! `WATCHDOG=1` at half the watchdog period, `STOPPING=1` on shutdown. One datagram per message
//! to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Without the variable
//! (not started by systemd) every call is a no-op.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The service manager's socket, if this process was started with one.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
}

impl Notifier {
    /// Connects to `$NOTIFY_SOCKET`; `Ok(None)` when the variable is unset.
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(addr) if !addr.is_empty() => Notifier::connect(&addr.to_string_lossy()).map(Some),
            _ => Ok(None),
        }
    }

    /// Connects to `addr`: a filesystem path, or `@name` for the abstract namespace.
    pub fn connect(addr: &str) -> io::Result<Notifier> {
        let socket = UnixDatagram::unbound()?;
        if let Some(name) = addr.strip_prefix('@') {
            connect_abstract(&socket, name)?;
        } else {
            socket.connect(addr)?;
        }
        Ok(Notifier { socket })
    }

    /// Sends one state message, e.g. `READY=1`.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket.send(state.as_bytes()).map(|_| ())
    }
}

#[cfg(target_os = "linux")]
fn connect_abstract(socket: &UnixDatagram, name: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    socket.connect_addr(&addr)
}

#[cfg(not(target_os = "linux"))]
fn connect_abstract(_socket: &UnixDatagram, _name: &str) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket addresses exist on Linux only",
    ))
}

/// How often systemd wants a watchdog ping: half of `$WATCHDOG_USEC`, if that is meant for this
/// process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Tells systemd the daemon is ready, keeps the watchdog fed until `shutdown`, then says
/// `STOPPING=1`. Spawned beside the daemon; returns at once when not under systemd.
pub async fn run(shutdown: CancellationToken) {
    let notifier = match Notifier::from_env() {
        Ok(Some(n)) => n,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot reach the service manager's NOTIFY_SOCKET");
            return;
        }
    };
    if let Err(e) = notifier.notify("READY=1") {
        tracing::warn!(error = %e, "cannot tell systemd the daemon is ready");
    }
    if let Some(every) = watchdog_interval() {
        tracing::debug!(?every, "systemd watchdog enabled");
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = notifier.notify("WATCHDOG=1") {
                        tracing::warn!(error = %e, "systemd watchdog ping failed");
                    }
                }
            }
        }
    } else {
        shutdown.cancelled().await;
    }
    let _ = notifier.notify("STOPPING=1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::connect(&path.display().to_string()).unwrap();
        n.notify("READY=1").unwrap();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn datagrams_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("callguard-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::connect(&format!("@{name}")).unwrap();
        n.notify("WATCHDOG=1").unwrap();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }
}
