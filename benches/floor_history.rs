//! The history lookup a workstation asks for at every call start, against a floor store holding
//! 1,000,000 calls of a 500-agent site over the last year (200 frequent callers with about 150
//! calls each, conclusions for half of them), on SQLite and on PostgreSQL (a temp cluster).
//! Measures `floor::service::bus::history` — the exact reply the floor sends: the caller's last
//! calls and marks, 30- and 365-day counts, the highest level and the conclusion — for frequent
//! callers and for one-time callers, p50 and p99. The peer, measured in the same run on the same
//! store, is one primary-key lookup of a call (`Store::call`): the cheapest query the store
//! answers. Target: history p99 ≤ 20 ms.
//!
//! `cargo bench --bench floor_history [-- --calls N] [-- --lookups N] [-- --only sqlite|postgres]`

#[path = "../tests/common/postgres.rs"]
mod postgres;

use std::time::{Duration, Instant};

use callguard::floor::contract::{CallerRef, HistoryRequest, SCHEMA};
use callguard::floor::service::bus;
use callguard::floor::service::report::Period;
use callguard::floor::service::report::sample::{SampleSpec, fill, repeat_number};
use callguard::floor::service::store::Store;

const JST: i32 = 9 * 3600;
const REPEAT_CALLERS: u32 = 200;

/// A small deterministic PRNG (xorshift), so both stores get the same lookups.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn request(caller: String) -> HistoryRequest {
    HistoryRequest {
        schema: SCHEMA.into(),
        site: "tokyo-1".into(),
        agent: "a0001".into(),
        host: "ws-a0001".into(),
        call_id: Some("bench-new-call".into()),
        caller: CallerRef {
            caller: Some(caller),
            caller_hash: None,
        },
    }
}

async fn bench(name: &str, db: &str, calls: u64, lookups: usize) {
    let store = Store::open(db).await.expect("open");
    let today = chrono::Utc::now().date_naive();
    let year = Period::range(
        &(today - chrono::Duration::days(364)).to_string(),
        &today.to_string(),
        JST,
    )
    .expect("period");
    let t0 = Instant::now();
    let spec = SampleSpec {
        repeat_callers: REPEAT_CALLERS,
        ..SampleSpec::over(&year, calls, 500, 7)
    };
    fill(store.pool(), &spec, "year").await.expect("fill");
    let fill_took = t0.elapsed();
    if name == "postgres" {
        // A running floor's store has planner statistics (autovacuum analyzes a table after
        // enough inserts); a store filled in one go and measured at once would have none, and
        // PostgreSQL then guesses thousands of calls per caller and scans every mark.
        sqlx::query("ANALYZE")
            .execute(store.pool())
            .await
            .expect("analyze");
    }
    print_plans(&store, name).await;
    // Keys of stored calls for the peer.
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM calls LIMIT 5000")
        .fetch_all(store.pool())
        .await
        .expect("keys");

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut frequent, mut once, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    let mut frequent_calls = 0usize;
    // A warm-up pass, as a running floor would have.
    for i in 0..lookups / 10 {
        let _ = bus::history(&store, &request(repeat_number(i as u64 % 200))).await;
    }
    for i in 0..lookups {
        let repeat = i % 2 == 0;
        let caller = if repeat {
            repeat_number(rng.below(u64::from(REPEAT_CALLERS)))
        } else {
            format!("+813{:08}", rng.below(100_000_000))
        };
        let req = request(caller);
        let t = Instant::now();
        let reply = bus::history(&store, &req).await.expect("history");
        let took = t.elapsed();
        if repeat {
            frequent_calls = frequent_calls.max(reply.calls_365d as usize);
            frequent.push(took);
        } else {
            once.push(took);
        }
        let key = &keys[rng.below(keys.len() as u64) as usize];
        let t = Instant::now();
        store.call(key).await.expect("call").expect("a stored call");
        peer.push(t.elapsed());
    }
    store.close().await;
    let mut all: Vec<Duration> = frequent.iter().chain(once.iter()).copied().collect();
    for v in [&mut frequent, &mut once, &mut peer, &mut all] {
        v.sort();
    }
    println!(
        "{name}: {calls} calls stored (filled in {:.1} s), {lookups} lookups\n  \
         history, frequent callers (up to {frequent_calls} calls in 365 days): p50 {:.2} ms, p99 {:.2} ms\n  \
         history, one-time callers: p50 {:.2} ms, p99 {:.2} ms\n  \
         history, all: p50 {:.2} ms, p99 {:.2} ms (target p99 <= 20 ms)\n  \
         peer, one call by primary key: p50 {:.3} ms, p99 {:.3} ms -> history/peer p99 ratio {:.1}",
        fill_took.as_secs_f64(),
        pct(&frequent, 0.5),
        pct(&frequent, 0.99),
        pct(&once, 0.5),
        pct(&once, 0.99),
        pct(&all, 0.5),
        pct(&all, 0.99),
        pct(&peer, 0.5),
        pct(&peer, 0.99),
        pct(&all, 0.99) / pct(&peer, 0.99),
    );
}

/// The engine's plan for the history reply's three queries over a frequent caller: each must
/// find the caller's calls through the `(caller_key, started_ms)` index, not scan the table.
/// (The SQL mirrors `Store::caller_history` and `Store::caller_counts`.)
async fn print_plans(store: &Store, name: &str) {
    let caller = repeat_number(0);
    let since = chrono::Utc::now().timestamp_millis() - 365 * 86_400_000;
    let queries = [
        format!(
            "SELECT c.key FROM calls c WHERE c.caller_key = '{caller}' \
             ORDER BY c.started_ms DESC LIMIT 50"
        ),
        format!(
            "SELECT m.call_key, m.at_ms FROM marks m JOIN calls c ON c.key = m.call_key \
             WHERE c.caller_key = '{caller}' ORDER BY m.at_ms DESC LIMIT 50"
        ),
        format!(
            "SELECT COUNT(*), COALESCE(MAX(level), 0) FROM calls \
             WHERE caller_key = '{caller}' AND started_ms >= {since}"
        ),
    ];
    let explain = if name == "sqlite" {
        "EXPLAIN QUERY PLAN"
    } else {
        "EXPLAIN"
    };
    println!("{name}: query plans of the history reply");
    for q in &queries {
        let rows = sqlx::query(&format!("{explain} {q}"))
            .fetch_all(store.pool())
            .await
            .expect("explain");
        let col = if name == "sqlite" { 3 } else { 0 };
        for r in rows {
            let line: String = sqlx::Row::try_get(&r, col).unwrap_or_default();
            println!("    {line}");
        }
        println!("    --");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let calls: u64 = arg("--calls")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let lookups: usize = arg("--lookups")
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let only = arg("--only");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    if only.as_deref().is_none_or(|o| o == "sqlite") {
        let db = format!("sqlite://{}", dir.path().join("floor.db").display());
        rt.block_on(bench("sqlite", &db, calls, lookups));
    }
    if only.as_deref().is_none_or(|o| o == "postgres") {
        let pg = postgres::PgCluster::start();
        let db = rt.block_on(pg.database("bench_history"));
        rt.block_on(bench("postgres", &db, calls, lookups));
    }
}
