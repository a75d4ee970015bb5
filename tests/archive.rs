//! The archive follower against a real S3 server (s3s-fs on loopback) through a recording proxy
//! of our own, with the real daemon binary: every object written once with COMPLIANCE
//! retention, a legal hold where due and a checksum; never a DELETE of an object; outages,
//! restarts and `kill -9` mid-multipart end with each folder archived exactly once; tampering
//! in the store is caught by `verify s3://…`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use callguard::archive::archiver::State;
use callguard::evidence::incident::LevelChange;
use callguard::evidence::seal::{CallRecord, Sealer};
use common::s3::{ACCESS_KEY, Mode, Proxy, S3Server, SECRET_KEY, Seen};

const BUCKET: &str = "evidence";
const PATIENCE: Duration = Duration::from_secs(90);

fn record(id: &str, level: u8) -> CallRecord {
    let now = chrono::Local::now().fixed_offset();
    let mut incident = callguard::evidence::incident::IncidentData::default();
    let mut warnings = Vec::new();
    if level > 1 {
        // A warning makes the call an incident (incident.json); the level change sets its level.
        warnings.push(callguard::evidence::manifest::WarningRecord {
            kind: "escalate".into(),
            after_secs: 900,
            fired_at: now.to_rfc3339(),
        });
        incident.level_changes.push(LevelChange {
            from: 1,
            to: level,
            reason: "test".into(),
            at: now.to_rfc3339(),
        });
    }
    CallRecord {
        call_id: id.into(),
        agent: "1001".into(),
        caller: "0312345678".into(),
        direction: "inbound".into(),
        channel: String::new(),
        started_at: now,
        ended_at: Some(now),
        duration_secs: Some(4),
        end_cause: "normal".into(),
        warnings,
        source: "stream".into(),
        source_name: String::new(),
        stream_encoding: String::new(),
        truncated: false,
        recovered: false,
        continues: None,
        problems: Vec::new(),
        gaps: 0,
        late_frames: 0,
        incident,
    }
}

/// A stereo 8 kHz 16-bit WAV of about `bytes` bytes with varying content.
fn wav(path: &Path, bytes: usize) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let mut x: u32 = 12345;
    for _ in 0..bytes / 2 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        w.write_sample((x >> 16) as i16).unwrap();
    }
    w.finalize().unwrap();
}

struct Site {
    dir: tempfile::TempDir,
    server: S3Server,
    proxy: Proxy,
    config: PathBuf,
    host: String,
}

impl Site {
    async fn new(extra: &str) -> Site {
        Site::build(extra, None, Some(SECRET_KEY)).await
    }

    /// A site whose proxy speaks TLS with `tls` when given, and whose configuration names key
    /// files holding `secret` (none: the AWS environment credentials).
    async fn build(
        extra: &str,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
        secret: Option<&str>,
    ) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let server = S3Server::start(dir.path(), BUCKET).await;
        let proxy = match tls {
            Some(tls) => Proxy::start_tls(server.port, tls).await,
            None => Proxy::start(server.port).await,
        };
        let config = write_config_keys(dir.path(), &proxy.endpoint(), BUCKET, secret, extra);
        Site {
            host: callguard::evidence::manifest::host_name(),
            dir,
            server,
            proxy,
            config,
        }
    }

    fn evidence(&self) -> PathBuf {
        self.dir.path().join("evidence")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn pubkey(&self) -> PathBuf {
        self.state().join("keys/evidence.pub")
    }

    /// Seals calls (the daemon must not be running): (id, WAV bytes, incident level).
    fn seal(&self, calls: &[(&str, usize, u8)]) -> Vec<String> {
        let sealer = Sealer::open(&self.evidence(), &self.state()).unwrap();
        calls
            .iter()
            .map(|(id, bytes, level)| {
                let src = self.dir.path().join(format!("{id}.wav"));
                wav(&src, *bytes);
                sealer
                    .seal_wav_as_new_call(&src, &record(id, *level))
                    .unwrap()
                    .rel
            })
            .collect()
    }

    fn ledger_lines(&self) -> u64 {
        std::fs::read_to_string(self.evidence().join("ledger.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .count() as u64
    }

    fn archive_state(&self) -> State {
        State::load(&callguard::archive::archiver::state_dir(&self.state()))
    }

    /// Waits (bounded) until every ledger line is archived.
    async fn wait_archived(&self, daemon: &mut Daemon) {
        let want = self.ledger_lines();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if self.archive_state().done_through >= want {
                return;
            }
            if let Ok(Some(st)) = daemon.child.try_wait() {
                panic!("daemon exited ({st}):\n{}", daemon.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not archived in time; state {:?}\nlog:\n{}",
                self.archive_state(),
                daemon.log()
            );
            // Poll interval only: the state file is what the daemon writes when it is done.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn prefix_key(&self, rel: &str) -> String {
        format!("callguard/{}/{rel}", self.host)
    }

    async fn verify(&self, extra: &[&str]) -> (i32, String, String) {
        let url = format!("s3://{BUCKET}/callguard");
        let mut args = vec!["verify", url.as_str(), "--pubkey"];
        let pk = self.pubkey().display().to_string();
        args.push(&pk);
        args.extend_from_slice(extra);
        common::cli(&self.config, &args).await
    }
}

fn write_config(dir: &Path, endpoint: &str, bucket: &str, secret: &str, extra: &str) -> PathBuf {
    write_config_keys(dir, endpoint, bucket, Some(secret), extra)
}

/// The test configuration; `secret: None` configures no key files (the AWS environment
/// credentials are used).
fn write_config_keys(
    dir: &Path,
    endpoint: &str,
    bucket: &str,
    secret: Option<&str>,
    extra: &str,
) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let keys = match secret {
        Some(secret) => {
            let ak = dir.join("access.key");
            let sk = dir.join("secret.key");
            std::fs::write(&ak, format!("{ACCESS_KEY}\n")).unwrap();
            std::fs::write(&sk, format!("{secret}\n")).unwrap();
            format!(
                "access_key_file = \"{}\"\nsecret_key_file = \"{}\"\n",
                ak.display(),
                sk.display()
            )
        }
        None => String::new(),
    };
    let config = dir.join("callguard.toml");
    std::fs::write(
        &config,
        format!(
            "[pbx]\nurl = \"ws://127.0.0.1:9/\"\n[prompt]\nlocal = false\n[state]\ndir = \"{state}\"\n\
             [evidence]\ndir = \"{ev}\"\n[control]\nsocket = \"{sock}\"\n\
             [archive]\nendpoint = \"{endpoint}\"\nbucket = \"{bucket}\"\npath_style = true\n\
             {keys}part_size_mb = 5\n\
             concurrency = 2\nretry_max = \"500ms\"\n{extra}\n",
            state = dir.join("state").display(),
            ev = dir.join("evidence").display(),
            sock = dir.join("control.sock").display(),
        ),
    )
    .unwrap();
    config
}

struct Daemon {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Daemon {
    fn start(site: &Site) -> Daemon {
        Daemon::start_with_env(site, &[])
    }

    fn start_with_env(site: &Site, env: &[(&str, &str)]) -> Daemon {
        let n = std::fs::read_dir(site.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("daemon-"))
            .count();
        let log = site.dir.path().join(format!("daemon-{n}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_callguard"))
            .args(["run", "--config"])
            .arg(&site.config)
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .env("RUST_LOG", "callguard=debug")
            .env_remove("CALLGUARD_CONFIG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`.
    async fn kill9(mut self) {
        self.child.start_kill().unwrap();
        let _ = self.child.wait().await;
    }
}

fn is_object_put(s: &Seen) -> bool {
    s.method == "PUT" && !s.query().contains("partNumber=") && !s.query().contains("uploadId=")
}

fn is_part(s: &Seen) -> bool {
    s.method == "PUT" && s.query().contains("partNumber=")
}

fn is_create_multipart(s: &Seen) -> bool {
    s.method == "POST"
        && s.query()
            .split('&')
            .any(|q| q == "uploads" || q == "uploads=")
}

/// No DELETE of an object ever (aborting an unfinished upload, `DELETE ?uploadId=`, is not one).
fn assert_no_object_delete(seen: &[Seen]) {
    for s in seen {
        assert!(
            s.method != "DELETE" || s.query().contains("uploadId="),
            "an object DELETE was sent: {s:?}"
        );
        assert!(
            !s.headers.contains_key("x-amz-bypass-governance-retention"),
            "a governance bypass was sent: {s:?}"
        );
    }
}

/// Successful writes per key (a PutObject or a completed multipart upload).
fn writes_per_key(seen: &[Seen]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in seen {
        let completed = s.method == "POST" && s.query().contains("uploadId=");
        if (is_object_put(s) || completed) && s.status == 200 {
            *m.entry(s.key(BUCKET)).or_default() += 1;
        }
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_with_lock_headers_and_verify_s3_catches_tampering() {
    let site = Site::new("").await;
    // A plain call and a level-3 incident (legal hold); the second WAV goes multipart.
    let dirs = site.seal(&[("c-plain", 40_000, 1), ("c-incident", 12 * 1024 * 1024, 3)]);
    let mut daemon = Daemon::start(&site);
    site.wait_archived(&mut daemon).await;
    // Both folders came through the archive follower's durable queue and were delivered there.
    let delivered = site.state().join("followers/archive/delivered");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while std::fs::read_dir(&delivered)
        .map(|d| d.count())
        .unwrap_or(0)
        < 2
    {
        assert!(tokio::time::Instant::now() < deadline, "{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = site.proxy.seen();
    assert_no_object_delete(&seen);

    let keys = site.server.keys(BUCKET);
    for (i, d) in dirs.iter().enumerate() {
        for f in ["call.wav", "manifest.json", "manifest.sig"] {
            let k = site.prefix_key(&format!("{d}/{f}"));
            assert!(keys.contains(&k), "{k} missing in {keys:?}");
        }
        let k = site.prefix_key(&format!("ledger/{}.json", i + 1));
        assert!(keys.contains(&k), "{k} missing in {keys:?}");
    }
    assert!(keys.contains(&site.prefix_key(&format!("{}/incident.json", dirs[1]))));

    // Every write carries COMPLIANCE, a retain-until date ~1095 days out, and a checksum.
    let writes: Vec<&Seen> = seen
        .iter()
        .filter(|s| is_object_put(s) || is_create_multipart(s))
        .collect();
    assert!(writes.len() >= 8, "{writes:?}");
    let min_until = chrono::Utc::now() + chrono::Duration::days(1094);
    for w in &writes {
        assert_eq!(
            w.header("x-amz-object-lock-mode"),
            Some("COMPLIANCE"),
            "{w:?}"
        );
        let until = w
            .header("x-amz-object-lock-retain-until-date")
            .unwrap_or_else(|| panic!("no retain-until: {w:?}"));
        let until = chrono::DateTime::parse_from_rfc3339(until).unwrap();
        assert!(until > min_until, "{until} too early");
        let incident = w.key(BUCKET).contains(&dirs[1]) || w.key(BUCKET).ends_with("/2.json");
        assert_eq!(
            w.header("x-amz-object-lock-legal-hold"),
            incident.then_some("ON"),
            "legal hold only on the level-3 call: {w:?}"
        );
        if is_object_put(w) {
            assert!(w.header("x-amz-checksum-sha256").is_some(), "{w:?}");
        } else {
            assert_eq!(
                w.header("x-amz-checksum-algorithm"),
                Some("SHA256"),
                "{w:?}"
            );
        }
    }
    let parts: Vec<&Seen> = seen.iter().filter(|s| is_part(s)).collect();
    assert_eq!(parts.len(), 3, "12 MiB in 5 MiB parts");
    for p in &parts {
        assert!(p.header("x-amz-checksum-sha256").is_some(), "{p:?}");
    }
    // Each object written exactly once.
    for (k, n) in writes_per_key(&seen) {
        assert_eq!(n, 1, "{k} written {n} times");
    }
    // s3s-fs returns no composite checksum: the multipart object was confirmed by its
    // MD5-of-parts ETag, not by reading 12 MiB back.
    let big = site.prefix_key(&format!("{}/call.wav", dirs[1]));
    assert!(
        !seen
            .iter()
            .any(|s| s.method == "GET" && s.key(BUCKET) == big),
        "the multipart upload was read back"
    );

    // verify s3://… passes with the public key alone.
    let (code, out, err) = site.verify(&[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK s3://")).count(),
        2,
        "{out}"
    );
    assert!(
        err.contains("does not report Object Lock retention"),
        "s3s-fs keeps no retention and verify says so: {err}"
    );
    // The local ledger beside the URL matches the archived one.
    let ev = site.evidence().display().to_string();
    let (code, out, err) = site.verify(&[&ev]).await;
    assert_eq!(code, 0, "{out}\n{err}");

    // Tampering in the store's own files is caught.
    let wav_key = site.prefix_key(&format!("{}/call.wav", dirs[0]));
    let path = site.server.object_path(BUCKET, &wav_key);
    let mut b = std::fs::read(&path).unwrap();
    let at = b.len() - 10;
    b[at] ^= 0x40;
    std::fs::write(&path, &b).unwrap();
    let (code, out, err) = site.verify(&[]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    let fail = out
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains(&dirs[0]))
        .unwrap_or_else(|| panic!("no FAIL for the tampered call:\n{out}"));
    assert!(fail.contains("call.wav: SHA-256 mismatch"), "{fail}");
    daemon.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_and_daemon_restarted_then_up_archives_once() {
    let site = Site::new("").await;
    let dirs = site.seal(&[("c-1", 30_000, 1), ("c-2", 30_000, 1)]);
    site.proxy.set_mode(Mode::Fail(503));
    let daemon = Daemon::start(&site);
    // The daemon starts although the store fails, and records the error.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while site.archive_state().last_error.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = common::status_until(&site.config, |v| v.get("archive").is_some()).await;
    assert_eq!(st["archive"]["folders"], 2, "{st}");
    assert!(st["archive"]["last_error"].as_str().is_some(), "{st}");
    daemon.kill9().await;
    // Restarted while the store is still down.
    let daemon = Daemon::start(&site);
    site.proxy
        .wait_for("a retry after the restart", |s| {
            s.status == 503 && s.headers.contains_key("authorization")
        })
        .await;
    let failed_so_far = site.proxy.seen().len();
    while site.proxy.seen().len() < failed_so_far + 2 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(daemon);
    // The store itself restarts too (same data) and the proxy lets requests through again.
    let mut site = site;
    site.server.restart().await;
    site.proxy.set_mode(Mode::Pass);
    let mut daemon = Daemon::start(&site);
    site.wait_archived(&mut daemon).await;
    let seen = site.proxy.seen();
    assert_no_object_delete(&seen);
    let writes = writes_per_key(&seen);
    for d in &dirs {
        for f in ["call.wav", "manifest.json", "manifest.sig"] {
            let k = site.prefix_key(&format!("{d}/{f}"));
            assert_eq!(writes.get(&k), Some(&1), "{k}: {writes:?}");
        }
    }
    assert_eq!(writes.len(), 8, "{writes:?}");
    daemon.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_multipart_then_restart_archives_once_and_leaves_no_open_upload() {
    let site = Site::new("").await;
    let dirs = site.seal(&[("c-big", 16 * 1024 * 1024, 1)]);
    site.proxy
        .set_mode(Mode::HoldMatching("partNumber=2".into()));
    let daemon = Daemon::start(&site);
    site.proxy
        .wait_for("part 2 on its way", |s| {
            is_part(s) && s.query().contains("partNumber=2")
        })
        .await;
    daemon.kill9().await;
    assert_eq!(
        site.server.open_uploads().len(),
        1,
        "the killed upload is open"
    );
    site.proxy.release();
    let mut daemon = Daemon::start(&site);
    site.wait_archived(&mut daemon).await;
    let seen = site.proxy.seen();
    assert_no_object_delete(&seen);
    assert!(
        seen.iter()
            .any(|s| s.method == "DELETE" && s.query().contains("uploadId=") && s.status == 204),
        "the interrupted upload was aborted"
    );
    assert!(
        site.server.open_uploads().is_empty(),
        "open uploads left: {:?}",
        site.server.open_uploads()
    );
    let k = site.prefix_key(&format!("{}/call.wav", dirs[0]));
    assert_eq!(writes_per_key(&seen).get(&k), Some(&1));
    let local = std::fs::read(site.evidence().join(&dirs[0]).join("call.wav")).unwrap();
    assert_eq!(
        std::fs::read(site.server.object_path(BUCKET, &k)).unwrap(),
        local
    );
    daemon.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_missing_bucket_are_refused_at_start() {
    let site = Site::new("").await;
    let cases = [
        (
            write_config(
                &site.dir.path().join("wrong"),
                &site.proxy.endpoint(),
                BUCKET,
                "not-the-secret",
                "",
            ),
            "refused the credentials",
        ),
        (
            write_config(
                &site.dir.path().join("nobucket"),
                &site.proxy.endpoint(),
                "no-such-bucket",
                SECRET_KEY,
                "",
            ),
            "bucket no-such-bucket does not exist",
        ),
    ];
    for (config, needle) in cases {
        let out = tokio::time::timeout(
            PATIENCE,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_callguard"))
                .args(["run", "--config"])
                .arg(&config)
                .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
                .env_remove("CALLGUARD_CONFIG")
                .output(),
        )
        .await
        .expect("the daemon did not stop")
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(needle), "{needle} not in: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_object_with_other_content_is_reported_and_never_overwritten() {
    let site = Site::new("").await;
    let dirs = site.seal(&[("c-1", 30_000, 1), ("c-2", 30_000, 1)]);
    // Someone else's bytes under the key of call 1's manifest.
    let k = site.prefix_key(&format!("{}/manifest.json", dirs[0]));
    let path = site.server.object_path(BUCKET, &k);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"{\"not\":\"ours\"}").unwrap();
    let daemon = Daemon::start(&site);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let st = site.archive_state();
        if !st.conflicts.is_empty() && st.is_done(2) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Call 2 went on; call 1 is held back and shown.
    assert!(!site.archive_state().is_done(1));
    let seen = site.proxy.seen();
    assert!(
        !seen.iter().any(|s| is_object_put(s) && s.key(BUCKET) == k),
        "the existing object was written to"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"{\"not\":\"ours\"}");
    assert!(
        daemon.log().contains("ARCHIVE CONFLICT"),
        "{}",
        daemon.log()
    );
    let st = common::status_until(&site.config, |v| v.get("archive").is_some()).await;
    assert_eq!(st["archive"]["conflicts"], 1, "{st}");
    let (_, out, _) = common::cli(&site.config, &["doctor"]).await;
    // No `language` in the site config: the doctor speaks Japanese.
    assert!(out.contains("不一致 1 件"), "{out}");
    assert_no_object_delete(&seen);
    daemon.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_or_missing_since_sealing_is_reported_and_never_archived() {
    let site = Site::new("").await;
    let dirs = site.seal(&[("c-1", 30_000, 1), ("c-2", 30_000, 1), ("c-3", 30_000, 1)]);
    // One byte of call 1's recording changed after sealing; call 3's recording gone.
    let wav1 = site.evidence().join(&dirs[0]).join("call.wav");
    let mut bytes = std::fs::read(&wav1).unwrap();
    bytes[20_000] ^= 0x01;
    std::fs::write(&wav1, bytes).unwrap();
    std::fs::remove_file(site.evidence().join(&dirs[2]).join("call.wav")).unwrap();
    let daemon = Daemon::start(&site);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let st = site.archive_state();
        if st.conflicts.len() == 2 && st.is_done(2) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Call 2 went on; calls 1 and 3 are held back, shown, and nothing of theirs was locked.
    let st = site.archive_state();
    assert!(!st.is_done(1) && !st.is_done(3));
    let seen = site.proxy.seen();
    for d in [&dirs[0], &dirs[2]] {
        let k = site.prefix_key(&format!("{d}/call.wav"));
        assert!(
            !seen.iter().any(|s| s.key(BUCKET) == k),
            "{k} was sent to the store"
        );
    }
    let log = daemon.log();
    assert!(log.contains("is not the file sealed"), "{log}");
    assert!(log.contains("is missing on this workstation"), "{log}");
    assert_no_object_delete(&seen);
    daemon.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_local_days_removes_a_folder_only_after_its_archived_copy_verified() {
    let site = Site::new("keep_local_days = 0").await;
    let dirs = site.seal(&[("c-1", 30_000, 1)]);
    let ledger_before = std::fs::read(site.evidence().join("ledger.jsonl")).unwrap();
    let mut daemon = Daemon::start(&site);
    site.wait_archived(&mut daemon).await;
    let local = site.evidence().join(&dirs[0]);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while local.exists() {
        assert!(tokio::time::Instant::now() < deadline, "{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The archived copy was read back (manifest and signature) before the removal.
    let seen = site.proxy.seen();
    let manifest_key = site.prefix_key(&format!("{}/manifest.json", dirs[0]));
    assert!(
        seen.iter()
            .any(|s| s.method == "GET" && s.key(BUCKET) == manifest_key && s.status == 200),
        "the archived manifest was not downloaded before the removal"
    );
    assert!(site.archive_state().removed_local.contains(&dirs[0]));
    // The ledger stays whole, and the archive still verifies.
    assert_eq!(
        std::fs::read(site.evidence().join("ledger.jsonl")).unwrap(),
        ledger_before
    );
    let (code, out, err) = site.verify(&[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    daemon.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_older_than_alert_after_pings_the_lead_once() {
    let mut hook = common::http::Receiver::start(Vec::new()).await;
    let extra = format!(
        "alert_after = \"1s\"\n[escalation]\ncoalesce = \"0s\"\n\
         [[escalation.webhook]]\nurl = \"{}\"\nformat = \"json\"\n",
        hook.url("/lead")
    );
    let site = Site::new(&extra).await;
    site.seal(&[("c-1", 30_000, 1), ("c-2", 30_000, 1)]);
    site.proxy.set_mode(Mode::Fail(503));
    let mut daemon = Daemon::start(&site);
    // The store keeps failing; once the oldest waiting call is older than 1 s the lead hears.
    let ping = hook.next().await.json();
    assert_eq!(ping["problem"], "archive.backlog", "{ping}");
    let what = ping.to_string();
    assert!(
        what.contains("evidence not archived for") && what.contains("2 call(s)"),
        "{what}"
    );
    assert!(what.contains("503"), "the last error is named: {what}");
    // Several more failed passes later: still one ping, one log line.
    let failed = site.proxy.seen().iter().filter(|s| s.status == 503).count();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while site.proxy.seen().iter().filter(|s| s.status == 503).count() < failed + 4 {
        assert!(tokio::time::Instant::now() < deadline, "{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        daemon.log().matches("archive backlog too old").count(),
        1,
        "{}",
        daemon.log()
    );
    assert_eq!(hook.requests(), 1, "one ping for one backlog");
    // The store comes back: the backlog drains and no further ping follows.
    site.proxy.set_mode(Mode::Pass);
    site.wait_archived(&mut daemon).await;
    assert_eq!(hook.requests(), 1);
    daemon.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addenda_of_calls_at_or_above_legal_hold_level_carry_the_hold() {
    let site = Site::new("legal_hold_level = 2").await;
    // Below, at and above the level.
    let dirs = site.seal(&[("c-1", 30_000, 1), ("c-2", 30_000, 2), ("c-3", 30_000, 3)]);
    {
        let sealer = Sealer::open(&site.evidence(), &site.state()).unwrap();
        for id in ["c-1", "c-2", "c-3"] {
            callguard::evidence::addendum::add(
                &sealer,
                &callguard::events::CallNote {
                    call_id: id.into(),
                    in_progress: false,
                    field: callguard::events::NoteField::Next,
                    text: format!("follow-up for {id}"),
                    at: chrono::Local::now().fixed_offset(),
                },
            )
            .unwrap();
        }
    }
    // Ledger: the three calls (1–3), then their addenda (4–6).
    assert_eq!(site.ledger_lines(), 6);
    let mut daemon = Daemon::start(&site);
    site.wait_archived(&mut daemon).await;
    let seen = site.proxy.seen();
    assert_no_object_delete(&seen);
    let puts: BTreeMap<String, &Seen> = seen
        .iter()
        .filter(|s| is_object_put(s) && s.status == 200)
        .map(|s| (s.key(BUCKET), s))
        .collect();
    for (i, dir) in dirs.iter().enumerate() {
        let held = i >= 1;
        let keys = [
            site.prefix_key(&format!("{dir}/addendum-1.json")),
            site.prefix_key(&format!("{dir}/addendum-1.sig")),
            site.prefix_key(&format!("ledger/{}.json", i + 4)),
        ];
        for k in keys {
            let w = puts
                .get(&k)
                .unwrap_or_else(|| panic!("{k} not written: {:?}", puts.keys()));
            assert_eq!(
                w.header("x-amz-object-lock-mode"),
                Some("COMPLIANCE"),
                "{w:?}"
            );
            assert!(
                w.header("x-amz-object-lock-retain-until-date").is_some(),
                "{w:?}"
            );
            assert!(w.header("x-amz-checksum-sha256").is_some(), "{w:?}");
            assert_eq!(
                w.header("x-amz-object-lock-legal-hold"),
                held.then_some("ON"),
                "level {} with legal_hold_level 2: {w:?}",
                i + 1
            );
        }
    }
    daemon.kill9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_s3_checks_the_retention_the_store_reports() {
    let site = Site::new("").await;
    let dirs = site.seal(&[("c-1", 30_000, 1), ("c-2", 30_000, 1)]);
    let mut daemon = Daemon::start(&site);
    site.wait_archived(&mut daemon).await;
    daemon.kill9().await;
    let iso = |days: i64| {
        (chrono::Utc::now() + chrono::Duration::days(days))
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };

    // s3s-fs keeps no retention: said once, not per object.
    let (code, out, err) = site.verify(&[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        err.matches("does not report Object Lock retention").count(),
        1,
        "{err}"
    );

    // The store reports COMPLIANCE retention long enough on every object: all good, no note.
    let long = iso(1100);
    site.proxy.add_response_headers(
        "",
        &[
            ("x-amz-object-lock-mode", "COMPLIANCE"),
            ("x-amz-object-lock-retain-until-date", &long),
        ],
    );
    let (code, out, err) = site.verify(&[]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(!err.contains("does not report"), "{err}");
    assert!(
        !site
            .proxy
            .seen()
            .iter()
            .any(|s| s.query().contains("retention") && s.status == 200),
        "the retention came with the downloads"
    );

    // One call's objects are kept only 30 days: that call fails, the other passes.
    let short = iso(30);
    site.proxy
        .add_response_headers(&dirs[0], &[("x-amz-object-lock-retain-until-date", &short)]);
    let (code, out, err) = site.verify(&[]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    let fail = out
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains(&dirs[0]))
        .unwrap_or_else(|| panic!("no FAIL for the short retention:\n{out}"));
    assert!(fail.contains("retention shorter than 1095 days"), "{fail}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("OK s3://") && l.contains(&dirs[1])),
        "{out}"
    );

    // GOVERNANCE can be lifted by whoever holds the bypass right: not accepted.
    site.proxy
        .add_response_headers(&dirs[1], &[("x-amz-object-lock-mode", "GOVERNANCE")]);
    let (code, out, _) = site.verify(&[]).await;
    assert_eq!(code, 1, "{out}");
    let fail = out
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains(&dirs[1]))
        .unwrap_or_else(|| panic!("no FAIL for GOVERNANCE:\n{out}"));
    assert!(fail.contains("retention mode GOVERNANCE"), "{fail}");
}

/// A private CA and a certificate for 127.0.0.1 signed by it; the CA's PEM.
fn private_ca() -> (String, Arc<tokio_rustls::rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let key =
        tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let server = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    (ca.pem(), Arc::new(server))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ca_file_trusts_a_private_ca_and_a_wrong_ca_is_refused_at_start() {
    let (ca_pem, tls) = private_ca();
    let (other_ca, _) = private_ca();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("store-ca.pem");
    let wrong = dir.path().join("other-ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::write(&wrong, other_ca).unwrap();
    let site = Site::build(
        &format!("ca_file = \"{}\"", ca.display()),
        Some(tls),
        Some(SECRET_KEY),
    )
    .await;
    assert!(site.proxy.endpoint().starts_with("https://"));
    let dirs = site.seal(&[("c-1", 30_000, 1)]);
    let mut daemon = Daemon::start(&site);
    site.wait_archived(&mut daemon).await;
    let k = site.prefix_key(&format!("{}/call.wav", dirs[0]));
    assert!(site.server.keys(BUCKET).contains(&k));
    assert!(
        site.proxy
            .seen()
            .iter()
            .any(|s| is_object_put(s) && s.key(BUCKET) == k),
        "the upload went through the TLS endpoint"
    );
    daemon.kill9().await;
    // verify s3://… over the same endpoint trusts the same ca_file.
    let (code, out, err) = site.verify(&[]).await;
    assert_eq!(code, 0, "{out}\n{err}");

    // Another CA, and no CA at all (system roots only): refused at start, saying why.
    let before = site.proxy.seen().len();
    for ca_line in [format!("ca_file = \"{}\"", wrong.display()), String::new()] {
        let config = write_config(
            &site.dir.path().join(format!("wrong-ca-{}", ca_line.len())),
            &site.proxy.endpoint(),
            BUCKET,
            SECRET_KEY,
            &ca_line,
        );
        let out = tokio::time::timeout(
            PATIENCE,
            tokio::process::Command::new(env!("CARGO_BIN_EXE_callguard"))
                .args(["run", "--config"])
                .arg(&config)
                .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
                .env_remove("CALLGUARD_CONFIG")
                .output(),
        )
        .await
        .expect("the daemon did not stop")
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(
            err.contains("presented a certificate that is not trusted")
                && err.contains("invalid peer certificate")
                && err.contains("archive.ca_file"),
            "{err}"
        );
        if !ca_line.is_empty() {
            assert!(err.contains(&wrong.display().to_string()), "{err}");
        }
    }
    assert_eq!(
        site.proxy.seen().len(),
        before,
        "no request crossed an untrusted connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_environment_credentials_are_used_without_key_files() {
    let site = Site::build("", None, None).await;
    let dirs = site.seal(&[("c-1", 30_000, 1)]);
    // Only the environment: no profile files, no instance metadata to fall back on.
    let env = |secret: &'static str| {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", secret),
            ("AWS_CONFIG_FILE", "/nonexistent/aws-config"),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/aws-credentials",
            ),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
    };
    let mut daemon = Daemon::start_with_env(&site, &env(SECRET_KEY));
    site.wait_archived(&mut daemon).await;
    let k = site.prefix_key(&format!("{}/call.wav", dirs[0]));
    let put = site
        .proxy
        .seen()
        .into_iter()
        .find(|s| is_object_put(s) && s.key(BUCKET) == k)
        .unwrap_or_else(|| panic!("{k} not uploaded"));
    assert!(
        put.header("authorization")
            .is_some_and(|a| a.contains(&format!("Credential={ACCESS_KEY}/"))),
        "{put:?}"
    );
    daemon.kill9().await;

    // A wrong secret in the environment is refused at start like a wrong key file.
    let out = tokio::time::timeout(
        PATIENCE,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_callguard"))
            .args(["run", "--config"])
            .arg(&site.config)
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent")
            .env_remove("CALLGUARD_CONFIG")
            .envs(env("not-the-secret"))
            .output(),
    )
    .await
    .expect("the daemon did not stop")
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
}
