//! The live board under load, in headless Chromium against the real `callguard floor` binary and
//! a real nats-server (SQLite store):
//!
//! 1. Page load with 500 open calls: the board page (server-rendered, every row in the HTML)
//!    loaded five times; first contentful paint and load-event end from the browser's
//!    performance API, median. Peer in the same run: the login page (a few hundred bytes), so the
//!    ratio shows what the 500 rows cost. Target: ≤ 300 ms to first full paint.
//! 2. 2,000 open calls across 500 simulated workstations, then marks at 500 events/s for
//!    `--secs` seconds (default 10), each with a unique quote: a MutationObserver in the page
//!    records when each quote first appears in the board's DOM; latency = that moment minus the
//!    moment the bench published the event (same machine clock), p50 and p99. Target p99 ≤ 250 ms.
//!    The floor's CPU (user + system over the phase, as a share of one core) and RSS (VmHWM).
//!    Where the time goes: the floor's consumer stamps each event when it takes it, each patch
//!    carries the server's clock when it was rendered, and the page records when its handler
//!    got the patch (a wrapper around `JSON.parse`); the main thread's long tasks and long
//!    animation frames (with their rendering part) show how busy the page was.
//!
//! `cargo bench --bench floor_board [-- --secs N] [-- --rate N] [-- --as-table]`; with
//! `--as-table` the page lays the call tables out as plain tables again (the peer for the
//! grid rows, see `pages.rs`).

#[path = "../tests/common/browser.rs"]
mod browser;
#[path = "../tests/common/floor.rs"]
mod floor;
#[allow(dead_code)]
#[path = "../tests/common/nats.rs"]
mod nats;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use browser::Browser;
use callguard::floor::contract::PbxState;
use callguard::floor::service::store::Store;
use fantoccini::{Client, Locator};
use floor::{Floor, PASSWORD, Workstations, call_start, heartbeat, mark};

const WORKSTATIONS: usize = 500;
const CALLS: usize = 2000;

fn agent(i: usize) -> String {
    format!("w{:04}", i % WORKSTATIONS)
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or_default()
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the ')'.
    n(11) + n(12)
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn publish_calls(ws: &Workstations, from: usize, to: usize) {
    for i in 0..WORKSTATIONS {
        ws.publish(&heartbeat(
            &format!("hb-{i}"),
            &agent(i),
            3600,
            PbxState::Up,
        ))
        .await;
    }
    for i in from..to {
        ws.publish(&call_start(
            &format!("s{i}"),
            &agent(i),
            &format!("c{i}"),
            &format!("+8190{i:08}"),
        ))
        .await;
    }
}

/// Rows on the board (bounded wait for `n`).
async fn wait_rows(c: &Client, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let count = c
            .execute(
                "return document.querySelectorAll('tr[data-call]').length",
                vec![],
            )
            .await
            .ok()
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as usize;
        if count >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the board shows {count} of {n} calls after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// (first contentful paint, load event end) of the current page, ms.
async fn timings(c: &Client) -> (f64, f64) {
    let v = c
        .execute(
            "var p=performance.getEntriesByName('first-contentful-paint')[0];\
             var n=performance.getEntriesByType('navigation')[0];\
             return [p?p.startTime:-1, n?n.loadEventEnd:-1];",
            vec![],
        )
        .await
        .expect("performance entries");
    let f = |i: usize| v[i].as_f64().unwrap_or(-1.0);
    (f(0), f(1))
}

async fn load_times(c: &Client, url: &str, runs: usize) -> (f64, f64) {
    let (mut fcp, mut load) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        c.goto(url).await.expect("goto");
        // loadEventEnd is set once the load handlers ran.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (p, l) = timings(c).await;
            if p > 0.0 && l > 0.0 {
                fcp.push(p);
                load.push(l);
                break;
            }
            assert!(Instant::now() < deadline, "no paint timing for {url}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    fcp.sort_by(f64::total_cmp);
    load.sort_by(f64::total_cmp);
    (pct(&fcp, 0.5), pct(&load, 0.5))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let secs: u64 = arg("--secs").and_then(|v| v.parse().ok()).unwrap_or(10);
    let rate: u64 = arg("--rate").and_then(|v| v.parse().ok()).unwrap_or(500);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let as_table = args.iter().any(|a| a == "--as-table");
    rt.block_on(run(secs, rate, as_table));
}

async fn run(secs: u64, rate: u64, as_table: bool) {
    let nats = nats::NatsServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("floor.db").display());
    let floor = Floor::start(dir.path(), &nats.url(), &db, "").await;
    floor.add_user("admin", "管理者", &[], true);
    let pid = floor.pid().expect("floor pid");
    let ws = Workstations::connect(&nats.url()).await;
    ws.wait_for_stream().await;
    publish_calls(&ws, 0, 500).await;

    let browser = Browser::start("ja").await;
    let c = &browser.client;
    let base = floor.url();
    c.goto(&format!("{base}/login")).await.expect("login page");
    c.find(Locator::Css("#name"))
        .await
        .expect("name")
        .send_keys("admin")
        .await
        .expect("type");
    c.find(Locator::Css("#password"))
        .await
        .expect("password")
        .send_keys(PASSWORD)
        .await
        .expect("type");
    c.find(Locator::Css("#login"))
        .await
        .expect("button")
        .click()
        .await
        .expect("log in");
    wait_rows(c, 500).await;

    // 1. Page load with 500 open calls; the login page as the peer.
    let (board_fcp, board_load) = load_times(c, &format!("{base}/"), 5).await;
    let (login_fcp, login_load) = load_times(c, &format!("{base}/login"), 5).await;
    println!(
        "board page with 500 open calls: first contentful paint {board_fcp:.0} ms, load {board_load:.0} ms \
         (median of 5; target <= 300 ms)\n  peer, the login page: paint {login_fcp:.0} ms, load {login_load:.0} ms \
         -> board/login paint ratio {:.1}",
        board_fcp / login_fcp
    );

    // 2. 2,000 open calls; marks at `rate` events/s.
    publish_calls(&ws, 500, CALLS).await;
    c.goto(&format!("{base}/")).await.expect("board");
    wait_rows(c, CALLS).await;
    if as_table {
        // The peer: the call tables laid out as tables again (the layout before the grid rows).
        c.execute(
            "var s=document.createElement('style');s.textContent=\
             '#open,#ended{display:table}#open tbody,#ended tbody{display:table-row-group}\
             #open tr,#ended tr{display:table-row}\
             #open tr[data-call],#ended tr[data-call]{content-visibility:visible}';\
             document.head.appendChild(s);",
            vec![],
        )
        .await
        .expect("table style");
    }
    c.execute(
        "window.__seen={};var seen=window.__seen;\
         function scan(){var b=document.getElementById('board');if(!b)return;var t=Date.now();\
         var m=b.textContent.match(/BQ\\d+X/g)||[];for(var i=0;i<m.length;i++){\
         if(!(m[i] in seen)){seen[m[i]]=t;}}}\
         new MutationObserver(scan).observe(document.body,{childList:true,subtree:true});\
         window.__arr={};var arr=window.__arr,parse=JSON.parse;\
         JSON.parse=function(x){var t=Date.now(),r=parse.apply(this,arguments);\
         if(r&&r.s&&r.now){var m=String(x).match(/BQ\\d+X/g)||[];\
         for(var i=0;i<m.length;i++){if(!(m[i] in arr)){arr[m[i]]=[t,r.now];}}}return r;};\
         window.__long=[];new PerformanceObserver(function(l){l.getEntries().forEach(function(e){\
         window.__long.push(e.duration);});}).observe({entryTypes:['longtask']});\
         window.__loaf=[];new PerformanceObserver(function(l){l.getEntries().forEach(function(e){\
         window.__loaf.push([e.duration,e.renderStart?e.startTime+e.duration-e.renderStart:0]);});})\
         .observe({type:'long-animation-frame',buffered:false});",
        vec![],
    )
    .await
    .expect("observer");
    let cpu0 = proc_cpu_ticks(pid);
    let t0 = Instant::now();
    let total = (secs * rate) as usize;
    let mut published: BTreeMap<String, f64> = BTreeMap::new();
    let mut acks = Vec::with_capacity(total);
    let tick = Duration::from_millis(20);
    let per_tick = (rate as usize * 20 / 1000).max(1);
    let mut next = Instant::now();
    let mut n = 0usize;
    while n < total {
        for _ in 0..per_tick.min(total - n) {
            let call = n % CALLS;
            let quote = format!("BQ{n}X");
            let ev = mark(
                &format!("m{n}"),
                &agent(call),
                &format!("c{call}"),
                &format!("+8190{call:08}"),
                1,
                &quote,
            );
            published.insert(quote, now_ms());
            let mut h = async_nats::HeaderMap::new();
            h.insert(callguard::floor::contract::MSG_ID_HEADER, ev.id.as_str());
            acks.push(
                ws.js
                    .publish_with_headers(ev.subject("tokyo", &ev.agent), h, ev.to_json().into())
                    .await
                    .expect("publish"),
            );
            n += 1;
        }
        next += tick;
        tokio::time::sleep_until(next.into()).await;
    }
    for a in acks {
        a.await.expect("PubAck");
    }
    let sent_in = t0.elapsed();
    // Wait (bounded) until the page has seen every quote, or stops seeing new ones.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = serde_json::Map::new();
    let mut last = (0usize, Instant::now());
    while Instant::now() < deadline {
        seen = c
            .execute("return window.__seen", vec![])
            .await
            .expect("seen")
            .as_object()
            .cloned()
            .unwrap_or_default();
        if seen.len() >= total {
            break;
        }
        if seen.len() != last.0 {
            last = (seen.len(), Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(15) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Inside the page: when each quote's patch reached the page's handler (and the server's
    // clock when it rendered that patch), and the main thread's long tasks.
    let arrived = c
        .execute("return window.__arr", vec![])
        .await
        .expect("arrivals")
        .as_object()
        .cloned()
        .unwrap_or_default();
    let long: Vec<f64> = c
        .execute("return window.__long", vec![])
        .await
        .expect("long tasks")
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_f64()).collect())
        .unwrap_or_default();
    let loaf: Vec<(f64, f64)> = c
        .execute("return window.__loaf", vec![])
        .await
        .expect("long animation frames")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| Some((v[0].as_f64()?, v[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let cpu = (proc_cpu_ticks(pid) - cpu0) as f64 / rustix::param::clock_ticks_per_second() as f64;
    let busy = t0.elapsed().as_secs_f64();
    let mut lat: Vec<f64> = seen
        .iter()
        .filter_map(|(q, t)| Some(t.as_f64()? - published.get(q)?))
        .collect();
    lat.sort_by(f64::total_cmp);
    // Where the time goes: the floor stamps each event when its consumer takes it
    // (`events.received_ms`), which splits the latency into bus + store and the live update.
    let store = Store::open(&db).await.expect("open the floor's store");
    let received: BTreeMap<String, i64> =
        sqlx::query_as("SELECT id, received_ms FROM events WHERE kind = 'mark'")
            .fetch_all(store.pool())
            .await
            .expect("received times")
            .into_iter()
            .collect();
    // The server's share of one live update at this size, timed alone: the shared snapshot
    // query, one page's rendering of the rows and the diff against the previous rendering.
    let t = callguard::floor::service::web::i18n::texts(callguard::config::Language::Ja);
    let (mut q_ms, mut r_ms, mut d_ms) = (Vec::new(), Vec::new(), Vec::new());
    let mut prev: Option<callguard::floor::service::web::pages::BoardParts> = None;
    for _ in 0..20 {
        let t0 = Instant::now();
        let data = store.board(0).await.expect("board");
        q_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        let t1 = Instant::now();
        let parts = callguard::floor::service::web::pages::board_parts(
            t,
            &data,
            now_ms() as i64,
            None,
            "csrf",
            false,
        );
        r_ms.push(t1.elapsed().as_secs_f64() * 1000.0);
        let t2 = Instant::now();
        if let Some(p) = &prev {
            let _ = callguard::floor::service::web::live::diff(p, &parts);
        }
        d_ms.push(t2.elapsed().as_secs_f64() * 1000.0);
        prev = Some(parts);
    }
    // What the live feed reads after a burst instead: the 50 calls that changed (100 ms at
    // 500 events/s).
    let keys: Vec<String> = prev
        .as_ref()
        .map(|p| {
            p.open
                .rows
                .iter()
                .take(50)
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    let mut k_ms = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        store.calls_by_keys(&keys).await.expect("calls by keys");
        k_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    for v in [&mut q_ms, &mut r_ms, &mut d_ms, &mut k_ms] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "  server side of one update, median of 20: whole-board query {:.1} ms (every 5 s), \
         50 changed calls {:.1} ms (each update), one page's rows rendered {:.1} ms, diff {:.1} ms",
        pct(&q_ms, 0.5),
        pct(&k_ms, 0.5),
        pct(&r_ms, 0.5),
        pct(&d_ms, 0.5)
    );
    store.close().await;
    let (mut to_store, mut to_dom) = (Vec::new(), Vec::new());
    for (q, t) in &seen {
        let (Some(seen_at), Some(sent)) = (t.as_f64(), published.get(q)) else {
            continue;
        };
        let n = q.trim_start_matches("BQ").trim_end_matches('X');
        if let Some(r) = received.get(&format!("m{n}")) {
            to_store.push(*r as f64 - sent);
            to_dom.push(seen_at - *r as f64);
        }
    }
    to_store.sort_by(f64::total_cmp);
    to_dom.sort_by(f64::total_cmp);
    println!(
        "  split: published -> taken by the floor's consumer p50 {:.0} ms, p99 {:.0} ms; \
         taken -> in the DOM p50 {:.0} ms, p99 {:.0} ms",
        pct(&to_store, 0.5),
        pct(&to_store, 0.99),
        pct(&to_dom, 0.5),
        pct(&to_dom, 0.99),
    );
    // taken -> rendered by the server (coalescing + reads + render), rendered -> the page's
    // handler (send, transit, waiting for the page's main thread), handler -> in the DOM.
    let (mut to_render, mut to_page, mut to_apply) = (Vec::new(), Vec::new(), Vec::new());
    for (q, a) in &arrived {
        let n = q.trim_start_matches("BQ").trim_end_matches('X');
        let (Some(at), Some(rendered)) = (a[0].as_f64(), a[1].as_f64()) else {
            continue;
        };
        if let Some(r) = received.get(&format!("m{n}")) {
            to_render.push(rendered - *r as f64);
        }
        to_page.push(at - rendered);
        if let Some(s) = seen.get(q).and_then(|v| v.as_f64()) {
            to_apply.push(s - at);
        }
    }
    for v in [&mut to_render, &mut to_page, &mut to_apply] {
        v.sort_by(f64::total_cmp);
    }
    let long_sum: f64 = long.iter().fold(0.0, |a, b| a + b);
    let long_max = long.iter().cloned().fold(0.0, f64::max);
    println!(
        "  in the page: taken -> patch rendered p50 {:.0} ms, p99 {:.0} ms; rendered -> page's \
         handler p50 {:.0} ms, p99 {:.0} ms; handler -> in the DOM p50 {:.0} ms, p99 {:.0} ms; \
         long tasks {} totalling {:.0} ms (longest {:.0} ms) over {:.1} s",
        pct(&to_render, 0.5),
        pct(&to_render, 0.99),
        pct(&to_page, 0.5),
        pct(&to_page, 0.99),
        pct(&to_apply, 0.5),
        pct(&to_apply, 0.99),
        long.len(),
        long_sum,
        long_max,
        busy,
    );
    println!(
        "  long animation frames: {} totalling {:.0} ms, of which rendering (style, layout) {:.0} ms",
        loaf.len(),
        loaf.iter().fold(0.0, |a, f| a + f.0),
        loaf.iter().fold(0.0, |a, f| a + f.1),
    );
    println!(
        "{CALLS} open calls on {WORKSTATIONS} workstations, {total} marks at {rate}/s (sent in {:.1} s):\n  \
         event published -> row changed in the DOM: p50 {:.0} ms, p99 {:.0} ms, {} of {total} seen \
         (target p99 <= 250 ms)\n  floor CPU {:.0}% of one core over {busy:.1} s, peak RSS {:.1} MiB",
        sent_in.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        lat.len(),
        cpu / busy * 100.0,
        peak_rss_mib(pid),
    );
    browser.close().await;
}
