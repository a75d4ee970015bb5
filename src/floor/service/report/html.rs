//! The report as one self-contained HTML page: tables and inline SVG charts, no script.

use std::fmt::Write as _;

use super::tables::{self, Table};
use super::{ALL_TYPES, Report, ReportError, charts};

/// Section headings, shared by the HTML and the PDF.
pub mod heading {
    /// Headline figures and the change.
    pub const SUMMARY: &str = "概要と前期比";
    /// Calls by level.
    pub const LEVEL: &str = "レベル別の通話件数";
    /// Incidents by type.
    pub const TYPE: &str = "類型別のカスハラ件数";
    /// Long calls.
    pub const LONG: &str = "長時間通話（15分・30分以上）";
    /// Heat map.
    pub const HEAT: &str = "曜日×時間帯のカスハラ発生件数";
    /// Durations.
    pub const DURATION: &str = "通話時間の分布";
    /// Escalations.
    pub const ESCALATION: &str = "エスカレーションの応答時間";
    /// Repeat callers.
    pub const CALLERS: &str = "繰り返し架電者と組織の結論";
    /// Care follow-up.
    pub const CARE: &str = "ケアが必要な担当者（管理者のみ）";
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Seconds as `1分05秒`.
pub fn secs(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(s) => {
            let s = s.round() as i64;
            if s >= 60 {
                format!("{}分{:02}秒", s / 60, s % 60)
            } else {
                format!("{s}秒")
            }
        }
    }
}

fn table(out: &mut String, t: &Table) {
    out.push_str("<table><thead><tr>");
    for h in &t.head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// Renders `report` as HTML.
pub fn render(report: &Report) -> Result<String, ReportError> {
    let s = &report.summary;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html lang=\"ja\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:'IPAGothic','Noto Sans CJK JP',sans-serif;max-width:960px;\
         margin:2em auto;color:#222}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}\
         th,td{{border:1px solid #bbb;padding:.25em .6em;text-align:right}}\
         th:first-child,td:first-child{{text-align:left}}h2{{border-bottom:2px solid #2f80ed;\
         margin-top:1.8em}}.meta{{color:#666}}svg{{max-width:100%;height:auto}}</style>\
         </head><body><h1>{t}</h1><p class=\"meta\">対象期間: {p}（前期: {pp}）／作成: {g}</p>\
         <p><strong>{line}</strong></p>",
        t = esc(&report.title),
        p = esc(&report.period.label()),
        pp = esc(&report.previous_period.label()),
        g = chrono::DateTime::from_timestamp_millis(report.generated_ms)
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default(),
        line = esc(&report.summary_line()),
    );

    let _ = write!(o, "<h2>{}</h2>", heading::SUMMARY);
    table(&mut o, &tables::summary(s, &report.previous));

    let _ = write!(o, "<h2>{}</h2>", heading::LEVEL);
    // Level 0 (no incident) would dwarf the rest: the chart shows the incidents' levels 1–4.
    let labels: Vec<String> = (1..5).map(tables::level_label).collect();
    o.push_str(&charts::bars(
        heading::LEVEL,
        &labels,
        &s.by_level[1..],
        &charts::LEVEL_RGB[1..],
    )?);
    table(&mut o, &tables::levels(report));

    let _ = write!(o, "<h2>{}</h2>", heading::TYPE);
    let labels: Vec<String> = ALL_TYPES.iter().map(|t| t.short_ja().to_string()).collect();
    let values: Vec<i64> = report.by_type.iter().map(|t| t.calls).collect();
    o.push_str(&charts::bars(
        heading::TYPE,
        &labels,
        &values,
        &[charts::BAR_RGB; 5],
    )?);
    table(&mut o, &tables::types(report));

    let _ = write!(o, "<h2>{}</h2>", heading::LONG);
    table(&mut o, &tables::long_calls(report));

    let _ = write!(o, "<h2>{}</h2>", heading::HEAT);
    o.push_str(&charts::heat_map(heading::HEAT, &report.heat)?);

    let _ = write!(o, "<h2>{}</h2>", heading::DURATION);
    o.push_str(&charts::bars(
        heading::DURATION,
        &tables::duration_labels(),
        &report.durations,
        &[charts::BAR_RGB; 8],
    )?);
    table(&mut o, &tables::durations(report));

    let _ = write!(o, "<h2>{}</h2>", heading::ESCALATION);
    table(&mut o, &tables::escalations(report));

    let _ = write!(o, "<h2>{}</h2>", heading::CALLERS);
    table(&mut o, &tables::repeat_callers(report));

    if let Some(care) = tables::care(report) {
        let _ = write!(o, "<h2>{}</h2>", heading::CARE);
        table(&mut o, &care);
    }
    o.push_str("</body></html>\n");
    Ok(o)
}
