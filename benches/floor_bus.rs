//! The floor bus, measured against a real `nats-server` (JetStream, loopback, temp store):
//!
//! 1. daemon CPU (every thread's, from its CPU-time clock) for the same ingest flood with the
//!    floor publisher off and on, in the same run (off then on, on then off, …): the ratio of
//!    the best and of the median of each side, the median of each round's own ratio, and all
//!    rounds pooled (total on / total off) with a 95 % interval from resampling the rounds. Three floods, each through the real `callguard run` (no recordings, no sound,
//!    warnings-only log):
//!    - the generic protocol, densest: calls of start, 20 media frames, end;
//!    - the generic protocol, calls of a realistic minute: start, 3,000 media frames, end;
//!    - a real Asterisk's ARI event stream: the daemon in ARI mode against the fake Asterisk of
//!      the tests, each call the 93 events of the Asterisk 22.10.1 capture of a bridged call
//!      (`ari-observed-bridged.jsonl`; most are events callguard ignores: ChannelVarset,
//!      ChannelDialplan, DeviceStateChanged, …), renumbered so that every call is a call of its
//!      own. The daemon follows one channel of each (the agent's), so the floor gets two events
//!      per call: its start and its end.
//!
//!    Every message is encoded before the count starts and sent at a steady 128 messages per
//!    millisecond (see [`SEND_PER_MS`]). With the floor on, a run ends once the stream holds
//!    each call's start and end (exactly once) and the daemon's CPU has stopped growing. The
//!    same work costs this machine's CPUs up to twice as much from one run to the next (the
//!    same `sha256sum` takes 0.19 to 0.37 s), so each flood runs many rounds and gives the best
//!    and the median of each side. The floor's own threads (`callguard-floor`: the sink, the
//!    publisher and the NATS client; `floor-backlog`: the group commits) are also counted alone
//!    in each "on" run: their CPU does not move with how the daemon's other threads happened to
//!    share their work, and the rest of the daemon is the "on" run less them;
//! 2. publish latency for 10,000 events: the server's PubAck round trip alone, and the whole
//!    path (written to the durable backlog → published → seen by a subscriber);
//! 3. backlog drain rate: 10,000 events queued while the server is away, then drained.
//!
//! Run: `cargo bench --bench floor_bus`. Environment: `FLOOD_CALLS` (densest flood, 10,000
//! calls), `FLOOD_LONG_CALLS` (minute-long calls, 200), `FLOOD_ARI_CALLS` (ARI calls, 3,000),
//! `FLOOD_ROUNDS` (off/on rounds of each flood, 10), `FLOOD_PER_MS` (messages sent per
//! millisecond, 128; 0: as fast as the sender can), `FLOOD_PIN` (`1`: the daemon alone on one
//! CPU, the rest on another), `FLOOD_DAEMON` (the `callguard` binary to flood, e.g. the
//! previous build's for an A/B; default: this build's), `FLOOD_VERBOSE` (set: every round's
//! figures on stderr, with each daemon thread's CPU and context switches), `LATENCY_EVENTS`
//! (10,000), `DRAIN_EVENTS` (10,000).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use callguard::floor::backlog::Backlog;
use callguard::floor::config::FloorConfig;
use callguard::floor::contract::{self, EventBody, FloorEvent, PbxState};
use callguard::floor::link::{ConnectMode, Link};
use callguard::floor::state::FloorState;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

#[allow(dead_code)]
#[path = "../tests/common/ari.rs"]
mod ari;

fn env_n(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A child process, killed (and reaped) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Nats {
    _child: Killed,
    url: String,
    _dir: tempfile::TempDir,
}

fn nats_binary() -> std::path::PathBuf {
    for p in ["/usr/sbin/nats-server", "/usr/bin/nats-server"] {
        if Path::new(p).is_file() {
            return p.into();
        }
    }
    panic!("nats-server is not installed (make deps)");
}

async fn start_nats() -> Nats {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new(nats_binary())
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // JetStream answers (even "no such stream") once it is up.
        if let Ok(c) = async_nats::connect(&url).await
            && let Err(e) = jetstream::new(c).get_stream("NONE").await
            && matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(_)
            )
        {
            break;
        }
        assert!(Instant::now() < deadline, "nats-server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Nats {
        _child: Killed(child),
        url,
        _dir: dir,
    }
}

async fn create_stream(url: &str) -> jetstream::stream::Stream {
    let c = async_nats::connect(url).await.expect("connect");
    jetstream::new(c)
        .create_stream(jetstream::stream::Config {
            name: contract::STREAM.into(),
            subjects: contract::stream_subjects(),
            duplicate_window: contract::DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .expect("stream")
}

fn heartbeat(i: usize) -> FloorEvent {
    FloorEvent {
        schema: contract::SCHEMA.into(),
        id: contract::event_id(&["bench", &i.to_string()]),
        site: "bench".into(),
        host: "ws".into(),
        agent: "1001".into(),
        agent_name: "佐藤".into(),
        call_id: Some(format!("c-{i}")),
        caller: Default::default(),
        at: chrono::Local::now().fixed_offset(),
        elapsed_secs: Some(1),
        level: Some(1),
        body: EventBody::Heartbeat {
            pbx_state: PbxState::Up,
            pbx_detail: String::new(),
            open_calls: 1,
            version: "bench".into(),
            interval_secs: 30,
            backlog: 0,
            up_since: None,
        },
    }
}

fn floor_cfg(url: &str) -> FloorConfig {
    FloorConfig {
        nats_url: url.into(),
        site: "bench".into(),
        ..FloorConfig::default()
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// The name and the user + system CPU seconds in a `/proc/…/stat` line.
fn parse_stat(stat: &str) -> (&str, f64) {
    let (head, rest) = stat.rsplit_once(')').unwrap_or(("", ""));
    let name = head.split_once('(').map_or("?", |(_, n)| n);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let per_sec = rustix::param::clock_ticks_per_second() as f64;
    (name, (ticks(11) + ticks(12)) / per_sec)
}

/// CPU seconds (user + system) of a process, every thread of it (also those that have ended),
/// to the nanosecond: its CPU-time clock. `/proc/<pid>/stat` counts user and system time apart
/// in clock ticks (0.01 s), which moved a flood's half second by up to 4 % from one reading to
/// the next: as much as the floor's whole share.
fn cpu_secs(pid: u32) -> f64 {
    let pid = libc::pid_t::try_from(pid).expect("a pid fits a pid_t");
    let mut clock: libc::clockid_t = 0;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls write only through the pointers given, to live locals of the types
    // they write.
    let ok = unsafe {
        libc::clock_getcpuclockid(pid, &mut clock) == 0 && libc::clock_gettime(clock, &mut ts) == 0
    };
    assert!(ok, "cannot read the CPU clock of process {pid}");
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Each thread of a process: its `/proc/<pid>/task/<tid>` folder and its stat line.
fn thread_stats(pid: u32) -> Vec<(std::path::PathBuf, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .map(|t| {
            let dir = t.path();
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            (dir, stat)
        })
        .collect()
}

/// CPU seconds of the threads of process `pid` with one of `names` (the floor's own threads),
/// to the nanosecond: its `schedstat` (a thread's share of a flood is a few hundredths of a second,
/// which `stat`'s clock ticks would round to 0.01 s).
fn thread_cpu(pid: u32, names: &[&str]) -> f64 {
    thread_stats(pid)
        .iter()
        .filter(|(_, stat)| names.contains(&parse_stat(stat).0))
        .filter_map(|(dir, _)| {
            let s = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            s.split_whitespace().next()?.parse::<f64>().ok()
        })
        .map(|ns| ns / 1e9)
        .sum()
}

/// The floor's threads in the daemon: its own runtime (`src/floor/sink.rs`: the sink, the
/// publisher, the NATS client) and the backlog's writer (`src/floor/backlog.rs`: the group
/// commits).
const FLOOR_THREADS: [&str; 2] = ["callguard-floor", "floor-backlog"];

/// What one flood cost the daemon.
struct Cpu {
    /// The whole daemon (user + system, every thread).
    daemon: f64,
    /// The floor's own threads alone ([`FLOOR_THREADS`]).
    floor: f64,
}

/// With `FLOOD_VERBOSE`: each thread of a process, its CPU seconds and context switches.
fn threads(pid: u32) -> String {
    let mut out = Vec::new();
    for (dir, stat) in thread_stats(pid) {
        let (name, cpu) = parse_stat(&stat);
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let sw: u64 = status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        if cpu > 0.0 || sw > 100 {
            out.push(format!("{name} {cpu:.2}s/{sw}sw"));
        }
    }
    out.join(", ")
}

/// Subjects of the call events (start and end) of every workstation of the bench's site.
const CALL_SUBJECTS: &str = "callguard.v1.bench.*.call.>";

/// Call events in the stream so far (heartbeats, which come when they will, left out).
async fn call_events(stream: &jetstream::stream::Stream) -> u64 {
    let mut subjects = stream
        .info_with_subjects(CALL_SUBJECTS)
        .await
        .expect("stream info");
    let mut n = 0;
    while let Some(s) = subjects.next().await {
        n += s.expect("subject counts").1 as u64;
    }
    n
}

/// Writes every message in batches of 64 (`feed` them, then one `flush`).
async fn send_batches<S>(ws: &mut S, messages: &[Message])
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::fmt::Debug,
{
    let per_ms = env_n("FLOOD_PER_MS", SEND_PER_MS);
    let (chunk, paced) = if per_ms == 0 {
        (64, false)
    } else {
        (per_ms, true)
    };
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for batch in messages.chunks(chunk) {
        if paced {
            tick.tick().await;
        }
        for m in batch {
            ws.feed(m.clone()).await.expect("send");
        }
        ws.flush().await.expect("flush");
    }
}

/// Messages a flood sends per millisecond (`FLOOD_PER_MS`; 0: as fast as this process can).
/// A PBX sends its events as they happen, whatever the workstation is doing; a sender that
/// goes as fast as it can is slowed down whenever `nats-server` (busy only with the floor on)
/// takes its CPU, and the daemon then reads the same flood in more, smaller pieces, at a
/// higher cost per message that has nothing to do with the floor. 128,000 messages a second
/// is a flood still: each ARI call's 93 events come in under a millisecond.
const SEND_PER_MS: usize = 128;

/// The real `callguard run` of one flood run, killed when dropped.
struct FloodDaemon {
    child: Killed,
    _dir: tempfile::TempDir,
}

/// The daemon the floods run: `FLOOD_DAEMON` (another build, for an A/B of two versions with
/// the same bench), else this build's.
fn daemon_binary() -> std::ffi::OsString {
    std::env::var_os("FLOOD_DAEMON").unwrap_or_else(|| env!("CARGO_BIN_EXE_callguard").into())
}

impl FloodDaemon {
    /// Starts it in `dir` with `pbx` (its `[pbx]` and `[agent]` tables) and, with `floor_url`,
    /// the floor publisher. The rest as on a quiet workstation: no recordings, no sound, no
    /// desktop bus, only warnings logged.
    fn start(dir: tempfile::TempDir, pbx: &str, floor_url: Option<&str>) -> FloodDaemon {
        let config = dir.path().join("callguard.toml");
        let mut text = format!(
            "{pbx}[prompt]\nlocal = false\n\
             [state]\ndir = \"{0}/state\"\n[evidence]\ndir = \"{0}/evidence\"\nsource = \"off\"\n\
             [control]\nsocket = \"{0}/control.sock\"\n[log]\nlevel = \"warn\"\n",
            dir.path().display()
        );
        if let Some(u) = floor_url {
            text.push_str(&format!(
                "[floor]\nnats_url = \"{u}\"\nsite = \"bench\"\nshow_history = false\n"
            ));
        }
        std::fs::write(&config, text).expect("config");
        let mut cmd = match pinned() {
            // `taskset` execs the daemon: the pid stays the daemon's.
            true => {
                let mut c = Command::new("taskset");
                c.args(["-c", DAEMON_CPU]).arg(daemon_binary());
                c
            }
            false => Command::new(daemon_binary()),
        };
        let child = cmd
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("CALLGUARD_CONFIG")
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn callguard");
        FloodDaemon {
            child: Killed(child),
            _dir: dir,
        }
    }

    /// Sends the flood (`messages`, encoded beforehand so that only the daemon's work is
    /// counted) on its PBX connection `ws`; returns the daemon's CPU seconds for it. With the
    /// floor on, the flood is done only when the stream holds `call_events` more call events
    /// (the daemon's CPU can stand still while it waits for the disk or the server), and then
    /// it must hold exactly that many more.
    async fn flood<S>(
        &self,
        ws: &mut S,
        messages: &[Message],
        floor_url: Option<&str>,
        call_events: u64,
    ) -> Cpu
    where
        S: futures_util::Sink<Message> + Unpin,
        S::Error: std::fmt::Debug,
    {
        // Let start-up settle before counting.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pid = self.child.0.id();
        let stream = match floor_url {
            Some(u) => Some(
                jetstream::new(async_nats::connect(u).await.expect("connect"))
                    .get_stream(contract::STREAM)
                    .await
                    .expect("stream"),
            ),
            None => None,
        };
        let before = match &stream {
            Some(s) => self::call_events(s).await,
            None => 0,
        };
        // The same arrival pattern with the floor off and on (one message per write made the
        // daemon's CPU depend on how this process happened to be scheduled).
        let cpu0 = cpu_secs(pid);
        let floor0 = thread_cpu(pid, &FLOOR_THREADS);
        send_batches(ws, messages).await;
        if let Some(s) = &stream {
            // However long a flood takes, events keep arriving: a minute without one is a
            // stuck publisher, not a slow one.
            let (mut seen, mut progress) = (before, Instant::now());
            loop {
                let n = self::call_events(s).await;
                if n >= before + call_events {
                    break;
                }
                if n > seen {
                    (seen, progress) = (n, Instant::now());
                }
                assert!(
                    progress.elapsed() < Duration::from_secs(60),
                    "the floor got no call event for a minute ({} of {call_events})",
                    n - before
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // Wait until the daemon has worked through the flood: its CPU time stops growing.
        let mut last = cpu_secs(pid);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = cpu_secs(pid);
            if now - last < 0.005 {
                break;
            }
            last = now;
        }
        let cpu = Cpu {
            daemon: cpu_secs(pid) - cpu0,
            floor: thread_cpu(pid, &FLOOR_THREADS) - floor0,
        };
        if std::env::var_os("FLOOD_VERBOSE").is_some() {
            eprintln!(
                "  {}: {}",
                if floor_url.is_some() { "on" } else { "off" },
                threads(pid)
            );
        }
        if let Some(s) = &stream {
            let got = self::call_events(s).await - before;
            assert_eq!(
                got, call_events,
                "call events the floor got for this flood (every call's start and end, once)"
            );
        }
        cpu
    }
}

/// Runs the daemon through a flood of the generic protocol: `calls` calls of start, `frames`
/// media frames, end. Returns its CPU seconds for it. `round` keeps call ids unique across
/// rounds: events are identified by the PBX's call id, so a call id used again within the
/// stream's duplicate window would be dropped by the server as a duplicate.
async fn flood_cpu(calls: usize, frames: u64, floor_url: Option<&str>, round: usize) -> Cpu {
    let payload = base64_silence();
    let mut messages = Vec::with_capacity(calls * (frames as usize + 3));
    for i in 0..calls {
        let id = format!("c-{frames}-{round}-{i}");
        let at = chrono::Local::now().fixed_offset().to_rfc3339();
        messages.push(serde_json::json!({"type":"call.start","call_id":id,"agent":"1001","caller":"0312345678","at":at}));
        messages.push(serde_json::json!({"type":"media.start","call_id":id,"encoding":"audio/x-mulaw","sample_rate":8000}));
        for seq in 1..=frames {
            messages.push(serde_json::json!({"type":"media","call_id":id,"track":"mixed","seq":seq,"payload":payload}));
        }
        messages.push(serde_json::json!({"type":"call.end","call_id":id,"cause":"normal"}));
    }
    let messages: Vec<Message> = messages
        .into_iter()
        .map(|m| Message::text(m.to_string()))
        .collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("addr"));
    let pbx = format!("[pbx]\nurl = \"{url}\"\n[agent]\nextension = \"1001\"\n");
    let daemon = FloodDaemon::start(tempfile::tempdir().expect("tempdir"), &pbx, floor_url);
    let (stream, _) = listener.accept().await.expect("daemon connects");
    let mut ws = tokio_tungstenite::accept_async(stream)
        .await
        .expect("websocket");
    daemon
        .flood(&mut ws, &messages, floor_url, 2 * calls as u64)
        .await
}

/// The real Asterisk 22.10.1 capture of one bridged call (`tests/fixtures/asterisk-22.10.1/`).
const ARI_CAPTURE: &str = "ari-observed-bridged.jsonl";
/// The capture's Asterisk unique ids are `<epoch>.<sequence>` with this epoch.
const CAPTURE_EPOCH: u64 = 1795354434;
/// Unique ids (channels) the capture's call uses: `….5` to `….8`.
const CAPTURE_IDS_PER_CALL: u64 = 4;
/// The capture's bridge id.
const CAPTURE_BRIDGE: &str = "e2e0cfec-90ed-42a7-9ff4-98deff1f4b13";
/// Counters in the capture's two Local channels' names (`Local/…-00000002;1`).
const CAPTURE_LOCAL_COUNTERS: [u32; 2] = [2, 3];
const ARI_USER: &str = "callguard";
const ARI_PASSWORD: &str = "s3cret-ari";

/// Call `k` of round `round`: the capture's lines with every id that makes the call itself
/// renumbered as a real Asterisk would number its next calls (unique ids `<epoch>.<seq>` with
/// the sequence going on, Local channel counters going on, a bridge id of its own), and the
/// epoch moved on by `round`. The call's snoop and recording take their names from the agent
/// channel's id, so they change with it. The floor identifies a call's events by the PBX's
/// call id: a repeated one would be dropped by the server as a duplicate.
fn ari_call(capture: &[String], round: usize, k: usize) -> Vec<String> {
    let epoch = CAPTURE_EPOCH + round as u64;
    let shift = CAPTURE_IDS_PER_CALL * k as u64;
    let bridge = format!("e2e0cfec-90ed-42a7-{round:04x}-{k:012x}");
    capture
        .iter()
        .map(|line| {
            let mut line = renumber_unique_ids(line, epoch, shift).replace(CAPTURE_BRIDGE, &bridge);
            for c in CAPTURE_LOCAL_COUNTERS {
                let next = c as usize + CAPTURE_LOCAL_COUNTERS.len() * k;
                line = line.replace(&format!("-{c:08x};"), &format!("-{next:08x};"));
            }
            line
        })
        .collect()
}

/// `line` with every `<CAPTURE_EPOCH>.<seq>` as `<epoch>.<seq + shift>`.
fn renumber_unique_ids(line: &str, epoch: u64, shift: u64) -> String {
    let from = format!("{CAPTURE_EPOCH}.");
    let mut out = String::with_capacity(line.len() + 64);
    let mut rest = line;
    while let Some(at) = rest.find(&from) {
        out.push_str(&rest[..at]);
        rest = &rest[at + from.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let seq: u64 = rest[..digits]
            .parse()
            .expect("the capture's unique ids are <epoch>.<sequence>");
        out.push_str(&format!("{epoch}.{}", seq + shift));
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Runs the daemon, in ARI mode against the fake Asterisk of the tests, through `calls` calls
/// of the real capture (each renumbered, see [`ari_call`]); returns its CPU seconds for it.
async fn ari_flood_cpu(
    calls: usize,
    capture: &[String],
    floor_url: Option<&str>,
    round: usize,
) -> Cpu {
    let messages: Vec<Message> = (0..calls)
        .flat_map(|k| ari_call(capture, round, k))
        .map(Message::text)
        .collect();
    let mut fake = ari::FakeAri::start(ARI_USER, ARI_PASSWORD).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("ari.password");
    std::fs::write(&password, format!("{ARI_PASSWORD}\n")).expect("password file");
    // The capture's application and agent (the `;1` half of its agent's Local channel).
    let pbx = format!(
        "[pbx]\nkind = \"asterisk\"\nurl = \"{}\"\napp = \"callguard-floor\"\n\
         username = \"{ARI_USER}\"\npassword_file = \"{}\"\n\
         [agent]\nendpoint = \"Local/1001@agentphones\"\n",
        fake.url,
        password.display()
    );
    let daemon = FloodDaemon::start(dir, &pbx, floor_url);
    let conn = fake.accept().await;
    // Connected: the resync (the channels Asterisk has now) is done.
    fake.wait_for("the resync", |r, _| {
        r.iter().any(|s| s.path == "/ari/channels")
    })
    .await;
    let mut sink = conn.sink().await;
    // Two floor events per call, its start and its end: of the capture's channels only the
    // agent's is a call (the customer's Local pair and the `;2` half are not), and with no
    // recording and a call of seconds there is no warning, problem or ledger event.
    daemon
        .flood(&mut *sink, &messages, floor_url, 2 * calls as u64)
        .await
}

/// The CPU seconds of each side of one flood over its rounds.
struct OffOn {
    off: Vec<f64>,
    on: Vec<f64>,
    /// The floor's own threads in each "on" run.
    floor: Vec<f64>,
}

impl OffOn {
    /// Best and median of each side, and their ratios; and the median of each round's own
    /// ratio (its "on" against the "off" run beside it, so a slow drift of the machine weighs on
    /// both). On this machine the same work costs up to twice as much from one run
    /// to the next, in both directions: the best of each side is its least disturbed run, the
    /// median how a typical run went.
    fn summary(&self, events: u64) -> String {
        let best = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n == 0 {
                f64::NAN
            } else if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        };
        let (b_off, b_on) = (best(&self.off), best(&self.on));
        let (m_off, m_on) = (median(&self.off), median(&self.on));
        let paired: Vec<f64> = self
            .off
            .iter()
            .zip(&self.on)
            .filter(|(off, _)| **off > 0.0)
            .map(|(off, on)| on / off)
            .collect();
        let m_floor = median(&self.floor);
        // The "on" runs less the floor's threads: what having the floor on did to the rest of
        // the daemon (the same work as "off").
        let rest: Vec<f64> = self
            .on
            .iter()
            .zip(&self.floor)
            .map(|(on, f)| on - f)
            .collect();
        let m_rest = median(&rest);
        // The floor's threads on top of the "off" run beside them: the floor's cost without the
        // noise of the rest of the daemon.
        let off_plus_floor: Vec<f64> = self
            .off
            .iter()
            .zip(&self.floor)
            .map(|(o, f)| o + f)
            .collect();
        let (whole, whole_lo, whole_hi) = pooled(&self.off, &self.on);
        let (threads, threads_lo, threads_hi) = pooled(&self.off, &off_plus_floor);
        format!(
            "best of {}: floor off {b_off:.3} s, on {b_on:.3} s: {:.2}x; median: off {m_off:.3} s, on {m_on:.3} s: {:.2}x; median of the rounds' own ratios: {:.2}x; the floor's own threads: median {m_floor:.3} s ({:.1} µs per call event), (off + them) / off = {:.2}x; the rest of the daemon with the floor on: median {m_rest:.3} s, {:.2}x of off; all rounds together (total on / total off, 95 % interval over the rounds): whole daemon {whole:.3}x ({whole_lo:.3}-{whole_hi:.3}x), off + the floor's threads {threads:.3}x ({threads_lo:.3}-{threads_hi:.3}x)",
            self.off.len(),
            b_on / b_off,
            m_on / m_off,
            median(&paired),
            m_floor * 1e6 / events.max(1) as f64,
            (m_off + m_floor) / m_off,
            m_rest / m_off
        )
    }
}

/// The ratio of the totals of `on` and `off` (paired rounds), and a 95 % interval for it from
/// resampling the rounds with replacement (a paired bootstrap: each round keeps its two sides,
/// so the machine's drift from round to round stays out of the interval). A fixed seed makes
/// the interval the same for the same figures.
fn pooled(off: &[f64], on: &[f64]) -> (f64, f64, f64) {
    let n = off.len().min(on.len());
    let ratio = |idx: &mut dyn Iterator<Item = usize>| {
        let (mut a, mut b) = (0.0, 0.0);
        for i in idx {
            a += off[i];
            b += on[i];
        }
        if a > 0.0 { b / a } else { f64::NAN }
    };
    let whole = ratio(&mut (0..n));
    if n < 2 {
        return (whole, whole, whole);
    }
    // splitmix64: enough to pick rounds, and no dependency for it.
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    const RESAMPLES: usize = 4000;
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| ratio(&mut (0..n).map(|_| (next() % n as u64) as usize)))
        .collect();
    ratios.sort_by(f64::total_cmp);
    (
        whole,
        ratios[RESAMPLES * 25 / 1000],
        ratios[RESAMPLES * 975 / 1000 - 1],
    )
}

/// `rounds` of each, in the same run, in pairs: off then on, then on then off, and so on, so a
/// machine that slowly gets faster or slower weighs on both sides alike.
async fn off_on<F, Fut>(rounds: usize, mut run: F) -> OffOn
where
    F: FnMut(bool, usize) -> Fut,
    Fut: std::future::Future<Output = Cpu>,
{
    let mut r = OffOn {
        off: Vec::new(),
        on: Vec::new(),
        floor: Vec::new(),
    };
    for round in 0..rounds {
        let (a, Cpu { daemon: b, floor }) = if round % 2 == 0 {
            let a = run(false, round).await.daemon;
            (a, run(true, round).await)
        } else {
            let on = run(true, round).await;
            (run(false, round).await.daemon, on)
        };
        if std::env::var_os("FLOOD_VERBOSE").is_some() {
            eprintln!("round {round}: off {a:.3} on {b:.3}");
        }
        r.off.push(a);
        r.on.push(b);
        r.floor.push(floor);
    }
    r
}

fn base64_silence() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([0xffu8; 160])
}

/// The CPU the flood's daemon runs on when [`pinned`]; everything else (this process, the fake
/// PBX, `nats-server`) runs on [`OTHERS_CPU`].
const DAEMON_CPU: &str = "0";
const OTHERS_CPU: &str = "1";

/// Whether the daemon gets a CPU of its own (`FLOOD_PIN=1`, with two CPUs or more). By
/// default it shares the CPUs with the sender and the server, as on a workstation where the
/// system schedules it; pinned, its tasks never wake each other across CPUs, so the daemon
/// costs less with the floor off and the floor's extra threads weigh more.
fn pinned() -> bool {
    std::env::var("FLOOD_PIN").is_ok_and(|v| v == "1")
        && std::thread::available_parallelism().map_or(1, |n| n.get()) >= 2
}

/// Moves this process (and so `nats-server` and the fake PBX it starts) to [`OTHERS_CPU`].
fn pin_self() {
    let ok = Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            OTHERS_CPU,
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "taskset (util-linux) could not pin the benchmark to CPU {OTHERS_CPU}"
    );
}

fn main() {
    if pinned() {
        pin_self();
        eprintln!(
            "floods: the daemon runs on CPU {DAEMON_CPU}, the sender and nats-server on CPU {OTHERS_CPU}"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let calls = env_n("FLOOD_CALLS", 10_000);
        let ari_calls = env_n("FLOOD_ARI_CALLS", 3_000);
        let latency_n = env_n("LATENCY_EVENTS", 10_000);
        let drain_n = env_n("DRAIN_EVENTS", 10_000);

        // 1. CPU, publisher off vs on, same flood, same run (in pairs, alternating which goes
        // first).
        // Three floods: the densest (calls of 20 frames, 0.4 s of audio: the floor's share is the
        // largest it can be), calls of a realistic minute (3,000 frames), and the real
        // Asterisk's ARI event stream (most of it events callguard ignores).
        let nats = start_nats().await;
        create_stream(&nats.url).await;
        let rounds = env_n("FLOOD_ROUNDS", 10);
        let long_calls = env_n("FLOOD_LONG_CALLS", 200);
        for (calls, frames) in [(calls, 20u64), (long_calls, 3_000)] {
            let r = off_on(rounds, |floor, round| {
                flood_cpu(calls, frames, floor.then_some(nats.url.as_str()), round)
            })
            .await;
            println!(
                "daemon CPU for {calls} calls (start, {frames} media frames, end): {}",
                r.summary(2 * calls as u64)
            );
        }
        let capture = ari::fixture_lines(ARI_CAPTURE);
        let r = off_on(rounds, |floor, round| {
            ari_flood_cpu(ari_calls, &capture, floor.then_some(nats.url.as_str()), round)
        })
        .await;
        println!(
            "daemon CPU for {ari_calls} ARI calls (the real Asterisk capture, {} events each): {}",
            capture.len(),
            r.summary(2 * ari_calls as u64)
        );
        drop(nats);

        // 2. Latency.
        let nats = start_nats().await;
        create_stream(&nats.url).await;
        let cfg = floor_cfg(&nats.url);
        let link = Link::connect(&cfg, "1001", "ws", ConnectMode::Once)
            .await
            .expect("link");
        let mut rtt = Vec::with_capacity(latency_n);
        for i in 0..latency_n {
            let ev = heartbeat(i);
            let t = Instant::now();
            link.publish(
                contract::event_subject("bench", "1001", ev.kind()),
                &ev.id,
                ev.to_json(),
            )
            .await
            .expect("publish");
            rtt.push(t.elapsed());
        }
        println!(
            "publish → PubAck, {latency_n} events one after another: p50 {:?}, p99 {:?}",
            pct(&mut rtt, 0.5),
            pct(&mut rtt, 0.99)
        );

        // The whole path: backlog on disk → publisher → a subscriber sees it.
        let dir = tempfile::tempdir().expect("dir");
        let backlog = Arc::new(Backlog::open(dir.path().join("q"), 200 << 20).expect("backlog"));
        let state = Arc::new(FloorState::new("bench", "1002", &nats.url));
        let stop = CancellationToken::new();
        let watcher = async_nats::connect(&nats.url).await.expect("watcher");
        let mut sub = watcher
            .subscribe("callguard.v1.bench.1002.>")
            .await
            .expect("subscribe");
        watcher.flush().await.expect("flush");
        let link2 = Link::connect(&cfg, "1002", "ws", ConnectMode::Once)
            .await
            .expect("link");
        let publisher = tokio::spawn(callguard::floor::publisher::run(
            backlog.clone(),
            link2.clone(),
            state.clone(),
            stop.clone(),
        ));
        let sent = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let sent2 = sent.clone();
        let b2 = backlog.clone();
        let producer = tokio::spawn(async move {
            // A steady 1,000 events/s, far above any workstation's rate.
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            for i in 0..latency_n {
                tick.tick().await;
                let mut ev = heartbeat(i);
                ev.id = format!("e2e-{i}");
                sent2
                    .lock()
                    .expect("lock")
                    .insert(ev.id.clone(), Instant::now());
                b2.push(contract::event_subject("bench", "1002", ev.kind()), ev)
                    .expect("push");
            }
        });
        let mut e2e = Vec::with_capacity(latency_n);
        while e2e.len() < latency_n {
            let m = tokio::time::timeout(Duration::from_secs(30), sub.next())
                .await
                .expect("events keep coming")
                .expect("open");
            let ev = FloorEvent::from_json(&m.payload).expect("event");
            if let Some(t) = sent.lock().expect("lock").remove(&ev.id) {
                e2e.push(t.elapsed());
            }
        }
        producer.await.expect("producer");
        println!(
            "backlog (on disk) → published → seen by a subscriber, {latency_n} events at 1,000/s: p50 {:?}, p99 {:?}",
            pct(&mut e2e, 0.5),
            pct(&mut e2e, 0.99)
        );
        stop.cancel();
        let _ = publisher.await;

        // 3. Drain: events queued while the server is away and the daemon restarted, then
        // drained.
        let dir = tempfile::tempdir().expect("dir");
        let backlog = Backlog::open(dir.path().join("q"), 200 << 20).expect("backlog");
        for i in 0..drain_n {
            let mut ev = heartbeat(i);
            ev.id = format!("drain-{i}");
            ev.body = EventBody::CallStart {
                direction: "inbound".into(),
                adopted: false,
            };
            backlog
                .push(contract::event_subject("bench", "1003", ev.kind()), ev)
                .expect("push");
        }
        backlog.close();
        drop(backlog);
        let backlog = Arc::new(Backlog::open(dir.path().join("q"), 200 << 20).expect("reopen"));
        assert_eq!(backlog.stats().events, drain_n as u64, "all queued on disk");
        let link3 = Link::connect(&cfg, "1003", "ws", ConnectMode::Once)
            .await
            .expect("link");
        let stop = CancellationToken::new();
        let t = Instant::now();
        let publisher = tokio::spawn(callguard::floor::publisher::run(
            backlog.clone(),
            link3,
            Arc::new(FloorState::new("bench", "1003", &nats.url)),
            stop.clone(),
        ));
        while backlog.stats().events > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = t.elapsed();
        stop.cancel();
        let _ = publisher.await;
        println!(
            "backlog drain: {drain_n} events in {:.2} s: {:.0} events/s (an hour-long outage of one workstation is ~200 events)",
            took.as_secs_f64(),
            drain_n as f64 / took.as_secs_f64()
        );
    });
}
