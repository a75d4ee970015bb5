//! `archive.keep_local_days`: a local call folder is removed only once its archived copy was
//! verified (every object's checksum confirmed, the manifest signature checked on the manifest
//! downloaded from the store) and the days have passed since sealing. The ledger is never
//! touched.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use super::archiver::{Archiver, folder_files, object_key, read_ledger};
use crate::config::Config;
use crate::evidence::layout::{MANIFEST_FILE, SIG_FILE};

/// Removes the local folders due for removal whose archived copy checks out.
pub async fn sweep(archiver: &mut Archiver, cfg: &Config, days: u32) {
    let key = match crate::evidence::keys::read_public(
        &crate::evidence::keys::key_paths(&cfg.data_dir()).1,
    ) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "no public key: local copies are kept");
            return;
        }
    };
    let now = chrono::Local::now().fixed_offset();
    let lines = read_ledger(archiver.evidence_root());
    for l in &lines {
        let Some(e) = &l.entry else { continue };
        if e.is_addendum()
            || !archiver.state().is_done(l.seq)
            || archiver.state().removed_local.contains(&e.dir)
        {
            continue;
        }
        let Ok(at) = chrono::DateTime::parse_from_rfc3339(&e.at) else {
            continue;
        };
        if now - at < chrono::Duration::days(i64::from(days)) {
            continue;
        }
        // Every addendum of the folder must be archived too.
        let addenda_done = lines.iter().all(|o| {
            o.entry
                .as_ref()
                .is_none_or(|oe| !(oe.is_addendum() && oe.dir == e.dir))
                || archiver.state().is_done(o.seq)
        });
        if !addenda_done {
            continue;
        }
        match verified(archiver, &e.dir, &e.manifest_sha256, &key).await {
            Ok(()) => {
                let dir = archiver.evidence_root().join(&e.dir);
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {
                        tracing::info!(dir = %e.dir, "local copy removed; the archived copy was verified");
                        archiver.set_removed_local(&e.dir);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, dir = %dir.display(), "cannot remove the local copy")
                    }
                }
            }
            Err(why) => {
                tracing::warn!(dir = %e.dir, reason = %why, "archived copy not verified; the local copy is kept")
            }
        }
    }
}

/// Checks the archived copy of `dir` against the local folder and the ledger.
async fn verified(
    archiver: &Archiver,
    dir: &str,
    manifest_sha256: &str,
    key: &VerifyingKey,
) -> Result<(), String> {
    let store = archiver.store();
    let k = |f: &str| object_key(archiver.prefix(), archiver.host(), dir, f);
    let manifest = store
        .get(&k(MANIFEST_FILE))
        .await
        .map_err(|e| e.to_string())?;
    if hex::encode(Sha256::digest(&manifest)) != manifest_sha256 {
        return Err("archived manifest.json is not the sealed one".into());
    }
    let sig = store.get(&k(SIG_FILE)).await.map_err(|e| e.to_string())?;
    let sig = B64
        .decode(String::from_utf8_lossy(&sig).trim().as_bytes())
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or("archived manifest.sig is not a signature")?;
    key.verify(&manifest, &sig)
        .map_err(|_| "archived manifest signature does not verify".to_string())?;
    let local = archiver.evidence_root().join(dir);
    let mut names: Vec<(String, std::path::PathBuf, Option<String>)> = folder_files(&local);
    // Addenda in the folder too.
    for n in crate::evidence::addendum::numbers(&local) {
        for f in [
            crate::evidence::addendum::json_name(n),
            crate::evidence::addendum::sig_name(n),
        ] {
            names.push((f.clone(), local.join(&f), None));
        }
    }
    for (name, path, sha) in names {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let sha = match sha {
            Some(s) => s,
            None => super::archiver::hash_file(&path).map_err(|e| e.to_string())?,
        };
        match store.matches(&k(&name), &sha, meta.len()).await {
            Ok(Some(true)) => {}
            Ok(Some(false)) => return Err(format!("{name}: archived copy differs")),
            Ok(None) => return Err(format!("{name}: not in the archive")),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}
