//! `floor.report.monthly = true`: on the 1st of each month the floor makes the previous month's
//! report, writes it under `<data dir>/reports/`, and posts the summary line with a link to the
//! board's download to the team-lead webhooks through the project's ping sink (same payload,
//! outbox and retries as every other ping). Several floor instances post once between them (a
//! claim row in the store).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Period, ReportOptions};
use crate::events::{Action, Problem};
use crate::floor::service::store::Store;

/// Problem kind of the monthly post.
pub const KIND: &str = "floor.report.monthly";

/// What the schedule waits with: the wall clock in service, a jumping clock in tests.
pub trait Clock: Send + Sync {
    /// Now, Unix ms.
    fn now_ms(&self) -> i64;
    /// Resolves at `at_ms` (or a little before, then the caller looks again).
    fn sleep_until(&self, at_ms: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system clock; waits at most an hour at a time, so a clock change or a suspend is noticed.
#[derive(Debug, Clone, Copy, Default)]
pub struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
    fn sleep_until(&self, at_ms: i64) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = (at_ms - self.now_ms()).clamp(0, 3_600_000) as u64;
        Box::pin(tokio::time::sleep(std::time::Duration::from_millis(wait)))
    }
}

/// When the next monthly report is due after `now_ms`: 00:00 of the next 1st (local offset).
pub fn next_due(now_ms: i64, offset_secs: i32) -> i64 {
    use chrono::{Datelike, FixedOffset, TimeZone};
    let next = FixedOffset::east_opt(offset_secs)
        .and_then(|tz| tz.timestamp_millis_opt(now_ms).single())
        .and_then(|now| {
            let (y, m) = if now.month() == 12 {
                (now.year() + 1, 1)
            } else {
                (now.year(), now.month() + 1)
            };
            Period::of_month(y, m, offset_secs)
        });
    next.map(|p| p.from_ms).unwrap_or(now_ms + 86_400_000)
}

/// What the schedule needs.
#[derive(Debug, Clone)]
pub struct MonthlyOptions {
    /// Local offset (days, months).
    pub offset_secs: i32,
    /// Where reports are written.
    pub dir: PathBuf,
    /// PDF font.
    pub font: PathBuf,
    /// The board's public URL (links).
    pub public_url: String,
}

/// The post's text: the summary line and the download link.
pub fn post_text(summary_line: &str, public_url: &str, period: &Period) -> String {
    format!(
        "月次カスハラ報告 {summary_line} 報告書: {}/report?period={}&format=pdf",
        public_url.trim_end_matches('/'),
        period.slug()
    )
}

/// Claims the post of `slug` for this instance; false when another instance already did.
async fn claim(store: &Store, slug: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "INSERT INTO report_runs (slug, at_ms) VALUES ($1, $2) ON CONFLICT (slug) DO NOTHING",
    )
    .bind(slug)
    .bind(now_ms)
    .execute(store.pool())
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Runs until `stop`: on each 1st, report the month before and post it to `actions`.
pub async fn run(
    store: Store,
    opts: MonthlyOptions,
    clock: &dyn Clock,
    actions: mpsc::UnboundedSender<Action>,
    stop: CancellationToken,
) {
    loop {
        let due = next_due(clock.now_ms(), opts.offset_secs);
        while clock.now_ms() < due {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = clock.sleep_until(due) => {}
            }
        }
        let Some(period) = Period::last_month(clock.now_ms(), opts.offset_secs) else {
            continue;
        };
        match claim(&store, &period.slug(), clock.now_ms()).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "monthly report: cannot claim the run");
                continue;
            }
        }
        let ropts = ReportOptions {
            period: period.clone(),
            agents: None,
            team: None,
            care: false,
            top_callers: 10,
        };
        let report = match super::build(&store, &ropts).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "monthly report failed");
                continue;
            }
        };
        let (dir, font, rep) = (opts.dir.clone(), opts.font.clone(), report.clone());
        match tokio::task::spawn_blocking(move || super::write_all(&rep, &dir, &font)).await {
            Ok(Ok(w)) => tracing::info!(pdf = %w.pdf.display(), "monthly report written"),
            Ok(Err(e)) => tracing::warn!(error = %e, "monthly report: files not written"),
            Err(e) => tracing::warn!(error = %e, "monthly report: writer panicked"),
        }
        let _ = actions.send(Action::Problem(Problem {
            call_id: None,
            kind: KIND.into(),
            text: post_text(&report.summary_line(), &opts.public_url, &period),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_on_the_next_first() {
        let nov = Period::month("2026-11", 9 * 3600).unwrap();
        let dec = Period::month("2026-12", 9 * 3600).unwrap();
        assert_eq!(
            next_due(nov.from_ms + 5 * 86_400_000, 9 * 3600),
            dec.from_ms
        );
        assert_eq!(next_due(nov.from_ms, 9 * 3600), dec.from_ms);
        assert_eq!(next_due(dec.from_ms - 1, 9 * 3600), dec.from_ms);
    }
}
