//! Log output through `tracing`: the systemd journal (with priorities and structured fields)
//! when the daemon runs as a systemd unit, else human-readable text on stderr; JSON lines for
//! collectors when `log.format = "json"`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Native journal entries through `/run/systemd/journal/socket`.
    Journald,
    /// Text lines on stderr.
    StderrText,
    /// JSON objects on stderr (under systemd they land in the journal as the message).
    StderrJson,
}

/// The journal when stderr is the journal stream systemd gave this process (`$JOURNAL_STREAM`
/// names stderr's device and inode), else stderr. JSON stays on stderr: collectors parse the
/// lines as they are, journal or not.
pub fn choose(
    format: LogFormat,
    journal_stream: Option<&str>,
    stderr: Option<(u64, u64)>,
) -> Target {
    match format {
        LogFormat::Json => Target::StderrJson,
        LogFormat::Text => {
            let is_journal = journal_stream
                .and_then(|v| v.split_once(':'))
                .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
                .is_some_and(|stream| Some(stream) == stderr);
            if is_journal {
                Target::Journald
            } else {
                Target::StderrText
            }
        }
    }
}

/// Device and inode of stderr, to compare with `$JOURNAL_STREAM`.
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsFd;
    // A duplicate of fd 2, so the stat cannot close stderr itself.
    let dup = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(dup).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`. Returns where
/// the lines go.
pub fn init(cfg: &LogConfig) -> Target {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(&cfg.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let stream = std::env::var("JOURNAL_STREAM").ok();
    let mut target = choose(cfg.format, stream.as_deref(), stderr_identity());
    let mut journal_error = None;
    if target == Target::Journald {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer.with_syslog_identifier("callguard".into());
                let _ = tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .try_init();
                return target;
            }
            Err(e) => {
                // The stream is there but the native socket is not (containers): text it is.
                journal_error = Some(e);
                target = Target::StderrText;
            }
        }
    }
    // Colours only for a person at a terminal, never into files or collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match target {
        Target::StderrJson => builder.json().flatten_event(true).try_init(),
        _ => builder.try_init(),
    };
    if let Some(e) = journal_error {
        tracing::warn!(error = %e, "journal socket unavailable; logging to stderr");
    }
    target
}

/// Lines a [`WarnLimiter`] writes in full per window before it only counts.
const BURST: u32 = 5;
/// A [`WarnLimiter`]'s window.
const WINDOW: Duration = Duration::from_secs(60);

/// Keeps one repeated warning (e.g. "PBX frame refused", whatever the frame) from flooding the
/// log: the first few of each minute are written in full, the rest are counted and summed up
/// in one line ("… 5,000 more in the last minute") when the minute is over, at the next
/// [`WarnLimiter::tick`] or [`WarnLimiter::flush`]. A hostile or broken peer then costs a few
/// lines a minute instead of one per frame.
#[derive(Debug)]
pub struct WarnLimiter {
    what: &'static str,
    state: Mutex<LimiterState>,
}

#[derive(Debug, Default)]
struct LimiterState {
    window_start: Option<Instant>,
    written: u32,
    suppressed: u64,
    last: String,
}

impl WarnLimiter {
    /// A limiter for the warning `what` (the log message; the reason goes in a field).
    pub const fn per_minute(what: &'static str) -> WarnLimiter {
        WarnLimiter {
            what,
            state: Mutex::new(LimiterState {
                window_start: None,
                written: 0,
                suppressed: 0,
                last: String::new(),
            }),
        }
    }

    /// One more occurrence: written, or counted.
    pub fn warn(&self, reason: &str) {
        let now = Instant::now();
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        self.roll(&mut st, now, false);
        st.window_start.get_or_insert(now);
        if st.written < BURST {
            st.written += 1;
            tracing::warn!(%reason, "{}", self.what);
        } else {
            st.suppressed += 1;
            st.last.clear();
            st.last.push_str(reason);
        }
    }

    /// Writes the summary line if the window is over (call it now and then, e.g. on a ping).
    pub fn tick(&self) {
        if let Ok(mut st) = self.state.lock() {
            self.roll(&mut st, Instant::now(), false);
        }
    }

    /// Writes the summary line now, if anything was counted (at a disconnect or shutdown).
    pub fn flush(&self) {
        if let Ok(mut st) = self.state.lock() {
            self.roll(&mut st, Instant::now(), true);
        }
    }

    fn roll(&self, st: &mut LimiterState, now: Instant, force: bool) {
        let Some(start) = st.window_start else {
            return;
        };
        let span = now.saturating_duration_since(start);
        if !force && span < WINDOW {
            return;
        }
        if st.suppressed > 0 {
            let n = st.suppressed;
            let when = if span >= WINDOW {
                "in the last minute".to_string()
            } else {
                format!("in the last {} s", span.as_secs().max(1))
            };
            tracing::warn!(suppressed = n, last = %st.last, "{}: {} more {when}", self.what, thousands(n));
        }
        *st = LimiterState::default();
    }
}

/// `5000` → `5,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log lines written while `f` runs, as text.
    async fn captured<F: std::future::Future<Output = ()>>(f: F) -> Vec<String> {
        use std::sync::Arc;
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        f.await;
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_a_few_lines_a_minute_with_the_count() {
        let limiter = WarnLimiter::per_minute("frame refused");
        let lines = captured(async {
            for i in 0..5_005u32 {
                limiter.warn(&format!("bad frame {i}"));
            }
            // Not a minute yet: nothing more.
            tokio::time::advance(Duration::from_secs(30)).await;
            limiter.tick();
            tokio::time::advance(Duration::from_secs(31)).await;
            limiter.tick();
            // A new minute: the first ones are written in full again.
            limiter.warn("bad frame again");
            limiter.flush();
        })
        .await;
        assert_eq!(lines.len(), 7, "{lines:#?}");
        assert!(
            lines[..5]
                .iter()
                .all(|l| l.contains("frame refused reason=bad frame"))
        );
        assert!(
            lines[5].contains("frame refused: 5,000 more in the last minute")
                && lines[5].contains("last=bad frame 5004"),
            "{}",
            lines[5]
        );
        assert!(lines[6].contains("reason=bad frame again"), "{}", lines[6]);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(5000), "5,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn journal_only_when_stderr_is_the_journal_stream() {
        let id = Some((64769, 123456));
        assert_eq!(
            choose(LogFormat::Text, Some("64769:123456"), id),
            Target::Journald
        );
        // Inherited variable, but stderr was redirected elsewhere.
        assert_eq!(
            choose(LogFormat::Text, Some("64769:999"), id),
            Target::StderrText
        );
        assert_eq!(choose(LogFormat::Text, None, id), Target::StderrText);
        assert_eq!(
            choose(LogFormat::Text, Some("junk"), id),
            Target::StderrText
        );
        assert_eq!(
            choose(LogFormat::Json, Some("64769:123456"), id),
            Target::StderrJson
        );
    }
}
