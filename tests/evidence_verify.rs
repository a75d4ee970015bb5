//! `callguard verify` (the real binary) on sealed evidence: a copy verifies with the public key
//! alone; a change to any region — WAV header, WAV data, a manifest field, the signature, a
//! ledger line, the ledger order — fails and names what failed. Also: a PBX recording (the
//! Asterisk fixture) sealed as is keeps its SHA-256.

use std::path::{Path, PathBuf};
use std::process::Command;

use callguard::evidence::seal::{CallRecord, Sealer};
use sha2::Digest;

/// The body of `GET /ari/recordings/stored/…/file` captured from Asterisk 22.10.1.
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/asterisk-22.10.1/stored-recording-snoop-1795354434.7.wav")
}

fn record(id: &str) -> CallRecord {
    CallRecord {
        call_id: id.into(),
        agent: "PJSIP/1001".into(),
        caller: "0312345678".into(),
        direction: "inbound".into(),
        channel: "PJSIP/1001-0000002a".into(),
        started_at: chrono::Local::now().fixed_offset(),
        ended_at: Some(chrono::Local::now().fixed_offset()),
        duration_secs: Some(4),
        end_cause: "normal".into(),
        warnings: Vec::new(),
        source: "asterisk".into(),
        source_name: "callguard/1795354434.7".into(),
        stream_encoding: String::new(),
        truncated: false,
        recovered: false,
        problems: Vec::new(),
        gaps: 0,
        late_frames: 0,
        incident: Default::default(),
        continues: None,
    }
}

/// Three sealed calls under `<tmp>/evidence`, key under `<tmp>/state`.
fn sealed_tree(tmp: &Path) -> (PathBuf, PathBuf, Vec<PathBuf>) {
    let root = tmp.join("evidence");
    let state = tmp.join("state");
    let sealer = Sealer::open(&root, &state).unwrap();
    let mut dirs = Vec::new();
    for id in ["c-1", "c-2", "c-3"] {
        let src = tmp.join(format!("{id}.wav"));
        std::fs::copy(fixture(), &src).unwrap();
        let s = sealer.seal_wav_as_new_call(&src, &record(id)).unwrap();
        dirs.push(s.dir);
    }
    (root, state.join("keys/evidence.pub"), dirs)
}

fn verify(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .arg("verify")
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap(), text)
}

fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_pbx_recording_is_sealed_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, _, dirs) = sealed_tree(tmp.path());
    let want = hex::encode(sha2::Sha256::digest(std::fs::read(fixture()).unwrap()));
    let wav = std::fs::read(dirs[0].join("call.wav")).unwrap();
    assert_eq!(hex::encode(sha2::Sha256::digest(&wav)), want);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dirs[0].join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["audio"]["sha256"], want);
    assert_eq!(m["audio"]["bytes"], 64044);
    assert_eq!(m["audio"]["source"], "asterisk");
    assert_eq!(
        (
            m["audio"]["sample_rate"].as_u64(),
            m["audio"]["channels"].as_u64()
        ),
        (Some(8000), Some(1))
    );
    assert!(
        !tmp.path().join("c-1.wav").exists(),
        "the download was moved in"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("ledger.jsonl"))
            .unwrap()
            .lines()
            .count(),
        3
    );
}

#[test]
fn a_copy_verifies_with_the_public_key_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, pubkey, dirs) = sealed_tree(tmp.path());
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("evidence-copy");
    copy_tree(&root, &copy);
    std::fs::copy(&pubkey, elsewhere.path().join("evidence.pub")).unwrap();
    let key = elsewhere.path().join("evidence.pub");
    let (code, out) = verify(&["--pubkey", key.to_str().unwrap(), copy.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK ")).count(),
        3,
        "{out}"
    );
    // One call folder of the copy.
    let one = copy.join(dirs[1].strip_prefix(&root).unwrap());
    let (code, out) = verify(&["--pubkey", key.to_str().unwrap(), one.to_str().unwrap()]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("OK {}", one.display()).as_str())
    );
    // JSON.
    let (code, out) = verify(&[
        "--json",
        "--pubkey",
        key.to_str().unwrap(),
        copy.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let calls: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("call_id").is_some())
        .collect();
    assert_eq!(calls.len(), 3);
    assert!(
        calls
            .iter()
            .all(|c| c["ok"] == true && c["sha256"].is_string())
    );
    // Usage errors: exit 2.
    let (code, _) = verify(&["--pubkey", key.to_str().unwrap(), "/nonexistent/evidence"]);
    assert_eq!(code, 2);
    let (code, _) = verify(&["--pubkey", "/nonexistent.pub", copy.to_str().unwrap()]);
    assert_eq!(code, 2);
}

/// Applies `tamper` to a fresh copy and returns verify's exit code and output.
fn tampered(tamper: impl FnOnce(&Path, &[PathBuf])) -> (i32, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (root, pubkey, dirs) = sealed_tree(tmp.path());
    let copy = tmp.path().join("copy");
    copy_tree(&root, &copy);
    let dirs: Vec<PathBuf> = dirs
        .iter()
        .map(|d| copy.join(d.strip_prefix(&root).unwrap()))
        .collect();
    tamper(&copy, &dirs);
    verify(&["--pubkey", pubkey.to_str().unwrap(), copy.to_str().unwrap()])
}

fn fail_line<'a>(out: &'a str, dir: &Path) -> &'a str {
    let prefix = format!("FAIL {}:", dir.display());
    out.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no FAIL line for {}:\n{out}", dir.display()))
}

#[test]
fn a_changed_wav_header_byte_is_named() {
    let mut target = PathBuf::new();
    let (code, out) = tampered(|_, dirs| {
        flip(&dirs[0].join("call.wav"), 24); // sample rate field
        target = dirs[0].clone();
    });
    assert_eq!(code, 1, "{out}");
    assert!(
        fail_line(&out, &target).contains("WAV header changed"),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK ")).count(),
        2,
        "{out}"
    );
}

#[test]
fn a_changed_wav_data_byte_is_named() {
    let mut target = PathBuf::new();
    let (code, out) = tampered(|_, dirs| {
        flip(&dirs[1].join("call.wav"), 40_000);
        target = dirs[1].clone();
    });
    assert_eq!(code, 1, "{out}");
    assert!(
        fail_line(&out, &target).contains("audio data changed"),
        "{out}"
    );
}

#[test]
fn an_edited_manifest_field_is_named() {
    let mut target = PathBuf::new();
    let (code, out) = tampered(|_, dirs| {
        let p = dirs[2].join("manifest.json");
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, text.replace("0312345678", "0312345679")).unwrap();
        target = dirs[2].clone();
    });
    assert_eq!(code, 1, "{out}");
    let line = fail_line(&out, &target);
    assert!(line.contains("manifest signature does not match"), "{out}");
    assert!(line.contains("manifest hash differs"), "{out}");
}

#[test]
fn a_swapped_signature_is_named() {
    let mut target = PathBuf::new();
    let (code, out) = tampered(|_, dirs| {
        std::fs::copy(dirs[1].join("manifest.sig"), dirs[0].join("manifest.sig")).unwrap();
        target = dirs[0].clone();
    });
    assert_eq!(code, 1, "{out}");
    assert!(
        fail_line(&out, &target).contains("manifest signature does not match"),
        "{out}"
    );
}

#[test]
fn an_edited_ledger_line_is_named() {
    let mut target = PathBuf::new();
    let (code, out) = tampered(|root, dirs| {
        let p = root.join("ledger.jsonl");
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines[1] = lines[1].replace("\"call_id\":\"c-2\"", "\"call_id\":\"c-9\"");
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        target = dirs[1].clone();
    });
    assert_eq!(code, 1, "{out}");
    assert!(
        fail_line(&out, &target).contains("ledger line 2: signature invalid"),
        "{out}"
    );
    assert!(out.contains("ledger.jsonl: line 2:"), "{out}");
}

#[test]
fn reordered_ledger_lines_are_named() {
    let (code, out) = tampered(|root, _| {
        let p = root.join("ledger.jsonl");
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(0, 1);
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    });
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("chain broken"), "{out}");
    assert!(out.contains("ledger.jsonl: line 1: chain broken"), "{out}");
}

#[test]
fn a_removed_ledger_line_leaves_its_call_missing_from_the_ledger() {
    let mut target = PathBuf::new();
    let (code, out) = tampered(|root, dirs| {
        let p = root.join("ledger.jsonl");
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        std::fs::write(&p, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
        target = dirs[1].clone();
    });
    assert_eq!(code, 1, "{out}");
    assert!(
        fail_line(&out, &target).contains("sealed call missing from the ledger"),
        "{out}"
    );
    assert!(out.contains("ledger.jsonl: line 2: chain broken"), "{out}");
}

#[test]
fn a_removed_call_folder_is_named_by_the_ledger() {
    let (code, out) = tampered(|_, dirs| {
        std::fs::remove_dir_all(&dirs[2]).unwrap();
    });
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("line 3: call c-3") && out.contains("missing"),
        "{out}"
    );
}

#[test]
fn a_signature_by_another_key_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, _, _) = sealed_tree(tmp.path());
    let other = tempfile::tempdir().unwrap();
    callguard::evidence::keys::load_or_create(other.path()).unwrap();
    let key = other.path().join("keys/evidence.pub");
    let (code, out) = verify(&["--pubkey", key.to_str().unwrap(), root.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("manifest signed by another key"))
            .count(),
        3,
        "{out}"
    );
}

#[test]
fn key_show_prints_the_public_key_and_its_id() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("callguard.toml");
    std::fs::write(
        &cfg,
        format!(
            "[state]\ndir = \"{}\"\n",
            tmp.path().join("state").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["key", "show", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let key = callguard::evidence::keys::read_public(&tmp.path().join("state/keys/evidence.pub"))
        .unwrap();
    let id = callguard::evidence::keys::key_id(&key);
    assert!(text.contains(&format!("key_id: {id}")), "{text}");
    assert!(text.contains("-----BEGIN PUBLIC KEY-----"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tmp.path().join("state/keys/evidence.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Same key the second time.
    let again = Command::new(env!("CARGO_BIN_EXE_callguard"))
        .args(["key", "show", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(again.stdout, out.stdout);
}

/// Removing the signature and planting a `meta.json` must not turn a sealed call into an "open"
/// one that verify skips — and a restart must not re-seal it over the original.
#[test]
fn a_sealed_folder_stripped_of_its_signature_fails_and_is_never_resealed() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, pubkey, dirs) = sealed_tree(tmp.path());
    let pk = pubkey.to_str().unwrap();
    flip(&dirs[1].join("call.wav"), 5000);
    std::fs::remove_file(dirs[1].join("manifest.sig")).unwrap();
    std::fs::write(dirs[1].join("meta.json"), b"{}").unwrap();
    let (code, out) = verify(&["--pubkey", pk, root.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("OPEN"), "{out}");

    // Recovery at start-up leaves a folder the ledger knows exactly as it is.
    let manifest_before = std::fs::read(dirs[1].join("manifest.json")).unwrap();
    let sealer = Sealer::open(&root, &tmp.path().join("state")).unwrap();
    let results = callguard::evidence::recovery::recover(&sealer);
    assert!(results.iter().all(|r| r.is_err()), "{results:?}");
    assert_eq!(
        std::fs::read(dirs[1].join("manifest.json")).unwrap(),
        manifest_before
    );
    let ledger = std::fs::read_to_string(root.join("ledger.jsonl")).unwrap();
    assert_eq!(ledger.lines().count(), 3, "nothing appended:\n{ledger}");
    let (code, _) = verify(&["--pubkey", pk, root.to_str().unwrap()]);
    assert_eq!(code, 1);
}

/// A manifest and signature taken from another sealed call do not pass for this folder.
#[test]
fn a_manifest_swapped_in_from_another_call_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, pubkey, dirs) = sealed_tree(tmp.path());
    for f in ["manifest.json", "manifest.sig", "call.wav"] {
        std::fs::copy(dirs[0].join(f), dirs[1].join(f)).unwrap();
    }
    let (code, out) = verify(&["--pubkey", pubkey.to_str().unwrap(), root.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL"), "{out}");
}

/// A ledger line torn by a crash is reported, and the next sealed call still gets a line of
/// its own that verifies.
#[test]
fn a_torn_last_ledger_line_does_not_swallow_the_next_call() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, pubkey, _) = sealed_tree(tmp.path());
    let ledger = root.join("ledger.jsonl");
    let mut text = std::fs::read_to_string(&ledger).unwrap();
    text.push_str(r#"{"seq":4,"at":"2026-11-22T15:5"#);
    std::fs::write(&ledger, &text).unwrap();
    let sealer = Sealer::open(&root, &tmp.path().join("state")).unwrap();
    let src = tmp.path().join("c-5.wav");
    std::fs::copy(fixture(), &src).unwrap();
    let s = sealer.seal_wav_as_new_call(&src, &record("c-5")).unwrap();
    let after = std::fs::read_to_string(&ledger).unwrap();
    let last = after.lines().last().unwrap();
    assert!(last.starts_with("{\"seq\":"), "{after}");
    assert!(last.contains("\"call_id\":\"c-5\""), "{after}");
    let (code, out) = verify(&["--pubkey", pubkey.to_str().unwrap(), root.to_str().unwrap()]);
    assert_eq!(code, 1, "the torn line is a failure: {out}");
    assert!(
        out.contains(&format!("OK {}", s.dir.display())),
        "the new call verifies: {out}"
    );
    assert!(out.contains("line 4"), "the torn line is reported: {out}");
    assert!(!out.contains("missing from the ledger"), "{out}");
}

/// An addendum whose ledger line was lost to a crash is chained by the next note, and the
/// whole tree verifies again.
#[test]
fn an_addendum_left_unchained_by_a_crash_is_chained_by_the_next_note() {
    use callguard::events::{CallNote, NoteField};
    let tmp = tempfile::tempdir().unwrap();
    let (root, pubkey, dirs) = sealed_tree(tmp.path());
    let note = |text: &str| CallNote {
        call_id: "c-2".into(),
        in_progress: false,
        field: NoteField::Witness,
        text: text.into(),
        at: chrono::Local::now().fixed_offset(),
    };
    {
        let sealer = Sealer::open(&root, &tmp.path().join("state")).unwrap();
        callguard::evidence::addendum::add(&sealer, &note("田中")).unwrap();
    }
    // The crash: the addendum's files are there, its ledger line is not.
    let ledger = root.join("ledger.jsonl");
    let text = std::fs::read_to_string(&ledger).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&ledger, kept[..kept.len() - 1].join("\n") + "\n").unwrap();
    let (code, out) = verify(&["--pubkey", pubkey.to_str().unwrap(), root.to_str().unwrap()]);
    assert_eq!(code, 1, "the unchained addendum is reported: {out}");

    let sealer = Sealer::open(&root, &tmp.path().join("state")).unwrap();
    callguard::evidence::addendum::add(&sealer, &note("鈴木")).unwrap();
    assert!(dirs[1].join("addendum-2.json").is_file());
    let after = std::fs::read_to_string(&ledger).unwrap();
    assert!(
        after.contains("addendum-1.json") && after.contains("addendum-2.json"),
        "{after}"
    );
    let (code, out) = verify(&["--pubkey", pubkey.to_str().unwrap(), root.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

/// Issue 11: a folder with only a `call.wav` (no manifest, no `meta.json`) is not evidence
/// callguard sealed: a warning by default, a failure with `--strict`.
#[test]
fn a_stray_wav_folder_is_a_warning_and_fails_with_strict() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, pubkey, dirs) = sealed_tree(tmp.path());
    let pk = pubkey.to_str().unwrap();
    let stray = dirs[0].parent().unwrap().join("120000_planted");
    std::fs::create_dir(&stray).unwrap();
    std::fs::copy(fixture(), stray.join("call.wav")).unwrap();

    let (code, out) = verify(&["--pubkey", pk, root.to_str().unwrap()]);
    assert_eq!(code, 0, "a warning by default: {out}");
    assert!(
        out.lines().any(|l| l
            == format!(
                "WARN {}: not sealed evidence: call.wav with no manifest.json and no meta.json",
                stray.display()
            )),
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("OK ")).count(),
        3,
        "{out}"
    );

    let (code, out) = verify(&["--strict", "--pubkey", pk, root.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("FAIL {}: not sealed evidence", stray.display())),
        "{out}"
    );
    // The folder named by itself.
    let (code, out) = verify(&["--strict", "--pubkey", pk, stray.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("call.wav with no manifest.json"), "{out}");
    let (code, out) = verify(&["--json", "--pubkey", pk, root.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v.get("stray").is_some())
        .unwrap_or_else(|| panic!("no stray line: {out}"));
    assert_eq!(v["files"], serde_json::json!(["call.wav"]));
    // Without the stray folder, --strict passes.
    std::fs::remove_dir_all(&stray).unwrap();
    let (code, out) = verify(&["--strict", "--pubkey", pk, root.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}
