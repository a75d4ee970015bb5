//! Live updates of the board. One store query per burst of changes serves every open page (a
//! shared snapshot, at most [`MIN_INTERVAL`] apart, the newest always delivered), and each page
//! is sent only the rows that changed since what it shows, which the page patches in place.
//! Sending the whole board per change made the browser rebuild thousands of rows per update and
//! fall seconds behind at a few hundred events a second.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use super::AppState;
use super::pages::{BoardParts, BoardSection};
use crate::floor::service::store::BoardData;

/// Shortest time between two snapshots: a burst of events becomes one update per page.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The board also changes with time (a silent workstation turns red): a snapshot at least this
/// often while a page is open.
pub const REFRESH: Duration = Duration::from_secs(5);

/// The whole floor's board at one moment, before each viewer's filter.
#[derive(Debug)]
pub struct Snapshot {
    /// The change counter read before the query: the snapshot holds every change up to it.
    pub version: u64,
    /// What the store returned.
    pub data: BoardData,
}

/// Keeps the shared snapshot current while at least one page listens, until the state is gone.
pub(super) async fn feed(state: Weak<AppState>, mut updates: watch::Receiver<u64>) {
    loop {
        tokio::select! {
            r = updates.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(REFRESH) => {}
        }
        let Some(s) = state.upgrade() else { return };
        if s.feed.receiver_count() == 0 {
            continue;
        }
        // Read before the query: a change committed during it triggers one more round.
        let version = *updates.borrow_and_update();
        match s
            .store
            .board(super::now_ms() - super::RECENT.as_millis() as i64)
            .await
        {
            Ok(data) => {
                s.feed
                    .send_replace(Some(Arc::new(Snapshot { version, data })));
            }
            Err(e) => tracing::warn!(error = %e, "floor: board query for live updates failed"),
        }
        drop(s);
        tokio::time::sleep(MIN_INTERVAL).await;
    }
}

/// The changes of one section.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct SectionPatch {
    /// The new heading, when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// New or changed rows: `[key, html]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<(String, String)>,
    /// Keys of rows to remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gone: Vec<String>,
    /// Every key in display order, when the order changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<Vec<String>>,
}

impl SectionPatch {
    fn is_empty(&self) -> bool {
        self.head.is_none() && self.rows.is_empty() && self.gone.is_empty() && self.order.is_none()
    }
}

/// What a page needs to go from one board to the next (the `patch` event's JSON).
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct Patch {
    /// The server's clock (the page's clocks tick from it).
    pub now: i64,
    /// Changed sections by element id.
    pub s: HashMap<&'static str, SectionPatch>,
}

fn diff_section(old: &BoardSection, new: &BoardSection) -> SectionPatch {
    let before: HashMap<&str, &str> = old
        .rows
        .iter()
        .map(|(k, r)| (k.as_str(), r.as_str()))
        .collect();
    let now: HashSet<&str> = new.rows.iter().map(|(k, _)| k.as_str()).collect();
    let rows = new
        .rows
        .iter()
        .filter(|(k, r)| before.get(k.as_str()) != Some(&r.as_str()))
        .cloned()
        .collect();
    let gone = old
        .rows
        .iter()
        .filter(|(k, _)| !now.contains(k.as_str()))
        .map(|(k, _)| k.clone())
        .collect();
    let same_order =
        old.rows.len() == new.rows.len() && old.rows.iter().zip(&new.rows).all(|(a, b)| a.0 == b.0);
    SectionPatch {
        head: (old.head != new.head).then(|| new.head.clone()),
        rows,
        gone,
        order: (!same_order).then(|| new.rows.iter().map(|(k, _)| k.clone()).collect()),
    }
}

/// The patch from `old` to `new`; `None` when no row, heading or order changed.
pub fn diff(old: &BoardParts, new: &BoardParts) -> Option<Patch> {
    let s: HashMap<&'static str, SectionPatch> = old
        .sections()
        .into_iter()
        .zip(new.sections())
        .map(|((id, a), (_, b))| (id, diff_section(a, b)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    (!s.is_empty()).then_some(Patch { now: new.now_ms, s })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(rows: &[(&str, &str)]) -> BoardSection {
        BoardSection {
            head: format!("<h2>{}</h2>", rows.len()),
            columns: String::new(),
            rows: rows
                .iter()
                .map(|(k, r)| (k.to_string(), r.to_string()))
                .collect(),
        }
    }

    fn parts(open: &[(&str, &str)], ended: &[(&str, &str)]) -> BoardParts {
        BoardParts {
            now_ms: 1,
            fleet: section(&[("w1", "ok")]),
            open: section(open),
            ended: section(ended),
        }
    }

    #[test]
    fn nothing_changed_sends_nothing() {
        let a = parts(&[("c1", "x"), ("c2", "y")], &[]);
        assert_eq!(diff(&a, &a.clone()), None);
    }

    #[test]
    fn one_changed_row_is_sent_alone_without_order() {
        let a = parts(&[("c1", "x"), ("c2", "y")], &[]);
        let b = parts(&[("c1", "x"), ("c2", "y2")], &[]);
        let p = diff(&a, &b).expect("a patch");
        assert_eq!(p.s.len(), 1);
        let open = &p.s["open"];
        assert_eq!(open.rows, vec![("c2".to_string(), "y2".to_string())]);
        assert!(open.gone.is_empty() && open.order.is_none() && open.head.is_none());
    }

    #[test]
    fn an_ended_call_moves_between_tables_with_the_new_orders() {
        let a = parts(&[("c1", "x"), ("c2", "y")], &[]);
        let b = parts(&[("c2", "y")], &[("c1", "x-ended")]);
        let p = diff(&a, &b).expect("a patch");
        assert_eq!(p.s["open"].gone, vec!["c1".to_string()]);
        assert_eq!(p.s["open"].order, Some(vec!["c2".to_string()]));
        assert!(
            p.s["open"].head.is_some(),
            "the count in the heading changed"
        );
        assert_eq!(
            p.s["ended"].rows,
            vec![("c1".to_string(), "x-ended".to_string())]
        );
        assert_eq!(p.s["ended"].order, Some(vec!["c1".to_string()]));
        assert!(!p.s.contains_key("fleet"));
    }

    #[test]
    fn a_reorder_without_content_change_sends_only_the_order() {
        let a = parts(&[("c1", "x"), ("c2", "y")], &[]);
        let b = parts(&[("c2", "y"), ("c1", "x")], &[]);
        let p = diff(&a, &b).expect("a patch");
        let open = &p.s["open"];
        assert!(open.rows.is_empty() && open.gone.is_empty());
        assert_eq!(open.order, Some(vec!["c2".to_string(), "c1".to_string()]));
    }
}
