//! Facts about this machine shared by every part that reports them, so a manifest's `host`, a
//! ping's `host` and the doctor's report always agree.

/// This machine's host name: the kernel's (`/proc/sys/kernel/hostname`), else `/etc/hostname`,
/// else `$HOSTNAME`, else `unknown-host`.
pub fn name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|s| !s.trim().is_empty())
        })
        .unwrap_or_else(|| "unknown-host".into())
}

/// An error with its whole source chain, `outer: inner: innermost` (reqwest and hyper keep the
/// useful part, such as "connection refused", in the sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}
