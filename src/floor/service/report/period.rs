//! Report periods: a month, a quarter, or a range of days, in one fixed UTC offset (the site's
//! local time), as half-open `[from, to)` Unix-millisecond bounds.

use chrono::{Datelike, Duration, FixedOffset, NaiveDate, Offset, TimeZone};
use serde::Serialize;

/// A period the command line or the board asked for could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PeriodError {
    /// `--month` is not `YYYY-MM`.
    #[error("month `{0}` is not YYYY-MM")]
    Month(String),
    /// `--quarter` is not `YYYYQn`.
    #[error("quarter `{0}` is not YYYYQ1…YYYYQ4")]
    Quarter(String),
    /// `--from`/`--to` is not `YYYY-MM-DD`, or `to` is before `from`.
    #[error("range `{0}` is not two dates YYYY-MM-DD, the second not before the first")]
    Range(String),
    /// `--from`/`--to` spans too much, or lies outside the years 1–9999.
    #[error(
        "range `{0}` is longer than {MAX_RANGE_DAYS} days (ten years) or outside the years 1–9999"
    )]
    Span(String),
    /// The UTC offset is not `+HH:MM`.
    #[error("UTC offset `{0}` is not +HH:MM or -HH:MM")]
    Offset(String),
}

/// Most days a `--from`/`--to` report covers (ten years).
pub const MAX_RANGE_DAYS: i64 = 3_653;

/// What kind of period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PeriodKind {
    /// A calendar month.
    Month {
        /// Year.
        year: i32,
        /// Month 1–12.
        month: u32,
    },
    /// A calendar quarter.
    Quarter {
        /// Year.
        year: i32,
        /// Quarter 1–4.
        quarter: u32,
    },
    /// Days `from` to `to`, both included.
    Range {
        /// First day.
        from: NaiveDate,
        /// Last day.
        to: NaiveDate,
    },
}

/// A report period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Period {
    /// What kind.
    pub kind: PeriodKind,
    /// Start, Unix ms (included).
    pub from_ms: i64,
    /// End, Unix ms (excluded).
    pub to_ms: i64,
    /// The local time's offset from UTC, seconds (days, weekdays and hours are in it).
    pub offset_secs: i32,
}

fn month_start(year: i32, month: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, month, 1)
}

fn next_month(year: i32, month: u32) -> (i32, u32) {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

/// Parses `+09:00` / `-05:30` / `Z`.
pub fn parse_offset(s: &str) -> Result<i32, PeriodError> {
    let err = || PeriodError::Offset(s.to_string());
    if s == "Z" || s == "z" {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(err()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(err)?;
    let h: i32 = h.parse().map_err(|_| err())?;
    let m: i32 = m.parse().map_err(|_| err())?;
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return Err(err());
    }
    Ok(sign * (h * 3600 + m * 60))
}

impl Period {
    fn from_days(kind: PeriodKind, first: NaiveDate, end: NaiveDate, offset_secs: i32) -> Period {
        let tz = FixedOffset::east_opt(offset_secs).unwrap_or_else(|| chrono::Utc.fix());
        let ms = |d: NaiveDate| {
            tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
                .single()
                .map(|t| t.timestamp_millis())
                .unwrap_or_default()
        };
        Period {
            kind,
            from_ms: ms(first),
            to_ms: ms(end),
            offset_secs,
        }
    }

    /// The calendar month `YYYY-MM`.
    pub fn month(s: &str, offset_secs: i32) -> Result<Period, PeriodError> {
        let err = || PeriodError::Month(s.to_string());
        let (y, m) = s.split_once('-').ok_or_else(err)?;
        let year: i32 = y.parse().map_err(|_| err())?;
        let month: u32 = m.parse().map_err(|_| err())?;
        Period::of_month(year, month, offset_secs).ok_or_else(err)
    }

    /// The calendar month `year`-`month`.
    pub fn of_month(year: i32, month: u32, offset_secs: i32) -> Option<Period> {
        let first = month_start(year, month)?;
        let (ny, nm) = next_month(year, month);
        let end = month_start(ny, nm)?;
        Some(Period::from_days(
            PeriodKind::Month { year, month },
            first,
            end,
            offset_secs,
        ))
    }

    /// The quarter `YYYYQn`.
    pub fn quarter(s: &str, offset_secs: i32) -> Result<Period, PeriodError> {
        let err = || PeriodError::Quarter(s.to_string());
        let upper = s.to_ascii_uppercase();
        let (y, q) = upper.split_once('Q').ok_or_else(err)?;
        let year: i32 = y.parse().map_err(|_| err())?;
        let quarter: u32 = q.parse().map_err(|_| err())?;
        Period::of_quarter(year, quarter, offset_secs).ok_or_else(err)
    }

    fn of_quarter(year: i32, quarter: u32, offset_secs: i32) -> Option<Period> {
        if !(1..=4).contains(&quarter) {
            return None;
        }
        let first = month_start(year, (quarter - 1) * 3 + 1)?;
        let end = if quarter == 4 {
            month_start(year + 1, 1)?
        } else {
            month_start(year, quarter * 3 + 1)?
        };
        Some(Period::from_days(
            PeriodKind::Quarter { year, quarter },
            first,
            end,
            offset_secs,
        ))
    }

    /// Days `from` to `to` (`YYYY-MM-DD`, both included), at most [`MAX_RANGE_DAYS`] of them
    /// within the years 1–9999 (a report over ten years is a query the board should not run
    /// for anyone, and the period before it must exist too).
    pub fn range(from: &str, to: &str, offset_secs: i32) -> Result<Period, PeriodError> {
        let err = || PeriodError::Range(format!("{from} … {to}"));
        let f = NaiveDate::parse_from_str(from, "%Y-%m-%d").map_err(|_| err())?;
        let t = NaiveDate::parse_from_str(to, "%Y-%m-%d").map_err(|_| err())?;
        if t < f {
            return Err(err());
        }
        let years = 1..=9999;
        if (t - f).num_days() >= MAX_RANGE_DAYS
            || !years.contains(&f.year())
            || !years.contains(&t.year())
        {
            return Err(PeriodError::Span(format!("{from} … {to}")));
        }
        Ok(Period::of_range(f, t, offset_secs))
    }

    fn of_range(from: NaiveDate, to: NaiveDate, offset_secs: i32) -> Period {
        Period::from_days(
            PeriodKind::Range { from, to },
            from,
            to + Duration::days(1),
            offset_secs,
        )
    }

    /// The period before: the previous month or quarter, or as many days just before.
    pub fn previous(&self) -> Period {
        let fallback =
            || Period::of_range(NaiveDate::default(), NaiveDate::default(), self.offset_secs);
        match self.kind {
            PeriodKind::Month { year, month } => {
                let (y, m) = if month == 1 {
                    (year - 1, 12)
                } else {
                    (year, month - 1)
                };
                Period::of_month(y, m, self.offset_secs).unwrap_or_else(fallback)
            }
            PeriodKind::Quarter { year, quarter } => {
                let (y, q) = if quarter == 1 {
                    (year - 1, 4)
                } else {
                    (year, quarter - 1)
                };
                Period::of_quarter(y, q, self.offset_secs).unwrap_or_else(fallback)
            }
            PeriodKind::Range { from, to } => {
                let days = (to - from).num_days() + 1;
                let new_to = from - Duration::days(1);
                Period::of_range(new_to - Duration::days(days - 1), new_to, self.offset_secs)
            }
        }
    }

    /// The month before the one holding `now_ms` (what the scheduled report covers).
    pub fn last_month(now_ms: i64, offset_secs: i32) -> Option<Period> {
        let tz = FixedOffset::east_opt(offset_secs)?;
        let now = tz.timestamp_millis_opt(now_ms).single()?;
        let (y, m) = if now.month() == 1 {
            (now.year() - 1, 12)
        } else {
            (now.year(), now.month() - 1)
        };
        Period::of_month(y, m, offset_secs)
    }

    /// Japanese label: `2026年11月`, `2026年第4四半期`, `2026-11-01〜2026-11-30`.
    pub fn label(&self) -> String {
        match self.kind {
            PeriodKind::Month { year, month } => format!("{year}年{month}月"),
            PeriodKind::Quarter { year, quarter } => format!("{year}年第{quarter}四半期"),
            PeriodKind::Range { from, to } => format!("{from}〜{to}"),
        }
    }

    /// For file names and URLs: `2026-11`, `2026Q4`, `2026-11-01_2026-11-30`.
    pub fn slug(&self) -> String {
        match self.kind {
            PeriodKind::Month { year, month } => format!("{year}-{month:02}"),
            PeriodKind::Quarter { year, quarter } => format!("{year}Q{quarter}"),
            PeriodKind::Range { from, to } => format!("{from}_{to}"),
        }
    }

    /// Reads a slug back (the board's download URLs).
    pub fn from_slug(s: &str, offset_secs: i32) -> Result<Period, PeriodError> {
        if s.contains('Q') || s.contains('q') {
            Period::quarter(s, offset_secs)
        } else if let Some((f, t)) = s.split_once('_') {
            Period::range(f, t, offset_secs)
        } else {
            Period::month(s, offset_secs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_of_more_than_ten_years_or_past_9999_is_refused() {
        for (from, to) in [
            ("+262142-12-31", "+262142-12-31"),
            ("0001-01-01", "+200000-01-01"),
            ("2000-01-01", "2010-01-01"),
            ("9999-12-31", "9999-12-31"),
        ] {
            let r = Period::range(from, to, 0);
            if from == "9999-12-31" {
                let p = r.expect("the last day of 9999");
                let _ = p.previous();
                continue;
            }
            assert!(
                matches!(r, Err(PeriodError::Span(_)) | Err(PeriodError::Range(_))),
                "{from} … {to}: {r:?}"
            );
        }
        let p = Period::range("0001-01-01", "0001-01-31", 0).expect("January of year 1");
        let _ = p.previous();
        assert!(Period::range("2016-01-01", "2025-12-31", 0).is_ok());
    }

    #[test]
    fn months_quarters_ranges_and_their_predecessors() {
        let m = Period::month("2026-11", 9 * 3600).unwrap();
        assert_eq!(m.to_ms - m.from_ms, 30 * 86_400_000);
        // 2026-11-01 00:00 JST is 2026-10-31 15:00 UTC.
        assert_eq!(m.from_ms, 1_793_458_800_000);
        assert_eq!(m.previous().slug(), "2026-10");
        assert_eq!(
            Period::month("2026-01", 0).unwrap().previous().slug(),
            "2025-12"
        );
        let q = Period::quarter("2026Q4", 0).unwrap();
        assert_eq!(q.previous().slug(), "2026Q3");
        assert_eq!(
            Period::quarter("2026Q1", 0).unwrap().previous().slug(),
            "2025Q4"
        );
        let r = Period::range("2026-11-10", "2026-11-19", 0).unwrap();
        assert_eq!(r.previous().slug(), "2026-10-31_2026-11-09");
        assert_eq!(Period::from_slug("2026-11-10_2026-11-19", 0).unwrap(), r);
        assert!(Period::quarter("2026Q5", 0).is_err());
        assert!(Period::month("2026-13", 0).is_err());
        assert!(Period::range("2026-11-10", "2026-11-01", 0).is_err());
        assert_eq!(parse_offset("+09:00"), Ok(32_400));
        assert_eq!(parse_offset("-05:30"), Ok(-19_800));
        assert!(parse_offset("9").is_err());
    }

    #[test]
    fn last_month_of_the_first() {
        let dec1 = Period::month("2026-12", 0).unwrap().from_ms;
        assert_eq!(Period::last_month(dec1, 0).unwrap().slug(), "2026-11");
    }
}
