//! Floor reports on a store filled by the seeded generator (50,000 calls over three months), on
//! SQLite in a temp dir and on PostgreSQL in a temp cluster: every figure of the report equals a
//! count made here with SQL (or from raw rows) independently of the report's own queries; the
//! real binary writes HTML, PDF and CSV; the PDF's text (`pdftotext`) carries the Japanese
//! headings and the figures; page 1 rendered by `pdftoppm` has ink where the charts stand; the
//! CSVs parse and agree; a lead's report omits the care list; the incident record PDF; and the
//! monthly post reaches a real webhook receiver on the 1st (a jumping clock, no sleeping).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use callguard::floor::service::report::html::heading;
use callguard::floor::service::report::pdf::{PAGE_H, PAGE1_CHARTS_MM};
use callguard::floor::service::report::sample::{SampleSpec, fill};
use callguard::floor::service::report::{
    DURATION_BUCKETS, IncidentType, ONLINE_WORDS, Period, Report, ReportOptions, build,
};
use callguard::floor::service::store::Store;
use common::postgres::PgCluster;
use sqlx::{AnyPool, Row};

const JST: i32 = 9 * 3600;
const TOTAL_CALLS: u64 = 50_000;

/// Three months (September–November 2026), 50,000 calls in all, each month its own seed.
async fn seed(store: &Store) {
    let months = ["2026-09", "2026-10", "2026-11"];
    let per = TOTAL_CALLS / 3;
    for (i, m) in months.iter().enumerate() {
        let p = Period::month(m, JST).unwrap();
        let calls = if i == 2 { TOTAL_CALLS - 2 * per } else { per };
        let mut spec = SampleSpec::over(&p, calls, 60, 1000 + i as u64);
        spec.incident_rate = 0.05;
        fill(store.pool(), &spec, m).await.unwrap();
    }
}

async fn one(pool: &AnyPool, sql: &str, from: i64, to: i64) -> i64 {
    sqlx::query(sql)
        .bind(from)
        .bind(to)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .try_get::<i64, _>(0)
        .unwrap()
}

/// The headline figures counted again, one plain statement each.
async fn check_summary(pool: &AnyPool, p: &Period, s: &callguard::floor::service::report::Summary) {
    let w = "FROM calls WHERE started_ms >= $1 AND started_ms < $2";
    let (f, t) = (p.from_ms, p.to_ms);
    assert_eq!(
        s.calls,
        one(pool, &format!("SELECT COUNT(*) {w}"), f, t).await
    );
    assert!(s.calls > 10_000, "the month has its calls: {}", s.calls);
    assert_eq!(
        s.incidents,
        one(pool, &format!("SELECT COUNT(*) {w} AND level > 0"), f, t).await
    );
    assert!(s.incidents > 500);
    for level in 0..5i64 {
        let n = one(
            pool,
            &format!("SELECT COUNT(*) {w} AND level = {level}"),
            f,
            t,
        )
        .await;
        assert_eq!(s.by_level[level as usize], n, "level {level}");
    }
    assert!(s.by_level[4] > 0);
    let long = |m: i64| {
        format!("SELECT COUNT(*) {w} AND ended_ms IS NOT NULL AND ended_ms >= started_ms + {m}")
    };
    assert_eq!(s.over_15, one(pool, &long(15 * 60_000), f, t).await);
    assert_eq!(s.over_30, one(pool, &long(30 * 60_000), f, t).await);
    assert!(s.over_30 > 0 && s.over_15 > s.over_30);
    assert_eq!(
        s.marks,
        one(
            pool,
            "SELECT COUNT(*) FROM marks WHERE call_key IN \
             (SELECT key FROM calls WHERE started_ms >= $1 AND started_ms < $2)",
            f,
            t
        )
        .await
    );
    // Escalations and their acks from raw rows: the first ack at or after each ping.
    let esc = sqlx::query(
        "SELECT e.call_key, e.at_ms FROM escalations e, calls c WHERE c.key = e.call_key \
         AND c.started_ms >= $1 AND c.started_ms < $2",
    )
    .bind(f)
    .bind(t)
    .fetch_all(pool)
    .await
    .unwrap();
    let acks = sqlx::query("SELECT call_key, at_ms FROM acks")
        .fetch_all(pool)
        .await
        .unwrap();
    let mut by_call: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for a in acks {
        by_call
            .entry(a.get::<String, _>(0))
            .or_default()
            .push(a.get::<i64, _>(1));
    }
    let mut waits = Vec::new();
    let mut never = 0;
    for e in &esc {
        let (k, at): (String, i64) = (e.get(0), e.get(1));
        match by_call
            .get(&k)
            .and_then(|v| v.iter().filter(|&&a| a >= at).min())
        {
            Some(a) => waits.push(a - at),
            None => never += 1,
        }
    }
    waits.sort();
    assert_eq!(s.escalations, esc.len() as i64);
    assert_eq!(s.unacknowledged, never);
    assert!(never > 0 && !waits.is_empty());
    let rank =
        |p: f64| waits[((p * waits.len() as f64).ceil() as usize).max(1) - 1] as f64 / 1000.0;
    assert_eq!(s.ack_p50_secs, Some(rank(0.5)));
    assert_eq!(s.ack_p90_secs, Some(rank(0.9)));
}

async fn check_report(pool: &AnyPool, r: &Report) {
    let p = &r.period;
    check_summary(pool, p, &r.summary).await;
    check_summary(pool, &r.previous_period, &r.previous).await;
    assert_eq!(r.previous_period.slug(), "2026-10");

    // Types, from the raw marks with the mapping spelled out here.
    let rows = sqlx::query(
        "SELECT m.call_key, m.mark, m.quote FROM marks m, calls c WHERE c.key = m.call_key \
         AND c.started_ms >= $1 AND c.started_ms < $2",
    )
    .bind(p.from_ms)
    .bind(p.to_ms)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut calls: BTreeMap<&str, std::collections::BTreeSet<String>> = BTreeMap::new();
    let mut marks: BTreeMap<&str, i64> = BTreeMap::new();
    for row in &rows {
        let (key, mark, quote): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        let t = match mark.as_str() {
            "threat" if ONLINE_WORDS.iter().any(|w| quote.contains(w)) => "online_shaming",
            "abuse" | "threat" | "violence" => "violence_threat_abuse",
            "demand" | "manager" => "unreasonable_demand",
            "repeat" => "long_or_repeated",
            "sexual" => "sexual",
            _ => continue,
        };
        calls.entry(t).or_default().insert(key);
        *marks.entry(t).or_default() += 1;
    }
    assert_eq!(r.by_type.len(), 5);
    for tc in &r.by_type {
        let code = tc.kind.code();
        assert_eq!(
            tc.calls,
            calls.get(code).map_or(0, |s| s.len() as i64),
            "{code}"
        );
        assert_eq!(tc.marks, marks.get(code).copied().unwrap_or(0), "{code}");
        assert!(tc.calls > 0, "{code} has incidents");
    }
    assert!(
        r.by_type
            .iter()
            .any(|t| t.kind == IncidentType::OnlineShaming)
    );

    // Heat map and durations from raw start/end times, with chrono.
    let rows = sqlx::query(
        "SELECT started_ms, ended_ms, level FROM calls WHERE started_ms >= $1 AND started_ms < $2",
    )
    .bind(p.from_ms)
    .bind(p.to_ms)
    .fetch_all(pool)
    .await
    .unwrap();
    let tz = chrono::FixedOffset::east_opt(JST).unwrap();
    let mut heat = [[0i64; 24]; 7];
    let mut durations = [0i64; 8];
    for row in &rows {
        let (s, e, level): (i64, Option<i64>, i64) = (row.get(0), row.get(1), row.get(2));
        if level > 0 {
            use chrono::{Datelike, TimeZone, Timelike};
            let t = tz.timestamp_millis_opt(s).unwrap();
            heat[t.weekday().num_days_from_monday() as usize][t.hour() as usize] += 1;
        }
        if let Some(e) = e {
            let mins = (e - s) as f64 / 60_000.0;
            let i = DURATION_BUCKETS
                .iter()
                .position(|b| mins >= b.0 as f64 && b.1.is_none_or(|u| mins < u as f64))
                .unwrap();
            durations[i] += 1;
        }
    }
    assert_eq!(r.heat, heat);
    assert_eq!(r.durations, durations);

    // Repeat callers.
    let rows = sqlx::query(
        "SELECT caller_key, COUNT(*) FROM calls WHERE started_ms >= $1 AND started_ms < $2 \
         AND caller_key IS NOT NULL GROUP BY caller_key HAVING COUNT(*) > 1",
    )
    .bind(p.from_ms)
    .bind(p.to_ms)
    .fetch_all(pool)
    .await
    .unwrap();
    let counts: BTreeMap<String, i64> = rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect();
    assert_eq!(r.repeat_callers.len(), 10);
    let mut sorted: Vec<i64> = counts.values().copied().collect();
    sorted.sort_by(|a, b| b.cmp(a));
    for (i, c) in r.repeat_callers.iter().enumerate() {
        assert_eq!(Some(&c.calls), counts.get(&c.caller_key));
        assert_eq!(c.calls, sorted[i], "rank {i}");
    }
    // The conclusion shown is the newest version.
    let with = r
        .repeat_callers
        .iter()
        .find(|c| c.conclusion.is_some())
        .expect("a frequent caller with a conclusion");
    assert!(with.conclusion.as_deref().unwrap().contains("第2版"));

    // Care list.
    let care = r.care.as_ref().expect("admin report carries the care list");
    let rows = sqlx::query(
        "SELECT c.agent, COUNT(DISTINCT c.key) FROM calls c WHERE c.started_ms >= $1 \
         AND c.started_ms < $2 AND (c.level >= 4 OR c.key IN \
         (SELECT call_key FROM marks WHERE mark = 'symptom')) GROUP BY c.agent",
    )
    .bind(p.from_ms)
    .bind(p.to_ms)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(care.len(), rows.len());
    for row in rows {
        let agent: String = row.get(0);
        let a = care.iter().find(|a| a.agent == agent).unwrap();
        assert!(a.symptom_calls + a.level4_calls >= row.get::<i64, _>(1));
    }
}

/// Page 1 as a PPM at 40 dpi; the share of coloured pixels in each band of rows.
fn page1_ink(pdf: &Path, dir: &Path) -> (f64, f64) {
    let prefix = dir.join("page");
    let out = Command::new(common::pdf::tool("pdftoppm"))
        .args(["-r", "40", "-f", "1", "-l", "1"])
        .arg(pdf)
        .arg(&prefix)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "ppm"))
        .expect("pdftoppm wrote a PPM");
    let bytes = std::fs::read(file).unwrap();
    // P6\n<w> <h>\n255\n<rgb…>
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..i]).to_string());
    }
    let (w, h): (usize, usize) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
    let px = &bytes[i + 1..];
    assert_eq!(px.len(), w * h * 3);
    let band = |top_mm: f32, bottom_mm: f32| {
        let (y0, y1) = (
            (top_mm / PAGE_H * h as f32) as usize,
            (bottom_mm / PAGE_H * h as f32) as usize,
        );
        let mut coloured = 0usize;
        for y in y0..y1 {
            for x in 0..w {
                let p = &px[(y * w + x) * 3..][..3];
                let (mx, mn) = (*p.iter().max().unwrap(), *p.iter().min().unwrap());
                if mx - mn > 60 {
                    coloured += 1;
                }
            }
        }
        coloured as f64 / ((y1 - y0) * w) as f64
    };
    (band(PAGE1_CHARTS_MM.0, PAGE1_CHARTS_MM.1), band(0.0, 10.0))
}

fn write_config(dir: &Path, db: &str) -> PathBuf {
    let path = dir.join("callguard.toml");
    std::fs::write(
        &path,
        format!(
            "[state]\ndir = \"{}\"\n[floor]\nsite = \"tokyo-1\"\ndb = \"{db}\"\n\
             [floor.report]\nutc_offset = \"+09:00\"\n[floor.teams]\nred = [\"a0001\", \"a0002\", \"a0003\"]\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    path
}

async fn suite(db: &str) {
    let store = Store::open(db).await.unwrap();
    seed(&store).await;
    let total = one(
        store.pool(),
        "SELECT COUNT(*) FROM calls WHERE $1 <= $2",
        0,
        0,
    )
    .await;
    assert_eq!(total, TOTAL_CALLS as i64);

    let period = Period::month("2026-11", JST).unwrap();
    let opts = ReportOptions {
        period: period.clone(),
        agents: None,
        team: None,
        care: true,
        top_callers: 10,
    };
    let report = build(&store, &opts).await.unwrap();
    check_report(store.pool(), &report).await;

    // A quarter holds the three months' calls of October and November plus those of December
    // (none): its figures equal the sums of its months.
    let q = build(
        &store,
        &ReportOptions {
            period: Period::quarter("2026Q4", JST).unwrap(),
            care: false,
            ..opts.clone()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        q.summary.calls,
        report.summary.calls + report.previous.calls
    );
    assert_eq!(
        q.previous.calls,
        one(
            store.pool(),
            "SELECT COUNT(*) FROM calls WHERE started_ms >= $1 AND started_ms < $2",
            Period::month("2026-09", JST).unwrap().from_ms,
            Period::month("2026-10", JST).unwrap().from_ms
        )
        .await
    );
    assert!(q.care.is_none());

    // A team's report counts only its agents.
    let team = build(
        &store,
        &ReportOptions {
            agents: Some(vec!["a0001".into(), "a0002".into(), "a0003".into()]),
            team: Some("red".into()),
            ..opts.clone()
        },
    )
    .await
    .unwrap();
    let n = one(
        store.pool(),
        "SELECT COUNT(*) FROM calls WHERE started_ms >= $1 AND started_ms < $2 \
         AND agent IN ('a0001', 'a0002', 'a0003')",
        period.from_ms,
        period.to_ms,
    )
    .await;
    assert_eq!(team.summary.calls, n);
    assert!(n > 0 && n < report.summary.calls);
    store.close().await;

    // The real binary: HTML, PDF, CSVs.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), db);
    let out_dir = dir.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .arg("--config")
        .arg(&config)
        .args(["floor", "report", "--month", "2026-11", "--care", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "floor report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&report.summary_line()), "{stdout}");

    let html = std::fs::read_to_string(out_dir.join("report-2026-11.html")).unwrap();
    assert!(!html.contains("<script"));
    assert!(html.matches("<svg").count() >= 4, "four SVG charts");
    for h in [
        heading::SUMMARY,
        heading::LEVEL,
        heading::TYPE,
        heading::LONG,
        heading::HEAT,
        heading::DURATION,
        heading::ESCALATION,
        heading::CALLERS,
        heading::CARE,
    ] {
        assert!(html.contains(h), "HTML lacks {h}");
    }

    let pdf = out_dir.join("report-2026-11.pdf");
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF-"));
    assert!(
        bytes.len() < 2_000_000,
        "the font is embedded as a subset: {} bytes",
        bytes.len()
    );
    let text = common::pdf::text(&pdf);
    for h in [
        heading::SUMMARY,
        heading::LEVEL,
        heading::TYPE,
        heading::HEAT,
        heading::DURATION,
        heading::ESCALATION,
        heading::CALLERS,
        heading::CARE,
    ] {
        assert!(text.contains(h), "PDF text lacks {h}:\n{text}");
    }
    let s = &report.summary;
    for (what, n) in [
        ("calls", s.calls),
        ("incidents", s.incidents),
        ("level 4", s.by_level[4]),
        ("over 30", s.over_30),
        ("unacknowledged", s.unacknowledged),
        ("escalations", s.escalations),
    ] {
        assert!(text.contains(&n.to_string()), "PDF text lacks {what} = {n}");
    }
    assert!(text.contains(&format!("通話 {} 件", s.calls)));
    for t in &report.by_type {
        assert!(text.contains(t.kind.label_ja()), "{}", t.kind.label_ja());
    }
    let (charts, top) = page1_ink(&pdf, dir.path());
    assert!(charts > 0.02, "page 1 has coloured charts: {charts}");
    assert!(top < 0.01, "the page margin stays blank: {top}");

    // CSVs parse and agree with the report.
    let read = |name: &str| -> Vec<csv::StringRecord> {
        let path = out_dir.join(format!("report-2026-11-{name}.csv"));
        let mut r = csv::Reader::from_path(&path).unwrap();
        r.records().map(|x| x.unwrap()).collect()
    };
    for name in [
        "summary",
        "levels",
        "types",
        "heatmap",
        "durations",
        "escalations",
        "repeat_callers",
        "care",
    ] {
        assert!(!read(name).is_empty(), "{name}.csv has rows");
    }
    let levels = read("levels");
    for (l, rec) in levels.iter().enumerate() {
        assert_eq!(rec[1].parse::<i64>().unwrap(), s.by_level[l]);
        assert_eq!(rec[2].parse::<i64>().unwrap(), report.previous.by_level[l]);
    }
    let heat: i64 = read("heatmap")
        .iter()
        .map(|r| r[2].parse::<i64>().unwrap())
        .sum();
    assert_eq!(heat, s.incidents);
    let durations: i64 = read("durations")
        .iter()
        .map(|r| r[2].parse::<i64>().unwrap())
        .sum();
    assert_eq!(
        durations,
        report.durations.iter().sum::<i64>(),
        "duration classes cover every ended call"
    );
    let esc = read("escalations");
    assert_eq!(esc[0][1].parse::<i64>().unwrap(), s.unacknowledged);
    let callers = read("repeat_callers");
    assert_eq!(callers.len(), report.repeat_callers.len());
    assert_eq!(&callers[0][0], report.repeat_callers[0].caller_key.as_str());

    // Without --care (a lead's report) there is no care list anywhere.
    let lead_dir = dir.path().join("lead");
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .arg("--config")
        .arg(&config)
        .args([
            "floor", "report", "--month", "2026-11", "--team", "red", "--out",
        ])
        .arg(&lead_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(lead_dir.join("report-2026-11.html")).unwrap();
    assert!(!html.contains(heading::CARE));
    assert!(html.contains(&format!("通話 {} 件", team.summary.calls)));
    assert!(!common::pdf::text(&lead_dir.join("report-2026-11.pdf")).contains(heading::CARE));
    assert!(!lead_dir.join("report-2026-11-care.csv").exists());

    // Usage errors exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .arg("--config")
        .arg(&config)
        .args(["floor", "report", "--month", "2026-13"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .arg("--config")
        .arg(&config)
        .args(["floor", "report", "--month", "2026-11", "--team", "blue"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    // An incident record from the store alone says what is missing and how to verify.
    let key = {
        let store = Store::open(db).await.unwrap();
        let k: String = sqlx::query(
            "SELECT key FROM calls WHERE level >= 3 AND started_ms >= $1 ORDER BY key LIMIT 1",
        )
        .bind(period.from_ms)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
        store.close().await;
        k
    };
    let rec = dir.path().join("incident.pdf");
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .arg("--config")
        .arg(&config)
        .args(["floor", "incident", &key, "--out"])
        .arg(&rec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = common::pdf::text(&rec);
    for want in [
        "インシデント記録",
        "incident.md",
        "callguard verify",
        "未受信",
        &key,
    ] {
        assert!(text.contains(want), "incident PDF lacks {want}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    suite(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_on_postgres() {
    let pg = PgCluster::start();
    let db = pg.database("reports").await;
    suite(&db).await;
}
