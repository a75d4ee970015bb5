//! Reports the harassment guidance asks for: monthly, quarterly or any-range figures of calls and
//! incidents (by level, by the guidance's five types, long calls, a weekday × hour heat map, the
//! duration distribution, escalation response times, repeat callers with the organisation's
//! conclusion, the agents to follow up for care, the change against the previous period), written
//! as HTML with SVG charts, as PDF with an embedded Japanese font, and as CSV tables. A call's
//! incident record can be rendered to PDF too.
//!
//! Every figure is aggregated by SQL in the store (the same statements on SQLite and PostgreSQL);
//! only the small aggregates travel to the process, so a month of a large site stays fast and
//! small in memory.

mod charts;
pub mod cli;
pub mod csv_out;
pub mod html;
pub mod incident;
pub mod pdf;
mod period;
pub mod query;
pub mod sample;
pub mod schedule;
pub mod tables;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use period::{Period, PeriodError};

use super::store::{Store, StoreError};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A query failed.
    #[error("report query: {0}")]
    Query(#[from] sqlx::Error),
    /// The period is not understood.
    #[error(transparent)]
    Period(#[from] PeriodError),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A chart could not be drawn.
    #[error("chart: {0}")]
    Chart(String),
    /// The PDF could not be made (font missing or unreadable, writer error).
    #[error("pdf: {0}")]
    Pdf(String),
    /// A CSV could not be written.
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
    /// `--team` names no team of `[floor.teams]`.
    #[error("unknown team `{0}` (not in [floor.teams])")]
    UnknownTeam(String),
    /// No such call in the store.
    #[error("no call `{0}` in the floor store")]
    NoCall(String),
}

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// The period.
    pub period: Period,
    /// Only these agents (a team); `None` = every agent.
    pub agents: Option<Vec<String>>,
    /// The team's name, for the title.
    pub team: Option<String>,
    /// Include the care follow-up list (agents with symptom marks or level-4 calls): admins only.
    pub care: bool,
    /// How many repeat callers to list.
    pub top_callers: i64,
}

/// The guidance's five types of harassment, and the mark kinds each gathers.
///
/// `threat` marks whose quote speaks of posting online (ネット, SNS, 晒す, 拡散, 書き込む, 口コミ,
/// レビュー) count as online-shaming threats; the other threats, abuse and violence as
/// violence/threat/abuse; `demand` and `manager` as unreasonable demands; `repeat` as long or
/// repeated calls; `sexual` as sexual conduct. `symptom` is the agent's condition, not a type: it
/// feeds the care list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IncidentType {
    /// 暴力・脅迫・暴言.
    Violence,
    /// 著しく不当な要求.
    Demand,
    /// 長時間・反復的な電話.
    LongRepeated,
    /// SNS・インターネット上での誹謗中傷の予告.
    OnlineShaming,
    /// 性的言動.
    Sexual,
}

/// Every type, in the order the guidance lists them.
pub const ALL_TYPES: [IncidentType; 5] = [
    IncidentType::Violence,
    IncidentType::Demand,
    IncidentType::LongRepeated,
    IncidentType::OnlineShaming,
    IncidentType::Sexual,
];

/// Words in a threat's quote that make it an online-shaming threat.
pub const ONLINE_WORDS: [&str; 8] = [
    "ネット",
    "SNS",
    "晒",
    "拡散",
    "書き込",
    "口コミ",
    "レビュー",
    "投稿",
];

impl IncidentType {
    /// The code the SQL returns and the CSV carries.
    pub fn code(self) -> &'static str {
        match self {
            IncidentType::Violence => "violence_threat_abuse",
            IncidentType::Demand => "unreasonable_demand",
            IncidentType::LongRepeated => "long_or_repeated",
            IncidentType::OnlineShaming => "online_shaming",
            IncidentType::Sexual => "sexual",
        }
    }

    /// Japanese label.
    pub fn label_ja(self) -> &'static str {
        match self {
            IncidentType::Violence => "暴力・脅迫・暴言",
            IncidentType::Demand => "著しく不当な要求",
            IncidentType::LongRepeated => "長時間・反復的な電話",
            IncidentType::OnlineShaming => "SNS等での誹謗中傷の予告",
            IncidentType::Sexual => "性的言動",
        }
    }

    /// Short label for charts.
    pub fn short_ja(self) -> &'static str {
        match self {
            IncidentType::Violence => "暴力・脅迫",
            IncidentType::Demand => "不当要求",
            IncidentType::LongRepeated => "長時間・反復",
            IncidentType::OnlineShaming => "SNS中傷予告",
            IncidentType::Sexual => "性的言動",
        }
    }
}

/// Duration classes of ended calls (minutes, lower bound inclusive).
pub const DURATION_BUCKETS: [(i64, Option<i64>, &str); 8] = [
    (0, Some(1), "<1分"),
    (1, Some(3), "1–3分"),
    (3, Some(5), "3–5分"),
    (5, Some(10), "5–10分"),
    (10, Some(15), "10–15分"),
    (15, Some(30), "15–30分"),
    (30, Some(60), "30–60分"),
    (60, None, "60分以上"),
];

/// Headline figures of one period (also computed for the previous period, for the change).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Calls started in the period.
    pub calls: i64,
    /// Calls with a harassment level of 1 or more.
    pub incidents: i64,
    /// Calls by highest level, index 0 = level 0 … 4 = level 4 (higher levels count as 4).
    pub by_level: [i64; 5],
    /// Ended calls that lasted 15 minutes or more.
    pub over_15: i64,
    /// Ended calls that lasted 30 minutes or more.
    pub over_30: i64,
    /// Escalations (pings to the leads) of the period's calls.
    pub escalations: i64,
    /// Escalations no lead acknowledged.
    pub unacknowledged: i64,
    /// Median ping → ack time, seconds.
    pub ack_p50_secs: Option<f64>,
    /// 90th percentile ping → ack time, seconds.
    pub ack_p90_secs: Option<f64>,
    /// Marks recorded on the period's calls.
    pub marks: i64,
}

/// Incidents of one type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeCount {
    /// The type.
    pub kind: IncidentType,
    /// Calls with at least one mark of the type.
    pub calls: i64,
    /// Marks of the type.
    pub marks: i64,
}

/// A caller who rang more than once in the period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepeatCaller {
    /// Number, or its hash when the site hashes numbers.
    pub caller_key: String,
    /// Calls in the period.
    pub calls: i64,
    /// Of them, incidents (level ≥ 1).
    pub incidents: i64,
    /// Highest level reached.
    pub max_level: i64,
    /// Total talk time, seconds (ended calls).
    pub talk_secs: i64,
    /// The organisation's current conclusion (newest version), if any.
    pub conclusion: Option<String>,
}

/// An agent to follow up for care.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CareAgent {
    /// Agent id.
    pub agent: String,
    /// Display name.
    pub agent_name: String,
    /// Calls with a symptom mark.
    pub symptom_calls: i64,
    /// Level-4 calls.
    pub level4_calls: i64,
}

/// Everything one report shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Title line ("2026年11月 月次報告" …).
    pub title: String,
    /// The period.
    pub period: Period,
    /// The team, when limited to one.
    pub team: Option<String>,
    /// When made (Unix ms).
    pub generated_ms: i64,
    /// This period's headline figures.
    pub summary: Summary,
    /// The previous period's.
    pub previous: Summary,
    /// The previous period.
    pub previous_period: Period,
    /// Incidents by type.
    pub by_type: Vec<TypeCount>,
    /// Incidents by weekday (0 = Monday) × hour (local time of the period's offset).
    pub heat: [[i64; 24]; 7],
    /// Ended calls per [`DURATION_BUCKETS`] class.
    pub durations: [i64; 8],
    /// Top repeat callers.
    pub repeat_callers: Vec<RepeatCaller>,
    /// Agents to follow up; `None` when the report is not for an admin.
    pub care: Option<Vec<CareAgent>>,
}

impl Report {
    /// The one-line summary (webhook posts, the board).
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        format!(
            "{}: 通話 {} 件（前期比 {}）、カスハラ {} 件（前期比 {}）、レベル4 {} 件、30分超 {} 件、未応答エスカレーション {} 件",
            self.period.label(),
            s.calls,
            change(s.calls, self.previous.calls),
            s.incidents,
            change(s.incidents, self.previous.incidents),
            s.by_level[4],
            s.over_30,
            s.unacknowledged
        )
    }
}

/// "+12 / +3.4%" style change of `now` against `before`.
pub fn change(now: i64, before: i64) -> String {
    let d = now - before;
    if before == 0 {
        return format!("{d:+}");
    }
    format!("{d:+} / {:+.1}%", d as f64 * 100.0 / before as f64)
}

/// Makes the report for `opts` from `store`.
pub async fn build(store: &Store, opts: &ReportOptions) -> Result<Report, ReportError> {
    let previous_period = opts.period.previous();
    let q = query::Scope::new(&opts.period, opts.agents.as_deref());
    let pq = query::Scope::new(&previous_period, opts.agents.as_deref());
    let pool = store.pool();
    // Two lanes of statements run side by side (two connections of the pool, so the board and
    // the consumer keep theirs); each lane's statements run one after the other.
    let this_period = async {
        let (summary, durations) = query::summary(pool, &q).await?;
        let by_type = query::by_type(pool, &q).await?;
        let heat = query::heat(pool, &q, opts.period.offset_secs).await?;
        let care = if opts.care {
            Some(query::care(pool, &q).await?)
        } else {
            None
        };
        Ok::<_, sqlx::Error>((summary, durations, by_type, heat, care))
    };
    let previous_and_callers = async {
        let (previous, _) = query::summary(pool, &pq).await?;
        let repeat_callers = query::repeat_callers(pool, &q, opts.top_callers).await?;
        Ok::<_, sqlx::Error>((previous, repeat_callers))
    };
    let ((summary, durations, by_type, heat, care), (previous, repeat_callers)) =
        tokio::try_join!(this_period, previous_and_callers)?;
    let mut title = format!("{} カスタマーハラスメント対応報告", opts.period.label());
    if let Some(team) = &opts.team {
        title.push_str(&format!("（チーム {team}）"));
    }
    Ok(Report {
        title,
        period: opts.period.clone(),
        team: opts.team.clone(),
        generated_ms: chrono::Utc::now().timestamp_millis(),
        summary,
        previous,
        previous_period,
        by_type,
        heat,
        durations,
        repeat_callers,
        care,
    })
}

/// The files one report was written to.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// `report-<period>.html`.
    pub html: PathBuf,
    /// `report-<period>.pdf`.
    pub pdf: PathBuf,
    /// The CSV tables.
    pub csv: Vec<PathBuf>,
}

/// Writes the HTML, the PDF and the CSVs of `report` into `dir` (created if needed).
pub fn write_all(report: &Report, dir: &Path, font: &Path) -> Result<Written, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let stem = format!("report-{}", report.period.slug());
    let html_path = dir.join(format!("{stem}.html"));
    let html = html::render(report)?;
    write_file(&html_path, html.as_bytes())?;
    let pdf_path = dir.join(format!("{stem}.pdf"));
    let pdf = pdf::render_report(report, font)?;
    write_file(&pdf_path, &pdf)?;
    let csv = csv_out::write(report, dir, &stem)?;
    Ok(Written {
        html: html_path,
        pdf: pdf_path,
        csv,
    })
}

/// Writes `bytes` to `path` through a temp file and a rename (no half-written report).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// The Japanese font embedded in PDFs: IPA Gothic from Debian's `fonts-ipafont-gothic`.
pub const DEFAULT_FONT: &str = "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf";
