//! The fault suite behind `scripts/fault-suite.sh`: drives the real `callguard` binary on
//! loopback (a fake generic PBX on 127.0.0.1:0, temp dirs) through three bounded runs and prints
//! the figures for the README's reliability table.
//!
//! 1. PBX drops: several daemons side by side, each with one call that crosses both ladder steps
//!    (15 and 30 minutes at `--time-scale 60`: 15 s and 30 s) while its PBX drops the websocket
//!    without a close, again and again, and sends a snapshot after each reconnect. Each warning
//!    must fire exactly once: counted from the log.
//! 2. `kill -9`: one daemon recording a real-time μ-law stream is killed mid-call, restarted,
//!    killed again…; at the end every call must be sealed (recovered), `callguard verify` must
//!    pass, and the audio lost per kill is what was sent minus what the sealed file holds.
//! 3. Mutated frames: valid frames and mutations of them (bit flips, cuts, huge numbers, long
//!    strings, deep nesting, binary, seq jumps) at a bounded rate for a bounded time; crashes are
//!    counted (the daemon restarted), RSS sampled from `/proc`.
//!
//! `fault_suite --bin PATH [--drop-daemons 20] [--drops-each 5] [--kills 20] [--fuzz-secs 60]
//! [--fuzz-rate 1000] [--seed N] [--json FILE] [--keep]` (`--keep`: leave the daemons' logs and
//! evidence in the temp dir and print where).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

type Ws = WebSocketStream<TcpStream>;
type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
struct Args {
    bin: PathBuf,
    drop_daemons: usize,
    drops_each: usize,
    kills: usize,
    fuzz_secs: u64,
    fuzz_rate: u64,
    seed: u64,
    json: Option<PathBuf>,
    keep: bool,
}

fn args() -> Result<Args, Error> {
    let mut a = Args {
        bin: PathBuf::from("target/release/callguard"),
        drop_daemons: 20,
        drops_each: 5,
        kills: 20,
        fuzz_secs: 60,
        fuzz_rate: 1000,
        seed: 0x5eed,
        json: None,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{k} needs a value"));
        match k.as_str() {
            "--bin" => a.bin = PathBuf::from(v()?),
            "--drop-daemons" => a.drop_daemons = v()?.parse()?,
            "--drops-each" => a.drops_each = v()?.parse()?,
            "--kills" => a.kills = v()?.parse()?,
            "--fuzz-secs" => a.fuzz_secs = v()?.parse()?,
            "--fuzz-rate" => a.fuzz_rate = v()?.parse()?,
            "--seed" => a.seed = v()?.parse()?,
            "--json" => a.json = Some(PathBuf::from(v()?)),
            "--keep" => a.keep = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

/// xorshift64*: reproducible from `--seed`, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A PBX on 127.0.0.1:0 that hands each accepted websocket over.
struct Pbx {
    url: String,
    conns: mpsc::Receiver<Ws>,
}

impl Pbx {
    async fn start() -> Result<Pbx, Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("ws://{}/", listener.local_addr()?);
        let (tx, conns) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if let Ok(ws) = tokio_tungstenite::accept_async(stream).await
                    && tx.send(ws).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(Pbx { url, conns })
    }

    async fn accept(&mut self, within: Duration) -> Result<Ws, Error> {
        tokio::time::timeout(within, self.conns.recv())
            .await
            .map_err(|_| "the daemon did not connect in time")?
            .ok_or_else(|| "listener stopped".into())
    }
}

fn write_config(dir: &Path, pbx: &str, source: &str) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("callguard.toml");
    std::fs::write(
        &path,
        format!(
            "[pbx]\nurl = \"{pbx}\"\n[prompt]\nlocal = false\n[state]\ndir = \"{state}\"\n\
             [evidence]\nsource = \"{source}\"\ndir = \"{evidence}\"\nmin_free_mb = 0\n\
             [control]\nsocket = \"{sock}\"\n\
             [[warning]]\nafter = \"15m\"\nkind = \"escalate\"\n\
             [[warning]]\nafter = \"30m\"\nkind = \"terminate\"\n",
            state = dir.join("state").display(),
            evidence = dir.join("evidence").display(),
            sock = dir.join("control.sock").display(),
        ),
    )?;
    Ok(path)
}

fn spawn(bin: &Path, cfg: &Path, log: &Path, time_scale: Option<f64>) -> Result<Child, Error> {
    let mut cmd = Command::new(bin);
    cmd.arg("run");
    if let Some(s) = time_scale {
        cmd.args(["--time-scale", &s.to_string()]);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    Ok(cmd
        .arg("--config")
        .arg(cfg)
        .env("RUST_LOG", "info")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .env_remove("CALLGUARD_CONFIG")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?)
}

/// SIGTERM, then up to `within` for a clean exit (else SIGKILL). Whether it exited 0 in time.
async fn stop(mut child: Child, within: Duration) -> bool {
    let pid = rustix::process::Pid::from_child(&child);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.success();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_rfc3339() -> String {
    chrono::Local::now().fixed_offset().to_rfc3339()
}

async fn send(ws: &mut Ws, v: Value) -> Result<(), Error> {
    ws.send(Message::Text(v.to_string().into())).await?;
    Ok(())
}

/// Waits (bounded) until `f` holds, polling.
async fn until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f()
}

// ---------------------------------------------------------------------------------------------
// 1. PBX drops

#[derive(Debug, Default, Clone)]
struct DropResult {
    drops: usize,
    missed: usize,
    repeated: usize,
    clean_exit: bool,
    error: Option<String>,
}

async fn drop_one(a: Args, root: PathBuf, k: usize, seed: u64) -> DropResult {
    let mut r = DropResult::default();
    if let Err(e) = drop_run(&a, &root, k, seed, &mut r).await {
        r.error = Some(e.to_string());
    }
    r
}

async fn drop_run(
    a: &Args,
    root: &Path,
    k: usize,
    seed: u64,
    r: &mut DropResult,
) -> Result<(), Error> {
    let mut rng = Rng(seed | 1);
    let dir = root.join(format!("drops-{k}"));
    let mut pbx = Pbx::start().await?;
    let cfg = write_config(&dir, &pbx.url, "off")?;
    let log = dir.join("callguard.log");
    let child = spawn(&a.bin, &cfg, &log, Some(60.0))?;
    let id = format!("drop-{k}");
    let at = now_rfc3339();
    let start =
        json!({"type":"call.start","call_id":id,"at":at,"agent":"1001","caller":"0312345678"});
    let t0 = Instant::now();
    let mut ws = pbx.accept(Duration::from_secs(30)).await?;
    send(&mut ws, start.clone()).await?;
    for _ in 0..a.drops_each {
        tokio::time::sleep(Duration::from_millis(200 + rng.below(600))).await;
        drop(ws); // no close handshake: what a crashing PBX does
        r.drops += 1;
        ws = pbx.accept(Duration::from_secs(60)).await?;
        send(&mut ws, json!({"type":"calls.snapshot","calls":[{"call_id":id,"at":at,"agent":"1001","caller":"0312345678"}]})).await?;
    }
    // Both steps (15 s and 30 s of real time) are due before the end.
    let end_at = t0 + Duration::from_secs(33);
    tokio::time::sleep(end_at.saturating_duration_since(Instant::now())).await;
    send(
        &mut ws,
        json!({"type":"call.end","call_id":id,"cause":"normal"}),
    )
    .await?;
    let needle = format!("call_id={id} ");
    until(Duration::from_secs(10), || {
        std::fs::read_to_string(&log)
            .map(|t| {
                t.lines()
                    .any(|l| l.contains("call ended") && l.contains(&needle))
            })
            .unwrap_or(false)
    })
    .await;
    r.clean_exit = stop(child, Duration::from_secs(20)).await;
    let text = std::fs::read_to_string(&log)?;
    for kind in ["escalate", "terminate"] {
        let fired = text
            .lines()
            .filter(|l| {
                l.contains("warning fired")
                    && l.split_whitespace().any(|t| t == format!("call_id={id}"))
                    && l.contains(&format!("kind=\"{kind}\""))
            })
            .count();
        if fired == 0 {
            r.missed += 1;
        }
        r.repeated += fired.saturating_sub(1);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 2. kill -9

#[derive(Debug, Default, Clone)]
struct KillResult {
    kills: usize,
    sealed: usize,
    recovered: usize,
    lost_secs: Vec<f64>,
    verify_ok: bool,
    error: Option<String>,
}

fn manifests(root: &Path) -> Vec<Value> {
    fn walk(d: &Path, out: &mut Vec<Value>) {
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "manifest.json")
                && let Ok(bytes) = std::fs::read(&p)
                && let Ok(v) = serde_json::from_slice(&bytes)
            {
                out.push(v);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

async fn kills(a: &Args, root: &Path) -> KillResult {
    let mut r = KillResult::default();
    if let Err(e) = kill_run(a, root, &mut r).await {
        r.error = Some(e.to_string());
    }
    r
}

async fn kill_run(a: &Args, root: &Path, r: &mut KillResult) -> Result<(), Error> {
    let mut rng = Rng(a.seed.wrapping_mul(31) | 1);
    let dir = root.join("kills");
    let mut pbx = Pbx::start().await?;
    let cfg = write_config(&dir, &pbx.url, "stream")?;
    let log = dir.join("callguard.log");
    let evidence = dir.join("evidence");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sent = Vec::new();
    for i in 0..a.kills {
        let mut child = spawn(&a.bin, &cfg, &log, None)?;
        let mut ws = pbx.accept(Duration::from_secs(30)).await?;
        // The previous call is not re-announced: the PBX saw it end while we were down.
        send(&mut ws, json!({"type":"calls.snapshot","calls":[]})).await?;
        let id = format!("kill-{i}");
        send(&mut ws, json!({"type":"call.start","call_id":id,"at":now_rfc3339(),"agent":"1001","caller":"0312345678"})).await?;
        send(&mut ws, json!({"type":"media.start","call_id":id,"encoding":"audio/x-mulaw","sample_rate":8000})).await?;
        // 1.5–3.5 s of real-time audio, then kill -9 in the middle of the stream.
        let frames = 75 + rng.below(100);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for seq in 1..=frames {
            tick.tick().await;
            let payload: Vec<u8> = (0..160u64).map(|j| (j * 7 + seq) as u8).collect();
            send(&mut ws, json!({"type":"media","call_id":id,"track":"mixed","seq":seq,"payload":b64.encode(&payload)})).await?;
        }
        child.kill()?; // SIGKILL
        child.wait()?;
        r.kills += 1;
        sent.push((id, frames as f64 * 0.02));
        drop(ws);
    }
    // One more start recovers the last call; then stop cleanly.
    let child = spawn(&a.bin, &cfg, &log, None)?;
    let _ws = pbx.accept(Duration::from_secs(30)).await?;
    let want = a.kills;
    until(Duration::from_secs(60), || {
        std::fs::read_to_string(evidence.join("ledger.jsonl"))
            .map(|t| t.lines().count() >= want)
            .unwrap_or(false)
    })
    .await;
    stop(child, Duration::from_secs(20)).await;
    let found = manifests(&evidence);
    for (id, secs) in &sent {
        let Some(m) = found.iter().find(|m| m["call_id"] == id.as_str()) else {
            continue;
        };
        r.sealed += 1;
        if m["recovered"] == true {
            r.recovered += 1;
        }
        let audio = m["audio"]["audio_secs"].as_f64().unwrap_or(0.0);
        r.lost_secs.push((secs - audio).max(0.0));
    }
    let out = Command::new(&a.bin)
        .args(["verify", "--config"])
        .arg(&cfg)
        .output()?;
    r.verify_ok = out.status.success();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Mutated frames

#[derive(Debug, Default, Clone)]
struct FuzzResult {
    frames: u64,
    crashes: u64,
    reconnects: u64,
    rss_kib: Option<(u64, u64)>,
    log_bytes: u64,
    evidence_bytes: u64,
    clean_exit: bool,
    error: Option<String>,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn du(p: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
            .unwrap_or(0)
    } else {
        meta.len()
    }
}

/// One frame: a valid one, often mutated.
fn fuzz_frame(rng: &mut Rng, seqs: &mut [u64; 16]) -> Message {
    let b64 = base64::engine::general_purpose::STANDARD;
    let c = rng.below(16) as usize;
    let id = format!("fz-{c}");
    let valid = match rng.below(20) {
        0 => {
            json!({"type":"call.start","call_id":id,"at":now_rfc3339(),"agent":"1001","caller":"0312345678"})
        }
        1 => json!({"type":"call.end","call_id":id,"cause":"normal"}),
        2 => {
            let enc = ["audio/x-mulaw", "audio/x-alaw", "audio/l16"][rng.below(3) as usize];
            let rate = [8000, 16000, 48000, 192000][rng.below(4) as usize];
            json!({"type":"media.start","call_id":id,"encoding":enc,"sample_rate":rate})
        }
        3 => json!({"type":"calls.snapshot","calls":[{"call_id":id,"agent":"1001"}]}),
        _ => {
            seqs[c] += 1;
            let seq = match rng.below(10) {
                0 => rng.next() >> rng.below(64),
                1 => seqs[c].saturating_sub(rng.below(1000)),
                2 => seqs[c] * 160,
                _ => seqs[c],
            };
            let track = ["inbound", "outbound", "mixed"][rng.below(3) as usize];
            let len = [0, 1, 3, 160, 320][rng.below(5) as usize];
            json!({"type":"media","call_id":id,"track":track,"seq":seq,"payload":b64.encode(rng.bytes(len))})
        }
    };
    let mut text = valid.to_string().into_bytes();
    if rng.chance(30) {
        return Message::Text(String::from_utf8_lossy(&text).into_owned().into());
    }
    match rng.below(9) {
        0 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(text.len() as u64) as usize;
                text[i] ^= 1 << rng.below(8);
            }
        }
        1 => text.truncate(rng.below(text.len() as u64) as usize),
        2 => {
            let i = rng.below(text.len() as u64) as usize;
            let j = (i + rng.below(64) as usize).min(text.len());
            let piece = text[i..j].to_vec();
            text.splice(i..i, piece);
        }
        3 => {
            let big = [
                "1e308",
                "-1",
                "18446744073709551616",
                "null",
                "true",
                "\"\"",
                "[]",
                "{}",
            ][rng.below(8) as usize];
            let s = String::from_utf8_lossy(&text)
                .replace("\"seq\":", &format!("\"seq\":{big},\"x\":"));
            text = s.into_bytes();
        }
        4 => {
            let long = "あ".repeat(rng.below(40_000) as usize);
            let s = String::from_utf8_lossy(&text).replacen("fz-", &format!("fz-{long}"), 1);
            text = s.into_bytes();
        }
        5 => {
            let depth = rng.below(5_000) as usize;
            text = format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        }
        6 => {
            let n = rng.below(2048) as usize;
            return Message::Binary(rng.bytes(n).into());
        }
        7 => {
            let n = rng.below(512) as usize;
            text = rng.bytes(n);
        }
        _ => {
            let s = String::from_utf8_lossy(&text).replace("\"type\":\"", "\"type\":\"x");
            text = s.into_bytes();
        }
    }
    Message::Text(String::from_utf8_lossy(&text).into_owned().into())
}

async fn fuzz(a: &Args, root: &Path) -> FuzzResult {
    let mut r = FuzzResult::default();
    if let Err(e) = fuzz_run(a, root, &mut r).await {
        r.error = Some(e.to_string());
    }
    r
}

async fn fuzz_run(a: &Args, root: &Path, r: &mut FuzzResult) -> Result<(), Error> {
    let mut rng = Rng(a.seed.wrapping_mul(7919) | 1);
    let dir = root.join("fuzz");
    let mut pbx = Pbx::start().await?;
    let cfg = write_config(&dir, &pbx.url, "stream")?;
    let log = dir.join("callguard.log");
    let mut child = spawn(&a.bin, &cfg, &log, None)?;
    let mut ws = pbx.accept(Duration::from_secs(30)).await?;
    let deadline = Instant::now() + Duration::from_secs(a.fuzz_secs);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let per_tick = (a.fuzz_rate / 100).max(1);
    let mut seqs = [0u64; 16];
    let mut last_sample = Instant::now();
    let sample = |pid: u32, r: &mut FuzzResult| {
        if let Some(kib) = rss_kib(pid) {
            let (lo, hi) = r.rss_kib.unwrap_or((kib, kib));
            r.rss_kib = Some((lo.min(kib), hi.max(kib)));
        }
    };
    while Instant::now() < deadline {
        tick.tick().await;
        if last_sample.elapsed() >= Duration::from_millis(250) {
            sample(child.id(), r);
            last_sample = Instant::now();
        }
        for _ in 0..per_tick {
            let frame = fuzz_frame(&mut rng, &mut seqs);
            if ws.send(frame).await.is_ok() {
                r.frames += 1;
                continue;
            }
            // The connection is gone: a crash, or the daemon dropped it.
            if let Ok(Some(status)) = child.try_wait() {
                r.crashes += 1;
                eprintln!("fuzz: the daemon exited ({status}); restarting");
                child = spawn(&a.bin, &cfg, &log, None)?;
            } else {
                r.reconnects += 1;
            }
            ws = pbx.accept(Duration::from_secs(60)).await?;
            break;
        }
    }
    sample(child.id(), r);
    if let Ok(Some(_)) = child.try_wait() {
        r.crashes += 1;
    } else {
        r.clean_exit = stop(child, Duration::from_secs(30)).await;
    }
    r.log_bytes = du(&log);
    r.evidence_bytes = du(&dir.join("evidence"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), Error> {
    let a = args()?;
    if !a.bin.is_file() {
        return Err(format!("{} is not a file (build it first)", a.bin.display()).into());
    }
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().to_path_buf();
    let t = Instant::now();

    eprintln!(
        "1/3 PBX drops: {} daemons × {} drops, about 40 s",
        a.drop_daemons, a.drops_each
    );
    let mut set = tokio::task::JoinSet::new();
    for k in 0..a.drop_daemons {
        set.spawn(drop_one(
            a.clone(),
            root.clone(),
            k,
            a.seed.wrapping_add(k as u64 * 977),
        ));
    }
    let mut drops = Vec::new();
    while let Some(r) = set.join_next().await {
        drops.push(r?);
    }
    let drops_total: usize = drops.iter().map(|r| r.drops).sum();
    let missed: usize = drops.iter().map(|r| r.missed).sum();
    let repeated: usize = drops.iter().map(|r| r.repeated).sum();
    let drop_errors: Vec<String> = drops.iter().filter_map(|r| r.error.clone()).collect();
    let drop_unclean = drops.iter().filter(|r| !r.clean_exit).count();

    eprintln!("2/3 kill -9: {} kills, about {} s", a.kills, a.kills * 4);
    let k = kills(&a, &root).await;
    let lost_max = k.lost_secs.iter().cloned().fold(0.0f64, f64::max);
    let lost_mean = if k.lost_secs.is_empty() {
        0.0
    } else {
        k.lost_secs.iter().sum::<f64>() / k.lost_secs.len() as f64
    };

    eprintln!(
        "3/3 mutated frames: {} s at {} frames/s",
        a.fuzz_secs, a.fuzz_rate
    );
    let f = fuzz(&a, &root).await;
    let (rss_lo, rss_hi) = f.rss_kib.unwrap_or((0, 0));

    let mib = |kib: u64| kib as f64 / 1024.0;
    let summary = json!({
        "seed": a.seed,
        "wall_secs": t.elapsed().as_secs(),
        "drops": {"daemons": a.drop_daemons, "drops": drops_total, "missed_warnings": missed,
                  "repeated_warnings": repeated, "unclean_exits": drop_unclean, "errors": drop_errors},
        "kills": {"kills": k.kills, "sealed": k.sealed, "recovered": k.recovered,
                  "lost_secs_max": lost_max, "lost_secs_mean": lost_mean, "verify_ok": k.verify_ok,
                  "error": k.error},
        "fuzz": {"secs": a.fuzz_secs, "frames": f.frames, "crashes": f.crashes,
                 "reconnects": f.reconnects, "rss_mib": [mib(rss_lo), mib(rss_hi)],
                 "log_bytes": f.log_bytes, "evidence_bytes": f.evidence_bytes,
                 "clean_exit": f.clean_exit, "error": f.error},
    });
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_vec_pretty(&summary)?)?;
    }
    println!("| what | figure |");
    println!("| --- | --- |");
    println!(
        "| PBX drops survived (websocket dropped mid-call, no close) | {drops_total} of {}; {missed} missed and {repeated} repeated warnings |",
        a.drop_daemons * a.drops_each
    );
    println!(
        "| `kill -9` mid-call recovered | {} of {} sealed ({} recovered), `verify` {} |",
        k.sealed,
        k.kills,
        k.recovered,
        if k.verify_ok { "OK" } else { "FAILED" }
    );
    println!("| seconds of audio lost per kill | at most {lost_max:.2} s, mean {lost_mean:.2} s |");
    println!(
        "| mutated frames | {} in {} s; log {:.1} MiB; evidence {:.1} MiB |",
        f.frames,
        a.fuzz_secs,
        f.log_bytes as f64 / 1048576.0,
        f.evidence_bytes as f64 / 1048576.0
    );
    println!("| crashes | {} |", f.crashes);
    println!(
        "| RSS range during the fuzz | {:.1}–{:.1} MiB |",
        mib(rss_lo),
        mib(rss_hi)
    );
    println!("| tamperings caught | (evidence tamper run) |");
    eprintln!("{}", serde_json::to_string_pretty(&summary)?);
    let failed = missed > 0
        || repeated > 0
        || !drop_errors.is_empty()
        || drops_total < a.drop_daemons * a.drops_each
        || k.error.is_some()
        || k.sealed < k.kills
        || !k.verify_ok
        || f.crashes > 0
        || f.error.is_some();
    if a.keep {
        eprintln!("logs and evidence kept in {}", tmp.keep().display());
    }
    if failed {
        return Err("the fault suite found a failure (see above)".into());
    }
    Ok(())
}
