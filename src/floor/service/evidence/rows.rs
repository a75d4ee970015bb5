//! The `evidence` table: one row per archived call folder the floor knows of, with its verify
//! state. Same SQL for SQLite and PostgreSQL (see the store's rules).

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::super::store::{Store, StoreError, call_key};
use crate::floor::contract::{EventBody, FloorEvent};

/// One archived folder and what the floor found in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvidenceRow {
    /// The call (`site/agent/call_id`).
    pub call_key: String,
    /// The folder, relative to the workstation's evidence root (as in the ledger).
    pub dir: String,
    /// Site of the call.
    pub site: String,
    /// Agent of the call.
    pub agent: String,
    /// The workstation's host name (its folder in the archive).
    pub host: String,
    /// The ledger line's `seq`.
    pub seq: i64,
    /// The ledger line's `manifest_sha256`.
    pub manifest_sha256: String,
    /// SHA-256 of the ledger line as published on the bus.
    pub line_sha256: String,
    /// See [`super::State`].
    pub state: String,
    /// What was found (which file, what differs), for people.
    pub detail: String,
    /// The archived `manifest.json`, once read.
    pub manifest: String,
    /// The key the ledger event carried (base64; empty when none).
    pub published_key: String,
    /// Which key the last check used: `file:<path>` or `pinned:<first seen, Unix ms>`.
    pub key_source: String,
    /// Checks made so far.
    pub attempts: i64,
    /// Last check (Unix ms; 0 = never).
    pub checked_ms: i64,
    /// Next check (Unix ms); `None` once the answer is final.
    pub next_ms: Option<i64>,
}

const COLUMNS: &str = "call_key, dir, site, agent, host, seq, manifest_sha256, line_sha256, \
     state, detail, manifest, published_key, key_source, attempts, checked_ms, next_ms";

fn row(r: &AnyRow) -> Result<EvidenceRow, sqlx::Error> {
    Ok(EvidenceRow {
        call_key: r.try_get(0)?,
        dir: r.try_get(1)?,
        site: r.try_get(2)?,
        agent: r.try_get(3)?,
        host: r.try_get(4)?,
        seq: r.try_get(5)?,
        manifest_sha256: r.try_get(6)?,
        line_sha256: r.try_get(7)?,
        state: r.try_get(8)?,
        detail: r.try_get(9)?,
        manifest: r.try_get(10)?,
        published_key: r.try_get(11)?,
        key_source: r.try_get(12)?,
        attempts: r.try_get(13)?,
        checked_ms: r.try_get(14)?,
        next_ms: r.try_get(15)?,
    })
}

/// Turns ledger events not seen yet (at most `limit`, oldest first) into `waiting` rows due
/// now; an addendum's line (same folder) or a repeat adds nothing. Returns how many events
/// were taken.
pub async fn discover(store: &Store, now_ms: i64, limit: i64) -> Result<usize, StoreError> {
    let events = sqlx::query(
        "SELECT e.id, e.body FROM events e WHERE e.kind = 'ledger' AND NOT EXISTS \
         (SELECT 1 FROM evidence_seen s WHERE s.event_id = e.id) ORDER BY e.at_ms LIMIT $1",
    )
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    let n = events.len();
    for e in events {
        let id: String = e.try_get(0)?;
        let body: String = e.try_get(1)?;
        let mut tx = store.pool().begin().await?;
        if let Some(r) = waiting_row(&body, now_ms) {
            sqlx::query(&format!(
                "INSERT INTO evidence ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                 'waiting', '', '', $9, '', 0, 0, $10) ON CONFLICT (call_key, dir) DO NOTHING"
            ))
            .bind(&r.call_key)
            .bind(&r.dir)
            .bind(&r.site)
            .bind(&r.agent)
            .bind(&r.host)
            .bind(r.seq)
            .bind(&r.manifest_sha256)
            .bind(&r.line_sha256)
            .bind(&r.published_key)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            if !r.published_key.is_empty() {
                // First sight pins the host's key; a later one never replaces it.
                sqlx::query(
                    "INSERT INTO evidence_host_keys (host, public_key, ws_agent, first_seen_ms) \
                     VALUES ($1, $2, COALESCE((SELECT ws_agent FROM calls WHERE key = $3), ''), \
                     $4) ON CONFLICT (host) DO NOTHING",
                )
                .bind(&r.host)
                .bind(&r.published_key)
                .bind(&r.call_key)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
            }
        }
        sqlx::query("INSERT INTO evidence_seen (event_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(n)
}

/// The row a ledger event's body asks for; `None` for a body that names no call or folder.
fn waiting_row(body: &str, now_ms: i64) -> Option<EvidenceRow> {
    let ev: FloorEvent = serde_json::from_str(body).ok()?;
    let EventBody::Ledger {
        seq,
        manifest_sha256,
        line_sha256,
        dir,
        public_key,
        ..
    } = ev.body
    else {
        return None;
    };
    let call_id = ev.call_id.filter(|c| !c.is_empty())?;
    if dir.is_empty() || ev.host.is_empty() {
        return None;
    }
    Some(EvidenceRow {
        call_key: call_key(&ev.site, &ev.agent, &call_id),
        dir,
        site: ev.site,
        agent: ev.agent,
        host: ev.host,
        seq: seq.min(i64::MAX as u64) as i64,
        manifest_sha256,
        line_sha256,
        state: "waiting".into(),
        detail: String::new(),
        manifest: String::new(),
        published_key: public_key,
        key_source: String::new(),
        attempts: 0,
        checked_ms: 0,
        next_ms: Some(now_ms),
    })
}

/// Rows due for a check at `now_ms`, the most overdue first.
pub async fn due(store: &Store, now_ms: i64, limit: i64) -> Result<Vec<EvidenceRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM evidence WHERE next_ms IS NOT NULL AND next_ms <= $1 \
         ORDER BY next_ms LIMIT $2"
    ))
    .bind(now_ms)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
}

/// When the next check is due, if any is pending.
pub async fn next_due(store: &Store) -> Result<Option<i64>, StoreError> {
    let r = sqlx::query("SELECT MIN(next_ms) FROM evidence WHERE next_ms IS NOT NULL")
        .fetch_one(store.pool())
        .await?;
    Ok(r.try_get::<Option<i64>, _>(0)?)
}

/// The key pinned for a host.
#[derive(Debug, Clone, PartialEq)]
pub struct Pinned {
    /// The key (base64).
    pub public_key: String,
    /// The workstation's subject token it came from (empty when unknown).
    pub ws_agent: String,
    /// When it was first seen (Unix ms).
    pub first_seen_ms: i64,
}

/// The key pinned for `host`.
pub async fn pinned_key(store: &Store, host: &str) -> Result<Option<Pinned>, StoreError> {
    let r = sqlx::query(
        "SELECT public_key, ws_agent, first_seen_ms FROM evidence_host_keys WHERE host = $1",
    )
    .bind(host)
    .fetch_optional(store.pool())
    .await?;
    Ok(match r {
        Some(r) => Some(Pinned {
            public_key: r.try_get(0)?,
            ws_agent: r.try_get(1)?,
            first_seen_ms: r.try_get(2)?,
        }),
        None => None,
    })
}

/// The subject token of the workstation that published `call_key`'s events (empty if none).
pub async fn call_ws_agent(store: &Store, call_key: &str) -> Result<String, StoreError> {
    let r = sqlx::query("SELECT ws_agent FROM calls WHERE key = $1")
        .bind(call_key)
        .fetch_optional(store.pool())
        .await?;
    Ok(match r {
        Some(r) => r.try_get(0)?,
        None => String::new(),
    })
}

/// A check's answer.
pub struct Answer<'a> {
    /// State.
    pub state: &'a str,
    /// What was found.
    pub detail: &'a str,
    /// The archived manifest, when it could be read.
    pub manifest: Option<&'a str>,
    /// Which key was used (empty when none).
    pub key_source: &'a str,
}

/// Records a check's answer.
pub async fn record(
    store: &Store,
    r: &EvidenceRow,
    a: &Answer<'_>,
    now_ms: i64,
    next_ms: Option<i64>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE evidence SET state = $1, detail = $2, \
         manifest = CASE WHEN $3 <> '' THEN $4 ELSE manifest END, key_source = $5, \
         attempts = attempts + 1, checked_ms = $6, next_ms = $7 \
         WHERE call_key = $8 AND dir = $9",
    )
    .bind(a.state)
    .bind(a.detail)
    .bind(a.manifest.unwrap_or_default())
    .bind(a.manifest.unwrap_or_default())
    .bind(a.key_source)
    .bind(now_ms)
    .bind(next_ms)
    .bind(&r.call_key)
    .bind(&r.dir)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Asks for a new check of every folder of `call_key` now; returns how many.
pub async fn recheck(store: &Store, call_key: &str, now_ms: i64) -> Result<u64, StoreError> {
    Ok(
        sqlx::query("UPDATE evidence SET next_ms = $1, attempts = 0 WHERE call_key = $2")
            .bind(now_ms)
            .bind(call_key)
            .execute(store.pool())
            .await?
            .rows_affected(),
    )
}

/// The folders of a call, in ledger order.
pub async fn for_call(store: &Store, call_key: &str) -> Result<Vec<EvidenceRow>, StoreError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM evidence WHERE call_key = $1 ORDER BY seq"
    ))
    .bind(call_key)
    .fetch_all(store.pool())
    .await?;
    Ok(rows.iter().map(row).collect::<Result<_, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_event_names_its_call_and_folder() {
        use crate::floor::contract::{CallerRef, SCHEMA};
        let ev = |dir: &str| FloorEvent {
            schema: SCHEMA.into(),
            id: "e1".into(),
            site: "tokyo".into(),
            host: "ws-01".into(),
            agent: "1001".into(),
            agent_name: String::new(),
            call_id: Some("c-1".into()),
            caller: CallerRef::default(),
            at: chrono::Utc::now().fixed_offset(),
            elapsed_secs: None,
            level: None,
            body: EventBody::Ledger {
                seq: 7,
                manifest_sha256: "ab".into(),
                line_sha256: "cd".into(),
                prev: "00".into(),
                dir: dir.into(),
                public_key: String::new(),
            },
        };
        let text = serde_json::to_string(&ev("2026/11/29/100000_c-1")).unwrap();
        let r = waiting_row(&text, 5).expect("a row");
        assert_eq!(r.call_key, "tokyo/1001/c-1");
        assert_eq!(r.dir, "2026/11/29/100000_c-1");
        assert_eq!((r.seq, r.next_ms), (7, Some(5)));
        assert_eq!((r.host.as_str(), r.line_sha256.as_str()), ("ws-01", "cd"));
        let no_dir = serde_json::to_string(&ev("")).unwrap();
        assert!(waiting_row(&no_dir, 5).is_none());
    }
}
