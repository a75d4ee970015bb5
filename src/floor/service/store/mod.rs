//! The floor's store: SQLite (`sqlite://PATH`, the default) or PostgreSQL (`postgres://…`, for a
//! large site or several floor instances), through `sqlx`'s `Any` driver so both run the same
//! queries. Migrations are embedded in the binary and run at open.
//!
//! The SQL here keeps to what both engines accept: `$N` placeholders (used in order), `ON
//! CONFLICT … DO`, `CASE` instead of `MAX(a, b)`/`GREATEST`, integers for booleans and times
//! (Unix milliseconds).

pub mod model;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use model::*;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `floor.db` is neither `sqlite://…` nor `postgres://…`.
    #[error("floor.db must start with sqlite:// or postgres:// (got `{0}`)")]
    Url(String),
    /// The database could not be opened or reached.
    #[error("cannot open the floor store {url}: {source}")]
    Open {
        /// The URL, password masked.
        url: String,
        /// Cause.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("cannot migrate the floor store: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("floor store: {0}")]
    Query(#[from] sqlx::Error),
    /// A name is already taken.
    #[error("{0} already exists")]
    Exists(String),
}

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// The floor's store; cheap to clone (a pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/floor/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/floor/postgres");

/// How long a floor waits for another one's migration of the same SQLite file.
const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(60);

/// Takes the exclusive migration lock at `path`, waiting (bounded) while another process
/// holds it.
async fn migration_lock(path: &std::path::Path) -> std::io::Result<crate::fsutil::ExclusiveLock> {
    let deadline = tokio::time::Instant::now() + MIGRATION_LOCK_WAIT;
    loop {
        match crate::fsutil::lock_exclusive(path) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "{} is held by another process for more than {} s",
                            path.display(),
                            MIGRATION_LOCK_WAIT.as_secs()
                        ),
                    ));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            r => return r,
        }
    }
}

/// `url` with any password replaced by `***`, for messages.
pub fn mask_db_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

const CALL_COLUMNS: &str = "c.key, c.site, c.agent, c.agent_name, c.host, c.call_id, c.caller, \
     c.caller_key, c.started_ms, c.ended_ms, c.level, c.marks, c.ws_agent";

fn call_row(r: &AnyRow) -> Result<CallRow, sqlx::Error> {
    Ok(CallRow {
        key: r.try_get(0)?,
        site: r.try_get(1)?,
        agent: r.try_get(2)?,
        agent_name: r.try_get(3)?,
        host: r.try_get(4)?,
        call_id: r.try_get(5)?,
        caller: r.try_get(6)?,
        caller_key: r.try_get(7)?,
        started_ms: r.try_get(8)?,
        ended_ms: r.try_get(9)?,
        level: r.try_get(10)?,
        marks: r.try_get(11)?,
        ws_agent: r.try_get(12)?,
    })
}

fn mark_row(r: &AnyRow) -> Result<MarkRow, sqlx::Error> {
    Ok(MarkRow {
        call_key: r.try_get(0)?,
        at_ms: r.try_get(1)?,
        mark: r.try_get(2)?,
        quote: r.try_get(3)?,
        level: r.try_get(4)?,
        rules: r.try_get(5)?,
    })
}

fn conclusion_row(r: &AnyRow) -> Result<ConclusionRow, sqlx::Error> {
    Ok(ConclusionRow {
        caller_key: r.try_get(0)?,
        version: r.try_get(1)?,
        text: r.try_get(2)?,
        phrase: r.try_get(3)?,
        author: r.try_get(4)?,
        at_ms: r.try_get(5)?,
    })
}

fn workstation_row(r: &AnyRow) -> Result<WorkstationRow, sqlx::Error> {
    Ok(WorkstationRow {
        key: r.try_get(0)?,
        site: r.try_get(1)?,
        agent: r.try_get(2)?,
        agent_name: r.try_get(3)?,
        host: r.try_get(4)?,
        last_seen_ms: r.try_get(5)?,
        interval_secs: r.try_get(6)?,
        pbx_up: r.try_get::<i64, _>(7)? != 0,
        pbx_down_ms: r.try_get(8)?,
        open_calls: r.try_get(9)?,
        version: r.try_get(10)?,
        pinged_ms: r.try_get(11)?,
    })
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the store at `url`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (engine, connect_url) = if let Some(rest) = url.strip_prefix("sqlite://") {
            // The folder of a new database file is made here, so every command can open it.
            let path = rest.split('?').next().unwrap_or(rest);
            if let Some(dir) = std::path::Path::new(path).parent()
                && !dir.as_os_str().is_empty()
                && let Err(e) = std::fs::create_dir_all(dir)
            {
                return Err(StoreError::Open {
                    url: mask_db_url(url),
                    source: sqlx::Error::Io(e),
                });
            }
            let sep = if rest.contains('?') { '&' } else { '?' };
            let url = if rest.contains("mode=") {
                url.to_string()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            (Engine::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Engine::Postgres, url.to_string())
        } else {
            return Err(StoreError::Url(mask_db_url(url)));
        };
        let options = AnyPoolOptions::new()
            .max_connections(match engine {
                Engine::Sqlite => 4,
                Engine::Postgres => 8,
            })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if engine == Engine::Sqlite {
                        // WAL lets the board read while the consumer writes; writers wait for
                        // each other instead of failing.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            });
        let pool = options
            .connect(&connect_url)
            .await
            .map_err(|source| StoreError::Open {
                url: mask_db_url(url),
                source,
            })?;
        match engine {
            Engine::Sqlite => {
                // sqlx takes no lock around SQLite migrations: two floors starting on one new
                // file would both create the tables and one would fail. A lock file beside the
                // database makes them take turns (PostgreSQL's migrator locks by itself).
                let path = connect_url
                    .strip_prefix("sqlite://")
                    .and_then(|r| r.split('?').next())
                    .filter(|p| !p.is_empty() && !p.starts_with(':'))
                    .map(|p| std::path::PathBuf::from(format!("{p}.migrate-lock")));
                let _lock = match path {
                    Some(p) => Some(migration_lock(&p).await.map_err(|e| StoreError::Open {
                        url: mask_db_url(url),
                        source: sqlx::Error::Io(e),
                    })?),
                    None => None,
                };
                SQLITE_MIGRATIONS.run(&pool).await?
            }
            Engine::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store { pool, engine })
    }

    /// The connection pool, for read-only aggregations elsewhere (reports).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The engine behind this store.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Stores one bus event and updates what it changes, in one transaction. An id seen before
    /// changes nothing ([`Applied::Duplicate`]), so a redelivered message is never counted twice.
    pub async fn apply(&self, ev: &EventRecord, received_ms: i64) -> Result<Applied, StoreError> {
        let mut tx = self.begin_write().await?;
        let applied = apply_in(&mut tx, ev, received_ms).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// Stores a batch of bus messages in one transaction, in order: all of them or, on an
    /// error, none. Each is [`Applied::New`] or [`Applied::Duplicate`] as [`Store::apply`] and
    /// [`Store::apply_bus_ack`] would say one at a time. One commit per batch instead of one per
    /// event is what lets the floor keep up with hundreds of events a second (each commit is a
    /// round trip and, on PostgreSQL, a disk flush).
    pub async fn apply_batch(
        &self,
        items: &[BusWrite],
        received_ms: i64,
    ) -> Result<Vec<Applied>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(match item {
                BusWrite::Event(ev) => apply_in(&mut tx, ev, received_ms).await?,
                BusWrite::Ack(a) => ack_in(&mut tx, a).await?,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records an ack read from the bus (a lead's, from any floor instance), attached to the
    /// call it names when the store knows it.
    pub async fn apply_bus_ack(&self, ack: &BusAck) -> Result<Applied, StoreError> {
        let mut tx = self.begin_write().await?;
        let applied = ack_in(&mut tx, ack).await?;
        tx.commit().await?;
        Ok(applied)
    }

    /// A transaction that writes: on SQLite it takes the write lock at its start, so a
    /// transaction that reads first cannot fail to upgrade its lock when another writer got in.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Engine::Postgres => self.pool.begin().await,
        }
    }

    /// Number of distinct events stored.
    pub async fn event_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) FROM events")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// The key of the call `call_id` that the workstation `ws_agent` of `site` published.
    pub async fn find_call(
        &self,
        site: &str,
        ws_agent: &str,
        call_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT key FROM calls WHERE site = $1 AND call_id = $2 \
             AND (ws_agent = $3 OR agent = $3) ORDER BY key LIMIT 1",
        )
        .bind(site)
        .bind(call_id)
        .bind(ws_agent)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// One call.
    pub async fn call(&self, key: &str) -> Result<Option<CallRow>, StoreError> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls c WHERE c.key = $1");
        let row = sqlx::query(&sql)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(call_row).transpose()?)
    }

    /// Open calls and calls ended at or after `ended_since_ms`, with their marks, escalations
    /// and acks, and every workstation.
    pub async fn board(&self, ended_since_ms: i64) -> Result<BoardData, StoreError> {
        let mut data = self
            .calls_where("(c.ended_ms IS NULL OR c.ended_ms >= $1)", ended_since_ms)
            .await?;
        data.workstations = self.workstations().await?;
        Ok(data)
    }

    /// One call with its marks, escalations and acks (no workstations).
    pub async fn call_details(&self, key: &str) -> Result<BoardData, StoreError> {
        self.calls_where("c.key = $1", key.to_string()).await
    }

    /// The calls with these keys, with their marks, escalations and acks (no workstations):
    /// what the live board reads after a few calls changed, instead of the whole board.
    pub async fn calls_by_keys(&self, keys: &[String]) -> Result<BoardData, StoreError> {
        let mut out = BoardData::default();
        for chunk in keys.chunks(500) {
            let list = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(",");
            let bind_all = |sql| bind_keys(sql, chunk);
            let sql = format!("SELECT {CALL_COLUMNS} FROM calls c WHERE c.key IN ({list})");
            for r in bind_all(&sql).fetch_all(&self.pool).await? {
                out.calls.push(call_row(&r)?);
            }
            let sql = format!(
                "SELECT m.call_key, m.at_ms, m.mark, m.quote, m.level, m.rules FROM marks m \
                 WHERE m.call_key IN ({list}) ORDER BY m.call_key, m.at_ms"
            );
            for r in bind_all(&sql).fetch_all(&self.pool).await? {
                out.marks.push(mark_row(&r)?);
            }
            let sql = format!(
                "SELECT e.event_id, e.call_key, e.at_ms, e.reason, e.delivery FROM escalations e \
                 WHERE e.call_key IN ({list}) ORDER BY e.call_key, e.at_ms"
            );
            for r in bind_all(&sql).fetch_all(&self.pool).await? {
                out.escalations.push(EscalationRow {
                    id: r.try_get(0)?,
                    call_key: r.try_get(1)?,
                    at_ms: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    delivery: r.try_get(4)?,
                });
            }
            let sql = format!(
                "SELECT a.id, a.call_key, a.lead, a.user_name, a.at_ms FROM acks a \
                 WHERE a.call_key IN ({list}) ORDER BY a.call_key, a.at_ms, a.id"
            );
            for r in bind_all(&sql).fetch_all(&self.pool).await? {
                out.acks.push(AckRow {
                    id: r.try_get(0)?,
                    call_key: r.try_get(1)?,
                    lead: r.try_get(2)?,
                    user_name: r.try_get(3)?,
                    at_ms: r.try_get(4)?,
                });
            }
        }
        Ok(out)
    }

    async fn calls_where<T>(&self, cond: &str, arg: T) -> Result<BoardData, StoreError>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + Clone + Send + 'static,
    {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls c WHERE {cond}");
        let calls = sqlx::query(&sql)
            .bind(arg.clone())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(call_row)
            .collect::<Result<Vec<_>, _>>()?;
        let sql = format!(
            "SELECT m.call_key, m.at_ms, m.mark, m.quote, m.level, m.rules FROM marks m \
             JOIN calls c ON c.key = m.call_key WHERE {cond} ORDER BY m.at_ms"
        );
        let marks = sqlx::query(&sql)
            .bind(arg.clone())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(mark_row)
            .collect::<Result<Vec<_>, _>>()?;
        let sql = format!(
            "SELECT e.event_id, e.call_key, e.at_ms, e.reason, e.delivery FROM escalations e \
             JOIN calls c ON c.key = e.call_key WHERE {cond} ORDER BY e.at_ms"
        );
        let escalations = sqlx::query(&sql)
            .bind(arg.clone())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(EscalationRow {
                    id: r.try_get(0)?,
                    call_key: r.try_get(1)?,
                    at_ms: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    delivery: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let sql = format!(
            "SELECT a.id, a.call_key, a.lead, a.user_name, a.at_ms FROM acks a \
             JOIN calls c ON c.key = a.call_key WHERE {cond} ORDER BY a.at_ms, a.id"
        );
        let acks = sqlx::query(&sql)
            .bind(arg)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(AckRow {
                    id: r.try_get(0)?,
                    call_key: r.try_get(1)?,
                    lead: r.try_get(2)?,
                    user_name: r.try_get(3)?,
                    at_ms: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        Ok(BoardData {
            calls,
            marks,
            escalations,
            acks,
            workstations: Vec::new(),
        })
    }

    /// Every workstation, by key.
    pub async fn workstations(&self) -> Result<Vec<WorkstationRow>, StoreError> {
        Ok(sqlx::query(
            "SELECT key, site, agent, agent_name, host, last_seen_ms, interval_secs, pbx_up, \
             pbx_down_ms, open_calls, version, pinged_ms FROM workstations ORDER BY key",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(workstation_row)
        .collect::<Result<Vec<_>, _>>()?)
    }

    /// Claims the one ping about a workstation's outage: true for exactly one caller (across
    /// floor instances) until a healthy heartbeat clears it.
    pub async fn claim_outage_ping(&self, key: &str, now_ms: i64) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE workstations SET pinged_ms = $1 WHERE key = $2 AND pinged_ms IS NULL",
        )
        .bind(now_ms)
        .bind(key)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records a lead taking a call; an ack id seen before changes nothing.
    pub async fn add_ack(&self, ack: &AckRow) -> Result<Applied, StoreError> {
        let n = sqlx::query(
            "INSERT INTO acks (id, call_key, lead, user_name, at_ms) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ack.id)
        .bind(&ack.call_key)
        .bind(&ack.lead)
        .bind(&ack.user_name)
        .bind(ack.at_ms)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(if n == 0 {
            Applied::Duplicate
        } else {
            Applied::New
        })
    }

    /// A caller's calls (newest first, at most `limit`), their marks and every version of the
    /// conclusion.
    pub async fn caller_history(
        &self,
        caller_key: &str,
        limit: i64,
    ) -> Result<CallerHistory, StoreError> {
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM calls c WHERE c.caller_key = $1 \
             ORDER BY c.started_ms DESC LIMIT $2"
        );
        let calls = sqlx::query(&sql)
            .bind(caller_key)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(call_row)
            .collect::<Result<Vec<_>, _>>()?;
        let marks = sqlx::query(
            "SELECT m.call_key, m.at_ms, m.mark, m.quote, m.level, m.rules FROM marks m \
             JOIN calls c ON c.key = m.call_key WHERE c.caller_key = $1 \
             ORDER BY m.at_ms DESC LIMIT $2",
        )
        .bind(caller_key)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(mark_row)
        .collect::<Result<Vec<_>, _>>()?;
        Ok(CallerHistory {
            calls,
            marks,
            conclusions: self.conclusions(caller_key).await?,
        })
    }

    /// Number of a caller's calls started at or after `since_ms`, and the highest level among
    /// them.
    pub async fn caller_counts(
        &self,
        caller_key: &str,
        since_ms: i64,
    ) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*), COALESCE(MAX(level), 0) FROM calls \
             WHERE caller_key = $1 AND started_ms >= $2",
        )
        .bind(caller_key)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Every version of the conclusion about a caller, newest first.
    pub async fn conclusions(&self, caller_key: &str) -> Result<Vec<ConclusionRow>, StoreError> {
        Ok(sqlx::query(
            "SELECT caller_key, version, text, phrase, author, at_ms FROM conclusions \
             WHERE caller_key = $1 ORDER BY version DESC",
        )
        .bind(caller_key)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(conclusion_row)
        .collect::<Result<Vec<_>, _>>()?)
    }

    /// Records a new version of the conclusion (the previous ones stay); returns its version.
    pub async fn add_conclusion(
        &self,
        caller_key: &str,
        text: &str,
        phrase: &str,
        author: &str,
        at_ms: i64,
    ) -> Result<i64, StoreError> {
        // One statement, so concurrent edits cannot pick the same version silently: the second
        // one hits the primary key and tries again.
        for _ in 0..5 {
            let res = sqlx::query(
                "INSERT INTO conclusions (caller_key, version, text, phrase, author, at_ms) \
                 SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5 FROM conclusions \
                 WHERE caller_key = $1",
            )
            .bind(caller_key)
            .bind(text)
            .bind(phrase)
            .bind(author)
            .bind(at_ms)
            .execute(&self.pool)
            .await;
            match res {
                Ok(_) => break,
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let row = sqlx::query("SELECT MAX(version) FROM conclusions WHERE caller_key = $1")
            .bind(caller_key)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0))
    }

    /// Creates an account.
    pub async fn add_user(&self, u: &UserRow, now_ms: i64) -> Result<(), StoreError> {
        let res = sqlx::query(
            "INSERT INTO users (name, display_name, teams, admin, password_hash, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&u.name)
        .bind(&u.display_name)
        .bind(u.teams.join(","))
        .bind(i64::from(u.admin))
        .bind(&u.password_hash)
        .bind(now_ms)
        .execute(&self.pool)
        .await;
        match res {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Exists(format!("user {}", u.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An account by login name.
    pub async fn user(&self, name: &str) -> Result<Option<UserRow>, StoreError> {
        let row = sqlx::query(
            "SELECT name, display_name, teams, admin, password_hash FROM users WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_row).transpose()?)
    }

    /// Every account, by login name, with its sessions not expired at `now_ms`.
    pub async fn users(&self, now_ms: i64) -> Result<Vec<(UserRow, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.name, u.display_name, u.teams, u.admin, u.password_hash, \
             (SELECT COUNT(*) FROM sessions s WHERE s.user_name = u.name AND s.expires_ms > $1) \
             FROM users u ORDER BY u.name",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((user_row(r)?, r.try_get::<i64, _>(5)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Replaces an account's password hash and ends all its sessions, in one transaction;
    /// `false` when there is no such account.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
            .bind(password_hash)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Replaces an account's shown name, teams and role (its password and sessions stay: every
    /// page reads the account again); `false` when there is no such account.
    pub async fn update_user(&self, u: &UserRow) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE users SET display_name = $1, teams = $2, admin = $3 WHERE name = $4",
        )
        .bind(&u.display_name)
        .bind(u.teams.join(","))
        .bind(i64::from(u.admin))
        .bind(&u.name)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    /// Ends every session of an account; how many there were.
    pub async fn end_sessions(&self, name: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Removes an account and its sessions (its audit lines stay); `false` when there is no
    /// such account.
    pub async fn remove_user(&self, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM sessions WHERE user_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM users WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Stores a session under the hash of its token.
    pub async fn add_session(
        &self,
        token_hash: &str,
        s: &SessionRow,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_name, csrf, created_ms, expires_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(&s.user_name)
        .bind(&s.csrf)
        .bind(now_ms)
        .bind(s.expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A session that has not expired.
    pub async fn session(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT user_name, csrf, expires_ms FROM sessions \
             WHERE token_hash = $1 AND expires_ms > $2",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                user_name: r.try_get(0)?,
                csrf: r.try_get(1)?,
                expires_ms: r.try_get(2)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| e.into())
    }

    /// Ends a session (logout) and drops expired ones.
    pub async fn remove_session(&self, token_hash: &str, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1 OR expires_ms <= $2")
            .bind(token_hash)
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Appends an audit line.
    pub async fn audit(
        &self,
        user_name: &str,
        action: &str,
        target: &str,
        detail: &str,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit (at_ms, user_name, action, target, detail) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(at_ms)
        .bind(user_name)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Audit lines, newest first: at most `limit`, only those with an id below `before`, only
    /// those of `user` when given (the audit page pages back through them).
    pub async fn audit_lines(
        &self,
        limit: i64,
        before: Option<i64>,
        user: Option<&str>,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let sql = if user.is_some() {
            "SELECT id, at_ms, user_name, action, target, detail FROM audit \
             WHERE id < $2 AND user_name = $3 ORDER BY id DESC LIMIT $1"
        } else {
            "SELECT id, at_ms, user_name, action, target, detail FROM audit \
             WHERE id < $2 ORDER BY id DESC LIMIT $1"
        };
        let mut q = sqlx::query(sql)
            .bind(limit)
            .bind(before.unwrap_or(i64::MAX));
        if let Some(u) = user {
            q = q.bind(u);
        }
        Ok(q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get(0)?,
                    at_ms: r.try_get(1)?,
                    user_name: r.try_get(2)?,
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    detail: r.try_get(5)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    /// The newest ledger line a workstation published.
    pub async fn ledger_head(
        &self,
        site: &str,
        agent: &str,
    ) -> Result<Option<LedgerHeadRow>, StoreError> {
        let row = sqlx::query(
            "SELECT site, agent, host, seq, manifest_sha256, line_hash, at_ms FROM ledger_heads \
             WHERE key = $1",
        )
        .bind(workstation_key(site, agent))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(LedgerHeadRow {
                site: r.try_get(0)?,
                agent: r.try_get(1)?,
                host: r.try_get(2)?,
                seq: r.try_get(3)?,
                manifest_sha256: r.try_get(4)?,
                line_hash: r.try_get(5)?,
                at_ms: r.try_get(6)?,
            })
        })
        .transpose()
        .map_err(|e: sqlx::Error| e.into())
    }
}

/// `sql` with every key bound in order.
fn bind_keys<'q>(
    sql: &'q str,
    keys: &[String],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    keys.iter().fold(sqlx::query(sql), |q, k| q.bind(k.clone()))
}

/// An account from a row whose first columns are `name, display_name, teams, admin,
/// password_hash`.
fn user_row(r: &AnyRow) -> Result<UserRow, sqlx::Error> {
    let teams: String = r.try_get(2)?;
    Ok(UserRow {
        name: r.try_get(0)?,
        display_name: r.try_get(1)?,
        teams: teams
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
        admin: r.try_get::<i64, _>(3)? != 0,
        password_hash: r.try_get(4)?,
    })
}

/// [`Store::apply`] inside a transaction.
async fn apply_in(
    conn: &mut sqlx::AnyConnection,
    ev: &EventRecord,
    received_ms: i64,
) -> Result<Applied, sqlx::Error> {
    // A call is spoken for by the workstation that reported it first: another one's event for
    // the same call (same site, agent and call id in its body) changes nothing.
    if let Some(key) = ev.call_key()
        && !ev.ws_agent.is_empty()
    {
        let owner: Option<String> = sqlx::query_scalar("SELECT ws_agent FROM calls WHERE key = $1")
            .bind(&key)
            .fetch_optional(&mut *conn)
            .await?;
        if owner.is_some_and(|o| !o.is_empty() && o != ev.ws_agent) {
            return Ok(Applied::Refused);
        }
    }
    // With SQLite's write lock already held by `begin_write`.
    let inserted = sqlx::query(
        "INSERT INTO events (id, kind, site, agent, call_id, at_ms, received_ms, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ev.id)
    .bind(&ev.kind)
    .bind(&ev.site)
    .bind(&ev.agent)
    .bind(ev.call_id.clone())
    .bind(ev.at_ms)
    .bind(received_ms)
    .bind(&ev.body)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Applied::Duplicate);
    }
    if let Some(key) = ev.call_key() {
        let started_estimate = ev
            .elapsed_secs
            .map(|e| ev.at_ms.saturating_sub(e.saturating_mul(1000)))
            .unwrap_or(ev.at_ms);
        sqlx::query(
            "INSERT INTO calls (key, site, agent, agent_name, host, call_id, caller, \
             caller_hash, caller_key, started_ms, level, marks, last_ms, ws_agent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13) \
             ON CONFLICT (key) DO UPDATE SET \
             ws_agent = CASE WHEN excluded.ws_agent <> '' THEN excluded.ws_agent \
               ELSE calls.ws_agent END, \
             agent_name = CASE WHEN excluded.agent_name <> '' THEN excluded.agent_name \
               ELSE calls.agent_name END, \
             host = CASE WHEN excluded.host <> '' THEN excluded.host ELSE calls.host END, \
             caller = COALESCE(calls.caller, excluded.caller), \
             caller_hash = COALESCE(calls.caller_hash, excluded.caller_hash), \
             caller_key = COALESCE(calls.caller_key, excluded.caller_key), \
             started_ms = COALESCE(calls.started_ms, excluded.started_ms), \
             level = CASE WHEN excluded.level > calls.level THEN excluded.level \
               ELSE calls.level END, \
             last_ms = CASE WHEN excluded.last_ms > calls.last_ms THEN excluded.last_ms \
               ELSE calls.last_ms END",
        )
        .bind(&key)
        .bind(&ev.site)
        .bind(&ev.agent)
        .bind(&ev.agent_name)
        .bind(&ev.host)
        .bind(ev.call_id.clone().unwrap_or_default())
        .bind(ev.caller.clone())
        .bind(ev.caller_hash.clone())
        .bind(ev.caller_key())
        .bind(started_estimate)
        .bind(ev.level.unwrap_or(0))
        .bind(ev.at_ms)
        .bind(if ev.ws_agent.is_empty() {
            ev.agent.clone()
        } else {
            ev.ws_agent.clone()
        })
        .execute(&mut *conn)
        .await?;
        match ev.kind.as_str() {
            kind @ ("call.start" | "call.end") => {
                let sql = if kind == "call.start" {
                    "UPDATE calls SET started_ms = $1 WHERE key = $2"
                } else {
                    "UPDATE calls SET ended_ms = $1 WHERE key = $2"
                };
                sqlx::query(sql)
                    .bind(ev.at_ms)
                    .bind(&key)
                    .execute(&mut *conn)
                    .await?;
            }
            "mark" => {
                sqlx::query(
                    "INSERT INTO marks (event_id, call_key, at_ms, mark, quote, level, rules) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&ev.id)
                .bind(&key)
                .bind(ev.at_ms)
                .bind(ev.mark.clone().unwrap_or_default())
                .bind(ev.quote.clone().unwrap_or_default())
                .bind(ev.level.unwrap_or(0))
                .bind(ev.rules.join(", "))
                .execute(&mut *conn)
                .await?;
                sqlx::query("UPDATE calls SET marks = marks + 1 WHERE key = $1")
                    .bind(&key)
                    .execute(&mut *conn)
                    .await?;
            }
            "warning" => {
                sqlx::query(
                    "INSERT INTO warnings (event_id, call_key, at_ms, detail) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&ev.id)
                .bind(&key)
                .bind(ev.at_ms)
                .bind(ev.detail.clone().unwrap_or_default())
                .execute(&mut *conn)
                .await?;
            }
            "escalation" => {
                // One row per escalation: its later events only move the delivery state
                // on (a late `queued` never hides a final state).
                sqlx::query(
                    "INSERT INTO escalations (event_id, call_key, at_ms, reason, delivery) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO UPDATE SET \
                     delivery = CASE WHEN excluded.delivery = 'queued' \
                       THEN escalations.delivery ELSE excluded.delivery END",
                )
                .bind(ev.escalation_id.clone().unwrap_or_else(|| ev.id.clone()))
                .bind(&key)
                .bind(ev.at_ms)
                .bind(ev.detail.clone().unwrap_or_default())
                .bind(ev.delivery.clone().unwrap_or_default())
                .execute(&mut *conn)
                .await?;
            }
            _ => {}
        }
    }
    match ev.kind.as_str() {
        "heartbeat" => {
            let up = i64::from(ev.pbx_up.unwrap_or(true));
            // Never later than it arrived: a workstation whose clock runs ahead (or that says
            // 2099) would otherwise never be seen as silent again.
            let seen_ms = ev.at_ms.min(received_ms);
            sqlx::query(
                "INSERT INTO workstations (key, site, agent, agent_name, host, last_seen_ms, \
                 interval_secs, pbx_up, pbx_down_ms, open_calls, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (key) DO UPDATE SET \
                 agent_name = excluded.agent_name, host = excluded.host, \
                 interval_secs = excluded.interval_secs, \
                 open_calls = excluded.open_calls, version = excluded.version, \
                 pbx_down_ms = CASE WHEN excluded.pbx_up = 1 THEN NULL \
                   WHEN workstations.pbx_up = 1 THEN excluded.last_seen_ms \
                   ELSE workstations.pbx_down_ms END, \
                 pinged_ms = CASE WHEN excluded.pbx_up = 1 THEN NULL \
                   ELSE workstations.pinged_ms END, \
                 pbx_up = excluded.pbx_up, \
                 last_seen_ms = CASE WHEN excluded.last_seen_ms > workstations.last_seen_ms \
                   THEN excluded.last_seen_ms ELSE workstations.last_seen_ms END",
            )
            .bind(workstation_key(&ev.site, &ev.agent))
            .bind(&ev.site)
            .bind(&ev.agent)
            .bind(&ev.agent_name)
            .bind(&ev.host)
            .bind(seen_ms)
            .bind(ev.interval_secs.unwrap_or(30))
            .bind(up)
            .bind(if up == 1 { None } else { Some(seen_ms) })
            .bind(ev.open_calls.unwrap_or(0))
            .bind(ev.version.clone().unwrap_or_default())
            .execute(&mut *conn)
            .await?;
        }
        // Only the workstation's own ledger lines move its head: a line another workstation
        // published naming it is stored (the evidence check shows it red), never its head.
        "ledger"
            if ev.ws_agent.is_empty()
                || crate::floor::contract::subject_token(&ev.agent) == ev.ws_agent =>
        {
            sqlx::query(
                "INSERT INTO ledger_heads (key, site, agent, host, seq, manifest_sha256, \
                 line_hash, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (key) DO UPDATE SET \
                 host = excluded.host, seq = excluded.seq, \
                 manifest_sha256 = excluded.manifest_sha256, \
                 line_hash = excluded.line_hash, at_ms = excluded.at_ms \
                 WHERE excluded.seq > ledger_heads.seq",
            )
            .bind(workstation_key(&ev.site, &ev.agent))
            .bind(&ev.site)
            .bind(&ev.agent)
            .bind(&ev.host)
            .bind(ev.seq.unwrap_or(0))
            .bind(ev.manifest_sha256.clone().unwrap_or_default())
            .bind(ev.line_hash.clone().unwrap_or_default())
            .bind(ev.at_ms)
            .execute(&mut *conn)
            .await?;
        }
        _ => {}
    }
    Ok(Applied::New)
}

/// [`Store::apply_bus_ack`] inside a transaction.
async fn ack_in(conn: &mut sqlx::AnyConnection, a: &BusAck) -> Result<Applied, sqlx::Error> {
    let key = sqlx::query(
        "SELECT key FROM calls WHERE site = $1 AND call_id = $2 \
         AND (ws_agent = $3 OR agent = $3) ORDER BY key LIMIT 1",
    )
    .bind(&a.site)
    .bind(&a.call_id)
    .bind(&a.ws_agent)
    .fetch_optional(&mut *conn)
    .await?
    .map(|r| r.try_get::<String, _>(0))
    .transpose()?
    .unwrap_or_else(|| call_key(&a.site, &a.ws_agent, &a.call_id));
    let n = sqlx::query(
        "INSERT INTO acks (id, call_key, lead, user_name, at_ms) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&a.id)
    .bind(&key)
    .bind(&a.lead)
    .bind("")
    .bind(a.at_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(if n == 0 {
        Applied::Duplicate
    } else {
        Applied::New
    })
}
