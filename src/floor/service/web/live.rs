//! Live updates of the board. One shared snapshot serves every open page: after a burst of
//! changes (at most every [`MIN_INTERVAL`], the newest state always delivered) only the calls
//! that changed are read from the store and merged in, with a full read every [`REFRESH`] (time
//! passes, other floor instances write too). Each page is sent only the rows that changed since
//! what it shows, which it patches in place. Sending the whole board per change made the
//! browser rebuild thousands of rows per update, and reading the whole board per change took
//! longer than the changes came: the board fell seconds behind at a few hundred events a second.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
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
    /// Open calls, calls ended recently, workstations.
    pub data: Arc<BoardData>,
}

/// What changed on the board since the live feed last looked; filled by the writers after
/// they committed (the consumer, the ack button), drained by the feed.
#[derive(Debug, Clone, Default)]
pub struct BoardChanges(Arc<Mutex<Changes>>);

#[derive(Debug, Default)]
struct Changes {
    calls: HashSet<String>,
    workstations: bool,
    everything: bool,
}

impl BoardChanges {
    fn with(&self, f: impl FnOnce(&mut Changes)) {
        match self.0.lock() {
            Ok(mut c) => f(&mut c),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// A call (its row, marks, escalations or acks) changed.
    pub fn call(&self, key: &str) {
        self.with(|c| {
            c.calls.insert(key.to_string());
        });
    }

    /// A workstation's health changed.
    pub fn workstations(&self) {
        self.with(|c| c.workstations = true);
    }

    /// Something changed that is not tied to one call: read the whole board again.
    pub fn everything(&self) {
        self.with(|c| c.everything = true);
    }

    fn take(&self) -> Changes {
        let mut out = Changes::default();
        self.with(|c| out = std::mem::take(c));
        out
    }
}

/// Replaces the calls `keys` in `board` with their `fresh` state (calls that ended before
/// `ended_since_ms` leave the board).
fn merge(board: &mut BoardData, keys: &HashSet<String>, fresh: BoardData, ended_since_ms: i64) {
    board.calls.retain(|c| !keys.contains(&c.key));
    board.marks.retain(|m| !keys.contains(&m.call_key));
    board.escalations.retain(|e| !keys.contains(&e.call_key));
    board.acks.retain(|a| !keys.contains(&a.call_key));
    let shown: HashSet<String> = fresh
        .calls
        .iter()
        .filter(|c| c.ended_ms.is_none_or(|e| e >= ended_since_ms))
        .map(|c| c.key.clone())
        .collect();
    board
        .calls
        .extend(fresh.calls.into_iter().filter(|c| shown.contains(&c.key)));
    board.marks.extend(
        fresh
            .marks
            .into_iter()
            .filter(|m| shown.contains(&m.call_key)),
    );
    board.escalations.extend(
        fresh
            .escalations
            .into_iter()
            .filter(|e| shown.contains(&e.call_key)),
    );
    board.acks.extend(
        fresh
            .acks
            .into_iter()
            .filter(|a| shown.contains(&a.call_key)),
    );
}

/// Keeps the shared snapshot current while at least one page listens, until the state is gone.
pub(super) async fn feed(state: Weak<AppState>, mut updates: watch::Receiver<u64>) {
    let mut board: Option<Arc<BoardData>> = None;
    let mut last_full = tokio::time::Instant::now();
    loop {
        tokio::select! {
            r = updates.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(REFRESH) => {}
        }
        let Some(s) = state.upgrade() else { return };
        if s.feed.receiver_count() == 0 {
            // Nobody watches: changes are not tracked, the next page starts from a full read.
            board = None;
            s.changes.take();
            continue;
        }
        // Read before the store: a change committed during the reads triggers one more round.
        let version = *updates.borrow_and_update();
        let changes = s.changes.take();
        let since = super::now_ms() - super::RECENT.as_millis() as i64;
        let full = changes.everything || last_full.elapsed() >= REFRESH;
        let read = match board.as_mut() {
            Some(b) if !full => {
                if changes.calls.is_empty() && !changes.workstations {
                    // Nothing the board shows (e.g. a ping claimed): no new snapshot.
                    continue;
                }
                incremental(&s, Arc::make_mut(b), &changes, since).await
            }
            _ => match s.store.board(since).await {
                Ok(data) => {
                    last_full = tokio::time::Instant::now();
                    board = Some(Arc::new(data));
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        match (read, &board) {
            (Ok(()), Some(b)) => {
                s.feed.send_replace(Some(Arc::new(Snapshot {
                    version,
                    data: Arc::clone(b),
                })));
            }
            (Err(e), _) => {
                tracing::warn!(error = %e, "floor: board query for live updates failed");
                // Start over from a full read.
                board = None;
            }
            (Ok(()), None) => {}
        }
        drop(s);
        tokio::time::sleep(MIN_INTERVAL).await;
    }
}

async fn incremental(
    s: &AppState,
    board: &mut BoardData,
    changes: &Changes,
    since: i64,
) -> Result<(), crate::floor::service::store::StoreError> {
    if !changes.calls.is_empty() {
        let keys: Vec<String> = changes.calls.iter().cloned().collect();
        let fresh = s.store.calls_by_keys(&keys).await?;
        merge(board, &changes.calls, fresh, since);
    }
    if changes.workstations {
        board.workstations = s.store.workstations().await?;
    }
    Ok(())
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

    fn call(key: &str, ended_ms: Option<i64>) -> crate::floor::service::store::CallRow {
        crate::floor::service::store::CallRow {
            key: key.into(),
            site: "s".into(),
            agent: "a".into(),
            agent_name: String::new(),
            host: String::new(),
            call_id: key.into(),
            caller: None,
            caller_key: None,
            started_ms: Some(1),
            ended_ms,
            level: 0,
            marks: 0,
            ws_agent: "a".into(),
        }
    }

    fn mark_of(key: &str, quote: &str) -> crate::floor::service::store::MarkRow {
        crate::floor::service::store::MarkRow {
            call_key: key.into(),
            at_ms: 1,
            mark: "threat".into(),
            quote: quote.into(),
            level: 1,
            rules: String::new(),
        }
    }

    #[test]
    fn merging_changed_calls_replaces_them_and_drops_calls_ended_long_ago() {
        let mut board = BoardData {
            calls: vec![call("c1", None), call("c2", None), call("c3", None)],
            marks: vec![mark_of("c1", "old"), mark_of("c2", "keep")],
            ..BoardData::default()
        };
        let keys: HashSet<String> = ["c1".to_string(), "c3".to_string()].into();
        let fresh = BoardData {
            calls: vec![call("c1", None), call("c3", Some(10))],
            marks: vec![
                mark_of("c1", "old"),
                mark_of("c1", "new"),
                mark_of("c3", "x"),
            ],
            ..BoardData::default()
        };
        merge(&mut board, &keys, fresh, 100);
        let mut calls: Vec<&str> = board.calls.iter().map(|c| c.key.as_str()).collect();
        calls.sort_unstable();
        assert_eq!(calls, ["c1", "c2"], "c3 ended before the cut-off");
        let quotes: Vec<&str> = board.marks.iter().map(|m| m.quote.as_str()).collect();
        assert_eq!(quotes, ["keep", "old", "new"]);
    }

    #[test]
    fn changes_are_drained_once() {
        let ch = BoardChanges::default();
        ch.call("c1");
        ch.call("c1");
        ch.workstations();
        let c = ch.take();
        assert_eq!(c.calls.len(), 1);
        assert!(c.workstations && !c.everything);
        let c = ch.take();
        assert!(c.calls.is_empty() && !c.workstations && !c.everything);
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
