//! Evidence at hand: the floor checks every call folder the workstations archive. A `ledger`
//! event names a sealed folder; once the archive holds that folder's ledger line (the archiver
//! writes it only after every file of the folder is confirmed), the floor downloads the folder
//! (manifest, signature and each file the manifest names, streamed to a scratch folder) and
//! runs the same checks as `callguard verify` with the host's public key from
//! `floor.evidence_keys`. The answer is kept per folder for the board's evidence page.

pub mod rows;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::store::Store;
use crate::archive::archiver::{ledger_key, object_key};
use crate::archive::store::{Store as Archive, StoreError as ArchiveError};
use crate::evidence::layout::{MANIFEST_FILE, SIG_FILE};
use crate::evidence::manifest::Manifest;
pub use rows::EvidenceRow;

/// Folders checked per round before new events are looked for again.
const BATCH: i64 = 16;
/// The longest wait between two checks of a folder that is not archived yet.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Where the floor reads archived folders and their hosts' keys.
#[derive(Clone)]
pub struct Access {
    /// The archive (read only).
    pub archive: Archive,
    /// `archive.prefix`, without slashes at the ends.
    pub prefix: String,
    /// `floor.evidence_keys`: a folder of `<host>.pub`.
    pub keys: Option<PathBuf>,
}

impl Access {
    /// The key of an object of a folder.
    pub fn object(&self, host: &str, dir: &str, file: &str) -> String {
        object_key(&self.prefix, host, dir, file)
    }
}

/// What the floor found in an archived folder.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The ledger line is not in the archive yet (checked again later).
    Waiting(String),
    /// Signature and every hash hold.
    Verified,
    /// A file or the manifest differs from what was sealed.
    Altered(String),
    /// The manifest's signature does not hold with the host's key.
    Signature(String),
    /// An object the manifest names is not in the archive.
    Missing(String),
    /// No public key for the host (checked again later: a key file may be added).
    NoKey(String),
    /// The store could not be read (checked again later).
    Error(String),
}

impl Verdict {
    /// The state as stored and shown.
    pub fn state(&self) -> &'static str {
        match self {
            Verdict::Waiting(_) => "waiting",
            Verdict::Verified => "verified",
            Verdict::Altered(_) => "altered",
            Verdict::Signature(_) => "signature",
            Verdict::Missing(_) => "missing",
            Verdict::NoKey(_) => "no_key",
            Verdict::Error(_) => "error",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Verdict::Verified => "",
            Verdict::Waiting(d)
            | Verdict::Altered(d)
            | Verdict::Signature(d)
            | Verdict::Missing(d)
            | Verdict::NoKey(d)
            | Verdict::Error(d) => d,
        }
    }

    /// Whether the folder is checked again later.
    fn retried(&self) -> bool {
        matches!(
            self,
            Verdict::Waiting(_) | Verdict::NoKey(_) | Verdict::Error(_)
        )
    }

    /// Whether the answer says the evidence is not what was sealed.
    fn failed(&self) -> bool {
        matches!(
            self,
            Verdict::Altered(_) | Verdict::Signature(_) | Verdict::Missing(_)
        )
    }
}

/// A host name usable as a file name and an object key part.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\\')
        && !name.contains('\0')
}

/// The public key of `host` from the keys folder: `Ok(None)` when there is no file for it.
pub fn key_file(
    keys: Option<&Path>,
    host: &str,
) -> Result<Option<(VerifyingKey, PathBuf)>, String> {
    let Some(dir) = keys else {
        return Ok(None);
    };
    if !plain(host) {
        return Err(format!("host name {host:?} cannot name a key file"));
    }
    let path = dir.join(format!("{host}.pub"));
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    // The whole output of `callguard key show` will do: its PEM block is the key.
    let pem = match (
        text.find("-----BEGIN PUBLIC KEY-----"),
        text.find("-----END PUBLIC KEY-----"),
    ) {
        (Some(a), Some(b)) if a < b => &text[a..b + "-----END PUBLIC KEY-----".len()],
        _ => text.as_str(),
    };
    crate::evidence::keys::parse_public(pem)
        .map(|k| Some((k, path.clone())))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// The key a folder is checked with and where it came from (`file:<path>` or
/// `pinned:<first seen ms>`): the host's key file when there is one (authoritative), else the
/// key the host published first on the bus. A folder whose event carries another key than the
/// pinned one fails: somebody signs as this host with a key the floor has not seen before.
pub async fn choose_key(
    store: &Store,
    keys: Option<&Path>,
    row: &EvidenceRow,
) -> Result<(VerifyingKey, String), Verdict> {
    match key_file(keys, &row.host) {
        Ok(Some((k, path))) => return Ok((k, format!("file:{}", path.display()))),
        Ok(None) => {}
        Err(e) => return Err(Verdict::NoKey(e)),
    }
    let pinned = rows::pinned_key(store, &row.host)
        .await
        .map_err(|e| Verdict::Error(e.to_string()))?;
    let Some(pin) = pinned else {
        return Err(Verdict::NoKey(match keys {
            Some(d) => format!(
                "no public key for {}: no {}/{}.pub and the workstation published none",
                row.host,
                d.display(),
                row.host
            ),
            None => format!(
                "no public key for {}: floor.evidence_keys is not set and the workstation \
                 published none",
                row.host
            ),
        }));
    };
    let id = |b64: &str| {
        crate::evidence::keys::parse_public(b64)
            .map(|k| crate::evidence::keys::key_id(&k))
            .unwrap_or_else(|_| "unreadable".into())
    };
    let first_seen = chrono::DateTime::from_timestamp_millis(pin.first_seen_ms)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    if !row.published_key.is_empty() && row.published_key != pin.public_key {
        return Err(Verdict::Signature(format!(
            "the ledger event carries key_id {}, not the key first seen for {} on {first_seen} \
             (key_id {})",
            id(&row.published_key),
            row.host,
            id(&pin.public_key)
        )));
    }
    // The host name is in the event's body; the workstation's identity is its subject. A
    // folder of this host published by another workstation is not vouched for by the pin.
    let publisher = rows::call_ws_agent(store, &row.call_key)
        .await
        .map_err(|e| Verdict::Error(e.to_string()))?;
    if !pin.ws_agent.is_empty() && !publisher.is_empty() && publisher != pin.ws_agent {
        return Err(Verdict::Signature(format!(
            "published for {} by workstation {publisher}, but the key of {} was first seen from \
             workstation {} on {first_seen}",
            row.host, row.host, pin.ws_agent
        )));
    }
    crate::evidence::keys::parse_public(&pin.public_key)
        .map(|k| (k, format!("pinned:{}", pin.first_seen_ms)))
        .map_err(|e| Verdict::NoKey(format!("the pinned key of {}: {e}", row.host)))
}

/// Checks one archived folder with `key` into `scratch` (a fresh empty folder).
pub async fn check(
    access: &Access,
    row: &EvidenceRow,
    key: VerifyingKey,
    scratch: &Path,
) -> (Verdict, Option<String>) {
    if !plain(&row.host) || row.dir.split('/').any(|p| !plain(p)) {
        return (
            Verdict::Error(format!(
                "folder {} of {} is not a plain path",
                row.dir, row.host
            )),
            None,
        );
    }
    let seq = u64::try_from(row.seq).unwrap_or(0);
    let line_key = ledger_key(&access.prefix, &row.host, seq);
    let line = match access.archive.get(&line_key).await {
        Ok(b) => b,
        Err(e) if e.status() == Some(404) => {
            return (
                Verdict::Waiting(format!("ledger line {seq} is not archived yet")),
                None,
            );
        }
        Err(e) => return (Verdict::Error(e.to_string()), None),
    };
    let folder = scratch.join("folder");
    let fetch = |file: String| {
        let k = access.object(&row.host, &row.dir, &file);
        let to = folder.join(&file);
        async move { (file, access.archive.download_to(&k, &to).await) }
    };
    let mut missing = Vec::new();
    for f in [MANIFEST_FILE, SIG_FILE] {
        match fetch(f.to_string()).await {
            (_, Ok(_)) => {}
            (name, Err(e)) if e.status() == Some(404) => missing.push(name),
            (_, Err(e)) => return (Verdict::Error(e.to_string()), None),
        }
    }
    let manifest_bytes = std::fs::read(folder.join(MANIFEST_FILE)).unwrap_or_default();
    let manifest: Option<Manifest> = serde_json::from_slice(&manifest_bytes).ok();
    let mut names: Vec<String> = Vec::new();
    if let Some(m) = &manifest {
        names.extend(m.audio.iter().map(|a| a.file.clone()));
        names.extend(m.records.iter().map(|r| r.file.clone()));
    }
    for name in names.into_iter().filter(|n| plain(n)) {
        match fetch(name).await {
            (_, Ok(_)) => {}
            (name, Err(e)) if e.status() == Some(404) => missing.push(name),
            (_, Err(e)) => return (Verdict::Error(e.to_string()), None),
        }
    }
    let manifest_text = manifest
        .as_ref()
        .map(|_| String::from_utf8_lossy(&manifest_bytes).into_owned());
    if !missing.is_empty() {
        return (
            Verdict::Missing(format!("not in the archive: {}", missing.join(", "))),
            manifest_text,
        );
    }
    // Hashing a long recording takes a while: off the async threads.
    let dir = folder.clone();
    let verdict = match tokio::task::spawn_blocking(move || {
        crate::evidence::verify::verify_folder(&dir, &key)
    })
    .await
    {
        Ok(v) => v,
        Err(e) => return (Verdict::Error(format!("verify task: {e}")), manifest_text),
    };
    let mut failures = verdict.failures;
    let manifest_sha = hex::encode(Sha256::digest(&manifest_bytes));
    if manifest.is_some() && manifest_sha != row.manifest_sha256 {
        failures.push(format!(
            "manifest.json is not the one ledger line {seq} seals (SHA-256 {manifest_sha}, the \
             line says {})",
            row.manifest_sha256
        ));
    }
    let line_sha = hex::encode(Sha256::digest(&line));
    if !row.line_sha256.is_empty() && line_sha != row.line_sha256 {
        failures.push(format!(
            "archived ledger line {seq} differs from the line the workstation published"
        ));
    }
    (classify(&failures), manifest_text)
}

/// The verdict for `verify`'s failures: a broken signature first (nothing in the folder can be
/// trusted then), else any other failure is an alteration.
fn classify(failures: &[String]) -> Verdict {
    if failures.is_empty() {
        return Verdict::Verified;
    }
    let text = failures.join("; ");
    if failures.iter().any(|f| {
        f.contains("signature") || f.contains("signed by another key") || f.contains(SIG_FILE)
    }) {
        Verdict::Signature(text)
    } else {
        Verdict::Altered(text)
    }
}

/// The delay before checking again after `attempts` checks that could not finish.
fn backoff(retry: Duration, attempts: i64) -> Duration {
    let factor = 1u32 << attempts.clamp(0, 7);
    retry.saturating_mul(factor).min(MAX_BACKOFF.max(retry))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// One round: new ledger events become rows, and due rows are checked. Returns whether more
/// work is waiting right now.
pub async fn round(store: &Store, access: &Access, retry: Duration) -> Result<bool, anyhow::Error> {
    let found = rows::discover(store, now_ms(), 200).await?;
    let due = rows::due(store, now_ms(), BATCH).await?;
    for row in &due {
        let (v, manifest, source) = match choose_key(store, access.keys.as_deref(), row).await {
            Ok((key, source)) => {
                let scratch = tempfile::tempdir()?;
                let (v, m) = check(access, row, key, scratch.path()).await;
                (v, m, source)
            }
            Err(v) => (v, None, String::new()),
        };
        let now = now_ms();
        let next = v
            .retried()
            .then(|| now + backoff(retry, row.attempts).as_millis() as i64);
        let answer = rows::Answer {
            state: v.state(),
            detail: v.detail(),
            manifest: manifest.as_deref(),
            key_source: &source,
        };
        rows::record(store, row, &answer, now, next).await?;
        match &v {
            Verdict::Verified => {
                tracing::info!(call = %row.call_key, dir = %row.dir, host = %row.host, "archived evidence verified");
            }
            v if v.failed() => {
                tracing::error!(call = %row.call_key, dir = %row.dir, host = %row.host,
                    state = v.state(), detail = v.detail(), "ARCHIVED EVIDENCE FAILED VERIFICATION");
                store
                    .audit(
                        "callguard floor",
                        &format!("evidence.{}", v.state()),
                        &row.call_key,
                        &format!("{} {}: {}", row.host, row.dir, v.detail()),
                        now,
                    )
                    .await?;
            }
            Verdict::NoKey(d) if row.attempts == 0 => {
                tracing::warn!(call = %row.call_key, host = %row.host, detail = %d, "archived evidence cannot be verified");
            }
            Verdict::Error(d) => {
                tracing::warn!(call = %row.call_key, dir = %row.dir, error = %d, "archived evidence: check failed; retrying later");
            }
            _ => {}
        }
    }
    Ok(found == 200 || due.len() as i64 == BATCH)
}

/// The checker, until `stop`: a round whenever the bus brought something (`updates`) and when
/// the next retry is due.
pub async fn run(
    store: Store,
    access: Access,
    retry: Duration,
    mut updates: watch::Receiver<u64>,
    stop: CancellationToken,
) {
    loop {
        let more = match round(&store, &access, retry).await {
            Ok(more) => more,
            Err(e) => {
                tracing::warn!(error = %e, "archived evidence: round failed; retrying");
                false
            }
        };
        if more {
            continue;
        }
        let wait = match rows::next_due(&store).await {
            Ok(Some(at)) => Duration::from_millis((at - now_ms()).clamp(0, i64::MAX) as u64),
            _ => retry,
        }
        .min(retry.max(Duration::from_millis(100)));
        updates.mark_unchanged();
        tokio::select! {
            _ = stop.cancelled() => return,
            r = updates.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Ensures the archive configuration the floor reads with is usable; `None` without
/// `[archive]`.
pub async fn access(cfg: &crate::config::Config) -> Result<Option<Access>, ArchiveError> {
    if !cfg.archive.enabled() {
        return Ok(None);
    }
    let archive = Archive::connect(&cfg.archive).await?;
    let keys = cfg
        .floor
        .as_ref()
        .map(|f| f.evidence_keys.clone())
        .filter(|k| !k.is_empty())
        .map(PathBuf::from);
    Ok(Some(Access {
        archive,
        prefix: cfg.archive.clean_prefix(),
        keys,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_signature_outranks_a_changed_file() {
        assert_eq!(classify(&[]), Verdict::Verified);
        assert!(matches!(
            classify(&["call.wav: SHA-256 mismatch (audio data changed)".into()]),
            Verdict::Altered(_)
        ));
        assert!(matches!(
            classify(&[
                "call.wav: SHA-256 mismatch".into(),
                "manifest signature does not match: manifest.json or manifest.sig was changed"
                    .into()
            ]),
            Verdict::Signature(_)
        ));
    }

    #[test]
    fn retries_back_off_up_to_an_hour() {
        let r = Duration::from_secs(30);
        assert_eq!(backoff(r, 0), r);
        assert_eq!(backoff(r, 1), r * 2);
        assert_eq!(backoff(r, 50), MAX_BACKOFF);
    }

    #[test]
    fn keys_come_from_plain_host_files_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(key_file(None, "ws-01").unwrap().is_none());
        assert!(key_file(Some(dir.path()), "ws-01").unwrap().is_none());
        assert!(key_file(Some(dir.path()), "../etc").is_err());
        let k = crate::evidence::keys::load_or_create(dir.path()).unwrap();
        let (_, public) = crate::evidence::keys::key_paths(dir.path());
        // The whole output of `callguard key show`, as IT copies it.
        let shown = format!(
            "key_id: {}\npublic key file: x\n{}",
            crate::evidence::keys::key_id(&k.verifying_key()),
            std::fs::read_to_string(public).unwrap()
        );
        std::fs::write(dir.path().join("ws-01.pub"), shown).unwrap();
        let (got, path) = key_file(Some(dir.path()), "ws-01").unwrap().unwrap();
        assert_eq!(got, k.verifying_key());
        assert_eq!(path, dir.path().join("ws-01.pub"));
        std::fs::write(dir.path().join("ws-02.pub"), "nonsense").unwrap();
        assert!(key_file(Some(dir.path()), "ws-02").is_err());
    }
}
