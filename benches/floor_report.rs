//! The monthly report of a 500-agent site: about 500,000 calls and 20,000 incidents in the month
//! (and as many in the month before, for the change), on SQLite and on PostgreSQL (a temp
//! cluster). Measures the real binary `callguard floor report --month … --care` end to end (open
//! the store, aggregate, write HTML, PDF and CSVs): wall time and peak RSS (VmHWM). The peer,
//! measured in the same run on the same store, is one plain pass over the month's call rows
//! through sqlx (`SELECT … FROM calls` for the month, rows streamed and dropped): the least any
//! report that reads the calls must pay. Target: report ≤ 10 s.
//!
//! `cargo bench --bench floor_report [-- --calls N] [-- --only sqlite|postgres]`
//! (`scripts/bench-report.sh` runs it and prints the README figures).

#[path = "../tests/common/postgres.rs"]
mod postgres;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use callguard::floor::service::report::Period;
use callguard::floor::service::report::sample::{SampleSpec, fill};
use callguard::floor::service::store::Store;
use futures_util::TryStreamExt;

const JST: i32 = 9 * 3600;

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs the real binary once: (wall time, peak RSS KiB).
fn run_report(config: &Path, out: &Path) -> (Duration, u64) {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .arg("--config")
        .arg(config)
        .args(["floor", "report", "--month", "2026-11", "--care", "--out"])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start callguard");
    let mut peak = 0;
    loop {
        if let Some(k) = peak_rss_kib(child.id()) {
            peak = peak.max(k);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "floor report failed");
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (t0.elapsed(), peak)
}

async fn peer(db: &str, p: &Period) -> Duration {
    let store = Store::open(db).await.expect("open");
    let t0 = Instant::now();
    let mut rows = sqlx::query(
        "SELECT key, agent, caller_key, started_ms, ended_ms, level, marks FROM calls \
         WHERE started_ms >= $1 AND started_ms < $2",
    )
    .bind(p.from_ms)
    .bind(p.to_ms)
    .fetch(store.pool());
    let mut n = 0u64;
    while rows.try_next().await.expect("row").is_some() {
        n += 1;
    }
    let took = t0.elapsed();
    drop(rows);
    store.close().await;
    assert!(n > 0);
    took
}

async fn bench(name: &str, db: &str, calls: u64, dir: &Path) {
    let store = Store::open(db).await.expect("open");
    let t0 = Instant::now();
    for (i, m) in ["2026-10", "2026-11"].iter().enumerate() {
        let p = Period::month(m, JST).expect("month");
        let spec = SampleSpec {
            repeat_callers: 200,
            ..SampleSpec::over(&p, calls, 500, 42 + i as u64)
        };
        fill(store.pool(), &spec, m).await.expect("fill");
    }
    let fill_took = t0.elapsed();
    let nov = Period::month("2026-11", JST).expect("month");
    let incidents: i64 = sqlx::Row::get(
        &sqlx::query(
            "SELECT COUNT(*) FROM calls WHERE level > 0 AND started_ms >= $1 AND started_ms < $2",
        )
        .bind(nov.from_ms)
        .bind(nov.to_ms)
        .fetch_one(store.pool())
        .await
        .expect("count"),
        0,
    );
    store.close().await;
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "[state]\ndir = \"{}\"\n[floor]\nsite = \"tokyo-1\"\ndb = \"{db}\"\n\
             [floor.report]\nutc_offset = \"+09:00\"\n",
            dir.join("state").display()
        ),
    )
    .expect("config");
    // One warm-up run, then the median of three.
    let out = dir.join(format!("{name}-out"));
    run_report(&config, &out);
    let mut runs: Vec<(Duration, u64)> = (0..3).map(|_| run_report(&config, &out)).collect();
    runs.sort();
    let (took, _) = runs[1];
    let rss = runs.iter().map(|r| r.1).max().unwrap_or(0);
    let scan = peer(db, &nov).await;
    println!(
        "{name}: {calls} calls/month ({incidents} incidents), 2 months stored (filled in {:.1} s)\n  \
         floor report --month: {:.2} s (median of 3; target <= 10 s), peak RSS {:.1} MiB\n  \
         peer, one pass over the month's call rows: {:.2} s -> report/peer ratio {:.2}",
        fill_took.as_secs_f64(),
        took.as_secs_f64(),
        rss as f64 / 1024.0,
        scan.as_secs_f64(),
        took.as_secs_f64() / scan.as_secs_f64()
    );
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
        .unwrap_or(500_000);
    let only = arg("--only");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    if only.as_deref().is_none_or(|o| o == "sqlite") {
        let db = format!("sqlite://{}", dir.path().join("floor.db").display());
        rt.block_on(bench("sqlite", &db, calls, dir.path()));
    }
    if only.as_deref().is_none_or(|o| o == "postgres") {
        let pg = postgres::PgCluster::start();
        let db = rt.block_on(pg.database("bench"));
        rt.block_on(bench("postgres", &db, calls, dir.path()));
    }
}
