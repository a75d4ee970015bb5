//! `callguard floor report …` and `callguard floor incident …`: arguments and what they do,
//! returning typed results (the CLI layer prints them).

use std::path::{Path, PathBuf};

use clap::Args;

use super::{
    DEFAULT_FONT, Period, PeriodError, ReportError, ReportOptions, Written, build, incident,
    write_all,
};
use crate::floor::config::FloorConfig;
use crate::floor::service::store::Store;

/// `callguard floor report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A calendar month, YYYY-MM.
    #[arg(long, value_name = "YYYY-MM", conflicts_with_all = ["quarter", "from"])]
    pub month: Option<String>,
    /// A quarter, YYYYQ1…YYYYQ4.
    #[arg(long, value_name = "YYYYQn", conflicts_with = "from")]
    pub quarter: Option<String>,
    /// First day of a range, YYYY-MM-DD (with --to).
    #[arg(long, value_name = "YYYY-MM-DD", requires = "to")]
    pub from: Option<String>,
    /// Last day of the range, included.
    #[arg(long, value_name = "YYYY-MM-DD", requires = "from")]
    pub to: Option<String>,
    /// Only the agents of this team ([floor.teams]).
    #[arg(long, value_name = "TEAM")]
    pub team: Option<String>,
    /// Folder for the HTML, PDF and CSV files.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
    /// Include the care follow-up list (agents with symptom marks or level-4 calls; for admins).
    #[arg(long)]
    pub care: bool,
    /// How many repeat callers to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: i64,
    /// UTC offset of the site's local time (+09:00); default floor.report.utc_offset.
    #[arg(long, value_name = "+HH:MM", allow_hyphen_values = true)]
    pub utc_offset: Option<String>,
}

/// `callguard floor incident`.
#[derive(Debug, Args)]
pub struct IncidentArgs {
    /// The call's key on the board: SITE/AGENT/CALL_ID.
    pub key: String,
    /// The PDF to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// The call's sealed evidence folder (from the workstation or the archive): its
    /// incident.md, manifest hash and key id go into the record.
    #[arg(long, value_name = "DIR")]
    pub folder: Option<PathBuf>,
    /// The workstation's public key: the folder's signature and hashes are checked with it.
    #[arg(long, value_name = "FILE", requires = "folder")]
    pub pubkey: Option<PathBuf>,
}

/// The site's UTC offset: `floor.report.utc_offset`, else this machine's.
pub fn offset_secs(fc: &FloorConfig, arg: Option<&str>) -> Result<i32, PeriodError> {
    match arg.unwrap_or(&fc.report.utc_offset) {
        "" => Ok(chrono::Local::now().offset().local_minus_utc()),
        s => super::period::parse_offset(s),
    }
}

/// The PDF font: `floor.report.font`, else IPA Gothic.
pub fn font(fc: &FloorConfig) -> PathBuf {
    if fc.report.font.is_empty() {
        PathBuf::from(DEFAULT_FONT)
    } else {
        PathBuf::from(&fc.report.font)
    }
}

/// The period the arguments name.
pub fn period(a: &ReportArgs, offset: i32) -> Result<Period, PeriodError> {
    match (&a.month, &a.quarter, &a.from, &a.to) {
        (Some(m), _, _, _) => Period::month(m, offset),
        (_, Some(q), _, _) => Period::quarter(q, offset),
        (_, _, Some(f), Some(t)) => Period::range(f, t, offset),
        _ => Err(PeriodError::Month(String::new())),
    }
}

/// `callguard floor report`: builds the report from the store at `db_url` and writes it.
pub async fn report(
    db_url: &str,
    fc: &FloorConfig,
    a: &ReportArgs,
) -> Result<(Written, String), ReportError> {
    let offset = offset_secs(fc, a.utc_offset.as_deref())?;
    let period = period(a, offset)?;
    let agents = match &a.team {
        None => None,
        Some(t) => Some(
            fc.teams
                .get(t)
                .cloned()
                .ok_or_else(|| ReportError::UnknownTeam(t.clone()))?,
        ),
    };
    let store = Store::open(db_url).await?;
    let opts = ReportOptions {
        period,
        agents,
        team: a.team.clone(),
        care: a.care,
        top_callers: a.top.clamp(1, 1000),
    };
    let built = build(&store, &opts).await;
    store.close().await;
    let report = built?;
    let (out, font) = (a.out.clone(), font(fc));
    let line = report.summary_line();
    let written = tokio::task::spawn_blocking(move || write_all(&report, &out, &font))
        .await
        .map_err(|e| ReportError::Pdf(e.to_string()))??;
    Ok((written, line))
}

/// `callguard floor incident`: the call's incident record as PDF.
pub async fn incident(db_url: &str, fc: &FloorConfig, a: &IncidentArgs) -> Result<(), ReportError> {
    let folder = a
        .folder
        .as_deref()
        .map(|d| incident::read_folder(d, a.pubkey.as_deref()))
        .transpose()?;
    let store = Store::open(db_url).await?;
    let rec = incident::gather(&store, &a.key, folder).await;
    store.close().await;
    let rec = rec?;
    incident::write(&rec, &font(fc), Path::new(&a.out))
}

/// The service's report settings (`floor.report`), checked at start.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Local offset, seconds.
    pub offset_secs: i32,
    /// PDF font.
    pub font: PathBuf,
    /// Where scheduled reports are written: `<data dir>/reports`.
    pub dir: PathBuf,
}

/// Reads `floor.report` for the service; an unreadable offset stops the start.
pub fn settings(fc: &FloorConfig, data_dir: &Path) -> Result<ServiceSettings, ReportError> {
    Ok(ServiceSettings {
        offset_secs: offset_secs(fc, None)?,
        font: font(fc),
        dir: data_dir.join("reports"),
    })
}

impl ServiceSettings {
    /// What the board's report routes use.
    pub fn web(&self) -> crate::floor::service::web::reports::ReportSettings {
        crate::floor::service::web::reports::ReportSettings {
            offset_secs: self.offset_secs,
            font: self.font.clone(),
        }
    }

    /// What the monthly schedule uses; links point at `floor.public_url`, else at the board's
    /// own address.
    pub fn monthly(
        &self,
        fc: &FloorConfig,
        bound: std::net::SocketAddr,
        tls: bool,
    ) -> super::schedule::MonthlyOptions {
        let public_url = if fc.public_url.is_empty() {
            format!("{}://{bound}", if tls { "https" } else { "http" })
        } else {
            fc.public_url.clone()
        };
        super::schedule::MonthlyOptions {
            offset_secs: self.offset_secs,
            dir: self.dir.clone(),
            font: self.font.clone(),
            public_url,
        }
    }
}
