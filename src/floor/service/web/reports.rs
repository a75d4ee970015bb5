//! The board's report downloads: `/report` (HTML, PDF, or one CSV table of a period) and
//! `/incident.pdf` (one call's incident record). A lead's report covers the agents of their
//! teams and never carries the care follow-up list; an admin's covers everyone and carries it.

use std::path::PathBuf;

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::{Lang, Shared, Viewer, audit, forbidden, internal, not_found};
use crate::floor::service::report::{
    self, DEFAULT_FONT, Period, ReportError, ReportOptions, csv_out, html, incident, pdf,
};

/// Report settings the service adds to the router (`floor.report`); without them the machine's
/// UTC offset and the default font are used.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// Local offset, seconds.
    pub offset_secs: i32,
    /// PDF font.
    pub font: PathBuf,
}

fn settings(s: Option<Extension<ReportSettings>>) -> ReportSettings {
    s.map(|Extension(s)| s).unwrap_or_else(|| ReportSettings {
        offset_secs: chrono::Local::now().offset().local_minus_utc(),
        font: PathBuf::from(DEFAULT_FONT),
    })
}

#[derive(Deserialize)]
pub(super) struct ReportQuery {
    period: Option<String>,
    #[serde(default)]
    format: String,
    #[serde(default)]
    table: String,
    #[serde(default)]
    team: String,
}

fn download(bytes: Vec<u8>, mime: &'static str, name: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response()
}

fn index(offset_secs: i32) -> String {
    let now = chrono::Utc::now().timestamp_millis();
    let mut body = String::from("<h1>報告書 / Reports</h1><ul>");
    let mut p = Period::last_month(now, offset_secs);
    for _ in 0..6 {
        let Some(period) = p else { break };
        let slug = period.slug();
        body.push_str(&format!(
            "<li>{} — <a href=\"/report?period={slug}\">HTML</a> · \
             <a href=\"/report?period={slug}&amp;format=pdf\">PDF</a> · \
             <a href=\"/report?period={slug}&amp;format=csv&amp;table=summary\">CSV</a></li>",
            html::esc(&period.label())
        ));
        p = Some(period.previous());
    }
    body.push_str(
        "</ul><form method=\"get\" action=\"/report\"><label>期間 (2026-11 / 2026Q4 / \
         2026-11-01_2026-11-15) <input name=\"period\" required></label> \
         <select name=\"format\"><option>html</option><option>pdf</option></select> \
         <button>表示</button></form>",
    );
    body
}

pub(super) async fn report_route(
    State(s): State<Shared>,
    Lang(t): Lang,
    v: Viewer,
    ext: Option<Extension<ReportSettings>>,
    Query(q): Query<ReportQuery>,
) -> Response {
    let set = settings(ext);
    let Some(slug) = q.period.as_deref().filter(|p| !p.is_empty()) else {
        return Html(super::pages::page(
            t,
            "報告書",
            v.nav(),
            &index(set.offset_secs),
        ))
        .into_response();
    };
    let period = match Period::from_slug(slug, set.offset_secs) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let team_agents = if q.team.is_empty() {
        None
    } else {
        match s.opts.teams.get(&q.team) {
            Some(a) => Some(a.clone()),
            None => return not_found(t),
        }
    };
    // A lead sees their teams' agents only; a team filter narrows that further.
    let agents: Option<Vec<String>> = match (&v.agents, team_agents) {
        (None, ta) => ta,
        (Some(mine), None) => Some(mine.iter().cloned().collect()),
        (Some(mine), Some(ta)) => Some(ta.into_iter().filter(|a| mine.contains(a)).collect()),
    };
    let opts = ReportOptions {
        period,
        agents,
        team: (!q.team.is_empty()).then(|| q.team.clone()),
        care: v.user.admin,
        top_callers: 10,
    };
    let Ok(_building) = s.reports.acquire().await else {
        return internal("the report builder is closed");
    };
    let rep = match report::build(&s.store, &opts).await {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    audit(&s, &v, "view.report", &rep.period.slug(), &q.format).await;
    let stem = format!("report-{}", rep.period.slug());
    let made: Result<Response, ReportError> = match q.format.as_str() {
        "pdf" => {
            let font = set.font.clone();
            match tokio::task::spawn_blocking(move || pdf::render_report(&rep, &font)).await {
                Ok(r) => r.map(|b| download(b, "application/pdf", format!("{stem}.pdf"))),
                Err(e) => return internal(e),
            }
        }
        "csv" => match csv_out::table_csv(&rep, &q.table) {
            Ok(Some(b)) => Ok(download(
                b,
                "text/csv; charset=utf-8",
                format!("{stem}-{}.csv", q.table),
            )),
            Ok(None) => return not_found(t),
            Err(e) => Err(e),
        },
        _ => html::render(&rep).map(|h| Html(h).into_response()),
    };
    made.unwrap_or_else(internal)
}

#[derive(Deserialize)]
pub(super) struct IncidentQuery {
    key: String,
}

pub(super) async fn incident_route(
    State(s): State<Shared>,
    Lang(t): Lang,
    v: Viewer,
    ext: Option<Extension<ReportSettings>>,
    Query(q): Query<IncidentQuery>,
) -> Response {
    let set = settings(ext);
    let call = match s.store.call(&q.key).await {
        Ok(Some(c)) => c,
        Ok(None) => return not_found(t),
        Err(e) => return internal(e),
    };
    if !v.sees(&call.agent) {
        return forbidden(t);
    }
    let rec = match incident::gather(&s.store, &q.key, None).await {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    audit(&s, &v, "view.record", &q.key, "pdf").await;
    let font = set.font.clone();
    match tokio::task::spawn_blocking(move || incident::render(&rec, &font)).await {
        Ok(Ok(b)) => download(b, "application/pdf", "incident.pdf".into()),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}
