//! Sealing a call: the WAV finalized and renamed, its SHA-256, `manifest.json`, the Ed25519
//! `manifest.sig`, and a signed, hash-chained ledger line.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, FixedOffset, Local, SecondsFormat};
use ed25519_dalek::{Signer, SigningKey};
use sha2::{Digest, Sha256};

use super::keys;
use super::layout::{self, MANIFEST_FILE, META_FILE, PART_FILE, RESERVE_FILE, SIG_FILE, WAV_FILE};
use super::ledger::Ledger;
use super::manifest::{self, Audio, Manifest};
pub use super::record::CallRecord;
use crate::fsutil;

/// Read size for hashing: large enough that the hash, not the reads, sets the pace.
const HASH_BUF: usize = 1 << 20;

/// Why a call could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SealError {
    let path = path.to_path_buf();
    move |source| SealError::Io { what, path, source }
}

/// A sealed call.
#[derive(Debug, Clone, PartialEq)]
pub struct Sealed {
    /// PBX call id.
    pub call_id: String,
    /// The call folder.
    pub dir: PathBuf,
    /// Folder relative to the evidence root.
    pub rel: String,
    /// SHA-256 of `call.wav`, if there is audio.
    pub sha256: Option<String>,
    /// SHA-256 of `manifest.json`.
    pub manifest_sha256: String,
    /// Ledger line number.
    pub seq: u64,
    /// Recording stopped early.
    pub truncated: bool,
    /// Sealed after a crash.
    pub recovered: bool,
}

/// The sealing side: signing key and ledger of one evidence root.
pub struct Sealer {
    root: PathBuf,
    key: SigningKey,
    key_id: String,
    host: String,
    data_dir: PathBuf,
    ledger: Mutex<Ledger>,
    head_problem: Option<String>,
    handoff: super::followers::Handoff,
}

/// SHA-256 of a file, and of its first `head` bytes.
pub fn hash_file(path: &Path, head: u64) -> io::Result<(String, String, u64)> {
    let mut f = File::open(path)?;
    let mut all = Sha256::new();
    let mut first = Sha256::new();
    let mut buf = vec![0u8; HASH_BUF];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if total < head {
            let take = ((head - total) as usize).min(n);
            first.update(&chunk[..take]);
        }
        all.update(chunk);
        total += n as u64;
    }
    Ok((
        hex::encode(all.finalize()),
        hex::encode(first.finalize()),
        total,
    ))
}

fn local_rfc3339(t: DateTime<FixedOffset>) -> String {
    t.with_timezone(&Local)
        .fixed_offset()
        .to_rfc3339_opts(SecondsFormat::Millis, false)
}

impl Sealer {
    /// Opens the evidence root (made 0700 if missing), its ledger, and the signing key under
    /// `data_dir` (made on first use).
    pub fn open(root: &Path, data_dir: &Path) -> anyhow::Result<Sealer> {
        fsutil::create_private_dir(root)
            .map_err(|e| anyhow::anyhow!("evidence dir {}: {e}", root.display()))?;
        let key = keys::load_or_create(data_dir)?;
        let mut ledger = Ledger::open(root)
            .map_err(|e| anyhow::anyhow!("{}: {e}", root.join(layout::LEDGER_FILE).display()))?;
        // A ledger cut short is reported, never a reason to stop sealing new calls.
        let head_problem = ledger.anchor(root, data_dir, &key).err();
        Ok(Sealer {
            root: root.to_path_buf(),
            key_id: keys::key_id(&key.verifying_key()),
            key,
            host: manifest::host_name(),
            data_dir: data_dir.to_path_buf(),
            ledger: Mutex::new(ledger),
            head_problem,
            handoff: Default::default(),
        })
    }

    /// Why the ledger does not hold its signed head (newest lines removed, ledger rewritten),
    /// as found at open.
    pub fn head_problem(&self) -> Option<&str> {
        self.head_problem.as_deref()
    }

    /// Hands every sealed folder and chained addendum to `handoff`'s followers.
    pub fn with_handoff(mut self, handoff: super::followers::Handoff) -> Sealer {
        self.handoff = handoff;
        self
    }

    /// The followers' hand-off.
    pub fn handoff(&self) -> &super::followers::Handoff {
        &self.handoff
    }

    /// Hands the line just appended to `ledger` to the followers (under the ledger lock, so the
    /// line hash is this line's).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn hand_off(
        &self,
        ledger: &Ledger,
        seq: u64,
        at: &str,
        call_id: &str,
        rel: &str,
        manifest_sha256: &str,
        addendum: Option<&super::ledger::AddendumRef>,
        level: Option<u8>,
    ) {
        if self.handoff.is_empty() {
            return;
        }
        use super::followers::{Sealed as Item, SealedKind};
        self.handoff.offer(&Item {
            kind: if addendum.is_some() {
                SealedKind::Addendum
            } else {
                SealedKind::Folder
            },
            call_id: call_id.to_string(),
            dir: self.root.join(rel),
            rel: rel.to_string(),
            file: addendum.map(|a| a.file.clone()),
            file_sha256: addendum.map(|a| a.sha256.clone()),
            ledger_seq: seq,
            ledger_line_sha256: ledger.last_line_sha256().to_string(),
            manifest_sha256: manifest_sha256.to_string(),
            level,
            at: at.to_string(),
        });
    }

    /// The evidence root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Seals the call in `dir`: a `call.wav.part` is finalized into `call.wav`, an existing
    /// `call.wav` is taken as is; without either the manifest says there is no audio.
    pub fn seal(&self, dir: &Path, rec: &CallRecord) -> Result<Sealed, SealError> {
        let part = dir.join(PART_FILE);
        let wav = dir.join(WAV_FILE);
        if part.exists() {
            File::open(&part)
                .and_then(|f| f.sync_all())
                .map_err(io_err("sync", &part))?;
            if wav.exists() {
                return Err(SealError::Io {
                    what: "refusing to overwrite",
                    path: wav,
                    source: io::Error::from(io::ErrorKind::AlreadyExists),
                });
            }
            std::fs::rename(&part, &wav).map_err(io_err("rename", &part))?;
            fsutil::sync_dir(dir).map_err(io_err("sync", dir))?;
        }
        // Room for the manifest and the ledger line even on a full disk.
        let _ = std::fs::remove_file(dir.join(RESERVE_FILE));
        let mut problems = rec.problems.clone();
        let audio = if wav.exists() {
            Some(self.describe_audio(&wav, rec, &mut problems)?)
        } else {
            None
        };
        let sealed_at = Local::now().fixed_offset();
        let ended = rec.ended_at.unwrap_or(sealed_at);
        let duration = rec
            .duration_secs
            .unwrap_or_else(|| (ended - rec.started_at).num_seconds().max(0) as u64);
        // The incident record goes in before the manifest that lists it.
        let records = if super::incident::applies(rec) {
            let mut r = super::incident::build(rec, ended, duration, audio.as_ref(), dir);
            if let Some(known) = super::incident::escalation_delivery(&self.data_dir, &rec.call_id)
            {
                super::incident::apply_delivery(&mut r.escalations, &known);
            }
            let receipts = super::incident::escalation_receipts(&self.data_dir, &rec.call_id);
            super::incident::apply_receipts(&mut r.escalations, &receipts);
            super::incident::write(dir, &r, rec.incident.language == "en")
                .map_err(io_err("write the incident record in", dir))?
        } else {
            Vec::new()
        };
        let ledger_head = Some(self.ledger()?.head_ref());
        let m = Manifest {
            schema: manifest::SCHEMA.into(),
            call_id: rec.call_id.clone(),
            agent: rec.agent.clone(),
            caller: rec.caller.clone(),
            direction: rec.direction.clone(),
            channel: rec.channel.clone(),
            started_at: local_rfc3339(rec.started_at),
            ended_at: local_rfc3339(ended),
            duration_secs: duration,
            end_cause: rec.end_cause.clone(),
            audio,
            warnings: rec.warnings.clone(),
            recovered: rec.recovered,
            truncated: rec.truncated,
            problems,
            host: self.host.clone(),
            software: manifest::software(),
            sealed_at: local_rfc3339(sealed_at),
            key_id: self.key_id.clone(),
            records,
            ledger_head,
            continues: rec.continues.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&m).map_err(|e| SealError::Io {
            what: "serialize",
            path: dir.join(MANIFEST_FILE),
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        let manifest_path = dir.join(MANIFEST_FILE);
        write_new(&manifest_path, &bytes)?;
        let sig = B64.encode(self.key.sign(&bytes).to_bytes());
        write_new(&dir.join(SIG_FILE), format!("{sig}\n").as_bytes())?;
        fsutil::sync_dir(dir).map_err(io_err("sync", dir))?;
        let manifest_sha256 = hex::encode(Sha256::digest(&bytes));
        let rel = self.rel(dir);
        let level = Some(rec.incident.level().0);
        let seq = self.append_ledger(&rec.call_id, &rel, &manifest_sha256, sealed_at, level)?;
        // The seal is complete: what recovery needed goes.
        let _ = std::fs::remove_file(dir.join(META_FILE));
        let _ = fsutil::sync_dir(dir);
        Ok(Sealed {
            call_id: rec.call_id.clone(),
            dir: dir.to_path_buf(),
            rel,
            sha256: m.audio.map(|a| a.sha256),
            manifest_sha256,
            seq,
            truncated: rec.truncated,
            recovered: rec.recovered,
        })
    }

    /// Moves (or, across file systems, copies) an existing WAV file — e.g. a recording
    /// downloaded from the PBX — into `dir` as `call.wav` and seals it. The bytes are kept as
    /// they are: the sealed file's SHA-256 is the source file's.
    pub fn seal_wav_file(
        &self,
        dir: &Path,
        src: &Path,
        rec: &CallRecord,
    ) -> Result<Sealed, SealError> {
        let wav = dir.join(WAV_FILE);
        if wav.exists() || dir.join(PART_FILE).exists() {
            return Err(SealError::Io {
                what: "refusing to overwrite",
                path: wav,
                source: io::Error::from(io::ErrorKind::AlreadyExists),
            });
        }
        match std::fs::rename(src, &wav) {
            Ok(()) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&wav, std::fs::Permissions::from_mode(0o600))
                    .map_err(io_err("chmod", &wav))?;
            }
            Err(_) => {
                let mut from = File::open(src).map_err(io_err("open", src))?;
                let mut to =
                    fsutil::create_new_private_file(&wav).map_err(io_err("create", &wav))?;
                io::copy(&mut from, &mut to).map_err(io_err("copy to", &wav))?;
                to.sync_all().map_err(io_err("sync", &wav))?;
                drop(to);
                if let Err(e) = std::fs::remove_file(src) {
                    tracing::warn!(path = %src.display(), error = %e, "recording copied but the download could not be removed");
                }
            }
        }
        File::open(&wav)
            .and_then(|f| f.sync_all())
            .map_err(io_err("sync", &wav))?;
        self.seal(dir, rec)
    }

    /// Makes a new call folder for `rec` under the root and seals `src` into it (a recording
    /// whose call this daemon did not see, or a file sealed by hand).
    pub fn seal_wav_as_new_call(&self, src: &Path, rec: &CallRecord) -> Result<Sealed, SealError> {
        let (dir, _) = layout::create_call_dir(
            &self.root,
            &rec.call_id,
            rec.started_at.with_timezone(&Local),
        )
        .map_err(io_err("create folder under", &self.root))?;
        self.seal_wav_file(&dir, src, rec)
    }

    /// The ledger's `dir` of a call folder.
    pub fn rel(&self, dir: &Path) -> String {
        dir.strip_prefix(&self.root)
            .unwrap_or(dir)
            .to_string_lossy()
            .into_owned()
    }

    /// Appends the ledger line of a sealed folder if a crash left it out.
    pub fn ensure_in_ledger(&self, dir: &Path, call_id: &str) -> Result<Option<u64>, SealError> {
        let rel = self.rel(dir);
        let present = self
            .ledger
            .lock()
            .map(|l| l.contains_dir(&rel))
            .unwrap_or(false);
        if present {
            return Ok(None);
        }
        let manifest_path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&manifest_path).map_err(io_err("read", &manifest_path))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        self.append_ledger(call_id, &rel, &sha, Local::now().fixed_offset(), None)
            .map(Some)
    }

    fn append_ledger(
        &self,
        call_id: &str,
        rel: &str,
        manifest_sha256: &str,
        at: DateTime<FixedOffset>,
        level: Option<u8>,
    ) -> Result<u64, SealError> {
        let path = self.root.join(layout::LEDGER_FILE);
        let mut ledger = self.ledger.lock().map_err(|_| SealError::Io {
            what: "lock",
            path: path.clone(),
            source: io::Error::other("ledger lock poisoned"),
        })?;
        let at = local_rfc3339(at);
        let seq = ledger
            .append(&self.key, at.clone(), call_id, rel, manifest_sha256, None)
            .map_err(io_err("append to", &path))?;
        // In the same step as the ledger line: a follower's queue is durable, the report
        // broadcast is not.
        self.hand_off(
            &ledger,
            seq,
            &at,
            call_id,
            rel,
            manifest_sha256,
            None,
            level,
        );
        Ok(seq)
    }

    /// The ledger, locked (addenda are numbered and chained under this lock).
    pub(crate) fn ledger(&self) -> Result<std::sync::MutexGuard<'_, Ledger>, SealError> {
        self.ledger.lock().map_err(|_| SealError::Io {
            what: "lock",
            path: self.root.join(layout::LEDGER_FILE),
            source: io::Error::other("ledger lock poisoned"),
        })
    }

    /// The signing key.
    pub(crate) fn key(&self) -> &SigningKey {
        &self.key
    }

    /// First 16 hex of the public key's SHA-256.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn describe_audio(
        &self,
        wav: &Path,
        rec: &CallRecord,
        problems: &mut Vec<String>,
    ) -> Result<Audio, SealError> {
        let layout = File::open(wav)
            .and_then(|mut f| super::wav::read_layout(&mut f))
            .map_err(|e| {
                problems.push(format!(
                    "call.wav is not a WAV file callguard can read: {e}"
                ));
            })
            .ok();
        let head = layout.map(|l| l.data_offset).unwrap_or(0);
        let (sha256, header_sha256, bytes) = hash_file(wav, head).map_err(io_err("hash", wav))?;
        let (encoding, rate, channels, secs) = match layout {
            Some(l) => {
                let enc = match (l.format, l.bits) {
                    (1, 16) | (0xfffe, 16) => "pcm_s16le".to_string(),
                    (1, 8) => "pcm_u8".to_string(),
                    (6, _) => "alaw".to_string(),
                    (7, _) => "mulaw".to_string(),
                    (f, b) => format!("wav format {f}, {b} bits"),
                };
                let frames = u64::from(l.data_len) / u64::from(l.block_align.max(1));
                let secs = frames as f64 / f64::from(l.sample_rate.max(1));
                (
                    enc,
                    l.sample_rate,
                    l.channels,
                    (secs * 1000.0).round() / 1000.0,
                )
            }
            None => ("unknown".into(), 0, 0, 0.0),
        };
        Ok(Audio {
            file: WAV_FILE.into(),
            sha256,
            bytes,
            header_sha256,
            data_offset: head,
            encoding,
            stream_encoding: rec.stream_encoding.clone(),
            sample_rate: rate,
            channels,
            gaps: rec.gaps,
            late_frames: rec.late_frames,
            audio_secs: secs,
            source: rec.source.clone(),
            source_name: rec.source_name.clone(),
        })
    }
}

/// Writes a new file that must not exist yet (`create_new`), fsynced; the caller fsyncs the
/// folder once after its last new file ([`fsutil::sync_dir`]).
pub(super) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), SealError> {
    let mut f = fsutil::create_new_private_file(path).map_err(io_err("create", path))?;
    f.write_all(bytes).map_err(io_err("write", path))?;
    f.sync_all().map_err(io_err("sync", path))
}
