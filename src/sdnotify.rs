//! The systemd notification protocol (`Type=notify`) through the `sd-notify` crate: `READY=1`
//! once the daemon runs, `WATCHDOG=1` at half the watchdog period, `STOPPING=1` on shutdown.
//! Without `$NOTIFY_SOCKET` (not started by systemd) nothing is sent. systemd hands services a
//! socket path; abstract (`@name`) addresses are not supported by the crate: sending
//! fails and is logged as a warning.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// How often systemd wants a watchdog ping: half of `$WATCHDOG_USEC`, if that is meant for this
/// process (`$WATCHDOG_PID` unset or ours) and not zero.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

/// Whether this process was started with a notify socket.
fn under_systemd() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty())
}

/// Tells systemd the daemon is ready, keeps the watchdog fed until `shutdown`, then says
/// `STOPPING=1`. Spawned beside the daemon; returns at once when not under systemd.
pub async fn run(shutdown: CancellationToken) {
    if !under_systemd() {
        return;
    }
    if let Err(e) = sd_notify::notify(&[NotifyState::Ready]) {
        tracing::warn!(error = %e, "cannot tell systemd the daemon is ready (NOTIFY_SOCKET)");
    }
    if let Some(every) = watchdog_interval() {
        tracing::debug!(?every, "systemd watchdog enabled");
        let mut tick = tokio::time::interval(every);
        // A socket that refuses one ping refuses them all: say so once, not every tick.
        let mut warned = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog])
                        && !warned
                    {
                        warned = true;
                        tracing::warn!(error = %e, "systemd watchdog ping failed");
                    }
                }
            }
        }
    } else {
        shutdown.cancelled().await;
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}
