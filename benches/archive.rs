//! Archive benchmark (scripts/bench-archive.sh): archiving a sealed 60-minute stereo call
//! (≈115 MB) to a real S3 server (s3s-fs on loopback), as a ratio to boto3's `upload_file` of
//! the same WAV to the same server in the same run; the archiver's CPU time while uploading;
//! and the drain rate of a backlog of one-minute calls (folders/s, MB/s).

#[path = "../tests/common/s3.rs"]
mod s3;

use std::path::Path;
use std::time::{Duration, Instant};

use callguard::archive::archiver::Archiver;
use callguard::archive::config::ArchiveConfig;
use callguard::archive::store::Store;
use callguard::evidence::seal::{CallRecord, Sealer};

const BUCKET: &str = "bench";
const ROUNDS: usize = 3;

fn record(id: &str, secs: u64) -> CallRecord {
    let now = chrono::Local::now().fixed_offset();
    CallRecord {
        call_id: id.into(),
        agent: "1001".into(),
        caller: "0312345678".into(),
        direction: "inbound".into(),
        channel: String::new(),
        started_at: now,
        ended_at: Some(now),
        duration_secs: Some(secs),
        end_cause: "normal".into(),
        warnings: Vec::new(),
        source: "stream".into(),
        source_name: String::new(),
        stream_encoding: String::new(),
        truncated: false,
        recovered: false,
        continues: None,
        problems: Vec::new(),
        gaps: 0,
        late_frames: 0,
        incident: Default::default(),
    }
}

/// Stereo 8 kHz 16-bit PCM of `secs` seconds (noise-like, so nothing compresses it away).
fn wav(path: &Path, secs: u64) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    let mut x: u32 = 7;
    for _ in 0..secs * 8000 * 2 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        w.write_sample((x >> 16) as i16).expect("sample");
    }
    w.finalize().expect("finalize");
}

/// User + system CPU time of this process.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 (utime, stime) in clock ticks; after ")" they are at 11 and 12.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn boto3_upload(endpoint: &str, file: &Path, key: &str) -> f64 {
    let script = r#"
import sys, time, boto3
from botocore.config import Config
endpoint, ak, sk, bucket, path, key = sys.argv[1:7]
c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
                 region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
t = time.perf_counter()
c.upload_file(path, bucket, key)
print(time.perf_counter() - t)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args([endpoint, s3::ACCESS_KEY, s3::SECRET_KEY, BUCKET])
        .arg(file)
        .arg(key)
        .output()
        .expect("python3 (boto3) — scripts/bench-archive.sh installs it");
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("seconds")
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let server = s3::S3Server::start(tmp.path(), BUCKET).await;
    let endpoint = server.endpoint();
    std::fs::write(tmp.path().join("ak"), s3::ACCESS_KEY).expect("ak");
    std::fs::write(tmp.path().join("sk"), s3::SECRET_KEY).expect("sk");
    // The shipped defaults, unless ARCHIVE_BENCH_PART_MB / ARCHIVE_BENCH_CONCURRENCY say
    // otherwise (to try other settings without a rebuild).
    let defaults = ArchiveConfig::default();
    let env_or = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let base = ArchiveConfig {
        endpoint: endpoint.clone(),
        bucket: BUCKET.into(),
        path_style: true,
        access_key_file: tmp.path().join("ak").display().to_string(),
        secret_key_file: tmp.path().join("sk").display().to_string(),
        part_size_mb: env_or("ARCHIVE_BENCH_PART_MB", defaults.part_size_mb),
        concurrency: env_or("ARCHIVE_BENCH_CONCURRENCY", defaults.concurrency as u64) as usize,
        ..defaults
    };
    println!(
        "settings: part_size_mb = {}, concurrency = {}",
        base.part_size_mb, base.concurrency
    );
    let host = "bench-host";

    // One sealed 60-minute stereo call.
    let evidence = tmp.path().join("evidence");
    let state = tmp.path().join("state");
    let sealer = Sealer::open(&evidence, &state).expect("sealer");
    let src = tmp.path().join("src.wav");
    wav(&src, 3600);
    let sealed = sealer
        .seal_wav_as_new_call(&src, &record("bench-60min", 3600))
        .expect("seal");
    drop(sealer);
    let wav_path = sealed.dir.join("call.wav");
    let bytes = std::fs::metadata(&wav_path).expect("wav").len();

    let mut ours = Vec::new();
    let mut cpus = Vec::new();
    let mut theirs = Vec::new();
    for round in 0..ROUNDS {
        // Each round archives under a fresh prefix with a fresh state (nothing there yet).
        let mut cfg = base.clone();
        cfg.prefix = format!("round-{round}");
        let data = tmp.path().join(format!("data-{round}"));
        let store = Store::connect(&cfg).await.expect("store");
        let mut a = Archiver::new(store, &cfg, host, &evidence, &data);
        let (c0, t0) = (cpu(), Instant::now());
        let r = a.pass().await.expect("archive");
        let (wall, used) = (t0.elapsed().as_secs_f64(), (cpu() - c0).as_secs_f64());
        assert_eq!(r.lines, 1);
        ours.push(wall);
        cpus.push(used);
        theirs.push(boto3_upload(
            &endpoint,
            &wav_path,
            &format!("boto3-{round}/call.wav"),
        ));
    }
    let (o, t, c) = (median(ours), median(theirs), median(cpus));
    let mb = bytes as f64 / 1e6;
    println!(
        "archive 60-min stereo call ({mb:.1} MB WAV + manifest, signature, ledger line): callguard {o:.2} s, boto3 upload_file {t:.2} s, ratio {:.2} (target <= 1.2)",
        o / t
    );
    println!(
        "archiver CPU while uploading: {c:.2} s user+system for {mb:.1} MB ({:.0} % of one core over the upload)",
        100.0 * c / o
    );

    // Backlog drain: 40 one-minute calls sealed while the store was away.
    let evidence = tmp.path().join("evidence-backlog");
    let state = tmp.path().join("state-backlog");
    let sealer = Sealer::open(&evidence, &state).expect("sealer");
    let one = tmp.path().join("one-minute.wav");
    wav(&one, 60);
    let mut total = 0u64;
    let folders = 40;
    for i in 0..folders {
        let src = tmp.path().join(format!("b{i}.wav"));
        std::fs::copy(&one, &src).expect("copy");
        let s = sealer
            .seal_wav_as_new_call(&src, &record(&format!("backlog-{i}"), 60))
            .expect("seal");
        for e in std::fs::read_dir(&s.dir).expect("dir").flatten() {
            total += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    drop(sealer);
    let mut cfg = base.clone();
    cfg.prefix = "backlog".into();
    let store = Store::connect(&cfg).await.expect("store");
    let mut a = Archiver::new(store, &cfg, host, &evidence, &state);
    let t0 = Instant::now();
    let r = a.pass().await.expect("drain");
    let wall = t0.elapsed().as_secs_f64();
    assert_eq!(r.lines, folders);
    println!(
        "backlog drain: {folders} one-minute calls ({:.1} MB) in {wall:.2} s: {:.1} folders/s, {:.1} MB/s",
        total as f64 / 1e6,
        folders as f64 / wall,
        total as f64 / 1e6 / wall
    );
}
