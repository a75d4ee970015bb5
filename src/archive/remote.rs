//! `callguard verify s3://BUCKET/PREFIX[/HOST]`: downloads each workstation's archived folders
//! and ledger lines into a scratch evidence root and runs the same per-folder and ledger checks
//! as for a local folder; then checks what only the archive can say (Object Lock retention) and
//! compares with local ledgers given beside the URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;

use super::config::ArchiveConfig;
use super::store::{Retention, Store, StoreError};
use crate::evidence::layout::LEDGER_FILE;
use crate::evidence::verify::Outcome;

/// Why `verify s3://…` could not run (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL is not `s3://BUCKET[/PREFIX…]`.
    #[error("{0}: give s3://BUCKET/PREFIX or s3://BUCKET/PREFIX/HOST")]
    Url(String),
    /// The store refused or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing archived under the URL.
    #[error("{0}: no archived evidence there")]
    Empty(String),
    /// Scratch space.
    #[error("scratch folder: {0}")]
    Scratch(std::io::Error),
}

/// Whether a `verify` argument names the archive (`s3://…`).
pub fn is_s3(p: &Path) -> bool {
    p.to_string_lossy().starts_with("s3://")
}

/// A parsed `s3://` URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Bucket.
    pub bucket: String,
    /// Key path after the bucket (no slashes at the ends; may be empty).
    pub path: String,
}

/// Parses `s3://BUCKET/PATH`.
pub fn parse_url(url: &str) -> Result<Target, RemoteError> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| RemoteError::Url(url.into()))?;
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(RemoteError::Url(url.into()));
    }
    Ok(Target {
        bucket: bucket.to_string(),
        path: path.trim_matches('/').to_string(),
    })
}

/// What `verify s3://…` found beyond the per-folder checks.
#[derive(Debug, Clone, Default)]
pub struct RemoteOutcome {
    /// Per folder and per ledger, as for local evidence (paths shown as `s3://…`).
    pub outcome: Outcome,
    /// Things said once (e.g. the server does not report retention).
    pub notes: Vec<String>,
}

/// A name that stays one plain component when it becomes a path: the archive's keys are
/// written to a scratch folder, and a key of `..` must never climb out of it.
fn plain(c: &str) -> bool {
    !c.is_empty() && c != "." && c != ".." && !c.contains('\\') && !c.contains('\0')
}

fn digits(c: &str, n: usize) -> bool {
    c.len() == n && c.chars().all(|ch| ch.is_ascii_digit())
}

/// Is `rel` (key relative to a host folder) an archived file of ours?
fn is_host_relative(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["ledger", f] => plain(f) && f.ends_with(".json"),
        [y, m, d, folder, file] => {
            digits(y, 4) && digits(m, 2) && digits(d, 2) && plain(folder) && plain(file)
        }
        _ => false,
    }
}

/// Verifies the archive under `url` with `key`. `local_roots` are local evidence roots whose
/// ledgers are compared with the archived ones (by host name of their manifests).
pub async fn verify(
    cfg: &ArchiveConfig,
    url: &str,
    key: &VerifyingKey,
    local_roots: &[PathBuf],
) -> Result<RemoteOutcome, RemoteError> {
    let target = parse_url(url)?;
    let mut acfg = cfg.clone();
    acfg.bucket = target.bucket.clone();
    let store = Store::connect(&acfg).await?;
    let list_prefix = if target.path.is_empty() {
        String::new()
    } else {
        format!("{}/", target.path)
    };
    let keys = store.list(&list_prefix).await?;
    // Group by host folder: the URL may name a host folder itself, or a prefix above hosts.
    let mut hosts: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (k, _) in &keys {
        // A server that lists keys outside the prefix asked for: not ours to check.
        let Some(rel) = k.strip_prefix(list_prefix.as_str()) else {
            continue;
        };
        if is_host_relative(rel) {
            hosts
                .entry(target.path.clone())
                .or_default()
                .push((k.clone(), rel.to_string()));
        } else if let Some((host, rest)) = rel.split_once('/')
            && plain(host)
            && is_host_relative(rest)
        {
            let hp = if target.path.is_empty() {
                host.to_string()
            } else {
                format!("{}/{host}", target.path)
            };
            hosts
                .entry(hp)
                .or_default()
                .push((k.clone(), rest.to_string()));
        }
    }
    if hosts.is_empty() {
        return Err(RemoteError::Empty(url.to_string()));
    }
    let scratch = tempfile::tempdir().map_err(RemoteError::Scratch)?;
    let mut result = RemoteOutcome::default();
    let mut retention_unknown: Option<String> = None;
    for (host_path, objects) in &hosts {
        let root = scratch
            .path()
            .join(host_path.replace('/', "_").trim_start_matches('.'));
        std::fs::create_dir_all(&root).map_err(RemoteError::Scratch)?;
        let mut ledger: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        // What the store said about each object's retention with its download.
        let mut reported: BTreeMap<&str, Retention> = BTreeMap::new();
        for (k, rel) in objects {
            if let Some(seq) = rel
                .strip_prefix("ledger/")
                .and_then(|f| f.strip_suffix(".json"))
            {
                let Ok(seq) = seq.parse::<u64>() else {
                    continue;
                };
                let (line, r) = store.get_with_retention(k).await?;
                ledger.insert(seq, line);
                reported.insert(k, r);
            } else {
                let (_, r) = store.download_with_retention(k, &root.join(rel)).await?;
                reported.insert(k, r);
            }
        }
        let mut text = Vec::new();
        for line in ledger.values() {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        std::fs::write(root.join(LEDGER_FILE), &text).map_err(RemoteError::Scratch)?;
        let shown = format!("s3://{}/{}", target.bucket, host_path);
        let mut out = crate::evidence::verify::verify_paths(std::slice::from_ref(&root), key)
            .map_err(|e| RemoteError::Empty(format!("{shown}: {e}")))?;
        // Seq numbers with no ledger object between the first and the last.
        if let (Some(first), Some(last)) = (ledger.keys().next(), ledger.keys().last()) {
            let missing: Vec<u64> = (1..=*last).filter(|s| !ledger.contains_key(s)).collect();
            if (!missing.is_empty() || *first != 1)
                && let Some(l) = out.ledgers.first_mut()
            {
                l.failures.push(format!(
                    "archived ledger lines missing: {}",
                    missing
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        // Object Lock retention.
        let lines = super::archiver::read_ledger(&root);
        let sealed_at: BTreeMap<String, i64> = lines
            .iter()
            .filter_map(|l| l.entry.as_ref())
            .filter(|e| !e.is_addendum())
            .filter_map(|e| {
                chrono::DateTime::parse_from_rfc3339(&e.at)
                    .ok()
                    .map(|t| (e.dir.clone(), t.timestamp()))
            })
            .collect();
        let days = i64::from(cfg.retention_days) * 86_400;
        let mut short: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if retention_unknown.is_none() {
            for (k, rel) in objects {
                let dir_of = rel.rsplit_once('/').map(|x| x.0).unwrap_or("").to_string();
                let need = if rel.starts_with("ledger/") {
                    rel.strip_prefix("ledger/")
                        .and_then(|f| f.strip_suffix(".json"))
                        .and_then(|s| s.parse::<u64>().ok())
                        .and_then(|seq| lines.iter().find(|l| l.seq == seq))
                        .and_then(|l| l.entry.as_ref())
                        .and_then(|e| chrono::DateTime::parse_from_rfc3339(&e.at).ok())
                        .map(|t| t.timestamp() + days)
                } else {
                    sealed_at.get(&dir_of).map(|t| t + days)
                };
                // The retention sent with the download, else asked for on its own.
                let answer = match reported.get(k.as_str()).filter(|r| r.reported()) {
                    Some(r) => Ok((r.mode.clone(), r.retain_until_secs)),
                    None => store.retention(k).await,
                };
                match answer {
                    Ok((mode, until)) => {
                        if let Some(w) = retention_problem(rel, mode.as_deref(), until, need, cfg) {
                            short.entry(dir_of).or_default().push(w);
                        }
                    }
                    Err(e) => {
                        let code = e.code().unwrap_or_default().to_string();
                        if code == "ObjectLockConfigurationNotFoundError"
                            || code == "NoSuchObjectLockConfiguration"
                        {
                            short
                                .entry(dir_of)
                                .or_default()
                                .push(format!("{rel}: no retention (bucket without Object Lock)"));
                        } else {
                            retention_unknown = Some(format!(
                                "the store does not report Object Lock retention ({e}); retention was not checked"
                            ));
                            break;
                        }
                    }
                }
            }
        }
        // Local ledgers given beside the URL.
        let host_name = host_path
            .rsplit('/')
            .next()
            .unwrap_or(host_path)
            .to_string();
        for local in local_roots {
            if local_host(local).as_deref() != Some(host_name.as_str()) {
                continue;
            }
            let local_lines = super::archiver::read_ledger(local);
            if let Some(l) = out.ledgers.first_mut() {
                let (a, b) = (local_lines.len(), lines.len());
                if a > b {
                    l.failures.push(format!(
                        "local ledger {} has {a} lines, the archive {b}: lines {}..{a} are not archived",
                        local.join(LEDGER_FILE).display(),
                        b + 1
                    ));
                } else if a < b {
                    l.failures.push(format!(
                        "local ledger {} has {a} lines, the archive {b}: the local ledger lost lines",
                        local.join(LEDGER_FILE).display()
                    ));
                }
                for (x, y) in local_lines.iter().zip(lines.iter()) {
                    if x.raw != y.raw {
                        l.failures.push(format!(
                            "ledger line {}: the local and the archived line differ",
                            y.seq
                        ));
                        break;
                    }
                }
            }
        }
        rebase(&mut out, &root, &shown, &short);
        result.outcome.calls.extend(out.calls);
        result.outcome.ledgers.extend(out.ledgers);
    }
    if let Some(n) = retention_unknown {
        result.notes.push(n);
    }
    Ok(result)
}

/// What is wrong with an object's retention (`rel` as shown), if anything: it must be
/// COMPLIANCE until at least `need` (sealing + `retention_days`).
fn retention_problem(
    rel: &str,
    mode: Option<&str>,
    until: Option<i64>,
    need: Option<i64>,
    cfg: &ArchiveConfig,
) -> Option<String> {
    match (mode, until) {
        (Some("COMPLIANCE"), Some(u)) if need.is_none_or(|n| u >= n) => None,
        (Some("COMPLIANCE"), Some(_)) => Some(format!(
            "{rel}: retention shorter than {} days",
            cfg.retention_days
        )),
        (None, _) | (_, None) => Some(format!("{rel}: no retention")),
        (Some(m), _) => Some(format!("{rel}: retention mode {m}, not COMPLIANCE")),
    }
}

/// The host name in the manifests of a local evidence root (its first sealed call).
fn local_host(root: &Path) -> Option<String> {
    for l in super::archiver::read_ledger(root) {
        if let Some(e) = l.entry
            && !e.is_addendum()
            && let Ok(b) = std::fs::read(
                root.join(&e.dir)
                    .join(crate::evidence::layout::MANIFEST_FILE),
            )
            && let Ok(m) = serde_json::from_slice::<crate::evidence::manifest::Manifest>(&b)
        {
            return Some(m.host);
        }
    }
    None
}

/// Shows scratch paths as `s3://…` and adds retention findings to their folders.
fn rebase(out: &mut Outcome, root: &Path, shown: &str, short: &BTreeMap<String, Vec<String>>) {
    let canon = root.canonicalize().unwrap_or(root.to_path_buf());
    let rel = |p: &Path| -> String {
        let c = p.canonicalize().unwrap_or(p.to_path_buf());
        c.strip_prefix(&canon)
            .or_else(|_| p.strip_prefix(root))
            .map(|r| r.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    for c in &mut out.calls {
        let r = rel(&c.dir);
        if let Some(w) = short.get(&r) {
            c.failures.extend(w.iter().cloned());
        }
        c.dir = PathBuf::from(format!("{shown}/{r}"));
    }
    for l in &mut out.ledgers {
        if let Some(w) = short.get("ledger") {
            l.failures.extend(w.iter().cloned());
        }
        l.ledger = PathBuf::from(format!("{shown}/ledger/"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_bucket_and_a_path() {
        assert_eq!(
            parse_url("s3://evidence/callguard/ws-01/").unwrap(),
            Target {
                bucket: "evidence".into(),
                path: "callguard/ws-01".into()
            }
        );
        assert_eq!(parse_url("s3://evidence").unwrap().path, "");
        assert!(parse_url("s3:///x").is_err());
        assert!(parse_url("/tmp/x").is_err());
    }

    #[test]
    fn host_folders_are_recognised_by_their_layout() {
        assert!(is_host_relative("ledger/12.json"));
        assert!(is_host_relative("2026/11/29/101500_c-1/call.wav"));
        assert!(!is_host_relative("doctor/roundtrip.txt"));
        assert!(!is_host_relative("ws-01/ledger/1.json"));
        // Keys that would climb out of the scratch folder, or are not dates, are not ours.
        assert!(!is_host_relative("2026/../../../../x"));
        assert!(!is_host_relative("2026/11/29/../call.wav"));
        assert!(!is_host_relative("2026/11/29/101500_c-1/.."));
        assert!(!is_host_relative("2026/1a/29/101500_c-1/call.wav"));
        assert!(!is_host_relative("ledger/.."));
    }
}
