//! A seeded generator of a site's calls, marks, escalations, acks and conclusions, written
//! straight into a floor store in large batches. The report's tests, its benchmark and the sample
//! report under `docs/` use it; the same seed always gives the same store.

use sqlx::{Any, AnyPool, Transaction};

use super::Period;

/// What to generate.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    /// PRNG seed.
    pub seed: u64,
    /// Site id.
    pub site: String,
    /// Calls start in `[from_ms, to_ms)`.
    pub from_ms: i64,
    /// End of the range (excluded).
    pub to_ms: i64,
    /// How many calls.
    pub calls: u64,
    /// How many agents take them.
    pub agents: u32,
    /// Share of calls that become incidents (level ≥ 1).
    pub incident_rate: f64,
    /// Numbers of the frequent callers (they ring again and again).
    pub repeat_callers: u32,
}

impl SampleSpec {
    /// `calls` calls of `agents` agents spread over `period`, seed `seed`.
    pub fn over(period: &Period, calls: u64, agents: u32, seed: u64) -> SampleSpec {
        SampleSpec {
            seed,
            site: "tokyo-1".into(),
            from_ms: period.from_ms,
            to_ms: period.to_ms,
            calls,
            agents,
            incident_rate: 0.04,
            repeat_callers: 40,
        }
    }
}

/// splitmix64: small, fast and good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const KINDS: [&str; 8] = [
    "abuse", "threat", "demand", "manager", "repeat", "sexual", "violence", "symptom",
];

fn quote(kind: &str, r: &mut Rng) -> &'static str {
    match kind {
        "abuse" => "お前は無能だ",
        "threat" => {
            if r.below(3) == 0 {
                "ネットに書いて晒してやる"
            } else {
                "家に行くぞ"
            }
        }
        "demand" => "土下座しろ",
        "manager" => "責任者を出せ",
        "repeat" => "さっきと同じことを何度でも言う",
        "sexual" => "（性的な発言）",
        "violence" => "（机を叩く音）",
        _ => "",
    }
}

/// What was generated (the tests count again from the store, independently).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleStats {
    /// Calls written.
    pub calls: u64,
    /// Marks written.
    pub marks: u64,
    /// Escalations written.
    pub escalations: u64,
    /// Acks written.
    pub acks: u64,
}

struct Batch {
    calls: Vec<CallGen>,
    marks: Vec<(String, String, i64, &'static str, &'static str, i64)>,
    escalations: Vec<(String, String, i64)>,
    acks: Vec<(String, String, i64)>,
}

struct CallGen {
    key: String,
    agent: String,
    call_id: String,
    caller: String,
    started: i64,
    ended: Option<i64>,
    level: i64,
    marks: i64,
}

const CHUNK: usize = 400;

/// `($1,…,$cols<tail>),(…)` for `rows` rows of `cols` bound values each; `tail` adds literal
/// columns to every row.
fn placeholders(rows: usize, cols: usize, tail: &str) -> String {
    let mut sql = String::new();
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push('(');
        for j in 1..=cols {
            if j > 1 {
                sql.push(',');
            }
            sql.push_str(&format!("${}", i * cols + j));
        }
        sql.push_str(tail);
        sql.push(')');
    }
    sql
}

async fn flush(
    tx: &mut Transaction<'_, Any>,
    site: &str,
    b: &mut Batch,
) -> Result<(), sqlx::Error> {
    for chunk in b.calls.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO calls (key, site, agent, agent_name, host, call_id, caller, caller_key, \
             started_ms, ended_ms, level, marks, last_ms) VALUES {}",
            placeholders(chunk.len(), 13, "")
        );
        let mut q = sqlx::query(&sql);
        for c in chunk {
            q = q
                .bind(c.key.clone())
                .bind(site.to_string())
                .bind(c.agent.clone())
                .bind(format!("担当者{}", &c.agent[1..]))
                .bind(format!("ws-{}", c.agent))
                .bind(c.call_id.clone())
                .bind(c.caller.clone())
                .bind(c.caller.clone())
                .bind(c.started)
                .bind(c.ended)
                .bind(c.level)
                .bind(c.marks)
                .bind(c.ended.unwrap_or(c.started));
        }
        q.execute(&mut **tx).await?;
    }
    for chunk in b.marks.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO marks (event_id, call_key, at_ms, mark, quote, level, rules) VALUES {}",
            placeholders(chunk.len(), 6, ",''")
        );
        let mut q = sqlx::query(&sql);
        for m in chunk {
            q = q
                .bind(m.0.clone())
                .bind(m.1.clone())
                .bind(m.2)
                .bind(m.3)
                .bind(m.4)
                .bind(m.5);
        }
        q.execute(&mut **tx).await?;
    }
    for chunk in b.escalations.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO escalations (event_id, call_key, at_ms, reason, delivery) VALUES {}",
            placeholders(chunk.len(), 3, ",'mark','delivered'")
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q.bind(e.0.clone()).bind(e.1.clone()).bind(e.2);
        }
        q.execute(&mut **tx).await?;
    }
    for chunk in b.acks.chunks(CHUNK) {
        let sql = format!(
            "INSERT INTO acks (id, call_key, at_ms, lead, user_name) VALUES {}",
            placeholders(chunk.len(), 3, ",'主任 佐藤','sato'")
        );
        let mut q = sqlx::query(&sql);
        for a in chunk {
            q = q.bind(a.0.clone()).bind(a.1.clone()).bind(a.2);
        }
        q.execute(&mut **tx).await?;
    }
    b.calls.clear();
    b.marks.clear();
    b.escalations.clear();
    b.acks.clear();
    Ok(())
}

/// The frequent callers' numbers.
pub fn repeat_number(i: u64) -> String {
    format!("+8150{:08}", 1000 + i)
}

/// Fills the store behind `pool` with `spec`'s calls (and conclusions for a few frequent
/// callers). Call ids carry `tag`, so several fills (months) can share one store.
pub async fn fill(
    pool: &AnyPool,
    spec: &SampleSpec,
    tag: &str,
) -> Result<SampleStats, sqlx::Error> {
    let mut r = Rng::new(spec.seed);
    let mut stats = SampleStats::default();
    let mut tx = pool.begin().await?;
    let mut b = Batch {
        calls: Vec::new(),
        marks: Vec::new(),
        escalations: Vec::new(),
        acks: Vec::new(),
    };
    let span = (spec.to_ms - spec.from_ms).max(1) as u64;
    for n in 0..spec.calls {
        // Daytime-heavy start times: half the calls fall in 09:00–18:00 of their day (UTC+9).
        let mut started = spec.from_ms + r.below(span) as i64;
        if r.below(2) == 0 {
            let day = 86_400_000i64;
            let day_start = started - (started + 9 * 3_600_000).rem_euclid(day);
            let t = day_start + 9 * 3_600_000 + r.below(9 * 3_600_000) as i64;
            if t >= spec.from_ms && t < spec.to_ms {
                started = t;
            }
        }
        let dur_secs: i64 = match r.below(100) {
            0..=59 => 20 + r.below(280) as i64,
            60..=84 => 300 + r.below(600) as i64,
            85..=94 => 900 + r.below(900) as i64,
            _ => 1800 + r.below(3600) as i64,
        };
        let open = r.below(1000) == 0;
        let agent = format!("a{:04}", r.below(u64::from(spec.agents.max(1))));
        let caller = if r.below(100) < 3 {
            repeat_number(r.below(u64::from(spec.repeat_callers.max(1))))
        } else {
            format!("+813{:08}", r.below(100_000_000))
        };
        let call_id = format!("{tag}-{n}");
        let key = format!("{}/{}/{}", spec.site, agent, call_id);
        let mut level = 0i64;
        let mut nmarks = 0i64;
        if r.unit() < spec.incident_rate {
            level = match r.below(100) {
                0..=49 => 1,
                50..=79 => 2,
                80..=94 => 3,
                _ => 4,
            };
            nmarks = 1 + r.below(3) as i64;
            for m in 0..nmarks {
                let kind = KINDS[r.below(if level >= 3 { 8 } else { 7 }) as usize];
                let at = started + (m + 1) * 30_000;
                b.marks.push((
                    format!("m-{tag}-{n}-{m}"),
                    key.clone(),
                    at,
                    kind,
                    quote(kind, &mut r),
                    level,
                ));
                stats.marks += 1;
            }
            if level >= 2 {
                let at = started + 60_000;
                b.escalations
                    .push((format!("e-{tag}-{n}"), key.clone(), at));
                stats.escalations += 1;
                if r.below(10) < 9 {
                    let wait = 5_000 + r.below(295_000) as i64;
                    b.acks
                        .push((format!("k-{tag}-{n}"), key.clone(), at + wait));
                    stats.acks += 1;
                }
            }
        }
        b.calls.push(CallGen {
            key,
            agent,
            call_id,
            caller,
            started,
            ended: (!open).then_some(started + dur_secs * 1000),
            level,
            marks: nmarks,
        });
        stats.calls += 1;
        if b.calls.len() >= 20_000 {
            flush(&mut tx, &spec.site, &mut b).await?;
        }
    }
    flush(&mut tx, &spec.site, &mut b).await?;
    // The organisation's conclusion for every other frequent caller (latest version counts).
    for i in (0..u64::from(spec.repeat_callers)).step_by(2) {
        for version in 1..=2i64 {
            sqlx::query(
                "INSERT INTO conclusions (caller_key, version, text, phrase, author, at_ms) \
                 VALUES ($1, $2, $3, $4, '主任 佐藤', $5) ON CONFLICT DO NOTHING",
            )
            .bind(repeat_number(i))
            .bind(version)
            .bind(format!("返金には応じない（第{version}版）"))
            .bind("その件は以前ご回答したとおりです")
            .bind(spec.from_ms)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_number_every_row_and_keep_the_literal_columns() {
        assert_eq!(placeholders(2, 3, ",'x'"), "($1,$2,$3,'x'),($4,$5,$6,'x')");
        assert_eq!(placeholders(1, 2, ""), "($1,$2)");
    }
}
