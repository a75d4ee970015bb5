//! The report's tables as labelled rows: the one model the HTML and the PDF both render, so a
//! figure or a column reads the same in both.

use super::html::secs;
use super::{DURATION_BUCKETS, Report, Summary, change};

/// One table: its column headings and its rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column headings.
    pub head: Vec<&'static str>,
    /// Rows, one cell per heading.
    pub rows: Vec<Vec<String>>,
}

fn count_row(label: &str, now: i64, before: i64) -> Vec<String> {
    vec![
        label.to_string(),
        now.to_string(),
        before.to_string(),
        change(now, before),
    ]
}

/// The headline figures against the previous period: label, this period, previous, change.
pub fn summary(now: &Summary, before: &Summary) -> Table {
    Table {
        head: vec!["項目", "今期", "前期", "増減"],
        rows: vec![
            count_row("通話件数", now.calls, before.calls),
            count_row(
                "カスハラ件数（レベル1以上）",
                now.incidents,
                before.incidents,
            ),
            count_row("レベル4の通話", now.by_level[4], before.by_level[4]),
            count_row("15分以上の通話", now.over_15, before.over_15),
            count_row("30分以上の通話", now.over_30, before.over_30),
            count_row("記録されたマーク", now.marks, before.marks),
            count_row("エスカレーション", now.escalations, before.escalations),
            count_row(
                "未応答のエスカレーション",
                now.unacknowledged,
                before.unacknowledged,
            ),
            vec![
                "応答時間 中央値".into(),
                secs(now.ack_p50_secs),
                secs(before.ack_p50_secs),
                String::new(),
            ],
            vec![
                "応答時間 90パーセンタイル".into(),
                secs(now.ack_p90_secs),
                secs(before.ack_p90_secs),
                String::new(),
            ],
        ],
    }
}

/// The label of level `l`.
pub fn level_label(l: usize) -> String {
    format!("レベル{l}")
}

/// Calls by level 0–4, this period and the previous.
pub fn levels(r: &Report) -> Table {
    Table {
        head: vec!["レベル", "今期", "前期"],
        rows: (0..5)
            .map(|l| {
                vec![
                    level_label(l),
                    r.summary.by_level[l].to_string(),
                    r.previous.by_level[l].to_string(),
                ]
            })
            .collect(),
    }
}

/// Incidents by the guidance's five types.
pub fn types(r: &Report) -> Table {
    Table {
        head: vec!["類型", "通話件数", "マーク数"],
        rows: r
            .by_type
            .iter()
            .map(|t| {
                vec![
                    t.kind.label_ja().into(),
                    t.calls.to_string(),
                    t.marks.to_string(),
                ]
            })
            .collect(),
    }
}

/// Calls of 15 and 30 minutes or more against the previous period.
pub fn long_calls(r: &Report) -> Table {
    let (s, p) = (&r.summary, &r.previous);
    Table {
        head: vec!["区分", "今期", "前期", "増減"],
        rows: vec![
            count_row("15分以上", s.over_15, p.over_15),
            count_row("30分以上", s.over_30, p.over_30),
        ],
    }
}

/// The labels of the duration classes.
pub fn duration_labels() -> Vec<String> {
    DURATION_BUCKETS.iter().map(|b| b.2.to_string()).collect()
}

/// Ended calls per duration class.
pub fn durations(r: &Report) -> Table {
    Table {
        head: vec!["通話時間", "件数"],
        rows: duration_labels()
            .into_iter()
            .zip(r.durations)
            .map(|(l, v)| vec![l, v.to_string()])
            .collect(),
    }
}

/// Escalations and their response times.
pub fn escalations(r: &Report) -> Table {
    let s = &r.summary;
    Table {
        head: vec!["項目", "値"],
        rows: vec![
            vec!["エスカレーション".into(), s.escalations.to_string()],
            vec!["応答時間 中央値 (p50)".into(), secs(s.ack_p50_secs)],
            vec!["応答時間 p90".into(), secs(s.ack_p90_secs)],
            vec!["未応答".into(), s.unacknowledged.to_string()],
        ],
    }
}

/// The top repeat callers with the organisation's conclusion.
pub fn repeat_callers(r: &Report) -> Table {
    Table {
        head: vec![
            "架電者",
            "通話",
            "カスハラ",
            "最高レベル",
            "通話時間計",
            "組織の結論",
        ],
        rows: r
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
            .collect(),
    }
}

/// The care follow-up list, when the report carries it (admins only).
pub fn care(r: &Report) -> Option<Table> {
    r.care.as_ref().map(|care| Table {
        head: vec!["担当者", "身体症状のマーク", "レベル4の通話"],
        rows: care
            .iter()
            .map(|a| {
                vec![
                    format!("{} ({})", a.agent_name, a.agent),
                    a.symptom_calls.to_string(),
                    a.level4_calls.to_string(),
                ]
            })
            .collect(),
    })
}
