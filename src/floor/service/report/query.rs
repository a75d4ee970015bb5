//! The report's SQL: every figure is an aggregate computed by the store, with statements both
//! SQLite and PostgreSQL run unchanged (`$N` placeholders, `CASE`, integer arithmetic, every
//! integer result cast to BIGINT so both engines hand back a 64-bit integer). Calls belong to a
//! period by their start time.

use futures_util::TryStreamExt;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Row};

use super::{
    ALL_TYPES, CareAgent, DURATION_BUCKETS, IncidentType, ONLINE_WORDS, RepeatCaller, Summary,
    TypeCount,
};
use crate::floor::service::report::Period;

/// Which calls a query covers: a start-time range and optionally a set of agents.
#[derive(Debug, Clone)]
pub struct Scope {
    from_ms: i64,
    to_ms: i64,
    agents: Option<Vec<String>>,
}

impl Scope {
    /// Calls of `period`, of `agents` when given.
    pub fn new(period: &Period, agents: Option<&[String]>) -> Scope {
        Scope {
            from_ms: period.from_ms,
            to_ms: period.to_ms,
            agents: agents.map(<[String]>::to_vec),
        }
    }

    /// The `WHERE` condition on `calls c`; its placeholders are `$1…$n`.
    fn condition(&self) -> String {
        self.condition_on("c.started_ms")
    }

    /// The condition for statements driven by another table (escalations) that reach each call
    /// by its key: the unary `+` keeps SQLite from walking the period's calls through their
    /// start-time index instead (both engines read `+x` as `x`).
    fn condition_by_key(&self) -> String {
        self.condition_on("+c.started_ms")
    }

    fn condition_on(&self, started: &str) -> String {
        let mut sql = format!("{started} >= $1 AND {started} < $2");
        if let Some(agents) = &self.agents {
            if agents.is_empty() {
                sql.push_str(" AND 1 = 0");
            } else {
                let marks: Vec<String> = (0..agents.len()).map(|i| format!("${}", i + 3)).collect();
                sql.push_str(&format!(" AND c.agent IN ({})", marks.join(", ")));
            }
        }
        sql
    }

    /// Binds the condition's values, in order.
    fn bind<'q>(
        &'q self,
        mut q: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        q = q.bind(self.from_ms).bind(self.to_ms);
        if let Some(agents) = &self.agents {
            for a in agents {
                q = q.bind(a.as_str());
            }
        }
        q
    }
}

fn int(expr: &str) -> String {
    format!("CAST({expr} AS BIGINT)")
}

fn count_if(cond: &str) -> String {
    int(&format!(
        "COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0)"
    ))
}

/// Nearest-rank percentile of sorted `v` (`p` in 0–1).
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Headline figures, escalation response times and the duration classes of ended calls.
///
/// The calls' figures come from one aggregate over the period's calls, which the `calls_report`
/// index covers (one sequential range of it, no table reads); the escalations are walked from
/// their own time index.
pub async fn summary(pool: &AnyPool, s: &Scope) -> Result<(Summary, [i64; 8]), sqlx::Error> {
    let mut columns = vec![
        int("COUNT(*)"),
        count_if("c.level >= 1"),
        count_if("c.level <= 0"),
        count_if("c.level = 1"),
        count_if("c.level = 2"),
        count_if("c.level = 3"),
        count_if("c.level >= 4"),
        count_if("c.ended_ms IS NOT NULL AND c.ended_ms - c.started_ms >= 900000"),
        count_if("c.ended_ms IS NOT NULL AND c.ended_ms - c.started_ms >= 1800000"),
        int("COALESCE(SUM(c.marks), 0)"),
    ];
    let first_bucket = columns.len();
    columns.extend(
        duration_conditions()
            .iter()
            .map(|cond| count_if(&format!("c.ended_ms IS NOT NULL AND {cond}"))),
    );
    let sql = format!(
        "SELECT {} FROM calls c WHERE {}",
        columns.join(", "),
        s.condition()
    );
    let r = s.bind(sqlx::query(&sql)).fetch_one(pool).await?;
    let mut out = Summary {
        calls: r.try_get(0)?,
        incidents: r.try_get(1)?,
        by_level: [
            r.try_get(2)?,
            r.try_get(3)?,
            r.try_get(4)?,
            r.try_get(5)?,
            r.try_get(6)?,
        ],
        over_15: r.try_get(7)?,
        over_30: r.try_get(8)?,
        marks: r.try_get(9)?,
        ..Summary::default()
    };
    let mut durations = [0i64; 8];
    for (i, slot) in durations.iter_mut().enumerate() {
        *slot = r.try_get(first_bucket + i)?;
    }
    // Each escalation's response is the first ack of its call at or after the ping; the rows
    // stream through and only the response times are kept (one number per escalation). A ping
    // comes during its call, so escalations from a day before the period's start on are enough
    // to find every one of the period's calls (the day covers clocks that disagree a little);
    // the call's start time decides.
    let sql = format!(
        "SELECT (SELECT MIN(a.at_ms) FROM acks a WHERE a.call_key = e.call_key \
         AND a.at_ms >= e.at_ms) - e.at_ms FROM escalations e JOIN calls c ON c.key = e.call_key \
         WHERE e.at_ms >= $1 - 86400000 AND {}",
        s.condition_by_key()
    );
    let mut rows = s.bind(sqlx::query(&sql)).fetch(pool);
    let mut waits: Vec<i64> = Vec::new();
    while let Some(row) = rows.try_next().await? {
        out.escalations += 1;
        match row.try_get::<Option<i64>, _>(0)? {
            Some(ms) => waits.push(ms),
            None => out.unacknowledged += 1,
        }
    }
    waits.sort_unstable();
    out.ack_p50_secs = percentile(&waits, 0.5).map(|ms| ms as f64 / 1000.0);
    out.ack_p90_secs = percentile(&waits, 0.9).map(|ms| ms as f64 / 1000.0);
    Ok((out, durations))
}

/// The `CASE` that maps a mark (`m`) to its [`IncidentType`] code, NULL for `symptom`.
pub fn type_case() -> String {
    let online: Vec<String> = ONLINE_WORDS
        .iter()
        .map(|w| format!("m.quote LIKE '%{w}%'"))
        .collect();
    format!(
        "CASE WHEN m.mark = 'threat' AND ({}) THEN '{}' \
         WHEN m.mark IN ('abuse', 'threat', 'violence') THEN '{}' \
         WHEN m.mark IN ('demand', 'manager') THEN '{}' \
         WHEN m.mark = 'repeat' THEN '{}' \
         WHEN m.mark = 'sexual' THEN '{}' END",
        online.join(" OR "),
        IncidentType::OnlineShaming.code(),
        IncidentType::Violence.code(),
        IncidentType::Demand.code(),
        IncidentType::LongRepeated.code(),
        IncidentType::Sexual.code(),
    )
}

/// Incidents by the guidance's five types (calls with such a mark, and the marks).
pub async fn by_type(pool: &AnyPool, s: &Scope) -> Result<Vec<TypeCount>, sqlx::Error> {
    let sql = format!(
        "SELECT t, {}, {} FROM (SELECT m.call_key AS k, {} AS t FROM marks m \
         JOIN calls c ON c.key = m.call_key WHERE {} AND c.marks > 0) x WHERE t IS NOT NULL GROUP BY t",
        int("COUNT(DISTINCT k)"),
        int("COUNT(*)"),
        type_case(),
        s.condition()
    );
    let rows = s.bind(sqlx::query(&sql)).fetch_all(pool).await?;
    let mut out: Vec<TypeCount> = ALL_TYPES
        .iter()
        .map(|&kind| TypeCount {
            kind,
            calls: 0,
            marks: 0,
        })
        .collect();
    for r in rows {
        let code: String = r.try_get(0)?;
        if let Some(t) = out.iter_mut().find(|t| t.kind.code() == code) {
            t.calls = r.try_get(1)?;
            t.marks = r.try_get(2)?;
        }
    }
    Ok(out)
}

/// Incidents (level ≥ 1) by local weekday (0 = Monday) × hour of their start.
pub async fn heat(
    pool: &AnyPool,
    s: &Scope,
    offset_secs: i32,
) -> Result<[[i64; 24]; 7], sqlx::Error> {
    // 1970-01-01 was a Thursday (3 with Monday = 0).
    let local = format!("(c.started_ms / 1000 + {offset_secs})");
    let sql = format!(
        "SELECT {}, {}, {} FROM calls c WHERE {} AND c.level >= 1 GROUP BY 1, 2",
        int(&format!("(({local} / 86400) + 3) % 7")),
        int(&format!("({local} / 3600) % 24")),
        int("COUNT(*)"),
        s.condition()
    );
    let mut out = [[0i64; 24]; 7];
    for r in s.bind(sqlx::query(&sql)).fetch_all(pool).await? {
        let (d, h): (i64, i64) = (r.try_get(0)?, r.try_get(1)?);
        if let (Ok(d), Ok(h)) = (usize::try_from(d), usize::try_from(h))
            && d < 7
            && h < 24
        {
            out[d][h] = r.try_get(2)?;
        }
    }
    Ok(out)
}

/// For each [`DURATION_BUCKETS`] class, the condition on an ended call's length.
pub fn duration_conditions() -> Vec<String> {
    let len = "c.ended_ms - c.started_ms";
    DURATION_BUCKETS
        .iter()
        .map(|(lower, upper, _)| match (lower, upper) {
            // The first class also takes a call whose end was stamped before its start.
            (0, Some(u)) => format!("{len} < {}", u * 60_000),
            (l, Some(u)) => format!("{len} >= {} AND {len} < {}", l * 60_000, u * 60_000),
            (l, None) => format!("{len} >= {}", l * 60_000),
        })
        .collect()
}

/// Callers with two or more calls, most calls first, with the organisation's conclusion.
pub async fn repeat_callers(
    pool: &AnyPool,
    s: &Scope,
    limit: i64,
) -> Result<Vec<RepeatCaller>, sqlx::Error> {
    let sql = format!(
        "SELECT c.caller_key, {}, {}, {}, {} FROM calls c \
         WHERE {} AND c.caller_key IS NOT NULL GROUP BY c.caller_key HAVING COUNT(*) >= 2 \
         ORDER BY 2 DESC, 4 DESC, 1 LIMIT {limit}",
        int("COUNT(*)"),
        count_if("c.level >= 1"),
        int("MAX(c.level)"),
        int("COALESCE(SUM(CASE WHEN c.ended_ms IS NOT NULL \
             THEN (c.ended_ms - c.started_ms) / 1000 ELSE 0 END), 0)"),
        s.condition()
    );
    let rows = s.bind(sqlx::query(&sql)).fetch_all(pool).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let caller_key: String = r.try_get(0)?;
        let conclusion = sqlx::query(
            "SELECT text, phrase FROM conclusions WHERE caller_key = $1 \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(&caller_key)
        .fetch_optional(pool)
        .await?
        .map(|c| -> Result<String, sqlx::Error> {
            let text: String = c.try_get(0)?;
            let phrase: String = c.try_get(1)?;
            Ok(if phrase.is_empty() {
                text
            } else {
                format!("{text}（伝える言葉:「{phrase}」）")
            })
        })
        .transpose()?;
        out.push(RepeatCaller {
            caller_key,
            calls: r.try_get(1)?,
            incidents: r.try_get(2)?,
            max_level: r.try_get(3)?,
            talk_secs: r.try_get(4)?,
            conclusion,
        });
    }
    Ok(out)
}

/// Agents with calls that carry a symptom mark or reached level 4.
pub async fn care(pool: &AnyPool, s: &Scope) -> Result<Vec<CareAgent>, sqlx::Error> {
    let sql = format!(
        "SELECT c.agent, MAX(c.agent_name), {}, {} FROM calls c \
         WHERE {} AND (c.level >= 4 OR c.marks > 0) GROUP BY c.agent ORDER BY 4 DESC, 3 DESC, 1",
        count_if("EXISTS (SELECT 1 FROM marks m WHERE m.call_key = c.key AND m.mark = 'symptom')"),
        count_if("c.level >= 4"),
        s.condition()
    );
    let mut out = Vec::new();
    for r in s.bind(sqlx::query(&sql)).fetch_all(pool).await? {
        let a = CareAgent {
            agent: r.try_get(0)?,
            agent_name: r.try_get(1)?,
            symptom_calls: r.try_get(2)?,
            level4_calls: r.try_get(3)?,
        };
        if a.symptom_calls > 0 || a.level4_calls > 0 {
            out.push(a);
        }
    }
    Ok(out)
}
