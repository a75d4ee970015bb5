//! Archive benchmark (scripts/bench-archive.sh): the real daemon archiving a sealed 60-minute
//! stereo call (≈115 MB) to a real S3 server (s3s-fs on loopback), as a ratio to boto3's
//! `upload_file` of the same WAV to the same server in the same run; the daemon's CPU time while
//! it uploads; and the rate at which it drains a backlog of one-minute calls after an outage
//! (folders/s, MB/s).
//!
//! This program only prepares the evidence, starts the daemon and watches the archiver's state
//! file; the daemon binary does the work. Under `cargo bench` that is the optimized build of
//! this tree; `CALLGUARD_BENCH_BIN` names another (e.g. `target/release/callguard` when this
//! harness itself runs unoptimized through `cargo test --bench archive`).

#[path = "../tests/common/s3.rs"]
mod s3;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use callguard::archive::archiver::{State, state_dir};
use callguard::archive::config::ArchiveConfig;
use callguard::evidence::seal::{CallRecord, Sealer};

const BUCKET: &str = "bench";
const ROUNDS: usize = 3;
/// The longest a run may take before the benchmark gives up.
const PATIENCE: Duration = Duration::from_secs(900);

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

/// User + system CPU time of a process (clock ticks of 10 ms).
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 (utime, stime); after ")" they are at 11 and 12.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn daemon_binary() -> PathBuf {
    std::env::var_os("CALLGUARD_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_callguard")))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// A daemon configuration archiving `evidence` with its state in `data`.
fn config(dir: &Path, name: &str, evidence: &Path, data: &Path, a: &ArchiveConfig) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[pbx]\nurl = \"ws://127.0.0.1:9/\"\n[prompt]\nlocal = false\n[state]\ndir = \"{data}\"\n\
             [evidence]\ndir = \"{ev}\"\n[control]\nsocket = \"{sock}\"\n\
             [archive]\nendpoint = \"{endpoint}\"\nbucket = \"{bucket}\"\nprefix = \"{prefix}\"\n\
             path_style = true\naccess_key_file = \"{ak}\"\nsecret_key_file = \"{sk}\"\n\
             part_size_mb = {part}\nconcurrency = {conc}\n",
            data = data.display(),
            ev = evidence.display(),
            sock = dir.join(format!("{name}.sock")).display(),
            endpoint = a.endpoint,
            bucket = a.bucket,
            prefix = a.prefix,
            ak = a.access_key_file,
            sk = a.secret_key_file,
            part = a.part_size_mb,
            conc = a.concurrency,
        ),
    )
    .expect("config");
    path
}

/// Starts the daemon, waits until `lines` ledger lines are archived; (wall seconds from the
/// start, daemon CPU seconds over the same time).
fn archive_with_daemon(dir: &Path, config: &Path, data: &Path, lines: u64) -> (f64, f64) {
    let log = std::fs::File::create(dir.join(format!(
        "{}.log",
        config.file_stem().unwrap_or_default().to_string_lossy()
    )))
    .expect("log");
    let t0 = Instant::now();
    let mut child: Child = Command::new(daemon_binary())
        .args(["run", "--config"])
        .arg(config)
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
        .env("RUST_LOG", "warn")
        .env_remove("CALLGUARD_CONFIG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start the daemon");
    let state = state_dir(data);
    loop {
        if State::load(&state).done_through >= lines {
            break;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!("the daemon exited ({st}); see {}", dir.display());
        }
        assert!(t0.elapsed() < PATIENCE, "not archived in time");
        // Poll interval only: the state file is what the daemon writes once a line is done.
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_of(child.id()).as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    (wall, cpu)
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
    let out = Command::new("python3")
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
    // The S3 server runs under this runtime; the rest of the harness is plain blocking code.
    let tmp = tempfile::tempdir().expect("tmp");
    let server = rt.block_on(s3::S3Server::start(tmp.path(), BUCKET));
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
        "daemon {}; settings: part_size_mb = {}, concurrency = {}",
        daemon_binary().display(),
        base.part_size_mb,
        base.concurrency
    );

    // One sealed 60-minute stereo call.
    let evidence = tmp.path().join("evidence");
    let sealed_state = tmp.path().join("state");
    let sealer = Sealer::open(&evidence, &sealed_state).expect("sealer");
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
        // Each round: a fresh prefix and a fresh copy of the daemon's state (keys, ledger head;
        // nothing archived yet).
        let mut cfg = base.clone();
        cfg.prefix = format!("round-{round}");
        let data = tmp.path().join(format!("data-{round}"));
        copy_dir(&sealed_state, &data);
        let conf = config(
            tmp.path(),
            &format!("round-{round}"),
            &evidence,
            &data,
            &cfg,
        );
        let (wall, used) = archive_with_daemon(tmp.path(), &conf, &data, 1);
        ours.push(wall);
        cpus.push(used);
        theirs.push(boto3_upload(
            &endpoint,
            &wav_path,
            &format!("boto3-{round}/call.wav"),
        ));
    }
    let (o, t, c) = (median(ours.clone()), median(theirs.clone()), median(cpus));
    let mb = bytes as f64 / 1e6;
    println!("rounds (s): callguard {ours:.2?}, boto3 {theirs:.2?}");
    println!(
        "archive 60-min stereo call ({mb:.1} MB WAV + manifest, signature, ledger line; from the daemon's start): callguard {o:.2} s, boto3 upload_file {t:.2} s, ratio {:.2} (target <= 1.2)",
        o / t
    );
    println!(
        "daemon CPU while uploading: {c:.2} s user+system for {mb:.1} MB ({:.0} % of one core over the upload)",
        100.0 * c / o
    );

    // Backlog drain: 40 one-minute calls sealed while the store was away.
    let evidence = tmp.path().join("evidence-backlog");
    let state = tmp.path().join("state-backlog");
    let sealer = Sealer::open(&evidence, &state).expect("sealer");
    let one = tmp.path().join("one-minute.wav");
    wav(&one, 60);
    let mut total = 0u64;
    let folders = 40u64;
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
    let conf = config(tmp.path(), "backlog", &evidence, &state, &cfg);
    let (wall, used) = archive_with_daemon(tmp.path(), &conf, &state, folders);
    println!(
        "backlog drain: {folders} one-minute calls ({:.1} MB) in {wall:.2} s from the daemon's start: {:.1} folders/s, {:.1} MB/s; daemon CPU {used:.2} s",
        total as f64 / 1e6,
        folders as f64 / wall,
        total as f64 / 1e6 / wall
    );
    drop(server);
}
