//! The report as one self-contained HTML page: tables and inline SVG charts, no script.

use std::fmt::Write as _;

use super::charts;
use super::{ALL_TYPES, DURATION_BUCKETS, Report, ReportError, Summary, change};

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

/// The rows of the summary table: label, this period, previous, change.
pub fn summary_rows(now: &Summary, before: &Summary) -> Vec<[String; 4]> {
    let row = |label: &str, a: i64, b: i64| {
        [
            label.to_string(),
            a.to_string(),
            b.to_string(),
            change(a, b),
        ]
    };
    vec![
        row("通話件数", now.calls, before.calls),
        row(
            "カスハラ件数（レベル1以上）",
            now.incidents,
            before.incidents,
        ),
        row("レベル4の通話", now.by_level[4], before.by_level[4]),
        row("15分以上の通話", now.over_15, before.over_15),
        row("30分以上の通話", now.over_30, before.over_30),
        row("記録されたマーク", now.marks, before.marks),
        row("エスカレーション", now.escalations, before.escalations),
        row(
            "未応答のエスカレーション",
            now.unacknowledged,
            before.unacknowledged,
        ),
        [
            "応答時間 中央値".into(),
            secs(now.ack_p50_secs),
            secs(before.ack_p50_secs),
            String::new(),
        ],
        [
            "応答時間 90パーセンタイル".into(),
            secs(now.ack_p90_secs),
            secs(before.ack_p90_secs),
            String::new(),
        ],
    ]
}

fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
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
    let rows: Vec<Vec<String>> = summary_rows(s, &report.previous)
        .into_iter()
        .map(Vec::from)
        .collect();
    table(&mut o, &["項目", "今期", "前期", "増減"], &rows);

    let _ = write!(o, "<h2>{}</h2>", heading::LEVEL);
    let labels: Vec<String> = (0..5).map(|l| format!("レベル{l}")).collect();
    // Level 0 (no incident) would dwarf the rest: the chart shows the incidents' levels 1–4.
    o.push_str(&charts::bars(
        heading::LEVEL,
        &labels[1..],
        &s.by_level[1..],
        &charts::LEVEL_RGB[1..],
    )?);
    let rows: Vec<Vec<String>> = (0..5)
        .map(|l| {
            vec![
                labels[l].clone(),
                s.by_level[l].to_string(),
                report.previous.by_level[l].to_string(),
            ]
        })
        .collect();
    table(&mut o, &["レベル", "今期", "前期"], &rows);

    let _ = write!(o, "<h2>{}</h2>", heading::TYPE);
    let labels: Vec<String> = ALL_TYPES.iter().map(|t| t.short_ja().to_string()).collect();
    let values: Vec<i64> = report.by_type.iter().map(|t| t.calls).collect();
    o.push_str(&charts::bars(
        heading::TYPE,
        &labels,
        &values,
        &[charts::BAR_RGB; 5],
    )?);
    let rows: Vec<Vec<String>> = report
        .by_type
        .iter()
        .map(|t| {
            vec![
                t.kind.label_ja().into(),
                t.calls.to_string(),
                t.marks.to_string(),
            ]
        })
        .collect();
    table(&mut o, &["類型", "通話件数", "マーク数"], &rows);

    let _ = write!(o, "<h2>{}</h2>", heading::LONG);
    table(
        &mut o,
        &["区分", "今期", "前期", "増減"],
        &[
            vec![
                "15分以上".into(),
                s.over_15.to_string(),
                report.previous.over_15.to_string(),
                change(s.over_15, report.previous.over_15),
            ],
            vec![
                "30分以上".into(),
                s.over_30.to_string(),
                report.previous.over_30.to_string(),
                change(s.over_30, report.previous.over_30),
            ],
        ],
    );

    let _ = write!(o, "<h2>{}</h2>", heading::HEAT);
    o.push_str(&charts::heat_map(heading::HEAT, &report.heat)?);

    let _ = write!(o, "<h2>{}</h2>", heading::DURATION);
    let labels: Vec<String> = DURATION_BUCKETS.iter().map(|b| b.2.to_string()).collect();
    o.push_str(&charts::bars(
        heading::DURATION,
        &labels,
        &report.durations,
        &[charts::BAR_RGB; 8],
    )?);
    let rows: Vec<Vec<String>> = labels
        .iter()
        .zip(report.durations)
        .map(|(l, v)| vec![l.clone(), v.to_string()])
        .collect();
    table(&mut o, &["通話時間", "件数"], &rows);

    let _ = write!(o, "<h2>{}</h2>", heading::ESCALATION);
    table(
        &mut o,
        &["項目", "値"],
        &[
            vec!["エスカレーション".into(), s.escalations.to_string()],
            vec!["応答時間 中央値 (p50)".into(), secs(s.ack_p50_secs)],
            vec!["応答時間 p90".into(), secs(s.ack_p90_secs)],
            vec!["未応答".into(), s.unacknowledged.to_string()],
        ],
    );

    let _ = write!(o, "<h2>{}</h2>", heading::CALLERS);
    let rows: Vec<Vec<String>> = report
        .repeat_callers
        .iter()
        .map(|c| {
            vec![
                c.caller_key.clone(),
                c.calls.to_string(),
                c.incidents.to_string(),
                c.max_level.to_string(),
                secs(Some(c.talk_secs as f64)),
                c.conclusion.clone().unwrap_or_else(|| "（未記録）".into()),
            ]
        })
        .collect();
    table(
        &mut o,
        &[
            "架電者",
            "通話",
            "カスハラ",
            "最高レベル",
            "通話時間計",
            "組織の結論",
        ],
        &rows,
    );

    if let Some(care) = &report.care {
        let _ = write!(o, "<h2>{}</h2>", heading::CARE);
        let rows: Vec<Vec<String>> = care
            .iter()
            .map(|a| {
                vec![
                    format!("{} ({})", a.agent_name, a.agent),
                    a.symptom_calls.to_string(),
                    a.level4_calls.to_string(),
                ]
            })
            .collect();
        table(
            &mut o,
            &["担当者", "身体症状のマーク", "レベル4の通話"],
            &rows,
        );
    }
    o.push_str("</body></html>\n");
    Ok(o)
}
