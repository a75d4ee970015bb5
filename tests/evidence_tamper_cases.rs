//! The tamper suite behind the README's "tamperings caught out of tried" figure: each case
//! seals a fresh evidence tree (three calls, an addendum, a call split in two parts), tampers
//! with it in one way, and runs the real `callguard verify` as the workstation runs it (its
//! configuration: key and ledger head from the data dir; `--strict` where noted). A case is
//! caught when verify exits non-zero. Run with `--nocapture` to see the table.

use std::path::{Path, PathBuf};
use std::process::Command;

use callguard::events::{CallNote, NoteField};
use callguard::evidence::seal::{CallRecord, Sealer};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/asterisk-22.10.1/stored-recording-snoop-1795354434.7.wav")
}

fn record(id: &str, started: chrono::DateTime<chrono::FixedOffset>) -> CallRecord {
    CallRecord {
        call_id: id.into(),
        agent: "PJSIP/1001".into(),
        caller: "0312345678".into(),
        direction: "inbound".into(),
        channel: "PJSIP/1001-0000002a".into(),
        started_at: started,
        ended_at: Some(started),
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

/// A sealed workstation: `<tmp>/evidence`, `<tmp>/state`, `<tmp>/callguard.toml`.
struct Tree {
    tmp: tempfile::TempDir,
    /// c-1, c-2, c-3, then the split call's parts 1 and 2.
    dirs: Vec<PathBuf>,
}

impl Tree {
    fn new() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("evidence");
        let state = tmp.path().join("state");
        std::fs::write(
            tmp.path().join("callguard.toml"),
            format!(
                "[state]\ndir = \"{}\"\n[evidence]\ndir = \"{}\"\n",
                state.display(),
                root.display()
            ),
        )
        .unwrap();
        let sealer = Sealer::open(&root, &state).unwrap();
        let now = chrono::Local::now().fixed_offset();
        let mut dirs = Vec::new();
        let seal = |rec: &CallRecord| {
            let src = tmp.path().join("in.wav");
            std::fs::copy(fixture(), &src).unwrap();
            sealer.seal_wav_as_new_call(&src, rec).unwrap().dir
        };
        for (i, id) in ["c-1", "c-2", "c-3"].iter().enumerate() {
            dirs.push(seal(&record(
                id,
                now - chrono::Duration::minutes(10 - i as i64),
            )));
        }
        callguard::evidence::addendum::add(
            &sealer,
            &CallNote {
                call_id: "c-2".into(),
                in_progress: false,
                field: NoteField::Witness,
                text: "田中".into(),
                at: now,
            },
        )
        .unwrap();
        let split_start = now - chrono::Duration::minutes(5);
        dirs.push(seal(&record("c-split", split_start)));
        let mut second = record("c-split", split_start);
        second.continues =
            callguard::evidence::recovery::earlier_part(&sealer, "c-split", split_start);
        assert!(second.continues.is_some());
        dirs.push(seal(&second));
        Tree { tmp, dirs }
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("evidence")
    }

    fn head(&self) -> PathBuf {
        self.tmp.path().join("state/ledger-head.json")
    }

    fn ledger_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.root().join("ledger.jsonl"))
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }

    fn write_ledger(&self, lines: &[String]) {
        let text = if lines.is_empty() {
            String::new()
        } else {
            lines.join("\n") + "\n"
        };
        std::fs::write(self.root().join("ledger.jsonl"), text).unwrap();
    }

    /// Removes the newest `n` call lines (and any addendum lines after them) and their folders.
    fn cut_tail(&self, n: usize) {
        let lines = self.ledger_lines();
        let keep = lines.len() - n;
        for l in &lines[keep..] {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let _ = std::fs::remove_dir_all(self.root().join(v["dir"].as_str().unwrap()));
        }
        self.write_ledger(&lines[..keep]);
    }

    fn verify(&self, extra: &[&str]) -> (i32, String) {
        // `TAMPER_VERIFY_BIN` measures another build's verify (e.g. an older release) on the
        // same cases; the test itself always runs this build's.
        let bin = std::env::var_os("TAMPER_VERIFY_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_callguard").into());
        let out = Command::new(bin)
            .arg("verify")
            .arg("--config")
            .arg(self.tmp.path().join("callguard.toml"))
            .args(extra)
            .env_remove("CALLGUARD_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

type Tamper = fn(&Tree);

fn cases() -> Vec<(&'static str, Tamper, &'static [&'static str])> {
    vec![
        (
            "WAV header byte changed",
            |t| flip(&t.dirs[0].join("call.wav"), 24),
            &[],
        ),
        (
            "WAV data byte changed",
            |t| flip(&t.dirs[1].join("call.wav"), 40_000),
            &[],
        ),
        (
            "WAV cut short",
            |t| {
                let p = t.dirs[2].join("call.wav");
                let b = std::fs::read(&p).unwrap();
                std::fs::write(&p, &b[..b.len() - 1000]).unwrap();
            },
            &[],
        ),
        (
            "WAV grown (bytes appended)",
            |t| {
                let p = t.dirs[0].join("call.wav");
                let mut b = std::fs::read(&p).unwrap();
                b.extend_from_slice(&[0u8; 320]);
                std::fs::write(&p, b).unwrap();
            },
            &[],
        ),
        (
            "WAV deleted",
            |t| std::fs::remove_file(t.dirs[1].join("call.wav")).unwrap(),
            &[],
        ),
        (
            "WAV replaced by another call's",
            |t| {
                let p = t.dirs[0].join("call.wav");
                let mut b = std::fs::read(&p).unwrap();
                let n = b.len();
                b[n - 2] ^= 0x40;
                std::fs::write(t.dirs[2].join("call.wav"), b).unwrap();
            },
            &[],
        ),
        (
            "manifest field edited (caller)",
            |t| {
                let p = t.dirs[2].join("manifest.json");
                let s = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, s.replace("0312345678", "0312345679")).unwrap();
            },
            &[],
        ),
        (
            "manifest reformatted (same JSON, other spacing)",
            |t| {
                let p = t.dirs[0].join("manifest.json");
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
            },
            &[],
        ),
        (
            "signature swapped from another call",
            |t| {
                std::fs::copy(
                    t.dirs[1].join("manifest.sig"),
                    t.dirs[0].join("manifest.sig"),
                )
                .unwrap();
            },
            &[],
        ),
        (
            "signature deleted",
            |t| std::fs::remove_file(t.dirs[1].join("manifest.sig")).unwrap(),
            &[],
        ),
        (
            "signature deleted and meta.json planted (to look in progress)",
            |t| {
                std::fs::remove_file(t.dirs[1].join("manifest.sig")).unwrap();
                std::fs::write(t.dirs[1].join("meta.json"), b"{}").unwrap();
            },
            &[],
        ),
        (
            "manifest, signature and WAV swapped in from another call",
            |t| {
                for f in ["manifest.json", "manifest.sig", "call.wav"] {
                    std::fs::copy(t.dirs[0].join(f), t.dirs[1].join(f)).unwrap();
                }
            },
            &[],
        ),
        (
            "ledger line edited",
            |t| {
                let mut l = t.ledger_lines();
                l[1] = l[1].replace("\"call_id\":\"c-2\"", "\"call_id\":\"c-9\"");
                t.write_ledger(&l);
            },
            &[],
        ),
        (
            "ledger lines reordered",
            |t| {
                let mut l = t.ledger_lines();
                l.swap(0, 1);
                t.write_ledger(&l);
            },
            &[],
        ),
        (
            "a middle ledger line removed",
            |t| {
                let mut l = t.ledger_lines();
                l.remove(1);
                t.write_ledger(&l);
            },
            &[],
        ),
        (
            "a middle call removed (folder and ledger line)",
            |t| {
                std::fs::remove_dir_all(&t.dirs[0]).unwrap();
                let mut l = t.ledger_lines();
                l.remove(0);
                t.write_ledger(&l);
            },
            &[],
        ),
        (
            "a call folder removed (ledger kept)",
            |t| std::fs::remove_dir_all(&t.dirs[2]).unwrap(),
            &[],
        ),
        (
            "the newest call removed (folder and ledger line)",
            |t| t.cut_tail(1),
            &[],
        ),
        (
            "the newest 2 calls removed (folders and ledger lines)",
            |t| t.cut_tail(2),
            &[],
        ),
        (
            "every call removed, ledger emptied",
            |t| t.cut_tail(t.ledger_lines().len()),
            &[],
        ),
        (
            "every call removed, ledger deleted",
            |t| {
                t.cut_tail(t.ledger_lines().len());
                std::fs::remove_file(t.root().join("ledger.jsonl")).unwrap();
            },
            &[],
        ),
        (
            "the newest calls removed and the ledger head deleted",
            |t| {
                t.cut_tail(2);
                std::fs::remove_file(t.head()).unwrap();
            },
            &[],
        ),
        (
            "the newest calls removed and the ledger head edited to match",
            |t| {
                t.cut_tail(2);
                let s = std::fs::read_to_string(t.head()).unwrap();
                let seq = t.ledger_lines().len();
                let s = s
                    .split(',')
                    .map(|f| {
                        if f.starts_with("\"seq\":") {
                            format!("\"seq\":{seq}")
                        } else {
                            f.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                std::fs::write(t.head(), s).unwrap();
            },
            &[],
        ),
        (
            "addendum edited",
            |t| {
                let p = t.dirs[1].join("addendum-1.json");
                let s = std::fs::read_to_string(&p).unwrap();
                std::fs::write(&p, s.replace("田中", "鈴木")).unwrap();
            },
            &[],
        ),
        (
            "addendum deleted",
            |t| {
                std::fs::remove_file(t.dirs[1].join("addendum-1.json")).unwrap();
                let _ = std::fs::remove_file(t.dirs[1].join("addendum-1.sig"));
            },
            &[],
        ),
        (
            "the earlier part of a split call removed",
            |t| std::fs::remove_dir_all(&t.dirs[3]).unwrap(),
            &[],
        ),
        (
            "a stray call.wav planted in a folder of its own (--strict)",
            |t| {
                let d = t.dirs[0].parent().unwrap().join("235959_planted");
                std::fs::create_dir(&d).unwrap();
                std::fs::copy(fixture(), d.join("call.wav")).unwrap();
            },
            &["--strict"],
        ),
        (
            "WAV changed and a meta.json planted in its day's folder to hide the day",
            |t| {
                flip(&t.dirs[0].join("call.wav"), 40_000);
                let day = t.dirs[0].parent().unwrap();
                std::fs::write(day.join("meta.json"), "{}").unwrap();
            },
            &[],
        ),
        (
            "call folder moved away, WAV changed there, a link left in its place",
            |t| {
                let away = t.tmp.path().join("moved-away");
                std::fs::rename(&t.dirs[1], &away).unwrap();
                flip(&away.join("call.wav"), 40_000);
                std::os::unix::fs::symlink(&away, &t.dirs[1]).unwrap();
            },
            &[],
        ),
    ]
}

#[test]
fn every_tamper_case_is_caught() {
    // The untouched tree verifies, also with --strict: a case is caught by its tampering.
    let clean = Tree::new();
    let (code, out) = clean.verify(&["--strict"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("CALL c-split: one call in 2 parts"), "{out}");
    let mut missed = Vec::new();
    let all = cases();
    for (name, tamper, extra) in &all {
        let t = Tree::new();
        tamper(&t);
        let (code, out) = t.verify(extra);
        let reason = out
            .lines()
            .find(|l| l.starts_with("FAIL"))
            .unwrap_or("")
            .chars()
            .take(160)
            .collect::<String>();
        // Exit 1 is a verdict; 2 would be a usage error, not a detection.
        println!(
            "{} {name}: exit {code}  {reason}",
            if code == 1 { "caught" } else { "MISSED" }
        );
        if code != 1 {
            missed.push(format!("{name}:\n{out}"));
        }
    }
    println!(
        "tamperings caught: {} of {}",
        all.len() - missed.len(),
        all.len()
    );
    assert!(missed.is_empty(), "not caught:\n{}", missed.join("\n"));
}
